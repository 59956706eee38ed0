"""Wrong-list flags: who sits in a list, or on a provider's list, against the rules.

``scan`` walks every list (and what was last pulled from each of its targets), raises one
``Flag`` per violation, and resolves the flags whose cause has gone. A person resolves a flag from
the team console (``resolve``): take the contact off the list, or accept the exception, which
stays accepted (no new flag for the same contact, list, rule and target) while its cause lasts.
The rules are pure (``syncd.core.violations``); the scan is the thin shell that reads and writes
the base.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncd.config import Config, ListConfig
from syncd.core.segments import ContactFacts
from syncd.core.violations import Violation, violations
from syncd.db import session_scope
from syncd.membership import leave_list
from syncd.models import AuditLog, Contact, Flag, Membership, MembershipStatus, TargetState, utcnow

CHUNK = 1000
ACCEPTED = "flag.accepted"
RESOLUTIONS = ("remove", "accept")


class CannotResolve(Exception):
    """The flag is not open any more, or it cannot be resolved that way; the message says why."""


def raise_flag(s: Session, contact_id: int | None, list_name: str, v: Violation, seen: set[int]) -> None:
    existing = s.exec(
        select(Flag).where(
            Flag.contact_id == contact_id,
            Flag.list_name == list_name,
            Flag.rule == v.rule,
            Flag.target_key == v.target_key if v.target_key else Flag.target_key.is_(None),
            Flag.resolved_at.is_(None),
        )
    ).first()
    if existing is None and _accepted(s, contact_id, list_name, v.rule, v.target_key):
        return
    if existing is None:
        existing = Flag(
            contact_id=contact_id, list_name=list_name, target_key=v.target_key, rule=v.rule, detail=v.detail
        )
    else:
        existing.detail = v.detail
    s.add(existing)
    s.flush()
    assert existing.id is not None
    seen.add(existing.id)


def _accepted(s: Session, contact_id: int | None, list_name: str, rule: str, target: str | None) -> bool:
    """A person accepted this exception (``resolve(..., "accept")``): it is not raised again. Asked
    only when no open flag holds the key, so a scan pays for it on new flags alone."""
    if contact_id is None:
        return False
    key = {"list": list_name, "rule": rule, "target": target}
    details = s.exec(
        select(AuditLog.detail).where(AuditLog.contact_id == contact_id, AuditLog.action == ACCEPTED)
    ).all()
    return any({k: (d or {}).get(k) for k in key} == key for d in details)


def _concerned(list_name: str, list_cfg: ListConfig, engine: Engine) -> Iterator[list[Contact]]:
    concerned: Any = sa.or_(
        Contact.id.in_(select(Membership.contact_id).where(Membership.list_name == list_name)),
        Contact.id.in_(select(TargetState.contact_id).where(TargetState.list_name == list_name)),
    )
    last = 0
    while True:
        with Session(engine) as s:
            rows = list(
                s.exec(select(Contact).where(concerned, Contact.id > last).order_by(Contact.id).limit(CHUNK))
            )
        if not rows:
            return
        yield rows
        last = rows[-1].id


def scan(engine: Engine, config: Config, lists: list[str] | None = None) -> dict[str, int]:
    """Raise and resolve flags for ``lists`` (default: all). Returns open flags per rule."""
    counts: dict[str, int] = {}
    for list_name in lists or list(config.lists):
        list_cfg = config.list(list_name)
        seen: set[int] = set()
        for contacts in _concerned(list_name, list_cfg, engine):
            ids = [c.id for c in contacts]
            with session_scope(engine) as s:
                memberships: dict[int, dict[str, str]] = {}
                for m in s.exec(select(Membership).where(Membership.contact_id.in_(ids))):
                    memberships.setdefault(m.contact_id, {})[m.list_name] = m.status
                remote: dict[int, dict[str, tuple[str | None, bool]]] = {}
                for t in s.exec(
                    select(TargetState).where(
                        TargetState.list_name == list_name, TargetState.contact_id.in_(ids)
                    )
                ):
                    remote.setdefault(t.contact_id, {})[t.target_key] = (
                        t.remote_status,
                        t.pushed_hash is not None,
                    )
                for c in contacts:
                    found = violations(
                        list_name,
                        list_cfg,
                        ContactFacts.of(c),
                        memberships.get(c.id, {}),
                        remote.get(c.id, {}),
                        config.lists,
                    )
                    for v in found:
                        raise_flag(s, c.id, list_name, v, seen)
                        counts[v.rule] = counts.get(v.rule, 0) + 1
        with session_scope(engine) as s:
            stale = select(Flag).where(Flag.list_name == list_name, Flag.resolved_at.is_(None))
            for flag in s.exec(stale):
                if flag.id not in seen:
                    flag.resolved_at = utcnow()
                    s.add(flag)
    return counts


def open_flags(engine: Engine, list_name: str | None = None) -> list[dict[str, Any]]:
    with Session(engine) as s:
        query = (
            select(Flag, Contact.email)
            .join(Contact, Contact.id == Flag.contact_id, isouter=True)
            .where(Flag.resolved_at.is_(None))
        )
        if list_name:
            query = query.where(Flag.list_name == list_name)
        rows = s.exec(query.order_by(Flag.list_name, Flag.rule, Flag.id)).all()
    return [
        {
            "list": f.list_name,
            "rule": f.rule,
            "email": email,
            "target": f.target_key,
            "detail": f.detail,
            "detected_at": f.detected_at.isoformat(),
        }
        for f, email in rows
    ]


def removable(flag: Flag, status: str | None) -> bool:
    """Whether "take off the list" applies: the contact holds the list's membership (subscribed or
    pending). A member only on a provider's list goes at the next sync under ``on_violation: remove``."""
    return flag.contact_id is not None and status in (MembershipStatus.SUBSCRIBED, MembershipStatus.PENDING)


def resolve(engine: Engine, flag_id: int, how: str, *, actor: str) -> Flag:
    """Close an open flag by hand. ``remove``: the contact leaves the list (``leave_list``, with the
    flag's rule as the reason, so a new opt-in is needed to come back). ``accept``: the exception is
    kept and not flagged again. Audited with ``actor``; one transaction."""
    if how not in RESOLUTIONS:
        raise CannotResolve(f"unknown resolution {how!r}; expected one of {', '.join(RESOLUTIONS)}")
    with session_scope(engine) as s:
        flag = s.exec(select(Flag).where(Flag.id == flag_id).with_for_update()).first()
        if flag is None or flag.resolved_at is not None:
            raise CannotResolve("this flag is no longer open")
        key = {"list": flag.list_name, "rule": flag.rule, "target": flag.target_key, "flag_id": flag.id}
        if how == "remove":
            contact = s.get(Contact, flag.contact_id) if flag.contact_id is not None else None
            held = s.exec(
                select(Membership.status).where(
                    Membership.contact_id == flag.contact_id, Membership.list_name == flag.list_name
                )
            ).first()
            if contact is None or not removable(flag, held):
                raise CannotResolve("the contact is not in this list: only accepting the flag applies")
            leave_list(
                s, contact, flag.list_name, reason=f"taken off by the team: {flag.rule}"[:200], source=actor
            )
        flag.resolved_at = utcnow()
        s.add(flag)
        action = ACCEPTED if how == "accept" else "flag.removed"
        s.add(
            AuditLog(at=flag.resolved_at, actor=actor, action=action, contact_id=flag.contact_id, detail=key)
        )
        s.flush()
        s.expunge(flag)
    return flag
