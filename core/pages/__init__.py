"""The browser pages: Swagger UI (its page, initializer and bundled assets) and /demo.

The Swagger UI page is flask-smorest's, rendered from `templates/swagger_ui.html`
here (no inline script, for the Content-Security-Policy) with the assets that
flask-swagger-ui ships, served by the app (no CDN). /demo serves the silent-refresh
demo from `clients/js` (static files, no build step).
"""

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Flask, abort, send_from_directory

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

demo_blp = Blueprint("demo", __name__)


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
    """Swagger UI's assets, and /demo unless DEMO_ENABLED is off."""
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
