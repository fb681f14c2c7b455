"""API tokens: long-lived bearer tokens a user makes for scripts, listed until they
expire or are revoked.

The token itself is a JWT (see `auth.api_tokens`); a row keeps what the user is
shown of it and its `jti`, by which it is revoked. Each row takes one of the
user's MAX_API_TOKENS slots: the unique (user_id, slot) pair is what enforces
the limit, in the database, even for requests that race.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import NamedTuple, cast

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    Update,
    bindparam,
    or_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from core import Conflict, Model, db
from models.base import rows_changed, utcnow, write

MAX_API_TOKENS = 20
# Concurrent creations may pick the same free slot; the loser tries the next one.
SLOT_ATTEMPTS = 3


class Revocable(NamedTuple):
    """What revoking a token needs: its `jti`, and until when to refuse it."""

    jti: str
    expires_at: datetime


class ApiTokenModel(Model):
    """A user's API token: never the secret, only its name, dates and `jti`."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        UniqueConstraint("user_id", "slot"),
        CheckConstraint(f"slot >= 0 AND slot < {MAX_API_TOKENS}", name="slot_range"),
        # No id is ever handed out twice (SQLite would reuse a deleted one).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    slot: Mapped[int] = mapped_column(SmallInteger)
    name: Mapped[str] = mapped_column(String(80))
    jti: Mapped[str] = mapped_column(String(36), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def __repr__(self) -> str:
        return f"<ApiTokenModel {self.id} user {self.user_id}>"

    @classmethod
    def create(
        cls,
        user_id: int,
        name: str,
        jti: str,
        created_at: datetime,
        expires_at: datetime,
    ) -> "ApiTokenModel":
        """Record a new token in a free slot of the user's (expired tokens free
        theirs); committed at once. A 409 `too_many_tokens` when none is free."""
        for _ in range(SLOT_ATTEMPTS):
            rows_changed(
                db.delete(cls).where(
                    cls.user_id == user_id, cls.expires_at <= created_at
                )
            )
            taken = set(
                db.session.scalars(db.select(cls.slot).where(cls.user_id == user_id))
            )
            free = [slot for slot in range(MAX_API_TOKENS) if slot not in taken]
            if not free:
                db.session.rollback()
                raise Conflict(
                    f"You already have {MAX_API_TOKENS} API tokens, the most "
                    "allowed: delete one first.",
                    "too_many_tokens",
                )
            token = cls(
                user_id=user_id,
                slot=free[0],
                name=name,
                jti=jti,
                created_at=created_at,
                expires_at=expires_at,
            )
            db.session.add(token)
            try:
                db.session.commit()
                return token
            except IntegrityError:
                db.session.rollback()  # a concurrent creation took that slot
            except BaseException:
                db.session.rollback()
                raise
        raise Conflict(
            "API tokens are being created too fast: try again.", "too_many_tokens"
        )

    @classmethod
    def of_user(cls, user_id: int) -> Sequence["ApiTokenModel"]:
        """The user's tokens that have not expired, newest first."""
        return db.session.scalars(
            db.select(cls)
            .where(cls.user_id == user_id, cls.expires_at > utcnow())
            .order_by(cls.created_at.desc(), cls.id.desc())
        ).all()

    @classmethod
    def find(cls, user_id: int, token_id: int) -> "ApiTokenModel | None":
        """The user's token with this id (None for anyone else's)."""
        return db.session.scalar(
            db.select(cls).where(cls.id == token_id, cls.user_id == user_id)
        )

    @classmethod
    def revocable(cls, user_id: int) -> list[Revocable]:
        """What revoking every token of the user needs, expired ones aside."""
        rows = db.session.execute(
            db.select(cls.jti, cls.expires_at).where(
                cls.user_id == user_id, cls.expires_at > utcnow()
            )
        )
        return [Revocable(jti, expires_at) for jti, expires_at in rows]

    @classmethod
    def forget(cls, user_id: int, jtis: Sequence[str] | None = None) -> None:
        """Delete these tokens of the user (every one without `jtis`); committed
        at once. Their revocation is the revocation store's."""
        statement = db.delete(cls).where(cls.user_id == user_id)
        if jtis is not None:
            statement = statement.where(cls.jti.in_(jtis))
        with write("The API tokens could not be deleted."):
            rows_changed(statement)

    @classmethod
    def record_use(cls, jti: str, coarseness: timedelta) -> None:
        """Set `last_used_at` to now unless it was set less than `coarseness` ago
        (by any worker): one UPDATE in a transaction of its own."""
        now = utcnow()
        with db.engine.begin() as connection:
            connection.execute(
                _record_use_statement(),
                {"token_jti": jti, "now": now, "since": now - coarseness},
            )

    @classmethod
    def purge_expired(cls) -> int:
        """Delete the rows of tokens that have expired; how many went."""
        purged = rows_changed(db.delete(cls).where(cls.expires_at <= utcnow()))
        db.session.commit()
        return purged


@cache
def _record_use_statement() -> Update:
    """Built once: it may run on the request path (at most once a minute a token)."""
    table = cast(Table, ApiTokenModel.__table__)
    return (
        update(table)
        .where(
            table.c.jti == bindparam("token_jti"),
            or_(
                table.c.last_used_at.is_(None),
                table.c.last_used_at < bindparam("since"),
            ),
        )
        .values(last_used_at=bindparam("now"))
    )
