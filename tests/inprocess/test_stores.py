"""Stores: listing, creating, reading and (as an administrator) deleting them."""

import json

import pytest
from sqlalchemy import func, select

from core import db
from models import ItemModel, StoreModel, TagModel, items_tags
from tests.helpers import (
    assert_error,
    bearer,
    create_item,
    create_store,
    create_tag,
    link,
    pagination,
)

# Larger than any id a 64-bit integer column can hold.
HUGE_ID = 2**63


# --- GET /store -------------------------------------------------------------


def test_list_stores_is_empty_at_first(client, headers):
    response = client.get("/store", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == []
    assert pagination(response)["total"] == 0


def test_list_stores_returns_plain_stores_ordered_by_id(client, headers):
    # Created in reverse alphabetical order: the list follows ids, not names.
    zoo = create_store(client, headers, "Zoo shop")
    bakery = create_store(client, headers, "Bakery")

    response = client.get("/store", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == [
        {"id": zoo["id"], "name": "Zoo shop"},
        {"id": bakery["id"], "name": "Bakery"},
    ]
    assert pagination(response) == {
        "total": 2,
        "total_pages": 1,
        "first_page": 1,
        "last_page": 1,
        "page": 1,
    }


def test_list_stores_is_paginated(client, headers):
    stores = [create_store(client, headers, f"Store {25 - n:02d}") for n in range(25)]

    pages = [
        client.get(f"/store?page={page}&page_size=10", headers=headers)
        for page in (1, 2, 3)
    ]

    assert [page.status_code for page in pages] == [200, 200, 200]
    assert [page.get_json() for page in pages] == [
        stores[0:10],
        stores[10:20],
        stores[20:25],
    ]
    common = {"total": 25, "total_pages": 3, "first_page": 1, "last_page": 3}
    assert [pagination(page) for page in pages] == [
        {**common, "page": 1, "next_page": 2},
        {**common, "page": 2, "previous_page": 1, "next_page": 3},
        {**common, "page": 3, "previous_page": 2},
    ]


def test_list_stores_accepts_the_largest_page_size(client, headers, store):
    response = client.get("/store?page_size=100", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == [store]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page_size=101", "page_size"),
        ("page_size=0", "page_size"),
        ("page_size=abc", "page_size"),
        ("page=0", "page"),
        ("page=abc", "page"),
    ],
)
def test_list_stores_rejects_bad_pagination(client, headers, query, field):
    response = client.get(f"/store?{query}", headers=headers)

    body = assert_error(response, 422, "validation_error")
    assert list(body["errors"]["query"]) == [field]


def test_list_stores_needs_a_token(client):
    response = client.get("/store")

    assert_error(response, 401, "authorization_required")


# --- POST /store ------------------------------------------------------------


def test_create_store(client, headers):
    response = client.post("/store", json={"name": "Corner shop"}, headers=headers)

    assert response.status_code == 201
    body = response.get_json()
    assert body == {"id": body["id"], "name": "Corner shop"}
    assert isinstance(body["id"], int)
    assert client.get(f"/store/{body['id']}", headers=headers).get_json() == {
        "id": body["id"],
        "name": "Corner shop",
        "items": [],
        "tags": [],
    }


def test_create_store_strips_surrounding_whitespace(client, headers):
    response = client.post("/store", json={"name": "  Shop  "}, headers=headers)

    assert response.status_code == 201
    assert response.get_json()["name"] == "Shop"
    assert client.get("/store", headers=headers).get_json()[0]["name"] == "Shop"


def test_create_store_accepts_80_characters(client, headers):
    response = client.post("/store", json={"name": "x" * 80}, headers=headers)

    assert response.status_code == 201
    assert response.get_json()["name"] == "x" * 80


def test_create_store_works_with_a_non_fresh_token(client, auth, tokens):
    access_token = auth.refresh(tokens["refresh_token"]).get_json()["access_token"]

    response = client.post(
        "/store", json={"name": "Corner shop"}, headers=bearer(access_token)
    )

    assert response.status_code == 201


@pytest.mark.parametrize("name", ["Corner shop", "  Corner shop "])
def test_create_store_refuses_a_taken_name(client, headers, store, name):
    response = client.post("/store", json={"name": name}, headers=headers)

    assert_error(
        response, 409, "store_exists", "A store with that name already exists."
    )
    assert client.get("/store", headers=headers).get_json() == [store]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 81}, "name"),
        ({"name": 5}, "name"),
        ({"name": None}, "name"),
        ({"name": ["Shop"]}, "name"),
        ({}, "name"),
        ({"name": "Shop", "owner": "bob"}, "owner"),
        ({"name": "Shop", "id": 7}, "id"),
    ],
    ids=lambda value: repr(value)[:30] if isinstance(value, dict) else None,
)
def test_create_store_validates_the_body(client, headers, payload, field):
    response = client.post("/store", json=payload, headers=headers)

    body = assert_error(response, 422, "validation_error")
    assert list(body["errors"]["json"]) == [field]
    assert client.get("/store", headers=headers).get_json() == []


def test_create_store_needs_a_token(client):
    response = client.post("/store", json={"name": "Corner shop"})

    assert_error(response, 401, "authorization_required")


def test_create_store_refuses_a_body_that_is_not_json(client, headers):
    response = client.post(
        "/store", data='{"name": ', content_type="application/json", headers=headers
    )

    assert_error(response, 400, "bad_request")
    assert client.get("/store", headers=headers).get_json() == []


def test_create_store_refuses_a_body_over_one_mebibyte(client, headers):
    payload = json.dumps({"name": "x" * (1024 * 1024)})

    response = client.post(
        "/store", data=payload, content_type="application/json", headers=headers
    )

    assert_error(response, 413, "payload_too_large")
    assert client.get("/store", headers=headers).get_json() == []


# --- GET /store/<id> --------------------------------------------------------


def test_get_store_includes_its_items_and_tags(client, headers, store):
    other = create_store(client, headers, "Other shop")
    chair = create_item(client, headers, store["id"], "Chair", price=15.99)
    table = create_item(client, headers, store["id"], "Table", price=120)
    create_item(client, headers, other["id"], "Lamp", price=9.5)
    furniture = create_tag(client, headers, store["id"], "furniture")
    create_tag(client, headers, other["id"], "lighting")
    link(client, headers, chair["id"], furniture["id"])

    response = client.get(f"/store/{store['id']}", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == {
        "id": store["id"],
        "name": "Corner shop",
        "items": [
            {"id": chair["id"], "name": "Chair", "price": 15.99, "description": None},
            {"id": table["id"], "name": "Table", "price": 120.0, "description": None},
        ],
        "tags": [{"id": furniture["id"], "name": "furniture"}],
    }


def test_get_missing_store_is_404(client, headers):
    response = client.get("/store/999", headers=headers)

    assert_error(response, 404, "not_found", "Store not found.")


def test_get_store_with_an_id_beyond_64_bits_is_404(client, headers):
    response = client.get(f"/store/{HUGE_ID}", headers=headers)

    assert_error(response, 404, "not_found")


def test_get_store_needs_a_token(client, store):
    response = client.get(f"/store/{store['id']}")

    assert_error(response, 401, "authorization_required")


# --- DELETE /store/<id> -----------------------------------------------------


def test_delete_store_needs_an_administrator(client, headers, store):
    response = client.delete(f"/store/{store['id']}", headers=headers)

    assert_error(response, 403, "forbidden")
    assert client.get(f"/store/{store['id']}", headers=headers).status_code == 200


def test_delete_store_needs_a_token(client, headers, store):
    response = client.delete(f"/store/{store['id']}")

    assert_error(response, 401, "authorization_required")
    assert client.get(f"/store/{store['id']}", headers=headers).status_code == 200


def test_admin_deletes_a_store(client, headers, admin_headers, store):
    response = client.delete(f"/store/{store['id']}", headers=admin_headers)

    assert response.status_code == 200
    assert response.get_json() == {"message": "Store deleted."}
    assert_error(client.get(f"/store/{store['id']}", headers=headers), 404, "not_found")
    assert client.get("/store", headers=headers).get_json() == []


def test_delete_store_deletes_its_items_tags_and_links_only(
    app, client, headers, admin_headers, store
):
    chair = create_item(client, headers, store["id"], "Chair", price=15.99)
    table = create_item(client, headers, store["id"], "Table", price=120)
    furniture = create_tag(client, headers, store["id"], "furniture")
    sale = create_tag(client, headers, store["id"], "sale")
    link(client, headers, chair["id"], furniture["id"])
    link(client, headers, table["id"], furniture["id"])
    link(client, headers, chair["id"], sale["id"])
    other = create_store(client, headers, "Other shop")
    lamp = create_item(client, headers, other["id"], "Lamp", price=9.5)
    lighting = create_tag(client, headers, other["id"], "lighting")
    link(client, headers, lamp["id"], lighting["id"])

    response = client.delete(f"/store/{store['id']}", headers=admin_headers)

    assert response.status_code == 200
    assert response.get_json() == {"message": "Store deleted."}
    with app.app_context():
        assert db.session.get(StoreModel, store["id"]) is None
        assert db.session.scalars(select(ItemModel.id)).all() == [lamp["id"]]
        assert db.session.scalars(select(TagModel.id)).all() == [lighting["id"]]
        assert db.session.execute(select(items_tags)).all() == [
            (lamp["id"], lighting["id"])
        ]
    assert client.get(f"/store/{other['id']}", headers=headers).get_json() == {
        "id": other["id"],
        "name": "Other shop",
        "items": [
            {"id": lamp["id"], "name": "Lamp", "price": 9.5, "description": None}
        ],
        "tags": [{"id": lighting["id"], "name": "lighting"}],
    }


def test_delete_missing_store_is_404(app, client, admin_headers, store):
    response = client.delete("/store/999", headers=admin_headers)

    assert_error(response, 404, "not_found", "Store not found.")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StoreModel)) == 1
