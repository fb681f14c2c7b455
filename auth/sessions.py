"""Issuing, rotating and revoking tokens (no HTTP here).

Every login starts a *family* (the `fam` claim), carried by every access and
refresh token descended from that login. `/refresh` rotates within the family:
each refresh token is traded once. A refresh token presented again is a retry
when it is the family's immediately previous one and was rotated less than
REFRESH_REUSE_GRACE_SECONDS ago (two tabs, a lost response); anything else is a
replay, and the whole family is revoked (RFC 9700 §4.14.2).
"""

import logging
import time
import uuid

from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token

from auth.callbacks import REVOKED, www_authenticate
from blocklist import Rotation, get_blocklist
from core import APIError, audit
from models.user import TokenSubject


class RefreshTokenReused(APIError):
    """A rotated refresh token was replayed: its family is now revoked."""

    status_code = 401
    error = "token_revoked"
    headers = {"WWW-Authenticate": www_authenticate("invalid_token", REVOKED)}


def issue_tokens(
    user: TokenSubject, *, fresh: bool, family: str | None = None, refresh_jti=None
) -> dict:
    """A new access token (fresh only straight after a login) and refresh token.

    `family` is None for a login (a new family starts); `iat` is kept to the
    microsecond so per-user marks ("issued before T") are exact.
    """
    claims = {
        # Read from the database at every issue, never copied from an old token.
        "is_admin": user.is_admin,
        "fam": family or uuid.uuid4().hex,
        "iat": time.time(),
    }
    refresh_claims = dict(claims, jti=refresh_jti or str(uuid.uuid4()))
    identity = str(user.id)
    lifetime = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    return {
        "access_token": create_access_token(
            identity=identity, fresh=fresh, additional_claims=claims
        ),
        "refresh_token": create_refresh_token(
            identity=identity, additional_claims=refresh_claims
        ),
        "token_type": "Bearer",
        "expires_in": int(lifetime.total_seconds()),
    }


def rotate_refresh_token(user: TokenSubject, claims: dict) -> dict:
    """Trade a refresh token for a non-fresh access token and a new refresh token."""
    blocklist = get_blocklist()
    family = claims["fam"]
    replacement = str(uuid.uuid4())
    rotation = Rotation(blocklist.now(), replacement)
    if blocklist.mark_rotated(claims["jti"], rotation, claims["exp"]):
        return issue_tokens(user, fresh=False, family=family, refresh_jti=replacement)

    previous = blocklist.get_rotation(claims["jti"])
    grace = current_app.config["REFRESH_REUSE_GRACE_SECONDS"]
    # Read the clock now: a concurrent winner may have rotated after we started.
    # Clocks of several instances may disagree a little: never count below zero.
    if (
        previous is not None
        and max(0.0, blocklist.now() - previous.rotated_at) < grace
        and blocklist.get_rotation(previous.replaced_by) is None
    ):
        return issue_tokens(user, fresh=False, family=family)

    revoke_family(family)
    audit(
        "refresh_token_reuse",
        "Refresh token reuse detected: family revoked",
        level=logging.WARNING,
        user_id=claims["sub"],
        family=family,
    )
    raise RefreshTokenReused(REVOKED)


def revoke_family(family: str) -> None:
    """Refuse every token of one login, the newest refresh token included."""
    get_blocklist().revoke_family(family, _latest_possible_expiry())


def revoke_session(claims: dict) -> None:
    """Log out: this token and its whole family (RFC 7009 §2.1)."""
    get_blocklist().revoke(claims["jti"], claims["exp"])
    if "fam" in claims:
        revoke_family(claims["fam"])


def revoke_all_user_tokens(user_id: int | str) -> float:
    """Refuse every token of the user issued until now; return the mark."""
    blocklist = get_blocklist()
    mark = blocklist.now()
    blocklist.revoke_user(str(user_id), mark, _latest_possible_expiry())
    return mark


def _latest_possible_expiry() -> float:
    """No token issued until now outlives this (refresh tokens live longest)."""
    config = current_app.config
    longest = max(
        config["JWT_REFRESH_TOKEN_EXPIRES"], config["JWT_ACCESS_TOKEN_EXPIRES"]
    )
    return time.time() + longest.total_seconds()
