"""API tokens for scripts: long-lived bearer tokens that are not sessions.

An API token is an access token (`type: access`) with the claim
`token_use: "api"`, signed like any other, so every route that takes an access
token takes it. It is never fresh, so no fresh-only operation accepts it, and
making API tokens needs a fresh token: an API token cannot make another. It is
not a refresh token, so /refresh and the token endpoint refuse it.

It belongs to no session: it has no `fam`, never outlives its own `exp`
(1-365 days) and "log out everywhere" (the per-user mark) leaves it alone. It is
revoked one by one, by `jti`: when its user deletes it, changes the password or
deletes the account, or when it is sent to /logout or /revoke.

`last_used_at` is coarse: written at most once a minute a token, so an ordinary
request with an API token writes nothing.
"""

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app
from flask_jwt_extended import create_access_token
from sqlalchemy.exc import SQLAlchemyError

from blocklist import get_blocklist
from core import NotFound, audit
from models import ApiTokenModel
from models.api_token import Revocable
from models.user import TokenSubject

TOKEN_USE_CLAIM = "token_use"
API_TOKEN_USE = "api"
# How stale last_used_at may be; also how often one worker tries to write it.
USE_RECORD_INTERVAL = timedelta(minutes=1)
USES_EXTENSION = "api_token_uses"

logger = logging.getLogger(__name__)


def is_api_token(claims: dict) -> bool:
    """Whether decoded claims are an API token's."""
    return claims.get(TOKEN_USE_CLAIM) == API_TOKEN_USE


def create_api_token(user: TokenSubject, name: str, lifetime_days: int) -> dict:
    """A new API token of the user's: its row as listed, and the token itself
    (shown this once: only its `jti` is kept)."""
    jti = str(uuid.uuid4())
    created_at = datetime.now(UTC)
    expires_at = created_at + timedelta(days=lifetime_days)
    row = ApiTokenModel.create(user.id, name, jti, created_at, expires_at)
    token = create_access_token(
        identity=str(user.id),
        fresh=False,
        # No is_admin claim: administrator rights are read from the database
        # at each request, so a token that lives for months cannot keep them.
        # `exp` is exactly the row's, which its revocation entry outlives.
        additional_claims={
            "jti": jti,
            "iat": created_at.timestamp(),
            "exp": expires_at.timestamp(),
            TOKEN_USE_CLAIM: API_TOKEN_USE,
        },
    )
    audit("api_token_created", "API token created", token_id=row.id)
    return dict(describe(row), token=token)


def list_api_tokens(user_id: int) -> list[dict]:
    """The user's API tokens that have not expired, newest first (no secrets)."""
    return [describe(row) for row in ApiTokenModel.of_user(user_id)]


def describe(row: ApiTokenModel) -> dict:
    """What the user is shown of a token."""
    return {
        "id": row.id,
        "name": row.name,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "last_used_at": row.last_used_at,
    }


def delete_api_token(user_id: int, token_id: int) -> None:
    """Revoke one of the user's tokens; 404 for any other id (never says whose)."""
    row = ApiTokenModel.find(user_id, token_id)
    if row is None:
        raise NotFound("API token not found.")
    _revoke(user_id, [Revocable(row.jti, row.expires_at)])
    audit("api_token_revoked", "API token revoked", token_id=token_id)


def revoke_api_tokens(user_id: int) -> None:
    """Revoke every API token of the user (a new password, a deleted account)."""
    _revoke(user_id, ApiTokenModel.revocable(user_id))


def forget_api_token(user_id: int, jti: str) -> None:
    """An API token sent to /logout or /revoke (and revoked there by `jti`):
    no longer listed."""
    ApiTokenModel.forget(user_id, [jti])


def _revoke(user_id: int, tokens: list[Revocable]) -> None:
    # The revocation store first: should the delete fail, the tokens are refused
    # all the same, and still listed, so deleting them again is possible.
    blocklist = get_blocklist()
    for token in tokens:
        blocklist.revoke(token.jti, _as_utc(token.expires_at).timestamp())
    ApiTokenModel.forget(user_id, [token.jti for token in tokens])


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands timestamps back naive; they are stored in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class UseRecorder:
    """When this process last wrote each token's `last_used_at`, so a token used
    many times a minute costs one UPDATE a minute (per worker at most; the UPDATE
    itself skips a row written less than a minute ago by any worker)."""

    def __init__(
        self, interval: timedelta, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval.total_seconds()
        self._clock = clock
        self._written: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, jti: str) -> bool:
        """Whether to write now; records the attempt when it is."""
        now = self._clock()
        with self._lock:
            if now - self._written.get(jti, -self._interval) < self._interval:
                return False
            if len(self._written) > 10_000:  # forget the tokens not used lately
                self._written = {
                    key: at
                    for key, at in self._written.items()
                    if now - at < self._interval
                }
            self._written[jti] = now
            return True


def init_api_tokens(app: Flask) -> None:
    """Give the app its own record of recent `last_used_at` writes."""
    app.extensions[USES_EXTENSION] = UseRecorder(USE_RECORD_INTERVAL)


def note_api_token_use(claims: dict) -> None:
    """A request came with this API token: keep `last_used_at` (coarsely) up to
    date. Bookkeeping only: a failed write is logged, the request goes on."""
    if not current_app.extensions[USES_EXTENSION].due(claims["jti"]):
        return
    try:
        ApiTokenModel.record_use(claims["jti"], USE_RECORD_INTERVAL)
    except SQLAlchemyError:
        logger.warning("Could not record the use of an API token", exc_info=True)
