"""Helpers shared by the models: timestamps, writes, pagination, and the end of
a request's database work."""

import functools
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from flask import Flask, g
from sqlalchemy import Connection, CursorResult, Executable, Select, event, func
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from core import Conflict, Model, NotFound, db

M = TypeVar("M", bound=Model)
# How every SQLite connection commits (app.py): each commit waits for the disk.
SQLITE_SYNCHRONOUS = "FULL"

log = logging.getLogger("api.database")
# True while a request's database session and read connection are being closed.
_closing: ContextVar[bool] = ContextVar("closing_database_work", default=False)


def utcnow() -> datetime:
    """Now, timezone-aware (a callable column default, never an import-time value)."""
    return datetime.now(UTC)


def read_connection() -> Connection:
    """This request's connection for plain (Core) reads, opened on first use and
    closed at the end of the request (`close_read_connection`).

    For the reads on the path of many requests (the token check, GET /item/<id>):
    the database session's transaction bookkeeping costs more than such a read
    itself. It sees committed data only: never use it to read back what the
    database session writes.
    """
    connection = g.get("read_connection")
    if connection is None:
        connection = g.read_connection = db.engine.connect()
    return connection


def close_read_connection(_error: BaseException | None = None) -> None:
    """Give the request's read connection back to the pool (teardown); one that
    fails to close is discarded (`init_database_teardown`)."""
    connection = g.pop("read_connection", None)
    if connection is None:
        return
    with _closing_database_work("read connection"):
        try:
            connection.close()
        except Exception:
            connection.invalidate()  # a no-op if the failure already did
            raise


def init_database_teardown(app: Flask) -> None:
    """Close the request's database work at teardown without ever costing the
    request its answer.

    Teardown functions run after the view's answer is built. When the database
    has just gone away, closing the database session (Flask-SQLAlchemy's
    `session.remove()`, a ROLLBACK) or the read connection raises, and Flask
    let that replace the answer: a committed write was answered 500. Here every
    such error is logged with the request id and the connection is invalidated
    (`_discard_on_closing_error`), never handed to another request; the client
    gets what the view produced.
    """
    teardowns = app.teardown_appcontext_funcs
    wrapped = 0
    for index, teardown in enumerate(teardowns):
        if getattr(teardown, "__self__", None) is db:  # Flask-SQLAlchemy's own
            teardowns[index] = _harmless_database_session_teardown(teardown)
            wrapped += 1
    if not wrapped:
        app.logger.warning(
            "Flask-SQLAlchemy registered no teardown of its own: review "
            "models/base.py (init_database_teardown)."
        )
    app.teardown_appcontext(close_read_connection)
    with app.app_context():
        for engine in db.engines.values():
            event.listen(engine, "handle_error", _discard_on_closing_error)


def _harmless_database_session_teardown(
    teardown: Callable[[BaseException | None], object],
) -> Callable[[BaseException | None], None]:
    """`teardown` (which removes the database session), its errors logged, not
    raised."""

    @functools.wraps(teardown)
    def remove_database_session(error: BaseException | None) -> None:
        with _closing_database_work("session"):
            try:
                teardown(error)
            except Exception:
                # scoped_session.remove() skips this when the close raised:
                # the broken database session would stay registered.
                db.session.registry.clear()
                raise

    return remove_database_session


@contextmanager
def _closing_database_work(what: str) -> Iterator[None]:
    """Mark the block as closing the request's database work, and log (never
    raise) what fails in it."""
    token = _closing.set(True)
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - nothing here may replace the answer
        log.error(
            "Closing the request's %s failed (%s): its connection is discarded, "
            "the answer stands.",
            what,
            exc.__class__.__name__,
            exc_info=exc,
            extra={"request_id": g.get("request_id"), "closing": what},
        )
    finally:
        _closing.reset(token)


def _discard_on_closing_error(context: ExceptionContext) -> None:
    """A connection whose ROLLBACK or close failed at teardown is invalidated,
    whether or not the driver's error reads as a disconnect: its transaction's
    state is unknown. (SQLAlchemy's `handle_error` event.)"""
    if _closing.get() and not context.is_disconnect:
        context.is_disconnect = True
        # This connection only: the others may be healthy.
        context.invalidate_pool_on_disconnect = False


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
    database_session = db.session()
    try:
        yield
        # The answer is built from what was just committed, not read back: a
        # database that dies right after the COMMIT must not turn a stored write
        # into a 503 (issue 22, finding 9). Columns the database fills in itself
        # are still loaded on first use.
        database_session.expire_on_commit = False
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
    finally:
        database_session.expire_on_commit = True


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
