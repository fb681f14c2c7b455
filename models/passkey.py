"""Passkeys (WebAuthn credentials) and the challenges of their ceremonies.

What makes a ceremony single-use lives here as single statements, so it holds on
every worker and instance that shares the database: a challenge is spent by a
DELETE that one request alone can win, and a passkey's signature counter only
moves forward, by an UPDATE that checks the value it read.
"""

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    LargeBinary,
    String,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from core import Model, db
from models.base import rows_changed, utcnow

# WebAuthn §5.8.3: a credential id is at most 1023 bytes; a user handle 64.
MAX_CREDENTIAL_ID_BYTES = 1023
MAX_USER_HANDLE_BYTES = 64
MAX_PASSKEY_NAME = 80  # as every name (core.fields.Name)


class PasskeyModel(Model):
    """A user's passkey: the public key of a credential an authenticator holds."""

    __tablename__ = "passkeys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    credential_id: Mapped[bytes] = mapped_column(
        LargeBinary(MAX_CREDENTIAL_ID_BYTES), unique=True
    )
    # COSE_Key (RFC 9052 §7), as the authenticator attested it.
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    # The account's WebAuthn user handle (random, never the user id: §14.6.1).
    user_handle: Mapped[bytes] = mapped_column(LargeBinary(MAX_USER_HANDLE_BYTES))
    # The authenticator's signature counter (§6.1.1); 0 for one that never counts.
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    name: Mapped[str] = mapped_column(String(MAX_PASSKEY_NAME))
    aaguid: Mapped[str] = mapped_column(String(36))
    transports: Mapped[str] = mapped_column(String(255), default="")
    # Backup eligible (§6.1, flag BE): a synced, multi-device passkey.
    backup_eligible: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @classmethod
    def of_user(cls, user_id: int) -> list["PasskeyModel"]:
        """The user's passkeys, oldest first."""
        statement = select(cls).where(cls.user_id == user_id).order_by(cls.id)
        return list(db.session.scalars(statement))

    @classmethod
    def count_of(cls, user_id: int) -> int:
        """How many passkeys the user has."""
        statement = select(func.count()).where(cls.user_id == user_id)
        return db.session.scalar(statement) or 0

    @classmethod
    def find_by_credential(cls, credential_id: bytes) -> "PasskeyModel | None":
        """The passkey of this credential id, whoever's it is."""
        statement = select(cls).where(cls.credential_id == credential_id)
        return db.session.scalar(statement)

    @classmethod
    def find_for(cls, user_id: int, passkey_id: int) -> "PasskeyModel | None":
        """The user's passkey with this id (another user's is None)."""
        statement = select(cls).where(cls.id == passkey_id, cls.user_id == user_id)
        return db.session.scalar(statement)

    @classmethod
    def record_use(cls, passkey_id: int, seen: int, new_count: int) -> bool:
        """Move the counter from `seen` (what the check read) to `new_count` and
        note the use, in the caller's transaction: False when another request
        moved it meanwhile (one assertion of two side by side wins)."""
        statement = (
            update(cls)
            .where(cls.id == passkey_id, cls.sign_count == seen)
            .values(sign_count=new_count, last_used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return rows_changed(statement) == 1


class WebAuthnChallengeModel(Model):
    """A ceremony's challenge (§13.4.3): random, for one purpose, single-use."""

    __tablename__ = "webauthn_challenges"

    # SHA-256 of the challenge: what the browser signs names it.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # "register", "login" or "step_up": a challenge serves its own ceremony only.
    purpose: Mapped[str] = mapped_column(String(16))
    # Who asked: the account registering or stepping up (or named at a login).
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # The session a step-up is for (its `fam`).
    family: Mapped[str | None] = mapped_column(String(64))
    # At a registration: the user handle the new credential is created under.
    user_handle: Mapped[bytes | None] = mapped_column(
        LargeBinary(MAX_USER_HANDLE_BYTES)
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)

    @classmethod
    def find_live(cls, challenge_hash: str) -> "WebAuthnChallengeModel | None":
        """The challenge, unless it expired."""
        statement = select(cls).where(
            cls.id == challenge_hash, cls.expires_at > utcnow()
        )
        return db.session.scalar(statement)

    @classmethod
    def spend(cls, challenge_hash: str) -> bool:
        """Use the challenge up: True for the one request whose DELETE took it."""
        return rows_changed(delete(cls).where(cls.id == challenge_hash)) == 1

    @classmethod
    def end_all(cls, user_id: int) -> None:
        """Drop the user's ceremonies in flight, in the caller's transaction."""
        db.session.execute(delete(cls).where(cls.user_id == user_id))

    @classmethod
    def purge_expired(cls) -> int:
        """Delete challenges past their expiry (they are refused anyway)."""
        return rows_changed(delete(cls).where(cls.expires_at <= utcnow()))
