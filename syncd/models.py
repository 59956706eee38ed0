"""The master base: SQLModel tables (DESIGN §3). Schema changes go through Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in Python, whatever the backend keeps (SQLite has no time zones)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the master base: use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _when(*, nullable: bool = False, index: bool = False, default: bool = False) -> Any:
    return Field(
        default_factory=utcnow if default else None,
        sa_type=UTCDateTime,
        nullable=nullable,
        index=index,
    )


def _json(default: Any) -> Any:
    return Field(default_factory=lambda: type(default)(), sa_type=sa.JSON, nullable=False)


class EmailStatus(StrEnum):
    UNKNOWN = "unknown"
    VALID = "valid"
    INVALID = "invalid"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class MembershipStatus(StrEnum):
    PENDING = "pending"  # awaiting double opt-in
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"  # from this list only
    CLEANED = "cleaned"


class ConsentAction(StrEnum):
    OPT_IN = "opt_in"
    DOI_REQUESTED = "doi_requested"
    DOI_CONFIRMED = "doi_confirmed"
    OPT_OUT = "opt_out"
    COMPLAINT = "complaint"
    PROVIDER_EVIDENCE = "provider_evidence"


class Contact(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)
    email_status: str = Field(default=EmailStatus.VALID, max_length=16)
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=32)
    company: str | None = Field(default=None, max_length=300)
    siret: str | None = Field(default=None, max_length=14)
    kind: str | None = Field(default=None, max_length=40, index=True)
    stage: str | None = Field(default=None, max_length=40)
    tags: list[str] = _json([])
    country: str | None = Field(default=None, max_length=2)
    region: str | None = Field(default=None, max_length=100)
    city: str | None = Field(default=None, max_length=200)
    postal_code: str | None = Field(default=None, max_length=20)
    attributes: dict[str, Any] = _json({})
    global_opt_out: bool = Field(default=False)
    opt_out_reason: str | None = Field(default=None, max_length=200)
    opt_out_at: datetime | None = _when(nullable=True)
    created_at: datetime = _when(default=True)
    updated_at: datetime = _when(default=True, index=True)
    version: int = Field(default=1)
    # Wall-clock time of the last write, whatever the change's own time: what incremental sync
    # planning compares with (``updated_at`` may carry an older provider event's time).
    touched_at: datetime | None = _when(nullable=True, index=True, default=True)
    # PostgreSQL: the transaction that last wrote the row, set by the database (migration 0014);
    # what an incremental plan selects by (``sync.select``). Empty on SQLite.
    touched_xid: int | None = Field(default=None, sa_type=sa.BigInteger)


class Source(SQLModel, table=True):
    """Provenance: where a contact came from. Many per contact."""

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True, ondelete="CASCADE")
    channel: str = Field(max_length=100)
    detail: str | None = Field(default=None, max_length=500)  # file name, request, provider target
    row: int | None = None
    at: datetime = _when(default=True)


class Consent(SQLModel, table=True):
    """Append-only proof of consent and its withdrawal."""

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True, ondelete="CASCADE")
    list_name: str | None = Field(default=None, max_length=100)  # None: every list
    action: str = Field(max_length=32)
    at: datetime = _when(default=True)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=500)
    source: str | None = Field(default=None, max_length=200)
    wording: str | None = Field(default=None, max_length=100)
    token_hash: str | None = Field(default=None, max_length=64)
    evidence: dict[str, Any] = _json({})


class Membership(SQLModel, table=True):
    __table_args__ = (
        sa.UniqueConstraint("contact_id", "list_name"),
        # A full plan reads a list's members in contact order (``sync.select``).
        sa.Index("ix_membership_list_name_contact_id", "list_name", "contact_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True, ondelete="CASCADE")
    list_name: str = Field(max_length=100, index=True)
    status: str = Field(max_length=16)
    since: datetime = _when(default=True)
    reason: str | None = Field(default=None, max_length=200)
    touched_at: datetime | None = _when(nullable=True, index=True, default=True)
    touched_xid: int | None = Field(default=None, sa_type=sa.BigInteger)  # as Contact's


class TargetState(SQLModel, table=True):
    """What syncd last pushed for one membership on one provider target."""

    __table_args__ = (
        sa.UniqueConstraint("target_key", "list_name", "contact_id"),
        # An incremental plan reads what was just pulled from its target (``sync.select``).
        sa.Index("ix_targetstate_target_key_list_name_pulled_at", "target_key", "list_name", "pulled_at"),
        # A read that shows a member under an address the base does not hold looks its id up here.
        sa.Index("ix_targetstate_target_key_remote_id", "target_key", "remote_id"),
        # A push looks for the record a target sharing it holds under a former address (migration 0015).
        sa.Index(
            "ix_targetstate_target_key_former",
            "target_key",
            "contact_id",
            postgresql_where=sa.text("remote_email IS NOT NULL"),
            sqlite_where=sa.text("remote_email IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True, ondelete="CASCADE")
    list_name: str = Field(max_length=100)
    target_key: str = Field(max_length=200)
    remote_id: str | None = Field(default=None, max_length=100)
    # The address the target holds the contact under, when the master base has renamed the contact
    # since (a change of address learnt from another provider): the next push renames it there.
    remote_email: str | None = Field(default=None, max_length=320)
    pushed_hash: str | None = Field(default=None, max_length=64)
    remote_status: str | None = Field(default=None, max_length=16)
    # The provider's own time of the change to ``remote_status`` (RemoteMember.changed_at): tells a
    # provider-side unsubscribe newer than the master base's opt-in from an older one.
    remote_changed_at: datetime | None = _when(nullable=True)
    pushed_at: datetime | None = _when(nullable=True)
    pulled_at: datetime | None = _when(nullable=True)
    # PostgreSQL: the transaction that last moved ``pulled_at`` (set by the database, as
    # ``Contact.touched_xid``).
    pulled_xid: int | None = Field(default=None, sa_type=sa.BigInteger)
    # What the last plan that covered this contact on this target read of it (``sync.stamps.stamp``),
    # once its outcome was stored: an incremental plan skips the contact while the stamp holds.
    plan_stamp: str | None = Field(default=None, max_length=32)


class SyncCursor(SQLModel, table=True):
    """The incremental-read bookmark of one list on one target."""

    __table_args__ = (sa.UniqueConstraint("list_name", "target_key"),)

    id: int | None = Field(default=None, primary_key=True)
    list_name: str = Field(max_length=100)
    target_key: str = Field(max_length=200)
    cursor: str | None = Field(default=None, max_length=100)
    updated_at: datetime = _when(default=True)
    # Incremental planning: when the last complete plan started, under which list rules, and
    # when the last full (not incremental) plan ran.
    planned_at: datetime | None = _when(nullable=True)
    rules_hash: str | None = Field(default=None, max_length=64)
    full_plan_at: datetime | None = _when(nullable=True)
    # PostgreSQL: the snapshot taken as the last complete plan started (``pg_current_snapshot``):
    # the next plan selects the rows written by transactions it could not see.
    planned_snapshot: str | None = Field(default=None, sa_type=sa.Text)


class Flag(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    contact_id: int | None = Field(default=None, foreign_key="contact.id", index=True, ondelete="CASCADE")
    email_hash: str | None = Field(default=None, max_length=64)  # a remote member unknown to the base
    list_name: str = Field(max_length=100, index=True)
    target_key: str | None = Field(default=None, max_length=200)
    rule: str = Field(max_length=40)
    detail: str | None = Field(default=None, max_length=500)
    detected_at: datetime = _when(default=True)
    resolved_at: datetime | None = _when(nullable=True, index=True)


class InboxEvent(SQLModel, table=True):
    """A webhook delivery, committed before it is acknowledged. The raw body is kept for replay
    until the retention ends (``inbox.retention`` after it was applied), then purged: the row stays,
    so that a redelivery is still recognised as a duplicate."""

    __table_args__ = (sa.Index("ix_inboxevent_purged_at_processed_at", "purged_at", "processed_at"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=20)
    dedupe_key: str = Field(max_length=128, unique=True)
    content_type: str = Field(max_length=100)
    payload: str = Field(sa_type=sa.Text)
    received_at: datetime = _when(default=True)
    status: str = Field(default="new", max_length=12, index=True)  # new | done | ignored | dead
    attempts: int = Field(default=0)
    next_attempt_at: datetime | None = _when(nullable=True)
    processed_at: datetime | None = _when(nullable=True)
    error: str | None = Field(default=None, sa_type=sa.Text)
    # Keys of the delivery's events already applied: a retry applies only the others.
    applied_keys: list[str] | None = Field(default=None, sa_type=sa.JSON, nullable=True)
    purged_at: datetime | None = _when(nullable=True)  # when the body was blanked (retention, erasure)
    # The delivery names an erased address: its body is purged as soon as it is applied.
    names_erased: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


class SyncRun(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    list_name: str = Field(max_length=100, index=True)
    target_key: str | None = Field(default=None, max_length=200)
    started_at: datetime = _when(default=True)
    finished_at: datetime | None = _when(nullable=True)
    status: str = Field(default="running", max_length=12)  # running | ok | failed | interrupted
    counts: dict[str, Any] = _json({})
    error: str | None = Field(default=None, sa_type=sa.Text)


class AuditLog(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _when(default=True, index=True)
    actor: str = Field(max_length=100)  # "import", "sync:<list>", "webhook:brevo", "cli:<os user>", ...
    action: str = Field(max_length=60)
    contact_id: int | None = Field(default=None, index=True)
    detail: dict[str, Any] = _json({})


class FormerAddress(SQLModel, table=True):
    """An address a contact had before a change of address (its hash only): a provider's event
    about it, delivered late, still reaches the contact."""

    email_hash: str = Field(primary_key=True, max_length=64)
    contact_id: int = Field(foreign_key="contact.id", index=True, ondelete="CASCADE")
    until: datetime = _when(default=True)


class Tombstone(SQLModel, table=True):
    """An erased contact: only an irreversible hash, so the address is never re-imported or re-synced."""

    email_hash: str = Field(primary_key=True, max_length=64)
    forgotten_at: datetime = _when(default=True)


class DoiToken(SQLModel, table=True):
    """One double-opt-in confirmation link. Only the token's hash is kept; the link is single-use."""

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True, ondelete="CASCADE")
    list_name: str = Field(max_length=100, index=True)
    token_hash: str = Field(max_length=64, unique=True)
    wording: str = Field(max_length=100)  # template name and version the contact was shown
    created_at: datetime = _when(default=True)
    expires_at: datetime = _when(index=True)
    used_at: datetime | None = _when(nullable=True)
    reminded_at: datetime | None = _when(nullable=True)
    # sent · failed (its mail could not go out: the request is mailed again from retry_at) ·
    # dead (syncd gave up: a permanent refusal, or every attempt failed). Only a sent link works.
    delivery: str = Field(
        default="sent", max_length=8, index=True, sa_column_kwargs={"server_default": "sent"}
    )
    retry_at: datetime | None = _when(nullable=True)
    error: str | None = Field(default=None, max_length=500)


class Role(StrEnum):
    """A console user's role, from least to most allowed (``syncd.users.authorise``)."""

    READ_ONLY = "read-only"
    STANDARD = "standard"
    ADMIN = "admin"


class ConsoleUser(SQLModel, table=True):
    """Someone who may sign in to the team console. Only an argon2 hash of the password is kept.
    (Not ``user``: a reserved word on PostgreSQL.)"""

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)  # lower-cased, validated
    role: str = Field(max_length=16)
    password_hash: str = Field(max_length=255)
    created_at: datetime = _when(default=True)
    disabled: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    last_login_at: datetime | None = _when(nullable=True)
    # Login throttling: failures in a row, and until when sign-in is refused after too many.
    failed_logins: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    locked_until: datetime | None = _when(nullable=True)


@sa.event.listens_for(sa.orm.Session, "before_flush")
def _touch_changed_rows(session: sa.orm.Session, _context: Any, _instances: Any) -> None:
    """Every ORM write of a contact or a membership stamps ``touched_at`` with the wall clock."""
    now = utcnow()
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, Contact | Membership):
            obj.touched_at = now


class NoteChannel(StrEnum):
    """How the team was in touch with a contact, for a note (``syncd.notes``)."""

    PHONE = "phone"
    EMAIL = "email"
    MEETING = "meeting"
    FAIR = "fair"
    OTHER = "other"


NOTE_MAX_CHARS = 2000


class Note(SQLModel, table=True):
    """What the team wrote down about a contact (a call, a meeting at a fair): personal data, so
    erased and exported with the contact (``syncd.contacts.gdpr``). The audit trail only says a
    note was added, never what it says."""

    __tablename__ = "contactnote"

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True, ondelete="CASCADE")
    at: datetime = _when(default=True, index=True)
    channel: str = Field(max_length=16)
    summary: str = Field(sa_type=sa.Text)
    author: str = Field(max_length=100)  # "cli:<os user>", "console:<user email>"
