"""The verified-claims cache: tokens Flask-JWT-Extended has verified a moment ago.

Verifying a token costs several base64 and JSON decodes and an HMAC, and a client
sends the same access token many times in a row. The cache keeps only what a full
verification established (the header and the claims), keyed by the exact token
string, per app. Each entry lives until its token expires (its `exp`, plus the
decode leeway): an expired one goes back through the full check, which refuses it.
Everything after decoding still runs on every request: the token type, freshness,
the revocation check, the user check. Flask-JWT-Extended has no public hook for
its decoding step: the factory hands `current_claims_cache` to the patches in
`core/patches.py`, which consult it.
"""

import threading
import time
from typing import NamedTuple

from cachetools import TLRUCache
from flask import Flask, current_app, has_app_context

from core import decode_leeway_seconds

CACHE_EXTENSION = "verified_token_claims"


class VerifiedToken(NamedTuple):
    header: dict
    claims: dict


class VerifiedClaimsCache:
    """Token string -> its verified header and claims, until the token expires.

    At most `size` tokens, the least recently used dropped first. cachetools'
    caches are not thread-safe: every use holds the lock.
    """

    def __init__(self, size: int, leeway: float) -> None:
        self._leeway = leeway
        # Compared with `exp`, a wall-clock time.
        self._entries: TLRUCache[str, VerifiedToken] = TLRUCache(
            size, self._expires_at, timer=time.time
        )
        self._lock = threading.Lock()

    def _expires_at(self, _token: str, entry: VerifiedToken, _now: float) -> float:
        return entry.claims["exp"] + self._leeway

    def get(self, token: str) -> VerifiedToken | None:
        """A verified token that has not expired yet (copies), or None."""
        with self._lock:
            try:  # one lookup (`.get` makes two, each reading the clock)
                entry = self._entries[token]
            except KeyError:
                return None
        return VerifiedToken(dict(entry.header), dict(entry.claims))

    def put(self, token: str, header: dict, claims: dict) -> None:
        """Remember a token after a full verification."""
        entry = VerifiedToken(dict(header), dict(claims))
        with self._lock:
            self._entries[token] = entry


def init_claims_cache(app: Flask) -> None:
    """Give the app its own cache (JWT_VERIFIED_CLAIMS_CACHE_SIZE; 0: none)."""
    size = app.config["JWT_VERIFIED_CLAIMS_CACHE_SIZE"]
    app.extensions[CACHE_EXTENSION] = (
        VerifiedClaimsCache(size, decode_leeway_seconds(app.config)) if size else None
    )


def current_claims_cache() -> VerifiedClaimsCache | None:
    """The current app's cache, if it has one."""
    return current_app.extensions.get(CACHE_EXTENSION) if has_app_context() else None
