"""the target states that hold a contact under a former address, found without a scan

A push to a provider target the contact has no state on yet (a Brevo list, a Mailchimp tag) looks
for the provider record another target shares under the contact's former address, to rename that
record instead of adding a second one beside it (``sync.writer``). Few rows hold a former address
at any time: a partial index finds them.

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = "remote_email IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        "ix_targetstate_target_key_former",
        "targetstate",
        ["target_key", "contact_id"],
        postgresql_where=sa.text(WHERE),
        sqlite_where=sa.text(WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_targetstate_target_key_former", table_name="targetstate")
