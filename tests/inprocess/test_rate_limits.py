"""Rate limits (Flask-Limiter, auth/limits.py): logins per client address and per
(username, address), registrations and refreshes per address, Retry-After, an
app-wide default, switching them off; and the client address they count behind
trusted proxies (X-Forwarded-For)."""

import logging
import time

import pytest

from tests.helpers import (
    LIMITS,
    PASSWORD,
    WRONG_PASSWORD,
    assert_invalid_credentials,
    assert_rate_limited,
    config,
    limited,
    login,
    records,
    register,
)


@pytest.fixture
def app_config(request, app_config):
    """The base config, plus what `parametrize(..., indirect=True)` passes."""
    return {**app_config, **getattr(request, "param", {})}


# --- Rate limits -------------------------------------------------------------


@limited()
def test_login_is_limited_per_client_address(client, caplog):
    caplog.set_level(logging.INFO)
    # Different usernames: only the per-address limit (3 per minute) applies.
    for i in range(3):
        assert_invalid_credentials(login(client, f"nobody{i}"))

    response = login(client, "nobody3", headers={"X-Request-ID": "over-the-limit"})

    body = assert_rate_limited(response)
    assert "3 per 1 minute" in body["message"]
    assert response.headers["X-Request-ID"] == "over-the-limit"
    # Another address has its own counter.
    assert_invalid_credentials(login(client, "nobody4", addr="10.0.0.9"))
    (hit,) = records(caplog, "api.audit", "rate_limit_hit")
    assert hit.client == "127.0.0.1"
    assert hit.request_id == "over-the-limit"
    assert hit.user_id is None
    assert hit.levelno >= logging.INFO


@limited()
def test_failed_logins_are_limited_per_username_and_client_address(
    client, auth, caplog
):
    caplog.set_level(logging.INFO)
    assert auth.register().status_code == 201
    # Two failures from one address, in two spellings of the name...
    assert_invalid_credentials(login(client, "alice", WRONG_PASSWORD, addr="10.0.0.1"))
    assert_invalid_credentials(login(client, "ALICE", WRONG_PASSWORD, addr="10.0.0.1"))

    # ...lock the username at that address, even with the right password.
    response = login(client, "Alice", PASSWORD, addr="10.0.0.1")

    body = assert_rate_limited(response)
    assert "2 per 1 minute" in body["message"]
    (hit,) = records(caplog, "api.audit", "rate_limit_hit")
    assert hit.client == "10.0.0.1"
    assert hit.request_id == response.headers["X-Request-ID"]
    # Other usernames from that address are not affected...
    assert_invalid_credentials(login(client, "bob", WRONG_PASSWORD, addr="10.0.0.1"))
    # ...nor the owner at another address: a stranger cannot lock an account out.
    response = login(client, "alice", PASSWORD, addr="10.0.0.3")
    assert response.status_code == 200, response.get_json()


@limited()
def test_successful_logins_do_not_count_towards_the_username_limit(app, client, auth):
    assert auth.register().status_code == 201
    for i in range(4):  # more than the username limit of 2, one per address
        response = login(client, addr=f"10.0.1.{i}")
        assert response.status_code == 200, response.get_json()
        assert set(response.get_json()) >= {"access_token", "refresh_token"}

    # Only failures count: two are allowed, the third attempt is refused (from a
    # client without the device cookie those logins set: test_login_budgets.py).
    stranger = app.test_client()
    for _ in range(2):
        response = login(stranger, "alice", WRONG_PASSWORD, addr="10.0.2.1")
        assert_invalid_credentials(response)
    response = login(stranger, "alice", WRONG_PASSWORD, addr="10.0.2.1")
    assert "2 per 1 minute" in assert_rate_limited(response)["message"]


@limited()
def test_register_is_limited_per_client_address(client, caplog):
    caplog.set_level(logging.INFO)
    assert register(client, "user1").status_code == 201
    assert register(client, "user2").status_code == 201

    response = register(client, "user3")

    body = assert_rate_limited(response)
    assert "2 per 1 minute" in body["message"]
    (hit,) = records(caplog, "api.audit", "rate_limit_hit")
    assert hit.client == "127.0.0.1"
    assert hit.request_id == response.headers["X-Request-ID"]
    # The refused registration created nothing: user3 is still free elsewhere.
    response = register(client, "user3", addr="10.0.0.7")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["username"] == "user3"


@limited()
def test_refresh_is_limited(client, auth, caplog):
    caplog.set_level(logging.INFO)
    refresh_token = auth.user()[1]["refresh_token"]
    for _ in range(2):
        response = auth.refresh(refresh_token)
        assert response.status_code == 200, response.get_json()
        refresh_token = response.get_json()["refresh_token"]

    response = auth.refresh(refresh_token)

    assert_rate_limited(response)
    (hit,) = records(caplog, "api.audit", "rate_limit_hit")
    assert hit.client == "127.0.0.1"
    assert hit.request_id == response.headers["X-Request-ID"]


@limited(RATELIMIT_LOGIN="1 per minute")
def test_a_client_that_waits_retry_after_seconds_is_let_in(client, monkeypatch):
    # A fake clock makes the sub-second arithmetic deterministic: the first
    # attempt at .9 of a second, the refused one at .2 of a later second.
    clock = [1_000_000.9]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    assert_invalid_credentials(login(client, "nobody0"))
    clock[0] = 1_000_001.2

    response = login(client, "nobody1")

    body = assert_rate_limited(response)
    retry_after = int(response.headers["Retry-After"])
    # The window reopens at 1_000_060.9: Retry-After must not promise earlier.
    assert clock[0] + retry_after >= 1_000_060.9, (retry_after, body["message"])
    # The envelope and the header give the same figure.
    assert body["message"].endswith(f"Retry in {retry_after} seconds."), (
        retry_after,
        body["message"],
    )
    clock[0] += retry_after
    assert_invalid_credentials(login(client, "nobody2"))


@limited(RATELIMIT_DEFAULT="3 per minute")
def test_an_app_wide_default_limit_applies_to_every_route(client, headers):
    """Only the route decorators are checked unless app-wide limits are set."""
    for _ in range(3):
        assert client.get("/store", headers=headers).status_code == 200

    assert_rate_limited(client.get("/store", headers=headers))


@limited()
def test_without_app_wide_limits_other_routes_are_not_counted(client, headers):
    for _ in range(10):
        response = client.get("/store", headers=headers)
        assert response.status_code == 200, response.get_json()


@config(**{**LIMITS, "RATELIMIT_ENABLED": False})
def test_rate_limits_can_be_switched_off(client, auth, caplog):
    caplog.set_level(logging.INFO)
    for i in range(6):
        response = register(client, f"user{i}")
        assert response.status_code == 201, response.get_json()
    for _ in range(8):
        response = login(client, "user0", WRONG_PASSWORD)
        assert_invalid_credentials(response)
        assert "Retry-After" not in response.headers
    refresh_token = auth.login("user0")["refresh_token"]
    for _ in range(5):
        response = auth.refresh(refresh_token)
        assert response.status_code == 200, response.get_json()
        refresh_token = response.get_json()["refresh_token"]
    assert records(caplog, "api.audit", "rate_limit_hit") == []


# --- Trusted proxies -----------------------------------------------------------


@limited()
def test_without_trusted_proxies_x_forwarded_for_is_ignored(client, caplog):
    caplog.set_level(logging.INFO)
    for i in range(3):
        response = login(
            client, f"nobody{i}", headers={"X-Forwarded-For": f"198.51.100.{i}"}
        )
        assert_invalid_credentials(response)

    response = login(client, "nobody3", headers={"X-Forwarded-For": "198.51.100.3"})

    assert_rate_limited(response)
    clients = {r.client for r in records(caplog, "api.audit")}
    assert clients == {"127.0.0.1"}
    assert {r.client for r in records(caplog, "api.request")} == {"127.0.0.1"}


@limited(TRUSTED_PROXIES=1)
def test_one_trusted_proxy_makes_the_last_hop_the_client(client, caplog):
    caplog.set_level(logging.INFO)
    # Spoofed leftmost values change nothing: the proxy appended 203.0.113.7.
    for i in range(3):
        forwarded = f"10.{i}.{i}.{i}, 203.0.113.7"
        response = login(client, f"nobody{i}", headers={"X-Forwarded-For": forwarded})
        assert_invalid_credentials(response)
    response = login(
        client, "nobody3", headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.7"}
    )
    assert_rate_limited(response)
    (hit,) = records(caplog, "api.audit", "rate_limit_hit")
    assert hit.client == "203.0.113.7"

    # A different client behind the same proxy has its own counter.
    response = login(client, "nobody4", headers={"X-Forwarded-For": "203.0.113.8"})
    assert_invalid_credentials(response)
    failures = records(caplog, "api.audit", "login_failure")
    assert [r.client for r in failures] == ["203.0.113.7"] * 3 + ["203.0.113.8"]

    response = login(client, "nobody5", headers={"X-Forwarded-For": "1.2.3.4, 5.6.7.8"})
    assert_invalid_credentials(response)
    assert records(caplog, "api.audit", "login_failure")[-1].client == "5.6.7.8"
    assert records(caplog, "api.request")[-1].client == "5.6.7.8"
