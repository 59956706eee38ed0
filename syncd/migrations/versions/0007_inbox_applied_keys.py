"""inbox: keys of the events of a delivery already applied

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 16:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inboxevent", schema=None) as batch_op:
        batch_op.add_column(sa.Column("applied_keys", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inboxevent", schema=None) as batch_op:
        batch_op.drop_column("applied_keys")
