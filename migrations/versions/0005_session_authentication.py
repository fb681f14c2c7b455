"""Sessions remember when their user last authenticated and their newest refresh
token: a re-authentication (POST /reauthenticate) refreshes the session's proof
and spends that token, as a refresh does.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(
            sa.Column("authenticated_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("refresh_jti", sa.String(length=64), nullable=True))
    # A session's login is when its user last authenticated, until a step-up.
    op.execute("UPDATE sessions SET authenticated_at = created_at")


def downgrade():
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("refresh_jti")
        batch.drop_column("authenticated_at")
