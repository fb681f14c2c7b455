"""Defences around the API: trusted proxies, security headers, CORS, rate limits."""

import math
import time
from collections.abc import Callable

from flask import Flask, Response, current_app, request
from flask_limiter import RequestLimit
from flask_limiter.util import get_remote_address
from flask_smorest import Blueprint
from werkzeug.middleware.proxy_fix import ProxyFix

from errors import error_response, error_response_doc
from extensions import cors, limiter
from observability import audit

# Lets the bundled Swagger UI work (its own scripts and styles, inline styles,
# data: images) and nothing else; JSON responses are never rendered anyway.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Flask-Limiter settings whose limits only its before_request hook applies.
APP_WIDE_LIMITS = ("RATELIMIT_DEFAULT", "RATELIMIT_APPLICATION", "RATELIMIT_META")


def init_security(app: Flask) -> None:
    """Wire the defences into the app."""
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies:
        # Only the last `proxies` hops of X-Forwarded-* are believed.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies
        )
    app.after_request(_add_security_headers)
    if app.config["CORS_ORIGINS"]:
        cors.init_app(
            app,
            origins=app.config["CORS_ORIGINS"],
            supports_credentials=True,
            allow_headers=[
                "Authorization",
                "Content-Type",
                "X-CSRF-TOKEN",
                "X-Request-ID",
            ],
            expose_headers=["X-Pagination", "X-Request-ID", "Retry-After"],
            max_age=600,
        )
    # Counters in Redis when there is one (shared by every worker and instance),
    # else in this process's memory.
    if not app.config.get("RATELIMIT_STORAGE_URI"):
        redis_url = app.config.get("REDIS_URL")
        app.config["RATELIMIT_STORAGE_URI"] = redis_url or "memory://"
        if redis_url:
            # Every key the app writes starts with REDIS_KEY_PREFIX.
            app.config.setdefault(
                "RATELIMIT_STORAGE_OPTIONS",
                {"key_prefix": app.config["REDIS_KEY_PREFIX"] + "ratelimit"},
            )
    app.config["RATELIMIT_ON_BREACH_CALLBACK"] = rate_limit_exceeded
    limiter.init_app(app)
    hooks = app.before_request_funcs.get(None, [])
    app_wide = any(app.config.get(name) for name in APP_WIDE_LIMITS)
    if limiter._check_request_limit in hooks and not app_wide:
        # Every limit here is a `rate_limited` decorator, checked by Flask-Limiter
        # when the view is called. Its before_request hook only applies default,
        # application-wide and meta limits: with none set it would find nothing to
        # check, at a cost on every request. (Its after_request hook stays: it
        # counts the failed logins.)
        hooks.remove(limiter._check_request_limit)


def _add_security_headers(response: Response) -> Response:
    # Headers a view set itself stay as they are.
    present = {name.lower() for name, _ in response.headers}
    response.headers.extend(
        (name, value)
        for name, value in SECURITY_HEADERS.items()
        if name.lower() not in present
    )
    if current_app.config["CORS_ORIGINS"]:
        # The CORS answer depends on the Origin: caches must keep them apart.
        response.vary.add("Origin")
    if request.is_secure:
        response.headers.setdefault(
            "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
        )
    return response


def rate_limit_exceeded(limit: RequestLimit) -> Response:
    """429 in the envelope, with Retry-After, and an audit record."""
    # When the window frees a slot (reset_at would add a second on top).
    retry_after = max(1, math.ceil(limit.window[0] - time.time()))
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


def limit_for(setting: str):
    """A limit read from the app's config when the request comes in."""
    return lambda: current_app.config[setting]


def login_username_key() -> str:
    """Count login attempts per target username, whatever the client address."""
    body = request.get_json(silent=True)
    username = body.get("username") if isinstance(body, dict) else None
    if isinstance(username, str) and username:
        return "username:" + username.strip().lower()[:80]
    return "address:" + (get_remote_address() or "")


def failed_login(response: Response) -> bool:
    """Only failed logins count towards the per-username limit."""
    return response.status_code == 401


def rate_limited(
    setting: str,
    *,
    key_func: Callable[[], str] | None = None,
    deduct_when: Callable[[Response], bool] | None = None,
) -> Callable:
    """Apply the limit named by `setting` and document its 429 answer."""
    limit = limiter.limit(
        limit_for(setting), key_func=key_func, deduct_when=deduct_when
    )
    too_many = error_response_doc(
        "Too many requests: retry after `Retry-After` seconds."
    )
    too_many["headers"] = {
        "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
    }
    document = Blueprint.doc(responses={"429": too_many})
    return lambda func: document(limit(func))
