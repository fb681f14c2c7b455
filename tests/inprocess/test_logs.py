"""The logs (core/telemetry/logs.py): request ids in and out, one access-log line
per request, and the JSON lines format (every test here logs JSON lines, as
production does)."""

import json
import logging
import re
import sys
import time

import pytest

from core.telemetry.logs import JSONFormatter
from tests.helpers import assert_error, bearer

HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def app_config(app_config):
    return {**app_config, "LOG_FORMAT": "json"}


def records(caplog, logger: str) -> list:
    return [r for r in caplog.records if r.name == logger]


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
