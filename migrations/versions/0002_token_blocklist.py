"""Revocation store table for BLOCKLIST_BACKEND=database.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "token_blocklist",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", name=op.f("pk_token_blocklist")),
    )
    op.create_index(
        op.f("ix_token_blocklist_expires_at"),
        "token_blocklist",
        ["expires_at"],
        unique=False,
    )


def downgrade():
    op.drop_index(op.f("ix_token_blocklist_expires_at"), table_name="token_blocklist")
    op.drop_table("token_blocklist")
