"""What the app needs from a revocation store, whatever its backend.

A revocation store holds four kinds of entries, each with an expiry so nothing
grows without bound (an entry is useless once every token it could refuse has
expired):

- revoked tokens (`jti`), until the token's own expiry;
- revoked families (every token descended from one login), until the newest
  refresh token of the family could have expired;
- per-user marks: every token of the user's sessions started before the mark is
  refused (whenever the token itself was minted: a refresh in flight when the
  mark was set mints tokens of a session that has ended);
- rotation marks: refresh token `jti` -> when it was rotated and which refresh
  token replaced it, so a replay can be told from a retry;
- DPoP proofs seen (RFC 9449 §11.1), until the proof would be too old anyway.

When a revocation store cannot be reached, every call raises
`RevocationStoreUnavailable` (503): a protected request is refused, never silently
accepted.
"""

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core import APIError
from core.telemetry import REVOCATION_STORE_ERRORS

Clock = Callable[[], float]

JTI, FAMILY, USER, ROTATION, PROOF = "jti", "family", "user", "rotation", "proof"


class RevocationStoreUnavailable(APIError):
    """The revocation store cannot be reached: refuse rather than guess."""

    status_code = 503
    error = "service_unavailable"


def revocation_store_unavailable() -> RevocationStoreUnavailable:
    """The 503 for a revocation store call that failed, counted
    (revocation_store_errors)."""
    REVOCATION_STORE_ERRORS.inc()
    return RevocationStoreUnavailable("The revocation store is unavailable.")


@dataclass(frozen=True)
class Rotation:
    """A refresh token was traded for `replaced_by` at `rotated_at`."""

    rotated_at: float
    replaced_by: str


def session_start(claims: dict[str, Any]) -> float:
    """When the session of a token started, which no refresh changes: `fam_iat`.

    A per-user mark is compared with it, not with the token's `iat`: a refresh that
    passed its check just before the mark mints tokens with a later `iat`, and
    those must be refused all the same. Tokens minted before `fam_iat` existed
    count from their login (`auth_time`), else from their own `iat`.
    """
    for claim in ("fam_iat", "auth_time", "iat"):
        if claim in claims:
            return float(claims[claim])
    raise KeyError("iat")


class Blocklist(ABC):
    """What the app needs from a revocation store.

    Every `expires_at` is in epoch seconds; `margin` (the decode leeway) is added
    so an entry outlives its token even when clocks disagree a little.
    """

    def __init__(self, clock: Clock = time.time, margin: float = 0) -> None:
        self._clock = clock
        self._margin = margin

    def revoke(self, jti: str, expires_at: float) -> None:
        """Refuse the token `jti` until it expires."""
        self._put(JTI, jti, "1", expires_at + self._margin)

    def revoke_family(self, family: str, expires_at: float) -> None:
        """Refuse every token of the family `family` (one login's descendants)."""
        self._put(FAMILY, family, "1", expires_at + self._margin)

    def revoke_user(
        self, user_id: str, started_before: float, expires_at: float
    ) -> None:
        """Refuse every token of `user_id`'s sessions started before
        `started_before` (see `session_start`)."""
        self._put(
            USER, user_id, started_before, expires_at + self._margin, keep_max=True
        )

    def mark_rotated(self, jti: str, rotation: Rotation, expires_at: float) -> bool:
        """Record that refresh token `jti` was rotated; False if it already was.

        Atomic: of two concurrent rotations of one token exactly one wins.
        """
        value = f"{rotation.rotated_at!r}|{rotation.replaced_by}"
        return self._put_new(ROTATION, jti, value, expires_at + self._margin)

    def first_use_of_proof(self, key: str, expires_at: float) -> bool:
        """Record a DPoP proof (`key`: a digest of its key and `jti`); False when
        it was recorded before, a replay.

        Atomic: of two requests with one proof, on any workers, exactly one wins.
        """
        return self._put_new(PROOF, key, "1", expires_at + self._margin)

    def get_rotation(self, jti: str) -> Rotation | None:
        """How refresh token `jti` was rotated, if it was."""
        value = self._get(ROTATION, jti)
        if value is None:
            return None
        rotated_at, replaced_by = str(value).split("|", 1)
        return Rotation(float(rotated_at), replaced_by)

    def is_token_revoked(
        self, claims: dict[str, Any], *, by_user_mark: bool = True
    ) -> bool:
        """Whether a decoded token is refused: by jti, by family or (unless
        `by_user_mark` is off: API tokens outlive sessions) by user mark."""
        jti_revoked, family_revoked, user_mark = self._lookup(
            claims["jti"], claims.get("fam"), str(claims["sub"])
        )
        if jti_revoked or family_revoked:
            return True
        return (
            by_user_mark and user_mark is not None and session_start(claims) < user_mark
        )

    def now(self) -> float:
        """The revocation store's clock."""
        return self._clock()

    @abstractmethod
    def _put(
        self, kind: str, key: str, value: Any, expires_at: float, keep_max: bool = False
    ) -> None:
        """Write an entry; with keep_max, never lower an existing (numeric) value."""

    @abstractmethod
    def _put_new(self, kind: str, key: str, value: str, expires_at: float) -> bool:
        """Write an entry only if absent; return whether it was written."""

    @abstractmethod
    def _get(self, kind: str, key: str) -> Any:
        """An unexpired entry's value, or None."""

    @abstractmethod
    def _lookup(
        self, jti: str, family: str | None, user_id: str
    ) -> tuple[bool, bool, float | None]:
        """(jti revoked, family revoked, user mark) in one round trip."""

    @abstractmethod
    def purge_expired(self) -> int:
        """Drop expired entries; return how many went."""

    @abstractmethod
    def ping(self) -> None:
        """Raise RevocationStoreUnavailable unless the revocation store answers."""
