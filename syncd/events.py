"""Provider events flowing back into the master base (DESIGN §1, §4 rules 2, 3, 6; LESSONS 3, 9).

``reconcile`` is pure: from one normalised ``ProviderEvent`` and what the master base knows, it
decides a list of small ``Change`` values. ``apply_event`` is the thin shell the inbox processor
calls: it loads the contact, maps the event's target to syncd lists, calls ``reconcile`` and
applies the changes only through ``syncd.membership`` (plus profile/email updates, audited).

Order: an event older than the state it would change is ignored, so deliveries in any order
converge on the state the newest event describes. The times compared are the membership's
``since`` (per-list unsubscribes), the newest active membership (global opt-outs) and the
contact's ``updated_at`` (profile updates).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlmodel import Session, select

from connectors.contract import EventKind, ProviderEvent, Target
from syncd.config import Config, ListConfig
from syncd.contacts.qualify import clean_line
from syncd.db import email_hash, erased_among
from syncd.membership import ConsentRequired, join_list, leave_list, mark_bounced, opt_out_everywhere
from syncd.models import AuditLog, Consent, ConsentAction, Contact, Membership, Source
from syncd.segments import ACTIVE, ContactFacts

PROFILE_FIELDS = ("first_name", "last_name", "phone", "company", "city", "country")


@dataclass(frozen=True)
class MembershipFacts:
    status: str
    since: datetime | None = None


# --- changes: what reconcile decides ----------------------------------------------------------


@dataclass(frozen=True)
class LeaveList:
    list_name: str


@dataclass(frozen=True)
class OptOutAll:
    complaint: bool = False


@dataclass(frozen=True)
class Bounced:
    pass


@dataclass(frozen=True)
class UpdateFields:
    fields: Mapping[str, str]


@dataclass(frozen=True)
class ChangeEmail:
    new_email: str


@dataclass(frozen=True)
class JoinList:
    """A provider-side subscription to a legitimate-interest list (no consent needed, none recorded)."""

    list_name: str


@dataclass(frozen=True)
class RecordSource:
    """Provenance only: a provider-side subscription is not consent in the master base."""

    channel: str


@dataclass(frozen=True)
class CreateContact:
    """An address the master base does not know, created with its provenance and no consent."""

    channel: str
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Note:
    """An audit line, no state change (a soft bounce)."""

    action: str
    reason: str | None = None


@dataclass(frozen=True)
class Ignore:
    code: str  # the outcome word after "ignored:"
    reason: str


# Outcomes a later delivery can still change (LESSONS 12): a Mailchimp profile update for the new
# address of an ``upemail`` that has not arrived yet is "unknown_contact" until it has. The inbox
# retries such an event with its back-off before it settles for the outcome.
NOT_YET = frozenset({"ignored:unknown_contact"})


Change = (
    LeaveList
    | OptOutAll
    | Bounced
    | UpdateFields
    | ChangeEmail
    | JoinList
    | RecordSource
    | CreateContact
    | Note
    | Ignore
)


# --- the pure decision ------------------------------------------------------------------------


def provider_channel(provider: str, target: str | None) -> str:
    """Source channel of contacts a provider brought: ``provider:<target key>``."""
    return f"provider:{Target(provider, target or '').key}"


def reconcile(
    event: ProviderEvent,
    facts: ContactFacts | None,
    memberships: Mapping[str, MembershipFacts],
    lists: Mapping[str, ListConfig],
    scope: Literal["list", "global"] | str = "list",
    *,
    new_email_owner: int | None = None,
    new_email_erased: bool = False,
    region: str = "FR",
) -> list[Change]:
    """What one provider event changes in the master base.

    ``facts``: the contact with the event's address (None: unknown). ``memberships``: its
    memberships by list name. ``lists``: the syncd lists whose targets the event names (see
    ``lists_for_target``). ``scope``: ``config.unsubscribe.scope``. ``new_email_owner``: for
    EMAIL_CHANGED, the id of the contact that already has the new address, if any.
    ``new_email_erased``: for EMAIL_CHANGED, whether the new address was erased (tombstoned).
    """
    if event.own_write:
        return [Ignore("own_write", "the echo of syncd's own write")]
    kind = event.kind
    if kind is EventKind.DELETED:
        # Deleting a contact at the provider is not an unsubscribe (LESSONS 3).
        return [Ignore("deleted", "deleted at the provider: no consent change")]
    if facts is None:
        if kind is EventKind.SUBSCRIBED and lists:
            channel = provider_channel(event.provider, event.target)
            joins = [JoinList(n) for n, cfg in lists.items() if cfg.consent == "legitimate_interest"]
            return [CreateContact(channel, _profile(event, None, region)), *joins]
        return [Ignore("unknown_contact", "no contact with this address")]
    if kind is EventKind.BOUNCED_SOFT:
        return [Note("contact.soft_bounce")]
    if kind is EventKind.BOUNCED_HARD:
        if facts.email_status == "bounced":
            return [Ignore("no_change", "already bounced")]
        return [Bounced()]
    if kind is EventKind.COMPLAINED:
        if facts.email_status == "complained":
            return [Ignore("no_change", "already complained")]
        return [OptOutAll(complaint=True)]
    if kind is EventKind.UNSUBSCRIBED_ALL or (kind is EventKind.UNSUBSCRIBED and scope == "global"):
        return _opt_out_all(event, facts, memberships)
    if kind is EventKind.UNSUBSCRIBED:
        return _leave(event, memberships, lists)
    if kind is EventKind.SUBSCRIBED:
        return _subscribed(event, facts, memberships, lists)
    if kind is EventKind.PROFILE_UPDATED:
        if facts.updated_at is not None and event.occurred_at < facts.updated_at:
            return [Ignore("older", "the contact changed after this profile update")]
        fields = _profile(event, facts, region)
        return [UpdateFields(fields)] if fields else [Ignore("no_change", "same profile")]
    if kind is EventKind.EMAIL_CHANGED:
        new = (event.new_email or "").strip().lower()
        if not new or new == facts.email:
            return [Ignore("no_change", "no new address")]
        if new_email_erased:
            # An erased address never comes back, not even as someone else's new one (LESSONS 8):
            # the contact keeps its address; the provider's member under the erased one is taken
            # off the target by the next sync, as any erased member is.
            return [Note("contact.email_change_refused", "the new address was erased at its owner's request")]
        if new_email_owner is not None and new_email_owner != facts.id:
            return [Ignore("email_taken", "the new address is already another contact")]
        return [ChangeEmail(new)]
    return [Ignore("unknown_kind", f"unhandled event kind {kind}")]


def _leave(
    event: ProviderEvent, memberships: Mapping[str, MembershipFacts], lists: Mapping[str, Any]
) -> list[Change]:
    """A per-list unsubscribe: exactly the mapped lists (rule 2), all of an audience's (rule 3)."""
    if not lists:
        return [Ignore("no_list", f"no syncd list on {event.provider} target {event.target}")]
    out: list[Change] = []
    for name in lists:
        m = memberships.get(name)
        if m is not None and m.status == "unsubscribed":
            out.append(Ignore("no_change", f"already unsubscribed from {name}"))
        elif m is not None and m.since is not None and _before(event.occurred_at, m.since):
            out.append(Ignore("older", f"{name} changed after this unsubscribe"))
        else:
            out.append(LeaveList(name))
    return out


# Providers stamp events to the second while syncd keeps microseconds: an opt-out stamped in the
# same second as the opt-in it would close cannot be ordered, and is then honoured.
SAME_SECOND = timedelta(seconds=1)


def _before(event_at: datetime, state_since: datetime) -> bool:
    """Whether an opt-out clearly happened before the state it would change."""
    return event_at < state_since - SAME_SECOND


def _opt_out_all(
    event: ProviderEvent, facts: ContactFacts, memberships: Mapping[str, MembershipFacts]
) -> list[Change]:
    if facts.global_opt_out:
        return [Ignore("no_change", "already opted out of everything")]
    active = {n: m for n, m in memberships.items() if m.status in ACTIVE}
    newer = {n for n, m in active.items() if m.since is not None and _before(event.occurred_at, m.since)}
    if not newer:
        return [OptOutAll(complaint=False)]
    # A newer opt-in survives an older "unsubscribe from all": only what predates the event closes,
    # as if the events had arrived in order.
    older = [LeaveList(n) for n in active if n not in newer]
    return older or [Ignore("older", "every membership is newer than this opt-out")]


def _subscribed(
    event: ProviderEvent,
    facts: ContactFacts,
    memberships: Mapping[str, MembershipFacts],
    lists: Mapping[str, Any],
) -> list[Change]:
    if not lists:
        return [Ignore("no_list", f"no syncd list on {event.provider} target {event.target}")]
    out: list[Change] = [RecordSource(provider_channel(event.provider, event.target))]
    for name, cfg in lists.items():
        # A provider-side subscription is consent only where none is needed; someone who left
        # comes back only with a new opt-in recorded here (rule 6).
        if cfg.consent == "legitimate_interest" and name not in memberships and not facts.global_opt_out:
            out.append(JoinList(name))
    return out


_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def _profile(event: ProviderEvent, facts: ContactFacts | None, region: str) -> dict[str, str]:
    out = {}
    for name, raw in event.fields.items():
        if name not in PROFILE_FIELDS or raw is None:
            continue
        value = _clean(name, str(raw), region)
        if value and (facts is None or getattr(facts, name) != value):
            out[name] = value
    return out


def _clean(name: str, value: str, region: str) -> str | None:
    value = value.strip()
    if not value:
        return None  # an empty provider field never erases the master base
    if name == "phone":
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_valid_number(number):
            return None
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if name == "country":
        return value.upper() if len(value) == 2 and value.isalpha() else None
    return clean_line(value)


# --- the shell --------------------------------------------------------------------------------


def lists_for_target(config: Config, provider: str, remote_id: str | None) -> dict[str, ListConfig]:
    """The syncd lists an event on ``(provider, remote_id)`` concerns.

    A Brevo list id maps to the lists targeting it; a Mailchimp audience to *every* list sharing
    it, whatever its tag, since Mailchimp's unsubscribe is per audience (DESIGN §4 rule 3).
    """
    if not remote_id:
        return {}
    out = {}
    for name, cfg in config.lists.items():
        for t in cfg.targets:
            target = t.target
            if target.provider == provider and target.list_id == str(remote_id):
                out[name] = cfg
                break
    return out


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
        if _apply(session, contact, change, event, lists, actor):
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
) -> bool:
    at = event.occurred_at
    reason = f"{event.kind}" + (f": {event.reason}" if event.reason else "")
    reason = reason[:200]
    if isinstance(change, LeaveList):
        leave_list(session, contact, change.list_name, reason=reason, source=actor, at=at)
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


def _create(
    session: Session, email: str, change: CreateContact, event: ProviderEvent
) -> tuple[Contact | None, str | None]:
    if erased_among(session, [email]):
        return None, "forgotten"  # an erased contact never comes back (LESSONS 8)
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
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


# --- provider-held proof of opt-in ------------------------------------------------------------

EVIDENCE_KEYS = ("ip_signup", "timestamp_signup", "ip_opt", "timestamp_opt")


def record_provider_evidence(
    session: Session, contact: Contact, list_name: str | None, evidence: Mapping[str, str], source: str
) -> Consent | None:
    """Keep the opt-in proof a provider holds (Mailchimp's ip_signup, timestamp_signup, ip_opt,
    timestamp_opt) as a ``provider_evidence`` Consent row. Not consent by itself: proof to show.

    Returns the new row, or None when the evidence is empty or the same was already recorded.
    """
    kept = {k: str(v) for k, v in evidence.items() if v not in (None, "")}
    if not kept:
        return None
    assert contact.id is not None
    rows = session.exec(
        select(Consent).where(
            Consent.contact_id == contact.id,
            Consent.action == ConsentAction.PROVIDER_EVIDENCE,
        )
    ).all()
    if any(r.list_name == list_name and dict(r.evidence or {}) == kept for r in rows):
        return None
    at = _parse_time(kept.get("timestamp_opt")) or _parse_time(kept.get("timestamp_signup"))
    row = Consent(
        contact_id=contact.id,
        list_name=list_name,
        action=ConsentAction.PROVIDER_EVIDENCE,
        ip=(kept.get("ip_opt") or kept.get("ip_signup") or None),
        source=source[:200],
        evidence=kept,
    )
    if at is not None:
        row.at = at
    session.add(row)
    return row


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
