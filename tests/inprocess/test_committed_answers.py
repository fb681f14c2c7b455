"""A write that committed is answered with what it stored, even when the database
fails right after the COMMIT (issue 22, finding 9).

The answer of a create is built from the objects as they were committed, never
read back: here every statement fails from the moment the request's COMMIT is
done, and each create still answers 201 with its whole body.
"""

import contextlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from sqlalchemy import event
from sqlalchemy.orm import Session

from core import db
from models import StoreModel
from models.base import write
from tests.helpers import create_store


@contextmanager
def database_dies_after_the_commit(app: Flask) -> Iterator[list]:
    """Within the block, every statement after the database session's COMMIT raises
    (the driver's own error); yields the statements that were refused."""
    refused: list[str] = []
    committed = False
    with app.app_context():
        engine = db.engine

    def on_commit(_session) -> None:
        nonlocal committed
        committed = True

    def before_execute(_conn, _cursor, statement, *_args) -> None:
        if committed:
            refused.append(statement)
            raise sqlite3.OperationalError("the database went away")

    event.listen(Session, "after_commit", on_commit)
    event.listen(engine, "before_cursor_execute", before_execute)
    try:
        yield refused
    finally:
        event.remove(Session, "after_commit", on_commit)
        event.remove(engine, "before_cursor_execute", before_execute)


@pytest.fixture
def app_config(app_config) -> dict:
    # The token check would read the user through the dead database otherwise.
    return {**app_config, "USER_CHECK_CACHE_SECONDS": 2}


def test_a_created_item_is_answered_201_when_the_database_dies_after_its_commit(
    app, client, headers, store
):
    client.get("/me", headers=headers)  # the user check's row is cached
    body = {"name": "Chair", "price": 15.99, "store_id": store["id"]}

    with database_dies_after_the_commit(app) as refused:
        response = client.post("/item", json=body, headers=headers)

    assert response.status_code == 201, response.get_json()
    answer = response.get_json()
    assert answer["name"] == "Chair" and answer["price"] == 15.99
    assert answer["store"] == {"id": store["id"], "name": store["name"]}
    assert answer["tags"] == []
    assert isinstance(answer["id"], int)
    assert refused == []  # nothing was read back
    item = client.get(f"/item/{answer['id']}", headers=headers)
    assert item.status_code == 200 and item.get_json() == answer


def test_a_created_store_is_answered_201_when_the_database_dies_after_its_commit(
    app, client, headers
):
    client.get("/me", headers=headers)

    with database_dies_after_the_commit(app) as refused:
        response = client.post("/store", json={"name": "Kiosk"}, headers=headers)

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["name"] == "Kiosk"
    assert refused == []


def test_a_registration_is_answered_201_when_the_database_dies_after_its_commit(
    app, client
):
    body = {"username": "carol", "password": "long enough password"}

    with database_dies_after_the_commit(app) as refused:
        response = client.post("/register", json=body)

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["username"] == "carol"
    assert refused == []


def test_a_created_tag_is_answered_201_when_the_database_dies_after_its_commit(
    app, client, headers
):
    shop = create_store(client, headers, "Shop")
    client.get("/me", headers=headers)

    with database_dies_after_the_commit(app) as refused:
        response = client.post(
            f"/store/{shop['id']}/tag", json={"name": "wood"}, headers=headers
        )

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["name"] == "wood"
    assert refused == []


@pytest.mark.parametrize("fails", [False, True], ids=["committed", "failed"])
def test_only_the_writes_own_commit_keeps_its_objects_loaded(app, fails):
    """Later commits of the same database session expire objects again, as
    SQLAlchemy does."""
    with app.app_context():
        with contextlib.suppress(RuntimeError), write("conflict"):
            db.session.add(StoreModel(name="Kiosk"))
            if fails:
                raise RuntimeError("the block failed")
        assert db.session().expire_on_commit is True
