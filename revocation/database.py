"""The `database` revocation store: a table in the app's own database."""

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, cast

from flask import has_request_context
from sqlalchemy import Table, and_, bindparam, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from core import db
from models.base import read_connection
from models.blocklist_entry import BlocklistEntryModel
from revocation.base import (
    FAMILY,
    JTI,
    USER,
    Blocklist,
    Clock,
    revocation_store_unavailable,
)


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
    from the request's database session, so a revocation is committed at once.
    The check of a request reads through the request's read connection when
    `reader` gives one (it sees every committed revocation, and the request needs
    no second connection from the pool for it). Expired rows are purged every
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
        with self._errors_as_unavailable(), self._engine_getter().begin() as connection:
            yield connection

    @contextmanager
    def _errors_as_unavailable(self) -> Iterator[None]:
        """A database that fails (but for a constraint) is a revocation store that
        is down."""
        try:
            yield
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise revocation_store_unavailable() from exc

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
        execution (most of what this one indexed query cost: docs/performance.md)
        is skipped. Its columns are strings and a float, which neither SQLite's nor
        psycopg's driver converts. A driver error is the revocation store being
        down (503), as through SQLAlchemy.
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
            raise revocation_store_unavailable() from exc

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


def database_blocklist(margin: float) -> DatabaseBlocklist:
    """The app's `database` revocation store: its table in the app's database, the
    check of a request read through the request's read connection."""
    return DatabaseBlocklist(
        lambda: db.engine, margin=margin, reader=_request_read_connection
    )


def _request_read_connection() -> Connection | None:
    """The request's read connection (models.base), outside a request none."""
    return read_connection() if has_request_context() else None
