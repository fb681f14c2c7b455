"""Rate limits of the auth routes (login, registration, refresh, API tokens), and
the failed-login budgets every route that checks a password shares.

A password login is counted four ways (`login_budgets`):

- every attempt, per client address (`RATELIMIT_LOGIN`): a flood limit;
- failures per (username, client address) (`RATELIMIT_LOGIN_USERNAME`): what
  one attacker address may guess at one account;
- failures per username from every address together
  (`RATELIMIT_LOGIN_USERNAME_TOTAL`, larger): distributed guessing;
- from a device that has logged in to that account before (a valid device
  cookie, auth/devices.py), failures per device instead of the two above
  (`RATELIMIT_LOGIN_USERNAME` again): strangers who spend the account's budgets
  never lock its owner out there, and a device that spends its own budget locks
  out itself alone.

Failures are counted after the answer (Flask-Limiter's `deduct_when`), so only a
failed login costs anything; attempts running side by side may each pass the
check before any is counted, at most one per worker thread serving them.
"""

import hashlib
import logging
from collections.abc import Callable, Mapping
from functools import wraps

from flask import Response, after_this_request, current_app, request
from flask_limiter import RequestLimit
from flask_limiter.util import get_remote_address

from auth.devices import account, known_device, remember_device
from core import Blueprint, audit, error_response_doc, limiter
from core.telemetry import LOGIN_BUDGET_REFUSALS


def submitted_username() -> str:
    """The username a login request names (a JSON body at /login, form parameters
    at /token), as compared: case-insensitively; '' when there is none."""
    body = request.get_json(silent=True) if request.is_json else request.form
    username = body.get("username") if isinstance(body, Mapping) else None
    return username.strip().lower()[:80] if isinstance(username, str) else ""


def _hashed(username: str) -> str:
    """A username as a rate-limit key: what was typed (perhaps a password) is
    never stored as such in the limiter's storage."""
    return hashlib.sha256(username.encode()).hexdigest()[:32]


def _refused(response: Response, *errors: str) -> bool:
    """A 401 or 403 whose envelope's `error` is one of `errors`."""
    body = response.get_json(silent=True) if response.is_json else None
    return (
        response.status_code in (401, 403)
        and isinstance(body, dict)
        and body.get("error") in errors
    )


def failed_login(response: Response) -> bool:
    """Only failed logins count towards the failed-login budgets: a wrong password,
    not a right one that asks for a second factor (401 `mfa_required`)."""
    return _refused(response, "invalid_credentials")


def wrong_password(response: Response) -> bool:
    """A refused password, second-factor code or passkey where the token already
    names the user (a step-up's 401, a password change's 403): other refusals
    there are refused tokens, counted nowhere."""
    return _refused(
        response, "invalid_credentials", "invalid_code", "invalid_credential"
    )


def failed_passkey(response: Response) -> bool:
    """A refused passkey assertion at POST /login/passkey: a bad one, or one whose
    challenge was used or expired (a replay)."""
    return _refused(response, "invalid_credential", "challenge_expired")


def wrong_code(response: Response) -> bool:
    """A refused second-factor code (401 `invalid_code`) at POST /login/mfa."""
    return _refused(response, "invalid_code")


def failed_grant(response: Response) -> bool:
    """At /token a failed password grant is a 400 (RFC 6749 §5.2)."""
    return response.status_code == 400


def created_one(response: Response) -> bool:
    """Only what was made counts (an API token), not refused attempts."""
    return response.status_code == 201


def grant_is_not(grant_type: str) -> Callable[[], bool]:
    """For a /token limit that applies to one grant type only."""
    return lambda: request.form.get("grant_type") != grant_type


def never() -> bool:
    """Every request is a login (a route that takes a password and nothing else)."""
    return False


def login_budgets(
    *,
    failed: Callable[[Response], bool],
    not_a_login: Callable[[], bool] = never,
    username: Callable[[], str] = submitted_username,
) -> Callable:
    """The limits of a password login, as one decorator (below `@public` or the
    token check, above `@blp.arguments`), and a new device cookie after each
    success. Every route that applies it shares every budget with the others.

    `failed(response)` says the password was wrong (401 at /login, 400 at
    /token); `not_a_login()` exempts requests that check no password (/token's
    refresh grant); `username()` names the account tried, as
    `submitted_username` does (a route that knows its user from a token
    passes, e.g., `lambda: token_user().username.lower()`).
    """
    budgets = _login_budgets(failed, not_a_login, username)

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def login(*args, **kwargs):
            if not not_a_login():
                name = username()
                after_this_request(lambda response: remember_device(response, name))
            return view(*args, **kwargs)

        for budget in reversed(budgets):
            login = budget(login)
        return login

    return decorate


def _login_budgets(
    failed: Callable[[Response], bool],
    not_a_login: Callable[[], bool],
    username: Callable[[], str],
) -> tuple[Callable, ...]:
    """The login's limits, outermost first: the flood limit, then the failure
    budgets of the username and address, of the username, and of a known device."""

    def known() -> bool:
        return known_device(username()) is not None

    def exempt(when: Callable[[], bool] = never) -> Callable[[], bool]:
        return lambda: not_a_login() or when()

    return (
        rate_limited("RATELIMIT_LOGIN", exempt_when=exempt(), shared="login"),
        _failure_budget(
            "username_address",
            "RATELIMIT_LOGIN_USERNAME",
            lambda: f"login:{_hashed(username())}:{get_remote_address() or ''}",
            failed,
            exempt(known),
            username,
        ),
        _failure_budget(
            "username",
            "RATELIMIT_LOGIN_USERNAME_TOTAL",
            lambda: f"login:{_hashed(username())}",
            failed,
            exempt(known),
            username,
        ),
        _failure_budget(
            "device",
            "RATELIMIT_LOGIN_USERNAME",
            lambda: "device:" + ":".join(known_device(username()) or ()),
            failed,
            exempt(lambda: not known()),
            username,
        ),
    )


def _failure_budget(
    budget: str,
    setting: str,
    key: Callable[[], str],
    failed: Callable[[Response], bool],
    exempt_when: Callable[[], bool],
    username: Callable[[], str],
) -> Callable:
    """A budget of failed logins; a refusal is audited and counted by budget."""

    def spent(limit: RequestLimit) -> None:
        LOGIN_BUDGET_REFUSALS.labels(budget).inc()
        device = known_device(username())
        if device is not None:
            user_id: str | None = device.user_id
        else:
            user = account(username())
            user_id = None if user is None else str(user.id)
        # The account's id when the name is one's; never what was typed.
        audit(
            "login_budget_exhausted",
            "A failed-login budget is spent: login attempts are refused",
            level=logging.WARNING,
            budget=budget,
            limit=str(limit.limit),
            user_id=user_id,
        )

    return rate_limited(
        setting,
        key_func=key,
        deduct_when=failed,
        exempt_when=exempt_when,
        shared=f"login-{budget}",
        on_breach=spent,
    )


def rate_limited(
    setting: str,
    *,
    key_func: Callable[[], str] | None = None,
    deduct_when: Callable[[Response], bool] | None = None,
    exempt_when: Callable[[], bool] | None = None,
    shared: str | None = None,
    on_breach: Callable[[RequestLimit], None] | None = None,
) -> Callable:
    """Apply the limit named by `setting` (read per request) and document its 429.

    Routes that name the same `shared` scope count against one budget (a login
    at /login and at /token), instead of one each. `on_breach` is called on a
    refusal, beside the envelope's handler.
    """
    options: dict = {
        "key_func": key_func,
        "deduct_when": deduct_when,
        "exempt_when": exempt_when,
        "on_breach": on_breach,
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
