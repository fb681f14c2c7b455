"""Tokens signed with the app's own key whose claims are not what it issues: a 401
`invalid_token` on every route and at /refresh, `invalid_grant` at /token, and at
/revoke the RFC 7009 §2.2 200 that revokes nothing; never a 500. On every
revocation store, through the verified-claims cache (on by default).
"""

import math
import time

import jwt
import pytest

from auth import signing_keys
from tests.helpers import PASSWORD, assert_error, bearer
from tests.inprocess.test_sessions import works

REVOKED = {"message": "The token is revoked."}
UNKNOWN_AUDIENCE = "The token is invalid: Audience doesn't match."

# (claim, value); "{id}" in a string value is the user's id.
MALFORMED = [
    ("exp", "9999999999"),
    ("exp", True),
    ("exp", None),
    ("exp", math.nan),
    ("exp", math.inf),
    ("exp", -1),
    ("exp", 10**20),
    ("iat", "1700000000"),
    ("iat", False),
    ("iat", [1]),
    ("nbf", "0"),
    ("nbf", {}),
    ("fresh", "true"),
    ("fresh", 1),
    ("fresh", None),
    ("sub", "99999999999999999999"),
    ("sub", "2147483648"),
    ("sub", " {id} "),
    ("sub", "0{id}"),
    ("sub", "+{id}"),
    ("sub", "-{id}"),
    ("sub", "{id}.0"),
    ("sub", "{id}\n"),
    ("sub", "\u0661"),  # ARABIC-INDIC DIGIT ONE: isdigit(), and int() reads it
    ("sub", "0"),
    ("sub", ""),
    ("sub", 1),
    ("type", "weird"),
    ("type", "Access"),
    ("type", None),
    ("jti", 5),
    ("jti", ""),
    ("jti", "x" * 65),  # over the revocation store's key column
    ("fam", 5),
    ("fam", "x" * 65),
    ("fam", ["a"]),
    ("auth_time", "1700000000"),
    ("auth_time", True),
    ("fam_iat", "1700000000.5"),
    ("fam_iat", False),
    ("amr", "pwd"),
    ("amr", []),
    ("amr", ["pwd", 5]),
    ("amr", ["x" * 17]),
    ("amr", ["pwd"] * 9),
    ("is_admin", "yes"),
    ("is_admin", 1),
    ("token_use", "admin"),
    ("token_use", True),
    ("csrf", 5),
    ("csrf", "\u00e9t\u00e9"),  # hmac.compare_digest refuses non-ASCII
]


@pytest.fixture
def app_config(app_config, backend):
    """The app on each revocation store in turn."""
    return {**app_config, **backend}


def resign(app, token: str, *, drop: tuple[str, ...] = (), **changes) -> str:
    """`token` with some claims changed and those in `drop` removed, signed with
    the app's current key under its `kid`, as the app signs."""
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(changes)
    for claim in drop:
        del claims[claim]
    with app.app_context():
        key = signing_keys().current
        return jwt.encode(
            claims, key.signing_key, algorithm="HS256", headers={"kid": key.kid}
        )


def assert_refused(response, message: str) -> None:
    """401 invalid_token whose message starts with `message`, with the challenge."""
    body = assert_error(response, 401, "invalid_token")
    assert body["message"].startswith(message), body
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="api", error="invalid_token"')


def assert_refused_everywhere(app, client, tokens: dict, message: str, **edits):
    """A real session's tokens, edited, are refused at a protected route,
    /refresh, /token and /revoke; the session itself goes on."""
    access = resign(app, tokens["access_token"], **edits)
    refresh = resign(app, tokens["refresh_token"], **edits)

    assert_refused(client.get("/me", headers=bearer(access)), message)
    assert_refused(client.post("/refresh", headers=bearer(refresh)), message)
    response = client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": refresh}
    )
    body = assert_error(response, 400, "invalid_grant")
    assert body["error_description"] == "The refresh token is invalid."
    for token in (access, refresh):
        response = client.post("/revoke", data={"token": token})
        assert response.status_code == 200, response.get_json()
        assert response.get_json() == REVOKED
    # Nothing was revoked through them: the session's own tokens still work.
    assert works(client, tokens)
    response = client.post("/refresh", headers=bearer(tokens["refresh_token"]))
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize(("claim", "value"), MALFORMED, ids=repr)
def test_a_malformed_claim_is_refused_everywhere(app, auth, client, claim, value):
    user_id, tokens = auth.user("alice")
    if isinstance(value, str):
        value = value.format(id=user_id)

    assert_refused_everywhere(
        app,
        client,
        tokens,
        f"The token is invalid: The token's '{claim}' claim must be ",
        **{claim: value},
    )


def test_a_refresh_token_without_a_session_is_refused(app, auth, client):
    """Every refresh token of ours names its session (`fam`); /refresh rotates it."""
    _, tokens = auth.user("alice")
    refresh = resign(app, tokens["refresh_token"], drop=("fam",))
    missing = "The token is invalid: The token is missing the 'fam' claim."

    assert_refused(client.post("/refresh", headers=bearer(refresh)), missing)
    response = client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": refresh}
    )
    assert assert_error(response, 400, "invalid_grant")["error_description"] == (
        "The refresh token is invalid."
    )
    response = client.post("/revoke", data={"token": refresh})
    assert (response.status_code, response.get_json()) == (200, REVOKED)
    assert works(client, tokens)


def test_a_token_for_another_audience_is_refused(app, auth, client):
    """A JWT the app signs for another use (a device cookie, say) has its own
    `aud`, and is never a token here."""
    _, tokens = auth.user("alice")

    assert_refused_everywhere(
        app, client, tokens, UNKNOWN_AUDIENCE, aud="stores-api-device"
    )


NOW = time.time()


@pytest.mark.parametrize(
    "changes",
    [
        {"fam_iat": NOW - 0.25},
        {"fam_iat": int(NOW)},
        {"auth_time": NOW - 0.5, "iat": NOW},
        {"jti": "j" * 64, "fam": "f" * 64},
        {"unknown": ["claims", "are", "ignored"]},
    ],
    ids=["float-fam_iat", "int-fam_iat", "float-times", "longest-keys", "unknown"],
)
def test_claims_of_the_right_type_and_range_are_accepted(app, auth, client, changes):
    _, tokens = auth.user("alice")
    access = resign(app, tokens["access_token"], **changes)
    refresh = resign(app, tokens["refresh_token"], **changes)

    response = client.get("/me", headers=bearer(access))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["username"] == "alice"
    response = client.post("/refresh", headers=bearer(refresh))
    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()) >= {"access_token", "refresh_token"}


def test_a_malformed_token_in_a_cookie_is_refused(app, auth, client):
    auth.register("alice")
    response = client.post(
        "/login",
        json={"username": "alice", "password": PASSWORD, "token_delivery": "cookie"},
    )
    assert response.status_code == 200, response.get_json()
    cookie = client.get_cookie("access_token_cookie")
    client.set_cookie(
        "access_token_cookie", resign(app, cookie.value, sub=" 1 ", csrf=7)
    )

    response = client.post("/logout", headers={"X-CSRF-TOKEN": "7"})

    assert_refused(response, "The token is invalid: The token's 'sub' claim must be ")


@pytest.mark.parametrize(
    ("changes", "claim"),
    [
        ({"token_use": "API"}, "token_use"),
        ({"exp": "4102444800"}, "exp"),
        ({"sub": "01"}, "sub"),
        ({"fresh": "false"}, "fresh"),
    ],
)
def test_an_api_token_with_a_malformed_claim_is_refused(
    app, auth, client, changes, claim
):
    """API tokens have claims of their own (`token_use`, float times, no `fam`):
    the same table applies."""
    _, tokens = auth.user("alice")
    response = client.post(
        "/me/api-tokens",
        json={"name": "ci"},
        headers=bearer(tokens["access_token"]),
    )
    assert response.status_code == 201, response.get_json()
    api_token = response.get_json()["token"]
    assert client.get("/me", headers=bearer(api_token)).status_code == 200

    response = client.get("/me", headers=bearer(resign(app, api_token, **changes)))

    assert_refused(response, f"The token is invalid: The token's '{claim}' claim")
    response = client.post("/revoke", data={"token": resign(app, api_token, **changes)})
    assert (response.status_code, response.get_json()) == (200, REVOKED)
    assert client.get("/me", headers=bearer(api_token)).status_code == 200
