"""Constants, assertion, header and request helpers shared by the test modules,
and `AuthActions` (the `auth` fixture) for the Flask test client."""

import json
import uuid
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from flask_jwt_extended import create_access_token, create_refresh_token

from core import db
from devtools.servers import REPO as REPO
from models import UserModel

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"  # what a password change sets

# What every in-process test app starts from (test-only, so never in the app's own
# settings): a fixed key, cheap hashing, rate limits off.
TEST_SETTINGS = {
    "APP_ENV": "development",
    "TESTING": True,
    "JWT_SECRET_KEY": "testing-only-jwt-secret-key-0123456789abcdef",
    # Cheap hashing keeps the suite fast; production uses the OWASP parameters.
    "PASSWORD_ARGON2_MEMORY_COST": 1024,
    "PASSWORD_ARGON2_TIME_COST": 1,
    # The rate-limit tests switch it on; other tests log in as often as they like.
    "RATELIMIT_ENABLED": False,
}


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


def set_cookies(response) -> dict[str, str]:
    """name -> the full Set-Cookie line, for each cookie the response sets."""
    return {
        line.split("=", 1)[0]: line for line in response.headers.getlist("Set-Cookie")
    }


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


class AuthActions:
    """Register, log in and mint tokens the way a client (or an attacker) would."""

    def __init__(self, app: Flask, client: FlaskClient) -> None:
        self._app = app
        self._client = client

    def register(self, username: str = "alice", password: str = PASSWORD):
        """POST /register and return the response."""
        return self._client.post(
            "/register", json={"username": username, "password": password}
        )

    def login(self, username: str = "alice", password: str = PASSWORD) -> dict:
        """POST /login, asserting success, and return the token pair."""
        response = self._client.post(
            "/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def make_admin(self, user_id: int) -> None:
        """Give a user the administrator flag, straight in the database."""
        with self._app.app_context():
            db.session.get(UserModel, user_id).is_admin = True
            db.session.commit()

    def user(
        self, username: str = "alice", *, admin: bool = False, password: str = PASSWORD
    ) -> tuple[int, dict]:
        """Register (optionally as an admin) and log in: (user id, token pair)."""
        response = self.register(username, password)
        assert response.status_code == 201, response.get_json()
        user_id = response.get_json()["id"]
        if admin:
            self.make_admin(user_id)
        return user_id, self.login(username, password)

    def refresh(self, refresh_token: str):
        """POST /refresh with a refresh token and return the response."""
        return self._client.post("/refresh", headers=bearer(refresh_token))

    def access_token(self, identity: str, **kwargs) -> str:
        """Mint an access token directly (e.g. expires_delta=timedelta(-1))."""
        with self._app.app_context():
            return create_access_token(identity=identity, **kwargs)

    def refresh_token(self, identity: str, **kwargs) -> str:
        """Mint a refresh token directly, of a session (a `fam` unless given: every
        refresh token of ours has one)."""
        claims = {"fam": uuid.uuid4().hex, **kwargs.pop("additional_claims", {})}
        with self._app.app_context():
            return create_refresh_token(
                identity=identity, additional_claims=claims, **kwargs
            )

    def expired_access_token(self, identity: str) -> str:
        """An access token that expired a minute ago (no sleeping)."""
        return self.access_token(identity, expires_delta=timedelta(minutes=-1))
