"""Users and their credentials."""

import re
from datetime import datetime
from functools import cache
from typing import Protocol

from sqlalchemy import DateTime, Index, Select, String, false, func
from sqlalchemy.orm import Mapped, mapped_column

from errors import Forbidden
from extensions import db, passwords
from models.base import read_connection, utcnow, write

# 3-80 letters, digits, "_", "." or "-"; \Z, not $ (which accepts a final newline).
USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,80}\Z"
USERNAME_RE = re.compile(USERNAME_PATTERN)


class UserModel(db.Model):
    """A person who logs in; usernames are unique case-insensitively."""

    __tablename__ = "users"
    # AUTOINCREMENT: SQLite would otherwise hand a deleted user's id (and with it
    # any token still carrying that id) to the next account.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=false())
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
    def register(
        cls, username: str, password: str, *, is_admin: bool = False
    ) -> "UserModel":
        """Create a user; a taken name (even under a race) is a 409."""
        user = cls(
            username=username, password_hash=passwords.hash(password), is_admin=is_admin
        )
        with write("A user with that username already exists.", "username_taken"):
            db.session.add(user)
        return user

    @classmethod
    def authenticate(cls, username: str, password: str) -> "UserModel | None":
        """Return the user whose password matches, upgrading an outdated hash.

        An unknown username costs the same hashing work as a wrong password, so
        response times do not reveal which usernames exist.
        """
        # A name that could never have been registered cannot match (and must not
        # reach the database: PostgreSQL refuses NUL characters outright).
        if USERNAME_RE.match(username) is None:
            user = None
        else:
            user = cls.find_by_username(username)
        if user is None:
            passwords.dummy_verify(password)
            return None
        valid, new_hash = passwords.verify_and_update(password, user.password_hash)
        if not valid:
            return None
        if new_hash:
            with write("Could not upgrade the password hash."):
                user.password_hash = new_hash
        return user

    def change_password(self, current_password: str, new_password: str) -> None:
        """Replace the password after checking the current one (403 if wrong)."""
        valid, _ = passwords.verify_and_update(current_password, self.password_hash)
        if not valid:
            raise Forbidden("The current password is incorrect.", "invalid_credentials")
        with write("The password could not be changed."):
            self.password_hash = passwords.hash(new_password)

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
