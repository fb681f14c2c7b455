"""The audit log of security events (never a password or a token in any log
record); the rest of the logs is tested in test_logs.py."""

import json
import logging

import pytest

from core.telemetry.logs import JSONFormatter
from tests.helpers import (
    NEW_PASSWORD,
    PASSWORD,
    WRONG_PASSWORD,
    assert_error,
    assert_invalid_credentials,
    assert_rate_limited,
    bearer,
    limited,
    records,
)


@pytest.fixture
def app_config(request, app_config):
    """The base config, plus what `parametrize(..., indirect=True)` passes."""
    return {**app_config, **getattr(request, "param", {})}


@limited(
    RATELIMIT_LOGIN="50 per minute",
    RATELIMIT_LOGIN_USERNAME="5 per minute",
    RATELIMIT_REGISTER="1 per minute",
    RATELIMIT_REFRESH="30 per minute",
    REFRESH_REUSE_GRACE_SECONDS=0,
)
def test_audit_log_records_security_events_without_secrets(client, caplog):
    caplog.set_level(logging.INFO)
    issued: list[str] = []

    def call(method, path, rid, token=None, **kwargs):
        headers = {"X-Request-ID": rid, **(bearer(token) if token else {})}
        response = client.open(path, method=method, headers=headers, **kwargs)
        assert response.headers["X-Request-ID"] == rid
        body = response.get_json()
        if isinstance(body, dict):
            issued.extend(v for k, v in body.items() if k.endswith("_token"))
        return response

    credentials = {"username": "alice", "password": PASSWORD}
    response = call("POST", "/register", "r-register", json=credentials)
    assert response.status_code == 201
    user_id = str(response.get_json()["id"])
    wrong = {"username": "alice", "password": WRONG_PASSWORD}
    assert_invalid_credentials(call("POST", "/login", "r-login-failure", json=wrong))
    first = call("POST", "/login", "r-login-1", json=credentials).get_json()
    response = call("POST", "/refresh", "r-refresh", first["refresh_token"])
    assert response.status_code == 200
    response = call("POST", "/refresh", "r-reuse", first["refresh_token"])
    assert_error(response, 401, "token_revoked")
    second = call("POST", "/login", "r-login-2", json=credentials).get_json()
    response = call("POST", "/logout", "r-logout", second["access_token"])
    assert response.status_code == 200
    assert response.get_json() == {"message": "Successfully logged out."}
    third = call("POST", "/login", "r-login-3", json=credentials).get_json()
    response = call("POST", "/logout/all", "r-logout-all", third["access_token"])
    assert response.status_code == 200
    assert response.get_json() == {"message": "Logged out of every session."}
    fourth = call("POST", "/login", "r-login-4", json=credentials).get_json()
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    response = call(
        "PUT", "/user/password", "r-password", fourth["access_token"], json=change
    )
    assert response.status_code == 200, response.get_json()
    fresh = response.get_json()["access_token"]
    response = call("DELETE", f"/user/{user_id}", "r-delete", fresh)
    assert response.status_code == 200
    assert response.get_json() == {"message": "User deleted."}
    bob = {"username": "bob", "password": NEW_PASSWORD}
    assert_rate_limited(call("POST", "/register", "r-rate", json=bob))

    audit = records(caplog, "api.audit")
    assert [(r.event, r.request_id) for r in audit] == [
        ("register", "r-register"),
        ("login_failure", "r-login-failure"),
        ("login_success", "r-login-1"),
        ("refresh", "r-refresh"),
        ("refresh_token_reuse", "r-reuse"),
        ("login_success", "r-login-2"),
        ("logout", "r-logout"),
        ("login_success", "r-login-3"),
        ("logout_all", "r-logout-all"),
        ("login_success", "r-login-4"),
        ("password_change", "r-password"),
        ("account_deletion", "r-delete"),
        ("rate_limit_hit", "r-rate"),
    ]
    anonymous = {"login_failure", "rate_limit_hit"}
    for record in audit:
        assert record.client == "127.0.0.1", record.event
        expected = None if record.event in anonymous else user_id
        assert record.user_id == expected, record.event
    reuse = next(r for r in audit if r.event == "refresh_token_reuse")
    assert reuse.levelno == logging.WARNING
    deletion = next(r for r in audit if r.event == "account_deletion")
    assert deletion.deleted_user_id == user_id

    # No record of any logger carries a password or a token, in any field.
    assert len(issued) == 12  # pairs from 4 logins, a refresh, a password change
    secrets = [PASSWORD, WRONG_PASSWORD, NEW_PASSWORD, *issued]
    formatter = JSONFormatter()
    assert caplog.records
    for record in caplog.records:
        line = formatter.format(record)
        entry = json.loads(line)
        assert entry["logger"] == record.name
        for secret in secrets:
            assert secret not in line, (record.name, entry)
            # Token parts (header.payload.signature) must not leak either.
            for part in secret.split(".")[1:]:
                assert part not in line, (record.name, entry)
