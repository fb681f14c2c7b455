"""The Python client with passkeys (issue 26) against a live gunicorn server:
register_passkey() with the test suite's software authenticator as the caller's
authenticator, passkeys() and rename_passkey(), login_with_passkey() without a
username (a discoverable passkey) and with one, reauthenticate_with_passkey() by
hand and from the reauthenticate callback (a fresh-only route then answers), a
replayed credential refused with challenge_expired, and delete_passkey(), after
which the passkey logs in no more.

The server and the fixtures are tests/live/test_python_client.py's: development
settings, so the relying party is "localhost" with the origin
http://localhost:5000 that the software authenticator signs, whatever address
the server listens on; two-second access tokens. A non-fresh token comes from
`client.refresh()`.
"""

import pytest

from clients.python.api_client import (
    ApiClient,
    ApiClientError,
    Ceremony,
    LoginFailed,
    LoginRequired,
    ReauthenticationFailed,
    StepUp,
)
from tests.authenticator import EDDSA, ES256, InvalidStateError, SoftAuthenticator
from tests.helpers import PASSWORD, TOKEN_KEYS
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
from tests.live.test_python_client_step_up import _family, _sessions
from tests.passkeys import ORIGIN

# test_python_client.py's fixtures, used here by name (this module's own server).
server = client_tests.server
make_client = client_tests.make_client
username = client_tests.username

# RFC 8176: a key bound to its device, and a user verified at it.
DEVICE_BOUND = ["hwk", "user"]
PASSKEY_KEYS = {"id", "name", "created_at", "last_used_at"}


class Recorded:
    """An authenticator's create or get that records the options it was given
    and the credentials it answered."""

    def __init__(self, ceremony: Ceremony) -> None:
        self.ceremony = ceremony
        self.options: list[dict] = []
        self.credentials: list[dict] = []

    def __call__(self, options: dict) -> dict:
        self.options.append(options)
        credential = self.ceremony(options)
        self.credentials.append(credential)
        return credential


class PasskeyAsker:
    """A reauthenticate callback for a user with a passkey: a passkey step-up
    when the client asks for one, else a passkey login; it records the step-ups
    it was asked for."""

    def __init__(self, authenticator: SoftAuthenticator) -> None:
        self.get = Recorded(authenticator.get)
        self.step_ups: list[StepUp | None] = []

    def __call__(self, client: ApiClient) -> None:
        self.step_ups.append(client.step_up)
        if client.step_up is not None:
            client.reauthenticate_with_passkey(self.get)
        else:
            client.login_with_passkey(self.get)


@pytest.fixture
def authenticator() -> SoftAuthenticator:
    """A device of the test's own (its credentials, its counters)."""
    return SoftAuthenticator(origin=ORIGIN)


@pytest.fixture
def passkey(make_client, username, authenticator) -> dict:
    """`username` with one passkey, "laptop", held by `authenticator`; no session
    left."""
    client, _ = make_client(reauthenticate=Reauthenticator(username))
    client.login(username, PASSWORD)
    made = client.register_passkey("laptop", authenticator.create)
    assert client.logout().status_code == 200
    return made


def _ids(descriptors: list[dict]) -> list[str]:
    """The credential ids options name (allowCredentials, excludeCredentials)."""
    return [descriptor["id"] for descriptor in descriptors]


def test_register_list_and_rename_a_passkey(make_client, username, authenticator):
    client, session = make_client(reauthenticate=Reauthenticator(username))
    client.login(username, PASSWORD)
    create = Recorded(authenticator.create)

    made = client.register_passkey("laptop", create)

    [options] = create.options  # as the server sent them
    assert (options["rp"]["id"], options["user"]["name"]) == ("localhost", username)
    assert [param["alg"] for param in options["pubKeyCredParams"]] == [ES256, EDDSA]
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert (options["excludeCredentials"], options["attestation"]) == ([], "none")
    [held] = authenticator.credentials
    assert create.credentials[0]["id"] == held.id
    assert set(made) == PASSKEY_KEYS
    assert (made["name"], made["last_used_at"]) == ("laptop", None)
    assert client.passkeys() == [made]

    renamed = client.rename_passkey(made["id"], "work laptop")

    assert renamed == {**made, "name": "work laptop"}
    assert client.passkeys() == [renamed]
    assert session.statuses("POST", "/me/passkeys/options") == [200]
    assert session.statuses("POST", "/me/passkeys") == [201]
    assert session.statuses("PATCH", f"/me/passkeys/{made['id']}") == [200]


def test_what_the_authenticator_or_the_server_refuses_is_raised(
    make_client, username, authenticator, passkey
):
    client, session = make_client(reauthenticate=Reauthenticator(username))
    client.login(username, PASSWORD)
    create = Recorded(authenticator.create)

    # The options exclude the passkey the device holds: it refuses, nothing is sent.
    with pytest.raises(InvalidStateError):
        client.register_passkey("again", create)
    [options] = create.options
    assert _ids(options["excludeCredentials"]) == [authenticator.credentials[0].id]
    assert session.count("POST", "/me/passkeys") == 0
    with pytest.raises(ApiClientError) as unknown:
        client.rename_passkey(passkey["id"] + 1000, "nobody's")
    assert (unknown.value.code, unknown.value.status_code) == ("not_found", 404)
    assert type(unknown.value) is ApiClientError
    assert client.passkeys() == [passkey]


def test_a_passkey_logs_in_without_a_username(
    make_client, username, authenticator, passkey
):
    client, session = make_client()
    get = Recorded(authenticator.get)

    answer = client.login_with_passkey(get)

    [options] = get.options
    assert (options["rpId"], options["allowCredentials"]) == ("localhost", [])
    assert options["userVerification"] == "required"
    assert set(answer) == TOKEN_KEYS
    assert (answer["access_token"], answer["refresh_token"]) == (
        client.access_token,
        client.refresh_token,
    )
    claims = _claims(client.access_token)
    assert (claims["amr"], claims["fresh"]) == (DEVICE_BOUND, True)
    assert client.token_is_fresh and not client.code_required
    me = client.get("/me")
    assert (me.status_code, me.json()["username"]) == (200, username)
    [used] = client.passkeys()
    assert used["id"] == passkey["id"] and used["last_used_at"] is not None
    assert session.statuses("POST", "/login/passkey/options") == [200]
    assert session.statuses("POST", "/login/passkey") == [200]
    assert session.count("POST", "/login") == 0


def test_a_login_with_a_username_ends_the_session_held(
    make_client, username, authenticator, passkey
):
    client, session = make_client()
    client.login(username, PASSWORD)
    before = _family(client)
    get = Recorded(authenticator.get)

    client.login_with_passkey(get, username=username)

    [options] = get.options
    assert _ids(options["allowCredentials"]) == [authenticator.credentials[0].id]
    assert _claims(client.access_token)["amr"] == DEVICE_BOUND
    assert _family(client) != before
    assert [row["id"] for row in _sessions(client)] == [_family(client)]
    assert session.statuses("POST", "/revoke") == [200]


def test_a_step_up_with_the_passkey_keeps_the_session(
    make_client, authenticator, passkey
):
    client, session = make_client()
    client.login_with_passkey(authenticator.get)
    family = _family(client)
    client.refresh()  # not fresh any more
    refresh_before = client.refresh_token
    get = Recorded(authenticator.get)

    answer = client.reauthenticate_with_passkey(get)

    [options] = get.options
    assert _ids(options["allowCredentials"]) == [authenticator.credentials[0].id]
    claims = _claims(answer["access_token"])
    assert (claims["fresh"], claims["fam"], claims["amr"]) == (
        True,
        family,
        DEVICE_BOUND,
    )
    assert answer["access_token"] == client.access_token and client.token_is_fresh
    assert client.refresh_token == answer["refresh_token"] != refresh_before
    assert [row["id"] for row in _sessions(client)] == [family]
    assert session.statuses("POST", "/reauthenticate/options") == [200]
    assert session.statuses("POST", "/reauthenticate") == [200]


def test_the_callback_steps_up_with_the_passkey_for_a_fresh_only_route(
    make_client, authenticator, passkey
):
    asker = PasskeyAsker(authenticator)
    client, session = make_client(reauthenticate=asker)
    client.login_with_passkey(authenticator.get)
    family = _family(client)
    store_id = _create_store(client)
    client.refresh()  # not fresh any more

    created = client.post("/item", json=_item(store_id))

    assert created.status_code == 201, created.text
    assert (created.json()["name"], created.json()["store"]["id"]) == (
        "Chair",
        store_id,
    )
    assert asker.step_ups == [NOT_FRESH]
    claims = _claims(client.access_token)
    assert (claims["fresh"], claims["fam"], claims["amr"]) == (
        True,
        family,
        DEVICE_BOUND,
    )
    assert session.statuses("POST", "/item") == [401, 201]
    assert session.statuses("POST", "/reauthenticate") == [200]
    assert len(_sessions(client)) == 1


def test_concurrent_fresh_only_requests_share_one_passkey_step_up(
    make_client, authenticator, passkey
):
    asker = PasskeyAsker(authenticator)
    client, session = make_client(reauthenticate=asker)
    client.login_with_passkey(authenticator.get)
    store_id = _create_store(client)
    client.refresh()

    results = _run_together(THREADS, lambda: client.post("/item", json=_item(store_id)))

    statuses = [getattr(result, "status_code", result) for result in results]
    assert statuses == [201] * THREADS
    assert asker.step_ups == [NOT_FRESH]
    assert len(asker.get.credentials) == 1  # one ceremony at the authenticator
    assert session.statuses("POST", "/reauthenticate/options") == [200]
    assert session.statuses("POST", "/reauthenticate") == [200]
    assert len(_sessions(client)) == 1


def test_a_token_that_expires_during_the_ceremony_is_refreshed(
    make_client, authenticator, passkey
):
    """The challenge is bound to the session, not to an access token, and a
    request refused for its token never spends it: the same credential is sent
    again after the refresh."""
    client, session = make_client()
    client.login_with_passkey(authenticator.get)
    family = _family(client)
    sent = len(session.calls)

    def slow_get(options: dict) -> dict:
        """A user who takes their time: the access token expires meanwhile."""
        sleep_until_expired(client.access_token)
        return authenticator.get(options)

    client.reauthenticate_with_passkey(slow_get)

    assert [(m, p, s) for m, p, s, _ in session.calls[sent:]] == [
        ("POST", "/reauthenticate/options", 200),
        ("POST", "/reauthenticate", 401),  # token_expired
        ("POST", "/refresh", 200),
        ("POST", "/reauthenticate", 200),
    ]
    assert client.token_is_fresh and _family(client) == family
    assert _claims(client.access_token)["amr"] == DEVICE_BOUND


def test_a_replayed_credential_is_refused_with_challenge_expired(
    make_client, authenticator, passkey
):
    client, session = make_client()
    login = Recorded(authenticator.get)
    client.login_with_passkey(login)

    with pytest.raises(LoginFailed) as replayed_login:
        client.login_with_passkey(lambda options: login.credentials[0])

    refused = replayed_login.value
    assert (refused.code, refused.status_code) == ("challenge_expired", 401)
    assert not client.logged_in  # the session held was ended first, as by login()
    assert session.statuses("POST", "/login/passkey") == [200, 401]
    assert session.statuses("POST", "/revoke") == [200]

    client.login_with_passkey(authenticator.get)
    step_up = Recorded(authenticator.get)
    client.reauthenticate_with_passkey(step_up)
    held = (client.access_token, client.refresh_token)

    with pytest.raises(ReauthenticationFailed) as replayed_step_up:
        client.reauthenticate_with_passkey(lambda options: step_up.credentials[0])

    again = replayed_step_up.value
    assert (again.code, again.status_code) == ("challenge_expired", 401)
    assert (client.access_token, client.refresh_token) == held  # as it was
    assert session.statuses("POST", "/reauthenticate") == [200, 401]


def test_a_deleted_passkey_logs_in_and_steps_up_no_more(
    make_client, authenticator, passkey
):
    client, session = make_client(reauthenticate=PasskeyAsker(authenticator))
    client.login_with_passkey(authenticator.get)

    assert client.delete_passkey(passkey["id"]) is None

    assert client.passkeys() == []
    assert session.statuses("DELETE", f"/me/passkeys/{passkey['id']}") == [200]
    with pytest.raises(ApiClientError) as gone:
        client.delete_passkey(passkey["id"])
    assert (gone.value.code, gone.value.status_code) == ("not_found", 404)
    with pytest.raises(ReauthenticationFailed) as none_left:
        client.reauthenticate_with_passkey(authenticator.get)
    assert (none_left.value.code, none_left.value.status_code) == ("no_passkeys", 409)
    assert client.logged_in  # the session goes on
    other, other_session = make_client()
    with pytest.raises(LoginFailed) as refused:
        other.login_with_passkey(authenticator.get)  # the device still holds it
    assert (refused.value.code, refused.value.status_code) == (
        "invalid_credential",
        401,
    )
    assert not other.logged_in
    assert other_session.statuses("POST", "/login/passkey") == [401]


def test_logged_out_the_passkey_calls_raise_login_required(make_client, authenticator):
    client, session = make_client()
    create = Recorded(authenticator.create)

    with pytest.raises(LoginRequired) as registering:
        client.register_passkey("laptop", create)
    assert (registering.value.code, registering.value.status_code) == (
        "authorization_required",
        401,
    )
    with pytest.raises(LoginRequired) as listing:
        client.passkeys()
    assert listing.value.code == "authorization_required"
    with pytest.raises(LoginRequired) as stepping_up:
        client.reauthenticate_with_passkey(authenticator.get)
    assert (stepping_up.value.code, stepping_up.value.response) == (
        "authorization_required",
        None,
    )
    assert (create.options, authenticator.credentials) == ([], [])
    assert session.statuses("POST", "/me/passkeys/options") == [401]
    assert session.count("POST", "/reauthenticate/options") == 0
