"""Assertion, header and request helpers shared by the test modules."""

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def bearer(token: str) -> dict:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


def assert_error(response, status: int, error: str, message: str | None = None) -> dict:
    """Assert the response is the error envelope with this status and error code."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == status
    assert body["error"] == error, body
    assert isinstance(body["status"], str) and body["status"]
    assert isinstance(body["message"], str) and body["message"]
    if message is not None:
        assert body["message"] == message
    return body


def pagination(response) -> dict:
    """The X-Pagination header of a list response, parsed."""
    return json.loads(response.headers["X-Pagination"])


def create_store(client, headers, name: str) -> dict:
    """POST /store, asserting 201; the store as answered."""
    response = client.post("/store", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def create_item(client, headers, store_id: int, name: str = "Chair", **fields) -> dict:
    """POST /item (price 15.99 unless given), asserting 201; the item as answered."""
    payload = {"name": name, "price": 15.99, "store_id": store_id, **fields}
    response = client.post("/item", json=payload, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def create_tag(client, headers, store_id: int, name: str) -> dict:
    """POST /store/<id>/tag, asserting 201; the tag as answered."""
    response = client.post(
        f"/store/{store_id}/tag", json={"name": name}, headers=headers
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def link(client, headers, item_id: int, tag_id: int) -> None:
    """POST /item/<id>/tag/<id>, asserting 201."""
    response = client.post(f"/item/{item_id}/tag/{tag_id}", headers=headers)
    assert response.status_code == 201, response.get_json()


def sign_up(client, username: str = "alice", password: str = "long enough password"):
    """POST /register, then POST /login with the same credentials, asserting
    nothing: (the registration response, the login response's JSON)."""
    body = {"username": username, "password": password}
    registered = client.post("/register", json=body)
    return registered, client.post("/login", json=body).get_json()
