"""One contact's history, oldest first, read from what the master base already keeps: where they
came from (``Source``), the consent ledger (``Consent``), the audit trail (``AuditLog``), what was
pushed to each provider (``TargetState``) and the team's notes (``Note``).

Each audit action the code writes maps to a kind here, with a summary, so that the team console and
``syncd contacts show --timeline`` tell the same story. A summary is first a ``Message`` (a key and
its parameters), then put in words in French or English from the one table
``syncd.web.wording.TIMELINE_TEXT``; what the rows hold (list names, reasons, a note's text) is shown
as recorded. Nothing is written: the timeline is a reading of rows other modules own. It names no
other contact's address and no secret (a former or new address appears only as the hash the audit
trail keeps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from connectors.contract import EventKind
from syncd.contacts import gdpr
from syncd.models import AuditLog, Consent, Contact, Note, Source, TargetState
from syncd.web.wording import LANGUAGES, TIMELINE_TEXT

# The kinds of entry, in the order entries of the same instant are shown (a list join written
# with its consent reads consent first, then the membership it gave).
KINDS = ("source", "consent", "membership", "provider_event", "change", "note", "push")
_RANK = {kind: i for i, kind in enumerate(KINDS)}

WEBHOOK = "webhook:"  # the actor of what a provider reported (``syncd.inbound.apply.reported_by``)
EVENT_KINDS = frozenset(k.value for k in EventKind)
PROVIDER_NAMES = {"brevo": "Brevo", "mailchimp": "Mailchimp"}


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened to a contact. ``detail`` is JSON-ready (strings, numbers, lists);
    ``summary`` is ``message`` in the timeline's language."""

    at: datetime
    kind: str
    summary: str
    actor: str | None
    detail: dict[str, Any] = field(default_factory=dict)
    message: Message | None = None

    def as_dict(self) -> dict[str, Any]:
        """For ``--format json`` and the web: the time as ISO 8601."""
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "summary": self.summary,
            "actor": self.actor,
            "detail": self.detail,
        }


class Found(NamedTuple):
    """An entry as a reader finds it, before its summary is put in words."""

    at: datetime
    kind: str
    message: Message
    actor: str | None
    detail: dict[str, Any]


def timeline(session_or_engine: Session | Engine, email: str, lang: str = "en") -> list[TimelineEntry] | None:
    """Everything that happened to the contact of ``email``, oldest first, told in ``lang``
    (``fr`` or ``en``); None when no contact holds the address (never known, or erased)."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(LANGUAGES)}")
    if not isinstance(session_or_engine, Engine):
        return _timeline(session_or_engine, email, lang)
    with Session(session_or_engine) as session:
        return _timeline(session, email, lang)


def _timeline(session: Session, email: str, lang: str) -> list[TimelineEntry] | None:
    contact = gdpr.find_contact(session, email)
    if contact is None:
        return None
    ranked: list[tuple[datetime, int, int, Found]] = []
    for reader in (_sources, _consents, _audit, _notes, _pushes):
        for found in reader(session, contact):
            ranked.append((found.at, _RANK[found.kind], len(ranked), found))
    ranked.sort(key=lambda r: r[:3])
    return [
        TimelineEntry(f.at, f.kind, f.message.render(lang), f.actor, f.detail, f.message) for *_, f in ranked
    ]


def _rows(session: Session, model: Any, contact: Contact) -> list[Any]:
    return list(session.exec(select(model).where(model.contact_id == contact.id).order_by(model.id)).all())


# --- the wording ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A summary before it is put in words: a key of ``TIMELINE_TEXT`` and its parameters. A
    parameter is plain data (shown as recorded), another ``Message``, or ``Many`` of them."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)

    def render(self, lang: str) -> str:
        return TIMELINE_TEXT[lang][self.key].format(**{k: _words(v, lang) for k, v in self.params.items()})

    def keys(self) -> Iterator[str]:
        """This message's key and those of the messages in its parameters."""
        yield self.key
        for value in self.params.values():
            for part in value.items if isinstance(value, Many) else (value,):
                if isinstance(part, Message):
                    yield from part.keys()


@dataclass(frozen=True)
class Many:
    """Several parameters shown as one, joined by ``sep``."""

    items: tuple[Any, ...]
    sep: str = ", "


def _words(value: Any, lang: str) -> str:
    if isinstance(value, Message):
        return value.render(lang)
    if isinstance(value, Many):
        return value.sep.join(_words(v, lang) for v in value.items)
    return str(value)


def _msg(key: str, **params: Any) -> Message:
    return Message(key, params)


def _maybe(key: str, **params: Any) -> Message | str:
    """An optional fragment: the message when every parameter holds something, nothing otherwise."""
    return _msg(key, **params) if all(params.values()) else ""


# --- provenance --------------------------------------------------------------------------------------


def _sources(session: Session, contact: Contact) -> Iterator[Found]:
    for s in _rows(session, Source, contact):
        detail = {"channel": s.channel, "detail": s.detail, "row": s.row}
        yield Found(s.at, "source", _source_summary(s), None, detail)


def _source_summary(s: Source) -> Message:
    if s.channel.startswith("provider:"):
        target = s.channel.removeprefix("provider:")
        if s.detail == "webhook":
            return _msg("source.webhook", target=target)
        if s.detail:
            return _msg("source.provider_list", target=target, list=s.detail)
        return _msg("source.provider", target=target)
    return _msg(
        "source.import",
        where=_maybe("source.from", file=s.detail),
        channel=s.channel,
        row=_maybe("source.row", row=s.row),
    )


# --- the consent ledger ----------------------------------------------------------------------------


def _consents(session: Session, contact: Contact) -> Iterator[Found]:
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
        yield Found(c.at, "consent", _consent_summary(c), c.source, detail)


_CONSENTS = {
    "opt_in": "consent.opt_in",
    "doi_confirmed": "consent.doi_confirmed",
    "opt_out": "consent.opt_out",
    "complaint": "consent.complaint",
    "provider_evidence": "consent.provider_evidence",
}
_WITH_IP = frozenset({"doi_confirmed", "provider_evidence"})  # their summaries say where from


def _consent_summary(c: Consent) -> Message:
    lst = _msg("consent.list", name=c.list_name) if c.list_name else _msg("consent.every_list")
    reason = (c.evidence or {}).get("reason")
    if c.source and c.source.startswith(WEBHOOK):
        reason = _provider_reason(reason)
    params = {
        "list": lst,
        "reason": _maybe("reason", reason=reason),
        "wording": _maybe("consent.wording", wording=c.wording),
    }
    if c.action == "doi_requested":
        key = "consent.doi_reminder" if c.source == "doi:reminder" else "consent.doi_requested"
        return Message(key, params)
    if c.action in _CONSENTS:
        key = _CONSENTS[c.action]
        ip = _maybe(f"{key}.ip", ip=c.ip) if c.action in _WITH_IP else ""
        return Message(key, {**params, "ip": ip})
    return _msg("consent.other", action=c.action.replace("_", " "), list=lst)


# --- the audit trail ---------------------------------------------------------------------------------

# A note's audit line only says a note was added: the ``note`` entry comes from the note itself.
SHOWN_ELSEWHERE = frozenset({"contact.note_added"})


def _audit(session: Session, contact: Contact) -> Iterator[Found]:
    for a in _rows(session, AuditLog, contact):
        if a.action in SHOWN_ELSEWHERE:
            continue
        detail = dict(a.detail or {})
        kind, message = describe_message(a.action, a.actor, detail)
        yield Found(a.at, kind, message, a.actor, detail)


def describe(action: str, actor: str, detail: dict[str, Any], lang: str = "en") -> tuple[str, str]:
    """The kind and summary of one audit line, in ``lang`` (``describe_message`` put in words)."""
    kind, message = describe_message(action, actor, detail)
    return kind, message.render(lang)


def describe_message(action: str, actor: str, detail: dict[str, Any]) -> tuple[str, Message]:
    """The kind and summary of one audit line. What a provider reported (actor
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
    return "change", _msg("change.other", what=action.replace(".", " ").replace("_", " "), action=action)


def _reason(detail: dict[str, Any]) -> Message | str:
    return _maybe("reason", reason=detail.get("reason"))


def _list(detail: dict[str, Any]) -> Message:
    name = detail.get("list_name")
    return _msg("list", name=name) if name else _msg("list.unknown")


_MEMBERSHIP: dict[str, Callable[[dict[str, Any]], Message]] = {
    "list.subscribed": lambda d: _msg("list.subscribed", list=_list(d)),
    "list.pending": lambda d: _msg("list.pending", list=_list(d), reason=_reason(d)),
    "list.unsubscribed": lambda d: _msg("list.unsubscribed", list=_list(d), reason=_reason(d)),
    "list.cleaned": lambda d: _msg("list.cleaned", list=_list(d), reason=_reason(d)),
    "contact.opted_out": lambda d: _msg(
        "contact.complained" if d.get("complaint") else "contact.opted_out", reason=_reason(d)
    ),
    "contact.bounced": lambda d: _msg("contact.bounced"),
}


def _block_lifted(d: dict[str, Any]) -> Message:
    provider = d.get("provider")
    name = PROVIDER_NAMES.get(provider, provider) if provider else _msg("block_lifted.provider")
    if d.get("target"):
        return _msg("block_lifted.target", provider=name, target=d["target"])
    return _msg("block_lifted", provider=name)


_PUSH: dict[str, Callable[[dict[str, Any]], Message]] = {"contact.block_lifted": _block_lifted}


def _value(value: Any) -> Message | str:
    if value is None or value == "" or value == []:
        return _msg("value.empty")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _changed(field_name: Any, old: Any, new: Any) -> Message:
    return _msg("value.changed", field=field_name, old=_value(old), new=_value(new))


def _from_file(d: dict[str, Any]) -> Message:
    file = d.get("file") or _msg("import.a_file")
    return _msg("import.of", file=file, row=_maybe("import.row", row=d.get("row")))


def _updated(d: dict[str, Any]) -> Message:
    if "field" in d:
        return _changed(d.get("field"), d.get("old"), d.get("new"))
    fields = d.get("fields")
    return _msg("contact.updated", fields=", ".join(fields) if fields else _msg("contact.updated.some"))


_CHANGE: dict[str, Callable[[dict[str, Any]], Message]] = {
    "contact.updated": _updated,
    "import.updated": lambda d: _msg(
        "import.updated",
        file=_from_file(d),
        changes=Many(
            tuple(_changed(c.get("field"), c.get("old"), c.get("new")) for c in d.get("changes") or []), "; "
        ),
    ),
    "import.conflict": lambda d: _msg(
        "import.conflict",
        file=_from_file(d),
        conflicts=Many(
            tuple(
                _msg(
                    "import.kept",
                    field=c.get("field"),
                    kept=_value(c.get("kept")),
                    offered=_value(c.get("offered")),
                )
                for c in d.get("conflicts") or []
            ),
            "; ",
        ),
    ),
    "contact.imported_from_provider": lambda d: _msg(
        "contact.imported_from_provider", target=d.get("target") or _msg("contact.a_provider_list")
    ),
    "contact.created": lambda d: _msg("contact.created", channel=d.get("channel") or "-"),
    "contact.forgotten": lambda d: _msg("contact.forgotten"),
}

# What a provider reported, by the audit action it became.
_PROVIDER: dict[str, str] = {
    "list.unsubscribed": "provider.unsubscribed",
    "list.subscribed": "provider.subscribed",
    "list.pending": "provider.pending",
    "contact.bounced": "provider.bounced",
    "contact.soft_bounce": "provider.soft_bounce",
    "contact.email_changed": "provider.email_changed",
    "contact.email_change_refused": "provider.email_change_refused",
}


def _provider_summary(name: str, action: str, detail: dict[str, Any]) -> Message:
    d = dict(detail, reason=_provider_reason(detail.get("reason")))
    params: dict[str, Any] = {"provider": name, "list": _list(d), "reason": _reason(d)}
    if action == "contact.opted_out":
        return Message("provider.complained" if d.get("complaint") else "provider.opted_out", params)
    if action == "contact.updated":
        return Message("provider.updated", {**params, "fields": ", ".join(d.get("fields") or [])})
    if action == "contact.created":
        return Message("provider.created", {**params, "channel": d.get("channel") or "-"})
    if action in _PROVIDER:
        return Message(_PROVIDER[action], params)
    return Message(
        "provider.other", {**params, "what": action.replace(".", " ").replace("_", " "), "action": action}
    )


def _provider_reason(reason: Any) -> str | None:
    """The provider's own words: inbound apply prefixes the event's kind ("unsubscribed: ...")."""
    if not reason:
        return None
    head, sep, tail = str(reason).partition(": ")
    if head in EVENT_KINDS:
        return tail or None
    return str(reason)


# --- notes and pushes --------------------------------------------------------------------------------


def _notes(session: Session, contact: Contact) -> Iterator[Found]:
    for n in _rows(session, Note, contact):
        detail = {"channel": n.channel, "text": n.summary}
        channel = _msg(f"note.{n.channel}") if f"note.{n.channel}" in TIMELINE_TEXT["en"] else n.channel
        yield Found(n.at, "note", _msg("note", channel=channel, text=n.summary), n.author, detail)


def _pushes(session: Session, contact: Contact) -> Iterator[Found]:
    for t in _rows(session, TargetState, contact):
        if t.pushed_at is None:
            continue
        detail = {"target": t.target_key, "list": t.list_name, "remote_status": t.remote_status}
        status = _maybe("push.status", status=t.remote_status)
        message = _msg("push", target=t.target_key, list=t.list_name, status=status)
        yield Found(t.pushed_at, "push", message, f"sync:{t.list_name}", detail)
