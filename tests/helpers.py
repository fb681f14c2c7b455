"""Constants, assertion, header and request helpers shared by the test modules,
`AuthActions` (the `auth` fixture) for the Flask test client, and what the tests of
the defences share (small rate limits, logins from another address, the security
headers, log records) and the tests of the signing keys (key files, apps that
restart on one database)."""

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from flask import Flask
from flask.testing import FlaskClient
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    decode_token,
)
from sqlalchemy import event

from app import create_app
from auth.keys import generate_private_key, write_private_key
from core import db
from devtools.servers import MFA_KEY as MFA_KEY
from devtools.servers import REPO as REPO
from models import UserModel

# A race that passed once proves little: each loops this many rounds in one run.
# The fast subset (scripts/test.sh --fast, the edit-test loop) runs fewer; CI
# runs the whole suite with 20.
RACE_ROUNDS = int(os.environ.get("RACE_ROUNDS", "20"))
PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"  # what a password change sets
TOKEN_KEYS = {"access_token", "refresh_token", "token_type", "expires_in"}
MISSING = "Missing data for required field."
NOT_A_STRING = "Not a valid string."

# What every in-process test app starts from (test-only, so never in the app's own
# settings): a fixed key, cheap hashing, rate limits off.
TEST_SETTINGS = {
    "APP_ENV": "development",
    "TESTING": True,
    "JWT_SECRET_KEY": "testing-only-jwt-secret-key-0123456789abcdef",
    "MFA_ENCRYPTION_KEY": "dGVzdGluZy1vbmx5LW1mYS1rZXktMDEyMzQ1Njc4OWE=",
    # Cheap hashing keeps the suite fast; production uses the OWASP parameters.
    "PASSWORD_ARGON2_MEMORY_COST": 1024,
    "PASSWORD_ARGON2_TIME_COST": 1,
    # The rate-limit tests switch it on; other tests log in as often as they like.
    "RATELIMIT_ENABLED": False,
}


T = TypeVar("T")


def at_once(sends: Sequence[Callable[[], T]], timeout: float = 60) -> list[T]:
    """Each call in a thread of its own, all released together (a barrier): their
    results, in order. A thread still running after `timeout` fails the test."""
    barrier = threading.Barrier(len(sends))
    results: list = [None] * len(sends)

    def run(index: int) -> None:
        barrier.wait(10)
        results[index] = sends[index]()

    threads = [
        threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(sends))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads)
    return results


def run_python(code: str, env: dict, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python process that imports the project; it must
    succeed."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


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


def claims(app, token: str) -> dict:
    """The verified claims of one of our tokens."""
    with app.app_context():
        return decode_token(token)


def stored_hash(app, user_id: int) -> str:
    with app.app_context():
        return db.session.get(UserModel, user_id).password_hash


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


# --- The defences: rate limits, security headers, logs --------------------------

# Small limits, switched on: rate-limit tests exhaust them in a few requests.
LIMITS = {
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_LOGIN": "3 per minute",
    "RATELIMIT_LOGIN_USERNAME": "2 per minute",
    "RATELIMIT_REGISTER": "2 per minute",
    "RATELIMIT_REFRESH": "2 per minute",
}
WRONG_PASSWORD = "wrong horse battery"
HEX_ID = re.compile(r"[0-9a-f]{32}")
INVALID_CREDENTIALS = {
    "code": 401,
    "status": "Unauthorized",
    "message": "Invalid credentials.",
    "error": "invalid_credentials",
}


def config(**overrides):
    """Run a test on an app built with these overrides."""
    return pytest.mark.parametrize("app_config", [overrides], indirect=True)


def limited(**overrides):
    """Run a test with rate limiting on (small limits, then these overrides)."""
    return config(**{**LIMITS, **overrides})


def login(client, username="alice", password=PASSWORD, *, addr=None, headers=None):
    """POST /login, optionally from another client address."""
    return client.post(
        "/login",
        json={"username": username, "password": password},
        headers=headers or {},
        environ_base={"REMOTE_ADDR": addr} if addr else {},
    )


def register(client, username="alice", password=PASSWORD, *, addr=None):
    return client.post(
        "/register",
        json={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": addr} if addr else {},
    )


def assert_invalid_credentials(response):
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.get_json() == INVALID_CREDENTIALS


def assert_rate_limited(response) -> dict:
    """429 in the envelope (nothing else in it) with a positive Retry-After."""
    body = assert_error(response, 429, "rate_limited")
    assert set(body) == {"code", "status", "message", "error"}
    assert body["status"] == "Too Many Requests"
    retry_after = response.headers.get("Retry-After", "")
    assert re.fullmatch(r"[1-9][0-9]*", retry_after), retry_after
    assert int(retry_after) <= 61  # the limits here are per minute
    assert_security_headers(response)
    return body


def assert_security_headers(response):
    headers = response.headers
    assert headers.get("X-Content-Type-Options") == "nosniff"
    assert headers.get("Referrer-Policy") == "no-referrer"
    assert headers.get("X-Frame-Options") == "DENY"
    csp = headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-eval" not in csp
    assert "Server" not in headers


def records(caplog, logger: str, event: str | None = None) -> list:
    return [
        r
        for r in caplog.records
        if r.name == logger and (event is None or getattr(r, "event", None) == event)
    ]


def header_tokens(value: str) -> set[str]:
    """A comma-separated header as a set of lower-case items."""
    return {item.strip().lower() for item in value.split(",") if item.strip()}


# --- Signing keys ---------------------------------------------------------------

ASYMMETRIC = ["EdDSA", "ES256", "RS256"]


def key_file(folder, algorithm: str, name: str | None = None) -> str:
    """A new private key of `algorithm` in a PEM file: its path."""
    path = str(folder / f"{name or algorithm}.pem")
    write_private_key(generate_private_key(algorithm), path)
    return path


def public_file(folder, private_path: str) -> str:
    """The public half of a PEM private key, in a file of its own."""
    with open(private_path, "rb") as file:
        key = serialization.load_pem_private_key(file.read(), password=None)
    path = private_path.replace(".pem", ".pub.pem")
    with open(path, "wb") as file:
        file.write(
            key.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )
    return path


def make_app(tmp_path, **settings):
    """An app on a database shared by every app of the test (a restart)."""
    app = create_app(
        {
            **TEST_SETTINGS,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'keys.db'}",
            "BLOCKLIST_BACKEND": "database",
            **settings,
        }
    )
    with app.app_context():
        db.create_all()
    return app


def log_in(app, username: str = "alice") -> dict:
    client = app.test_client()
    client.post("/register", json={"username": username, "password": PASSWORD})
    response = client.post("/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def header(token: str) -> dict:
    return jwt.get_unverified_header(token)


def me(app, token: str):
    return app.test_client().get("/me", headers=bearer(token))


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    """Every SQL statement the app's engine sends inside the block."""
    seen: list[str] = []

    def record(connection, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
