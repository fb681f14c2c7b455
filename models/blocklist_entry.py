"""Rows of the `database` revocation store (see blocklist.py)."""

from sqlalchemy import Double, String
from sqlalchemy.orm import Mapped, mapped_column

from core import Model


class BlocklistEntryModel(Model):
    """A revoked token, revoked family, per-user mark or rotation mark."""

    __tablename__ = "token_blocklist"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    # Epoch seconds; the row is useless (and purged) after this.
    expires_at: Mapped[float] = mapped_column(Double, index=True)
