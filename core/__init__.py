"""The service plumbing: settings, extension objects, the error envelope, telemetry
(metrics, logs, audit), the URLs the API hands out (`urls`: from PUBLIC_URL or a
trusted Host), the fields the schemas share (`fields`) and the `Blueprint` every
resource is made with (`blueprint`: its bodies parsed by the app's JSON provider).

Everything outside `core` imports what it needs from here. The wiring the factory
alone uses stays in its modules: `api` (the flask-smorest `Api` answering in the
envelope), `hardening` (security headers, CORS, proxies and hosts, body size),
`json_provider` (orjson), `pages` (Swagger UI and /demo), `patches` (every library
patch, version-guarded), `workers` (gunicorn's worker classes, named by
gunicorn.conf.py) and `telemetry`'s `endpoint` (GET /metrics) and `logs` (the log
format, request ids, access log). CLI commands live with what they command
(auth/commands.py, blocklist.py), never here: the plumbing imports no layer above it.
"""

from core.blueprint import Blueprint
from core.errors import (
    APIError,
    Conflict,
    ErrorSchema,
    Forbidden,
    NotFound,
    Unauthorized,
    error_response,
    error_response_doc,
)
from core.extensions import Model, api, cors, db, jwt, limiter, migrate
from core.openapi import BEARER_OR_OAUTH2
from core.settings import SIGNING_ALGORITHMS, ConfigError, decode_leeway_seconds
from core.telemetry import audit
from core.urls import external_url, host_headers

__all__ = [
    "APIError",
    "BEARER_OR_OAUTH2",
    "Blueprint",
    "SIGNING_ALGORITHMS",
    "ConfigError",
    "Conflict",
    "ErrorSchema",
    "Model",
    "Forbidden",
    "Unauthorized",
    "NotFound",
    "api",
    "audit",
    "cors",
    "db",
    "decode_leeway_seconds",
    "error_response",
    "error_response_doc",
    "external_url",
    "host_headers",
    "jwt",
    "limiter",
    "migrate",
]
