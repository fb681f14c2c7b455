"""A chunked body over MAX_CONTENT_LENGTH is a 413 before any of it is acted on,
through a real gunicorn, sync and gthread workers (issue 22, finding 5).

A chunked body (RFC 9112 §7.1) announces no length, so the header check that
refuses a Content-Length over 1 MiB cannot see it; werkzeug used to stop reading
at 1 MiB and hand the app the body cut short: a 2 MB form to /token with the
credentials first was answered 200 with tokens, and chunked JSON over the limit
400 "not valid JSON". Each test speaks raw HTTP/1.1 on a socket: the body goes
out in 64 KiB chunks, and the client stops sending once an answer has arrived,
as a careful client does.
"""

import json
import os
import secrets
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import MFA_KEY, PASSWORD
from tests.servers import HOST, free_port, live_server, login, register, request

MIB = 1024 * 1024
CHUNK = 64 * 1024
FORM = "application/x-www-form-urlencoded"
CREDENTIALS = f"grant_type=password&username=alice&password={PASSWORD}".replace(
    " ", "+"
).encode()
# GUNICORN_THREADS, and the worker class gunicorn.conf.py then names.
WORKER_CLASSES = {1: "core.workers.SyncWorker", 2: "core.workers.ThreadWorker"}


@pytest.fixture(scope="module", params=[1, 2], ids=["sync", "gthread"])
def server(request, tmp_path_factory) -> Iterator[int]:
    """The port of a gunicorn with one worker (sync, then gthread), and a user
    `alice` registered."""
    tmp_path: Path = tmp_path_factory.mktemp(f"chunked-{request.param}")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "production",
        "MFA_ENCRYPTION_KEY": MFA_KEY,
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'live.db'}",
        "BLOCKLIST_BACKEND": "database",
        "PUBLIC_URL": f"http://{HOST}:{port}",
        "TRUSTED_HOSTS": HOST,
        "HOST": HOST,
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": str(request.param),
        "RATELIMIT_ENABLED": "false",
    }
    log = tmp_path / "gunicorn.log"
    with live_server(env, log, workers=1) as base:
        assert f"Using worker: {WORKER_CLASSES[request.param]}" in log.read_text()
        register(base, "alice")
        yield port


def send_chunked(
    port: int, method: str, path: str, body: bytes, content_type: str
) -> tuple[int, dict]:
    """`body` in chunks (Transfer-Encoding: chunked, no Content-Length); stop
    sending once the server answers. (status, the JSON body)."""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n"
        f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(head.encode())
        for start in range(0, len(body), CHUNK):
            if select.select([sock], [], [], 0)[0]:
                break  # answered already: the rest would never be read
            piece = body[start : start + CHUNK]
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            except OSError:
                break  # closed after answering: read the answer
        else:
            sock.sendall(b"0\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head_bytes, _, raw = received.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    return status, json.loads(raw)


def assert_413(status: int, body: dict) -> None:
    assert status == 413, body
    assert body == {
        "code": 413,
        "status": "Request Entity Too Large",
        "message": f"The request body is larger than {MIB} bytes.",
        "error": "payload_too_large",
    }


def padded(start: bytes, size: int, end: bytes = b"") -> bytes:
    """`start` + x... + `end`, `size` bytes in all."""
    return start + b"x" * (size - len(start) - len(end)) + end


def test_a_chunked_form_over_the_limit_issues_no_tokens(server):
    status, body = send_chunked(
        server, "POST", "/token", padded(CREDENTIALS + b"&pad=", 2 * MIB), FORM
    )

    assert_413(status, body)
    # No session was started: the only one is the one this login starts.
    base = f"http://{HOST}:{server}"
    token = login(base, "alice")["access_token"]
    sessions = request(base, "GET", "/me/sessions", token=token)
    assert sessions.status == 200
    assert len(sessions.body) == 1, sessions.body


def test_chunked_json_over_the_limit_is_a_413_not_a_400(server):
    body = padded(b'{"username": "bob", "password": "', 2 * MIB, b'"}')
    assert_413(*send_chunked(server, "POST", "/register", body, "application/json"))
    # Nobody was registered: the name is free.
    register(f"http://{HOST}:{server}", "bob")


def test_a_route_that_never_reads_the_body_refuses_it_too(server):
    assert_413(*send_chunked(server, "GET", "/healthz", b"x" * (2 * MIB), FORM))


def test_a_chunked_body_of_exactly_the_limit_is_read_whole(server):
    status, body = send_chunked(
        server, "POST", "/token", padded(CREDENTIALS + b"&pad=", MIB), FORM
    )

    assert status == 200, body
    assert body["token_type"] == "Bearer"
    assert body["access_token"] and body["refresh_token"]


def test_a_small_chunked_json_body_is_read_as_any_other(server):
    status, body = send_chunked(
        server,
        "POST",
        "/register",
        json.dumps({"username": "carol", "password": PASSWORD}).encode(),
        "application/json",
    )

    assert status == 201, body
    assert body["username"] == "carol"
