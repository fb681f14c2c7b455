"""POST /revoke (RFC 7009): holding a token is the right to end its session —
form-encoded or JSON, no Authorization header, the same answer for any token."""

from datetime import timedelta

import pytest
from flask_jwt_extended import create_refresh_token, decode_token

from app import create_app
from core import db
from tests.helpers import TEST_SETTINGS, assert_error, bearer
from tests.inprocess.test_sessions import assert_revoked, works

REVOKED = {"message": "The token is revoked."}


@pytest.fixture
def app_config(request, app_config, backend):
    """The app on each revocation store in turn (plus a test's own settings)."""
    return {**app_config, **backend, **getattr(request, "param", {})}


def revoke(client, **form):
    return client.post("/revoke", data=form)


@pytest.mark.parametrize("hint", [None, "refresh_token", "access_token", "nonsense"])
def test_a_refresh_token_ends_its_whole_session(auth, client, hint):
    """The hint never matters (RFC 7009 §2.1: an invalid one is ignored)."""
    _, tokens = auth.user("alice")
    other = auth.login("alice")
    form = {"token": tokens["refresh_token"]}
    if hint:
        form["token_type_hint"] = hint

    response = revoke(client, **form)

    assert response.status_code == 200
    assert response.get_json() == REVOKED
    assert_revoked(auth.refresh(tokens["refresh_token"]))
    assert_revoked(client.get("/me", headers=bearer(tokens["access_token"])))
    assert works(client, other)


def test_json_is_accepted_too(auth, client):
    _, tokens = auth.user("alice")

    response = client.post("/revoke", json={"token": tokens["refresh_token"]})

    assert response.status_code == 200
    assert response.get_json() == REVOKED
    assert_revoked(auth.refresh(tokens["refresh_token"]))


def test_an_expired_access_token_still_ends_its_session(app, auth, client):
    """The logout of a client whose access token has expired."""
    user_id, tokens = auth.user("alice")
    with app.app_context():
        family = decode_token(tokens["access_token"])["fam"]
    expired = auth.access_token(
        str(user_id),
        expires_delta=timedelta(minutes=-1),
        additional_claims={"fam": family},
    )

    response = revoke(client, token=expired, token_type_hint="access_token")

    assert response.status_code == 200
    assert response.get_json() == REVOKED
    assert_revoked(auth.refresh(tokens["refresh_token"]))


def test_other_clients_parameters_are_ignored(auth, client):
    """RFC 6749 §3.2: OAuth libraries send client_id and friends along."""
    _, tokens = auth.user("alice")

    response = revoke(client, token=tokens["refresh_token"], client_id="web-app")

    assert response.status_code == 200
    assert_revoked(auth.refresh(tokens["refresh_token"]))


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b.c",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    ],
    ids=["garbage", "three-dots", "bad-signature"],
)
def test_any_other_token_gets_the_same_answer(auth, client, token):
    """RFC 7009 §2.2: 200 for an unknown or malformed token, so a prober learns
    nothing, and nothing is revoked."""
    _, tokens = auth.user("alice")

    response = revoke(client, token=token)

    assert response.status_code == 200
    assert response.get_json() == REVOKED
    assert works(client, tokens)


def test_a_token_of_another_key_revokes_nothing(app, app_config, auth, client):
    """Even one that names a real session: only a token we signed counts."""
    _, tokens = auth.user("alice")
    with app.app_context():
        family = decode_token(tokens["refresh_token"])["fam"]
    other = create_app({**app_config, "JWT_SECRET_KEY": "another-secret-" * 4})
    with other.app_context():
        foreign = create_refresh_token("1", additional_claims={"fam": family})
        db.engine.dispose()

    response = revoke(client, token=foreign)

    assert response.status_code == 200
    assert response.get_json() == REVOKED
    assert works(client, tokens)
    assert auth.refresh(tokens["refresh_token"]).status_code == 200


def test_revoking_twice_answers_the_same(auth, client):
    _, tokens = auth.user("alice")
    first = revoke(client, token=tokens["refresh_token"])

    second = revoke(client, token=tokens["refresh_token"])

    assert first.status_code == second.status_code == 200
    assert first.get_json() == second.get_json() == REVOKED


def test_no_authorization_is_needed_and_a_bad_one_changes_nothing(auth, client):
    _, tokens = auth.user("alice")

    response = client.post(
        "/revoke",
        data={"token": tokens["refresh_token"]},
        headers={"Authorization": "Bearer garbage"},
    )

    assert response.status_code == 200
    assert_revoked(auth.refresh(tokens["refresh_token"]))


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"data": {}},
        {"data": {"token_type_hint": "refresh_token"}},
        {"data": {"token": ""}},
        {"json": {}},
        {"json": ["token"]},
        {"json": {"token": 42}},
    ],
    ids=["empty-form", "only-a-hint", "empty-token", "empty-json", "json-list", "int"],
)
def test_a_missing_token_is_an_invalid_request(client, request_kwargs):
    response = client.post("/revoke", **request_kwargs)

    body = assert_error(response, 400, "invalid_request")
    assert body["code"] == 400 and body["status"] == "Bad Request"


def test_a_missing_token_says_which_parameter(client):
    body = assert_error(client.post("/revoke", data={}), 400, "invalid_request")

    assert body["message"] == "Missing or malformed parameters: token."
    assert body["errors"] == {"form": {"token": ["Missing data for required field."]}}


def test_a_body_over_the_size_limit_is_413(client):
    response = client.post("/revoke", data={"token": "x" * (1024 * 1024 + 1)})

    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "app_config",
    [
        {
            **TEST_SETTINGS,
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_REFRESH": "2 per minute",
        }
    ],
    indirect=True,
)
def test_it_is_rate_limited_like_refresh(client):
    for _ in range(2):
        assert revoke(client, token="x").status_code == 200

    response = revoke(client, token="x")

    assert_error(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1


def test_the_session_leaves_the_list(auth, client):
    _, tokens = auth.user("alice")
    other = auth.login("alice")

    revoke(client, token=tokens["refresh_token"])

    listed = client.get("/me/sessions", headers=bearer(other["access_token"]))
    assert [s["current"] for s in listed.get_json()] == [True]
