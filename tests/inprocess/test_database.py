"""The database layer: failed writes leave nothing behind; constraints hold."""

from contextlib import contextmanager

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

import models.base as models_base
import models.session as session_module
from app import create_app
from core import Conflict, NotFound, db
from models import ItemModel, StoreModel
from models.base import bookkeeping_transaction, write
from tests.helpers import bearer, create_item, create_store
from tests.services import postgres_database


def _store_names() -> list[str]:
    return list(db.session.scalars(db.select(StoreModel.name).order_by(StoreModel.id)))


def test_a_conflict_rolls_back_the_whole_write(app):
    with app.app_context():
        with write("taken"):
            db.session.add(StoreModel(name="first"))
        with pytest.raises(Conflict, match="taken"):
            with write("taken", "store_exists"):
                db.session.add(StoreModel(name="second"))
                db.session.flush()
                db.session.add(StoreModel(name="first"))
        assert _store_names() == ["first"]


def test_any_failure_rolls_back_and_propagates(app):
    with app.app_context():
        with pytest.raises(RuntimeError):
            with write("unused"):
                db.session.add(StoreModel(name="half"))
                db.session.flush()
                raise RuntimeError("the disk is on fire")
        assert _store_names() == []


def test_sqlite_enforces_foreign_keys(app):
    with app.app_context():
        db.session.add(ItemModel(name="orphan", price=1, store_id=999))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_the_database_refuses_negative_prices(app):
    with app.app_context():
        store = StoreModel(name="s")
        db.session.add(store)
        db.session.commit()
        db.session.add(ItemModel(name="x", price=-1, store_id=store.id))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_a_row_deleted_between_read_and_write_is_a_404(app):
    with app.app_context():
        store = StoreModel(name="s")
        db.session.add(store)
        db.session.commit()
        # Someone else deletes it, outside this database session.
        with db.engine.begin() as connection:
            connection.execute(db.delete(StoreModel).where(StoreModel.id == store.id))
        with pytest.raises(NotFound, match="deleted meanwhile"):
            with write("unused"):
                store.name = "renamed"
        assert _store_names() == []


@pytest.mark.parametrize(
    "path", ["/item/1", "/item/999", "/store", "/me", "/no/such/route"]
)
def test_every_request_gives_its_connections_back(app, client, headers, path):
    """The read connection (token check, GET /item/<id>) and the database
    session's connection are both returned at the end of the request, whatever
    the answer."""
    with app.app_context():
        pool = db.engine.pool
    for _ in range(20):
        client.get(path, headers=headers).close()

    assert pool.checkedout() == 0


def test_the_read_connection_sees_what_was_committed_meanwhile(app, client, headers):
    """GET /item/<id> reads outside the database session: a commit made elsewhere
    since the last request is visible at once."""
    store = create_store(client, headers, "s")
    item_id = create_item(client, headers, store["id"], "x")["id"]
    assert client.get(f"/item/{item_id}", headers=headers).status_code == 200
    with app.app_context():
        db.session.execute(db.update(ItemModel).values(name="renamed"))
        db.session.commit()

    response = client.get(f"/item/{item_id}", headers=headers)

    assert response.status_code == 200
    assert response.get_json()["name"] == "renamed"


# --- how commits reach the disk -------------------------------------------------


def _synchronous(connection) -> int:
    """SQLite's synchronous level of a connection (1 NORMAL, 2 FULL)."""
    driver = connection.connection.driver_connection
    return driver.execute("PRAGMA synchronous").fetchone()[0]


def test_every_sqlite_connection_commits_through_to_the_disk(app):
    with app.app_context(), db.engine.connect() as connection:
        assert _synchronous(connection) == 2


def test_a_bookkeeping_commit_skips_the_wait_and_leaves_the_connection_as_it_was(app):
    with app.app_context():
        with bookkeeping_transaction() as connection:
            assert _synchronous(connection) == 1
            connection.execute(db.insert(StoreModel).values(name="kept"))
            used = connection.connection.driver_connection
        with db.engine.connect() as connection:
            # The same connection, from the pool, back to FULL.
            assert connection.connection.driver_connection is used
            assert _synchronous(connection) == 2
        assert _store_names() == ["kept"]


def test_a_failed_bookkeeping_transaction_rolls_back_and_restores(app):
    with app.app_context():
        with pytest.raises(IntegrityError):
            with bookkeeping_transaction() as connection:
                connection.execute(db.insert(StoreModel).values(name="twice"))
                connection.execute(db.insert(StoreModel).values(name="twice"))
        with db.engine.connect() as connection:
            assert _synchronous(connection) == 2
        assert _store_names() == []


def test_a_refresh_touches_its_session_in_a_bookkeeping_commit(
    app, auth, client, monkeypatch
):
    _, tokens = auth.user("alice")
    used: list[str] = []
    original = models_base.bookkeeping_transaction

    @contextmanager
    def recording():
        with original() as connection:
            used.append(str(_synchronous(connection)))
            yield connection

    monkeypatch.setattr(session_module, "bookkeeping_transaction", recording)

    assert auth.refresh(tokens["refresh_token"]).status_code == 200
    assert used == ["1"]
    sessions = client.get("/me/sessions", headers=bearer(tokens["access_token"]))
    assert sessions.status_code == 200 and len(sessions.get_json()) == 1


@pytest.mark.live
def test_on_postgresql_a_bookkeeping_commit_is_asynchronous_for_itself_only(
    app_config,
):
    with postgres_database() as url:
        app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": url})
        try:
            with app.app_context():
                db.create_all()
                with bookkeeping_transaction() as connection:
                    setting = connection.exec_driver_sql("SHOW synchronous_commit")
                    assert setting.scalar() == "off"
                    connection.execute(db.insert(StoreModel).values(name="kept"))
                with db.engine.connect() as connection:
                    setting = connection.exec_driver_sql("SHOW synchronous_commit")
                    assert setting.scalar() == "on"
                assert _store_names() == ["kept"]
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


@pytest.fixture
def database_store_config(app_config):
    app_config["BLOCKLIST_BACKEND"] = "database"
    return app_config


def test_with_the_database_store_a_request_takes_one_connection(
    database_store_config, app, auth, client
):
    """The revocation check reads through the request's read connection."""
    _, tokens = auth.user("alice")
    headers = bearer(tokens["access_token"])
    item = create_item(client, headers, create_store(client, headers, "Shop")["id"])
    checkouts: list[object] = []

    def checkout(*args) -> None:
        checkouts.append(args)

    with app.app_context():
        event.listen(db.engine, "checkout", checkout)
        try:
            response = client.get(f"/item/{item['id']}", headers=headers)
        finally:
            event.remove(db.engine, "checkout", checkout)
    assert response.status_code == 200
    assert len(checkouts) == 1


def test_with_the_database_store_a_revocation_is_seen_by_the_next_request(
    database_store_config, app, auth, client
):
    _, tokens = auth.user("alice")
    headers = bearer(tokens["access_token"])
    assert client.get("/store", headers=headers).status_code == 200
    assert client.post("/logout", headers=headers).status_code == 200

    response = client.get("/store", headers=headers)

    assert response.status_code == 401
    assert response.get_json()["error"] == "token_revoked"


def test_a_database_errors_message_never_carries_the_statements_values(app):
    """What a user typed (a username at a login) never reaches an error's log
    line through SQLAlchemy's message."""
    with app.app_context(), pytest.raises(SQLAlchemyError) as raised:
        db.session.execute(
            db.text("SELECT * FROM no_such_table WHERE name = :name"),
            {"name": "MyS3cret-Passw0rd"},
        )
    assert "MyS3cret-Passw0rd" not in str(raised.value)
    assert "hidden due to hide_parameters" in str(raised.value)
