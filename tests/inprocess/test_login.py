"""Logging in, refreshing and logging out (resources/tokens.py): POST /login,
/refresh and /logout (sessions in depth: test_sessions.py)."""

import pytest
from passlib.hash import pbkdf2_sha256

from core import db
from models import UserModel
from tests.helpers import (
    MISSING,
    NOT_A_STRING,
    PASSWORD,
    TOKEN_KEYS,
    assert_error,
    bearer,
    claims,
    stored_hash,
)

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
