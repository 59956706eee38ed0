"""Personal data in the webhook inbox: the raw bodies are kept only as long as they are useful.

A delivery's body is kept raw so that an event parsed wrongly can be replayed after a fix (STYLE 13),
but it names people. Three rules bound it; each keeps the row itself (status, dedupe key, times), so
that a redelivery is still recognised as a duplicate:

- ``purge``: an applied delivery (``done``, ``ignored``) loses its body once ``inbox.retention`` has
  passed since it was applied, and at once if it names an erased address. Rows waiting to be applied
  (``new``) and dead letters (kept for ``requeue``) keep theirs.
- ``scrub_address`` (erasure): every stored body naming the address is blanked; a delivery still to
  apply that also carries other people's events is applied first, then purged.
- ``intake_columns`` (a delivery arriving after the erasure): a body naming an erased address is
  never stored raw when nothing in it is left to apply; otherwise the drain blanks it as soon as it
  has applied it (``syncd.inbox``), as it does a delivery an erasure left to apply.

Bodies are raw JSON (Brevo) or form-encoded (Mailchimp): an address can appear in any case, with
``@`` as ``%40`` or ``\\u0040``, any character escaped. Matching is therefore done on the decoded
body, after a database pre-filter on the address's runs of ASCII letters and digits, the characters
that neither JSON nor form encoders escape (RFC 3986 §2.3: producers do not percent-encode them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from connectors.contract import ConnectorError, ProviderEvent
from syncd.db import erased_among
from syncd.log import get_logger
from syncd.models import InboxEvent, utcnow
from syncd.providers import Connectors

log = get_logger(__name__)

INBOX = InboxEvent.__table__  # type: ignore[attr-defined]
APPLIED = ("done", "ignored")
PURGED_BODY = json.dumps({"purged": "personal data removed after the retention period"})
ERASED_BODY = json.dumps({"scrubbed": "erased at the contact's request"})

# A stored delivery's events as its provider's connector reads them (None: it cannot be read).
Parse = Callable[[str, str, str], "list[ProviderEvent] | None"]


@dataclass
class Purged:
    retention: int = 0  # applied longer ago than the retention
    erased: int = 0  # applied, and naming an erased address

    @property
    def total(self) -> int:
        return self.retention + self.erased


def purge(engine: Engine, retention: timedelta, *, now: datetime | None = None) -> Purged:
    """Blank the bodies of deliveries applied more than ``retention`` ago, and of applied deliveries
    naming an erased address. Idempotent; the daemon runs it on a schedule."""
    now = now or utcnow()
    unpurged = (INBOX.c.purged_at.is_(None), INBOX.c.status.in_(APPLIED))
    blank = {"error": None, "purged_at": now}
    with engine.begin() as conn:
        erased = conn.execute(
            sa.update(INBOX)
            .where(*unpurged, INBOX.c.names_erased.is_(True))
            .values(payload=ERASED_BODY, **blank)
        ).rowcount
        old = conn.execute(
            sa.update(INBOX)
            .where(*unpurged, INBOX.c.processed_at < now - retention)
            .values(payload=PURGED_BODY, **blank)
        ).rowcount
    result = Purged(retention=old, erased=erased)
    log.info("inbox.purged", retention_days=retention.days, purged=old, erased=erased)
    return result


# --- which addresses a body names --------------------------------------------------------------

_SEPARATORS = r"\s<>()\[\]{},;:\""
# A token is tried only where one starts (after a separator): without the look-behind a long run
# of text with no "@" is rescanned from each of its characters, quadratic in the body's size.
_ADDRESS = re.compile(rf"(?<![^{_SEPARATORS}])[^{_SEPARATORS}@]++@[^{_SEPARATORS}]++")


def addresses_in(payload: str) -> set[str]:
    """Every address-shaped token of a stored body, lower-cased, whatever its encoding (JSON or form)."""
    found: set[str] = set()
    for text in _texts(payload):
        found.update(token.rstrip(".").lower() for token in _ADDRESS.findall(text))
    return found


def _texts(payload: str) -> Iterator[str]:
    yield payload
    try:
        doc = json.loads(payload)
    except ValueError:
        for pair in parse_qsl(payload, keep_blank_values=True):
            yield from pair
        return
    if "\\" in payload:
        # Without an escape, every JSON string stands verbatim between quotes (separators) in
        # the text already scanned: decoding it would find the same tokens again.
        yield from _strings(doc)


def _strings(doc: Any) -> Iterator[str]:
    if isinstance(doc, str):
        yield doc
    elif isinstance(doc, dict):
        for key, value in doc.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(doc, list):
        for item in doc:
            yield from _strings(item)


def _named(events: Sequence[ProviderEvent]) -> set[str]:
    return {e.email for e in events} | {e.new_email for e in events if e.new_email}


# --- a delivery arriving -----------------------------------------------------------------------


def intake_columns(
    conn: sa.Connection, events: Sequence[ProviderEvent], payload: str, at: datetime
) -> dict[str, Any]:
    """What to store instead of the raw row when a delivery names an erased address (empty: nothing).

    When every event is about erased addresses, nothing is left to apply (an erased contact is gone
    and never created again): the body is not kept at all. Otherwise (a Brevo batch that also
    carries someone else's event, a live contact's email change onto an erased address) the row is
    applied as usual and its body purged by the next ``purge``.
    """
    return intake_columns_of(erased_among(conn, named_in(events, payload)), events, at)


def named_in(events: Sequence[ProviderEvent], payload: str) -> set[str]:
    """Every address a delivery names: its events' and any address-shaped token of its body."""
    return _named(events) | addresses_in(payload)


def intake_columns_of(erased: set[str], events: Sequence[ProviderEvent], at: datetime) -> dict[str, Any]:
    """``intake_columns`` once the erased addresses among ``named_in`` are known (a writer storing
    several deliveries in one transaction asks the tombstones once for all of them)."""
    if not erased:
        return {}
    if all(e.email in erased for e in events):
        return {
            "payload": ERASED_BODY,
            "status": "ignored",
            "processed_at": at,
            "purged_at": at,
            "names_erased": True,
        }
    return {"names_erased": True}


# --- erasure -----------------------------------------------------------------------------------


@dataclass
class Scrubbed:
    blanked: int = 0  # bodies blanked now
    held: int = 0  # still to apply (they carry other people's events): blanked once applied


def scrub_address(session: Session, address: str, parse: Parse | None = None) -> Scrubbed:
    """Blank every stored body naming ``address`` (normalised), inside the caller's transaction.

    ``parse`` reads a delivery's events with its provider's connector: a delivery still to apply
    whose every event is about ``address`` is closed as ``ignored`` (nothing is left to apply); one
    that cannot be read, or that also carries other events, is applied first, then purged.
    """
    result = Scrubbed()
    now = utcnow()
    for row in _candidates(session, address):
        events = _events(parse, row) if parse else None
        if address not in addresses_in(row.payload) | _named(events or ()):
            continue
        values: dict[str, Any] = {"names_erased": True}
        only_theirs = events is not None and all(e.email == address for e in events)
        if row.status in APPLIED or only_theirs:
            values.update(payload=ERASED_BODY, error=None, purged_at=now)
            if row.status not in APPLIED:
                values.update(status="ignored", processed_at=now, next_attempt_at=None)
            result.blanked += 1
        else:
            result.held += 1
        session.execute(sa.update(INBOX).where(INBOX.c.id == row.id).values(values))
    return result


def _candidates(session: Session, address: str) -> Iterable[Any]:
    """Unpurged rows whose body holds every run of ASCII letters and digits of ``address``."""
    query = sa.select(
        INBOX.c.id, INBOX.c.provider, INBOX.c.content_type, INBOX.c.payload, INBOX.c.status
    ).where(INBOX.c.purged_at.is_(None))
    body = sa.func.lower(INBOX.c.payload)
    for run in set(re.findall(r"[a-z0-9]+", address.lower())):
        query = query.where(body.contains(run))
    return session.execute(query.order_by(INBOX.c.id)).all()


def _events(parse: Parse, row: Any) -> list[ProviderEvent] | None:
    try:
        return parse(row.provider, row.payload, row.content_type)
    except (ConnectorError, KeyError, ValueError):
        return None


def connector_parser(config: Any) -> Parse:
    """``Parse`` through the configured connectors (a provider not configured: unreadable)."""
    connectors = Connectors(config)

    def parse(provider: str, payload: str, content_type: str) -> list[ProviderEvent] | None:
        return connectors[provider].parse_webhook(payload.encode("utf-8"), content_type, {})

    return parse
