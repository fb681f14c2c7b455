"""Items: listing, creating (fresh token), reading, updating and deleting them."""

import pytest
from sqlalchemy import func, select

from core import db
from models import ItemModel, TagModel, items_tags
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
# Marks a key to leave out of a request body.
DROP = object()


def case_id(value):
    """Readable test ids for the body tables: `price='abc'`, `name=missing`."""
    if isinstance(value, dict):
        return ",".join(
            f"{key}={'missing' if field is DROP else repr(field)[:24]}"
            for key, field in value.items()
        )
    return None


@pytest.fixture
def stale_headers(auth, tokens) -> dict:
    """The same user's Authorization header, with a non-fresh access token."""
    response = auth.refresh(tokens["refresh_token"])
    assert response.status_code == 200, response.get_json()
    return bearer(response.get_json()["access_token"])


def item_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(ItemModel))


@pytest.fixture
def item(client, headers, store) -> dict:
    """One item of `store`, as POST /item answered."""
    return create_item(client, headers, store["id"], "Chair", description="Oak")


def expected_item(item_id: int, store: dict, **fields) -> dict:
    """An item as the API shows it, with its store nested."""
    return {
        "id": item_id,
        "name": "Chair",
        "price": 15.99,
        "description": None,
        "store": {"id": store["id"], "name": store["name"]},
        "tags": [],
        **fields,
    }


# --- Authentication ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/item"),
        ("post", "/item"),
        ("get", "/item/1"),
        ("put", "/item/1"),
        ("delete", "/item/1"),
    ],
)
def test_item_endpoints_need_a_token(app, client, item, method, url):
    response = getattr(client, method)(url, json={"name": "Stolen"})

    assert_error(response, 401, "authorization_required")
    with app.app_context():
        assert db.session.scalars(select(ItemModel.name)).all() == ["Chair"]


# --- POST /item -------------------------------------------------------------


def test_create_item(client, headers, store):
    response = client.post(
        "/item",
        json={"name": "Chair", "price": 15.99, "store_id": store["id"]},
        headers=headers,
    )

    assert response.status_code == 201
    body = response.get_json()
    assert isinstance(body["id"], int)
    assert body == expected_item(body["id"], store)
    assert client.get(f"/item/{body['id']}", headers=headers).get_json() == body


def test_create_item_with_a_description_and_a_padded_name(client, headers, store):
    response = client.post(
        "/item",
        json={
            "name": "  Chair ",
            "price": 15.99,
            "store_id": store["id"],
            "description": "Solid oak.",
        },
        headers=headers,
    )

    assert response.status_code == 201
    body = response.get_json()
    assert body == expected_item(body["id"], store, description="Solid oak.")


@pytest.mark.parametrize(
    ("price", "shown"),
    [
        (0, 0.0),
        (0.5, 0.5),
        (19.99, 19.99),
        (120, 120.0),
        (9_999_999_999.99, 9_999_999_999.99),
    ],
)
def test_create_item_accepts_prices_in_cents(client, headers, store, price, shown):
    response = client.post(
        "/item",
        json={"name": "Chair", "price": price, "store_id": store["id"]},
        headers=headers,
    )

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["price"] == shown
    item_id = response.get_json()["id"]
    assert client.get(f"/item/{item_id}", headers=headers).get_json()["price"] == shown


def test_create_item_needs_a_fresh_token(app, client, stale_headers, store):
    response = client.post(
        "/item",
        json={"name": "Chair", "price": 15.99, "store_id": store["id"]},
        headers=stale_headers,
    )

    assert_error(response, 401, "fresh_token_required")
    assert item_count(app) == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 81}, "name"),
        ({"name": 5}, "name"),
        ({"name": None}, "name"),
        ({"name": DROP}, "name"),
        ({"price": "abc"}, "price"),
        ({"price": "12.50"}, "price"),
        ({"price": "NaN"}, "price"),
        ({"price": True}, "price"),
        ({"price": None}, "price"),
        ({"price": [1]}, "price"),
        ({"price": -1}, "price"),
        ({"price": -0.01}, "price"),
        ({"price": 19.999}, "price"),
        ({"price": 0.001}, "price"),
        ({"price": 10_000_000_000}, "price"),
        ({"price": DROP}, "price"),
        ({"store_id": "1"}, "store_id"),
        ({"store_id": 1.5}, "store_id"),
        ({"store_id": True}, "store_id"),
        ({"store_id": None}, "store_id"),
        ({"store_id": DROP}, "store_id"),
        ({"description": 5}, "description"),
        ({"description": "x" * 2001}, "description"),
        ({"colour": "red"}, "colour"),
        ({"id": 7}, "id"),
        ({"store": {"id": 1, "name": "Corner shop"}}, "store"),
        ({"tags": []}, "tags"),
    ],
    ids=case_id,
)
def test_create_item_validates_the_body(app, client, headers, store, changes, field):
    payload = {"name": "Chair", "price": 15.99, "store_id": store["id"]}
    payload.update(changes)
    payload = {key: value for key, value in payload.items() if value is not DROP}

    response = client.post("/item", json=payload, headers=headers)

    body = assert_error(response, 422, "validation_error")
    assert list(body["errors"]["json"]) == [field]
    assert item_count(app) == 0


@pytest.mark.parametrize("store_id", [999, 0, pytest.param(HUGE_ID, id="2**63")])
def test_create_item_in_a_missing_store_is_422(app, client, headers, store, store_id):
    response = client.post(
        "/item",
        json={"name": "Chair", "price": 15.99, "store_id": store_id},
        headers=headers,
    )

    body = assert_error(response, 422, "validation_error")
    assert list(body["errors"]["json"]) == ["store_id"]
    assert item_count(app) == 0


def test_create_item_refuses_a_body_that_is_not_json(app, client, headers, store):
    response = client.post(
        "/item", data="{name: Chair}", content_type="application/json", headers=headers
    )

    assert_error(response, 400, "bad_request")
    assert item_count(app) == 0


# --- GET /item --------------------------------------------------------------


def test_list_items_shows_each_with_its_store_and_tags(client, headers, store):
    other = create_store(client, headers, "Other shop")
    chair = create_item(client, headers, store["id"], "Chair")
    lamp = create_item(client, headers, other["id"], "Lamp", price=9.5)
    furniture = create_tag(client, headers, store["id"], "furniture")
    link(client, headers, chair["id"], furniture["id"])

    response = client.get("/item", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == [
        expected_item(
            chair["id"], store, tags=[{"id": furniture["id"], "name": "furniture"}]
        ),
        expected_item(lamp["id"], other, name="Lamp", price=9.5),
    ]
    assert pagination(response) == {
        "total": 2,
        "total_pages": 1,
        "first_page": 1,
        "last_page": 1,
        "page": 1,
    }


def test_list_items_of_one_store(client, headers, store):
    other = create_store(client, headers, "Other shop")
    chair = create_item(client, headers, store["id"], "Chair")
    create_item(client, headers, other["id"], "Lamp")
    table = create_item(client, headers, store["id"], "Table")

    response = client.get(f"/item?store_id={store['id']}", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == [chair, table]
    assert pagination(response)["total"] == 2


def test_list_items_of_a_store_without_items_is_empty(client, headers, item):
    response = client.get("/item?store_id=999", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == []
    assert pagination(response)["total"] == 0


def test_list_items_is_paginated(client, headers, store):
    items = [create_item(client, headers, store["id"], f"Item {n}") for n in range(5)]

    pages = [
        client.get(f"/item?page={page}&page_size=2", headers=headers)
        for page in (1, 2, 3)
    ]

    assert [page.get_json() for page in pages] == [items[0:2], items[2:4], items[4:]]
    common = {"total": 5, "total_pages": 3, "first_page": 1, "last_page": 3}
    assert [pagination(page) for page in pages] == [
        {**common, "page": 1, "next_page": 2},
        {**common, "page": 2, "previous_page": 1, "next_page": 3},
        {**common, "page": 3, "previous_page": 2},
    ]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("store_id=abc", "store_id"),
        ("store_id=0", "store_id"),
        ("store_id=-1", "store_id"),
        ("page_size=101", "page_size"),
        ("page=0", "page"),
    ],
)
def test_list_items_validates_the_query(client, headers, query, field):
    response = client.get(f"/item?{query}", headers=headers)

    body = assert_error(response, 422, "validation_error")
    assert list(body["errors"]["query"]) == [field]


# --- GET /item/<id> ---------------------------------------------------------


def test_get_item(client, headers, store, item):
    response = client.get(f"/item/{item['id']}", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == expected_item(item["id"], store, description="Oak")


def test_get_item_works_with_a_non_fresh_token(client, stale_headers, item):
    response = client.get(f"/item/{item['id']}", headers=stale_headers)

    assert response.status_code == 200
    assert response.get_json() == item


def test_get_item_lists_every_tag_in_id_order(client, headers, store, item):
    tags = [create_tag(client, headers, store["id"], name) for name in "abc"]
    for tag in reversed(tags):
        link(client, headers, item["id"], tag["id"])
    other = create_item(client, headers, store["id"], "Table")
    link(client, headers, other["id"], tags[0]["id"])

    response = client.get(f"/item/{item['id']}", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == expected_item(
        item["id"],
        store,
        description="Oak",
        tags=[{"id": tag["id"], "name": tag["name"]} for tag in tags],
    )


def test_get_item_answers_what_a_write_of_the_item_answers(client, headers, item):
    """GET reads with a Core query, PUT answers from ORM objects: the same body."""
    updated = client.put(
        f"/item/{item['id']}", json={"price": 0, "description": None}, headers=headers
    )

    response = client.get(f"/item/{item['id']}", headers=headers)

    assert updated.status_code == 200
    assert response.get_json() == updated.get_json()
    assert response.get_json()["price"] == 0


@pytest.mark.parametrize("item_id", [999, pytest.param(HUGE_ID, id="2**63")])
def test_get_missing_item_is_404(client, headers, item, item_id):
    response = client.get(f"/item/{item_id}", headers=headers)

    assert_error(response, 404, "not_found")


# --- PUT /item/<id> ---------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": "Armchair"}, {"name": "Armchair"}),
        ({"name": "  Armchair  "}, {"name": "Armchair"}),
        ({"price": 20}, {"price": 20.0}),
        ({"price": 0}, {"price": 0.0}),
        ({"description": "Pine"}, {"description": "Pine"}),
        ({"description": None}, {"description": None}),
        (
            {"name": "Stool", "price": 7.25, "description": "Short"},
            {"name": "Stool", "price": 7.25, "description": "Short"},
        ),
    ],
    ids=case_id,
)
def test_update_item_changes_only_the_given_fields(
    client, stale_headers, store, item, changes, expected
):
    # A non-fresh token is enough to update.
    response = client.put(f"/item/{item['id']}", json=changes, headers=stale_headers)

    assert response.status_code == 200, response.get_json()
    updated = expected_item(item["id"], store, **{"description": "Oak", **expected})
    assert response.get_json() == updated
    assert client.get(f"/item/{item['id']}", headers=stale_headers).get_json() == (
        updated
    )


def test_update_item_keeps_its_tags(client, headers, store, item):
    furniture = create_tag(client, headers, store["id"], "furniture")
    link(client, headers, item["id"], furniture["id"])

    response = client.put(f"/item/{item['id']}", json={"price": 10}, headers=headers)

    assert response.status_code == 200
    assert response.get_json()["tags"] == [{"id": furniture["id"], "name": "furniture"}]


def test_missing_item_says_so(client, headers, admin_headers, item):
    for response in (
        client.get("/item/999", headers=headers),
        client.delete("/item/999", headers=admin_headers),
    ):
        assert_error(response, 404, "not_found", "Item not found.")


def test_update_missing_item_is_404_and_creates_nothing(app, client, headers, store):
    response = client.put(
        "/item/999", json={"name": "Chair", "price": 15.99}, headers=headers
    )

    assert_error(response, 404, "not_found", "Item not found.")
    assert item_count(app) == 0
    assert_error(client.get("/item/999", headers=headers), 404, "not_found")


def test_update_item_needs_at_least_one_field(client, headers, item):
    response = client.put(f"/item/{item['id']}", json={}, headers=headers)

    body = assert_error(response, 422, "validation_error")
    assert list(body["errors"]["json"]) == ["_schema"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"store_id": 2}, "store_id"),
        ({"name": "Stool", "store_id": 2}, "store_id"),
        ({"id": 5}, "id"),
        ({"colour": "red"}, "colour"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 81}, "name"),
        ({"name": None}, "name"),
        ({"price": -0.01}, "price"),
        ({"price": 1.234}, "price"),
        ({"price": "abc"}, "price"),
        ({"price": "12.50"}, "price"),
        ({"price": None}, "price"),
        ({"description": "x" * 2001}, "description"),
    ],
    ids=case_id,
)
def test_update_item_validates_the_body(client, headers, store, item, payload, field):
    create_store(client, headers, "Other shop")

    response = client.put(f"/item/{item['id']}", json=payload, headers=headers)

    body = assert_error(response, 422, "validation_error")
    assert list(body["errors"]["json"]) == [field]
    assert client.get(f"/item/{item['id']}", headers=headers).get_json() == item


# --- DELETE /item/<id> ------------------------------------------------------


def test_delete_item_needs_an_administrator(client, headers, item):
    response = client.delete(f"/item/{item['id']}", headers=headers)

    assert_error(response, 403, "forbidden")
    assert client.get(f"/item/{item['id']}", headers=headers).get_json() == item


def test_admin_deletes_an_item(app, client, headers, admin_headers, store, item):
    other = create_item(client, headers, store["id"], "Table")

    response = client.delete(f"/item/{item['id']}", headers=admin_headers)

    assert response.status_code == 200
    assert response.get_json() == {"message": "Item deleted."}
    assert_error(
        client.get(f"/item/{item['id']}", headers=headers),
        404,
        "not_found",
        "Item not found.",
    )
    assert client.get("/item", headers=headers).get_json() == [other]


def test_delete_item_removes_its_tag_links_but_not_the_tags(
    app, client, headers, admin_headers, store, item
):
    table = create_item(client, headers, store["id"], "Table")
    furniture = create_tag(client, headers, store["id"], "furniture")
    sale = create_tag(client, headers, store["id"], "sale")
    link(client, headers, item["id"], furniture["id"])
    link(client, headers, item["id"], sale["id"])
    link(client, headers, table["id"], furniture["id"])

    response = client.delete(f"/item/{item['id']}", headers=admin_headers)

    assert response.status_code == 200
    with app.app_context():
        assert db.session.scalars(select(TagModel.id).order_by(TagModel.id)).all() == [
            furniture["id"],
            sale["id"],
        ]
        assert db.session.execute(select(items_tags)).all() == [
            (table["id"], furniture["id"])
        ]
    assert client.get(f"/tag/{sale['id']}", headers=headers).get_json()["items"] == []


@pytest.mark.parametrize("item_id", [999, pytest.param(HUGE_ID, id="2**63")])
def test_delete_missing_item_is_404(app, client, admin_headers, item, item_id):
    response = client.delete(f"/item/{item_id}", headers=admin_headers)

    assert_error(response, 404, "not_found")
    assert item_count(app) == 1
