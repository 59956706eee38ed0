"""One contact's history, oldest first, read from what the master base already keeps: where they
came from (``Source``), the consent ledger (``Consent``), the audit trail (``AuditLog``), what was
pushed to each provider (``TargetState``) and the team's notes (``Note``).

Each audit action the code writes maps to a kind here, with a summary in plain English, so that
the team console and ``syncd contacts show --timeline`` tell the same story. Nothing is written:
the timeline is a reading of rows other modules own. It names no other contact's address and no
secret (a former or new address appears only as the hash the audit trail keeps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from connectors.contract import EventKind
from syncd.contacts import gdpr
from syncd.models import AuditLog, Consent, Contact, Note, Source, TargetState

# The kinds of entry, in the order entries of the same instant are shown (a list join written
# with its consent reads consent first, then the membership it gave).
KINDS = ("source", "consent", "membership", "provider_event", "change", "note", "push")
_RANK = {kind: i for i, kind in enumerate(KINDS)}

WEBHOOK = "webhook:"  # the actor of what a provider reported (``syncd.inbound.apply.reported_by``)
EVENT_KINDS = frozenset(k.value for k in EventKind)
PROVIDER_NAMES = {"brevo": "Brevo", "mailchimp": "Mailchimp"}


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened to a contact. ``detail`` is JSON-ready (strings, numbers, lists)."""

    at: datetime
    kind: str
    summary: str
    actor: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """For ``--format json`` and the web: the time as ISO 8601."""
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "summary": self.summary,
            "actor": self.actor,
            "detail": self.detail,
        }


def timeline(session_or_engine: Session | Engine, email: str) -> list[TimelineEntry] | None:
    """Everything that happened to the contact of ``email``, oldest first; None when no contact
    holds the address (never known, or erased)."""
    if not isinstance(session_or_engine, Engine):
        return _timeline(session_or_engine, email)
    with Session(session_or_engine) as session:
        return _timeline(session, email)


def _timeline(session: Session, email: str) -> list[TimelineEntry] | None:
    contact = gdpr.find_contact(session, email)
    if contact is None:
        return None
    ranked: list[tuple[datetime, int, int, TimelineEntry]] = []
    for reader in (_sources, _consents, _audit, _notes, _pushes):
        for entry in reader(session, contact):
            ranked.append((entry.at, _RANK[entry.kind], len(ranked), entry))
    ranked.sort(key=lambda r: r[:3])
    return [r[3] for r in ranked]


def _rows(session: Session, model: Any, contact: Contact) -> list[Any]:
    return list(session.exec(select(model).where(model.contact_id == contact.id).order_by(model.id)).all())


# --- provenance --------------------------------------------------------------------------------------


def _sources(session: Session, contact: Contact) -> Iterator[TimelineEntry]:
    for s in _rows(session, Source, contact):
        detail = {"channel": s.channel, "detail": s.detail, "row": s.row}
        yield TimelineEntry(s.at, "source", _source_summary(s), None, detail)


def _source_summary(s: Source) -> str:
    if s.channel.startswith("provider:"):
        target = s.channel.removeprefix("provider:")
        if s.detail == "webhook":
            return f"came from {target} (a webhook named them)"
        return f"found on {target}" + (f" (list {s.detail})" if s.detail else "") + ", kept without consent"
    where = f" from {s.detail}" if s.detail else ""
    row = f", row {s.row}" if s.row else ""
    return f"imported{where} (channel {s.channel}{row})"


# --- the consent ledger ----------------------------------------------------------------------------


def _consents(session: Session, contact: Contact) -> Iterator[TimelineEntry]:
    for c in _rows(session, Consent, contact):
        detail = {
            "action": c.action,
            "list": c.list_name,
            "wording": c.wording,
            "ip": c.ip,
            "user_agent": c.user_agent,
            "token_hash": c.token_hash,
            "evidence": dict(c.evidence or {}),
        }
        yield TimelineEntry(c.at, "consent", _consent_summary(c), c.source, detail)


def _consent_summary(c: Consent) -> str:
    lst = f"list {c.list_name}" if c.list_name else "every list"
    reason = (c.evidence or {}).get("reason")
    if c.source and c.source.startswith(WEBHOOK):
        reason = _provider_reason(reason)
    because = f": {reason}" if reason else ""
    wording = f" (wording {c.wording})" if c.wording else ""
    if c.action == "opt_in":
        return f"opted in to {lst}"
    if c.action == "doi_requested":
        what = "reminder" if c.source == "doi:reminder" else "confirmation request"
        return f"double opt-in {what} mailed for {lst}{wording}"
    if c.action == "doi_confirmed":
        ip = f" from {c.ip}" if c.ip else ""
        return f"confirmed the double opt-in for {lst}{ip}{wording}"
    if c.action == "opt_out":
        return f"withdrew consent for {lst}{because}"
    if c.action == "complaint":
        return f"complained (spam report): consent withdrawn for every list{because}"
    if c.action == "provider_evidence":
        ip = f", IP {c.ip}" if c.ip else ""
        return f"opt-in proof held by the provider for {lst}{ip}"
    return f"{c.action.replace('_', ' ')} for {lst}"


# --- the audit trail ---------------------------------------------------------------------------------

# A note's audit line only says a note was added: the ``note`` entry comes from the note itself.
SHOWN_ELSEWHERE = frozenset({"contact.note_added"})


def _audit(session: Session, contact: Contact) -> Iterator[TimelineEntry]:
    for a in _rows(session, AuditLog, contact):
        if a.action in SHOWN_ELSEWHERE:
            continue
        detail = dict(a.detail or {})
        kind, summary = describe(a.action, a.actor, detail)
        yield TimelineEntry(a.at, kind, summary, a.actor, detail)


def describe(action: str, actor: str, detail: dict[str, Any]) -> tuple[str, str]:
    """The kind and English summary of one audit line. What a provider reported (actor
    ``webhook:<provider>``) is a ``provider_event`` whatever it changed; an action nobody
    described yet still shows, as a ``change``."""
    if actor.startswith(WEBHOOK):
        provider = actor.removeprefix(WEBHOOK)
        return "provider_event", _provider_summary(PROVIDER_NAMES.get(provider, provider), action, detail)
    if action in _MEMBERSHIP:
        return "membership", _MEMBERSHIP[action](detail)
    if action in _PUSH:
        return "push", _PUSH[action](detail)
    if action in _CHANGE:
        return "change", _CHANGE[action](detail)
    return "change", action.replace(".", " ").replace("_", " ")


def _reason(detail: dict[str, Any]) -> str:
    return f": {detail['reason']}" if detail.get("reason") else ""


def _list(detail: dict[str, Any]) -> str:
    return str(detail.get("list_name") or "a list")


_MEMBERSHIP: dict[str, Callable[[dict[str, Any]], str]] = {
    "list.subscribed": lambda d: f"joined {_list(d)}",
    "list.pending": lambda d: f"waiting for a double opt-in confirmation on {_list(d)}{_reason(d)}",
    "list.unsubscribed": lambda d: f"left {_list(d)}{_reason(d)}",
    "list.cleaned": lambda d: f"cleaned from {_list(d)}{_reason(d)}",
    "contact.opted_out": lambda d: (
        ("complained (spam report): off every list" if d.get("complaint") else "unsubscribed from everything")
        + _reason(d)
    ),
    "contact.bounced": lambda d: "address bounced: off every list",
}

_PUSH: dict[str, Callable[[dict[str, Any]], str]] = {
    "contact.block_lifted": lambda d: (
        f"block lifted at {PROVIDER_NAMES.get(d.get('provider', ''), d.get('provider', 'the provider'))}"
        + (f" ({d['target']}): a new opt-in answers the earlier opt-outs" if d.get("target") else "")
    ),
}


def _value(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "(empty)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _changed(field_name: Any, old: Any, new: Any) -> str:
    return f"{field_name}: {_value(old)} → {_value(new)}"


def _from_file(d: dict[str, Any]) -> str:
    row = f" row {d['row']}" if d.get("row") else ""
    return f"import of {d.get('file') or 'a file'}{row}"


_CHANGE: dict[str, Callable[[dict[str, Any]], str]] = {
    "contact.updated": lambda d: (
        _changed(d.get("field"), d.get("old"), d.get("new"))
        if "field" in d
        else "changed " + ", ".join(d.get("fields") or ["fields"])
    ),
    "import.updated": lambda d: (
        f"{_from_file(d)} changed "
        + "; ".join(_changed(c.get("field"), c.get("old"), c.get("new")) for c in d.get("changes") or [])
    ),
    "import.conflict": lambda d: (
        f"{_from_file(d)} offered other values, the base kept its own: "
        + "; ".join(
            f"{c.get('field')} kept {_value(c.get('kept'))}, file had {_value(c.get('offered'))}"
            for c in d.get("conflicts") or []
        )
    ),
    "contact.imported_from_provider": lambda d: (
        f"created from a member of {d.get('target') or 'a provider list'} the base did not hold"
    ),
    "contact.created": lambda d: f"created (channel {d.get('channel') or '-'})",
    "contact.forgotten": lambda d: "erased at the contact's request",
}


def _provider_summary(name: str, action: str, detail: dict[str, Any]) -> str:
    d = dict(detail, reason=_provider_reason(detail.get("reason")))
    if action == "list.unsubscribed":
        return f"{name}: unsubscribed from {_list(d)}{_reason(d)}"
    if action in ("list.subscribed", "list.pending"):
        return f"{name}: subscribed to {_list(d)}" + (
            " (waiting for confirmation)" if "pending" in action else ""
        )
    if action == "contact.opted_out":
        what = "spam complaint, off every list" if d.get("complaint") else "unsubscribed from everything"
        return f"{name}: {what}{_reason(d)}"
    if action == "contact.bounced":
        return f"{name}: hard bounce, off every list"
    if action == "contact.soft_bounce":
        return f"{name}: soft bounce (the address is kept){_reason(d)}"
    if action == "contact.updated":
        return f"{name}: profile edited (" + ", ".join(d.get("fields") or []) + ")"
    if action == "contact.email_changed":
        return f"{name}: address changed"
    if action == "contact.email_change_refused":
        return f"{name}: address change refused{_reason(d)}"
    if action == "contact.created":
        return f"{name}: contact created from its webhook (channel {d.get('channel') or '-'})"
    return f"{name}: {action.replace('.', ' ').replace('_', ' ')}{_reason(d)}"


def _provider_reason(reason: Any) -> str | None:
    """The provider's own words: inbound apply prefixes the event's kind ("unsubscribed: ...")."""
    if not reason:
        return None
    head, sep, tail = str(reason).partition(": ")
    if head in EVENT_KINDS:
        return tail or None
    return str(reason)


# --- notes and pushes --------------------------------------------------------------------------------


def _notes(session: Session, contact: Contact) -> Iterator[TimelineEntry]:
    for n in _rows(session, Note, contact):
        detail = {"channel": n.channel, "text": n.summary}
        yield TimelineEntry(n.at, "note", f"{n.channel} note: {n.summary}", n.author, detail)


def _pushes(session: Session, contact: Contact) -> Iterator[TimelineEntry]:
    for t in _rows(session, TargetState, contact):
        if t.pushed_at is None:
            continue
        status = f", {t.remote_status} there" if t.remote_status else ""
        detail = {"target": t.target_key, "list": t.list_name, "remote_status": t.remote_status}
        yield TimelineEntry(
            t.pushed_at,
            "push",
            f"pushed to {t.target_key} (list {t.list_name}){status}",
            f"sync:{t.list_name}",
            detail,
        )
