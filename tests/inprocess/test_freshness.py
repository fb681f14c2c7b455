"""Freshness bounded by time since authentication, and the RFC 9470 challenge
(issue 24).

A fresh-only route takes a fresh access token only while `now - auth_time` is
within its max age: FRESH_MAX_AGE for every one, ACCOUNT_FRESH_MAX_AGE for
account security. Every refusal keeps the seed's `fresh_token_required` and says
`error="insufficient_user_authentication", max_age="N"` (RFC 9470 §3), on every
revocation store.
"""

import re
import time

import pytest
from flask_jwt_extended import decode_token

from tests.helpers import NEW_PASSWORD, PASSWORD, assert_error, bearer

NOT_FRESH = "The token is not fresh."
TOO_OLD = "The token is fresh, but the user authenticated too long ago for this."
ITEM = {"name": "Chair", "price": 15.99, "store_id": 1}
CHALLENGE = re.compile(
    r'^Bearer realm="api", error="insufficient_user_authentication", '
    r'error_description="(?P<description>[^"]*)", max_age="(?P<max_age>\d+)"$'
)


@pytest.fixture
def app_config(request, app_config, backend):
    """The app on each revocation store in turn (plus a test's own settings)."""
    return {**app_config, **backend, **getattr(request, "param", {})}


def claims(app, token: str) -> dict:
    with app.app_context():
        return decode_token(token)


def aged(app, auth, tokens: dict, seconds: float) -> str:
    """A fresh access token of the same session whose user authenticated
    `seconds` ago (as a login that long ago would have minted it)."""
    real = claims(app, tokens["access_token"])
    extra = {k: real[k] for k in ("fam", "fam_iat", "is_admin", "amr")}
    return auth.access_token(
        real["sub"],
        fresh=True,
        additional_claims={**extra, "auth_time": int(time.time() - seconds)},
    )


def assert_step_up(response, max_age: int, message: str) -> None:
    """The seed's 401, with the RFC 9470 §3 challenge naming the max age."""
    assert_error(response, 401, "fresh_token_required", message)
    challenge = CHALLENGE.match(response.headers["WWW-Authenticate"])
    assert challenge is not None, response.headers["WWW-Authenticate"]
    assert challenge["description"] == message
    assert int(challenge["max_age"]) == max_age


# --- claims ---------------------------------------------------------------------


def test_a_login_is_fresh_authenticated_now_with_a_password(app, auth):
    before = time.time()
    _, tokens = auth.user("alice")

    access = claims(app, tokens["access_token"])
    refresh = claims(app, tokens["refresh_token"])

    assert access["fresh"] is True
    assert before - 1 <= access["auth_time"] <= time.time()
    assert access["amr"] == refresh["amr"] == ["pwd"]
    assert refresh["auth_time"] == access["auth_time"]


def test_a_refresh_keeps_the_sessions_authentication_and_is_not_fresh(app, auth):
    _, tokens = auth.user("alice")

    refreshed = auth.refresh(tokens["refresh_token"]).get_json()

    old, new = (
        claims(app, tokens["access_token"]),
        claims(app, refreshed["access_token"]),
    )
    assert new["fresh"] is False
    assert (new["auth_time"], new["amr"], new["fam"], new["fam_iat"]) == (
        old["auth_time"],
        old["amr"],
        old["fam"],
        old["fam_iat"],
    )


# --- bounded by time ------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "accepted"), [(10, True), (880, True), (920, False), (5000, False)]
)
def test_a_fresh_token_counts_only_within_fresh_max_age(
    app, auth, client, store, seconds, accepted
):
    _, tokens = auth.user("bob")
    token = aged(app, auth, tokens, seconds)

    response = client.post(
        "/item", json={**ITEM, "store_id": store["id"]}, headers=bearer(token)
    )

    if accepted:
        assert response.status_code == 201, response.get_json()
    else:
        assert_step_up(response, 900, TOO_OLD)


@pytest.mark.parametrize(
    ("seconds", "accepted"), [(10, True), (280, True), (320, False), (880, False)]
)
def test_account_security_asks_for_a_shorter_max_age(
    app, auth, client, seconds, accepted
):
    _, tokens = auth.user("alice")
    token = aged(app, auth, tokens, seconds)

    response = client.put(
        "/user/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(token),
    )

    if accepted:
        assert response.status_code == 200, response.get_json()
    else:
        assert_step_up(response, 300, TOO_OLD)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        (
            "put",
            "/user/password",
            {"current_password": PASSWORD, "new_password": "x" * 9},
        ),
        ("delete", "/user/{id}", None),
        ("post", "/me/api-tokens", {"name": "backup"}),
        ("post", "/me/mfa/totp", None),
        ("post", "/me/mfa/totp/confirm", {"code": "123456"}),
        ("post", "/me/mfa/recovery-codes", None),
        ("delete", "/me/mfa/totp", None),
    ],
)
def test_every_account_security_operation_uses_the_account_max_age(
    app, auth, client, method, path, body
):
    user_id, tokens = auth.user("alice")
    token = aged(app, auth, tokens, 301)

    response = client.open(
        path.replace("{id}", str(user_id)),
        method=method.upper(),
        json=body,
        headers=bearer(token),
    )

    assert_step_up(response, 300, TOO_OLD)


def test_a_token_that_is_not_fresh_gets_the_challenge_of_the_route(
    auth, client, store, tokens
):
    stale = auth.refresh(tokens["refresh_token"]).get_json()["access_token"]

    item = client.post(
        "/item", json={**ITEM, "store_id": store["id"]}, headers=bearer(stale)
    )
    password = client.put(
        "/user/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(stale),
    )

    assert_step_up(item, 900, NOT_FRESH)
    assert_step_up(password, 300, NOT_FRESH)


@pytest.mark.parametrize(
    "app_config",
    [{"FRESH_MAX_AGE": 60, "ACCOUNT_FRESH_MAX_AGE": 30}],
    indirect=True,
    ids=["short"],
)
def test_the_max_ages_are_settings(app, auth, client, store, tokens):
    token = aged(app, auth, tokens, 45)

    item = client.post(
        "/item", json={**ITEM, "store_id": store["id"]}, headers=bearer(token)
    )
    api_token = client.post(
        "/me/api-tokens", json={"name": "backup"}, headers=bearer(token)
    )

    assert item.status_code == 201, item.get_json()
    assert_step_up(api_token, 30, TOO_OLD)


def test_a_token_without_auth_time_is_not_fresh_enough(
    app, auth, client, store, tokens
):
    real = claims(app, tokens["access_token"])
    token = auth.access_token(
        real["sub"], fresh=True, additional_claims={"fam": real["fam"]}
    )

    response = client.post(
        "/item", json={**ITEM, "store_id": store["id"]}, headers=bearer(token)
    )

    assert_step_up(response, 900, TOO_OLD)


def test_other_token_errors_keep_their_challenge(auth, client):
    _, tokens = auth.user("alice")
    client.post("/logout", headers=bearer(tokens["access_token"]))

    response = client.post("/item", json=ITEM, headers=bearer(tokens["access_token"]))

    assert_error(response, 401, "token_revoked")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert "max_age" not in response.headers["WWW-Authenticate"]


# --- the OpenAPI document -------------------------------------------------------


@pytest.mark.parametrize(
    "app_config", [{"ACCOUNT_FRESH_MAX_AGE": 120}], indirect=True, ids=["set"]
)
def test_each_fresh_only_operation_states_its_max_age(client):
    spec = client.get("/openapi.json").get_json()

    stated = {
        (method, path): operation["x-fresh-max-age"]
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "x-fresh-max-age" in operation
    }

    assert stated == {
        ("post", "/item"): 900,
        ("put", "/user/password"): 120,
        ("delete", "/user/{user_id}"): 120,
        ("post", "/me/api-tokens"): 120,
        ("post", "/me/mfa/totp"): 120,
        ("post", "/me/mfa/totp/confirm"): 120,
        ("post", "/me/mfa/recovery-codes"): 120,
        ("delete", "/me/mfa/totp"): 120,
        ("post", "/me/passkeys/options"): 120,
        ("post", "/me/passkeys"): 120,
        ("delete", "/me/passkeys/{passkey_id}"): 120,
    }
    described = spec["paths"]["/item"]["post"]["responses"]["401"]["description"]
    assert "FRESH_MAX_AGE" in described and "RFC 9470" in described


@pytest.mark.parametrize(
    "app_config",
    [{"CORS_ORIGINS": ["https://app.example.com"]}],
    indirect=True,
    ids=["cors"],
)
def test_a_page_of_another_origin_can_read_the_challenge(auth, client, store, tokens):
    stale = auth.refresh(tokens["refresh_token"]).get_json()["access_token"]

    response = client.post(
        "/item",
        json={**ITEM, "store_id": store["id"]},
        headers={"Origin": "https://app.example.com", **bearer(stale)},
    )

    assert_step_up(response, 900, NOT_FRESH)
    exposed = response.headers["Access-Control-Expose-Headers"].lower()
    assert "www-authenticate" in {name.strip() for name in exposed.split(",")}
