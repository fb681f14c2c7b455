"""`mfa_token`s: a login whose password was right, waiting for its second factor.

Opaque (256 random bits), held by the database as a SHA-256 digest, bound to
the user, good for `MFA_TOKEN_EXPIRES` seconds (5 minutes), for one completed
login and for `MFA_TOKEN_MAX_FAILURES` wrong codes (5). It is no JWT, so no
route can take it for an access or a refresh token. The database is what every
worker and instance shares whatever the revocation store, so the single use
holds across them: the DELETE that ends a waiting login succeeds for one request.
"""

import hashlib
import secrets
from collections.abc import Callable
from datetime import timedelta

from flask import current_app

from core import Unauthorized, db
from models import MfaTokenModel, UserModel
from models.base import utcnow, write

TOKEN_BYTES = 32


class MfaRequired(Unauthorized):
    """The password was right; a second factor is needed (and, at a login, the
    `mfa_token` that carries the login to POST /login/mfa)."""

    error = "mfa_required"

    def __init__(self, message: str, mfa_token: str | None = None) -> None:
        super().__init__(message)
        self.mfa_token = mfa_token

    def extra_fields(self) -> dict:
        return {} if self.mfa_token is None else {"mfa_token": self.mfa_token}


class InvalidMfaToken(Unauthorized):
    """An `mfa_token` that is unknown, used, expired or spent on wrong codes."""

    error = "invalid_mfa_token"


def issue_mfa_token(user: UserModel, token_delivery: str) -> str:
    """A new waiting login for `user` (expired ones are purged on the way)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    lifetime = timedelta(seconds=current_app.config["MFA_TOKEN_EXPIRES"])
    with write("The login could not be stored."):
        MfaTokenModel.purge_expired()
        db.session.add(
            MfaTokenModel(
                id=_digest(token),
                user_id=user.id,
                expires_at=utcnow() + lifetime,
                failures=0,
                token_delivery=token_delivery,
            )
        )
    return token


def waiting_login(token: str) -> MfaTokenModel:
    """The live waiting login `token` names, or InvalidMfaToken."""
    waiting = MfaTokenModel.find_live(_digest(token))
    if waiting is None:
        raise InvalidMfaToken(_REFUSED)
    return waiting


def complete(token: str, second_factor: Callable[[], None]) -> None:
    """End the waiting login for good if `second_factor()` (which raises when it
    refuses the code) accepts, in one transaction: the DELETE that ends it holds
    the row, so of two requests with one `mfa_token` one alone spends a code, and
    a refused code leaves the waiting login as it was. InvalidMfaToken when
    another request (a replay, a race) ended it first."""
    with write("The login could not be completed."):
        if not MfaTokenModel.spend(_digest(token)):
            raise InvalidMfaToken(_REFUSED)
        second_factor()


def discard(token: str) -> None:
    """End a waiting login that can no longer complete."""
    with write("The login could not be ended."):
        MfaTokenModel.spend(_digest(token))


def take_attempt(token: str) -> None:
    """Count an attempt at a code for this waiting login before the code is
    checked; InvalidMfaToken once `MFA_TOKEN_MAX_FAILURES` were made (counted
    after the check, attempts side by side would each get one)."""
    limit = current_app.config["MFA_TOKEN_MAX_FAILURES"]
    with write("The attempt could not be counted."):
        taken = MfaTokenModel.take_attempt(_digest(token), limit)
    if not taken:
        raise InvalidMfaToken(_REFUSED)


def waiting_username(token: str) -> str:
    """The username of the account a live `mfa_token` belongs to, as the failure
    budgets compare names (lower case); '' for any other string."""
    waiting = MfaTokenModel.find_live(_digest(token)) if token else None
    user = None if waiting is None else UserModel.find(waiting.user_id)
    return "" if user is None else user.username.lower()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_REFUSED = "The mfa_token is unknown, used or expired: log in again with the password."
