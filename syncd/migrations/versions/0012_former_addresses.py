"""a contact's former addresses, by hash: a provider's event about the address a contact had
before a change of address still reaches that contact

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import syncd.models

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "formeraddress",
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("until", syncd.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("email_hash"),
    )
    with op.batch_alter_table("formeraddress", schema=None) as batch_op:
        batch_op.create_index("ix_formeraddress_contact_id", ["contact_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("formeraddress", schema=None) as batch_op:
        batch_op.drop_index("ix_formeraddress_contact_id")
    op.drop_table("formeraddress")
