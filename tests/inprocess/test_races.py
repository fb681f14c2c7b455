"""Concurrent duplicate writes end in one success and clean 409s, never a 500,
on SQLite and on PostgreSQL."""

import threading

import pytest

from core import db
from models import StoreModel, TagModel, UserModel, items_tags
from tests.helpers import create_item, create_store, create_tag
from tests.services import postgres_database

THREADS = 8


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.live)])
def app_config(request, app_config):
    if request.param == "sqlite":
        yield app_config
    else:
        with postgres_database() as url:
            yield {**app_config, "SQLALCHEMY_DATABASE_URI": url}


def at_once(app, method: str, path: str, headers: dict, body=None) -> list:
    """THREADS requests released together; their responses.

    `body` is the JSON body of every request, or a function of the request's index.
    """
    barrier = threading.Barrier(THREADS)
    responses: list = [None] * THREADS

    def send(index: int) -> None:
        client = app.test_client()
        barrier.wait()
        json = body(index) if callable(body) else body
        responses[index] = client.open(path, method=method, json=json, headers=headers)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return responses


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(model))


def test_two_registrations_of_one_name_in_any_case(app):
    def body(index: int) -> dict:
        name = "Racer" if index % 2 else "racer"
        return {"username": name, "password": "long enough password"}

    responses = at_once(app, "POST", "/register", {}, body)

    assert sorted(r.status_code for r in responses) == [201] + [409] * (THREADS - 1)
    for response in responses:
        if response.status_code == 409:
            assert response.get_json()["error"] == "username_taken"
    assert count(app, UserModel) == 1


def test_two_stores_of_one_name(app, headers):
    responses = at_once(app, "POST", "/store", headers, {"name": "Same"})

    assert sorted(r.status_code for r in responses) == [201] + [409] * (THREADS - 1)
    for response in responses:
        if response.status_code == 409:
            assert response.get_json()["error"] == "store_exists"
    assert count(app, StoreModel) == 1


def test_two_tags_of_one_name_in_one_store(app, client, headers):
    store = client.post("/store", json={"name": "Shop"}, headers=headers).get_json()

    responses = at_once(
        app, "POST", f"/store/{store['id']}/tag", headers, {"name": "wood"}
    )

    assert sorted(r.status_code for r in responses) == [201] + [409] * (THREADS - 1)
    assert count(app, TagModel) == 1


def test_linking_one_tag_concurrently_keeps_one_link(app, client, headers):
    store = create_store(client, headers, "Shop")
    item = create_item(client, headers, store["id"], "Chair", price=1)
    tag = create_tag(client, headers, store["id"], "wood")

    responses = at_once(app, "POST", f"/item/{item['id']}/tag/{tag['id']}", headers)

    assert [r.status_code for r in responses] == [201] * THREADS
    assert count(app, items_tags) == 1
