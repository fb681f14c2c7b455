"""Fixtures: an app on a fresh database per test, a client, and `auth` helpers;
and the marks by folder (live/, browser/, fuzz/; inprocess/ has none).

Temporary files (each test's SQLite database among them) go to memory, /dev/shm,
where the machine has it and TMPDIR is not set: the tests commit often, and each
commit waits for the disk (the app's `synchronous=FULL`), which would otherwise be
a fifth of the fast subset's time. What is durable is tested apart, on the app's
own settings (tests/inprocess/test_database.py)."""

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.app_reuse import AppReuse, make_schema
from tests.dpop import ProofKey, bound_login
from tests.helpers import TEST_SETTINGS, AuthActions, bearer, create_store
from tests.services import postgres_database, redis_namespace

TESTS = Path(__file__).parent
MEMORY = Path("/dev/shm")

if "TMPDIR" not in os.environ and MEMORY.is_dir() and os.access(MEMORY, os.W_OK):
    # Before pytest picks its base temporary directory (xdist's workers inherit it).
    os.environ["TMPDIR"] = str(MEMORY)
    tempfile.tempdir = None
FOLDER_MARKS = {
    "live": pytest.mark.live,
    "browser": pytest.mark.browser,
    "fuzz": pytest.mark.fuzz,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in tests/live/, tests/browser/ and tests/fuzz/ by its folder."""
    for item in items:
        if item.path.is_relative_to(TESTS):
            mark = FOLDER_MARKS.get(item.path.relative_to(TESTS).parts[0])
            if mark is not None:
                item.add_marker(mark)


@pytest.fixture
def app_config(app_reuse) -> dict:
    """Overrides passed to create_app; a test may extend it before `app` is built.
    Its database file does not exist yet."""
    app_reuse.forget_database()
    return {**TEST_SETTINGS, "SQLALCHEMY_DATABASE_URI": app_reuse.url}


BACKENDS = [
    "memory",
    "database-sqlite",
    pytest.param("database-postgresql", marks=pytest.mark.live),
    pytest.param("redis", marks=pytest.mark.live),
]
SHARED_BACKENDS = BACKENDS[1:]
DATABASE_BACKENDS = BACKENDS[1:3]


def _backend_overrides(name: str, tmp_path) -> Iterator[dict]:
    if name == "memory":
        yield {"BLOCKLIST_BACKEND": "memory"}
    elif name == "database-sqlite":
        yield {"BLOCKLIST_BACKEND": "database"}
    elif name == "database-postgresql":
        with postgres_database() as url:
            yield {"BLOCKLIST_BACKEND": "database", "SQLALCHEMY_DATABASE_URI": url}
    elif name == "redis":
        with redis_namespace() as (url, prefix, _client):
            yield {
                "BLOCKLIST_BACKEND": "redis",
                "REDIS_URL": url,
                "REDIS_KEY_PREFIX": prefix,
            }
    else:
        raise ValueError(name)


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path) -> Iterator[dict]:
    """Config overrides for each revocation store (real PostgreSQL and Redis)."""
    yield from _backend_overrides(request.param, tmp_path)


@pytest.fixture(params=DATABASE_BACKENDS)
def database_backend(request, tmp_path) -> Iterator[dict]:
    """Config overrides for the database revocation store (SQLite, PostgreSQL)."""
    yield from _backend_overrides(request.param, tmp_path)


@pytest.fixture(params=SHARED_BACKENDS)
def shared_backend(request, tmp_path) -> Iterator[dict]:
    """Config overrides for each revocation store shared across processes."""
    yield from _backend_overrides(request.param, tmp_path)


@pytest.fixture(scope="session")
def app_reuse(tmp_path_factory) -> AppReuse:
    """The worker's app, kept from one test to the next where nothing could tell
    (tests/app_reuse.py)."""
    schema = make_schema(tmp_path_factory.mktemp("schema") / "empty.db", TEST_SETTINGS)
    return AppReuse(tmp_path_factory.mktemp("app") / "test.db", schema)


@pytest.fixture
def app(app_config, app_reuse) -> Iterator[Flask]:
    """The app on a fresh, empty database."""
    app = app_reuse.get(app_config)
    yield app
    app_reuse.release(app)


@pytest.fixture
def client(app) -> FlaskClient:
    """A test client for `app`."""
    return app.test_client()


@pytest.fixture
def auth(app, client) -> AuthActions:
    """Helpers to register users and get tokens."""
    return AuthActions(app, client)


@pytest.fixture
def tokens(auth) -> dict:
    """A regular user's token pair (the access token is fresh)."""
    return auth.user("alice")[1]


@pytest.fixture
def headers(tokens) -> dict:
    """A regular user's Authorization header, with a fresh access token."""
    return bearer(tokens["access_token"])


@pytest.fixture
def admin_headers(auth) -> dict:
    """An administrator's Authorization header."""
    return bearer(auth.user("root", admin=True)[1]["access_token"])


@pytest.fixture
def store(client, headers) -> dict:
    """One store, as POST /store answered."""
    return create_store(client, headers, "Corner shop")


@pytest.fixture
def key() -> ProofKey:
    """A client's DPoP key (ES256; RFC 9449)."""
    return ProofKey()


@pytest.fixture
def bound(auth, client, key) -> dict:
    """alice's one session, bound to `key` (a login with its proof): the answer."""
    auth.register()
    response = bound_login(client, key)
    assert response.status_code == 200, response.get_json()
    return response.get_json()
