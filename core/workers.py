"""gunicorn's worker classes, answering the server's own errors in the envelope.

Some requests never reach the app: gunicorn refuses them while parsing (a
malformed request line or header: 400; a request line over `limit_request_line`:
414; headers over `limit_request_fields` or `limit_request_field_size`: 431; a
transfer coding it does not support: 501) and answers with an HTML page of its
own. Clients of this API read JSON only, so these workers answer in the envelope
(`core.errors.error_body`) instead.

The hook is `Worker.handle_error`, which the sync and gthread workers call for
anything that goes wrong around a request. It decides the status and reason
phrase, logs, writes the access-log line, then writes the page with
`util.write_error`, all in one method; there is no smaller hook. Rather than
copy its table of exceptions (which grows with gunicorn's releases), the
override lets it run on a stand-in for the client socket that keeps what it
writes, reads the status line from that, and sends the envelope with the same
status and its reason phrase (`_reason`). Nothing of gunicorn's is patched, and a
gunicorn that wrote something else than an HTTP response there gets its own
answer sent as it was.

`error_body` is sound to use here: it only builds a dict, and `core` is already
imported by gunicorn.conf.py in the master, before the workers fork.
"""

import http
import socket
from typing import Any

import orjson
from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker as GunicornThreadWorker
from gunicorn.workers.sync import SyncWorker as GunicornSyncWorker

from core.errors import error_body


class _Recorder:
    """Stands in for the client socket: keeps what is sent, delegates the rest."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sent = bytearray()

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def send(self, data: bytes) -> int:
        self.sent += data
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _status(response: bytes) -> tuple[int, str] | None:
    """The code and reason of an HTTP response's status line (None if not one)."""
    line = response.split(b"\r\n", 1)[0].decode("latin-1")
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not (code.isdigit() and len(code) == 3):
        return None
    return int(code), reason


# Each status's reason phrase (Python's names), to tell when gunicorn pairs a
# status with another's.
_PHRASES = {status.value: status.phrase for status in http.HTTPStatus}
_ALL_PHRASES = frozenset(_PHRASES.values())


def _reason(code: int, reason: str) -> str:
    """gunicorn's reason phrase, unless it names another status.

    gunicorn starts every refusal as 400 Bad Request and changes both as it goes,
    but its 501 (a transfer coding it does not support) and its 500 (its own
    configuration) keep "Bad Request". Its own spelling of the right status stays
    (414 "URI Too Long" is RFC 9110 §15.5.15's; Python's is "Request-URI ...")."""
    own = _PHRASES.get(code)
    if own is not None and reason != own and reason in _ALL_PHRASES:
        return own
    return reason


class EnvelopeErrors:
    """Mixin for a gunicorn worker: its own error answers are the JSON envelope."""

    cfg: Any
    log: Any

    def handle_error(self, req, client, addr, exc) -> None:
        """gunicorn's answer to a request it refuses, as the envelope."""
        recorder = _Recorder(client)
        super().handle_error(req, recorder, addr, exc)  # type: ignore[misc]
        status = _status(bytes(recorder.sent))
        answer = bytes(recorder.sent) if status is None else self._envelope(*status)
        if not answer:
            return  # gunicorn sent nothing (it could not, or chose not to)
        try:
            util.write_nonblock(client, answer)
        except Exception:
            self.log.debug("Failed to send error message.")

    def _envelope(self, code: int, reason: str) -> bytes:
        reason = _reason(code, reason)
        body = error_body(code, self._messages().get(code))
        body["status"] = reason  # the status line's phrase, as gunicorn chose it
        payload = orjson.dumps(body)
        head = (
            f"HTTP/1.1 {code} {reason}\r\n"
            "Connection: close\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n"
            "\r\n"
        )
        return head.encode("latin-1") + payload

    def _messages(self) -> dict[int, str]:
        """Messages naming the limits this server applies (from its settings)."""
        return {
            400: "The request is malformed: its request line, a header or the "
            "framing of its body.",
            414: (
                "The request line (method, URL and version) is over "
                f"{self.cfg.limit_request_line} bytes."
            ),
            431: (
                "The request's headers are over the server's limits: at most "
                f"{self.cfg.limit_request_fields} headers of at most "
                f"{self.cfg.limit_request_field_size} bytes each."
            ),
            501: "The request's Transfer-Encoding is not one this server "
            "supports (chunked, gzip, deflate, compress).",
        }


class SyncWorker(EnvelopeErrors, GunicornSyncWorker):
    """gunicorn's sync worker (one request at a time), errors in the envelope."""


class ThreadWorker(EnvelopeErrors, GunicornThreadWorker):
    """gunicorn's gthread worker (GUNICORN_THREADS > 1), errors in the envelope."""
