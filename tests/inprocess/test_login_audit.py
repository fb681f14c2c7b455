"""The audit log of failed logins never holds what was typed as a username: people
type passwords there. It names the account when one matches (its own spelling),
else `<unknown>`; at /login and at the /token password grant alike, and when the
attempts are over a rate limit."""

import json
import logging

import pytest

from core.telemetry.logs import JSONFormatter
from tests.helpers import PASSWORD

TYPED_SECRET = "MyS3cret-Passw0rd"  # a valid username shape: it reaches the database
WRONG_PASSWORD = "wrong horse battery"


@pytest.fixture
def app_config(request, app_config):
    """The base config, plus what `parametrize(..., indirect=True)` passes."""
    return {**app_config, **getattr(request, "param", {})}


def login(client, path: str, username: str, password: str):
    if path == "/token":
        form = {"grant_type": "password", "username": username, "password": password}
        return client.post("/token", data=form)
    return client.post("/login", json={"username": username, "password": password})


def failures(caplog) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "api.audit" and getattr(r, "event", None) == "login_failure"
    ]


def assert_nowhere_in_the_logs(caplog, secret: str) -> None:
    """No record the app writes holds `secret`, in its message or any field.

    Flask-Limiter's own logger is not the app's: it has a NullHandler and nothing
    configures the root logger, so its lines (one holds the rate-limit key) are
    written nowhere."""
    formatter = JSONFormatter()
    written = [r for r in caplog.records if r.name != "flask-limiter"]
    assert written
    for record in written:
        line = formatter.format(record)
        assert secret not in line, json.loads(line)


@pytest.mark.parametrize("path", ["/login", "/token"])
@pytest.mark.parametrize(
    "typed",
    [TYPED_SECRET, TYPED_SECRET.lower(), "correct horse", "pa\u00dfwort"],
    ids=["username-shaped", "lower-case", "with-a-space", "non-ascii"],
)
def test_an_unknown_username_is_logged_as_unknown(auth, client, caplog, path, typed):
    auth.register("alice")
    caplog.set_level(logging.INFO)

    response = login(client, path, typed, PASSWORD)

    assert response.status_code in (400, 401), response.get_json()
    (failure,) = failures(caplog)
    assert failure.username == "<unknown>"
    assert failure.user_id is None
    assert_nowhere_in_the_logs(caplog, typed)


@pytest.mark.parametrize("path", ["/login", "/token"])
def test_a_wrong_password_logs_the_accounts_own_name(auth, client, caplog, path):
    auth.register("Alice")
    caplog.set_level(logging.INFO)

    response = login(client, path, "aLICE", WRONG_PASSWORD)

    assert response.status_code in (400, 401), response.get_json()
    (failure,) = failures(caplog)
    assert failure.username == "Alice"
    assert_nowhere_in_the_logs(caplog, "aLICE")
    assert_nowhere_in_the_logs(caplog, WRONG_PASSWORD)


@pytest.mark.parametrize(
    "app_config",
    [{"RATELIMIT_ENABLED": True, "RATELIMIT_LOGIN_USERNAME": "2 per minute"}],
    indirect=True,
)
def test_failures_over_the_rate_limit_log_no_typed_username(client, caplog):
    caplog.set_level(logging.INFO)

    statuses = [login(client, "/login", TYPED_SECRET, "x" * 12).status_code]
    for _ in range(4):
        statuses.append(login(client, "/login", TYPED_SECRET, "x" * 12).status_code)

    assert 401 in statuses and 429 in statuses, statuses
    assert all(r.username == "<unknown>" for r in failures(caplog))
    assert_nowhere_in_the_logs(caplog, TYPED_SECRET)
