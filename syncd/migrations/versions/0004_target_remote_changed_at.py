"""the provider's time of a target member's last status change

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 16:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import syncd.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("targetstate", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("remote_changed_at", syncd.models.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("targetstate", schema=None) as batch_op:
        batch_op.drop_column("remote_changed_at")
