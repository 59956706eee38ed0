"""Wrong-list flags: who sits in a list, or on a provider's list, against the rules.

``scan`` walks every list (and what was last pulled from each of its targets), raises one
``Flag`` per violation, and resolves the flags whose cause has gone. The rules are pure
(``syncd.core.violations``); the scan is the thin shell that reads and writes the base.
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
from syncd.models import Contact, Flag, Membership, TargetState, utcnow

CHUNK = 1000


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
