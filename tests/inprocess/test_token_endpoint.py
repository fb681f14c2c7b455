"""POST /token (RFC 6749): the password grant is /login, the refresh_token grant is
/refresh, for standard OAuth 2.0 clients; refusals are 400 with §5.2 codes — on
every revocation store."""

import base64
from datetime import timedelta

import pytest
from flask_jwt_extended import decode_token

from core import db
from models import UserModel
from tests.helpers import PASSWORD, TEST_SETTINGS, assert_error, bearer
from tests.inprocess.test_sessions import assert_revoked, works

TOKEN_KEYS = {"access_token", "refresh_token", "token_type", "expires_in"}


@pytest.fixture
def app_config(request, app_config, backend):
    """The app on each revocation store in turn (plus a test's own settings)."""
    return {**app_config, **backend, **getattr(request, "param", {})}


def token(client, **form):
    return client.post("/token", data=form)


def claims(app, encoded: str) -> dict:
    with app.app_context():
        return decode_token(encoded)


def assert_oauth_error(response, error: str, description: str | None = None) -> dict:
    """RFC 6749 §5.2: 400, the code, and a description (in the envelope too)."""
    body = assert_error(response, 400, error)
    assert body["error_description"] == body["message"]
    if description is not None:
        assert body["error_description"] == description
    return body


def test_the_password_grant_is_a_login(app, auth, client):
    auth.register("alice")

    response = token(client, grant_type="password", username="alice", password=PASSWORD)

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == TOKEN_KEYS
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert claims(app, body["access_token"])["fresh"] is True
    assert works(client, body)
    # A new session, listed like any login's.
    listed = client.get("/me/sessions", headers=bearer(body["access_token"]))
    assert [s["current"] for s in listed.get_json()] == [True]


def test_the_refresh_token_grant_is_a_rotation(app, auth, client):
    _, tokens = auth.user("alice")

    response = token(
        client, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )

    assert response.status_code == 200, response.get_json()
    new = response.get_json()
    assert set(new) == TOKEN_KEYS
    assert response.headers["Cache-Control"] == "no-store"
    assert claims(app, new["access_token"])["fresh"] is False
    family = claims(app, tokens["access_token"])["fam"]
    assert claims(app, new["refresh_token"])["fam"] == family
    # The same rotation as /refresh: a token from one is good at the other.
    assert auth.refresh(new["refresh_token"]).status_code == 200


def test_a_replay_is_invalid_grant_and_still_revokes_the_session(app, auth, client):
    _, tokens = auth.user("alice")
    newest = auth.refresh(tokens["refresh_token"]).get_json()
    app.config["REFRESH_REUSE_GRACE_SECONDS"] = 0  # the window has passed

    replay = token(
        client, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )

    assert_oauth_error(replay, "invalid_grant", "The token has been revoked.")
    assert not works(client, newest)
    assert_revoked(auth.refresh(newest["refresh_token"]))


@pytest.mark.parametrize(
    "username, password",
    [("alice", "wrong password"), ("nobody", PASSWORD), ("bad\x00name", PASSWORD)],
    ids=["wrong-password", "unknown-user", "impossible-name"],
)
def test_wrong_credentials_are_one_invalid_grant(auth, client, username, password):
    auth.register("alice")

    response = token(
        client, grant_type="password", username=username, password=password
    )

    assert_oauth_error(response, "invalid_grant", "Invalid credentials.")


def _expired_refresh_token(app, auth, user_id):
    return auth.refresh_token(str(user_id), expires_delta=timedelta(minutes=-1))


@pytest.mark.parametrize(
    "kind, description",
    [
        ("garbage", "The refresh token is invalid."),
        ("access", "An access token was sent where a refresh token is required."),
        ("expired", "The refresh token has expired."),
        ("revoked", "The refresh token has been revoked."),
        ("user-gone", "The user of this token no longer exists."),
    ],
)
def test_a_refresh_token_that_is_not_good_is_invalid_grant(
    app, auth, client, kind, description
):
    user_id, tokens = auth.user("alice")
    sent = {
        "garbage": "not-a-token",
        "access": tokens["access_token"],
        "expired": None,
        "revoked": tokens["refresh_token"],
        "user-gone": tokens["refresh_token"],
    }[kind]
    if kind == "expired":
        sent = _expired_refresh_token(app, auth, user_id)
    elif kind == "revoked":
        client.post("/logout", headers=bearer(tokens["access_token"]))
    elif kind == "user-gone":
        # Straight from the database: no revocation mark, only the user check.
        with app.app_context():
            db.session.execute(db.delete(UserModel).where(UserModel.id == user_id))
            db.session.commit()

    response = token(client, grant_type="refresh_token", refresh_token=sent)

    assert_oauth_error(response, "invalid_grant", description)


@pytest.mark.parametrize(
    "form, error",
    [
        ({}, "invalid_request"),
        ({"grant_type": "password", "username": "alice"}, "invalid_request"),
        ({"grant_type": "password", "password": PASSWORD}, "invalid_request"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"grant_type": "authorization_code", "code": "x"}, "unsupported_grant_type"),
    ],
    ids=[
        "no-grant-type",
        "no-password",
        "no-username",
        "no-refresh-token",
        "client-credentials",
        "authorization-code",
    ],
)
def test_malformed_requests_answer_their_rfc_6749_code(client, form, error):
    assert_oauth_error(token(client, **form), error)


def test_a_repeated_parameter_is_an_invalid_request(auth, client):
    auth.register("alice")

    response = client.post(
        "/token",
        data="grant_type=password&username=alice&username=bob&password=x",
        content_type="application/x-www-form-urlencoded",
    )

    assert_oauth_error(
        response, "invalid_request", "Parameters sent more than once: username."
    )


def test_a_json_body_is_an_invalid_request(auth, client):
    """RFC 6749 §4.3.2: the token request is form-encoded."""
    auth.register("alice")

    response = client.post(
        "/token",
        json={"grant_type": "password", "username": "alice", "password": PASSWORD},
    )

    assert_oauth_error(response, "invalid_request", "The body must be form-encoded.")


def test_client_id_scope_and_basic_client_credentials_are_ignored(auth, client):
    """A public client (RFC 6749 §2.1): Swagger UI sends empty Basic credentials."""
    auth.register("alice")
    empty_basic = "Basic " + base64.b64encode(b":").decode()

    response = client.post(
        "/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": PASSWORD,
            "client_id": "swagger-ui",
            "scope": "read write",
        },
        headers={"Authorization": empty_basic},
    )

    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()) == TOKEN_KEYS


RATE_LIMITED = {
    **TEST_SETTINGS,
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_LOGIN": "2 per minute",
    "RATELIMIT_LOGIN_USERNAME": "100 per minute",
    "RATELIMIT_REFRESH": "3 per minute",
}


# Only the per-username limit of failed logins can bite.
PER_USERNAME = {
    **RATE_LIMITED,
    "RATELIMIT_LOGIN": "100 per minute",
    "RATELIMIT_LOGIN_USERNAME": "2 per minute",
}
per_username_limit = pytest.mark.parametrize(
    "app_config", [PER_USERNAME], indirect=True, ids=["per-username"]
)


@pytest.mark.parametrize("app_config", [RATE_LIMITED], indirect=True, ids=["limits"])
def test_the_password_grant_is_limited_like_login(auth, client):
    auth.register("alice")
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    for _ in range(2):
        assert token(client, **form).status_code == 200

    assert_error(token(client, **form), 429, "rate_limited")
    # The refresh grant has its own limit.
    assert_oauth_error(
        token(client, grant_type="refresh_token", refresh_token="x"), "invalid_grant"
    )


@pytest.mark.parametrize("app_config", [RATE_LIMITED], indirect=True, ids=["limits"])
def test_the_refresh_grant_is_limited_like_refresh(client):
    for _ in range(3):
        response = token(client, grant_type="refresh_token", refresh_token="x")
        assert_oauth_error(response, "invalid_grant")

    assert_error(
        token(client, grant_type="refresh_token", refresh_token="x"),
        429,
        "rate_limited",
    )


@per_username_limit
def test_failed_password_grants_count_per_username(auth, client):
    auth.register("alice")
    for _ in range(2):
        response = token(
            client, grant_type="password", username="alice", password="wrong one"
        )
        assert_oauth_error(response, "invalid_grant")

    response = token(client, grant_type="password", username="alice", password=PASSWORD)

    assert_error(response, 429, "rate_limited")


@per_username_limit
def test_failed_logins_at_login_and_token_share_one_budget(auth, client):
    """Alternating the two endpoints buys an attacker no extra attempts."""
    auth.register("alice")
    wrong = {"username": "alice", "password": "wrong one"}
    assert client.post("/login", json=wrong).status_code == 401
    assert_oauth_error(token(client, grant_type="password", **wrong), "invalid_grant")

    assert_error(client.post("/login", json=wrong), 429, "rate_limited")
    assert_error(token(client, grant_type="password", **wrong), 429, "rate_limited")


@pytest.mark.parametrize("app_config", [RATE_LIMITED], indirect=True, ids=["limits"])
def test_logins_at_login_and_token_share_the_address_budget(auth, client):
    auth.register("alice")
    good = {"username": "alice", "password": PASSWORD}
    assert client.post("/login", json=good).status_code == 200
    assert token(client, grant_type="password", **good).status_code == 200

    assert_error(client.post("/login", json=good), 429, "rate_limited")
