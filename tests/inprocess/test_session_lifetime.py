"""Sessions end: an absolute lifetime (SESSION_MAX_AGE from auth_time), an idle
timeout (JWT_REFRESH_TOKEN_EXPIRES), and one chain of refresh tokens even through
the grace window — on every revocation store."""

import time
import uuid
from datetime import timedelta

import pytest
from flask_jwt_extended import decode_token

from tests.helpers import assert_error, bearer
from tests.inprocess.test_sessions import assert_revoked, works

SESSION_ENDED = "The session has ended: log in again."


@pytest.fixture
def app_config(request, app_config, backend):
    """The app on each revocation store in turn (plus a test's own settings)."""
    return {**app_config, **backend, **getattr(request, "param", {})}


def claims(app, token: str) -> dict:
    with app.app_context():
        return decode_token(token)


def test_every_token_carries_the_login_time_and_rotation_keeps_it(app, auth):
    before = int(time.time())
    _, tokens = auth.user("alice")
    after = int(time.time())
    auth_time = claims(app, tokens["access_token"])["auth_time"]
    assert before <= auth_time <= after
    assert claims(app, tokens["refresh_token"])["auth_time"] == auth_time

    rotated = auth.refresh(tokens["refresh_token"]).get_json()
    again = auth.refresh(rotated["refresh_token"]).get_json()

    for pair in (rotated, again):
        assert claims(app, pair["access_token"])["auth_time"] == auth_time
        assert claims(app, pair["refresh_token"])["auth_time"] == auth_time


@pytest.mark.parametrize(
    "app_config",
    [{"SESSION_MAX_AGE": timedelta(seconds=600)}],
    indirect=True,
)
def test_no_token_outlives_the_sessions_absolute_lifetime(app, auth):
    """Idle timeout 14 days and access tokens 15 minutes, but the session ends
    10 minutes after the login: every token's exp is capped at that moment."""
    _, tokens = auth.user("alice")
    rotated = auth.refresh(tokens["refresh_token"]).get_json()

    for pair in (tokens, rotated):
        access = claims(app, pair["access_token"])
        refresh = claims(app, pair["refresh_token"])
        cap = access["auth_time"] + 600
        assert refresh["exp"] == cap
        assert access["exp"] == cap
        # The answer says how long the access token really lives.
        assert cap - time.time() - 2 <= pair["expires_in"] <= 600


def test_the_refresh_token_lives_for_the_idle_timeout_until_the_cap_nears(app, auth):
    _, tokens = auth.user("alice")
    refresh = claims(app, tokens["refresh_token"])
    access = claims(app, tokens["access_token"])
    idle = app.config["JWT_REFRESH_TOKEN_EXPIRES"].total_seconds()
    assert idle == 14 * 24 * 3600
    assert abs(refresh["exp"] - (refresh["iat"] + idle)) <= 1
    assert abs(access["exp"] - (access["iat"] + 900)) <= 1
    assert tokens["expires_in"] == 900


def _refresh_token_of_an_old_session(app, auth, user_id: int, age: int) -> str:
    """A refresh token that still decodes, of a session that logged in `age`
    seconds ago (as a token within the decode leeway past its cap would be)."""
    return auth.refresh_token(
        str(user_id),
        additional_claims={
            "fam": uuid.uuid4().hex,
            "auth_time": int(time.time()) - age,
            "is_admin": False,
        },
    )


def test_past_the_cap_refresh_answers_token_expired(app, auth, client):
    user_id, _ = auth.user("alice")
    max_age = int(app.config["SESSION_MAX_AGE"].total_seconds())
    token = _refresh_token_of_an_old_session(app, auth, user_id, max_age + 1)

    response = auth.refresh(token)

    assert_error(response, 401, "token_expired", SESSION_ENDED)
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    # Nothing was minted, and the token was not spent: it stays refused.
    assert_error(auth.refresh(token), 401, "token_expired", SESSION_ENDED)


def test_just_inside_the_cap_refresh_still_works_up_to_the_cap(app, auth):
    user_id, _ = auth.user("alice")
    max_age = int(app.config["SESSION_MAX_AGE"].total_seconds())
    token = _refresh_token_of_an_old_session(app, auth, user_id, max_age - 60)

    response = auth.refresh(token)

    assert response.status_code == 200, response.get_json()
    new = claims(app, response.get_json()["refresh_token"])
    assert new["exp"] == new["auth_time"] + max_age
    assert response.get_json()["expires_in"] <= 60


@pytest.mark.parametrize("app_config", [{"JWT_DECODE_LEEWAY": 5}], indirect=True)
@pytest.mark.parametrize(
    "past_exp, message",
    [(2, SESSION_ENDED), (10, "The token has expired.")],
    ids=["inside-the-leeway", "past-the-leeway"],
)
def test_a_token_past_its_cap_is_refused_inside_and_past_the_leeway(
    app, auth, past_exp, message
):
    """The leeway lets a token decode a few seconds past its exp (the clocks of
    instances disagree); it never lets a session be refreshed past its cap."""
    user_id, _ = auth.user("alice")
    max_age = int(app.config["SESSION_MAX_AGE"].total_seconds())
    token = auth.refresh_token(
        str(user_id),
        expires_delta=timedelta(seconds=-past_exp),
        additional_claims={
            "fam": uuid.uuid4().hex,
            # Its exp was its session's cap.
            "auth_time": int(time.time()) - past_exp - max_age,
            "is_admin": False,
        },
    )

    assert_error(auth.refresh(token), 401, "token_expired", message)


# --- one chain through the grace window ---------------------------------------------


def test_a_retry_gets_the_same_refresh_jti_as_the_winners_successor(app, auth):
    _, tokens = auth.user("alice")
    winner = auth.refresh(tokens["refresh_token"]).get_json()

    retry = auth.refresh(tokens["refresh_token"])

    assert retry.status_code == 200
    copy = retry.get_json()
    assert (
        claims(app, copy["refresh_token"])["jti"]
        == claims(app, winner["refresh_token"])["jti"]
    )


def test_once_one_copy_is_rotated_the_other_is_a_used_token(app, auth, client):
    """Two clients (or a client and a thief) cannot keep two chains of one
    session: after the window, the copy that was not rotated is a replay."""
    _, tokens = auth.user("alice")
    winner = auth.refresh(tokens["refresh_token"]).get_json()
    copy = auth.refresh(tokens["refresh_token"]).get_json()  # inside the window
    newest = auth.refresh(winner["refresh_token"]).get_json()
    app.config["REFRESH_REUSE_GRACE_SECONDS"] = 0  # the window has passed

    replay = auth.refresh(copy["refresh_token"])

    assert_revoked(replay)
    assert not works(client, newest)
    assert_revoked(auth.refresh(newest["refresh_token"]))


def test_an_expired_access_token_of_a_live_session_still_refreshes(app, auth, client):
    """Nothing else changes for clients: token_expired on an access token means
    refresh, and the refresh works while the session lives."""
    user_id, tokens = auth.user("alice")
    expired = auth.expired_access_token(str(user_id))
    assert_error(client.get("/me", headers=bearer(expired)), 401, "token_expired")

    assert auth.refresh(tokens["refresh_token"]).status_code == 200
