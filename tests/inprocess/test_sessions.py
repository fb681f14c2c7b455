"""Sessions (token families), rotation with reuse detection, logout, logout-all,
password change and account deletion — on every revocation store: memory, the
database on SQLite and on PostgreSQL, and Redis (real servers, never fakes).
"""

import logging
import threading

import pytest
from flask_jwt_extended import decode_token

from tests.helpers import NEW_PASSWORD, PASSWORD, assert_error, bearer

REVOKED = "The token has been revoked."
INVALID = "validation_error"
NO_GRACE = pytest.mark.parametrize(
    "app_config", [{"REFRESH_REUSE_GRACE_SECONDS": 0}], indirect=True
)


@pytest.fixture
def app_config(request, app_config, backend):
    """The app on each revocation store in turn (plus a test's own settings)."""
    return {**app_config, **backend, **getattr(request, "param", {})}


def claims(app, token: str) -> dict:
    with app.app_context():
        return decode_token(token)


def works(client, tokens: dict) -> bool:
    """Whether the access token is accepted (raises on anything but 200 or 401)."""
    response = client.get("/me", headers=bearer(tokens["access_token"]))
    assert response.status_code in (200, 401), response.get_json()
    return response.status_code == 200


def assert_revoked(response) -> None:
    assert_error(response, 401, "token_revoked", REVOKED)
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def refresh_in_threads(app, refresh_token: str, count: int) -> list:
    """`count` simultaneous POST /refresh with one token; the responses."""
    barrier = threading.Barrier(count)
    responses: list = [None] * count

    def worker(index: int) -> None:
        client = app.test_client()
        barrier.wait()
        responses[index] = client.post("/refresh", headers=bearer(refresh_token))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return responses


# --- families -------------------------------------------------------------------


def test_every_login_starts_a_family_that_refresh_keeps(app, auth):
    _, first = auth.user("alice")
    second = auth.login("alice")
    family = claims(app, first["access_token"])["fam"]
    assert claims(app, first["refresh_token"])["fam"] == family
    assert claims(app, second["access_token"])["fam"] != family

    rotated = auth.refresh(first["refresh_token"])

    assert rotated.status_code == 200
    new = rotated.get_json()
    assert claims(app, new["access_token"])["fam"] == family
    assert claims(app, new["refresh_token"])["fam"] == family
    assert claims(app, new["access_token"])["fresh"] is False


# --- reuse detection ------------------------------------------------------------


@pytest.mark.parametrize(
    "app_config", [{"REFRESH_REUSE_GRACE_SECONDS": 0}], indirect=True
)
def test_reuse_after_the_grace_window_revokes_the_whole_family(
    app, auth, client, caplog
):
    user_id, stolen = auth.user("alice")
    other_session = auth.login("alice")
    legit = auth.refresh(stolen["refresh_token"]).get_json()
    assert works(client, legit)

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="api.audit"):
        replay = auth.refresh(stolen["refresh_token"])

    assert_revoked(replay)
    # Every token of that login is dead, the legitimate newest ones included...
    assert_revoked(client.get("/me", headers=bearer(legit["access_token"])))
    assert_revoked(auth.refresh(legit["refresh_token"]))
    assert_revoked(client.get("/me", headers=bearer(stolen["access_token"])))
    # ...while the user's other login is untouched.
    assert works(client, other_session)
    assert auth.refresh(other_session["refresh_token"]).status_code == 200
    events = [r for r in caplog.records if r.name == "api.audit"]
    events = [r for r in events if r.event == "refresh_token_reuse"]
    assert len(events) == 1
    assert events[0].levelname == "WARNING"
    assert events[0].user_id == str(user_id)
    assert events[0].family == claims(app, legit["access_token"])["fam"]
    assert events[0].request_id == replay.headers["X-Request-ID"]


def test_a_retry_within_the_grace_window_gets_a_valid_pair_of_the_same_family(
    app, auth, client
):
    _, tokens = auth.user("alice")
    first = auth.refresh(tokens["refresh_token"]).get_json()

    retry = auth.refresh(tokens["refresh_token"])

    assert retry.status_code == 200
    second = retry.get_json()
    family = claims(app, tokens["access_token"])["fam"]
    assert claims(app, second["refresh_token"])["fam"] == family
    assert works(client, first) and works(client, second)
    assert auth.refresh(second["refresh_token"]).status_code == 200
    assert auth.refresh(first["refresh_token"]).status_code == 200


def test_reuse_of_an_older_token_is_a_replay_even_within_the_grace_window(auth, client):
    _, tokens = auth.user("alice")
    second = auth.refresh(tokens["refresh_token"]).get_json()
    third = auth.refresh(second["refresh_token"]).get_json()

    # Not the family's immediately previous refresh token any more.
    replay = auth.refresh(tokens["refresh_token"])

    assert_revoked(replay)
    assert not works(client, third)
    assert_revoked(auth.refresh(third["refresh_token"]))


def test_concurrent_refreshes_with_one_token_all_succeed(app, auth, client):
    _, tokens = auth.user("alice")

    responses = refresh_in_threads(app, tokens["refresh_token"], 8)

    assert [r.status_code for r in responses] == [200] * 8
    # One winner; every retry gets its successor's jti: the session is one chain.
    jtis = {claims(app, r.get_json()["refresh_token"])["jti"] for r in responses}
    assert len(jtis) == 1
    for response in responses:
        assert works(client, response.get_json())
    # The chain goes on from any of the copies.
    assert auth.refresh(responses[0].get_json()["refresh_token"]).status_code == 200


@pytest.mark.parametrize(
    "app_config", [{"REFRESH_REUSE_GRACE_SECONDS": 0}], indirect=True
)
def test_concurrent_rotations_of_one_token_are_decided_exactly_once(app, auth):
    _, tokens = auth.user("alice")
    jti = claims(app, tokens["refresh_token"])["jti"]

    responses = refresh_in_threads(app, tokens["refresh_token"], 8)

    # One rotation wins; every other one is a replay (no grace here), which ends
    # the session. The winner's answer is a 200 when it finished before the
    # replays ended the session, else a 401 like theirs (its tokens would be
    # refused anyway): never two chains, never a working token after it.
    statuses = sorted(r.status_code for r in responses)
    assert statuses in ([200] + [401] * 7, [401] * 8)
    with app.app_context():
        rotation = app.extensions["blocklist"].get_rotation(jti)
    assert rotation is not None
    for response in responses:
        if response.status_code == 401:
            assert_revoked(response)
    winners = [r.get_json() for r in responses if r.status_code == 200]
    for winner in winners:
        assert claims(app, winner["refresh_token"])["jti"] == rotation.replaced_by
        assert_revoked(auth.refresh(winner["refresh_token"]))


# --- logout, logout everywhere --------------------------------------------------


def test_logout_revokes_the_token_and_its_family(auth, client):
    _, tokens = auth.user("alice")
    refreshed = auth.refresh(tokens["refresh_token"]).get_json()
    other = auth.login("alice")

    response = client.post("/logout", headers=bearer(refreshed["access_token"]))

    assert response.status_code == 200
    assert response.get_json() == {"message": "Successfully logged out."}
    assert_revoked(client.get("/me", headers=bearer(refreshed["access_token"])))
    assert_revoked(client.get("/me", headers=bearer(tokens["access_token"])))
    assert_revoked(auth.refresh(refreshed["refresh_token"]))
    assert_revoked(auth.refresh(tokens["refresh_token"]))
    assert works(client, other)


def test_logout_all_revokes_every_session_of_the_user_only(auth, client):
    _, first = auth.user("alice")
    second = auth.login("alice")
    _, bob = auth.user("bob")

    response = client.post("/logout/all", headers=bearer(first["access_token"]))

    assert response.status_code == 200
    assert response.get_json() == {"message": "Logged out of every session."}
    for tokens in (first, second):
        assert_revoked(client.get("/me", headers=bearer(tokens["access_token"])))
        assert_revoked(auth.refresh(tokens["refresh_token"]))
    assert works(client, bob)
    # Logging in again starts a new, valid session.
    assert works(client, auth.login("alice"))


# --- password change ------------------------------------------------------------


def test_password_change_needs_a_fresh_token(auth, client):
    _, tokens = auth.user("alice")
    stale = auth.refresh(tokens["refresh_token"]).get_json()

    response = client.put(
        "/user/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(stale["access_token"]),
    )

    assert_error(response, 401, "fresh_token_required", "The token is not fresh.")


def test_password_change_ends_other_sessions_and_returns_a_fresh_pair(
    app, auth, client
):
    _, tokens = auth.user("alice")
    other = auth.login("alice")

    response = client.put(
        "/user/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(tokens["access_token"]),
    )

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    new = response.get_json()
    assert set(new) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert claims(app, new["access_token"])["fresh"] is True
    assert works(client, new)
    assert auth.refresh(new["refresh_token"]).status_code == 200
    for old in (tokens, other):
        assert_revoked(client.get("/me", headers=bearer(old["access_token"])))
        assert_revoked(auth.refresh(old["refresh_token"]))
    wrong = client.post("/login", json={"username": "alice", "password": PASSWORD})
    assert_error(wrong, 401, "invalid_credentials")
    assert auth.login("alice", NEW_PASSWORD)["token_type"] == "Bearer"


@pytest.mark.parametrize(
    "body, status, error",
    [
        (
            {"current_password": "wrong password", "new_password": NEW_PASSWORD},
            403,
            "invalid_credentials",
        ),
        (
            {"current_password": PASSWORD, "new_password": PASSWORD},
            422,
            "validation_error",
        ),
        (
            {"current_password": PASSWORD, "new_password": "short"},
            422,
            "validation_error",
        ),
        ({"current_password": PASSWORD}, 422, "validation_error"),
        (
            {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "x": 1},
            422,
            "validation_error",
        ),
    ],
)
def test_password_change_refusals_change_nothing(auth, client, body, status, error):
    _, tokens = auth.user("alice")

    response = client.put(
        "/user/password", json=body, headers=bearer(tokens["access_token"])
    )

    assert_error(response, status, error)
    assert works(client, tokens)
    assert auth.login("alice", PASSWORD)["token_type"] == "Bearer"


# --- the caller, deletion -------------------------------------------------------


def test_me_returns_the_caller(auth, client):
    user_id, tokens = auth.user("alice")

    response = client.get("/me", headers=bearer(tokens["access_token"]))

    assert response.status_code == 200
    assert response.get_json() == {
        "id": user_id,
        "username": "alice",
        "is_admin": False,
    }


def test_deleting_a_user_revokes_all_of_its_tokens(auth, client):
    user_id, first = auth.user("alice")
    second = auth.login("alice")

    response = client.delete(f"/user/{user_id}", headers=bearer(first["access_token"]))

    assert response.status_code == 200
    for tokens in (first, second):
        assert_revoked(client.get("/me", headers=bearer(tokens["access_token"])))
        assert_revoked(auth.refresh(tokens["refresh_token"]))
