"""One app per pytest worker, kept from one test to the next while no test could
tell it from a new one: building the app (its OpenAPI document, its URL rules)
is most of what an in-process test costs.

An app is handed to the next test only when that test asks for the same settings
and the app is as it was built: the same settings values, routes, hooks and
extension objects, and no other app built since (each `create_app` rebinds the
extension objects the apps share, `api` and `limiter` among them). Before it is
handed on, its database becomes an empty copy of the schema (a new file: a
connection a test left open keeps the old one), and the state it keeps in memory
is made anew (the in-memory revocation store, the caches, the API tokens' use
record, the rate limits counted in memory). Anything else gets a new app, as
every test had before.
"""

import copy
import os
import shutil
from pathlib import Path

from flask import Flask
from limits.storage import MemoryStorage

from app import create_app
from auth.api_tokens import init_api_tokens
from auth.claims_cache import init_claims_cache
from auth.user_cache import init_user_cache
from blocklist import init_blocklist
from core import api, db, limiter

SQLITE = "sqlite:///"
# What each test starts from: made anew, so no test sees another's.
IN_MEMORY_STATE = (init_blocklist, init_claims_cache, init_user_cache, init_api_tokens)
# Extensions that IN_MEMORY_STATE replaces: compared by kind, not identity.
REPLACED_EXTENSIONS = {
    "blocklist",
    "verified_token_claims",
    "user_check_cache",
    "api_token_uses",
}


def remove_database(path: Path) -> None:
    """No database at `path`, nor its write-ahead log (a connection a test left
    open keeps the file it had)."""
    for name in (f"{path}-wal", f"{path}-shm", str(path)):
        if os.path.exists(name):
            os.remove(name)


def make_schema(path: Path, config: dict) -> Path:
    """A SQLite file with every table and no row, at `path`."""
    app = create_app({**config, "SQLALCHEMY_DATABASE_URI": f"{SQLITE}{path}"})
    with app.app_context():
        db.create_all()
        db.engine.dispose()
    return path


def _fingerprint(app: Flask) -> tuple:
    """What a test may change on an app that another test would notice."""
    return (
        copy.deepcopy(dict(app.config)),
        sorted(app.view_functions),
        repr(app.url_map.converters),
        {key: list(funcs) for key, funcs in app.before_request_funcs.items()},
        {key: list(funcs) for key, funcs in app.after_request_funcs.items()},
        list(app.teardown_appcontext_funcs),
        {key: list(funcs) for key, funcs in app.teardown_request_funcs.items()},
        _error_handlers(app),
        {
            name: type(value) if name in REPLACED_EXTENSIONS else id(value)
            for name, value in app.extensions.items()
        },
        id(app.json),
    )


def _error_handlers(app: Flask) -> dict:
    """The error handlers; not the empty entries that looking one up leaves in
    Flask's nested defaultdicts."""
    return {
        (blueprint, code): dict(handlers)
        for blueprint, codes in app.error_handler_spec.items()
        for code, handlers in codes.items()
        if handlers
    }


def _as_new(app: Flask) -> Flask:
    """The app, with the state it keeps in memory made anew."""
    for make_anew in IN_MEMORY_STATE:
        make_anew(app)
    if limiter._storage is not None:
        limiter._storage.reset()
    # Flask refuses new routes on an app that has served a request: a test may
    # add its own, as on a new app (and the app is not reused after it).
    app._got_first_request = False
    return app


class AppReuse:
    """The worker's app, its settings and its fingerprint, if one is kept."""

    def __init__(self, database: Path, schema: Path) -> None:
        self.database = database
        self.schema = schema
        self._app: Flask | None = None
        self._settings: dict = {}
        self._fingerprint: tuple = ()

    @property
    def url(self) -> str:
        """The database URI of the worker's app (the default in `app_config`)."""
        return f"{SQLITE}{self.database}"

    def forget_database(self) -> None:
        """Each test starts without a database file at `url`, as on a new machine."""
        remove_database(self.database)

    def get(self, config: dict) -> Flask:
        """An app with these settings on an empty database."""
        url = config.get("SQLALCHEMY_DATABASE_URI", "")
        if url.startswith(SQLITE) and not os.path.exists(url[len(SQLITE) :]):
            shutil.copyfile(self.schema, url[len(SQLITE) :])
        if url != self.url:
            return self._new_app(config)
        if self._reusable(config):
            return _as_new(self._app)
        self._app = app = self._new_app(config)
        self._settings = copy.deepcopy(config)
        self._fingerprint = _fingerprint(app)
        return app

    def release(self, app: Flask) -> None:
        """The test is over: close the app's connections; keep the app only if the
        test left it as it was built and built no other."""
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        if app is self._app and not (
            api._app is app and _fingerprint(app) == self._fingerprint
        ):
            self._app = None

    def _reusable(self, config: dict) -> bool:
        """The kept app has these settings, no app was built since, and its rate
        limits are off or counted in this process (a reset of a store other
        tests share would empty it for them)."""
        storage = limiter._storage
        return (
            self._app is not None
            and self._settings == config
            and api._app is self._app
            and (storage is None or isinstance(storage, MemoryStorage))
        )

    @staticmethod
    def _new_app(config: dict) -> Flask:
        app = create_app(config)
        with app.app_context():
            db.create_all()  # a check only where the schema's copy is there
        return app
