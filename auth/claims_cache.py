"""The verified-claims cache: tokens Flask-JWT-Extended has verified a moment ago.

Verifying a token costs several base64 and JSON decodes and an HMAC, and a client
sends the same access token many times in a row. The cache keeps only what a full
verification established (the header and the claims), keyed by the exact token
string, per app. Expiry is compared on every use (an expired entry goes back
through the full check, which refuses it), and everything after decoding still
runs on every request: the token type, freshness, the revocation check, the user
check. Flask-JWT-Extended has no public hook for its decoding step: the cache is
consulted through the patches in `core/patches.py`.
"""

import threading
import time
from collections import OrderedDict
from typing import NamedTuple

from flask import Flask, current_app, has_app_context

from core import decode_leeway_seconds

CACHE_EXTENSION = "verified_token_claims"


class VerifiedToken(NamedTuple):
    header: dict
    claims: dict


class VerifiedClaimsCache:
    """A small thread-safe LRU map: token string -> its verified header and claims."""

    def __init__(self, size: int, leeway: float) -> None:
        self._size = size
        self._leeway = leeway
        self._entries: OrderedDict[str, VerifiedToken] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> VerifiedToken | None:
        """A verified token that has not expired yet (copies), or None."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            if entry.claims["exp"] + self._leeway <= time.time():
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
        return VerifiedToken(dict(entry.header), dict(entry.claims))

    def put(self, token: str, header: dict, claims: dict) -> None:
        """Remember a token after a full verification."""
        with self._lock:
            self._entries[token] = VerifiedToken(dict(header), dict(claims))
            self._entries.move_to_end(token)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


def init_claims_cache(app: Flask) -> None:
    """Give the app its own cache (JWT_VERIFIED_CLAIMS_CACHE_SIZE; 0: none)."""
    size = app.config["JWT_VERIFIED_CLAIMS_CACHE_SIZE"]
    app.extensions[CACHE_EXTENSION] = (
        VerifiedClaimsCache(size, decode_leeway_seconds(app.config)) if size else None
    )


def claims_cache() -> VerifiedClaimsCache | None:
    """The current app's cache, if it has one."""
    return current_app.extensions.get(CACHE_EXTENSION) if has_app_context() else None
