"""Rate limits of the auth routes (login, registration, refresh, API tokens)."""

from collections.abc import Callable, Mapping

from flask import Response, current_app, request
from flask_limiter.util import get_remote_address

from core import Blueprint, error_response_doc, limiter


def login_username_key() -> str:
    """Count login attempts per target username, whatever the client address
    (a JSON body at /login, form parameters at /token)."""
    body = request.get_json(silent=True) if request.is_json else request.form
    username = body.get("username") if isinstance(body, Mapping) else None
    if isinstance(username, str) and username:
        return "username:" + username.strip().lower()[:80]
    return "address:" + (get_remote_address() or "")


def failed_login(response: Response) -> bool:
    """Only failed logins count towards the per-username limit."""
    return response.status_code == 401


def failed_grant(response: Response) -> bool:
    """At /token a failed password grant is a 400 (RFC 6749 §5.2)."""
    return response.status_code == 400


def created_one(response: Response) -> bool:
    """Only what was made counts (an API token), not refused attempts."""
    return response.status_code == 201


def grant_is_not(grant_type: str) -> Callable[[], bool]:
    """For a /token limit that applies to one grant type only."""
    return lambda: request.form.get("grant_type") != grant_type


def rate_limited(
    setting: str,
    *,
    key_func: Callable[[], str] | None = None,
    deduct_when: Callable[[Response], bool] | None = None,
    exempt_when: Callable[[], bool] | None = None,
    shared: str | None = None,
) -> Callable:
    """Apply the limit named by `setting` (read per request) and document its 429.

    Routes that name the same `shared` scope count against one budget (a login
    at /login and at /token), instead of one each.
    """
    options: dict = {
        "key_func": key_func,
        "deduct_when": deduct_when,
        "exempt_when": exempt_when,
    }
    value = lambda: current_app.config[setting]  # noqa: E731  (read per request)
    limit = (
        limiter.shared_limit(value, scope=shared, **options)
        if shared
        else limiter.limit(value, **options)
    )
    too_many = error_response_doc(
        "Too many requests: retry after `Retry-After` seconds."
    )
    too_many["headers"] = {
        "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
    }
    document = Blueprint.doc(responses={"429": too_many})
    return lambda func: document(limit(func))
