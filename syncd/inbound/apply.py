"""Applying a provider event to the master base: the thin shell the inbox processor (and a sync's
read of a list) calls around ``reconcile``.

``apply_event`` loads the contact, maps the event's target to syncd lists, asks ``reconcile`` what
changes, and applies them only through ``syncd.membership`` (plus profile and address updates,
audited).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from connectors.contract import EventKind, ProviderEvent
from syncd.config import Config
from syncd.contacts.qualify import InvalidEmail, normalise_email
from syncd.core.segments import ContactFacts
from syncd.db import email_hash, erased_among
from syncd.inbound.reconcile import (
    Bounced,
    Change,
    ChangeEmail,
    CreateContact,
    Ignore,
    JoinList,
    LeaveList,
    MembershipFacts,
    Note,
    OptOutAll,
    RecordSource,
    UpdateFields,
    lists_for_target,
    reconcile,
)
from syncd.membership import ConsentRequired, join_list, leave_list, mark_bounced, opt_out_everywhere
from syncd.models import AuditLog, Contact, FormerAddress, Membership, Source, TargetState, utcnow
from syncd.providers import sharing_record

# Outcomes a later delivery can still change (LESSONS 12): a Mailchimp profile update for the new
# address of an ``upemail`` that has not arrived yet is "unknown_contact" until it has. The inbox
# retries such an event with its back-off before it settles for the outcome.
NOT_YET = frozenset({"ignored:unknown_contact"})


def reported_by(provider: str) -> str:
    """The actor and consent source of what a provider reported, by webhook or on a sync's read
    of its list: the engine tells a provider-reported per-list opt-out by it (``Consent.source``)."""
    return f"webhook:{provider}"


def apply_event(session: Session, event: ProviderEvent, config: Config) -> str:
    """Apply one provider event to the master base. Does not commit: the caller owns the transaction.

    Returns an outcome word for logs and metrics: ``applied``, ``noted`` (an audit line only), or
    ``ignored:<why>`` — own_write, older, unknown_contact, no_list, no_change, deleted,
    email_taken, forgotten, invalid_email.
    """
    actor = reported_by(event.provider)
    email = event.email.strip().lower()
    contact = session.exec(select(Contact).where(Contact.email == email)).first()
    if contact is None and erased_among(session, [email]):
        # Erased: nothing to apply now or later, so never kept waiting for a contact (LESSONS 8).
        return "ignored:forgotten"
    if contact is None:
        # The address a contact had before a change of address: the event, delivered after the
        # change (a lost webhook read by a sync, a late delivery), is that person's.
        former = session.get(FormerAddress, email_hash(email))
        contact = session.get(Contact, former.contact_id) if former is not None else None
    lists = lists_for_target(config, event.provider, event.target)
    memberships: dict[str, MembershipFacts] = {}
    owner = None
    new_erased = False
    if contact is not None:
        rows = session.exec(select(Membership).where(Membership.contact_id == contact.id)).all()
        memberships = {m.list_name: MembershipFacts(m.status, m.since) for m in rows}
        if event.kind is EventKind.EMAIL_CHANGED and event.new_email:
            new = event.new_email.strip().lower()
            new_erased = bool(erased_among(session, [new]))
            other = session.exec(select(Contact).where(Contact.email == new)).first()
            owner = other.id if other is not None else None
    facts = ContactFacts.of(contact) if contact is not None else None
    changes = reconcile(
        event,
        facts,
        memberships,
        lists,
        config.unsubscribe.scope,
        new_email_owner=owner,
        new_email_erased=new_erased,
        region=config.qualification.default_region,
    )
    done: list[Change] = []
    for change in changes:
        if isinstance(change, Ignore):
            continue
        if isinstance(change, CreateContact):
            contact, refused = _create(session, email, change, event)
            if contact is None:
                return f"ignored:{refused}"
            done.append(change)
            continue
        assert contact is not None
        if _apply(session, contact, change, event, lists, actor, config):
            done.append(change)
    if not done:
        return f"ignored:{changes[0].code}" if isinstance(changes[0], Ignore) else "ignored:no_change"
    return "noted" if all(isinstance(c, Note) for c in done) else "applied"


def _apply(
    session: Session,
    contact: Contact,
    change: Change,
    event: ProviderEvent,
    lists: Mapping[str, Any],
    actor: str,
    config: Config,
) -> bool:
    at = event.occurred_at
    reason = f"{event.kind}" + (f": {event.reason}" if event.reason else "")
    reason = reason[:200]
    if isinstance(change, LeaveList):
        leave_list(
            session, contact, change.list_name, reason=reason, source=actor, at=at, campaign=event.campaign
        )
    elif isinstance(change, OptOutAll):
        opt_out_everywhere(session, contact, reason=reason, source=actor, complaint=change.complaint, at=at)
    elif isinstance(change, Bounced):
        mark_bounced(session, contact, source=actor, at=at)
    elif isinstance(change, JoinList):
        try:
            join_list(
                session,
                contact,
                change.list_name,
                lists[change.list_name],
                consent="none",
                source=actor,
                at=at,
            )
        except ConsentRequired:
            return False
    elif isinstance(change, RecordSource):
        return _record_source(session, contact, change.channel, event)
    elif isinstance(change, UpdateFields):
        for name, value in change.fields.items():
            setattr(contact, name, value)
        _touch(session, contact, at)
        _audit(session, contact, actor, "contact.updated", at, fields=sorted(change.fields))
    elif isinstance(change, ChangeEmail):
        old = contact.email
        contact.email = change.new_email
        _remember_former_address(session, contact.id, old, change.new_email)
        _former_address_elsewhere(session, contact.id, old, change.new_email, event, config)
        _touch(session, contact, at)
        _audit(
            session,
            contact,
            actor,
            "contact.email_changed",
            at,
            old=email_hash(old),
            new=email_hash(change.new_email),
        )
    elif isinstance(change, Note):
        detail = {"reason": change.reason} if change.reason else {}
        _audit(session, contact, actor, change.action, at, target=event.target, **detail)
    else:
        return False
    return True


def _remember_former_address(session: Session, contact_id: int | None, old: str, new: str) -> None:
    """The former address, by hash, stays the contact's (its return to it is no longer former)."""
    row = session.get(FormerAddress, email_hash(old))
    if row is None:
        session.add(FormerAddress(email_hash=email_hash(old), contact_id=contact_id, until=utcnow()))
    else:
        row.contact_id, row.until = contact_id, utcnow()
    back = session.get(FormerAddress, email_hash(new))
    if back is not None:
        session.delete(back)


def _former_address_elsewhere(
    session: Session, contact_id: int | None, old: str, new: str, event: ProviderEvent, config: Config
) -> None:
    """The targets outside the provider record that changed address still hold the contact under
    its former one: remembered on their TargetState, so that the next push renames it there and
    a removal finds it (``sync.writer``). A return to an address a target still holds clears it."""
    renamed = sharing_record(config, event.provider, event.target)
    state = TargetState.__table__
    mine = state.c.contact_id == contact_id
    session.execute(
        sa.update(state)
        .where(mine, state.c.target_key.not_in(renamed), state.c.remote_email.is_(None))
        .values(remote_email=old)
    )
    session.execute(
        sa.update(state)
        .where(mine, sa.or_(state.c.target_key.in_(renamed), state.c.remote_email == new))
        .values(remote_email=None)
    )


def _create(
    session: Session, email: str, change: CreateContact, event: ProviderEvent
) -> tuple[Contact | None, str | None]:
    if erased_among(session, [email]):
        return None, "forgotten"  # an erased contact never comes back (LESSONS 8)
    try:
        normalise_email(email)
    except InvalidEmail:
        return None, "invalid_email"
    contact = Contact(email=email, updated_at=event.occurred_at, **dict(change.fields))
    session.add(contact)
    session.flush()
    _record_source(session, contact, change.channel, event)
    _audit(
        session,
        contact,
        reported_by(event.provider),
        "contact.created",
        event.occurred_at,
        channel=change.channel,
    )
    return contact, None


def _record_source(session: Session, contact: Contact, channel: str, event: ProviderEvent) -> bool:
    seen = session.exec(
        select(Source).where(Source.contact_id == contact.id, Source.channel == channel)
    ).first()
    if seen is not None:
        return False
    session.add(Source(contact_id=contact.id, channel=channel, detail="webhook", at=event.occurred_at))
    return True


def _touch(session: Session, contact: Contact, at: datetime) -> None:
    if contact.updated_at is None or at > contact.updated_at:
        contact.updated_at = at
    contact.version += 1
    session.add(contact)


def _audit(session: Session, contact: Contact, actor: str, action: str, at: datetime, **detail: Any) -> None:
    session.add(AuditLog(at=at, actor=actor, action=action, contact_id=contact.id, detail=detail))
