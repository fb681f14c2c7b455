"""Accounts (resources/users.py): registration, reading and deleting users
(logging in, refreshing and logging out: test_login.py)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func

from core import db
from models import UserModel
from tests.helpers import (
    MISSING,
    NOT_A_STRING,
    PASSWORD,
    assert_error,
    bearer,
    claims,
    stored_hash,
)

USERNAME_RULE = "Use 3 to 80 letters, digits, '_', '.' or '-'."
PASSWORD_RULE = "Length must be between 8 and 256."


def user_count(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(func.count()).select_from(UserModel))


def user_exists(app, user_id: int) -> bool:
    with app.app_context():
        return db.session.get(UserModel, user_id) is not None


# --- POST /register ---------------------------------------------------------------


def test_register_returns_only_id_and_username(auth):
    response = auth.register("alice")

    assert response.status_code == 201
    assert response.get_json() == {"id": 1, "username": "alice"}


def test_register_stores_an_argon2id_hash_not_the_password(app, auth):
    user_id = auth.register("alice").get_json()["id"]

    password_hash = stored_hash(app, user_id)
    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in password_hash


@pytest.mark.parametrize(
    "username",
    ["abc", "a" * 80, "Alice_01", "a.b-c_d", "123", "..."],
    ids=["3-chars", "80-chars", "mixed", "punctuation", "digits", "dots"],
)
def test_register_accepts_valid_usernames(auth, username):
    response = auth.register(username)

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["username"] == username


@pytest.mark.parametrize(
    "password", ["x" * 8, "x" * 256, "pässwörd-ünïcode"], ids=["8", "256", "unicode"]
)
def test_register_accepts_valid_passwords(auth, password):
    assert auth.register("alice", password).status_code == 201
    assert auth.login("alice", password)["token_type"] == "Bearer"


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({"username": "ab", "password": PASSWORD}, {"username": [USERNAME_RULE]}),
        ({"username": "a" * 81, "password": PASSWORD}, {"username": [USERNAME_RULE]}),
        ({"username": "", "password": PASSWORD}, {"username": [USERNAME_RULE]}),
        ({"username": "al ice", "password": PASSWORD}, {"username": [USERNAME_RULE]}),
        ({"username": "al@ice", "password": PASSWORD}, {"username": [USERNAME_RULE]}),
        ({"username": "ålice", "password": PASSWORD}, {"username": [USERNAME_RULE]}),
        ({"username": "alice\n", "password": PASSWORD}, {"username": [USERNAME_RULE]}),
        ({"username": "\nalice", "password": PASSWORD}, {"username": [USERNAME_RULE]}),
        ({"username": "alice", "password": "x" * 7}, {"password": [PASSWORD_RULE]}),
        ({"username": "alice", "password": "x" * 257}, {"password": [PASSWORD_RULE]}),
        ({"username": "alice", "password": ""}, {"password": [PASSWORD_RULE]}),
        ({"username": 123, "password": PASSWORD}, {"username": [NOT_A_STRING]}),
        ({"username": ["alice"], "password": PASSWORD}, {"username": [NOT_A_STRING]}),
        ({"username": True, "password": PASSWORD}, {"username": [NOT_A_STRING]}),
        (
            {"username": None, "password": PASSWORD},
            {"username": ["Field may not be null."]},
        ),
        ({"username": "alice", "password": 12345678}, {"password": [NOT_A_STRING]}),
        (
            {"username": "alice", "password": {"p": PASSWORD}},
            {"password": [NOT_A_STRING]},
        ),
        ({"password": PASSWORD}, {"username": [MISSING]}),
        ({"username": "alice"}, {"password": [MISSING]}),
        ({}, {"username": [MISSING], "password": [MISSING]}),
        (
            {"username": "alice", "password": PASSWORD, "is_admin": True},
            {"is_admin": ["Unknown field."]},
        ),
        (
            {"username": "alice", "password": PASSWORD, "id": 7},
            {"id": ["Unknown field."]},
        ),
    ],
    ids=[
        "username-too-short",
        "username-too-long",
        "username-empty",
        "username-space",
        "username-at-sign",
        "username-non-ascii",
        "username-trailing-newline",
        "username-leading-newline",
        "password-too-short",
        "password-too-long",
        "password-empty",
        "username-int",
        "username-list",
        "username-bool",
        "username-null",
        "password-int",
        "password-object",
        "missing-username",
        "missing-password",
        "missing-both",
        "unknown-is_admin",
        "unknown-id",
    ],
)
def test_register_validation(app, client, payload, errors):
    response = client.post("/register", json=payload)

    body = assert_error(response, 422, "validation_error")
    assert body["errors"] == {"json": errors}
    assert user_count(app) == 0


@pytest.mark.parametrize("second", ["alice", "Alice", "ALICE", "aLiCe"])
def test_register_taken_username_case_insensitively_is_409(app, auth, second):
    assert auth.register("alice").status_code == 201

    response = auth.register(second, "another password")

    body = assert_error(
        response, 409, "username_taken", "A user with that username already exists."
    )
    assert set(body) == {"code", "status", "message", "error"}
    assert user_count(app) == 1


@pytest.mark.parametrize(
    "names",
    [["racer"] * 8, ["racer", "Racer", "RACER", "rAcEr"] * 2],
    ids=["same-case", "mixed-case"],
)
def test_concurrent_duplicate_registrations_create_exactly_one_user(app, names):
    barrier = threading.Barrier(len(names))

    def register(username: str):
        client = app.test_client()
        barrier.wait(timeout=10)
        response = client.post(
            "/register", json={"username": username, "password": PASSWORD}
        )
        return response.status_code, response.get_json()

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        results = list(pool.map(register, names))

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * (len(names) - 1), results
    for status, body in results:
        if status == 409:
            assert body["error"] == "username_taken"
    assert user_count(app) == 1


# --- GET /user/<id> ---------------------------------------------------------------


def test_get_self_returns_the_public_fields_only(auth, client):
    user_id, tokens = auth.user("alice")

    response = client.get(f"/user/{user_id}", headers=bearer(tokens["access_token"]))

    assert response.status_code == 200
    assert response.get_json() == {
        "id": user_id,
        "username": "alice",
        "is_admin": False,
    }


def test_get_another_user_as_non_admin_is_forbidden(auth, client):
    bob_id, _ = auth.user("bob")
    _, tokens = auth.user("alice")

    response = client.get(f"/user/{bob_id}", headers=bearer(tokens["access_token"]))

    assert_error(response, 403, "forbidden", "You may only act on your own account.")


def test_get_missing_user_as_non_admin_is_forbidden_not_404(auth, client):
    """A non-admin cannot probe which ids exist."""
    _, tokens = auth.user("alice")

    response = client.get("/user/999", headers=bearer(tokens["access_token"]))

    assert_error(response, 403, "forbidden", "You may only act on your own account.")


def test_admin_can_read_another_user(auth, client):
    bob_id, _ = auth.user("bob")
    _, admin = auth.user("root", admin=True)

    response = client.get(f"/user/{bob_id}", headers=bearer(admin["access_token"]))

    assert response.status_code == 200
    assert response.get_json() == {"id": bob_id, "username": "bob", "is_admin": False}


def test_admin_reading_a_missing_user_gets_404(auth, client):
    _, admin = auth.user("root", admin=True)

    response = client.get("/user/999", headers=bearer(admin["access_token"]))

    assert_error(response, 404, "not_found", "User not found.")


def test_admin_tokens_carry_the_is_admin_claim(app, auth, client):
    root_id, admin = auth.user("root", admin=True)

    assert claims(app, admin["access_token"])["is_admin"] is True
    assert claims(app, admin["refresh_token"])["is_admin"] is True
    response = client.get(f"/user/{root_id}", headers=bearer(admin["access_token"]))
    assert response.get_json() == {"id": root_id, "username": "root", "is_admin": True}


# --- DELETE /user/<id> ------------------------------------------------------------


def test_delete_needs_a_fresh_token(app, auth, client):
    user_id, tokens = auth.user("alice")
    stale = auth.refresh(tokens["refresh_token"]).get_json()["access_token"]

    response = client.delete(f"/user/{user_id}", headers=bearer(stale))

    assert_error(response, 401, "fresh_token_required", "The token is not fresh.")
    assert user_exists(app, user_id)


def test_delete_self_with_a_fresh_token(app, auth, client):
    user_id, tokens = auth.user("alice")

    response = client.delete(f"/user/{user_id}", headers=bearer(tokens["access_token"]))

    assert response.status_code == 200
    assert response.get_json() == {"message": "User deleted."}
    assert not user_exists(app, user_id)


def test_deleting_self_ends_the_sessions_tokens(auth, client):
    user_id, tokens = auth.user("alice")
    client.delete(f"/user/{user_id}", headers=bearer(tokens["access_token"]))

    access = client.get("/store", headers=bearer(tokens["access_token"]))
    refresh = auth.refresh(tokens["refresh_token"])

    body = assert_error(access, 401, "token_revoked", "The token has been revoked.")
    assert set(body) == {"code", "status", "message", "error"}
    body = assert_error(refresh, 401, "token_revoked", "The token has been revoked.")
    assert set(body) == {"code", "status", "message", "error"}


def test_the_deleted_user_can_no_longer_log_in(auth, client):
    user_id, tokens = auth.user("alice")
    client.delete(f"/user/{user_id}", headers=bearer(tokens["access_token"]))

    response = client.post("/login", json={"username": "alice", "password": PASSWORD})

    assert_error(response, 401, "invalid_credentials", "Invalid credentials.")


def test_delete_another_user_as_non_admin_is_forbidden(app, auth, client):
    bob_id, _ = auth.user("bob")
    _, tokens = auth.user("alice")

    response = client.delete(f"/user/{bob_id}", headers=bearer(tokens["access_token"]))

    assert_error(response, 403, "forbidden", "You may only act on your own account.")
    assert user_exists(app, bob_id)


def test_admin_deletes_another_user_whose_tokens_then_stop_working(app, auth, client):
    bob_id, bob = auth.user("bob")
    _, admin = auth.user("root", admin=True)

    response = client.delete(f"/user/{bob_id}", headers=bearer(admin["access_token"]))

    assert response.status_code == 200
    assert response.get_json() == {"message": "User deleted."}
    assert not user_exists(app, bob_id)
    revoked = "The token has been revoked."
    assert_error(
        client.get("/store", headers=bearer(bob["access_token"])),
        401,
        "token_revoked",
        revoked,
    )
    assert_error(auth.refresh(bob["refresh_token"]), 401, "token_revoked", revoked)
    # The admin's own token was not revoked by deleting someone else.
    assert client.get("/store", headers=bearer(admin["access_token"])).status_code == (
        200
    )


def test_admin_deleting_a_missing_user_gets_404(auth, client):
    _, admin = auth.user("root", admin=True)

    response = client.delete("/user/999", headers=bearer(admin["access_token"]))

    assert_error(response, 404, "not_found", "User not found.")


def test_a_deleted_users_id_is_never_reused(app, auth, client):
    auth.user("alice")
    bob_id, bob = auth.user("bob")
    client.delete(f"/user/{bob_id}", headers=bearer(bob["access_token"]))

    carol = auth.register("carol")

    assert carol.status_code == 201
    assert carol.get_json()["id"] > bob_id
    # So bob's surviving refresh token does not become carol's.
    assert_error(
        auth.refresh(bob["refresh_token"]),
        401,
        "token_revoked",
        "The token has been revoked.",
    )
