"""a target's record of a contact under a former address, and states by remote id

A change of address learnt from one provider (a webhook, or a read of its list that shows a known
member under a new address) renames the contact in the master base; the other targets still hold
the contact under the former address until the next push renames it there.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("targetstate", schema=None) as batch_op:
        batch_op.add_column(sa.Column("remote_email", sa.String(length=320), nullable=True))
        batch_op.create_index(
            "ix_targetstate_target_key_remote_id", ["target_key", "remote_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("targetstate", schema=None) as batch_op:
        batch_op.drop_index("ix_targetstate_target_key_remote_id")
        batch_op.drop_column("remote_email")
