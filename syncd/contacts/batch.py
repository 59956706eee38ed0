"""Writing one batch of qualified rows into the master base, inside the caller's transaction.

The steps: set the erased addresses aside (rejected), load what the base already holds of the
batch (its contacts, and the provenance and conflicts this file already recorded), match each row
(a new contact, or a merge into the one known), then write it all at once: insert the new
contacts, update the merged ones, insert the provenance (one ``Source`` per row) and the
conflicts (one ``import.conflict`` audit line per row).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from syncd.contacts.bulk import column_among, insert_many
from syncd.contacts.dedupe import Conflict, merge, new_contact, overwrite
from syncd.contacts.qualify import INCOMPLETE, Qualified
from syncd.contacts.rejects import Reject
from syncd.contacts.summary import Summary
from syncd.contacts.tables import RawRow
from syncd.db import erased_among
from syncd.models import AuditLog, Contact, Source, utcnow

ERASED = "erased at the contact's request"

CONTACT = Contact.__table__
SOURCE = Source.__table__
AUDIT = AuditLog.__table__
# Built once; the expanding IN takes the batch's keys as one parameter.
_KNOWN_AMONG = sa.select(CONTACT).where(CONTACT.c.email.in_(sa.bindparam("keys", expanding=True)))


@dataclass(frozen=True)
class Origin:
    """Where the rows come from: the provenance each one records."""

    channel: str
    file_name: str


@dataclass
class Known:
    """What the base already holds of a batch's addresses."""

    contacts: dict[str, dict[str, Any]]  # email → its row
    sourced: set[tuple[int, int | None]]  # (contact id, row) holding a Source for this file
    noted: set[tuple[int, int]]  # (contact id, row) whose conflicts this file already reported


@dataclass
class Matched:
    """What a batch's rows change, decided row by row before anything is written."""

    created: dict[str, dict[str, Any]] = field(default_factory=dict)  # email → new contact's row
    dirty: set[str] = field(default_factory=set)  # known contacts that a row changed
    sources: list[tuple[str, int]] = field(default_factory=list)  # (email, line)
    conflicts: list[tuple[str, int, list[Conflict]]] = field(default_factory=list)
    updates: list[tuple[str, int, list[Conflict]]] = field(default_factory=list)  # --update: old → new
    touched: list[tuple[int, str]] = field(default_factory=list)  # (line, email) of each row kept
    unchanged: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Written:
    """A written batch: the rows kept, for the list joins, and how many table rows were written."""

    touched: list[tuple[int, str]]
    unchanged: list[tuple[int, str]]
    contact_id: Callable[[str], int]
    count: int
    at: datetime


def write_batch(
    session: Session,
    origin: Origin,
    good: list[tuple[RawRow, Qualified]],
    summary: Summary,
    rejected: list[Reject],
    *,
    update: bool = False,
) -> Written | None:
    """Write one batch's qualified rows; erased addresses join ``rejected``. None: nothing to write.
    ``update``: the file's values replace those held (``dedupe.overwrite``), each audited."""
    if not good:
        return None
    at = utcnow()
    good = _set_erased_aside(session, good, rejected)
    known = _load_known(session, origin, {q.email for _, q in good})
    matched = _match(good, known, summary, update)
    count = _insert_created(session, matched.created, at)
    count += _update_merged(session, known.contacts, matched.dirty, at)

    def contact_id(email: str) -> int:
        return (known.contacts.get(email) or matched.created[email])["id"]

    count += _insert_sources(session, origin, matched.sources, contact_id, at)
    count += _insert_conflicts(session, origin, matched.conflicts, contact_id, at)
    count += _insert_updates(session, origin, matched.updates, contact_id, at)
    return Written(matched.touched, matched.unchanged, contact_id, count, at)


def _set_erased_aside(
    session: Session, good: list[tuple[RawRow, Qualified]], rejected: list[Reject]
) -> list[tuple[RawRow, Qualified]]:
    erased = erased_among(session, (q.email for _, q in good))
    if not erased:
        return good
    rejected.extend((raw.line, ERASED, raw.cells) for raw, q in good if q.email in erased)
    return [(raw, q) for raw, q in good if q.email not in erased]


def _load_known(session: Session, origin: Origin, emails: set[str]) -> Known:
    contacts = {r["email"]: dict(r) for r in session.execute(_KNOWN_AMONG, {"keys": list(emails)}).mappings()}
    known = Known(contacts, set(), set())
    ids = [r["id"] for r in contacts.values()]
    if not ids:
        return known
    known.sourced = set(
        session.execute(
            sa.select(SOURCE.c.contact_id, SOURCE.c.row).where(
                SOURCE.c.contact_id.in_(ids),
                SOURCE.c.channel == origin.channel,
                SOURCE.c.detail == origin.file_name,
            )
        ).tuples()
    )
    for cid, detail in session.execute(
        sa.select(AUDIT.c.contact_id, AUDIT.c.detail).where(
            AUDIT.c.contact_id.in_(ids), AUDIT.c.action == "import.conflict"
        )
    ).tuples():
        if detail.get("file") == origin.file_name and detail.get("channel") == origin.channel:
            known.noted.add((cid, detail.get("row")))
    return known


def _match(good: list[tuple[RawRow, Qualified]], known: Known, summary: Summary, update: bool) -> Matched:
    """Each row becomes a new contact or merges into the one known (in the base or earlier in the
    batch); counted imported, merged (it wrote something) or unchanged. ``update``: the row's
    values win over those held, and each value replaced is recorded."""
    m = Matched()
    for raw, q in good:
        current = known.contacts.get(q.email) or m.created.get(q.email)
        if q.incomplete and not (current and (current["first_name"] or current["last_name"])):
            summary.incomplete += 1
            summary.note(raw.line, INCOMPLETE)
        if current is None:
            m.created[q.email] = new_contact(q)
            m.sources.append((q.email, raw.line))
            summary.imported += 1
            m.touched.append((raw.line, q.email))
            continue
        replaced: list[Conflict] = []
        if update:
            (changes, replaced), found = overwrite(current, q), []
        else:
            changes, found = merge(current, q)
        wrote = bool(changes)
        if changes:
            current.update(changes)
            if q.email in known.contacts:
                m.dirty.add(q.email)
        cid = current.get("id")
        if replaced:
            summary.updated += len(replaced)
            for c in replaced:
                summary.note(raw.line, f"{c.field} {c.kept!r} → {c.offered!r} (the file's value)")
            if cid is not None:  # a contact of the base: the change is audited, old → new
                m.updates.append((q.email, raw.line, replaced))
        if found:
            summary.conflicts += len(found)
            for c in found:
                summary.note(raw.line, f"{c.field} kept {c.kept!r}, file had {c.offered!r}")
            if cid is None or (cid, raw.line) not in known.noted:
                m.conflicts.append((q.email, raw.line, found))
                wrote = True
        if cid is None or (cid, raw.line) not in known.sourced:
            m.sources.append((q.email, raw.line))
            wrote = True
        m.touched.append((raw.line, q.email))
        if wrote:
            summary.merged += 1
        else:
            summary.unchanged += 1
            m.unchanged.append((raw.line, q.email))
    return m


def _insert_created(session: Session, created: dict[str, dict[str, Any]], at: datetime) -> int:
    """Insert the new contacts and set each one's id in ``created``."""
    if not created:
        return 0
    rows = list(created.values())
    insert_many(session, CONTACT, rows, {"created_at": at, "updated_at": at, "touched_at": at, "version": 1})
    # A plain executemany and one SELECT: INSERT … RETURNING in parameter order falls back to
    # one statement per row on SQLite.
    for cid, email in column_among(session, "contact", "id, email", "email", created):
        created[email]["id"] = cid
    return len(rows)


def _update_merged(session: Session, known: dict[str, dict[str, Any]], dirty: set[str], at: datetime) -> int:
    if not dirty:
        return 0
    fields = [c.name for c in CONTACT.columns if c.name not in ("id", "email", "created_at")]
    params = [
        {
            **{f"v_{f}": known[e][f] for f in fields},
            "v_updated_at": at,
            "v_touched_at": at,  # incremental sync planning picks the merged contact up
            "v_version": known[e]["version"] + 1,
            "k_id": known[e]["id"],
        }
        for e in dirty
    ]
    session.execute(
        sa.update(CONTACT)
        .where(CONTACT.c.id == sa.bindparam("k_id"))
        .values({f: sa.bindparam(f"v_{f}", type_=CONTACT.c[f].type) for f in fields}),
        params,
    )
    return len(params)


def _insert_sources(
    session: Session,
    origin: Origin,
    sources: list[tuple[str, int]],
    contact_id: Callable[[str], int],
    at: datetime,
) -> int:
    if not sources:
        return 0
    insert_many(
        session,
        SOURCE,
        [{"contact_id": contact_id(e), "row": line} for e, line in sources],
        {"channel": origin.channel, "detail": origin.file_name, "at": at},
    )
    return len(sources)


def _insert_conflicts(
    session: Session,
    origin: Origin,
    conflicts: list[tuple[str, int, list[Conflict]]],
    contact_id: Callable[[str], int],
    at: datetime,
) -> int:
    if not conflicts:
        return 0
    session.execute(
        sa.insert(AUDIT),
        [
            {
                "at": at,
                "actor": "import",
                "action": "import.conflict",
                "contact_id": contact_id(e),
                "detail": {
                    "file": origin.file_name,
                    "channel": origin.channel,
                    "row": line,
                    "conflicts": [c.as_dict() for c in found],
                },
            }
            for e, line, found in conflicts
        ],
    )
    return len(conflicts)


def _insert_updates(
    session: Session,
    origin: Origin,
    updates: list[tuple[str, int, list[Conflict]]],
    contact_id: Callable[[str], int],
    at: datetime,
) -> int:
    """``import --update``: one ``import.updated`` audit line per row, each value it replaced with
    the old value and the file's."""
    if not updates:
        return 0
    session.execute(
        sa.insert(AUDIT),
        [
            {
                "at": at,
                "actor": "import",
                "action": "import.updated",
                "contact_id": contact_id(e),
                "detail": {
                    "file": origin.file_name,
                    "channel": origin.channel,
                    "row": line,
                    "changes": [{"field": c.field, "old": c.kept, "new": c.offered} for c in replaced],
                },
            }
            for e, line, replaced in updates
        ],
    )
    return len(updates)
