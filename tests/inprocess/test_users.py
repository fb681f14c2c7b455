"""Accounts: registration, login, token refresh, logout, reading and deleting users."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask_jwt_extended import decode_token
from passlib.hash import pbkdf2_sha256
from sqlalchemy import func

from core import db
from models import UserModel
from tests.helpers import PASSWORD, assert_error, bearer

TOKEN_KEYS = {"access_token", "refresh_token", "token_type", "expires_in"}
USERNAME_RULE = "Use 3 to 80 letters, digits, '_', '.' or '-'."
PASSWORD_RULE = "Length must be between 8 and 256."
MISSING = "Missing data for required field."
NOT_A_STRING = "Not a valid string."


def claims(app, token: str) -> dict:
    """The verified claims of one of our tokens."""
    with app.app_context():
        return decode_token(token)


def user_count(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(func.count()).select_from(UserModel))


def stored_hash(app, user_id: int) -> str:
    with app.app_context():
        return db.session.get(UserModel, user_id).password_hash


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


# --- POST /login ------------------------------------------------------------------


def test_login_returns_a_bearer_token_pair_that_must_not_be_cached(auth, client):
    auth.register("alice")

    response = client.post("/login", json={"username": "alice", "password": PASSWORD})

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == TOKEN_KEYS
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert isinstance(body["access_token"], str)
    assert isinstance(body["refresh_token"], str)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


def test_login_access_token_is_fresh_and_names_the_user_as_a_string(app, auth):
    user_id, tokens = auth.user("alice")

    access = claims(app, tokens["access_token"])
    assert access["type"] == "access"
    assert access["fresh"] is True
    assert access["sub"] == str(user_id)
    assert isinstance(access["sub"], str)
    assert access["is_admin"] is False
    # iat and fam_iat are kept to the microsecond, so per-user marks ("sessions
    # started before") are exact.
    assert 899 < access["exp"] - access["iat"] <= 900
    assert access["iat"] - 1 < access["fam_iat"] <= access["iat"]


def test_login_refresh_token_is_a_refresh_token_for_the_user(app, auth):
    user_id, tokens = auth.user("alice")

    refresh = claims(app, tokens["refresh_token"])
    access = claims(app, tokens["access_token"])
    assert refresh["type"] == "refresh"
    assert refresh["sub"] == str(user_id)
    assert refresh["is_admin"] is False
    assert refresh["jti"] != access["jti"]


def test_wrong_password_and_unknown_user_get_identical_answers(auth, client):
    auth.register("alice")

    wrong_password = client.post(
        "/login", json={"username": "alice", "password": "wrong password"}
    )
    unknown_user = client.post(
        "/login", json={"username": "nobody", "password": PASSWORD}
    )

    body = assert_error(
        wrong_password, 401, "invalid_credentials", "Invalid credentials."
    )
    assert set(body) == {"code", "status", "message", "error"}
    assert unknown_user.status_code == 401
    assert unknown_user.get_data() == wrong_password.get_data()
    # Every 401 carries a challenge (RFC 9110 §15.5.2).
    assert wrong_password.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert unknown_user.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_login_is_case_insensitive_on_the_username(app, auth):
    user_id = auth.register("Alice").get_json()["id"]

    for spelling in ("alice", "ALICE", "aLiCe"):
        tokens = auth.login(spelling)
        assert claims(app, tokens["access_token"])["sub"] == str(user_id)


def test_login_password_is_case_sensitive(auth, client):
    auth.register("alice")

    response = client.post(
        "/login", json={"username": "alice", "password": PASSWORD.upper()}
    )

    assert_error(response, 401, "invalid_credentials", "Invalid credentials.")


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        (
            {"username": "alice", "password": "x" * 257},
            {"password": ["Length must be between 1 and 256."]},
        ),
        (
            {"username": "a" * 81, "password": PASSWORD},
            {"username": ["Length must be between 1 and 80."]},
        ),
        ({"username": "alice"}, {"password": [MISSING]}),
        ({"password": PASSWORD}, {"username": [MISSING]}),
        ({"username": "alice", "password": 123}, {"password": [NOT_A_STRING]}),
        (
            {"username": "alice", "password": PASSWORD, "fresh": False},
            {"fresh": ["Unknown field."]},
        ),
    ],
    ids=[
        "oversized-password",
        "oversized-username",
        "missing-password",
        "missing-username",
        "password-int",
        "unknown-field",
    ],
)
def test_login_validation(auth, client, payload, errors):
    auth.register("alice")

    response = client.post("/login", json=payload)

    body = assert_error(response, 422, "validation_error")
    assert body["errors"] == {"json": errors}


def test_legacy_pbkdf2_hash_logs_in_and_is_upgraded_to_argon2id(app, auth):
    with app.app_context():
        user = UserModel(username="legacy", password_hash=pbkdf2_sha256.hash(PASSWORD))
        db.session.add(user)
        db.session.commit()
        user_id = user.id
    assert stored_hash(app, user_id).startswith("$pbkdf2-sha256$")

    tokens = auth.login("legacy")

    assert claims(app, tokens["access_token"])["sub"] == str(user_id)
    assert stored_hash(app, user_id).startswith("$argon2id$")
    # The upgraded hash still verifies the same password.
    assert auth.login("legacy")["token_type"] == "Bearer"


def test_legacy_hash_is_not_upgraded_by_a_wrong_password(app, client):
    legacy_hash = pbkdf2_sha256.hash(PASSWORD)
    with app.app_context():
        user = UserModel(username="legacy", password_hash=legacy_hash)
        db.session.add(user)
        db.session.commit()
        user_id = user.id

    response = client.post(
        "/login", json={"username": "legacy", "password": "wrong password"}
    )

    assert_error(response, 401, "invalid_credentials", "Invalid credentials.")
    assert stored_hash(app, user_id) == legacy_hash


# --- POST /refresh ----------------------------------------------------------------


def test_refresh_issues_a_non_fresh_access_token_and_rotates_the_refresh_token(
    app, auth
):
    user_id, tokens = auth.user("alice")

    response = auth.refresh(tokens["refresh_token"])

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == TOKEN_KEYS
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["refresh_token"] != tokens["refresh_token"]
    access = claims(app, body["access_token"])
    assert access["type"] == "access"
    assert access["fresh"] is False
    assert access["sub"] == str(user_id)
    refresh = claims(app, body["refresh_token"])
    assert refresh["type"] == "refresh"
    assert refresh["jti"] != claims(app, tokens["refresh_token"])["jti"]


def test_a_retry_within_the_grace_window_gets_a_new_pair(auth):
    """Rotation and reuse detection in depth: tests/inprocess/test_sessions.py."""
    _, tokens = auth.user("alice")
    rotated = auth.refresh(tokens["refresh_token"]).get_json()

    retried = auth.refresh(tokens["refresh_token"])

    assert retried.status_code == 200
    assert set(retried.get_json()) == TOKEN_KEYS
    again = auth.refresh(rotated["refresh_token"])
    assert again.status_code == 200
    assert set(again.get_json()) == TOKEN_KEYS


def test_refreshed_access_token_is_accepted(auth, client):
    _, tokens = auth.user("alice")
    access_token = auth.refresh(tokens["refresh_token"]).get_json()["access_token"]

    response = client.get("/store", headers=bearer(access_token))

    assert response.status_code == 200
    assert response.get_json() == []


@pytest.mark.parametrize(("before", "after"), [(False, True), (True, False)])
def test_refresh_reads_admin_rights_from_the_database(app, auth, before, after):
    user_id, tokens = auth.user("alice", admin=before)
    with app.app_context():
        db.session.get(UserModel, user_id).is_admin = after
        db.session.commit()

    body = auth.refresh(tokens["refresh_token"]).get_json()

    assert claims(app, body["access_token"])["is_admin"] is after
    assert claims(app, body["refresh_token"])["is_admin"] is after


# --- POST /logout -----------------------------------------------------------------


def test_logout_revokes_the_access_token(auth, client):
    _, tokens = auth.user("alice")
    headers = bearer(tokens["access_token"])
    assert client.get("/store", headers=headers).status_code == 200

    response = client.post("/logout", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == {"message": "Successfully logged out."}
    assert_error(
        client.get("/store", headers=headers),
        401,
        "token_revoked",
        "The token has been revoked.",
    )
    assert_error(
        client.post("/logout", headers=headers),
        401,
        "token_revoked",
        "The token has been revoked.",
    )


def test_logout_revokes_only_that_access_token(auth, client):
    _, first = auth.user("alice")
    second = auth.login("alice")

    client.post("/logout", headers=bearer(first["access_token"]))

    assert client.get("/store", headers=bearer(second["access_token"])).status_code == (
        200
    )


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
