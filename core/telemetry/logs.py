"""The logs: their format (JSON lines or text), request ids in and out, and one
access-log line per request.

A JSON line holds the time (UTC, to the millisecond), level, logger and message,
then the record's extra fields (python-json-logger, encoded with orjson).
"""

import json
import logging
import re
import time
import uuid
from typing import Any

from flask import Flask, Response, g, request
from flask.logging import default_handler
from flask_jwt_extended import get_jwt
from pythonjsonlogger.orjson import OrjsonFormatter

# "api.request": one line per request; "api.audit" (audit.py): security events.
request_log = logging.getLogger("api.request")

REQUEST_ID_HEADER = "X-Request-ID"
QUIET_PATHS = frozenset({"/healthz", "/readyz"})
# What we accept from a client (or a proxy) as a request id; anything else is replaced.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JSONFormatter(OrjsonFormatter):
    """One JSON object per line: time, level, logger, message and the extra fields."""

    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "exc_info": "exception",
            },
        )

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        try:
            return super().jsonify_log_record(log_data)
        except TypeError:  # what orjson refuses (e.g. integers over 64 bits)
            return json.dumps(log_data, default=str)


JSONFormatter.converter = time.gmtime  # the time in UTC, as its Z says


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
        formatter = logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    # Flask's own handler (start-up warnings, 500 tracebacks) in the same format.
    default_handler.setFormatter(formatter)


def current_user_id() -> str | None:
    """The user id of the verified token of this request, if any."""
    try:
        return get_jwt().get("sub")
    except RuntimeError:
        return None


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
