"""Freshness bounded by time: what a fresh-only route asks of a token, and the
RFC 9470 step-up challenge it answers when the token falls short.

A token is fresh enough for a route when it is a fresh access token (minted by a
login or a re-authentication, never by a refresh) and its user proved who they
are at most the route's max age ago: `now - auth_time <= max_age` (RFC 9470 §3,
`max_age`; `auth_time` as OpenID Connect names it). Fresh-only routes name their
max age by the setting that holds it: `FRESH_MAX_AGE` for every one, the shorter
`ACCOUNT_FRESH_MAX_AGE` for account security (a password change, an account's
deletion, an API token's creation).

Every refusal keeps the seed's answer (401, `error: "fresh_token_required"`) and
says the standard way what would do: `WWW-Authenticate: Bearer
error="insufficient_user_authentication", max_age="N"` (RFC 9470 §3), so a
standard client steps up (re-authenticates) instead of refreshing, which would
only bring another token that is not fresh.
"""

import time
from enum import Enum
from typing import Any

from flask import current_app, g

from auth.challenges import step_up_challenge
from core import APIError, error_response

# The OpenAPI operation's statement of its max age (the setting's name here; the
# served document gives the configured seconds: core/pages).
FRESH_MAX_AGE_KEY = "x-fresh-max-age"
NOT_FRESH = "The token is not fresh."
TOO_OLD = "The token is fresh, but the user authenticated too long ago for this."


class Freshness(Enum):
    """How recently the user must have authenticated, by the setting that says."""

    DEFAULT = "FRESH_MAX_AGE"
    ACCOUNT = "ACCOUNT_FRESH_MAX_AGE"

    def max_age(self) -> int:
        """This requirement's max age in seconds, as the app is configured."""
        return int(current_app.config[self.value])


def is_fresh_enough(claims: dict[str, Any], max_age: int) -> bool:
    """A fresh access token whose user authenticated at most `max_age` s ago."""
    if claims.get("fresh") is not True or "auth_time" not in claims:
        return False
    return time.time() - claims["auth_time"] <= max_age


class StepUpRequired(APIError):
    """A fresh-only route refused a token: not fresh, or authenticated too long
    ago. The seed's error code, with the RFC 9470 challenge."""

    status_code = 401
    error = "fresh_token_required"

    def __init__(self, max_age: int, message: str = TOO_OLD) -> None:
        super().__init__(message)
        self.max_age = max_age
        self.headers = {"WWW-Authenticate": step_up_challenge(max_age, message)}


def require(freshness: Freshness) -> None:
    """Remember the route's requirement for the callback of a token that is not
    fresh at all (Flask-JWT-Extended's check runs before the view)."""
    g.required_freshness = freshness


def check(claims: dict[str, Any]) -> None:
    """Refuse a fresh token whose authentication is older than the route allows."""
    max_age = g.required_freshness.max_age()
    if not is_fresh_enough(claims, max_age):
        raise StepUpRequired(max_age)


def not_fresh_response() -> Any:
    """The answer for a token that is not fresh (Flask-JWT-Extended's
    needs_fresh_token callback), with the route's max age."""
    freshness = g.get("required_freshness", Freshness.DEFAULT)
    max_age = freshness.max_age()
    return error_response(
        401,
        NOT_FRESH,
        "fresh_token_required",
        headers={"WWW-Authenticate": step_up_challenge(max_age, NOT_FRESH)},
    )
