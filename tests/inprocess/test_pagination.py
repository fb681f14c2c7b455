"""X-Pagination, key by key, as docs/api.md says: `total` and `total_pages`
always; `first_page` and `last_page` once there is an item; `page` when the page
asked for exists, with `previous_page` and `next_page` when there are such pages."""

import pytest

from tests.helpers import create_store, pagination


def test_an_empty_list_sends_two_keys(client, headers):
    response = client.get("/store", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == []
    assert pagination(response) == {"total": 0, "total_pages": 0}


def test_a_one_page_list_sends_five_keys(client, headers, store):
    response = client.get("/store", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == [store]
    assert pagination(response) == {
        "total": 1,
        "total_pages": 1,
        "first_page": 1,
        "last_page": 1,
        "page": 1,
    }


@pytest.mark.parametrize(
    ("page", "around"),
    [
        (1, {"page": 1, "next_page": 2}),
        (2, {"page": 2, "previous_page": 1, "next_page": 3}),
        (3, {"page": 3, "previous_page": 2}),
        (4, {}),
    ],
    ids=["first", "middle", "last", "past-the-end"],
)
def test_a_page_of_several_sends_the_pages_around_it(client, headers, page, around):
    stores = [create_store(client, headers, f"Store {n}") for n in range(3)]

    response = client.get(f"/store?page={page}&page_size=1", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == stores[page - 1 : page]
    assert pagination(response) == {
        "total": 3,
        "total_pages": 3,
        "first_page": 1,
        "last_page": 3,
        **around,
    }
