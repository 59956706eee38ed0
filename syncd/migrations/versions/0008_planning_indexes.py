"""planning indexes: a list's members by contact id, and a target's states by pull time

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("membership", schema=None) as batch_op:
        batch_op.create_index("ix_membership_list_name_contact_id", ["list_name", "contact_id"], unique=False)
    with op.batch_alter_table("targetstate", schema=None) as batch_op:
        batch_op.create_index(
            "ix_targetstate_target_key_list_name_pulled_at",
            ["target_key", "list_name", "pulled_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("targetstate", schema=None) as batch_op:
        batch_op.drop_index("ix_targetstate_target_key_list_name_pulled_at")
    with op.batch_alter_table("membership", schema=None) as batch_op:
        batch_op.drop_index("ix_membership_list_name_contact_id")
