"""The application factory: `gunicorn "app:create_app()"`, `flask --app app ...`."""

from dotenv import load_dotenv
from flask import Flask
from sqlalchemy import event

import models  # noqa: F401  (registers the tables with the metadata)
from auth import (
    current_claims_cache,
    init_api_tokens,
    init_claims_cache,
    init_dpop,
    init_secret_keys,
    init_signing_keys,
    init_token_headers,
    init_user_cache,
    passwords,
    register_auth_commands,
    register_jwt_callbacks,
)
from blocklist import init_blocklist, register_blocklist_commands
from core import pages
from core.api import EnvelopeApi
from core.errors import register_error_handlers
from core.extensions import api, db, jwt, limiter, migrate
from core.hardening import init_hardening
from core.json_provider import ORJSONProvider
from core.patches import apply_patches
from core.relying_party import passkeys_enabled
from core.settings import load_settings
from core.telemetry.endpoint import init_metrics
from core.telemetry.logs import init_observability
from models.base import SQLITE_SYNCHRONOUS, init_database_teardown
from resources import IdConverter, id_parameter_schema
from resources.api_tokens import blp as api_tokens_blp
from resources.discovery import blp as discovery_blp
from resources.health import blp as health_blp
from resources.items import blp as items_blp
from resources.mfa import blp as mfa_blp
from resources.passkeys import blp as passkeys_blp
from resources.sessions import blp as sessions_blp
from resources.stores import blp as stores_blp
from resources.tags import blp as tags_blp
from resources.tokens import blp as tokens_blp
from resources.users import blp as users_blp


def create_app(config: dict | None = None) -> Flask:
    """Build the app: settings from the environment, with the caller's overrides."""
    load_dotenv()
    settings = load_settings(config)
    app = Flask(__name__, static_folder=pages.STATIC, template_folder=pages.TEMPLATES)
    app.json = ORJSONProvider(app)  # keys keep their (documented) order
    app.config.update(settings.values)

    init_observability(app)
    # After the log format is set: in production, warnings are JSON lines too.
    for warning in settings.warnings:
        app.logger.warning(warning)
    init_metrics(app)
    init_hardening(app)
    _register_extensions(app)
    register_jwt_callbacks(jwt)
    init_token_headers(app)
    register_error_handlers(app)
    apply_patches(app, claims_cache=current_claims_cache)
    _register_blueprints(app, api)
    pages.register_pages(app)
    _register_commands(app)
    return app


def _register_extensions(app: Flask) -> None:
    """Bind the extension objects, the revocation store, the token layer's caches
    and the API tokens' use record."""
    db.init_app(app)
    init_database_teardown(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            event.listen(db.engine, "connect", _configure_sqlite)
    migrate.init_app(app, db, render_as_batch=True)
    jwt.init_app(app)
    init_signing_keys(app)
    init_dpop(app)  # its nonces are keyed by the signing key
    api.init_app(app)
    limiter.init_app(app)
    passwords.init_app(app)
    init_secret_keys(app)
    init_blocklist(app)
    init_claims_cache(app)
    init_user_cache(app)
    init_api_tokens(app)


def _register_blueprints(app: Flask, api: EnvelopeApi) -> None:
    """The API's resources (passkeys where a relying party is set), with the
    `<id:...>` URL converter they share."""
    app.url_map.converters["id"] = IdConverter
    api.register_converter(IdConverter, id_parameter_schema)
    for blp in (
        tokens_blp,
        users_blp,
        sessions_blp,
        mfa_blp,
        passkeys_blp,
        api_tokens_blp,
        stores_blp,
        items_blp,
        tags_blp,
        health_blp,
        discovery_blp,
    ):
        if blp is passkeys_blp and not passkeys_enabled(app.config):
            continue  # no relying party, no passkeys (core/relying_party.py)
        api.register_blueprint(blp)


def _register_commands(app: Flask) -> None:
    """`flask --app app ...`: each command lives with what it commands."""
    register_auth_commands(app)
    register_blocklist_commands(app)


def _configure_sqlite(dbapi_connection, _record) -> None:
    """Enforce foreign keys, and let readers and a writer work side by side."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    # Every commit waits for the disk (a bookkeeping one may not: models/base.py).
    cursor.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
    cursor.close()
