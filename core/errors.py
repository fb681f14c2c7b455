"""The one error envelope: `{"code", "status", "message", "error", "errors"?}`.

Every error the API returns is built by `error_response`: flask-smorest's
`abort`, werkzeug's HTTP errors (404, 405, 413, ...) and unhandled exceptions (500)
by way of `EnvelopeApi` (core/api.py), the JWT callbacks and the domain errors
raised by models and services; and by `error_body` alone for what gunicorn refuses
before the app sees it (400, 414, 431: core/workers.py).
"""

import http
import math
import re
import time
from typing import Any

import marshmallow as ma
from flask import Flask, Response, jsonify, request
from flask_limiter import RequestLimit
from sqlalchemy.exc import (
    DBAPIError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
    TimeoutError,
)

from core.telemetry import RATE_LIMIT_HITS, audit

# The machine-readable `error` of a status, unless a more precise one is given: its
# reason phrase in snake case (RFC 9110 §15), but for these.
ERROR_CODE_EXCEPTIONS = {
    401: "authorization_required",
    413: "payload_too_large",
    414: "uri_too_long",
    # RFC 9110 §15.5.17's name; Python's is RFC 2616's "Requested Range ...".
    416: "range_not_satisfiable",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
}


def snake_case(phrase: str) -> str:
    """A reason phrase as an `error` code: "I'm a Teapot" -> "im_a_teapot"."""
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower().replace("'", "")).strip("_")


ERROR_CODES = {
    status.value: snake_case(status.phrase)
    for status in http.HTTPStatus
    if status >= 400
} | ERROR_CODE_EXCEPTIONS
DEFAULT_MESSAGES = {
    422: "The request failed validation.",
    500: "An internal error occurred.",
}


class ErrorSchema(ma.Schema):
    """The error envelope, for the OpenAPI document."""

    code = ma.fields.Integer(
        required=True, metadata={"description": "HTTP status code", "example": 401}
    )
    status = ma.fields.String(
        required=True, metadata={"description": "HTTP reason phrase"}
    )
    message = ma.fields.String(
        required=True, metadata={"description": "What went wrong, for people"}
    )
    error = ma.fields.String(
        required=True,
        metadata={
            "description": "What went wrong, for programs (e.g. token_expired)",
            "example": "token_expired",
        },
    )
    errors = ma.fields.Dict(
        metadata={"description": "Per-location, per-field details (422)"}
    )
    error_description = ma.fields.String(
        metadata={
            "description": "OAuth 2.0 answers (/token, /revoke): the message, under "
            "RFC 6749 §5.2's name"
        }
    )


class APIError(Exception):
    """A domain error that maps onto the envelope (raised outside views too)."""

    status_code = 400
    error = "bad_request"
    headers: dict[str, str] = {}

    def __init__(
        self, message: str, error: str | None = None, errors: dict | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors
        if error:
            self.error = error

    def extra_fields(self) -> dict[str, Any]:
        """Fields the envelope carries besides its own (none by default)."""
        return {}


class NotFound(APIError):
    """The addressed resource does not exist."""

    status_code = 404
    error = "not_found"


class Unauthorized(APIError):
    """Who are you: a credential or a code was refused. A 401 carries a
    challenge (RFC 9110 §15.5.2)."""

    status_code = 401
    error = "authorization_required"
    headers = {"WWW-Authenticate": 'Bearer realm="api"'}


class Forbidden(APIError):
    """The caller is known and not allowed."""

    status_code = 403
    error = "forbidden"


class Conflict(APIError):
    """The request conflicts with what exists."""

    status_code = 409
    error = "conflict"


def error_body(
    code: int,
    message: str | None = None,
    error: str | None = None,
    errors: dict | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the envelope for a status code."""
    body: dict[str, Any] = {
        "code": code,
        "status": http.HTTPStatus(code).phrase,
        "message": message
        or DEFAULT_MESSAGES.get(code)
        or http.HTTPStatus(code).description,
        "error": error or ERROR_CODES[code],
    }
    if errors:
        body["errors"] = _json_keys(errors)
    body.update(extra or {})
    return body


def _json_keys(errors: dict) -> dict:
    """The messages with string keys: marshmallow keys a list's items by index
    (an int), which orjson will not write (core/json_provider.py)."""
    return {
        str(key): _json_keys(value) if isinstance(value, dict) else value
        for key, value in errors.items()
    }


def error_response(
    code: int,
    message: str | None = None,
    error: str | None = None,
    errors: dict | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """A JSON response carrying the envelope (and `extra` fields, if any)."""
    response = jsonify(error_body(code, message, error, errors, extra))
    response.status_code = code
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_response_doc(description: str) -> dict[str, Any]:
    """An error answer in the OpenAPI document: the envelope, described."""
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
        },
    }


def rate_limit_exceeded(limit: RequestLimit) -> Response:
    """429 in the envelope, with Retry-After, and an audit record."""
    # When the window frees a slot (reset_at would add a second on top).
    retry_after = max(1, math.ceil(limit.window[0] - time.time()))
    RATE_LIMIT_HITS.labels(str(limit.limit)).inc()
    audit(
        "rate_limit_hit",
        "Rate limit hit",
        limit=str(limit.limit),
        endpoint=request.endpoint,
    )
    return error_response(
        429,
        f"Too many requests ({limit.limit}). Retry in {retry_after} seconds.",
        "rate_limited",
        headers={"Retry-After": str(retry_after)},
    )


def register_error_handlers(app: Flask) -> None:
    """Answer domain and database errors in the envelope."""

    @app.errorhandler(APIError)
    def handle_api_error(exc: APIError) -> Response:
        return error_response(
            exc.status_code,
            exc.message,
            exc.error,
            exc.errors,
            headers=exc.headers,
            extra=exc.extra_fields(),
        )

    @app.errorhandler(SQLAlchemyError)
    def handle_database_error(exc: SQLAlchemyError) -> Response:
        # Nothing half-written survives: the transaction goes back.
        try:
            app.extensions["sqlalchemy"].session.rollback()
        except SQLAlchemyError:
            pass  # the connection is gone; the pool discards it
        if _database_unreachable(exc):
            app.logger.error("Database unavailable: %s", exc.__class__.__name__)
            return error_response(
                503, "The database is unavailable.", "service_unavailable"
            )
        app.logger.error("Database error", exc_info=exc)
        return error_response(500)


def _database_unreachable(exc: SQLAlchemyError) -> bool:
    """Connection trouble (as opposed to a bug in a query)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError, TimeoutError))
