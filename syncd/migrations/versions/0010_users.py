"""console users: who may sign in to the team console, with a role and an argon2 password hash

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import syncd.models

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consoleuser",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("password_hash", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("created_at", syncd.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("last_login_at", syncd.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failed_logins", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", syncd.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consoleuser", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consoleuser_email"), ["email"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("consoleuser", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consoleuser_email"))
    op.drop_table("consoleuser")
