"""Sessions: one row a login, listed to its user until the session ends.

The id is the session's token family (the `fam` claim of every token of that
login). Rows are written at login and at each refresh, one statement each; the
revocation check of a request never reads them (that is the revocation store's).
"""

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    DateTime,
    ForeignKey,
    String,
    Table,
    Update,
    bindparam,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from core import Model, db
from models.base import bookkeeping_transaction, rows_changed, utcnow

USER_AGENT_LENGTH = 256


class SessionModel(Model):
    """A user's login, as long as its tokens can be refreshed."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When it ends at the latest: idle timeout or absolute cap, whichever is first.
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_LENGTH))
    # As the trusted proxies give it; an IPv6 address has at most 45 characters.
    ip_address: Mapped[str | None] = mapped_column(String(45))
    # When its user last proved who they are in it: the login, or the latest
    # re-authentication (none for rows older than the column: their login).
    authenticated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The newest refresh token's jti, which a re-authentication spends.
    refresh_jti: Mapped[str | None] = mapped_column(String(64))
    # The RFC 7638 thumbprint (SHA-256, 43 characters) of the key its tokens are
    # bound to (their `cnf.jkt`, RFC 9449 §6.1); none for a bearer session.
    dpop_jkt: Mapped[str | None] = mapped_column(String(43))

    def __repr__(self) -> str:
        return f"<SessionModel {self.id} user {self.user_id}>"

    @classmethod
    def start(
        cls,
        session_id: str,
        user_id: int,
        expires_at: datetime,
        user_agent: str | None,
        ip_address: str | None,
        refresh_jti: str,
        dpop_jkt: str | None = None,
    ) -> None:
        """Record a new session (a login), bound to the key `dpop_jkt` names if
        any; committed at once."""
        now = utcnow()
        db.session.add(
            cls(
                id=session_id,
                user_id=user_id,
                created_at=now,
                last_used_at=now,
                expires_at=expires_at,
                user_agent=_truncated(user_agent),
                ip_address=ip_address,
                authenticated_at=now,
                refresh_jti=refresh_jti,
                dpop_jkt=dpop_jkt,
            )
        )
        db.session.commit()

    @classmethod
    def touch(
        cls,
        session_id: str,
        expires_at: datetime,
        user_agent: str | None,
        ip_address: str | None,
        refresh_jti: str,
        *,
        authenticated: bool = False,
    ) -> bool:
        """A refresh: when it was last used, from where, its new end and its newest
        refresh token (a step-up, `authenticated`: and when its user last proved who
        they are). One UPDATE in a bookkeeping transaction of its own (its commit
        does not wait for the disk), on the refresh path: Core and a statement built
        once (the ORM's bulk update cost more than the write). False when there is
        no such row (the session ended meanwhile)."""
        with bookkeeping_transaction() as connection:
            result = connection.execute(
                _touch_statement(authenticated),
                {
                    "session_id": session_id,
                    "now": utcnow(),
                    "expires_at": expires_at,
                    "user_agent": _truncated(user_agent),
                    "ip_address": ip_address,
                    "refresh_jti": refresh_jti,
                },
            )
        return result.rowcount > 0

    @classmethod
    def newest_refresh_token(
        cls, session_id: str
    ) -> tuple[str | None, datetime] | None:
        """The jti of the session's newest refresh token and when it expires (None:
        no such row)."""
        row = db.session.execute(
            db.select(cls.refresh_jti, cls.expires_at).where(cls.id == session_id)
        ).first()
        return None if row is None else (row.refresh_jti, row.expires_at)

    @classmethod
    def of_user(cls, user_id: int) -> Sequence["SessionModel"]:
        """The user's sessions that have not ended, newest first."""
        return db.session.scalars(
            db.select(cls)
            .where(cls.user_id == user_id, cls.expires_at > utcnow())
            .order_by(cls.created_at.desc(), cls.id)
        ).all()

    @classmethod
    def end(cls, user_id: int, session_ids: Sequence[str]) -> None:
        """Forget these sessions of the user (their tokens are revoked elsewhere)."""
        if session_ids:
            rows_changed(
                db.delete(cls).where(cls.user_id == user_id, cls.id.in_(session_ids))
            )
            db.session.commit()

    @classmethod
    def end_all(cls, user_id: int) -> None:
        """Forget every session of the user."""
        rows_changed(db.delete(cls).where(cls.user_id == user_id))
        db.session.commit()

    @classmethod
    def purge_expired(cls) -> int:
        """Delete the rows of sessions that ended by expiry; how many went."""
        purged = rows_changed(db.delete(cls).where(cls.expires_at <= utcnow()))
        db.session.commit()
        return purged


def _truncated(user_agent: str | None) -> str | None:
    return user_agent[:USER_AGENT_LENGTH] if user_agent else None


@cache
def _touch_statement(authenticated: bool) -> Update:
    """Built once each: the refresh path's one write, and a step-up's."""
    table = cast(Table, SessionModel.__table__)
    values: dict[str, Any] = {
        "last_used_at": bindparam("now"),
        "expires_at": bindparam("expires_at"),
        "user_agent": bindparam("user_agent"),
        "ip_address": bindparam("ip_address"),
        "refresh_jti": bindparam("refresh_jti"),
    }
    if authenticated:
        values["authenticated_at"] = bindparam("now")
    return update(table).where(table.c.id == bindparam("session_id")).values(values)
