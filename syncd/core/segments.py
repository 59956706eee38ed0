"""List rules: who may, and who must, be in a list (pure; DESIGN §1, §5).

``matches`` says whether a contact falls in a list's segment; ``eligibility`` adds the rest of
the list rules (exclusivity, bounces, complaints, opt-outs, having left the list) and says
why not, in words a marketer can read in a dry-run sample.

Everything here works on ``ContactFacts``, a frozen snapshot of a ``Contact`` row, so that the
sync engine can read a page of contacts, close the session, and decide at leisure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syncd.config import ListConfig, Segment

# Membership statuses that count as "in the list" (for exclusivity).
ACTIVE = frozenset({"pending", "subscribed"})


@dataclass(frozen=True)
class ContactFacts:
    """What the list rules, the planner and the reconciler read of a contact."""

    email: str
    id: int | None = None
    email_status: str = "valid"
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    company: str | None = None
    kind: str | None = None
    stage: str | None = None
    tags: tuple[str, ...] = ()
    country: str | None = None
    region: str | None = None
    city: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    global_opt_out: bool = False
    opt_out_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def of(cls, contact: Any) -> ContactFacts:
        """A snapshot of a ``Contact`` (or anything with its attributes)."""
        if isinstance(contact, ContactFacts):
            return contact
        return cls(
            email=contact.email,
            id=contact.id,
            email_status=str(contact.email_status or "valid"),
            first_name=contact.first_name,
            last_name=contact.last_name,
            phone=contact.phone,
            company=contact.company,
            kind=contact.kind,
            stage=contact.stage,
            tags=tuple(contact.tags or ()),
            country=contact.country,
            region=contact.region,
            city=contact.city,
            attributes=dict(contact.attributes or {}),
            global_opt_out=bool(contact.global_opt_out),
            opt_out_at=contact.opt_out_at,
            updated_at=contact.updated_at,
        )


@dataclass(frozen=True)
class Eligibility:
    """``may``: the contact may be in the list. ``must``: it is auto-enrolled (no opt-in needed).

    ``reasons`` says why not, most important first; empty when ``may`` is true.
    """

    may: bool
    must: bool
    reasons: tuple[str, ...] = ()


def _fold(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip().casefold()


def _show(values: list[str]) -> str:
    return " or ".join(values) if values else "nothing"


def segment_mismatch(segment: Segment | None, contact: Any) -> str | None:
    """The first reason ``contact`` is outside ``segment``, or None when it matches.

    kind, stage, email_status and tags compare exactly (they come from the config's
    vocabulary); country, region, city and attribute values compare case-insensitively.
    A key absent from the segment does not constrain; an empty list matches no one.
    """
    if segment is None:
        return None
    for name in ("kind", "stage", "email_status"):
        wanted = getattr(segment, name)
        have = getattr(contact, name, None)
        if wanted is not None and have not in wanted:
            return f"{name} is {have or 'unset'}, list wants {_show(wanted)}"
    for name in ("country", "region", "city"):
        wanted = getattr(segment, name)
        have = getattr(contact, name, None)
        if wanted is not None and (have is None or _fold(have) not in {_fold(w) for w in wanted}):
            return f"{name} is {have or 'unset'}, list wants {_show(wanted)}"
    why = _tags_mismatch(segment, set(getattr(contact, "tags", None) or ()))
    if why:
        return why
    for name, wanted in (segment.attributes or {}).items():
        have = (getattr(contact, "attributes", None) or {}).get(name)
        values = have if isinstance(have, list | tuple | set) else ([] if have is None else [have])
        if not {_fold(v) for v in values} & {_fold(w) for w in wanted}:
            return f"attribute {name} is {have if have is not None else 'unset'}, list wants {_show(wanted)}"
    if segment.not_ is not None and segment_mismatch(segment.not_, contact) is None:
        return "matches the segment's 'not' rule"
    return None


def _tags_mismatch(segment: Segment, tags: set[str]) -> str | None:
    rule = segment.tags
    if rule is None:
        return None
    if rule.any is not None and not tags & set(rule.any):
        return f"has none of the tags {', '.join(rule.any) or '(none)'}"
    if rule.all is not None and not set(rule.all) <= tags:
        return f"lacks the tags {', '.join(sorted(set(rule.all) - tags))}"
    if rule.none is not None and tags & set(rule.none):
        return f"has the excluded tags {', '.join(sorted(tags & set(rule.none)))}"
    return None


def matches(segment: Segment | None, contact: Any) -> bool:
    """Whether ``contact`` falls in ``segment``. A missing segment means everyone."""
    return segment_mismatch(segment, contact) is None


def consent_blockers(contact: Any) -> tuple[str, ...]:
    """Facts about the address or the person that keep it out of every list (rule 1)."""
    out = []
    status = getattr(contact, "email_status", None)
    if status == "bounced":
        out.append("bounced")
    elif status == "complained":
        out.append("complained")
    elif status == "invalid":
        out.append("address invalid")
    if getattr(contact, "global_opt_out", False):
        out.append("opted out of everything")
    return tuple(out)


def left_list(membership_status: str | None) -> tuple[str, ...]:
    """A membership that keeps the contact out of its own list: it unsubscribed, or was cleaned."""
    reason = {"unsubscribed": "unsubscribed from this list", "cleaned": "cleaned from this list"}
    return (reason[membership_status],) if membership_status in reason else ()


def auto_enrolled(list_cfg: ListConfig) -> bool:
    """Lists whose segment *is* the membership: only legitimate interest allows it (LESSONS 4)."""
    return list_cfg.auto_enroll and list_cfg.consent == "legitimate_interest"


def _in_list(name: str, cfg: ListConfig | None, contact: Any, memberships: Mapping[str, str]) -> bool:
    status = memberships.get(name)
    if status is not None:
        return status in ACTIVE
    return (
        cfg is not None
        and auto_enrolled(cfg)
        and not consent_blockers(contact)
        and matches(cfg.segment, contact)
    )


def eligibility(
    list_name: str,
    list_cfg: ListConfig,
    contact: Any,
    memberships: Mapping[str, str],
    all_lists: Mapping[str, ListConfig],
) -> Eligibility:
    """May ``contact`` be in ``list_name``, and is it enrolled without asking?

    ``memberships`` maps list name → membership status (absent: no row). ``exclusive_with`` is
    one-way: the list that declares it yields to the other list (``vendors: exclusive_with:
    [newsletter-clients]`` keeps newsletter clients out of vendors, not the reverse), so two
    lists never push a contact out of each other. A contact auto-enrolled in the other list
    without a membership row counts as in it.
    """
    reasons = [*consent_blockers(contact), *left_list(memberships.get(list_name))]
    why = segment_mismatch(list_cfg.segment, contact)
    if why:
        reasons.append(f"not in segment ({why})")
    for other in list_cfg.exclusive_with:
        if other != list_name and _in_list(other, all_lists.get(other), contact, memberships):
            reasons.append(f"exclusive with {other}")
    may = not reasons
    return Eligibility(may=may, must=may and auto_enrolled(list_cfg), reasons=tuple(reasons))


def lacks_proof(
    list_cfg: ListConfig,
    membership_status: str | None,
    since: datetime | None,
    confirmed_at: datetime | None,
) -> bool:
    """Whether a subscribed member of a double-opt-in list holds no proof of it (LESSONS 13).

    The proof is a ``doi_confirmed`` Consent row for this very list, recorded no earlier than the
    membership's ``since`` (the confirmation that made it subscribed; ``confirmed_at`` is the
    latest such row's time, None if there is none). A confirmation given before a later opt-out
    and re-joining does not count; a single opt-in, an import or a provider's evidence never
    does. So a list switched from ``single_opt_in`` to ``double_opt_in`` keeps only the members
    who confirmed; the others are asked again.
    """
    if list_cfg.consent != "double_opt_in" or membership_status != "subscribed":
        return False
    if confirmed_at is None:
        return True
    return since is not None and confirmed_at < since
