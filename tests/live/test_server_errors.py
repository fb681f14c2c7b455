"""What gunicorn refuses itself, before the app sees the request, is the JSON
envelope too (core/workers.py): a request line or header it cannot parse (400), a
request line over its limit (414), headers over its limits (431). And a body over
the app's 1 MiB limit is the app's 413, in the envelope, through gunicorn.

Each test talks raw bytes to a real gunicorn on loopback (APP_ENV=production):
a client library would refuse to send most of these requests.
"""

import json
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import MFA_KEY
from tests.servers import HOST, free_port, live_server, request

# gunicorn's defaults: limit_request_line, limit_request_field_size.
REQUEST_LINE_LIMIT = 4094
FIELD_SIZE_LIMIT = 8190
MIB = 1024 * 1024


def server_env(tmp_path: Path, threads: int) -> dict:
    """Every setting explicit: a developer's .env cannot change what is tested."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "production",
        "MFA_ENCRYPTION_KEY": MFA_KEY,
        "TRUSTED_HOSTS": HOST,
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'live.db'}",
        "BLOCKLIST_BACKEND": "database",
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": str(threads),
        "RATELIMIT_ENABLED": "false",
    }


# GUNICORN_THREADS, and the worker class gunicorn.conf.py then names.
WORKER_CLASSES = {1: "core.workers.SyncWorker", 2: "core.workers.ThreadWorker"}


@pytest.fixture(scope="module", params=[1, 2], ids=["sync", "gthread"])
def server(request, tmp_path_factory) -> Iterator[tuple[int, Path]]:
    """(port, log) of a gunicorn with one worker: sync, then gthread (2 threads)."""
    tmp_path = tmp_path_factory.mktemp(f"threads-{request.param}")
    env = server_env(tmp_path, threads=request.param)
    log = tmp_path / "gunicorn.log"
    with live_server(env, log, workers=1):
        assert f"Using worker: {WORKER_CLASSES[request.param]}" in log.read_text()
        yield int(env["PORT"]), log


def exchange(port: int, data: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes: (status line, headers, body)."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status_line, headers, body


def assert_envelope(
    answer: tuple[str, dict[str, str], bytes], status_line: str, error: str
) -> dict:
    """The answer is `status_line` with the JSON envelope for `error`."""
    line, headers, raw = answer
    assert line == status_line, raw[:300]
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(raw)
    body = json.loads(raw)
    code = int(status_line.split()[1])
    assert set(body) == {"code", "status", "message", "error"}
    assert body["code"] == code
    assert body["status"] == status_line.split(" ", 2)[2]
    assert body["error"] == error
    assert isinstance(body["message"], str) and body["message"]
    return body


def test_headers_over_the_limit_are_a_431_envelope(server):
    port, _log = server
    token = "x" * 20_000
    answer = exchange(
        port,
        b"GET /me HTTP/1.1\r\nHost: localhost\r\n"
        + f"Authorization: Bearer {token}\r\n\r\n".encode(),
    )
    body = assert_envelope(
        answer,
        "HTTP/1.1 431 Request Header Fields Too Large",
        "request_header_fields_too_large",
    )
    assert str(FIELD_SIZE_LIMIT) in body["message"]


def test_a_malformed_request_line_is_a_400_envelope(server):
    answer = exchange(server[0], b"GARBAGE\r\n\r\n")
    assert_envelope(answer, "HTTP/1.1 400 Bad Request", "bad_request")


def test_a_header_without_a_colon_is_a_400_envelope(server):
    answer = exchange(
        server[0], b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nNoColonHere\r\n\r\n"
    )
    assert_envelope(answer, "HTTP/1.1 400 Bad Request", "bad_request")


def test_a_request_line_over_the_limit_is_a_414_envelope(server):
    path = "/healthz?q=" + "a" * REQUEST_LINE_LIMIT
    answer = exchange(server[0], f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    body = assert_envelope(answer, "HTTP/1.1 414 URI Too Long", "uri_too_long")
    assert str(REQUEST_LINE_LIMIT) in body["message"]


def test_a_body_over_one_mebibyte_is_the_apps_413_envelope(server):
    # The app refuses on Content-Length alone, so the body is never sent: sending
    # it would race the server's close (a reset instead of the answer).
    status_line, headers, raw = exchange(
        server[0],
        b"POST /register HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\n"
        + f"Content-Length: {MIB + 1}\r\n\r\n".encode(),
    )
    assert status_line.startswith("HTTP/1.1 413 "), raw[:300]
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(raw)
    envelope = json.loads(raw)
    assert envelope["code"] == 413
    assert envelope["error"] == "payload_too_large"
    assert envelope["status"] == "Request Entity Too Large"


def test_the_server_still_answers_normal_requests(server):
    port, log = server
    exchange(port, b"GARBAGE\r\n\r\n")
    reply = request(f"http://{HOST}:{port}", "GET", "/healthz")
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/json"
    # gunicorn still logs what it refused, for the operator.
    assert "Invalid request from ip=127.0.0.1" in log.read_text(errors="replace")
