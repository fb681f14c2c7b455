"""POST /reauthenticate: a step-up inside the session (issue 24), on every
revocation store.

The session's access token and the password again give a fresh access token of
the same session (same family, same start, listed once), `auth_time` now, and a
new refresh token: the previous one is spent as at a refresh. A wrong password
leaves the session as it was and counts against the failed-login budgets;
tokens that name no live session are refused as everywhere.
"""

import logging
import threading
import time
from datetime import timedelta

import pytest
from flask_jwt_extended import decode_token

from tests.helpers import PASSWORD, assert_error, bearer, set_cookies

REVOKED = "The token has been revoked."
ITEM = {"name": "Chair", "price": 15.99}
RACES = 20


@pytest.fixture
def app_config(request, app_config, backend):
    """The app on each revocation store in turn (plus a test's own settings)."""
    return {**app_config, **backend, **getattr(request, "param", {})}


def claims(app, token: str) -> dict:
    with app.app_context():
        return decode_token(token)


def step_up(client, access_token: str, password: str = PASSWORD, **kwargs):
    return client.post(
        "/reauthenticate",
        json={"password": password},
        headers=bearer(access_token),
        **kwargs,
    )


def sessions(client, access_token: str) -> list[dict]:
    response = client.get("/me/sessions", headers=bearer(access_token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_step_up_is_a_fresh_token_of_the_same_session(app, auth, client):
    _, login = auth.user("alice")
    stale = auth.refresh(login["refresh_token"]).get_json()
    before = sessions(client, stale["access_token"])
    time.sleep(1.1)  # auth_time is in whole seconds

    response = step_up(client, stale["access_token"])

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert response.headers["Cache-Control"] == "no-store"
    old, new = claims(app, login["access_token"]), claims(app, body["access_token"])
    assert new["fresh"] is True and new["type"] == "access"
    assert (new["fam"], new["fam_iat"], new["amr"]) == (
        old["fam"],
        old["fam_iat"],
        ["pwd"],
    )
    assert new["auth_time"] > old["auth_time"]
    refresh = claims(app, body["refresh_token"])
    assert (refresh["fam"], refresh["auth_time"]) == (new["fam"], new["auth_time"])
    # One session, before and after, which now says when its user authenticated.
    after = sessions(client, body["access_token"])
    assert [s["id"] for s in after] == [s["id"] for s in before]
    assert after[0]["authenticated_at"] > before[0]["authenticated_at"]
    assert after[0]["created_at"] == before[0]["created_at"]


def test_the_fresh_token_works_where_freshness_is_needed(auth, client, store, tokens):
    stale = auth.refresh(tokens["refresh_token"]).get_json()["access_token"]
    refused = client.post(
        "/item", json={**ITEM, "store_id": store["id"]}, headers=bearer(stale)
    )
    assert_error(refused, 401, "fresh_token_required")

    fresh = step_up(client, stale).get_json()["access_token"]
    again = client.post(
        "/item", json={**ITEM, "store_id": store["id"]}, headers=bearer(fresh)
    )

    assert again.status_code == 201, again.get_json()


def test_later_refreshes_carry_the_new_authentication(app, auth, client):
    _, login = auth.user("alice")
    time.sleep(1.1)
    stepped = step_up(client, login["access_token"]).get_json()

    refreshed = auth.refresh(stepped["refresh_token"]).get_json()

    token = claims(app, refreshed["access_token"])
    assert token["fresh"] is False
    assert token["auth_time"] == claims(app, stepped["access_token"])["auth_time"]


@pytest.mark.parametrize(
    "app_config", [{"REFRESH_REUSE_GRACE_SECONDS": 0}], indirect=True, ids=["no-grace"]
)
def test_the_previous_refresh_token_is_spent_as_at_a_refresh(app, auth, client):
    _, login = auth.user("alice")
    stepped = step_up(client, login["access_token"]).get_json()

    replayed = auth.refresh(login["refresh_token"])

    assert_error(replayed, 401, "token_revoked", REVOKED)
    # A replay ends the session, the step-up's tokens with it.
    assert_error(auth.refresh(stepped["refresh_token"]), 401, "token_revoked")


def test_a_resend_of_the_previous_refresh_token_within_the_grace_stays_one_chain(
    app, auth
):
    _, login = auth.user("alice")
    client = app.test_client()
    stepped = step_up(client, login["access_token"]).get_json()

    resent = auth.refresh(login["refresh_token"])

    assert resent.status_code == 200, resent.get_json()
    same_chain = claims(app, resent.get_json()["refresh_token"])["jti"]
    assert same_chain == claims(app, stepped["refresh_token"])["jti"]


def test_the_session_keeps_its_absolute_end(app, auth, client):
    _, login = auth.user("alice")
    started = claims(app, login["access_token"])["fam_iat"]
    cap = started + app.config["SESSION_MAX_AGE"].total_seconds()

    stepped = step_up(client, login["access_token"]).get_json()

    assert claims(app, stepped["refresh_token"])["exp"] <= cap
    assert claims(app, stepped["access_token"])["fam_iat"] == started


def test_a_wrong_password_leaves_the_session_as_it_was(app, auth, client, caplog):
    caplog.set_level(logging.INFO, logger="api.audit")
    _, login = auth.user("alice")

    response = step_up(client, login["access_token"], "not the password")

    assert_error(response, 401, "invalid_credentials", "Invalid credentials.")
    assert auth.refresh(login["refresh_token"]).status_code == 200
    events = [getattr(r, "event", None) for r in caplog.records]
    assert "reauthentication_failure" in events and "reauthenticated" not in events


def test_a_step_up_is_audited_and_counted(app, auth, client, caplog):
    caplog.set_level(logging.INFO, logger="api.audit")
    _, login = auth.user("alice")

    step_up(client, login["access_token"])

    (record,) = [
        r for r in caplog.records if getattr(r, "event", "") == "reauthenticated"
    ]
    assert record.family == claims(app, login["access_token"])["fam"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'auth_reauthentications_total{outcome="success"}' in metrics


@pytest.mark.parametrize(
    "app_config",
    [{"RATELIMIT_ENABLED": True, "RATELIMIT_LOGIN_USERNAME": "3 per minute"}],
    indirect=True,
    ids=["budget"],
)
def test_wrong_passwords_spend_the_failed_login_budget(auth, client):
    _, login = auth.user("alice")

    answers = [
        step_up(client, login["access_token"], "wrong").status_code for _ in range(4)
    ]
    right = step_up(client, login["access_token"])
    at_login = client.post("/login", json={"username": "alice", "password": "wrong"})

    assert answers == [401, 401, 401, 429]
    assert_error(right, 429, "rate_limited")
    # The same budget as /login's, for the same user and address.
    assert_error(at_login, 429, "rate_limited")


def test_the_password_may_be_form_encoded(auth, client):
    _, login = auth.user("alice")

    response = client.post(
        "/reauthenticate",
        data={"password": PASSWORD},
        headers=bearer(login["access_token"]),
    )

    assert response.status_code == 200, response.get_json()


# --- refused ---------------------------------------------------------------------


def test_a_refresh_token_is_refused(auth, client):
    _, login = auth.user("alice")

    response = step_up(client, login["refresh_token"])

    assert_error(response, 401, "invalid_token")


def test_an_api_token_has_no_session_to_step_up_in(auth, client):
    _, login = auth.user("alice")
    made = client.post(
        "/me/api-tokens", json={"name": "ci"}, headers=bearer(login["access_token"])
    ).get_json()

    response = step_up(client, made["token"])

    assert_error(
        response,
        401,
        "invalid_token",
        "An API token has no session to re-authenticate: log in for one.",
    )


def test_a_password_never_revives_an_ended_session(auth, client):
    _, login = auth.user("alice")
    client.post("/logout", headers=bearer(login["access_token"]))

    response = step_up(client, login["access_token"])

    assert_error(response, 401, "token_revoked", REVOKED)


def test_an_expired_access_token_is_refreshed_first(auth, client):
    user_id, _ = auth.user("alice")
    expired = auth.access_token(
        str(user_id),
        expires_delta=timedelta(minutes=-1),
        additional_claims={"fam": "f"},
    )

    response = step_up(client, expired)

    assert_error(response, 401, "token_expired")


def test_no_token_is_authorization_required(client):
    response = client.post("/reauthenticate", json={"password": PASSWORD})

    assert_error(response, 401, "authorization_required")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        (None, None, 422, "validation_error"),
        ("{}", "application/json", 422, "validation_error"),
        ('{"password": 5}', "application/json", 422, "validation_error"),
        ('{"password": ""}', "application/json", 422, "validation_error"),
        (
            '{"password": "' + "x" * 300 + '"}',
            "application/json",
            422,
            "validation_error",
        ),
        ('{"password": ', "application/json", 400, "bad_request"),
        ("[" * 1000 + "]" * 1000, "application/json", 400, "bad_request"),
        ("x" * (1024 * 1024 + 1), "application/json", 413, "payload_too_large"),
        ("password=", "application/x-www-form-urlencoded", 422, "validation_error"),
    ],
    ids=[
        "no-body",
        "no-password",
        "not-a-string",
        "empty",
        "too-long",
        "not-json",
        "too-deep",
        "too-large",
        "empty-form",
    ],
)
def test_bad_input_is_a_clear_error(auth, client, body, content_type, status, error):
    _, login = auth.user("alice")

    response = client.post(
        "/reauthenticate",
        data=body,
        content_type=content_type,
        headers=bearer(login["access_token"]),
    )

    assert_error(response, status, error)
    assert auth.refresh(login["refresh_token"]).status_code == 200


# --- cookie mode ----------------------------------------------------------------


def test_in_cookie_mode_the_step_up_sets_new_cookies(app, auth, client):
    auth.register("alice")
    client.post(
        "/login",
        json={"username": "alice", "password": PASSWORD, "token_delivery": "cookie"},
    )
    csrf = client.get_cookie("csrf_access_token").value

    without_csrf = client.post("/reauthenticate", json={"password": PASSWORD})
    response = client.post(
        "/reauthenticate",
        json={"password": PASSWORD},
        headers={"X-CSRF-TOKEN": csrf},
    )

    assert_error(without_csrf, 403, "csrf_failed")
    assert response.status_code == 200, response.get_json()
    assert "access_token" not in response.get_json()
    cookies = set_cookies(response)
    assert {"access_token_cookie", "refresh_token_cookie"} <= set(cookies)
    access = cookies["access_token_cookie"].split("=", 1)[1].split(";", 1)[0]
    assert claims(app, access)["fresh"] is True


# --- racing a refresh -----------------------------------------------------------


def test_a_refresh_racing_a_step_up_leaves_one_chain(app, auth):
    """A tab refreshes while another steps up, RACES times: whichever goes first,
    the step-up's refresh token goes on, and the session is listed once."""
    _, login = auth.user("alice")
    for round_number in range(RACES):
        client = app.test_client()
        refreshed: list = []
        barrier = threading.Barrier(2)

        def refresh(token: str, barrier: threading.Barrier, answers: list) -> None:
            barrier.wait()
            answers.append(app.test_client().post("/refresh", headers=bearer(token)))

        racer = threading.Thread(
            target=refresh, args=(login["refresh_token"], barrier, refreshed)
        )
        racer.start()
        barrier.wait()
        stepped = step_up(client, login["access_token"])
        racer.join(30)

        label = f"round {round_number}"
        assert stepped.status_code == 200, (label, stepped.get_json())
        assert refreshed[0].status_code == 200, (label, refreshed[0].get_json())
        login = stepped.get_json()
        next_pair = auth.refresh(login["refresh_token"])
        assert next_pair.status_code == 200, (label, next_pair.get_json())
        login = {**login, **next_pair.get_json()}
        assert len(sessions(client, login["access_token"])) == 1, label


@pytest.mark.parametrize(
    "app_config",
    [{"RATELIMIT_ENABLED": True, "RATELIMIT_LOGIN_USERNAME": "3 per minute"}],
    indirect=True,
    ids=["budget"],
)
def test_guessing_the_current_password_spends_the_same_budget(auth, client):
    """A thief with a stolen fresh token cannot guess the current password at
    PUT /user/password without limit either."""
    _, login = auth.user("alice")

    def change(current: str):
        return client.put(
            "/user/password",
            json={"current_password": current, "new_password": "a brand new one"},
            headers=bearer(login["access_token"]),
        )

    answers = [change("wrong guess").status_code for _ in range(4)]

    assert answers == [403, 403, 403, 429]
    assert_error(change(PASSWORD), 429, "rate_limited")
    assert_error(step_up(client, login["access_token"], "wrong"), 429, "rate_limited")
