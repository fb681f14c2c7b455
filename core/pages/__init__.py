"""The browser pages: Swagger UI (its page, initializer and bundled assets) and /demo.

The Swagger UI page is flask-smorest's, rendered from `templates/swagger_ui.html`
here (no inline script, for the Content-Security-Policy) with the assets that
flask-swagger-ui ships, served by the app (no CDN). /demo serves the silent-refresh
demo from `clients/js` (static files, no build step).

Under a path prefix (a trusted proxy's X-Forwarded-Prefix, or SCRIPT_NAME) every
URL of these pages is under it: the pages build theirs with url_for or relative to
themselves, and the OpenAPI document names the prefix as its server (PUBLIC_URL,
when it is set: then the document is the same for every request).
"""

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flask_swagger_ui
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    json,
    request,
    send_from_directory,
)

from core.extensions import api
from core.urls import forwarded, public_base

PAGES = Path(__file__).resolve().parent
TEMPLATES = PAGES / "templates"
STATIC = PAGES / "static"
CLIENTS_JS = PAGES.parents[1] / "clients" / "js"
# URL name -> file under clients/js; nothing else under that folder is served.
DEMO_FILES = {
    "": "demo/index.html",
    "demo.js": "demo/demo.js",
    "demo.css": "demo/demo.css",
    "auth-client.js": "auth-client.js",
}

# flask-smorest's endpoints for the OpenAPI document (OPENAPI_JSON_PATH) and
# Swagger UI's page.
OPENAPI_JSON_ENDPOINT = "api-docs.openapi_json"
SWAGGER_UI_ENDPOINT = "api-docs.openapi_swagger_ui"
# The URLs of an OAuth 2.0 flow (OpenAPI 3.0 Security Scheme Object).
FLOW_URLS = ("authorizationUrl", "tokenUrl", "refreshUrl")

demo_blp = Blueprint("demo", __name__)


def openapi_document() -> Response:
    """The OpenAPI document, as flask-smorest serves it, at PUBLIC_URL or under this
    request's mount path (the document of an app with neither is flask-smorest's
    own)."""
    document = with_settings(api.spec.to_dict(), current_app.config)
    public_url = current_app.config["PUBLIC_URL"]
    base = public_base(public_url) if public_url else request.script_root
    if base:
        document = mounted(document, base)
    response = current_app.response_class(
        json.dumps(document, indent=2, sort_keys=False), mimetype="application/json"
    )
    if not public_url:
        response.vary.update(forwarded())
    return response


def with_settings(document: dict, config: Mapping[str, Any]) -> dict:
    """A copy of the document where an operation's extension written as
    `{"setting": NAME}` (e.g. `x-fresh-max-age`) holds that setting's value."""
    document = copy.deepcopy(document)  # the spec's own dicts stay as they are
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for key, value in operation.items():
                if (
                    key.startswith("x-")
                    and isinstance(value, dict)
                    and "setting" in value
                ):
                    operation[key] = config[value["setting"]]
    return document


def mounted(document: dict, prefix: str) -> dict:
    """A copy of the document for an API at `prefix`: a mount path ("/api") or
    PUBLIC_URL ("https://api.example.com/api").

    `servers` is the prefix: Swagger UI's Try it out and generated clients put the
    paths after it. The OAuth 2.0 flows' absolute-path URLs get it too: Swagger UI
    resolves "/token" against the server URL, which would be the host's root.
    """
    document = copy.deepcopy(document)  # the spec's own dicts stay as they are
    document["servers"] = [{"url": prefix}]
    schemes = document.get("components", {}).get("securitySchemes", {})
    for scheme in schemes.values():
        for flow in scheme.get("flows", {}).values():
            for key in FLOW_URLS:
                if flow.get(key, "").startswith("/"):
                    flow[key] = prefix + flow[key]
    return document


def _vary_swagger_ui(response: Response) -> Response:
    """Swagger UI's page names its assets under the mount path: a cache must keep
    the pages of two prefixes apart."""
    if request.endpoint == SWAGGER_UI_ENDPOINT:
        response.vary.update(forwarded())
    return response


@demo_blp.get("/demo", defaults={"name": ""})
@demo_blp.get("/demo/<name>")
def demo_file(name: str):
    """Serve the demo page and its modules."""
    if name not in DEMO_FILES:
        abort(404)
    response = send_from_directory(CLIENTS_JS, DEMO_FILES[name], max_age=0)
    if name.endswith(".js"):
        response.mimetype = "text/javascript"
    return response


def register_pages(app: Flask) -> None:
    """Swagger UI's assets, the OpenAPI document under any path prefix, and /demo
    unless DEMO_ENABLED is off."""
    if OPENAPI_JSON_ENDPOINT not in app.view_functions:
        raise RuntimeError(
            f"flask-smorest no longer serves the OpenAPI document as "
            f"{OPENAPI_JSON_ENDPOINT}: review core/pages/__init__.py."
        )
    # Flask's public hook to give an endpoint its view: the same URL, this view.
    app.endpoint(OPENAPI_JSON_ENDPOINT)(openapi_document)
    app.after_request(_vary_swagger_ui)
    app.register_blueprint(
        Blueprint(
            "swagger_ui_assets",
            __name__,
            static_folder=Path(flask_swagger_ui.__file__).parent / "dist",
            static_url_path=app.config["OPENAPI_SWAGGER_UI_URL"].rstrip("/"),
        )
    )
    if app.config["DEMO_ENABLED"]:
        app.register_blueprint(demo_blp)
