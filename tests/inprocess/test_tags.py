"""Tags: a store's tags, linking them to that store's items, and deleting them."""

import pytest
from sqlalchemy import func, select

from core import db
from models import TagModel, items_tags
from tests.helpers import (
    assert_error,
    create_item,
    create_store,
    create_tag,
    pagination,
)

# Larger than any id a 64-bit integer column can hold.
HUGE_ID = 2**63


def links(app) -> list[tuple[int, int]]:
    """Every (item_id, tag_id) row of the link table."""
    with app.app_context():
        return [tuple(row) for row in db.session.execute(select(items_tags)).all()]


def tag_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(TagModel))


def plain(item: dict) -> dict:
    """An item as it appears nested in a tag or store: no store, no tags."""
    return {key: item[key] for key in ("id", "name", "price", "description")}


@pytest.fixture
def other_store(client, headers) -> dict:
    return create_store(client, headers, "Other shop")


@pytest.fixture
def item(client, headers, store) -> dict:
    return create_item(client, headers, store["id"], "Chair")


@pytest.fixture
def tag(client, headers, store) -> dict:
    return create_tag(client, headers, store["id"], "furniture")


@pytest.fixture
def linked(client, headers, item, tag) -> dict:
    """`tag` linked to `item`; the tag as the link request answered."""
    response = client.post(f"/item/{item['id']}/tag/{tag['id']}", headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def expected_tag(tag_id: int, store: dict, name: str = "furniture", items=()) -> dict:
    return {
        "id": tag_id,
        "name": name,
        "store_id": store["id"],
        "store": {"id": store["id"], "name": store["name"]},
        "items": [plain(item) for item in items],
    }


# --- Authentication ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/store/{store}/tag"),
        ("post", "/store/{store}/tag"),
        ("post", "/item/{item}/tag/{tag}"),
        ("delete", "/item/{item}/tag/{tag}"),
        ("get", "/tag/{tag}"),
        ("delete", "/tag/{tag}"),
    ],
)
def test_tag_endpoints_need_a_token(app, client, store, item, tag, method, url):
    url = url.format(store=store["id"], item=item["id"], tag=tag["id"])

    response = getattr(client, method)(url, json={"name": "sale"})

    assert_error(response, 401, "authorization_required")
    assert tag_count(app) == 1
    assert links(app) == []


# --- GET /store/<id>/tag ----------------------------------------------------


def test_list_tags_of_a_store(client, headers, store, other_store, item):
    furniture = create_tag(client, headers, store["id"], "furniture")
    create_tag(client, headers, other_store["id"], "lighting")
    sale = create_tag(client, headers, store["id"], "sale")
    client.post(f"/item/{item['id']}/tag/{sale['id']}", headers=headers)

    response = client.get(f"/store/{store['id']}/tag", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == [
        expected_tag(furniture["id"], store),
        expected_tag(sale["id"], store, "sale", items=[item]),
    ]
    assert pagination(response) == {
        "total": 2,
        "total_pages": 1,
        "first_page": 1,
        "last_page": 1,
        "page": 1,
    }


def test_list_tags_of_a_store_without_tags_is_empty(
    client, headers, store, other_store
):
    create_tag(client, headers, other_store["id"], "lighting")

    response = client.get(f"/store/{store['id']}/tag", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == []
    assert pagination(response)["total"] == 0


def test_list_tags_is_paginated(client, headers, store):
    tags = [create_tag(client, headers, store["id"], f"tag {n}") for n in range(5)]

    pages = [
        client.get(f"/store/{store['id']}/tag?page={page}&page_size=2", headers=headers)
        for page in (1, 2, 3)
    ]

    assert [page.get_json() for page in pages] == [tags[0:2], tags[2:4], tags[4:]]
    common = {"total": 5, "total_pages": 3, "first_page": 1, "last_page": 3}
    assert [pagination(page) for page in pages] == [
        {**common, "page": 1, "next_page": 2},
        {**common, "page": 2, "previous_page": 1, "next_page": 3},
        {**common, "page": 3, "previous_page": 2},
    ]


def test_list_tags_rejects_a_page_size_over_100(client, headers, store):
    response = client.get(f"/store/{store['id']}/tag?page_size=101", headers=headers)

    body = assert_error(response, 422, "validation_error")
    assert list(body["errors"]["query"]) == ["page_size"]


def test_list_tags_of_a_missing_store_is_404(client, headers):
    response = client.get("/store/999/tag", headers=headers)

    assert_error(response, 404, "not_found", "Store not found.")


# --- POST /store/<id>/tag ---------------------------------------------------


def test_create_tag(client, headers, store):
    response = client.post(
        f"/store/{store['id']}/tag", json={"name": "furniture"}, headers=headers
    )

    assert response.status_code == 201
    body = response.get_json()
    assert isinstance(body["id"], int)
    assert body == expected_tag(body["id"], store)
    assert client.get(f"/tag/{body['id']}", headers=headers).get_json() == body


def test_create_tag_strips_surrounding_whitespace(client, headers, store):
    response = client.post(
        f"/store/{store['id']}/tag", json={"name": "  furniture "}, headers=headers
    )

    assert response.status_code == 201
    assert response.get_json()["name"] == "furniture"


@pytest.mark.parametrize("name", ["furniture", " furniture  "])
def test_create_tag_refuses_a_name_taken_in_the_store(
    app, client, headers, store, tag, name
):
    response = client.post(
        f"/store/{store['id']}/tag", json={"name": name}, headers=headers
    )

    assert_error(response, 409, "tag_exists")
    assert tag_count(app) == 1


def test_create_tag_allows_a_name_taken_in_another_store(
    client, headers, tag, other_store
):
    response = client.post(
        f"/store/{other_store['id']}/tag", json={"name": "furniture"}, headers=headers
    )

    assert response.status_code == 201
    body = response.get_json()
    assert body["id"] != tag["id"]
    assert body == expected_tag(body["id"], other_store)


def test_create_tag_in_a_missing_store_is_404(app, client, headers):
    response = client.post("/store/999/tag", json={"name": "sale"}, headers=headers)

    assert_error(response, 404, "not_found", "Store not found.")
    assert tag_count(app) == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 81}, "name"),
        ({"name": 5}, "name"),
        ({"name": None}, "name"),
        ({}, "name"),
        ({"name": "sale", "store_id": 1}, "store_id"),
        ({"name": "sale", "colour": "red"}, "colour"),
    ],
    ids=lambda value: repr(value)[:30] if isinstance(value, dict) else None,
)
def test_create_tag_validates_the_body(app, client, headers, store, payload, field):
    response = client.post(f"/store/{store['id']}/tag", json=payload, headers=headers)

    body = assert_error(response, 422, "validation_error")
    assert list(body["errors"]["json"]) == [field]
    assert tag_count(app) == 0


# --- POST /item/<id>/tag/<tag_id> -------------------------------------------


def test_link_tag_to_item(app, client, headers, store, item, tag):
    response = client.post(f"/item/{item['id']}/tag/{tag['id']}", headers=headers)

    assert response.status_code == 201
    assert response.get_json() == expected_tag(tag["id"], store, items=[item])
    assert links(app) == [(item["id"], tag["id"])]
    assert client.get(f"/item/{item['id']}", headers=headers).get_json()["tags"] == [
        {"id": tag["id"], "name": "furniture"}
    ]


def test_link_tag_to_a_second_item(app, client, headers, store, item, tag, linked):
    table = create_item(client, headers, store["id"], "Table")

    response = client.post(f"/item/{table['id']}/tag/{tag['id']}", headers=headers)

    assert response.status_code == 201
    assert response.get_json() == expected_tag(tag["id"], store, items=[item, table])
    assert sorted(links(app)) == [(item["id"], tag["id"]), (table["id"], tag["id"])]


def test_link_tag_twice_keeps_one_link(app, client, headers, item, tag, linked):
    response = client.post(f"/item/{item['id']}/tag/{tag['id']}", headers=headers)

    assert response.status_code == 201
    assert response.get_json() == linked
    assert links(app) == [(item["id"], tag["id"])]


def test_link_tag_of_another_store_is_409(app, client, headers, item, other_store):
    foreign = create_tag(client, headers, other_store["id"], "lighting")

    response = client.post(f"/item/{item['id']}/tag/{foreign['id']}", headers=headers)

    assert_error(response, 409, "store_mismatch")
    assert links(app) == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/item/999/tag/{tag}", "Item not found."),
        ("/item/{item}/tag/999", "Tag not found."),
    ],
)
def test_link_with_a_missing_item_or_tag_is_404(
    app, client, headers, item, tag, url, message
):
    url = url.format(item=item["id"], tag=tag["id"])

    response = client.post(url, headers=headers)

    assert_error(response, 404, "not_found", message)
    assert links(app) == []


# --- DELETE /item/<id>/tag/<tag_id> -----------------------------------------


def test_unlink_tag_from_item(app, client, headers, store, item, tag, linked):
    sale = create_tag(client, headers, store["id"], "sale")
    client.post(f"/item/{item['id']}/tag/{sale['id']}", headers=headers)

    response = client.delete(f"/item/{item['id']}/tag/{tag['id']}", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == {
        "message": "Tag removed from item.",
        "item": {**item, "tags": [{"id": sale["id"], "name": "sale"}]},
        "tag": expected_tag(tag["id"], store),
    }
    assert links(app) == [(item["id"], sale["id"])]
    assert client.get(f"/tag/{tag['id']}", headers=headers).get_json() == (
        expected_tag(tag["id"], store)
    )


def test_unlink_tag_that_is_not_linked_is_404(app, client, headers, store, item, tag):
    sale = create_tag(client, headers, store["id"], "sale")
    client.post(f"/item/{item['id']}/tag/{sale['id']}", headers=headers)

    response = client.delete(f"/item/{item['id']}/tag/{tag['id']}", headers=headers)

    assert_error(response, 404, "not_found")
    assert links(app) == [(item["id"], sale["id"])]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/item/999/tag/{tag}", "Item not found."),
        ("/item/{item}/tag/999", "Tag not found."),
    ],
)
def test_unlink_with_a_missing_item_or_tag_is_404(
    app, client, headers, item, tag, linked, url, message
):
    url = url.format(item=item["id"], tag=tag["id"])

    response = client.delete(url, headers=headers)

    assert_error(response, 404, "not_found", message)
    assert links(app) == [(item["id"], tag["id"])]


# --- GET /tag/<id> ----------------------------------------------------------


def test_get_tag_with_its_store_and_items(client, headers, store, item, tag, linked):
    response = client.get(f"/tag/{tag['id']}", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == expected_tag(tag["id"], store, items=[item])


def test_get_missing_tag_is_404(client, headers, tag):
    response = client.get("/tag/999", headers=headers)

    assert_error(response, 404, "not_found", "Tag not found.")


def test_get_tag_with_an_id_beyond_64_bits_is_404(client, headers, tag):
    response = client.get(f"/tag/{HUGE_ID}", headers=headers)

    assert_error(response, 404, "not_found")


# --- DELETE /tag/<id> -------------------------------------------------------


def test_delete_unlinked_tag(app, client, headers, store, tag):
    kept = create_tag(client, headers, store["id"], "sale")

    response = client.delete(f"/tag/{tag['id']}", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == {"message": "Tag deleted."}
    assert_error(client.get(f"/tag/{tag['id']}", headers=headers), 404, "not_found")
    assert client.get(f"/store/{store['id']}/tag", headers=headers).get_json() == [kept]


def test_delete_linked_tag_is_409_and_keeps_it(
    app, client, headers, store, item, tag, linked
):
    response = client.delete(f"/tag/{tag['id']}", headers=headers)

    assert_error(response, 409, "tag_in_use")
    assert client.get(f"/tag/{tag['id']}", headers=headers).get_json() == linked
    assert links(app) == [(item["id"], tag["id"])]


def test_delete_tag_once_unlinked(app, client, headers, item, tag, linked):
    client.delete(f"/item/{item['id']}/tag/{tag['id']}", headers=headers)

    response = client.delete(f"/tag/{tag['id']}", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == {"message": "Tag deleted."}
    assert tag_count(app) == 0


def test_delete_missing_tag_is_404(app, client, headers, tag):
    response = client.delete("/tag/999", headers=headers)

    assert_error(response, 404, "not_found", "Tag not found.")
    assert tag_count(app) == 1
