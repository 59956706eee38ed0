"""doi delivery state: a link whose mail failed is kept, retried with back-off, then dead

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import syncd.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("doitoken", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "delivery",
                sqlmodel.sql.sqltypes.AutoString(length=8),
                nullable=False,
                server_default="sent",
            )
        )
        batch_op.add_column(sa.Column("retry_at", syncd.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True))
        batch_op.create_index(batch_op.f("ix_doitoken_delivery"), ["delivery"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("doitoken", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_doitoken_delivery"))
        batch_op.drop_column("error")
        batch_op.drop_column("retry_at")
        batch_op.drop_column("delivery")
