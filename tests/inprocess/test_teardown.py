"""A database that fails while a request's work is being closed never costs the
request its answer (issue 22, finding 9).

Flask closes the database session and the read connection after the view's
answer is built (teardown). When the database goes away just then, their ROLLBACK
raises; that error used to replace the answer, so a committed write was answered
500. Here every ROLLBACK fails from the moment the view has answered (Flask's
`request_finished` signal): the client gets the view's answer, the failure is
logged with the request id, the failed connections are invalidated (never handed
to another request) and the next request works. On PostgreSQL the request's own
server processes are terminated instead, as a crash of the server would.
"""

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from flask import Flask, g, request_finished
from sqlalchemy import create_engine, event, text

from app import create_app
from core import db
from models import ItemModel
from models.base import close_read_connection, init_database_teardown
from tests.helpers import AuthActions, bearer, create_store, create_tag
from tests.services import POSTGRES_URL, postgres_database

ITEM = {"name": "Chair", "price": 15.99}


@pytest.fixture(autouse=True)
def no_user_cache(app_config) -> None:
    """Every token check reads its user through the request's read connection, so
    a protected request closes both that and the session."""
    app_config["USER_CHECK_CACHE_SECONDS"] = 0


@dataclass
class Pool:
    """What the pool did with its DBAPI connections, from its events."""

    invalidated: list = field(default_factory=list)
    checked_out: list = field(default_factory=list)

    def reused(self) -> list:
        """Invalidated connections that were handed out again (never, we hope)."""
        return [c for c in self.checked_out if any(c is i for i in self.invalidated)]


@contextmanager
def watched_pool(app: Flask) -> Iterator[Pool]:
    """Record the invalidations and checkouts of the app's pool."""
    pool = Pool()
    with app.app_context():
        engine = db.engine

    def invalidated(dbapi_connection, _record, _exception) -> None:
        pool.invalidated.append(dbapi_connection)

    def checked_out(dbapi_connection, _record, _proxy) -> None:
        pool.checked_out.append(dbapi_connection)

    event.listen(engine, "invalidate", invalidated)
    event.listen(engine, "checkout", checked_out)
    try:
        yield pool
    finally:
        event.remove(engine, "invalidate", invalidated)
        event.remove(engine, "checkout", checked_out)


@contextmanager
def rollbacks_fail_after_the_view(
    app: Flask, error: BaseException, *, at_once: bool = False
) -> Iterator[None]:
    """Within the block, every ROLLBACK raises `error` once a view has answered
    (`at_once`: from the start)."""
    with app.app_context():
        dialect = db.engine.dialect
    original = dialect.do_rollback
    answered = at_once

    def do_rollback(dbapi_connection) -> None:
        if answered:
            raise error
        original(dbapi_connection)

    def arm(_sender, **_extra) -> None:
        nonlocal answered
        answered = True

    dialect.do_rollback = do_rollback  # type: ignore[method-assign]
    try:
        with request_finished.connected_to(arm, app):
            yield
    finally:
        del dialect.do_rollback  # the class's own again


def closing_errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "api.database"]


def item_and_tag(client, headers: dict, store: dict) -> tuple[dict, dict]:
    """An item and a tag of `store`, not linked yet."""
    item = client.post("/item", json={**ITEM, "store_id": store["id"]}, headers=headers)
    assert item.status_code == 201, item.get_json()
    return item.get_json(), create_tag(client, headers, store["id"], "wood")


def assert_logged(caplog, response, closing: set[str]) -> None:
    """One error record per failed close, carrying the request's id."""
    records = closing_errors(caplog)
    assert {r.closing for r in records} == closing
    for record in records:
        assert record.levelno == logging.ERROR
        assert record.request_id == response.headers["X-Request-ID"]
        assert "the answer stands" in record.getMessage()
        assert record.exc_info is not None


FAILURES = [
    # A driver error that does not read as a lost connection: discarded anyway.
    pytest.param(sqlite3.OperationalError("disk I/O error"), id="driver-error"),
    # What the SQLite dialect reads as a lost connection.
    pytest.param(
        sqlite3.ProgrammingError("Cannot operate on a closed database."),
        id="disconnect",
    ),
    pytest.param(RuntimeError("not from the driver"), id="other-error"),
]


@pytest.mark.parametrize("error", FAILURES)
def test_a_committed_write_keeps_its_201_when_closing_fails(
    app, client, headers, store, caplog, error
):
    caplog.set_level(logging.ERROR, logger="api.database")
    item, tag = item_and_tag(client, headers, store)
    with watched_pool(app) as pool:
        with rollbacks_fail_after_the_view(app, error):
            # Linking reads the tag again after its commit: the database session
            # holds a connection when the request ends (a create answers without
            # one).
            response = client.post(
                f"/item/{item['id']}/tag/{tag['id']}", headers=headers
            )

        assert response.status_code == 201, response.get_data(as_text=True)
        assert [linked["id"] for linked in response.get_json()["items"]] == [item["id"]]
        # The token check's read connection and the database session's both
        # failed.
        assert_logged(caplog, response, {"read connection", "session"})
        assert len(pool.invalidated) == 2
        with app.app_context():
            assert db.engine.pool.checkedout() == 0

        # The pool is healthy: the next requests work, on fresh connections.
        pool.checked_out.clear()
        again = client.get(f"/item/{item['id']}", headers=headers)
        assert again.status_code == 200
        assert [linked["id"] for linked in again.get_json()["tags"]] == [tag["id"]]
        another = client.post(
            "/item",
            json={**ITEM, "name": "Table", "store_id": store["id"]},
            headers=headers,
        )
        assert another.status_code == 201, another.get_json()
        assert pool.reused() == []
    assert len(closing_errors(caplog)) == 2


def test_a_read_keeps_its_answer_when_closing_fails(
    app, client, headers, store, caplog
):
    caplog.set_level(logging.ERROR, logger="api.database")
    item = client.post("/item", json={**ITEM, "store_id": store["id"]}, headers=headers)
    assert item.status_code == 201
    item_id = item.get_json()["id"]

    with rollbacks_fail_after_the_view(app, sqlite3.OperationalError("disk I/O")):
        response = client.get(f"/item/{item_id}", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == item.get_json()
    assert_logged(caplog, response, {"read connection"})
    assert client.get(f"/item/{item_id}", headers=headers).status_code == 200


def test_an_app_context_closes_without_raising_either(app, caplog):
    """The same teardown ends an app context outside a request (CLI, jobs)."""
    caplog.set_level(logging.ERROR, logger="api.database")
    error = sqlite3.OperationalError("disk I/O")
    with rollbacks_fail_after_the_view(app, error, at_once=True):
        with app.app_context():
            assert db.session.scalars(db.select(ItemModel)).all() == []

    (record,) = closing_errors(caplog)
    assert record.closing == "session"
    assert record.request_id is None
    with app.app_context():
        assert db.engine.pool.checkedout() == 0


def test_without_a_session_teardown_to_guard_it_says_so(tmp_path, caplog):
    """Should Flask-SQLAlchemy stop registering its own teardown, the start-up
    log says that this guard has nothing to guard; other teardowns stay."""
    bare = Flask("bare")
    bare.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'bare.db'}"
    db.init_app(bare)

    def someone_elses(_error) -> None:
        """Another extension's teardown."""

    bare.teardown_appcontext_funcs[:] = [someone_elses]

    init_database_teardown(bare)

    assert bare.teardown_appcontext_funcs == [someone_elses, close_read_connection]
    assert "registered no teardown of its own" in caplog.text


# --- PostgreSQL: the request's server processes die after the view answered ---


def _backend_pids() -> list[int]:
    """The server processes of this request's database session and read
    connection."""
    connections = [db.session.connection()]
    if g.get("read_connection") is not None:
        connections.append(g.read_connection)
    return [c.connection.driver_connection.info.backend_pid for c in connections]


@contextmanager
def server_processes_die_after_the_view(app: Flask) -> Iterator[None]:
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")

    def terminate(_sender, **_extra) -> None:
        with admin.connect() as connection:
            for pid in _backend_pids():
                connection.execute(
                    text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}
                )

    try:
        with request_finished.connected_to(terminate, app):
            yield
    finally:
        admin.dispose()


@pytest.mark.live
def test_on_postgresql_a_crash_after_the_commit_keeps_the_201(app_config, caplog):
    caplog.set_level(logging.ERROR, logger="api.database")
    with postgres_database() as url:
        app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": url})
        try:
            with app.app_context():
                db.create_all()
            client = app.test_client()
            _, tokens = AuthActions(app, client).user()
            headers = bearer(tokens["access_token"])
            store = create_store(client, headers, "Corner shop")

            item, tag = item_and_tag(client, headers, store)

            with server_processes_die_after_the_view(app):
                response = client.post(
                    f"/item/{item['id']}/tag/{tag['id']}", headers=headers
                )

            assert response.status_code == 201, response.get_data(as_text=True)
            assert [i["id"] for i in response.get_json()["items"]] == [item["id"]]
            assert_logged(caplog, response, {"read connection", "session"})
            again = client.get(f"/item/{item['id']}", headers=headers)
            assert again.status_code == 200
            assert [t["id"] for t in again.get_json()["tags"]] == [tag["id"]]
            with app.app_context():
                assert db.engine.pool.checkedout() == 0
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
