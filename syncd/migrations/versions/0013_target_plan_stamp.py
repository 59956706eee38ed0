"""per-target change tracking: what the last stored plan of a contact on a target read of it

An incremental plan selects the contacts touched since shortly before the previous plan (a margin
for writes whose transaction was still open then), and skips those whose stamp is unchanged: a
contact planned and stored by the previous run is not planned again for nothing.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("targetstate", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan_stamp", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("targetstate", schema=None) as batch_op:
        batch_op.drop_column("plan_stamp")
