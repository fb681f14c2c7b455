"""The failed-login budgets (auth/limits.py), attacked as a stranger would: one
address guessing, many addresses guessing one username, and the owner logging in
meanwhile, from a device that has logged in before (a device cookie) or not.

Small budgets here: 2 failures per (username, address) and per device, 4 per
username from every address together; the per-address flood limit stays out of
the way. Client addresses vary through REMOTE_ADDR.
"""

import logging

import pytest

from tests.helpers import PASSWORD, assert_error, bearer
from tests.inprocess.test_metrics import Delta, counted

BUDGETS = {
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_LOGIN": "100 per minute",
    "RATELIMIT_LOGIN_USERNAME": "2 per minute",
    "RATELIMIT_LOGIN_USERNAME_TOTAL": "4 per hour",
}
WRONG = "wrong horse battery"
INVALID_CREDENTIALS = {
    "code": 401,
    "status": "Unauthorized",
    "message": "Invalid credentials.",
    "error": "invalid_credentials",
}
DEVICE_COOKIE = "login_device"
BUDGET_METRIC = "auth_login_budget_refusals_total"


@pytest.fixture
def app_config(request, app_config):
    """The base config, these budgets, and what `parametrize(indirect=True)` adds."""
    return {**app_config, **BUDGETS, **getattr(request, "param", {})}


def login(client, username="alice", password=PASSWORD, *, addr="127.0.0.1"):
    """POST /login from `addr`."""
    return client.post(
        "/login",
        json={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": addr},
    )


def password_grant(client, username="alice", password=PASSWORD, *, addr="127.0.0.1"):
    """POST /token, the password grant, from `addr`."""
    form = {"grant_type": "password", "username": username, "password": password}
    return client.post("/token", data=form, environ_base={"REMOTE_ADDR": addr})


def assert_failed(response):
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.get_json() == INVALID_CREDENTIALS


def assert_logged_in(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    assert set(response.get_json()) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
    }


def assert_refused(response, limit: str) -> None:
    """429 in the envelope, naming the spent limit, with Retry-After."""
    body = assert_error(response, 429, "rate_limited")
    assert set(body) == {"code", "status", "message", "error"}
    assert f"({limit})" in body["message"], body
    assert int(response.headers["Retry-After"]) >= 1


def spend_the_username_budget(app, username="alice", first=1):
    """A stranger's distributed guessing: one failure from each of 4 addresses
    (the per-address budget never bites), with a client of its own."""
    stranger = app.test_client()
    for i in range(first, first + 4):
        assert_failed(login(stranger, username, WRONG, addr=f"203.0.113.{i}"))
    return stranger


def exhausted(caplog) -> list:
    return [
        r
        for r in caplog.records
        if r.name == "api.audit" and r.event == "login_budget_exhausted"
    ]


def test_a_strangers_failures_never_refuse_the_owner_at_another_address(
    auth, app, client
):
    auth.register("alice")
    stranger = app.test_client()
    for _ in range(2):
        assert_failed(login(stranger, "alice", WRONG, addr="198.51.100.7"))

    # The stranger's address is refused, whatever it sends...
    assert_refused(login(stranger, addr="198.51.100.7"), "2 per 1 minute")
    # ...and the owner, elsewhere, logs in.
    assert_logged_in(login(client, addr="192.0.2.10"))


def test_distributed_guessing_spends_the_username_budget(auth, app, client, caplog):
    """Then the owner, from an address and a device never seen before, is refused
    too (documented: a device that logged in before is not)."""
    caplog.set_level(logging.INFO)
    user_id = auth.register("alice").get_json()["id"]
    delta = Delta(client)
    spend_the_username_budget(app, "ALICE")

    response = login(app.test_client(), "alice", PASSWORD, addr="192.0.2.10")

    assert_refused(response, "4 per 1 hour")
    (event,) = exhausted(caplog)
    assert event.levelno == logging.WARNING
    assert event.budget == "username"
    assert event.user_id == str(user_id)  # the account's id, never what was typed
    assert event.limit == "4 per 1 hour"
    assert event.client == "192.0.2.10"
    assert event.request_id == response.headers["X-Request-ID"]
    typed = {"alice", "ALICE", PASSWORD, WRONG}
    assert not typed & {str(value) for value in vars(event).values()}
    assert delta.now()[counted(BUDGET_METRIC, budget="username")] == 1


def test_a_spent_budget_of_an_unknown_username_names_no_account(app, caplog):
    caplog.set_level(logging.INFO)
    stranger = spend_the_username_budget(app, "MyS3cret-Passw0rd")

    response = login(stranger, "MyS3cret-Passw0rd", WRONG, addr="203.0.113.99")

    assert_refused(response, "4 per 1 hour")
    (event,) = exhausted(caplog)
    assert event.user_id is None
    assert "MyS3cret-Passw0rd" not in {str(v) for v in vars(event).values()}


def test_the_owner_with_a_device_cookie_logs_in_while_the_budget_is_spent(
    auth, app, client
):
    auth.register("alice")
    assert_logged_in(login(client, addr="192.0.2.10"))  # the owner's device
    assert client.get_cookie(DEVICE_COOKIE, path="/login") is not None
    spend_the_username_budget(app)
    assert_refused(login(app.test_client(), addr="192.0.2.99"), "4 per 1 hour")

    # From home, and from an address never seen before: the cookie is the device.
    assert_logged_in(login(client, addr="192.0.2.10"))
    assert_logged_in(login(client, addr="192.0.2.99"))


def test_a_device_spends_a_budget_of_its_own_and_locks_out_itself_only(
    auth, app, client, caplog
):
    caplog.set_level(logging.INFO)
    user_id = auth.register("alice").get_json()["id"]
    assert_logged_in(login(client, addr="192.0.2.10"))
    delta = Delta(app.test_client())
    for _ in range(2):
        assert_failed(login(client, "alice", WRONG, addr="192.0.2.10"))

    # OWASP: the device's budget is spent; the device alone is locked out...
    assert_refused(login(client, addr="192.0.2.10"), "2 per 1 minute")
    (event,) = exhausted(caplog)
    assert (event.budget, event.user_id) == ("device", str(user_id))
    assert delta.now()[counted(BUDGET_METRIC, budget="device")] == 1
    # ...not its address (the failures were the device's), nor the username.
    assert_logged_in(login(app.test_client(), addr="192.0.2.10"))
    for i in range(1, 4):
        assert_failed(login(app.test_client(), "alice", WRONG, addr=f"203.0.113.{i}"))


def test_a_device_cookie_counts_for_its_own_account_only(auth, app):
    auth.register("alice")
    auth.register("bob")
    mallory = app.test_client()
    assert_logged_in(login(mallory, "bob", addr="198.51.100.7"))  # bob's device
    spend_the_username_budget(app)

    # Bob's cookie is an unknown device for alice: the spent budget holds.
    assert_refused(login(mallory, "alice", WRONG, addr="198.51.100.7"), "4 per 1 hour")
    assert_logged_in(login(mallory, "bob", addr="198.51.100.7"))


def test_the_password_grant_shares_every_budget_and_the_device_cookie(
    auth, app, client
):
    auth.register("alice")
    assert_logged_in(login(client, addr="192.0.2.10"))  # the cookie goes to /token too
    stranger = app.test_client()
    for i in range(1, 5):  # alternating the two routes buys nothing
        send = login if i % 2 else password_grant
        response = send(stranger, "alice", WRONG, addr=f"203.0.113.{i}")
        assert response.status_code in (400, 401), response.get_json()

    assert_refused(password_grant(app.test_client(), addr="192.0.2.99"), "4 per 1 hour")
    assert_refused(login(app.test_client(), addr="192.0.2.99"), "4 per 1 hour")
    assert_logged_in(password_grant(client, addr="192.0.2.99"))


def test_the_refresh_grant_is_no_login(auth, app, client):
    _, tokens = auth.user("alice")
    spend_the_username_budget(app)
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}

    response = client.post("/token", data=form)

    assert_logged_in(response)
    assert DEVICE_COOKIE not in str(response.headers.getlist("Set-Cookie"))


def test_a_password_change_makes_the_old_device_cookies_unknown(auth, app, client):
    auth.register("alice")
    tokens = login(client, addr="192.0.2.10").get_json()
    change = {"current_password": PASSWORD, "new_password": "a brand new passphrase"}
    response = app.test_client().put(
        "/user/password", json=change, headers=bearer(tokens["access_token"])
    )
    assert response.status_code == 200, response.get_json()
    spend_the_username_budget(app)

    response = login(client, "alice", "a brand new passphrase", addr="192.0.2.10")

    assert_refused(response, "4 per 1 hour")


def test_a_device_cookie_is_no_access_or_refresh_token(auth, client):
    auth.register("alice")
    assert_logged_in(login(client))
    device = client.get_cookie(DEVICE_COOKIE, path="/login").value

    response = client.get("/me", headers=bearer(device))

    assert_error(response, 401, "invalid_token")
    assert_error(client.post("/refresh", headers=bearer(device)), 401, "invalid_token")
    revoke = client.post("/revoke", data={"token": device})
    assert revoke.status_code == 200  # RFC 7009 §2.2: an unknown token, same answer
    assert_logged_in(login(client))


@pytest.mark.parametrize(
    "app_config",
    [{**BUDGETS, "RATELIMIT_ENABLED": False}, {**BUDGETS, "DEVICE_COOKIE_MAX_AGE": 0}],
    indirect=True,
    ids=["rate-limits-off", "device-cookies-off"],
)
def test_no_device_cookie_where_no_budget_needs_one(auth, client):
    auth.register("alice")

    response = login(client)

    assert_logged_in(response)
    assert response.headers.getlist("Set-Cookie") == []
