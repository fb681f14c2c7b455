"""Helpers shared by the models: timestamps, writes, pagination."""

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from flask import g
from sqlalchemy import Connection, CursorResult, Executable, Select, func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from core import Conflict, Model, NotFound, db

M = TypeVar("M", bound=Model)
# How every SQLite connection commits (app.py): each commit waits for the disk.
SQLITE_SYNCHRONOUS = "FULL"


def utcnow() -> datetime:
    """Now, timezone-aware (a callable column default, never an import-time value)."""
    return datetime.now(UTC)


def read_connection() -> Connection:
    """This request's connection for plain (Core) reads, opened on first use and
    closed at the end of the request (`close_read_connection`).

    For the reads on the path of many requests (the token check, GET /item/<id>):
    the ORM session's transaction bookkeeping costs more than such a read itself.
    It sees committed data only: never use it to read back what the session writes.
    """
    connection = g.get("read_connection")
    if connection is None:
        connection = g.read_connection = db.engine.connect()
    return connection


def close_read_connection(_error: BaseException | None = None) -> None:
    """Give the request's read connection back to the pool (teardown)."""
    connection = g.pop("read_connection", None)
    if connection is not None:
        connection.close()


@contextmanager
def bookkeeping_transaction() -> Iterator[Connection]:
    """A transaction of its own whose commit does not wait for the disk.

    For bookkeeping that a crash of the machine (never of the process) may lose
    without harm: a session's last refresh, on the path of every /refresh, where
    waiting for the disk was a quarter of the request. The database stays
    consistent, and the next ordinary commit makes this one durable too:
    - SQLite (WAL): `synchronous=NORMAL` for this commit only, then back to the
      FULL every connection runs with (app.py);
    - PostgreSQL: `SET LOCAL synchronous_commit TO OFF`; the server's WAL writer
      flushes it within a fraction of a second.
    Revocations, rotations, users and everything else commit as usual.
    """
    with db.engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                yield connection
            return
        # On the driver's connection, outside SQLAlchemy's transaction: a PRAGMA
        # run before the transaction's first write applies to its commit.
        driver = cast(sqlite3.Connection, connection.connection.driver_connection)
        driver.execute("PRAGMA synchronous=NORMAL")
        try:
            with connection.begin():
                yield connection
        finally:
            driver.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")


@contextmanager
def write(conflict_message: str, conflict_error: str = "conflict") -> Iterator[None]:
    """Commit the block's changes, or roll all of them back.

    A constraint violation becomes a 409 `Conflict`; anything else is re-raised
    after the rollback, so a failed write never leaves half of itself behind.
    """
    try:
        yield
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise Conflict(conflict_message, conflict_error) from exc
    except StaleDataError as exc:
        # The row was deleted by someone else between our read and our write.
        db.session.rollback()
        raise NotFound("It no longer exists: it was deleted meanwhile.") from exc
    except BaseException:
        db.session.rollback()
        raise


def not_found(model: type[Model]) -> NotFound:
    """The 404 for a row of `model` that does not exist ("Item not found.")."""
    return NotFound(f"{_noun(model).capitalize()} not found.")


def get_or_404(model: type[M], ident: int) -> M:
    """The row of `model` with this primary key, or a 404."""
    row = db.session.get(model, ident)
    if row is None:
        raise not_found(model)
    return row


def delete_or_404(model: type[Model], ident: int) -> None:
    """Delete one row by primary key in one statement (the database cascades)."""
    with write(f"The {_noun(model)} could not be deleted."):
        deleted = rows_changed(db.delete(model).filter_by(id=ident))
    if not deleted:
        raise not_found(model)


def rows_changed(statement: Executable) -> int:
    """Run an INSERT, UPDATE or DELETE in the session; how many rows it changed."""
    return cast(CursorResult[Any], db.session.execute(statement)).rowcount


def _noun(model: type[Model]) -> str:
    """What one row of `model` is called: its table's name in the singular."""
    return model.__tablename__.removesuffix("s")


def paginate(statement: Select, pagination_parameters: Any) -> Sequence[Any]:
    """Run one page of `statement` and record the total for X-Pagination."""
    total = db.session.scalar(
        db.select(func.count()).select_from(statement.order_by(None).subquery())
    )
    pagination_parameters.item_count = total
    if pagination_parameters.first_item >= total:
        return []  # past the end: no query (and no absurd OFFSET)
    page = statement.limit(pagination_parameters.page_size).offset(
        pagination_parameters.first_item
    )
    return db.session.scalars(page).unique().all()
