"""contact notes: what the team wrote down about a contact (channel, summary, author)

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import syncd.models

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "contactnote",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("at", syncd.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("contactnote", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contactnote_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_contactnote_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("contactnote", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contactnote_at"))
        batch_op.drop_index(batch_op.f("ix_contactnote_contact_id"))
    op.drop_table("contactnote")
