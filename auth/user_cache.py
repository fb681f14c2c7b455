"""The user cache: the user check answered from this worker's memory.

The user check (does the token's user still exist, and is it an administrator) is
answered from memory for at most USER_CHECK_CACHE_SECONDS (2 s at the most). That
is the one check that may lag, because what ends a user's tokens does not rely on
it: deleting an account (and changing a password, logging out everywhere) revokes
the user's tokens in the revocation store at once, and the revocation check, which
runs before this one on every request, is never cached. What it delays by up to
2 s on other workers is a user deleted straight in the database, and a promotion
to administrator; never a demotion: a cached administrator is read again before
the rights grant anything (auth.decorators.has_admin_rights).
"""

import threading
import time

from cachetools import TTLCache
from flask import Flask, current_app

from models.user import TokenSubject

USER_CACHE_EXTENSION = "user_check_cache"


def _monotonic() -> float:
    # Looked up at each call (cachetools keeps the function it was given), so a
    # clock put in place of time.monotonic moves caches built before it too.
    return time.monotonic()


class UserCheckCache:
    """User id -> its row of the user check, each kept for `seconds` (per worker).

    Only users that exist are kept: a token whose user is gone is looked up (and
    refused) every time. At most `size` users, the least recently used dropped
    first. cachetools' caches are not thread-safe: every use holds the lock.
    """

    def __init__(self, seconds: float, size: int = 4096) -> None:
        self._entries: TTLCache[int, TokenSubject] = TTLCache(
            size, seconds, timer=_monotonic
        )
        self._lock = threading.Lock()

    def get(self, user_id: int) -> TokenSubject | None:
        """The user's row if it was read less than `seconds` ago, else None."""
        with self._lock:
            try:  # one lookup (`.get` makes two, each reading the clock)
                return self._entries[user_id]
            except KeyError:
                return None

    def put(self, user_id: int, subject: TokenSubject) -> None:
        with self._lock:
            self._entries[user_id] = subject

    def forget(self, user_id: int) -> None:
        """Drop a user (deleted in this worker: no need to wait)."""
        with self._lock:
            self._entries.pop(user_id, None)


def init_user_cache(app: Flask) -> None:
    """Give the app its own user cache (USER_CHECK_CACHE_SECONDS; 0: none)."""
    seconds = app.config["USER_CHECK_CACHE_SECONDS"]
    app.extensions[USER_CACHE_EXTENSION] = UserCheckCache(seconds) if seconds else None


def user_check_cache() -> UserCheckCache | None:
    """The current app's user cache, if it has one."""
    return current_app.extensions.get(USER_CACHE_EXTENSION)
