"""The application factory: `gunicorn "app:create_app()"`, `flask --app app ...`."""

import os

import flask_swagger_ui
from dotenv import load_dotenv
from flask import Blueprint, Flask, request
from sqlalchemy import event
from werkzeug.exceptions import RequestEntityTooLarge

import models  # noqa: F401  (registers the tables with the metadata)
from auth import register_jwt_callbacks
from blocklist import init_blocklist
from commands import blocklist_cli, users_cli
from config import check_config, load_config
from demo import register_demo
from errors import register_error_handlers
from extensions import api, db, jwt, migrate, passwords
from json_provider import ORJSONProvider
from models.base import close_read_connection
from observability import init_observability
from resources import IdConverter, id_parameter_schema
from resources.health import blp as health_blp
from resources.items import blp as items_blp
from resources.stores import blp as stores_blp
from resources.tags import blp as tags_blp
from resources.users import blp as users_blp
from security import init_security


def create_app(config: dict | None = None) -> Flask:
    """Build the app: settings for APP_ENV, then the caller's overrides."""
    load_dotenv()
    config = config or {}
    app = Flask(__name__)
    app.json = ORJSONProvider(app)  # keys keep their (documented) order
    app.config.from_object(load_config(config.get("APP_ENV")))
    app.config.update(config)
    for warning in check_config(app.config):
        app.logger.warning(warning)

    init_observability(app)
    _register_extensions(app)
    register_jwt_callbacks(jwt)
    register_error_handlers(app)
    init_security(app)
    _register_blueprints(app)
    _register_pages(app)
    _register_commands(app)
    return app


def _register_extensions(app: Flask) -> None:
    """Bind the extension objects and the revocation store."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # A connection the server dropped is replaced, not handed to a request.
        app.config["SQLALCHEMY_ENGINE_OPTIONS"].setdefault("pool_pre_ping", True)
    db.init_app(app)
    app.teardown_appcontext(close_read_connection)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            event.listen(db.engine, "connect", _configure_sqlite)
    migrate.init_app(app, db, render_as_batch=True)
    jwt.init_app(app)
    api.init_app(app)
    passwords.init_app(app)
    init_blocklist(app)
    app.before_request(_refuse_oversized_body)


def _register_blueprints(app: Flask) -> None:
    """The API's resources, and Swagger UI's assets served locally (no CDN)."""
    app.url_map.converters["id"] = IdConverter
    api.register_converter(IdConverter, id_parameter_schema)
    for blp in (users_blp, stores_blp, items_blp, tags_blp, health_blp):
        api.register_blueprint(blp)
    app.register_blueprint(
        Blueprint(
            "swagger_ui_assets",
            __name__,
            static_folder=os.path.join(
                os.path.dirname(flask_swagger_ui.__file__), "dist"
            ),
            static_url_path=app.config["OPENAPI_SWAGGER_UI_URL"].rstrip("/"),
        )
    )


def _register_pages(app: Flask) -> None:
    """Browser pages outside the API: the silent-refresh demo."""
    register_demo(app)


def _register_commands(app: Flask) -> None:
    """CLI commands: `flask --app app users create-admin`, `... blocklist purge`."""
    app.cli.add_command(users_cli)
    app.cli.add_command(blocklist_cli)


def _configure_sqlite(dbapi_connection, _record) -> None:
    """Enforce foreign keys, and let readers and a writer work side by side."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _refuse_oversized_body() -> None:
    """413 before any work, even on endpoints that never read the body."""
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        raise RequestEntityTooLarge(f"The request body is larger than {limit} bytes.")
