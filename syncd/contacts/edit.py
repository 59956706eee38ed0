"""One contact changed by hand (``syncd contacts set|subscribe|unsubscribe``): values checked as an
import checks them (``qualify``), list joins under the rules a sync applies, every change audited
with who made it.

A value goes through the importer's own qualification, so that a phone typed by hand ends up
exactly as an imported one would (E.164), a kind as the config knows it, a country as its ISO
code. A list join goes through ``membership.join_list`` and a departure through ``leave_list`` /
``opt_out_everywhere``: the consent ledger and the audit trail are the same as every other way in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from syncd.config import Config
from syncd.contacts.dedupe import MERGED_FIELDS
from syncd.contacts.qualify import Qualified, Rules, normalise_tags, qualify
from syncd.core.segments import eligibility, segment_mismatch
from syncd.log import get_logger
from syncd.membership import join_list
from syncd.models import AuditLog, Contact, EmailStatus, Membership, MembershipStatus, utcnow

log = get_logger(__name__)

EDITABLE = MERGED_FIELDS  # every column an import fills; the address is the key, never edited here
# The qualification warning that says a field's value was refused ("phone dropped: …").
_DROPPED = {"phone": "phone", "siret": "SIRET", "country": "country", "kind": "kind"}
PLACEHOLDER = "contact@example.com"  # qualifies one value at a time: the address plays no part
UNREACHABLE = (EmailStatus.BOUNCED, EmailStatus.COMPLAINED, EmailStatus.INVALID)


class InvalidChange(ValueError):
    """A FIELD=VALUE or a --tag that cannot be applied; the message names it and says why."""


class Refused(Exception):
    """The contact cannot join the list; the message says why, in the marketer's words."""


@dataclass(frozen=True)
class Change:
    field: str
    old: Any
    new: Any


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """``["kind=client", "phone=06 12 34 56 78"]`` → ``{field: raw value}``; an empty value clears."""
    out: dict[str, str] = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        field = field.strip().lower()
        if not sep or not field:
            raise InvalidChange(f"{pair!r}: expected FIELD=VALUE (e.g. kind=client, phone=0612345678)")
        if field == "email":
            raise InvalidChange("email: the address is the contact's key and cannot be changed here")
        if field not in EDITABLE:
            raise InvalidChange(f"{field}: unknown field; expected one of {', '.join(EDITABLE)}")
        out[field] = value
    return out


def parse_tags(ops: Iterable[str]) -> tuple[list[str], list[str]]:
    """``["+vip", "-salon"]`` → (tags to add, tags to remove), normalised as an import does."""
    add: list[str] = []
    remove: list[str] = []
    for op in ops:
        sign, name = op[:1], op[1:]
        tags = normalise_tags(name) if sign in ("+", "-") else []
        if not tags:
            raise InvalidChange(f"--tag {op!r}: expected +TAG to add it or -TAG to remove it")
        (add if sign == "+" else remove).extend(tags)
    return add, remove


def qualified_values(contact: Contact, assignments: dict[str, str], config: Config) -> dict[str, Any]:
    """Each field's new value, cleaned and checked as the importer does; ``InvalidChange`` names
    the first value refused. An empty value clears the field."""
    q_cfg = config.qualification
    rules = Rules(q_cfg.default_region.upper(), q_cfg.check_deliverability, tuple(config.kinds))
    country = assignments.get("country", contact.country) or None
    values: dict[str, Any] = {}
    for field, raw in assignments.items():
        if not raw.strip():
            values[field] = None
            continue
        q = qualify({"email": PLACEHOLDER, "country": country, field: raw}, rules)
        assert isinstance(q, Qualified)
        dropped = _DROPPED.get(field)
        issue = next((i for i in q.issues if dropped and i.startswith(f"{dropped} dropped")), None)
        if issue:
            raise InvalidChange(f"{field}={raw!r}: {issue.partition(': ')[2]}")
        value = getattr(q, field)
        if field == "siret" and value is None:
            raise InvalidChange(f"{field}={raw!r}: a SIRET has 14 digits (this is a SIREN)")
        if field == "stage" and value not in config.stages:
            raise InvalidChange(f"stage={raw!r}: unknown stage; expected one of {', '.join(config.stages)}")
        values[field] = value
    return values


def apply_changes(
    session: Session,
    contact: Contact,
    values: dict[str, Any],
    tags: tuple[list[str], list[str]],
    *,
    actor: str,
) -> list[Change]:
    """Set the values that differ and the tags, one ``contact.updated`` audit line per field
    (old → new). Returns the changes; none when everything already held."""
    changes = [Change(f, getattr(contact, f), v) for f, v in values.items() if getattr(contact, f) != v]
    add, remove = tags
    old_tags = list(contact.tags or [])
    new_tags = [t for t in old_tags if t not in remove] + [t for t in dict.fromkeys(add) if t not in old_tags]
    if new_tags != old_tags:
        changes.append(Change("tags", old_tags, new_tags))
    if not changes:
        return []
    at = utcnow()
    for c in changes:
        setattr(contact, c.field, c.new)
        session.add(
            AuditLog(
                at=at,
                actor=actor,
                action="contact.updated",
                contact_id=contact.id,
                detail={"field": c.field, "old": c.old, "new": c.new},
            )
        )
    contact.updated_at, contact.version = at, contact.version + 1
    session.add(contact)
    log.info("contact.edited", contact_id=contact.id, fields=[c.field for c in changes], actor=actor)
    return changes


def memberships_of(session: Session, contact: Contact) -> dict[str, str]:
    rows = session.exec(select(Membership).where(Membership.contact_id == contact.id)).all()
    return {m.list_name: m.status for m in rows}


def subscribe(
    session: Session,
    config: Config,
    contact: Contact,
    list_name: str,
    *,
    consent: str,
    evidence: str | None,
    source: str,
) -> Membership:
    """Join ``list_name`` on an opt-in the operator records (``single_opt_in``), or start a double
    opt-in (``double_opt_in``: the membership is pending until the contact confirms by mail).

    Refused: an address bounced, complained or invalid; a contact outside the list's segment or
    kept out by ``exclusive_with``; a double opt-in asked of a list that does not take one. A
    contact who left the list or opted out of everything comes back only on a new opt-in, which
    ``evidence`` must describe."""
    lst = config.list(list_name)
    if consent == "double_opt_in" and lst.consent != "double_opt_in":
        raise Refused(
            f"list {list_name!r} takes {lst.consent.replace('_', ' ')}, not double opt-in: confirmation "
            "mails go out only for double_opt_in lists (use --consent single_opt_in)"
        )
    if contact.email_status in UNREACHABLE:
        raise Refused(f"the address is {contact.email_status}: it is kept off every list")
    why = segment_mismatch(lst.segment, contact)
    if why:
        raise Refused(f"not in the segment of {list_name!r} ({why})")
    held = memberships_of(session, contact)
    admitted = eligibility(list_name, lst, contact, held, config.lists)
    exclusive = [r for r in admitted.reasons if r.startswith("exclusive with")]
    if exclusive:
        raise Refused(f"kept out of {list_name!r}: {exclusive[0]} (its exclusive_with rule)")
    left = held.get(list_name) in (MembershipStatus.UNSUBSCRIBED, MembershipStatus.CLEANED)
    if (left or contact.global_opt_out) and not evidence:
        what = f"left {list_name!r}" if left else "opted out of everything"
        raise Refused(
            f"the contact {what}: only a new opt-in brings them back; say what it is with --evidence"
        )
    proof = {"recorded_by": source, **({"evidence": evidence} if evidence else {})}
    joined = join_list(
        session, contact, list_name, lst, consent="single_opt_in", source=source, evidence=proof
    )
    log.info("contact.subscribed_by_hand", contact_id=contact.id, list=list_name, status=joined.status)
    return joined
