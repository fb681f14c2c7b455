"""The Python client's step-up (issue 24) against a live gunicorn server: a
fresh-only route's RFC 9470 challenge is answered by POST /reauthenticate inside
the session, never by a new login, so GET /me/sessions lists one session however
many step-ups there were; a wrong password raises and leaves the session as it
was; a login over a held session ends that session first.

The server and the fixtures are tests/live/test_python_client.py's (two workers,
the database revocation store, two-second access tokens); a non-fresh token comes
from `client.refresh()`, so no test waits for freshness to run out.
"""

import json

import pytest
import requests

from clients.python.api_client import (
    ApiClient,
    LoginFailed,
    LoginRequired,
    ReauthenticationFailed,
    StepUp,
    parse_challenge,
    step_up_of,
)
from tests import servers
from tests.helpers import PASSWORD
from tests.live import test_python_client as client_tests
from tests.live.test_python_client import (
    NOT_FRESH,
    THREADS,
    Reauthenticator,
    _claims,
    _create_store,
    _item,
    _run_together,
    sleep_until_expired,
)

# test_python_client.py's fixtures, used here by name (this module's own server).
server = client_tests.server
make_client = client_tests.make_client
username = client_tests.username

STEP_UPS = 3
WRONG_PASSWORD = "not the password at all"
# What POST /me/api-tokens (ACCOUNT_FRESH_MAX_AGE, default 300 s) asks for.
ACCOUNT_NOT_FRESH = StepUp(300, "The token is not fresh.")


def _sessions(client: ApiClient) -> list[dict]:
    """GET /me/sessions through the client: the user's sessions."""
    response = client.get("/me/sessions")
    assert response.status_code == 200, response.text
    return response.json()


def _family(client: ApiClient) -> str:
    """The session (family) of the access token the client holds."""
    assert client.access_token is not None
    return _claims(client.access_token)["fam"]


def _not_fresh(client: ApiClient, username: str) -> tuple[str, int]:
    """Log `client` in, make a store and refresh: (its session, the store's id),
    and a token that is not fresh."""
    client.login(username, PASSWORD)
    store_id = _create_store(client)
    client.refresh()
    return _family(client), store_id


def test_step_ups_through_the_callback_keep_one_session(make_client, username):
    """The regression of issue 24, point 1: every step-up used to be a login that
    left the previous session alive."""
    reauthenticate = Reauthenticator(username)
    client, session = make_client(reauthenticate=reauthenticate)
    client.login(username, PASSWORD)
    family = _family(client)
    [before] = _sessions(client)
    store_id = _create_store(client)

    for round_ in range(1, STEP_UPS + 1):
        client.refresh()  # not fresh any more
        refresh_before = client.refresh_token
        response = client.post("/item", json=_item(store_id))

        assert response.status_code == 201, response.text
        assert client.token_is_fresh
        assert _family(client) == family
        assert client.refresh_token != refresh_before  # a new one, kept
        [listed] = _sessions(client)
        assert (listed["id"], listed["current"]) == (family, True), listed
        assert listed["created_at"] == before["created_at"]
        assert listed["authenticated_at"] >= before["authenticated_at"]
        assert reauthenticate.calls == round_

    assert reauthenticate.step_ups == [NOT_FRESH] * STEP_UPS
    assert session.statuses("POST", "/item") == [401, 201] * STEP_UPS
    assert session.statuses("POST", "/reauthenticate") == [200] * STEP_UPS
    assert session.count("POST", "/login") == 1
    assert session.count("POST", "/revoke") == 0
    print(f"\nstep-up: {STEP_UPS} step-ups, 1 session listed after each")


def test_an_account_route_asks_for_its_own_max_age(make_client, username):
    reauthenticate = Reauthenticator(username)
    client, session = make_client(reauthenticate=reauthenticate)
    client.login(username, PASSWORD)
    client.refresh()

    made = client.post("/me/api-tokens", json={"name": "nightly"})

    assert made.status_code == 201, made.text
    assert reauthenticate.step_ups == [ACCOUNT_NOT_FRESH]
    assert session.statuses("POST", "/me/api-tokens") == [401, 201]
    assert len(_sessions(client)) == 1


def test_without_a_callback_the_challenge_is_raised_and_answered_by_hand(
    make_client, username
):
    client, session = make_client()
    family, store_id = _not_fresh(client, username)

    with pytest.raises(LoginRequired) as raised:
        client.post("/item", json=_item(store_id))
    refused = raised.value
    assert (refused.code, refused.status_code) == ("fresh_token_required", 401)
    assert refused.step_up == NOT_FRESH
    challenge = parse_challenge(refused.response.headers["WWW-Authenticate"])
    assert challenge["error"] == "insufficient_user_authentication"
    assert challenge["max_age"] == "900"

    answer = client.reauthenticate(PASSWORD)

    assert set(answer) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert answer["access_token"] == client.access_token
    claims = _claims(answer["access_token"])
    assert (claims["fresh"], claims["fam"], claims["amr"]) == (True, family, ["pwd"])
    assert client.post("/item", json=_item(store_id)).status_code == 201
    assert [row["id"] for row in _sessions(client)] == [family]
    assert session.count("POST", "/login") == 1


def test_a_wrong_password_raises_and_leaves_the_session(make_client, username):
    client, session = make_client()
    client.login(username, PASSWORD)
    family = _family(client)
    client.refresh()
    access, refresh = client.access_token, client.refresh_token

    with pytest.raises(ReauthenticationFailed) as raised:
        client.reauthenticate(WRONG_PASSWORD)

    failed = raised.value
    assert (failed.code, failed.status_code) == ("invalid_credentials", 401)
    assert failed.message == "Invalid credentials."
    assert failed.response.json() == {
        "code": 401,
        "status": "Unauthorized",
        "message": "Invalid credentials.",
        "error": "invalid_credentials",
    }
    # The session and the tokens held are as they were.
    assert (client.access_token, client.refresh_token) == (access, refresh)
    assert not client.token_is_fresh
    assert [row["id"] for row in _sessions(client)] == [family]
    me = client.get("/me")
    assert (me.status_code, me.json()["username"]) == (200, username)
    # The right password then steps up in that same session.
    client.reauthenticate(PASSWORD)
    assert client.token_is_fresh and _family(client) == family
    assert session.statuses("POST", "/reauthenticate") == [401, 200]


def test_a_wrong_password_in_the_callback_reaches_the_caller(make_client, username):
    def mistyped(client: ApiClient) -> None:
        client.reauthenticate(WRONG_PASSWORD)

    client, session = make_client(reauthenticate=mistyped)
    family, store_id = _not_fresh(client, username)

    with pytest.raises(ReauthenticationFailed) as raised:
        client.post("/item", json=_item(store_id))

    assert raised.value.code == "invalid_credentials"
    assert session.statuses("POST", "/item") == [401]  # not repeated
    assert [row["id"] for row in _sessions(client)] == [family]
    assert client.step_up is None  # only while the callback runs


def test_concurrent_fresh_only_requests_share_one_step_up(make_client, username):
    reauthenticate = Reauthenticator(username)
    client, session = make_client(reauthenticate=reauthenticate)
    _, store_id = _not_fresh(client, username)

    results = _run_together(THREADS, lambda: client.post("/item", json=_item(store_id)))

    statuses = [getattr(result, "status_code", result) for result in results]
    assert statuses == [201] * THREADS
    assert reauthenticate.calls == 1
    assert session.statuses("POST", "/reauthenticate") == [200]
    refused = session.count("POST", "/item", 401)
    assert 1 <= refused <= THREADS, session.calls
    assert len(_sessions(client)) == 1
    print(f"\nstep-up: {THREADS} threads, {refused} refused, 1 step-up")


def test_a_step_up_with_an_expired_access_token_refreshes_first(make_client, username):
    client, session = make_client()
    client.login(username, PASSWORD)
    family = _family(client)
    sleep_until_expired(client.access_token)

    client.reauthenticate(PASSWORD)

    assert [(m, p, s) for m, p, s, _ in session.calls[1:]] == [
        ("POST", "/reauthenticate", 401),  # token_expired
        ("POST", "/refresh", 200),
        ("POST", "/reauthenticate", 200),
    ]
    assert client.token_is_fresh and _family(client) == family
    assert len(_sessions(client)) == 1


def test_a_step_up_in_an_ended_session_raises_login_required(make_client, username):
    client, session = make_client()
    client.login(username, PASSWORD)
    elsewhere, _ = make_client()
    elsewhere.login(username, PASSWORD)
    assert elsewhere.post("/logout/all").status_code == 200

    with pytest.raises(LoginRequired) as raised:
        client.reauthenticate(PASSWORD)

    # A password never revives an ended session: the dead tokens are forgotten.
    assert (raised.value.code, raised.value.status_code) == ("token_revoked", 401)
    assert raised.value.step_up is None
    assert not client.logged_in and client.refresh_token is None
    with pytest.raises(LoginRequired) as again:
        client.reauthenticate(PASSWORD)  # nothing held: no request
    assert again.value.code == "authorization_required"
    assert session.count("POST", "/reauthenticate") == 1


def test_an_api_token_has_no_session_to_step_up_in(server, make_client, username):
    owner, _ = make_client()
    owner.login(username, PASSWORD)
    made = owner.post("/me/api-tokens", json={"name": "script"})
    assert made.status_code == 201, made.text
    with ApiClient.from_api_token(server.base_url, made.json()["token"]) as script:
        with pytest.raises(LoginRequired) as raised:
            script.reauthenticate(PASSWORD)
        assert raised.value.code == "authorization_required"
        assert script.uses_api_token  # left as it was


def test_login_over_a_held_session_ends_it(make_client, username, server):
    client, session = make_client()
    client.login(username, PASSWORD)
    old_family, old_refresh = _family(client), client.refresh_token

    client.login(username, PASSWORD)

    new_family = _family(client)
    assert new_family != old_family
    assert [row["id"] for row in _sessions(client)] == [new_family]
    assert session.statuses("POST", "/revoke") == [200]
    [revoke] = [call for call in session.calls if call[1] == "/revoke"]
    assert session.calls.index(revoke) == 1  # before the second login
    old = servers.request(server.base_url, "POST", "/refresh", token=old_refresh)
    assert (old.status, old.error) == (401, "token_revoked")


def test_a_failed_login_over_a_held_session_has_ended_it(make_client, username, server):
    client, _ = make_client()
    client.login(username, PASSWORD)
    old_refresh = client.refresh_token

    with pytest.raises(LoginFailed):
        client.login(username, WRONG_PASSWORD)

    assert not client.logged_in
    old = servers.request(server.base_url, "POST", "/refresh", token=old_refresh)
    assert (old.status, old.error) == (401, "token_revoked")


def test_a_callback_that_logs_in_instead_leaves_no_session_behind(
    make_client, username
):
    """The pattern of issue 24's point 1 (a step-up by a new login): the old
    session ends at each login, so one session is listed after each."""
    logins = []

    def log_in_again(client: ApiClient) -> None:
        logins.append(client.step_up)
        client.login(username, PASSWORD)

    client, session = make_client(reauthenticate=log_in_again)
    client.login(username, PASSWORD)
    store_id = _create_store(client)
    for _ in range(STEP_UPS):
        client.refresh()
        assert client.post("/item", json=_item(store_id)).status_code == 201
        [listed] = _sessions(client)
        assert listed["id"] == _family(client)

    assert logins == [NOT_FRESH] * STEP_UPS
    assert session.statuses("POST", "/revoke") == [200] * STEP_UPS
    assert session.count("POST", "/reauthenticate") == 0


# The challenge, parsed (RFC 6750 §3 syntax; RFC 9470 §3 quotes max_age in its
# example, and a bare token is as valid) ------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="api", error="insufficient_user_authentication", '
            'error_description="The token is not fresh.", max_age="300"',
            {
                "realm": "api",
                "error": "insufficient_user_authentication",
                "error_description": "The token is not fresh.",
                "max_age": "300",
            },
        ),
        (
            "Bearer error=insufficient_user_authentication, max_age=300",
            {"error": "insufficient_user_authentication", "max_age": "300"},
        ),
        (
            'bearer error_description="a \\"quoted\\" word"',
            {"error_description": 'a "quoted" word'},
        ),
        ('Basic realm="api"', {}),
        ("", {}),
        (None, {}),
    ],
)
def test_parse_challenge(header, expected):
    assert parse_challenge(header) == expected


def _answer(status: int, body: dict, challenge: str | None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    if challenge is not None:
        response.headers["WWW-Authenticate"] = challenge
    return response


@pytest.mark.parametrize(
    ("status", "error", "challenge", "expected"),
    [
        (401, "fresh_token_required", 'Bearer max_age="300"', StepUp(300, "m")),
        (
            401,
            "x",
            "Bearer error=insufficient_user_authentication, max_age=60",
            StepUp(60, "m"),
        ),
        (401, "fresh_token_required", None, StepUp(None, "m")),
        (401, "token_expired", 'Bearer error="invalid_token"', None),
        (403, "fresh_token_required", None, None),
    ],
)
def test_step_up_of(status, error, challenge, expected):
    body = {"code": status, "message": "m", "error": error}
    assert step_up_of(_answer(status, body, challenge)) == expected
