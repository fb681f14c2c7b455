"""The revocation store: one interface, three backends, chosen by BLOCKLIST_BACKEND.

The face of the revocation stores: the rest of the app imports them from here.
The interface (`Blocklist`, what an entry is, `RevocationStoreUnavailable`) lives in
`revocation/base.py`, the shared backends in `revocation/database.py` (a table in
the app's database: shared by workers, survives restarts) and
`revocation/redis.py`; the in-memory one (per process, lost on restart), the
factory and `flask blocklist purge` live here.
"""

import heapq
import threading
import time
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from core import decode_leeway_seconds
from models import ApiTokenModel, SessionModel
from revocation.base import (
    FAMILY,
    JTI,
    USER,
    Blocklist,
    Clock,
    RevocationStoreUnavailable,
    Rotation,
    revocation_store_unavailable,
    session_start,
)
from revocation.database import DatabaseBlocklist, database_blocklist
from revocation.redis import RedisBlocklist, redis_blocklist

__all__ = [
    "Blocklist",
    "DatabaseBlocklist",
    "MemoryBlocklist",
    "RedisBlocklist",
    "RevocationStoreUnavailable",
    "Rotation",
    "get_blocklist",
    "init_blocklist",
    "register_blocklist_commands",
    "revocation_store_unavailable",
    "session_start",
]


class MemoryBlocklist(Blocklist):
    """The design's in-memory revocation store: per process, lost on restart.

    Thread-safe. Expired entries are purged on every call through a heap ordered
    by expiry, so the work per call is O(log n) amortized.
    """

    def __init__(self, clock: Clock = time.time, margin: float = 0) -> None:
        super().__init__(clock, margin)
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[float, Any]] = {}
        self._heap: list[tuple[float, str, str]] = []

    def _put(
        self, kind: str, key: str, value: Any, expires_at: float, keep_max: bool = False
    ) -> None:
        with self._lock:
            self._purge()
            if expires_at <= self._clock():
                return
            old = self._entries.get((kind, key))
            if old is not None:
                value = max(old[1], value) if keep_max else value
                expires_at = max(old[0], expires_at)
            self._entries[(kind, key)] = (expires_at, value)
            heapq.heappush(self._heap, (expires_at, kind, key))

    def _put_new(self, kind: str, key: str, value: str, expires_at: float) -> bool:
        with self._lock:
            self._purge()
            if (kind, key) in self._entries:
                return False
            self._entries[(kind, key)] = (expires_at, value)
            heapq.heappush(self._heap, (expires_at, kind, key))
            return True

    def _get(self, kind: str, key: str) -> Any:
        with self._lock:
            self._purge()
            entry = self._entries.get((kind, key))
            return None if entry is None else entry[1]

    def _lookup(
        self, jti: str, family: str | None, user_id: str
    ) -> tuple[bool, bool, float | None]:
        with self._lock:
            self._purge()
            mark = self._entries.get((USER, user_id))
            return (
                (JTI, jti) in self._entries,
                family is not None and (FAMILY, family) in self._entries,
                None if mark is None else mark[1],
            )

    def purge_expired(self) -> int:
        with self._lock:
            return self._purge()

    def ping(self) -> None:
        return None

    def _purge(self) -> int:
        now = self._clock()
        purged = 0
        while self._heap and self._heap[0][0] <= now:
            expires_at, kind, key = heapq.heappop(self._heap)
            entry = self._entries.get((kind, key))
            # A later write may have extended the entry: only the last push counts.
            if entry is not None and entry[0] == expires_at:
                del self._entries[(kind, key)]
                purged += 1
        return purged


def init_blocklist(app: Flask) -> None:
    """Bind the configured revocation store to the app (no connection is made)."""
    backend = app.config["BLOCKLIST_BACKEND"]
    margin = decode_leeway_seconds(app.config)
    blocklist: Blocklist
    if backend == "memory":
        blocklist = MemoryBlocklist(margin=margin)
    elif backend == "database":
        blocklist = database_blocklist(margin)
    else:
        blocklist = redis_blocklist(app.config, margin)
    app.extensions["blocklist"] = blocklist


def get_blocklist() -> Blocklist:
    """The current app's revocation store."""
    return current_app.extensions["blocklist"]


blocklist_cli = AppGroup("blocklist", help="Maintain the revocation store.")


@blocklist_cli.command("purge")
def purge_blocklist() -> None:
    """Delete revocation entries whose tokens have expired anyway, and the rows of
    sessions that ended by expiry and of API tokens that expired."""
    purged = get_blocklist().purge_expired()
    click.echo(f"Purged {purged} expired entries.")
    click.echo(f"Purged {SessionModel.purge_expired()} expired sessions.")
    click.echo(f"Purged {ApiTokenModel.purge_expired()} expired API tokens.")


def register_blocklist_commands(app: Flask) -> None:
    """`flask --app app blocklist purge`."""
    app.cli.add_command(blocklist_cli)
