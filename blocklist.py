"""Revoked tokens, behind one small interface.

A revoked token only has to be remembered until it would have expired anyway:
after that, signature verification refuses it on its own. Each entry therefore
carries the token's expiry and is dropped once that has passed, so the store
stays bounded by the number of *live* revoked tokens.
"""

import heapq
import threading
import time
from collections.abc import Callable
from typing import Protocol

from flask import Flask, current_app


class Blocklist(Protocol):
    """What the app needs from a revocation store."""

    def revoke(self, jti: str, expires_at: float) -> None:
        """Refuse the token `jti` until `expires_at` (epoch seconds)."""

    def is_revoked(self, jti: str) -> bool:
        """Whether the token `jti` has been revoked."""


class MemoryBlocklist:
    """The design's in-memory blocklist: per process, lost on restart.

    Thread-safe. Expired entries are purged opportunistically on every call,
    using a heap ordered by expiry, so the work per call is O(log n) amortized.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def revoke(self, jti: str, expires_at: float) -> None:
        """Refuse the token `jti` until `expires_at` (epoch seconds)."""
        with self._lock:
            self._purge_expired()
            if expires_at <= self._clock():
                return
            if expires_at > self._expiry.get(jti, float("-inf")):
                self._expiry[jti] = expires_at
                heapq.heappush(self._heap, (expires_at, jti))

    def is_revoked(self, jti: str) -> bool:
        """Whether the token `jti` has been revoked and has not yet expired."""
        with self._lock:
            self._purge_expired()
            return jti in self._expiry

    def __len__(self) -> int:
        with self._lock:
            self._purge_expired()
            return len(self._expiry)

    def _purge_expired(self) -> None:
        now = self._clock()
        while self._heap and self._heap[0][0] <= now:
            expires_at, jti = heapq.heappop(self._heap)
            # A later revoke of the same jti may have pushed a longer expiry.
            if self._expiry.get(jti) == expires_at:
                del self._expiry[jti]


def init_blocklist(app: Flask) -> None:
    """Bind the configured revocation store to the app."""
    backend = app.config["BLOCKLIST_BACKEND"]
    if backend != "memory":
        raise RuntimeError(
            f"BLOCKLIST_BACKEND={backend!r} is not available yet; use 'memory'."
        )
    if app.config["APP_ENV"] == "production":
        app.logger.warning(
            "BLOCKLIST_BACKEND=memory: revocations are per process and lost on "
            "restart. Use a shared backend when running several workers."
        )
    app.extensions["blocklist"] = MemoryBlocklist()


def get_blocklist() -> Blocklist:
    """The current app's revocation store."""
    return current_app.extensions["blocklist"]
