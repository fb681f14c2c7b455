"""Logs (core/observability.py): request ids, one access-log record per request,
the audit log of security events (never a password or a token), the JSON format."""

import json
import logging
import re
import sys
import time

import pytest

from core.observability import JSONFormatter
from tests.helpers import (
    HEX_ID,
    NEW_PASSWORD,
    PASSWORD,
    WRONG_PASSWORD,
    assert_error,
    assert_invalid_credentials,
    assert_rate_limited,
    bearer,
    config,
    limited,
    records,
)


@pytest.fixture
def app_config(request, app_config):
    """The base config, plus what `parametrize(..., indirect=True)` passes."""
    return {**app_config, **getattr(request, "param", {})}


# --- Request ids and the access log -------------------------------------------


@pytest.mark.parametrize("path", ["/store", "/no/such/route"])
@pytest.mark.parametrize("incoming", ["abc-123", "Req.42:x_y", "a" * 128])
def test_a_valid_request_id_is_echoed(client, path, incoming):
    response = client.get(path, headers={"X-Request-ID": incoming})
    assert response.status_code in (401, 404)
    assert response.get_json()["code"] == response.status_code
    assert response.headers["X-Request-ID"] == incoming


@pytest.mark.parametrize(
    "environ",
    [
        {"HTTP_X_REQUEST_ID": "a" * 129},
        {"HTTP_X_REQUEST_ID": "b" * 200},
        {"HTTP_X_REQUEST_ID": "has space"},
        {"HTTP_X_REQUEST_ID": "abc\n123"},
        {"HTTP_X_REQUEST_ID": "abc\r\nX-Injected: 1"},
        {"HTTP_X_REQUEST_ID": 'quo"ted'},
        {"HTTP_X_REQUEST_ID": "<script>"},
        {"HTTP_X_REQUEST_ID": ""},
        {},
    ],
    ids=["129", "200", "space", "newline", "crlf", "quote", "html", "empty", "none"],
)
def test_an_invalid_or_missing_request_id_is_replaced(client, caplog, environ):
    caplog.set_level(logging.INFO)
    response = client.get("/store", environ_base=environ)

    assert_error(response, 401, "authorization_required")
    generated = response.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(generated), generated
    assert "X-Injected" not in response.headers
    (entry,) = records(caplog, "api.request")
    assert entry.request_id == generated


def test_generated_request_ids_differ(client):
    ids = {client.get("/store").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5


def test_access_log_has_one_record_per_request(client, auth, caplog):
    user_id, tokens = auth.user()
    caplog.set_level(logging.INFO)
    caplog.clear()

    me = client.get(
        "/me", headers={**bearer(tokens["access_token"]), "X-Request-ID": "me-1"}
    )
    anonymous = client.get("/store")
    missing = client.get("/no/such/route")

    assert me.status_code == 200
    assert me.get_json() == {"id": user_id, "username": "alice", "is_admin": False}
    assert_error(anonymous, 401, "authorization_required")
    assert_error(missing, 404, "not_found")
    entries = records(caplog, "api.request")
    assert [(e.method, e.path, e.status) for e in entries] == [
        ("GET", "/me", 200),
        ("GET", "/store", 401),
        ("GET", "/no/such/route", 404),
    ]
    for entry, response in zip(entries, (me, anonymous, missing), strict=True):
        assert entry.request_id == response.headers["X-Request-ID"]
        assert isinstance(entry.duration_ms, int | float)
        assert not isinstance(entry.duration_ms, bool)
        assert entry.duration_ms >= 0
        assert entry.client == "127.0.0.1"
    assert entries[0].request_id == "me-1"
    assert entries[0].user_id == str(user_id)
    assert entries[1].user_id is None
    assert entries[2].user_id is None
    assert all(e.levelno == logging.INFO for e in entries)


# --- Audit log -----------------------------------------------------------------


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


# --- JSON log format -----------------------------------------------------------


def test_json_formatter_writes_one_json_object_per_line():
    logger = logging.getLogger("api.audit")
    record = logger.makeRecord(
        "api.audit",
        logging.WARNING,
        __file__,
        1,
        "Something %s\nhappened",
        ("odd",),
        None,
        extra={"event": "login_failure", "user_id": "7", "client": "10.0.0.1"},
    )
    record.when = time  # not JSON serialisable: written as its str()

    line = JSONFormatter().format(record)

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "api.audit"
    assert entry["message"] == "Something odd\nhappened"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    assert entry["event"] == "login_failure"
    assert entry["user_id"] == "7"
    assert entry["client"] == "10.0.0.1"
    assert entry["when"] == str(time)
    for attribute in ("args", "msg", "levelno", "pathname", "exc_info"):
        assert attribute not in entry


def test_json_formatter_writes_what_orjson_refuses():
    record = logging.getLogger("api").makeRecord(
        "api", logging.INFO, __file__, 1, "big", (), None, extra={"count": 2**70}
    )

    entry = json.loads(JSONFormatter().format(record))

    assert entry["count"] == 2**70


def test_json_formatter_keeps_exceptions_on_one_line():
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.getLogger("api").makeRecord(
        "api", logging.ERROR, __file__, 1, "failed", (), exc_info
    )

    line = JSONFormatter().format(record)

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed"
    assert entry["level"] == "ERROR"
    assert "ValueError: boom" in entry["exception"]


@config(LOG_FORMAT="json")
def test_json_log_format_formats_the_api_handler_as_json(client, caplog):
    caplog.set_level(logging.INFO)
    handlers = [h for h in logging.getLogger("api").handlers if getattr(h, "_api", 0)]
    assert len(handlers) == 1

    response = client.get("/store", headers={"X-Request-ID": "json-1"})

    assert_error(response, 401, "authorization_required")
    (entry,) = records(caplog, "api.request")
    logged = json.loads(handlers[0].format(entry))
    assert logged["logger"] == "api.request"
    assert logged["level"] == "INFO"
    assert logged["message"] == "GET /store 401"
    assert logged["request_id"] == "json-1"
    assert logged["status"] == 401
