"""Request ids, structured (JSON) logs, one access-log line per request, audit events.

Audit records never carry a password or a token: only ids, the client address
and the request id, so they can be shipped anywhere.
"""

import json
import logging
import re
import time
import uuid
from typing import Any

import orjson
from flask import Flask, Response, g, request
from flask.logging import default_handler
from flask_jwt_extended import get_jwt

# Loggers: "api.request" (one line per request), "api.audit" (security events).
request_log = logging.getLogger("api.request")
audit_log = logging.getLogger("api.audit")

REQUEST_ID_HEADER = "X-Request-ID"
QUIET_PATHS = frozenset({"/healthz", "/readyz"})
# What we accept from a client (or a proxy) as a request id; anything else is replaced.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# LogRecord's own attributes; everything else on a record is an `extra` field.
_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str).decode()
        except TypeError:  # what orjson refuses (e.g. integers over 64 bits)
            return json.dumps(entry, default=str)


JSONFormatter.converter = time.gmtime


def init_observability(app: Flask) -> None:
    """Request ids in and out, the access log, and the log format."""
    _configure_logging(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
    app.before_request(_start_request)
    app.after_request(_finish_request)


def _configure_logging(log_format: str, level: str) -> None:
    """Give the "api" loggers one handler in the chosen format (idempotent)."""
    logger = logging.getLogger("api")
    logger.setLevel(level)
    handler = next((h for h in logger.handlers if getattr(h, "_api", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler._api = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    if log_format == "json":
        formatter: logging.Formatter = JSONFormatter()
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    # Flask's own handler (start-up warnings, 500 tracebacks) in the same format.
    default_handler.setFormatter(formatter)


def current_user_id() -> str | None:
    """The user id of the verified token of this request, if any."""
    try:
        return get_jwt().get("sub")
    except RuntimeError:
        return None


def audit(
    event: str, message: str, *, level: int = logging.INFO, **fields: Any
) -> None:
    """Log a security event with who, from where and in which request."""
    fields.setdefault("user_id", current_user_id())
    audit_log.log(
        level,
        message,
        extra={
            "event": event,
            # The client's address as the trusted proxies give it (ProxyFix).
            "client": request.remote_addr,
            "request_id": g.get("request_id"),
            **fields,
        },
    )


def _start_request() -> None:
    g.request_started = time.perf_counter()
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if REQUEST_ID_RE.fullmatch(incoming) else uuid.uuid4().hex


def _finish_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id") or uuid.uuid4().hex
    # Probes arrive every few seconds from the load balancer: keep them quiet.
    level = logging.DEBUG if request.path in QUIET_PATHS else logging.INFO
    if not request_log.isEnabledFor(level):
        return response
    started = g.get("request_started")
    duration_ms = None if started is None else (time.perf_counter() - started) * 1000
    request_log.log(
        level,
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": None if duration_ms is None else round(duration_ms, 2),
            "request_id": g.get("request_id"),
            "user_id": current_user_id(),
            "client": request.remote_addr,
        },
    )
    return response
