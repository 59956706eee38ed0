"""inbox purge: when a delivery's body was purged, and deliveries naming an erased address

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import syncd.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inboxevent", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purged_at", syncd.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("names_erased", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_index(
            "ix_inboxevent_purged_at_processed_at", ["purged_at", "processed_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("inboxevent", schema=None) as batch_op:
        batch_op.drop_index("ix_inboxevent_purged_at_processed_at")
        batch_op.drop_column("names_erased")
        batch_op.drop_column("purged_at")
