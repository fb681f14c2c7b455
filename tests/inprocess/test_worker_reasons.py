"""The status line and envelope of what gunicorn refuses name the right status:
gunicorn's own 501 and 500 say "Bad Request" (core/workers.py `_reason`)."""

import json
import socket
from unittest.mock import MagicMock

import pytest
from gunicorn.config import Config
from gunicorn.http.errors import (
    ConfigurationProblem,
    LimitRequestLine,
    UnsupportedTransferCoding,
)

from core import workers


def refused(exc: Exception) -> tuple[bytes, dict]:
    """(status line, envelope) a sync worker sends the client for `exc`."""
    worker = workers.SyncWorker.__new__(workers.SyncWorker)
    worker.cfg, worker.log = Config(), MagicMock()
    ours, theirs = socket.socketpair()
    with ours, theirs:
        worker.handle_error(None, ours, ("127.0.0.1", 5000), exc)
        ours.shutdown(socket.SHUT_WR)
        answer = theirs.makefile("rb").read()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], json.loads(body)


def test_an_unsupported_transfer_coding_is_501_not_implemented():
    line, body = refused(UnsupportedTransferCoding("br"))

    assert line == b"HTTP/1.1 501 Not Implemented"
    assert body == {
        "code": 501,
        "status": "Not Implemented",
        "message": "The request's Transfer-Encoding is not one this server "
        "supports (chunked, gzip, deflate, compress).",
        "error": "not_implemented",
    }


def test_gunicorns_configuration_problem_is_500_internal_server_error():
    line, body = refused(ConfigurationProblem("bad setting"))

    assert line == b"HTTP/1.1 500 Internal Server Error"
    assert (body["status"], body["error"]) == (
        "Internal Server Error",
        "internal_error",
    )
    assert "bad setting" not in json.dumps(body)


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (501, "Bad Request", "Not Implemented"),
        (500, "Bad Request", "Internal Server Error"),
        (414, "URI Too Long", "URI Too Long"),  # RFC 9110's, not Python's
        (400, "Bad Request", "Bad Request"),
        (499, "Client Closed Request", "Client Closed Request"),
        (599, "Bad Request", "Bad Request"),  # no name of its own to give it
    ],
)
def test_a_reason_phrase_is_kept_unless_it_names_another_status(code, reason, expected):
    assert workers._reason(code, reason) == expected


def test_gunicorns_414_keeps_its_rfc_9110_phrase():
    line, body = refused(LimitRequestLine(5000, 4094))

    assert line == b"HTTP/1.1 414 URI Too Long"
    assert body["status"] == "URI Too Long"
