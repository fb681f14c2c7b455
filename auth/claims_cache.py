"""The token check's two per-worker caches: verified claims, and users seen.

The verified-claims cache: tokens Flask-JWT-Extended has verified a moment ago.

Verifying a token costs several base64 and JSON decodes and an HMAC, and a client
sends the same access token many times in a row. The cache keeps only what a full
verification established (the header and the claims), keyed by the exact token
string, per app. Expiry is compared on every use (an expired entry goes back
through the full check, which refuses it), and everything after decoding still
runs on every request: the token type, freshness, the revocation check, the user
check. Flask-JWT-Extended has no public hook for its decoding step: the cache is
consulted through the patches in `core/patches.py`.

The user cache: the user check (does the token's user still exist, and is it an
administrator) answered from this worker's memory for at most
USER_CHECK_CACHE_SECONDS (2 s at the most). That is the one check that may lag,
because what ends a user's tokens does not rely on it: deleting an account (and
changing a password, logging out everywhere) revokes the user's tokens in the
revocation store at once, and the revocation check, which runs before this one on
every request, is never cached. What it delays by up to 2 s on other workers is a
user deleted straight in the database, and a promotion to administrator; never a
demotion: a cached administrator is read again before the rights grant anything
(auth.decorators.has_admin_rights).
"""

import threading
import time
from collections import OrderedDict
from typing import NamedTuple

from flask import Flask, current_app, has_app_context

from core import decode_leeway_seconds
from models.user import TokenSubject

CACHE_EXTENSION = "verified_token_claims"
USER_CACHE_EXTENSION = "user_check_cache"


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


class UserCheckCache:
    """User id -> its row of the user check, each kept for `seconds` (per worker).

    Only users that exist are kept: a token whose user is gone is looked up (and
    refused) every time. At most `size` users, the oldest dropped first.
    """

    def __init__(self, seconds: float, size: int = 4096) -> None:
        self._seconds = seconds
        self._size = size
        self._entries: dict[int, tuple[float, TokenSubject]] = {}
        self._lock = threading.Lock()

    def get(self, user_id: int) -> TokenSubject | None:
        """The user's row if it was read less than `seconds` ago, else None."""
        entry = self._entries.get(user_id)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def put(self, user_id: int, subject: TokenSubject) -> None:
        with self._lock:
            self._entries.pop(user_id, None)  # re-inserted last: the newest
            self._entries[user_id] = (time.monotonic() + self._seconds, subject)
            if len(self._entries) > self._size:
                del self._entries[next(iter(self._entries))]

    def forget(self, user_id: int) -> None:
        """Drop a user (deleted in this worker: no need to wait)."""
        with self._lock:
            self._entries.pop(user_id, None)


def init_claims_cache(app: Flask) -> None:
    """Give the app its own caches (JWT_VERIFIED_CLAIMS_CACHE_SIZE,
    USER_CHECK_CACHE_SECONDS; 0: none)."""
    size = app.config["JWT_VERIFIED_CLAIMS_CACHE_SIZE"]
    app.extensions[CACHE_EXTENSION] = (
        VerifiedClaimsCache(size, decode_leeway_seconds(app.config)) if size else None
    )
    seconds = app.config["USER_CHECK_CACHE_SECONDS"]
    app.extensions[USER_CACHE_EXTENSION] = UserCheckCache(seconds) if seconds else None


def claims_cache() -> VerifiedClaimsCache | None:
    """The current app's cache, if it has one."""
    return current_app.extensions.get(CACHE_EXTENSION) if has_app_context() else None


def user_check_cache() -> UserCheckCache | None:
    """The current app's user cache, if it has one."""
    return current_app.extensions.get(USER_CACHE_EXTENSION)
