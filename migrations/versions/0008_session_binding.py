"""Sessions remember the key their tokens are bound to (RFC 9449 DPoP), so the
list of sessions shows which are bound.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    # Sessions that began before the column stay unmarked (null) until their next
    # login: their tokens still carry the binding, which is what is enforced.
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("dpop_jkt", sa.String(length=43), nullable=True))


def downgrade():
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("dpop_jkt")
