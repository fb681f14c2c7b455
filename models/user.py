"""Users and their password hashes (hashing and checking: auth.accounts)."""

import re
from datetime import datetime
from functools import cache
from typing import Protocol

from sqlalchemy import DateTime, Index, Select, String, false, func, update
from sqlalchemy.orm import Mapped, mapped_column

from core import Model, db
from models.base import read_connection, utcnow, write

# A username: 3-80 letters, digits, "_", "." or "-". Python's pattern ends with \Z
# (its `$` accepts a final newline); the OpenAPI document's (ECMA-262) ends with `$`.
USERNAME_RULE = "^[A-Za-z0-9_.-]{3,80}"
USERNAME_RE = re.compile(USERNAME_RULE + r"\Z")
USERNAME_DOC_PATTERN = USERNAME_RULE + "$"


class UserModel(Model):
    """A person who logs in; usernames are unique case-insensitively."""

    __tablename__ = "users"
    # AUTOINCREMENT: SQLite would otherwise hand a deleted user's id (and with it
    # any token still carrying that id) to the next account.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=false())
    # A second factor is asked at every login and step-up (auth/factors/): kept on
    # the row a login reads anyway, so an account without one costs no query.
    totp_enabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, server_default=func.now()
    )

    def __repr__(self) -> str:
        return f"<UserModel {self.id} {self.username!r}>"

    @classmethod
    def find(cls, user_id: int) -> "UserModel | None":
        """The user with this id."""
        return db.session.scalars(_by_id(), {"user_id": user_id}).one_or_none()

    @classmethod
    def subject(cls, user_id: int) -> "TokenSubject | None":
        """What tokens say of the user, or None if there is no such user.

        The token check of every protected request: a plain row, with none of
        the ORM's object loading (use `find` for the whole user).
        """
        return read_connection().execute(_subject_by_id(), {"user_id": user_id}).first()

    @classmethod
    def find_by_username(cls, username: str) -> "UserModel | None":
        """Look a user up by name, ignoring case."""
        return db.session.scalar(
            db.select(cls).where(func.lower(cls.username) == username.lower())
        )

    @classmethod
    def lock(cls, user_id: int) -> None:
        """Hold the account's row until the caller's transaction ends, so what
        the caller counts of the account next stays true until it commits: an
        UPDATE that changes nothing takes a row lock on PostgreSQL and the
        write lock on SQLite (which ignores SELECT ... FOR UPDATE)."""
        db.session.execute(
            update(cls)
            .where(cls.id == user_id)
            .values(id=cls.id)
            .execution_options(synchronize_session=False)
        )

    def delete(self) -> None:
        """Delete the account."""
        with write("The user could not be deleted."):
            db.session.delete(self)


Index("uq_users_username_lower", func.lower(UserModel.username), unique=True)


@cache
def _by_id() -> Select:
    """Built once: Session.get() would build and fingerprint a new statement on
    every call, which costs more than the query itself on the per-request path."""
    return db.select(UserModel).where(UserModel.id == db.bindparam("user_id"))


@cache
def _subject_by_id() -> Select:
    """Built once: the two columns a token check needs, as a plain row."""
    table = UserModel.__table__
    return db.select(table.c.id, table.c.is_admin).where(
        table.c.id == db.bindparam("user_id")
    )


class TokenSubject(Protocol):
    """The user as far as tokens go: a `UserModel`, or the row `subject` reads."""

    id: int
    is_admin: bool
