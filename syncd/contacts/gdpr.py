"""GDPR rights on one contact: access (everything held, as plain data) and erasure.

Erasure deletes the contact and every row attached to it, scrubs personal data from the audit
trail and the webhook inbox (``syncd.inbox_purge``), and keeps a ``Tombstone`` (a SHA-256 of the
address only), so that a later import or sync of the same address is refused and no consent comes
back with it.

An address no contact holds now may be a former address of one (a change of address followed from a
provider): access and erasure then name the contact's address now instead of answering "nothing
held", and neither discloses nor erases that contact on the former address's word alone (it may be
someone else's by now): the team checks the request and asks again under the address named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from syncd.contacts.qualify import InvalidEmail, normalise_email
from syncd.db import email_hash, erased_among, session_scope
from syncd.inbox_purge import Parse, scrub_address
from syncd.models import (
    AuditLog,
    Consent,
    Contact,
    Flag,
    FormerAddress,
    Membership,
    Note,
    Source,
    TargetState,
    Tombstone,
    utcnow,
)

ATTACHED = (Source, Consent, Membership, TargetState, Flag, Note, FormerAddress)
SCRUBBED = {"scrubbed": "erased at the contact's request"}


def lookup_email(raw: str) -> str:
    """The key an address has in the master base (a malformed one is still trimmed and lower-cased)."""
    try:
        return normalise_email(raw)
    except InvalidEmail:
        return raw.strip().lower()


def find_contact(session: Session, email: str) -> Contact | None:
    return session.exec(select(Contact).where(Contact.email == lookup_email(email))).first()


@dataclass(frozen=True)
class FormerHolder:
    """The contact that had an address before a change of address: its address now, and when."""

    email: str
    until: datetime


def _former_holder(session: Session, address: str) -> FormerHolder | None:
    row = session.get(FormerAddress, email_hash(address))
    contact = session.get(Contact, row.contact_id) if row is not None else None
    return FormerHolder(contact.email, row.until) if contact is not None and row is not None else None


def former_holder(engine: Engine, email: str) -> FormerHolder | None:
    """When no contact holds ``email`` now, the contact that held it before a change of address."""
    address = lookup_email(email)
    with Session(engine) as session:
        if find_contact(session, address) is not None:
            return None
        return _former_holder(session, address)


def is_forgotten(session: Session, email: str) -> bool:
    return bool(erased_among(session, [lookup_email(email)]))


def contact_record(session: Session, contact: Contact) -> dict[str, Any]:
    """Everything the master base holds about ``contact``, as JSON-ready data."""
    record: dict[str, Any] = {"contact": _plain(contact)}
    for model, key in (
        (Source, "sources"),
        (Consent, "consents"),
        (Membership, "memberships"),
        (TargetState, "target_states"),
        (Flag, "flags"),
        (Note, "notes"),
    ):
        rows = session.exec(select(model).where(model.contact_id == contact.id).order_by(model.id)).all()
        record[key] = [_plain(r, drop=("contact_id",)) for r in rows]
    audit = session.exec(
        select(AuditLog).where(AuditLog.contact_id == contact.id).order_by(AuditLog.id)
    ).all()
    record["audit_log"] = [_plain(r, drop=("contact_id",)) for r in audit]
    return record


def export_contact(engine: Engine, email: str) -> dict[str, Any] | None:
    """The GDPR access answer for ``email``, or None when the base holds nothing about it."""
    with Session(engine) as session:
        contact = find_contact(session, email)
        if contact is None:
            return None
        return {"exported_at": _iso(utcnow()), **contact_record(session, contact)}


@dataclass
class Erasure:
    found: bool
    deleted: dict[str, int] = field(default_factory=dict)
    audit_scrubbed: int = 0
    inbox_scrubbed: int = 0
    inbox_held: int = 0  # webhook deliveries still to apply for other contacts: purged once applied
    # Former addresses a provider still held the contact under (a change of address not yet carried
    # there): erased and blocked like the address itself.
    former: list[str] = field(default_factory=list)
    # No contact held the address, but one had it before a change of address: not erased.
    former_of: FormerHolder | None = None


def forget_contact(engine: Engine, email: str, *, actor: str = "cli", parse: Parse | None = None) -> Erasure:
    """Erase ``email``: contact and attached rows deleted, traces scrubbed, tombstone kept. One transaction.

    An address the base does not hold still gets its tombstone: the person asked never to be processed.
    ``parse`` reads stored webhook deliveries with the providers' connectors (see
    ``syncd.inbox_purge.scrub_address``).
    """
    address = lookup_email(email)
    with session_scope(engine) as session:
        contact = session.exec(select(Contact).where(Contact.email == address)).first()
        result = Erasure(found=contact is not None)
        if contact is None:
            result.former_of = _former_holder(session, address)
        else:
            held = select(TargetState.remote_email).where(
                TargetState.contact_id == contact.id, TargetState.remote_email.is_not(None)
            )
            result.former = sorted({e for e in session.exec(held) if e and e != address})
        # Every address the contact had before a change of address (kept by hash): blocked too.
        had = (
            list(session.exec(select(FormerAddress.email_hash).where(FormerAddress.contact_id == contact.id)))
            if contact is not None
            else []
        )
        audit = AuditLog.__table__
        addresses = [address, *result.former]
        needles = {n for a in addresses for n in (a, json.dumps(a)[1:-1])}
        mentions = sa.or_(*(sa.cast(audit.c.detail, sa.Text).contains(n, autoescape=True) for n in needles))
        who = mentions if contact is None else sa.or_(audit.c.contact_id == contact.id, mentions)
        result.audit_scrubbed = session.execute(sa.update(audit).where(who).values(detail=SCRUBBED)).rowcount
        for each in addresses:
            inbox = scrub_address(session, each, parse)
            result.inbox_scrubbed += inbox.blanked
            result.inbox_held += inbox.held
        if contact is not None:
            # The foreign keys cascade too; deleting explicitly keeps erasure complete whatever the engine.
            for model in ATTACHED:
                table = model.__table__
                result.deleted[table.name] = session.execute(
                    sa.delete(table).where(table.c.contact_id == contact.id)
                ).rowcount
            session.execute(sa.delete(Contact.__table__).where(Contact.__table__.c.id == contact.id))
            result.deleted["contact"] = 1
        flags = Flag.__table__
        digests = [email_hash(a) for a in addresses]
        digests += [d for d in had if d not in digests]
        result.deleted["flag"] = (
            result.deleted.get("flag", 0)
            + session.execute(sa.delete(flags).where(flags.c.email_hash.in_(digests))).rowcount
        )
        for digest in digests:
            if session.get(Tombstone, digest) is None:
                session.add(Tombstone(email_hash=digest, forgotten_at=utcnow()))
        session.add(
            AuditLog(
                actor=actor, action="contact.forgotten", contact_id=contact.id if contact else None, detail={}
            )
        )
    return result


def _plain(row: SQLModel, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        k: _iso(v) if isinstance(v, datetime) else v for k, v in row.model_dump().items() if k not in drop
    }


def _iso(value: datetime) -> str:
    return value.isoformat()
