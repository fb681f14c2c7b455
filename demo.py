"""The browser demo at /demo: static files, no build step (clients/js)."""

from pathlib import Path

from flask import Blueprint, Flask, abort, send_from_directory

CLIENTS_JS = Path(__file__).resolve().parent / "clients" / "js"
# URL name -> file under clients/js; nothing else under that folder is served.
DEMO_FILES = {
    "": "demo/index.html",
    "demo.js": "demo/demo.js",
    "demo.css": "demo/demo.css",
    "auth-client.js": "auth-client.js",
}

blp = Blueprint("demo", __name__)


@blp.get("/demo", defaults={"name": ""})
@blp.get("/demo/<name>")
def demo_file(name: str):
    """Serve the demo page and its modules."""
    if name not in DEMO_FILES:
        abort(404)
    response = send_from_directory(CLIENTS_JS, DEMO_FILES[name], max_age=0)
    if name.endswith(".js"):
        response.mimetype = "text/javascript"
    return response


def register_demo(app: Flask) -> None:
    """Serve /demo unless DEMO_ENABLED is off."""
    if app.config["DEMO_ENABLED"]:
        app.register_blueprint(blp)
