"""change tracking for incremental sync

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 08:22:23.016594
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import syncd.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.add_column(sa.Column("touched_at", syncd.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_contact_touched_at"), ["touched_at"], unique=False)

    with op.batch_alter_table("membership", schema=None) as batch_op:
        batch_op.add_column(sa.Column("touched_at", syncd.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_membership_touched_at"), ["touched_at"], unique=False)

    with op.batch_alter_table("synccursor", schema=None) as batch_op:
        batch_op.add_column(sa.Column("planned_at", syncd.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("rules_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(sa.Column("full_plan_at", syncd.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("synccursor", schema=None) as batch_op:
        batch_op.drop_column("full_plan_at")
        batch_op.drop_column("rules_hash")
        batch_op.drop_column("planned_at")

    with op.batch_alter_table("membership", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_membership_touched_at"))
        batch_op.drop_column("touched_at")

    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_touched_at"))
        batch_op.drop_column("touched_at")
