"""double opt-in tokens

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import syncd.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "doitoken",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("list_name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("wording", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("created_at", syncd.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", syncd.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", syncd.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reminded_at", syncd.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("doitoken", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_doitoken_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_doitoken_list_name"), ["list_name"], unique=False)
        batch_op.create_index(batch_op.f("ix_doitoken_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("doitoken", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_doitoken_expires_at"))
        batch_op.drop_index(batch_op.f("ix_doitoken_list_name"))
        batch_op.drop_index(batch_op.f("ix_doitoken_contact_id"))
    op.drop_table("doitoken")
