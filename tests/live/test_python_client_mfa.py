"""The Python client with a second factor (issue 25) against a live gunicorn
server: login() returning MfaRequired for an account with TOTP, complete_mfa()
with a code or a recovery code (a wrong code leaves the login waiting; a dead
mfa_token raises LoginRequired and is dropped), reauthenticate() with a code, and
the reauthenticate callback that sends one, at a step-up and at a new login.

The server and the fixtures are tests/live/test_python_client.py's (two-second
access tokens); a non-fresh token comes from `client.refresh()`. Each user enrols
with the previous step's code (tests/mfa.py), so the current step's code is left
for one use: no test waits for a new step.
"""

import pytest

from clients.python.api_client import (
    ApiClient,
    ApiClientError,
    LoginFailed,
    LoginRequired,
    MfaRequired,
    ReauthenticationFailed,
)
from tests import mfa
from tests.helpers import PASSWORD, TOKEN_KEYS
from tests.live import test_python_client as client_tests
from tests.live.test_python_client import NOT_FRESH, _claims, _create_store, _item
from tests.live.test_python_client_step_up import ACCOUNT_NOT_FRESH, _family, _sessions

# test_python_client.py's fixtures, used here by name (this module's own server).
server = client_tests.server
make_client = client_tests.make_client
username = client_tests.username

BOTH_FACTORS = ["pwd", "otp"]
WAITING = (
    "A second factor is required: send a code with the mfa_token to POST /login/mfa."
)


@pytest.fixture
def totp_user(server, username) -> mfa.TotpUser:
    """`username`, with TOTP on and no session left."""
    secret, codes = mfa.enrol_live(server.base_url, username)
    return mfa.TotpUser(username, secret, codes)


def _log_in(client: ApiClient, user: mfa.TotpUser, **second_factor: str) -> None:
    """The two steps of a login, the second with `second_factor`."""
    assert isinstance(client.login(user.username, PASSWORD), MfaRequired)
    client.complete_mfa(**second_factor)


class CodeAsker:
    """A reauthenticate callback for an account that may have a second factor:
    the password, with a code when the client knows one is needed or the password
    alone is refused with mfa_required; a new login, and its second step, when
    the session is over. `second_factor` is what it "types" as the code."""

    def __init__(self, user: str, **second_factor: str) -> None:
        self.user = user
        self.second_factor = second_factor
        self.seen: list[tuple[object, bool]] = []  # (step_up, code_required)

    def __call__(self, client: ApiClient) -> None:
        self.seen.append((client.step_up, client.code_required))
        if client.step_up is None:
            if isinstance(client.login(self.user, PASSWORD), MfaRequired):
                client.complete_mfa(**self.second_factor)
            return
        if not client.code_required:
            try:
                client.reauthenticate(PASSWORD)
                return
            except ReauthenticationFailed as refused:
                if refused.code != "mfa_required":
                    raise
        client.reauthenticate(PASSWORD, **self.second_factor)


def test_login_returns_mfa_required_and_a_code_completes_it(make_client, totp_user):
    client, session = make_client()

    result = client.login(totp_user.username, PASSWORD)

    assert isinstance(result, MfaRequired) and result.message == WAITING
    assert len(result.mfa_token) >= 43 and result.mfa_token not in repr(result)
    assert client.mfa_pending and not client.logged_in
    assert client.get("/me").status_code == 401  # no token until the second step

    with pytest.raises(LoginFailed) as wrong:
        client.complete_mfa(code=mfa.wrong_code(totp_user.secret))
    assert (wrong.value.code, wrong.value.status_code) == ("invalid_code", 401)
    assert client.mfa_pending and not client.logged_in  # the login still waits

    answer = client.complete_mfa(code=mfa.code(totp_user.secret))

    assert set(answer) == TOKEN_KEYS and answer["access_token"] == client.access_token
    claims = _claims(client.access_token)
    assert (claims["amr"], claims["fresh"]) == (BOTH_FACTORS, True)
    assert client.token_is_fresh and client.code_required and not client.mfa_pending
    me = client.get("/me")
    assert (me.status_code, me.json()["username"]) == (200, totp_user.username)
    assert session.statuses("POST", "/login") == [401]
    assert session.statuses("POST", "/login/mfa") == [401, 200]


def test_a_recovery_code_logs_in_once(make_client, totp_user):
    client, session = make_client()
    first, second = totp_user.recovery_codes[:2]
    _log_in(client, totp_user, recovery_code=first)
    assert client.logged_in and _claims(client.access_token)["amr"] == BOTH_FACTORS

    client.login(totp_user.username, PASSWORD)  # over the held session: ends it
    with pytest.raises(LoginFailed) as used:
        client.complete_mfa(recovery_code=first)
    assert used.value.code == "invalid_code" and client.mfa_pending
    client.complete_mfa(recovery_code=second)

    assert client.get("/me/mfa").json() == {"totp": True, "recovery_codes_left": 8}
    assert len(_sessions(client)) == 1
    assert session.statuses("POST", "/revoke") == [200]
    assert session.statuses("POST", "/login/mfa") == [200, 401, 200]


def test_a_dead_mfa_token_raises_login_required_and_is_dropped(make_client, totp_user):
    client, session = make_client()
    client.login(totp_user.username, PASSWORD)
    wrong = mfa.wrong_code(totp_user.secret)

    refusals = []
    while client.mfa_pending and len(refusals) < 8:
        with pytest.raises(ApiClientError) as refused:
            client.complete_mfa(code=wrong)
        refusals.append((type(refused.value), refused.value.code))

    # MFA_TOKEN_MAX_FAILURES (5): the fifth wrong code ends the waiting login.
    assert refusals == [(LoginFailed, "invalid_code")] * 5 + [
        (LoginRequired, "invalid_mfa_token")
    ]
    assert not client.logged_in
    with pytest.raises(LoginRequired) as nothing:
        client.complete_mfa(code=mfa.code(totp_user.secret))
    assert nothing.value.code == "invalid_mfa_token" and nothing.value.response is None
    assert session.count("POST", "/login/mfa") == 6  # nothing sent for the last


def test_a_logout_drops_the_waiting_login(make_client, totp_user):
    client, session = make_client()
    client.login(totp_user.username, PASSWORD)

    assert client.logout() is None  # no session yet: nothing to revoke

    assert not client.mfa_pending
    with pytest.raises(LoginRequired):
        client.complete_mfa(code=mfa.code(totp_user.secret))
    assert session.count("POST", "/login/mfa") == 0


def test_a_step_up_needs_the_password_and_a_code(make_client, totp_user):
    client, session = make_client()
    _log_in(client, totp_user, recovery_code=totp_user.recovery_codes[0])
    family = _family(client)
    # (A refresh before each step-up: not fresh, and far from expiring.)
    client.refresh()
    held = (client.access_token, client.refresh_token)

    with pytest.raises(ReauthenticationFailed) as alone:
        client.reauthenticate(PASSWORD)
    assert (client.access_token, client.refresh_token) == held  # as it was
    assert (alone.value.code, alone.value.status_code) == ("mfa_required", 401)
    assert "mfa_token" not in alone.value.response.json()  # the session binds
    assert client.code_required and not client.token_is_fresh
    client.refresh()
    with pytest.raises(ReauthenticationFailed) as wrong:
        client.reauthenticate(PASSWORD, code=mfa.wrong_code(totp_user.secret))
    assert wrong.value.code == "invalid_code" and not client.token_is_fresh
    client.refresh()

    answer = client.reauthenticate(PASSWORD, code=mfa.code(totp_user.secret))

    claims = _claims(answer["access_token"])
    assert (claims["fresh"], claims["fam"], claims["amr"]) == (
        True,
        family,
        BOTH_FACTORS,
    )
    assert client.token_is_fresh and client.code_required
    assert [row["id"] for row in _sessions(client)] == [family]
    assert session.statuses("POST", "/reauthenticate") == [401, 401, 200]


def test_the_callback_adds_a_code_once_totp_is_on(make_client, username):
    """TOTP turned on inside the session: the client learns it from the first
    step-up refused with mfa_required, and the callback sends a code too."""
    asker = CodeAsker(username)
    client, session = make_client(reauthenticate=asker)
    client.login(username, PASSWORD)
    store_id = _create_store(client)
    # Turning TOTP on: two fresh-only calls, each refused first (not fresh), each
    # stepped up with the password alone (no TOTP yet).
    client.refresh()
    started = client.post("/me/mfa/totp")
    assert started.status_code == 201, started.text
    secret = started.json()["secret"]
    client.refresh()
    confirmation = {"code": mfa.code_with_time_left(secret, steps_ago=1, seconds=5)}
    confirmed = client.post("/me/mfa/totp/confirm", json=confirmation)
    assert confirmed.status_code == 200, confirmed.text
    assert not client.code_required

    asker.second_factor = {"code": mfa.code(secret)}
    client.refresh()
    created = client.post("/item", json=_item(store_id))

    assert created.status_code == 201, created.text
    assert asker.seen == [
        (ACCOUNT_NOT_FRESH, False),
        (ACCOUNT_NOT_FRESH, False),
        (NOT_FRESH, False),
    ]
    assert client.code_required
    assert _claims(client.access_token)["amr"] == BOTH_FACTORS
    assert session.statuses("POST", "/reauthenticate") == [200, 200, 401, 200]
    assert len(_sessions(client)) == 1


def test_the_callback_logs_in_again_with_a_code_then_steps_up_with_one(
    make_client, totp_user
):
    asker = CodeAsker(totp_user.username, code=mfa.code(totp_user.secret))
    client, session = make_client(reauthenticate=asker)
    _log_in(client, totp_user, recovery_code=totp_user.recovery_codes[0])
    store_id = _create_store(client)
    elsewhere, _ = make_client()
    _log_in(elsewhere, totp_user, recovery_code=totp_user.recovery_codes[1])
    assert elsewhere.post("/logout/all").status_code == 200

    client.refresh()  # refused: the session is over, the callback logs in again

    [(step_up, _)] = asker.seen
    assert step_up is None and client.logged_in and client.code_required
    assert session.statuses("POST", "/login/mfa") == [200, 200]
    # A step-up now asks for a code at once: the client knows.
    asker.second_factor = {"recovery_code": totp_user.recovery_codes[2]}
    client.refresh()
    assert client.post("/item", json=_item(store_id)).status_code == 201
    assert asker.seen[1] == (NOT_FRESH, True)
    assert session.statuses("POST", "/reauthenticate") == [200]
    assert len(_sessions(client)) == 1
