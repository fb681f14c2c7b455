"""The core API on a real PostgreSQL: the inputs SQLite forgives and it does not."""

import pytest

from core import db
from tests.helpers import (
    assert_error,
    bearer,
    create_item,
    create_store,
    create_tag,
    link,
)
from tests.services import postgres_database


@pytest.fixture
def app_config(app_config):
    with postgres_database() as url:
        yield {**app_config, "SQLALCHEMY_DATABASE_URI": url}


def test_the_app_runs_on_postgresql(app):
    with app.app_context():
        assert db.engine.dialect.name == "postgresql"


@pytest.mark.parametrize("username", ["ali\x00ce", "alice\n", "al ice", "é" * 5])
def test_login_with_an_impossible_username_is_a_plain_401(client, auth, username):
    auth.register("alice")

    response = client.post(
        "/login", json={"username": username, "password": "whatever password"}
    )

    assert_error(response, 401, "invalid_credentials", "Invalid credentials.")


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/store", {"name": "Bad\x00Shop"}, "name"),
        ("/store", {"name": "Tab\tShop"}, "name"),
    ],
)
def test_control_characters_in_names_are_422(client, headers, path, body, field):
    response = client.post(path, json=body, headers=headers)

    body = assert_error(response, 422, "validation_error")
    assert list(body["errors"]["json"]) == [field]


def test_nul_in_an_item_description_is_422(client, headers):
    store = client.post("/store", json={"name": "Shop"}, headers=headers).get_json()
    item = {
        "name": "Chair",
        "price": 1,
        "store_id": store["id"],
        "description": "a\x00",
    }

    response = client.post("/item", json=item, headers=headers)

    body = assert_error(response, 422, "validation_error")
    assert list(body["errors"]["json"]) == ["description"]


def test_pages_far_past_the_end_are_empty(client, headers):
    response = client.get(f"/store?page={2**62}&page_size=100", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == []


def test_store_delete_cascades_on_postgresql(app, auth, client):
    _, admin = auth.user("root", admin=True)
    headers = bearer(admin["access_token"])
    store = create_store(client, headers, "Shop")
    item = create_item(client, headers, store["id"], "Chair", price=2.5)
    tag = create_tag(client, headers, store["id"], "wood")
    link(client, headers, item["id"], tag["id"])

    response = client.delete(f"/store/{store['id']}", headers=headers)

    assert response.status_code == 200
    assert client.get(f"/item/{item['id']}", headers=headers).status_code == 404
    assert client.get(f"/tag/{tag['id']}", headers=headers).status_code == 404
