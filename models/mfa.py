"""Second factors: a user's TOTP secret, their recovery codes, and the logins that
wait for a code (`mfa_token`s).

What makes a code single-use lives here as single statements, so it holds on
every worker and instance that shares the database: a TOTP step is spent by an
UPDATE that only moves the last used step forward, a recovery code and an
`mfa_token` by a DELETE that one request alone can win. The secrets and codes
themselves are sealed or hashed by the token layer (auth/factors/) before they
reach these tables.
"""

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    String,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from core import Model, db
from models.base import rows_changed, utcnow


class TotpFactorModel(Model):
    """A user's TOTP secret (RFC 6238): pending until a first code confirms it."""

    __tablename__ = "totp_factors"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # Encrypted (auth/factors/encryption.py): "<key id>:<Fernet token>".
    secret: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The newest 30-second step a code was accepted for (RFC 6238 §5.2: never
    # the same code twice); a code of this step or an older one is refused.
    last_step: Mapped[int | None] = mapped_column(BigInteger)

    @classmethod
    def of(cls, user_id: int) -> "TotpFactorModel | None":
        """The user's factor, confirmed or pending."""
        return db.session.get(cls, user_id)

    @classmethod
    def spend_step(
        cls, user_id: int, step: int, sealed_secret: str, *, pending: bool = False
    ) -> bool:
        """Record that a code of `step` of this secret was used, unless this step
        or a newer one was already: True for the one request that moved it
        forward (a secret replaced meanwhile is not this one; with `pending`, a
        secret confirmed meanwhile is not pending)."""
        conditions = [
            cls.user_id == user_id,
            cls.secret == sealed_secret,
            (cls.last_step.is_(None)) | (cls.last_step < step),
        ]
        if pending:
            conditions.append(cls.confirmed_at.is_(None))
        statement = (
            update(cls)
            .where(*conditions)
            .values(last_step=step)
            .execution_options(synchronize_session=False)
        )
        return rows_changed(statement) == 1


class RecoveryCodeModel(Model):
    """One single-use recovery code of a user, as a hash."""

    __tablename__ = "recovery_codes"
    __table_args__ = (
        Index("uq_recovery_codes_user_hash", "user_id", "code_hash", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )

    @classmethod
    def count_left(cls, user_id: int) -> int:
        """How many of the user's recovery codes are unused."""
        statement = select(func.count()).where(cls.user_id == user_id)
        return db.session.scalar(statement) or 0

    @classmethod
    def spend(cls, user_id: int, code_hash: str) -> bool:
        """Use up one code: True for the one request whose DELETE took it."""
        statement = delete(cls).where(
            cls.user_id == user_id, cls.code_hash == code_hash
        )
        return rows_changed(statement) == 1

    @classmethod
    def replace(cls, user_id: int, code_hashes: list[str]) -> None:
        """The user's codes become these (the old ones die), in the caller's
        transaction."""
        # One replacement at a time per user: side by side, each DELETE would
        # miss the codes the other inserts, and every set would stay valid.
        db.session.execute(
            select(TotpFactorModel.user_id)
            .where(TotpFactorModel.user_id == user_id)
            .with_for_update()
        )
        db.session.execute(delete(cls).where(cls.user_id == user_id))
        db.session.add_all(cls(user_id=user_id, code_hash=h) for h in code_hashes)


class MfaTokenModel(Model):
    """A login whose password was right and that waits for a second factor."""

    __tablename__ = "mfa_tokens"

    # SHA-256 of the opaque token: the database never holds a usable one.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # Attempts at a code so far, each counted before its code is checked (a
    # right code ends the waiting login, so all but the last were wrong); at
    # the limit the waiting login takes no more.
    failures: Mapped[int] = mapped_column(default=0)
    # How /login was asked to deliver the tokens: "body" or "cookie".
    token_delivery: Mapped[str] = mapped_column(String(8))

    @classmethod
    def find_live(cls, token_hash: str) -> "MfaTokenModel | None":
        """The waiting login, unless it expired."""
        statement = select(cls).where(cls.id == token_hash, cls.expires_at > utcnow())
        return db.session.scalar(statement)

    @classmethod
    def spend(cls, token_hash: str) -> bool:
        """End the waiting login: True for the one request whose DELETE took it."""
        return rows_changed(delete(cls).where(cls.id == token_hash)) == 1

    @classmethod
    def take_attempt(cls, token_hash: str, limit: int) -> bool:
        """Count one attempt at a code, before it is checked: True unless `limit`
        were counted already (or the login expired). One UPDATE, so requests
        side by side, on any workers, get `limit` attempts between them."""
        statement = (
            update(cls)
            .where(
                cls.id == token_hash, cls.failures < limit, cls.expires_at > utcnow()
            )
            .values(failures=cls.failures + 1)
            .execution_options(synchronize_session=False)
        )
        return rows_changed(statement) == 1

    @classmethod
    def end_all(cls, user_id: int) -> None:
        """End every login of the user that waits for a code, in the caller's
        transaction (the password they proved has changed)."""
        db.session.execute(delete(cls).where(cls.user_id == user_id))

    @classmethod
    def purge_expired(cls) -> int:
        """Delete waiting logins past their expiry (their tokens are refused)."""
        statement = delete(cls).where(cls.expires_at <= utcnow())
        return rows_changed(statement)
