"""master base

Revision ID: 0001
Revises:
Create Date: 2026-11-25 07:57:22.036214
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import syncd.models

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auditlog",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", syncd.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("auditlog", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auditlog_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_auditlog_contact_id"), ["contact_id"], unique=False)

    op.create_table(
        "contact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("email_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("first_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("last_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("phone", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("company", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("siret", sqlmodel.sql.sqltypes.AutoString(length=14), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("stage", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("country", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=True),
        sa.Column("region", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("city", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("postal_code", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("global_opt_out", sa.Boolean(), nullable=False),
        sa.Column("opt_out_reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("opt_out_at", syncd.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", syncd.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", syncd.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contact_email"), ["email"], unique=True)
        batch_op.create_index(batch_op.f("ix_contact_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_contact_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "inboxevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("dedupe_key", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("content_type", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("received_at", syncd.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", syncd.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("processed_at", syncd.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    with op.batch_alter_table("inboxevent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inboxevent_status"), ["status"], unique=False)

    op.create_table(
        "synccursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("target_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("cursor", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("updated_at", syncd.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("list_name", "target_key"),
    )
    op.create_table(
        "syncrun",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("target_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("started_at", syncd.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", syncd.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("syncrun", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_syncrun_list_name"), ["list_name"], unique=False)

    op.create_table(
        "tombstone",
        sa.Column("email_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("forgotten_at", syncd.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email_hash"),
    )
    op.create_table(
        "consent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("list_name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("at", syncd.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ip", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("user_agent", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("wording", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consent_contact_id"), ["contact_id"], unique=False)

    op.create_table(
        "flag",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("email_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("list_name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("target_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("detected_at", syncd.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", syncd.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("flag", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_flag_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_flag_list_name"), ["list_name"], unique=False)
        batch_op.create_index(batch_op.f("ix_flag_resolved_at"), ["resolved_at"], unique=False)

    op.create_table(
        "membership",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("list_name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("since", syncd.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("contact_id", "list_name"),
    )
    with op.batch_alter_table("membership", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_membership_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_membership_list_name"), ["list_name"], unique=False)

    op.create_table(
        "source",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("row", sa.Integer(), nullable=True),
        sa.Column("at", syncd.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("source", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_source_contact_id"), ["contact_id"], unique=False)

    op.create_table(
        "targetstate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("list_name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("target_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("remote_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("pushed_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("remote_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("pushed_at", syncd.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("pulled_at", syncd.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("target_key", "list_name", "contact_id"),
    )
    with op.batch_alter_table("targetstate", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_targetstate_contact_id"), ["contact_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("targetstate", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_targetstate_contact_id"))

    op.drop_table("targetstate")
    with op.batch_alter_table("source", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_source_contact_id"))

    op.drop_table("source")
    with op.batch_alter_table("membership", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_membership_list_name"))
        batch_op.drop_index(batch_op.f("ix_membership_contact_id"))

    op.drop_table("membership")
    with op.batch_alter_table("flag", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flag_resolved_at"))
        batch_op.drop_index(batch_op.f("ix_flag_list_name"))
        batch_op.drop_index(batch_op.f("ix_flag_contact_id"))

    op.drop_table("flag")
    with op.batch_alter_table("consent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_contact_id"))

    op.drop_table("consent")
    op.drop_table("tombstone")
    with op.batch_alter_table("syncrun", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_syncrun_list_name"))

    op.drop_table("syncrun")
    op.drop_table("synccursor")
    with op.batch_alter_table("inboxevent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inboxevent_status"))

    op.drop_table("inboxevent")
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_updated_at"))
        batch_op.drop_index(batch_op.f("ix_contact_kind"))
        batch_op.drop_index(batch_op.f("ix_contact_email"))

    op.drop_table("contact")
    with op.batch_alter_table("auditlog", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auditlog_contact_id"))
        batch_op.drop_index(batch_op.f("ix_auditlog_at"))

    op.drop_table("auditlog")
