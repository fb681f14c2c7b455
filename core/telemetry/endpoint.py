"""GET /metrics, and the count of every request (metrics.py has the metrics).

Label values are bounded, whatever clients send: the route is the URL rule
(`/item/<id:item_id>`, Flask's form, never the raw path), `unmatched` when no rule
matched (a 404 for an unknown path, a 405); a method outside HTTP's own counts as
`other`. The scrapes themselves are not counted, not rate-limited and not in the
OpenAPI document (a plain Flask blueprint).
"""

import hmac
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.exposition import choose_encoder

from core.errors import error_response
from core.extensions import limiter
from core.telemetry.metrics import (
    HTTP_DURATION,
    HTTP_REQUESTS,
    TOKEN_REJECTED,
    worker_process,
)

METRICS_PATH = "/metrics"
METRICS_ENDPOINT = "operations.metrics"
UNMATCHED = "unmatched"
METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
# The `error` codes of the 401s a token (or its absence) gets (auth/callbacks.py).
TOKEN_REJECTIONS = frozenset(
    {
        "authorization_required",
        "token_expired",
        "token_revoked",
        "invalid_token",
        "fresh_token_required",
        # RFC 9449: a DPoP proof refused, or the server's nonce asked for.
        "invalid_dpop_proof",
        "use_dpop_nonce",
    }
)

operations_blp = Blueprint("operations", __name__)
# The two series of each (method, route, status) this process has counted.
# `labels()` checks the values and takes a lock at each call, about a third of
# what counting a request cost; the labels are bounded, and so is this map.
_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}


@operations_blp.get(METRICS_PATH)
def metrics() -> Response:
    """The metrics of the whole server, in the Prometheus text format."""
    expected = current_app.config["METRICS_TOKEN"]
    if expected and not _bearer_matches(expected):
        return error_response(
            401,
            "GET /metrics needs 'Authorization: Bearer <METRICS_TOKEN>'.",
            "authorization_required",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    if worker_process is not None:
        worker_process.refresh(force=True)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    # The classic text format (0.0.4), or OpenMetrics when the scraper asks for it.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = Response(encode(registry), content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    return response


def _bearer_matches(expected: str) -> bool:
    """Whether the request carries `Bearer <expected>` (compared in constant time)."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode(), expected.encode()
    )


def init_metrics(app: Flask) -> None:
    """Count every request (but the scrapes) and serve /metrics, unless
    METRICS_ENABLED is off."""
    if not app.config["METRICS_ENABLED"]:
        return
    limiter.exempt(operations_blp)
    app.register_blueprint(operations_blp)
    app.after_request(_count_request)


def _count_request(response: Response) -> Response:
    rule = request.url_rule
    if rule is None:
        route = UNMATCHED
    elif rule.endpoint == METRICS_ENDPOINT:
        return response
    else:
        route = rule.rule
    method = request.method if request.method in METHODS else "other"
    status = response.status_code
    series = _series.get((method, route, status))
    if series is None:
        series = _series[method, route, status] = (
            HTTP_REQUESTS.labels(method, route, str(status)),
            HTTP_DURATION.labels(method, route),
        )
    requests_total, duration = series
    requests_total.inc()
    # Set by logs.py's before_request, the request's first.
    started = g.get("request_started")
    if started is not None:
        duration.observe(time.perf_counter() - started)
    if status == 401:
        reason = _token_rejection(response)
        if reason is not None:
            TOKEN_REJECTED.labels(reason).inc()
    if worker_process is not None:
        worker_process.refresh()
    return response


def _token_rejection(response: Response) -> str | None:
    """The `error` of a 401's envelope when it is about a token (a failed login's
    401 is counted by auth_logins_total instead)."""
    body = response.get_json(silent=True) if response.is_json else None
    error = body.get("error") if isinstance(body, dict) else None
    return error if error in TOKEN_REJECTIONS else None
