"""Joining and leaving lists, with the consent ledger kept in step (DESIGN §4 rules 1, 2, 6).

Every change of a membership or of the global opt-out goes through here, so that the proof in
``Consent`` and the trail in ``AuditLog`` are never forgotten by one caller.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from syncd.config import ListConfig
from syncd.models import (
    AuditLog,
    Consent,
    ConsentAction,
    Contact,
    EmailStatus,
    Membership,
    MembershipStatus,
    utcnow,
)

# What the caller can prove when it adds someone to a list.
CONSENTS = ("double_opt_in", "single_opt_in", "none")


class ConsentRequired(Exception):
    """The list needs a consent the caller cannot show (e.g. a purchased file into a newsletter)."""


def membership(session: Session, contact_id: int, list_name: str) -> Membership | None:
    return session.exec(
        select(Membership).where(Membership.contact_id == contact_id, Membership.list_name == list_name)
    ).first()


def join_list(
    session: Session,
    contact: Contact,
    list_name: str,
    list_cfg: ListConfig,
    *,
    consent: str,
    source: str,
    at: datetime | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    evidence: dict[str, Any] | None = None,
) -> Membership:
    """Add ``contact`` to a list with the consent the caller can prove.

    ``consent="single_opt_in"`` records an opt-in; into a double-opt-in list it only makes the
    membership ``pending`` (the confirmation mail proves the rest). ``consent="none"`` is enough
    only for ``legitimate_interest`` lists, and never brings back someone who left the list or
    opted out (rule 6: re-subscription needs a new, recorded opt-in).
    """
    if consent not in CONSENTS:
        raise ValueError(f"consent must be one of {', '.join(CONSENTS)}")
    at = at or utcnow()
    assert contact.id is not None
    current = membership(session, contact.id, list_name)
    opted_in = consent in ("single_opt_in", "double_opt_in")
    if not opted_in:
        if list_cfg.consent != "legitimate_interest":
            raise ConsentRequired(f"list {list_name!r} needs {list_cfg.consent.replace('_', ' ')}")
        if contact.global_opt_out or (current and current.status != MembershipStatus.SUBSCRIBED):
            raise ConsentRequired(f"the contact left {list_name!r}: only a new opt-in brings them back")
    if current and current.status == MembershipStatus.SUBSCRIBED:
        return current
    if current and current.status == MembershipStatus.PENDING and consent != "double_opt_in":
        return current

    if list_cfg.consent == "double_opt_in" and consent != "double_opt_in":
        status = MembershipStatus.PENDING
    else:
        status = MembershipStatus.SUBSCRIBED
    if opted_in:
        action = ConsentAction.DOI_CONFIRMED if consent == "double_opt_in" else ConsentAction.OPT_IN
        session.add(
            Consent(
                contact_id=contact.id,
                list_name=list_name,
                action=action,
                at=at,
                ip=ip,
                user_agent=user_agent,
                source=source,
                evidence=evidence or {},
            )
        )
        if (
            status == MembershipStatus.SUBSCRIBED
            and contact.global_opt_out
            and contact.email_status
            not in (
                EmailStatus.COMPLAINED,
                EmailStatus.BOUNCED,
            )
        ):
            # A new explicit opt-in to one list lifts the global opt-out for that list only:
            # every other membership was closed when the contact opted out.
            contact.global_opt_out = False
            contact.opt_out_reason = None
            contact.opt_out_at = None
            _touch(session, contact, at)
    if current is None:
        current = Membership(
            contact_id=contact.id, list_name=list_name, status=status, since=at, reason=source
        )
    else:
        current.status, current.since, current.reason = status, at, source
    session.add(current)
    _audit(session, contact, f"list.{status}", source, at, list_name=list_name)
    return current


def leave_list(
    session: Session,
    contact: Contact,
    list_name: str,
    *,
    reason: str,
    source: str,
    at: datetime | None = None,
    campaign: str | None = None,
) -> Membership | None:
    """A per-list unsubscribe: exactly one membership changes (rule 2). ``campaign``: the
    provider's campaign whose unsubscribe link it came from, kept in the consent's evidence.

    A contact with no row (auto-enrolled by a legitimate-interest segment) gets an
    ``unsubscribed`` row, so that the next sync does not enrol them again.
    """
    at = at or utcnow()
    assert contact.id is not None
    current = membership(session, contact.id, list_name)
    if current is not None and current.status == MembershipStatus.UNSUBSCRIBED:
        return current
    if current is None:
        current = Membership(contact_id=contact.id, list_name=list_name, status=MembershipStatus.UNSUBSCRIBED)
    current.status, current.since, current.reason = MembershipStatus.UNSUBSCRIBED, at, reason
    session.add(current)
    session.add(
        Consent(
            contact_id=contact.id,
            list_name=list_name,
            action=ConsentAction.OPT_OUT,
            at=at,
            source=source,
            evidence={"reason": reason, **({"campaign": campaign} if campaign else {})},
        )
    )
    _audit(session, contact, "list.unsubscribed", source, at, list_name=list_name, reason=reason)
    return current


def require_confirmation(
    session: Session,
    contact: Contact,
    list_name: str,
    *,
    reason: str,
    source: str,
    at: datetime | None = None,
) -> Membership | None:
    """A subscribed member whose subscription the list's consent rule no longer accepts (a list
    switched to double opt-in, no proof on record) waits for a confirmation: ``pending``. No
    consent is recorded or withdrawn; the confirmation mail's request is recorded when it is sent.
    Returns the membership moved to pending, or None when it was not subscribed.
    """
    at = at or utcnow()
    assert contact.id is not None
    current = membership(session, contact.id, list_name)
    if current is None or current.status != MembershipStatus.SUBSCRIBED:
        return None
    current.status, current.since, current.reason = MembershipStatus.PENDING, at, reason[:200]
    session.add(current)
    _audit(session, contact, "list.pending", source, at, list_name=list_name, reason=reason)
    return current


def opt_out_everywhere(
    session: Session,
    contact: Contact,
    *,
    reason: str,
    source: str,
    complaint: bool = False,
    at: datetime | None = None,
) -> None:
    """ "Unsubscribe from everything" or a spam complaint: the only global opt-outs."""
    at = at or utcnow()
    assert contact.id is not None
    contact.global_opt_out, contact.opt_out_reason, contact.opt_out_at = True, reason, at
    if complaint:
        contact.email_status = EmailStatus.COMPLAINED
    _touch(session, contact, at)
    _close_open(session, contact, MembershipStatus.UNSUBSCRIBED, at, reason)
    action = ConsentAction.COMPLAINT if complaint else ConsentAction.OPT_OUT
    session.add(
        Consent(
            contact_id=contact.id,
            list_name=None,
            action=action,
            at=at,
            source=source,
            evidence={"reason": reason},
        )
    )
    _audit(session, contact, "contact.opted_out", source, at, reason=reason, complaint=complaint)


def mark_bounced(session: Session, contact: Contact, *, source: str, at: datetime | None = None) -> None:
    """A hard bounce: the address is dead everywhere; memberships are cleaned, consent is kept.

    A complaint stays the address's status: it is the stronger fact (a withdrawal of consent that
    nothing lifts), and the bounce may be applied after it whatever order they happened in."""
    at = at or utcnow()
    if contact.email_status != EmailStatus.COMPLAINED:
        contact.email_status = EmailStatus.BOUNCED
    _touch(session, contact, at)
    _close_open(session, contact, MembershipStatus.CLEANED, at, "bounced")
    _audit(session, contact, "contact.bounced", source, at)


def _close_open(
    session: Session, contact: Contact, status: MembershipStatus, at: datetime, reason: str
) -> None:
    """Every membership still subscribed or pending moves to ``status``: the other ones already
    record why the contact is out of that list."""
    for m in session.exec(select(Membership).where(Membership.contact_id == contact.id)).all():
        if m.status in (MembershipStatus.SUBSCRIBED, MembershipStatus.PENDING):
            m.status, m.since, m.reason = status, at, reason
            session.add(m)


def _touch(session: Session, contact: Contact, at: datetime) -> None:
    contact.updated_at = at
    contact.version += 1
    session.add(contact)


def _audit(session: Session, contact: Contact, action: str, actor: str, at: datetime, **detail: Any) -> None:
    session.add(AuditLog(at=at, actor=actor, action=action, contact_id=contact.id, detail=detail))
