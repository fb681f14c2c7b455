"""The revocation store, behind one interface, with three backends.

It holds four kinds of entries, each with an expiry so nothing grows without
bound (an entry is useless once every token it could refuse has expired):

- revoked tokens (`jti`), until the token's own expiry;
- revoked families (every token descended from one login), until the newest
  refresh token of the family could have expired;
- per-user marks: every token of the user's sessions started before the mark is
  refused (whenever the token itself was minted: a refresh in flight when the
  mark was set mints tokens of a session that has ended);
- rotation marks: refresh token `jti` -> when it was rotated and which refresh
  token replaced it, so a replay can be told from a retry.

Backends: `memory` (per process, lost on restart), `database` (a table in the
app's database: shared by workers, survives restarts) and `redis`. When the
store cannot be reached, every call raises `StoreUnavailable` (503): a
protected request is refused, never silently accepted.
"""

import heapq
import math
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import redis
from flask import Flask, current_app, has_request_context
from sqlalchemy import Table, and_, bindparam, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from core import APIError, db, decode_leeway_seconds
from core.telemetry import STORE_ERRORS
from models.base import read_connection
from models.blocklist_entry import BlocklistEntryModel

Clock = Callable[[], float]

JTI, FAMILY, USER, ROTATION = "jti", "family", "user", "rotation"


class StoreUnavailable(APIError):
    """The revocation store cannot be reached: refuse rather than guess."""

    status_code = 503
    error = "service_unavailable"


def store_unavailable() -> StoreUnavailable:
    """The 503 for a store call that failed, counted (revocation_store_errors)."""
    STORE_ERRORS.inc()
    return StoreUnavailable("The revocation store is unavailable.")


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
        """The store's clock."""
        return self._clock()

    @abstractmethod
    def _put(
        self, kind: str, key: str, value: Any, expires_at: float, keep_max: bool = False
    ) -> None:
        """Store an entry; with keep_max, never lower an existing (numeric) value."""

    @abstractmethod
    def _put_new(self, kind: str, key: str, value: str, expires_at: float) -> bool:
        """Store an entry only if absent; return whether it was stored."""

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
        """Raise StoreUnavailable unless the store answers."""


class MemoryBlocklist(Blocklist):
    """The design's in-memory store: per process, lost on restart.

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


class _DriverStatement(NamedTuple):
    """A statement compiled for one dialect, to run on the driver's cursor."""

    sql: str
    # The parameters' order for a positional paramstyle (SQLite's ?), else None.
    names: list[str] | None
    # The values compiled into the statement (the kinds), by parameter name.
    fixed: dict[str, Any]


class DatabaseBlocklist(Blocklist):
    """A table in the app's own database (SQLite or PostgreSQL).

    Each write runs in its own short transaction on its own connection, apart
    from the request's session, so a revocation is committed at once. The check
    of a request reads through the request's read connection when `reader` gives
    one (it sees every committed revocation, and the request needs no second
    connection from the pool for it). Expired rows are purged every
    `purge_every` writes, and by `flask blocklist purge`.
    """

    def __init__(
        self,
        engine_getter: Callable[[], Any],
        clock: Clock = time.time,
        margin: float = 0,
        purge_every: int = 200,
        reader: Callable[[], Connection | None] = lambda: None,
    ) -> None:
        super().__init__(clock, margin)
        self._table = table = cast(Table, BlocklistEntryModel.__table__)
        # The per-request check, built once (no family: an empty key never matches).
        self._lookup_statement = (
            table.select()
            .with_only_columns(table.c.kind, table.c.value)
            .where(
                or_(
                    and_(table.c.kind == JTI, table.c.key == bindparam("jti")),
                    and_(table.c.kind == FAMILY, table.c.key == bindparam("family")),
                    and_(table.c.kind == USER, table.c.key == bindparam("user")),
                ),
                table.c.expires_at > bindparam("now"),
            )
        )
        self._driver_statements: dict[str, _DriverStatement] = {}
        self._engine_getter = engine_getter
        self._reader = reader
        self._purge_every = purge_every
        self._writes = 0
        self._writes_lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self._store_errors(), self._engine_getter().begin() as connection:
            yield connection

    @contextmanager
    def _store_errors(self) -> Iterator[None]:
        """A database that fails (but for a constraint) is a store that is down."""
        try:
            yield
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise store_unavailable() from exc

    def _insert(self, connection: Connection):
        dialect = {"sqlite": sqlite, "postgresql": postgresql}.get(
            connection.dialect.name
        )
        if dialect is None:
            raise RuntimeError(
                "The database blocklist supports SQLite and PostgreSQL only."
            )
        return dialect.insert(self._table)

    def _put(
        self, kind: str, key: str, value: Any, expires_at: float, keep_max: bool = False
    ) -> None:
        table = self._table
        with self._transaction() as connection:
            insert = self._insert(connection).values(
                kind=kind, key=key, value=str(value), expires_at=expires_at
            )
            # Later expiries win; for user marks the later mark has the later
            # expiry, so the same rule keeps the maximum mark.
            connection.execute(
                insert.on_conflict_do_update(
                    index_elements=[table.c.kind, table.c.key],
                    set_={
                        "value": insert.excluded.value,
                        "expires_at": insert.excluded.expires_at,
                    },
                    where=table.c.expires_at < insert.excluded.expires_at,
                )
            )
        self._after_write()

    def _put_new(self, kind: str, key: str, value: str, expires_at: float) -> bool:
        try:
            with self._transaction() as connection:
                connection.execute(
                    self._table.insert().values(
                        kind=kind, key=key, value=value, expires_at=expires_at
                    )
                )
        except IntegrityError:
            return False
        self._after_write()
        return True

    def _get(self, kind: str, key: str) -> Any:
        table = self._table
        with self._transaction() as connection:
            return connection.execute(
                table.select()
                .with_only_columns(table.c.value)
                .where(
                    table.c.kind == kind,
                    table.c.key == key,
                    table.c.expires_at > self._clock(),
                )
            ).scalar()

    def _lookup(
        self, jti: str, family: str | None, user_id: str
    ) -> tuple[bool, bool, float | None]:
        values = {
            "jti": jti,
            "family": family or "",
            "user": user_id,
            "now": self._clock(),
        }
        reader = self._reader()
        rows: Sequence[Any]
        if reader is None:
            with self._transaction() as connection:
                rows = connection.execute(self._lookup_statement, values).all()
        else:
            rows = self._read_through_driver(reader, values)
        found: dict[str, str] = {kind: value for kind, value in rows}
        mark = found.get(USER)
        return JTI in found, FAMILY in found, None if mark is None else float(mark)

    def _read_through_driver(
        self, connection: Connection, values: dict[str, Any]
    ) -> Sequence[Any]:
        """The per-request check on the request's read connection, on its driver's
        cursor: the statement is compiled once per dialect, and SQLAlchemy's
        execution (most of what this one indexed query cost: 20 µs a request
        against 3 µs for the driver; bench/run.py's case 1 with this store went
        from 0.94x to 1.00x of the memory store) is skipped. Its columns are strings and
        a float, which neither SQLite's nor psycopg's driver converts. A driver
        error is the store being down (503), as through SQLAlchemy.
        """
        dialect = connection.dialect
        statement = self._driver_statements.get(dialect.name)
        if statement is None:
            compiled = self._lookup_statement.compile(dialect=dialect)
            statement = self._driver_statements[dialect.name] = _DriverStatement(
                compiled.string,
                compiled.positiontup,
                dict(compiled.construct_params(dict.fromkeys(values))),
            )
        parameters = {**statement.fixed, **values}
        arguments: Any = (
            parameters
            if statement.names is None
            else [parameters[name] for name in statement.names]
        )
        try:
            cursor = connection.connection.cursor()
            try:
                cursor.execute(statement.sql, arguments)
                return cursor.fetchall()
            finally:
                cursor.close()
        except (SQLAlchemyError, dialect.loaded_dbapi.Error) as exc:
            raise store_unavailable() from exc

    def purge_expired(self) -> int:
        with self._transaction() as connection:
            return connection.execute(
                self._table.delete().where(self._table.c.expires_at <= self._clock())
            ).rowcount

    def ping(self) -> None:
        with self._transaction() as connection:
            connection.exec_driver_sql("SELECT 1")

    def _after_write(self) -> None:
        with self._writes_lock:
            self._writes += 1
            due = self._writes % self._purge_every == 0
        if due:
            self.purge_expired()


# Set a numeric value unless the stored one is larger; (re)set the expiry.
_SET_MAX_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) >= tonumber(ARGV[1]) then
  local ttl = redis.call('TTL', KEYS[1])
  if ttl < tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


class _ThreadConnection(threading.local):
    """A Redis connection of one thread's own, made in the process that uses it."""

    connection: Any = None
    pid = 0


class RedisBlocklist(Blocklist):
    """Redis keys that expire with the remaining lifetime of what they refuse."""

    def __init__(
        self,
        client: Any,
        prefix: str = "blocklist:",
        clock: Clock = time.time,
        margin: float = 0,
    ) -> None:
        super().__init__(clock, margin)
        self._client = client
        self._prefix = prefix
        self._set_max = client.register_script(_SET_MAX_SCRIPT)
        self._own = _ThreadConnection()

    @contextmanager
    def _errors_as_unavailable(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise store_unavailable() from exc

    def _key(self, kind: str, key: str) -> str:
        return f"{self._prefix}{kind}:{key}"

    def _ttl(self, expires_at: float) -> int:
        return math.ceil(expires_at - self._clock())

    def _put(
        self, kind: str, key: str, value: Any, expires_at: float, keep_max: bool = False
    ) -> None:
        ttl = self._ttl(expires_at)
        if ttl <= 0:
            return
        with self._errors_as_unavailable():
            if keep_max:
                self._set_max(keys=[self._key(kind, key)], args=[repr(value), ttl])
            else:
                # Never shorten an entry: GT keeps the later of two expiries.
                pipe = self._client.pipeline()
                pipe.set(self._key(kind, key), value, nx=True, ex=ttl)
                pipe.expire(self._key(kind, key), ttl, gt=True)
                pipe.execute()

    def _put_new(self, kind: str, key: str, value: str, expires_at: float) -> bool:
        ttl = max(1, self._ttl(expires_at))
        with self._errors_as_unavailable():
            return bool(self._client.set(self._key(kind, key), value, nx=True, ex=ttl))

    def _get(self, kind: str, key: str) -> Any:
        with self._errors_as_unavailable():
            value = self._client.get(self._key(kind, key))
        return value.decode() if isinstance(value, bytes) else value

    def _lookup(
        self, jti: str, family: str | None, user_id: str
    ) -> tuple[bool, bool, float | None]:
        keys = [self._key(JTI, jti), self._key(USER, user_id)]
        if family is not None:
            keys.append(self._key(FAMILY, family))
        with self._errors_as_unavailable():
            values = self._read("MGET", *keys)
        family_revoked = family is not None and values[2] is not None
        mark = None if values[1] is None else float(values[1])
        return values[0] is not None, family_revoked, mark

    def _read(self, *command: str) -> Any:
        """Run a read-only command on this thread's own connection.

        The lookup runs on every request. redis-py's `Redis.execute_command` takes a
        connection from the pool and gives it back around each command, under its
        retry policy: with hiredis's parser, that bookkeeping was half of what the
        lookup cost a worker (bench/run.py case 1 with Redis, 0.79x -> 0.84x of the
        memory store). Each thread keeps one connection instead, made after the fork
        (a worker never shares its parent's socket).

        A connection that fails or times out mid-command is closed by redis-py
        (`send_packed_command`, `read_response`), so a late reply is never read as
        the next command's; the next send opens a new one. The command only reads,
        so it is sent once more when the connection broke while idle (Redis
        restarted, a proxy closed it); a second failure, or a timeout, means the
        store is down.
        """
        own = self._own
        if own.pid != os.getpid():
            own.connection = self._client.connection_pool.make_connection()
            own.pid = os.getpid()
        for attempt in (1, 2):
            try:
                own.connection.send_command(*command)
                return own.connection.read_response()
            except redis.ConnectionError:
                if attempt == 2:
                    raise

    def purge_expired(self) -> int:
        return 0  # Redis expires the keys itself.

    def ping(self) -> None:
        with self._errors_as_unavailable():
            self._client.ping()


def init_blocklist(app: Flask) -> None:
    """Bind the configured revocation store to the app (no connection is made)."""
    backend = app.config["BLOCKLIST_BACKEND"]
    margin = decode_leeway_seconds(app.config)
    store: Blocklist
    if backend == "memory":
        store = MemoryBlocklist(margin=margin)
    elif backend == "database":
        store = DatabaseBlocklist(
            lambda: db.engine, margin=margin, reader=_request_read_connection
        )
    else:
        client = redis.Redis.from_url(
            app.config["REDIS_URL"],
            socket_timeout=app.config["REDIS_SOCKET_TIMEOUT"],
            socket_connect_timeout=app.config["REDIS_SOCKET_TIMEOUT"],
            health_check_interval=30,
        )
        store = RedisBlocklist(
            client, prefix=app.config["REDIS_KEY_PREFIX"] + "blocklist:", margin=margin
        )
    app.extensions["blocklist"] = store


def _request_read_connection() -> Connection | None:
    """The request's read connection (models.base), outside a request none."""
    return read_connection() if has_request_context() else None


def get_blocklist() -> Blocklist:
    """The current app's revocation store."""
    return current_app.extensions["blocklist"]
