"""change tracking by transaction on PostgreSQL: which transaction last wrote each row a plan reads

An incremental plan on PostgreSQL selects the rows written by the transactions its previous plan's
snapshot could not see (``sync.select``), instead of the rows touched since a wall-clock margin
before it: a write whose transaction stayed open for any time is still planned, and the run right
after a first push looks at none of the contacts imported before it. Set by the database itself
(column default and trigger on insert, trigger on update), so that no write path can forget it; a target
state records the transaction of its last read from the target (``pulled_at``) only. SQLite (one
writer at a time) keeps the wall-clock window: the columns stay empty there.

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The writing transaction's id, 64 bits (epoch included: never wraps around).
XID = "(pg_current_xact_id()::text::bigint)"


def upgrade() -> None:
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.add_column(sa.Column("touched_xid", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("membership", schema=None) as batch_op:
        batch_op.add_column(sa.Column("touched_xid", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("targetstate", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pulled_xid", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("synccursor", schema=None) as batch_op:
        batch_op.add_column(sa.Column("planned_snapshot", sa.Text(), nullable=True))
    if op.get_bind().dialect.name != "postgresql":
        return
    # Partial indexes: rows written before this revision hold no transaction and are never looked up.
    op.create_index(
        "ix_contact_touched_xid",
        "contact",
        ["touched_xid"],
        postgresql_where=sa.text("touched_xid IS NOT NULL"),
    )
    op.create_index(
        "ix_membership_touched_xid",
        "membership",
        ["touched_xid"],
        postgresql_where=sa.text("touched_xid IS NOT NULL"),
    )
    op.create_index(
        "ix_targetstate_target_key_list_name_pulled_xid",
        "targetstate",
        ["target_key", "list_name", "pulled_xid"],
        postgresql_where=sa.text("pulled_xid IS NOT NULL"),
    )
    for table in ("contact", "membership"):
        op.execute(f"ALTER TABLE {table} ALTER COLUMN touched_xid SET DEFAULT {XID}")
    for column in ("touched_xid", "pulled_xid"):
        op.execute(
            f"""
            CREATE FUNCTION syncd_{column}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                NEW.{column} := {XID};
                RETURN NEW;
            END $$
            """
        )
    for table in ("contact", "membership"):
        op.execute(
            f"CREATE TRIGGER {table}_touched_xid BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION syncd_touched_xid()"
        )
        # An insert that names the column (the ORM sends NULL for an unset attribute) gets it too;
        # one that leaves it out (COPY, bulk inserts) gets the default without calling the trigger.
        op.execute(
            f"CREATE TRIGGER {table}_touched_xid_insert BEFORE INSERT ON {table} "
            "FOR EACH ROW WHEN (NEW.touched_xid IS NULL) EXECUTE FUNCTION syncd_touched_xid()"
        )
    op.execute(
        "CREATE TRIGGER targetstate_pulled_xid_insert BEFORE INSERT ON targetstate "
        "FOR EACH ROW WHEN (NEW.pulled_at IS NOT NULL) EXECUTE FUNCTION syncd_pulled_xid()"
    )
    op.execute(
        "CREATE TRIGGER targetstate_pulled_xid_update BEFORE UPDATE ON targetstate "
        "FOR EACH ROW WHEN (NEW.pulled_at IS DISTINCT FROM OLD.pulled_at) EXECUTE FUNCTION syncd_pulled_xid()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS targetstate_pulled_xid_update ON targetstate")
        op.execute("DROP TRIGGER IF EXISTS targetstate_pulled_xid_insert ON targetstate")
        for table in ("membership", "contact"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_touched_xid_insert ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_touched_xid ON {table}")
        op.execute("DROP FUNCTION IF EXISTS syncd_pulled_xid()")
        op.execute("DROP FUNCTION IF EXISTS syncd_touched_xid()")
        op.drop_index("ix_targetstate_target_key_list_name_pulled_xid", table_name="targetstate")
        op.drop_index("ix_membership_touched_xid", table_name="membership")
        op.drop_index("ix_contact_touched_xid", table_name="contact")
    with op.batch_alter_table("synccursor", schema=None) as batch_op:
        batch_op.drop_column("planned_snapshot")
    with op.batch_alter_table("targetstate", schema=None) as batch_op:
        batch_op.drop_column("pulled_xid")
    with op.batch_alter_table("membership", schema=None) as batch_op:
        batch_op.drop_column("touched_xid")
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.drop_column("touched_xid")
