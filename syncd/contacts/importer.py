"""Importing a CSV or XLSX file into the master base: read → qualify → dedupe → upsert, in batches.

- The file is streamed; each batch of rows is one transaction (a failure leaves the earlier
  batches committed and nothing of the failing one).
- Per batch (``syncd.contacts.batch``): one SELECT for tombstones, one for the known contacts,
  one for the provenance already recorded, then bulk inserts/updates; then the joins to ``--list``.
- A pipeline of two threads: the next batches are read, qualified and their known contacts and
  provenance looked up (on a connection of their own) while the batch before is written; what the
  batches written meanwhile changed of their addresses is looked up again when they are written.
- On PostgreSQL the tables' statistics are refreshed as the import grows them (``db.Growth``):
  the planner must not keep planning for the empty table it saw before the import.
- Idempotent: provenance is one ``Source`` per (contact, channel, file name, row); a row whose
  contact already holds everything it brings, and whose Source exists, changes nothing.
- Unknown columns are kept in ``Contact.attributes`` under their header as written.
- Row statuses: *imported* (created a contact), *merged* (matched a contact already in the base
  or earlier in the file, and wrote something: a field, a tag, its provenance, a list join),
  *unchanged* (matched and wrote nothing), *rejected* (written to the rejects file).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from queue import Full, Queue
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from connectors.collector import BULK_GC_THRESHOLD, paced_collector
from syncd.config import ListConfig
from syncd.contacts.batch import Known, Origin, Written, load_known, write_batch
from syncd.contacts.bulk import among
from syncd.contacts.qualify import INCOMPLETE, Qualified, Rejected, Rules, qualify
from syncd.contacts.rejects import Reject, Rejects, default_rejects_path
from syncd.contacts.summary import Summary
from syncd.contacts.tables import ImportFailed, RawRow, Table, map_header, open_table, to_record
from syncd.core.segments import eligibility
from syncd.db import Growth
from syncd.log import get_logger
from syncd.membership import ConsentRequired, join_list
from syncd.models import AuditLog, Contact, Membership

log = get_logger(__name__)
T = TypeVar("T")

# Rows per batch (one transaction each) when the caller does not say. PostgreSQL's server does a
# fixed share of work per statement and per commit: 5,000-row batches cost it a fifth less CPU
# than 1,000-row ones, and 10,000-row ones a tenth less again, client and server, for 30 MB more
# at the peak (100,000 rows, paired runs). SQLite: 5,000-row batches cost a tenth less CPU than
# 1,000-row ones (300,000 rows: fewer commits, and fewer of the statements each batch makes
# whatever its size), for 30 MB more at the peak; 10,000-row ones gained little more for 40 MB.
BATCH_SIZES = {"postgresql": 10_000, "sqlite": 5_000}
DEFAULT_BATCH_SIZE = 1000

# The tables an import fills and then reads back in its later batches, and the columns it reads them by.
GROWN_TABLES = {
    "contact": ("id", "email"),
    "source": ("contact_id", "channel", "detail"),
    "auditlog": ("contact_id", "action"),
    "membership": ("contact_id", "list_name"),
}


@dataclass
class Options:
    channel: str
    rules: Rules = Rules()
    mapping: dict[str, str] = field(default_factory=dict)  # header → field, from --map
    list_name: str | None = None
    list_cfg: ListConfig | None = None
    all_lists: Mapping[str, ListConfig] = field(default_factory=dict)  # for --list's exclusivity rules
    consent: str = "none"
    batch_size: int | None = None  # rows per transaction; None: the database's (``BATCH_SIZES``)
    update: bool = False  # the file's values win over the base's (each change audited)


class ImportInterrupted(Exception):
    """A batch failed: the batches before it are committed, the failing one left no trace."""

    def __init__(self, line: int, cause: BaseException, summary: Summary):
        super().__init__(f"import stopped near line {line}: {cause}")
        self.line, self.cause, self.summary = line, cause, summary


class ImportCancelled(KeyboardInterrupt):
    """Ctrl-C during an import: still a KeyboardInterrupt, carrying what the batches committed
    before it did (``summary``) and the last line they covered (``line``, 1 if none)."""

    def __init__(self, line: int, summary: Summary):
        super().__init__(f"import cancelled after line {line}")
        self.line, self.summary = line, summary


def import_file(
    engine: Engine,
    path: str | Path,
    options: Options,
    *,
    rejects_path: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Summary:
    """Import one file; rows that cannot be imported go to the rejects CSV. See the module notes."""
    table = open_table(path)
    columns = map_header(table.header, options.mapping)
    if "email" not in columns:
        raise ImportFailed(
            f"cannot import {path}: no column holds email addresses (columns: {', '.join(table.header)}); "
            "name it 'email' or use --map 'Column=email'"
        )
    rejects = Rejects(Path(rejects_path or default_rejects_path(path)), table.header, table.delimiter)
    try:
        summary = import_rows(engine, Path(path).name, columns, table.rows, options, rejects, table, progress)
    finally:
        rejects.close()
    if summary.rejected:
        summary.rejects_path = str(rejects.path)
    return summary


def import_rows(
    engine: Engine,
    file_name: str,
    columns: list[str],
    rows: Iterable[RawRow],
    options: Options,
    rejects: Rejects,
    table: Table | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Summary:
    total = Summary()
    last_line = committed_line = 1
    growth = Growth(engine, GROWN_TABLES)
    written = _Written()
    try:
        size = options.batch_size or BATCH_SIZES.get(engine.dialect.name, DEFAULT_BATCH_SIZE)
        reader = _known_reader(engine, Origin(options.channel, file_name), written)
        batches = _qualified_batches(rows, columns, options, size, table, reader)
        with paced_collector():
            for batch, prepared, position in _read_ahead(batches):
                last_line = batch[-1].line
                if prepared.early is not None:
                    prepared.stale = written.since(prepared.seen)
                added, changed = _commit_batch(engine, file_name, batch, prepared, options, rejects, total)
                written.add(changed)
                growth.add(added)
                committed_line = last_line
                growth.refresh()
                if progress and table:
                    progress(position, table.size)
    except KeyboardInterrupt as exc:
        log.info("import.cancelled", file=file_name, line=committed_line, **total.counts())
        raise ImportCancelled(committed_line, total) from exc
    except Exception as exc:
        log.error("import.interrupted", file=file_name, line=last_line, error=repr(exc), **total.counts())
        raise ImportInterrupted(last_line, exc, total) from exc
    if progress and table:
        progress(table.position(), table.size)
    if total.imported or total.merged:  # a run that changed nothing leaves no trace (idempotence)
        with Session(engine) as session:
            session.add(
                AuditLog(
                    actor="import",
                    action="import.run",
                    detail={"file": file_name, "channel": options.channel, **total.counts()},
                )
            )
            session.commit()
    log.info("import.finished", file=file_name, channel=options.channel, **total.counts())
    return total


def qualify_batch(columns: list[str], batch: list[RawRow], rules: Rules) -> list[Qualified | Rejected]:
    """Map and qualify one batch of rows."""
    return [
        Rejected(raw.error) if raw.error else qualify(to_record(columns, raw.cells), rules) for raw in batch
    ]


def _batches(rows: Iterable[RawRow], size: int, first: int | None = None) -> Iterator[list[RawRow]]:
    """``rows`` in batches of ``size``; with ``first``, the first batches grow from that size,
    doubling, up to ``size``: the database waits for the first batch to be qualified, not for a
    large one (a tenth of a 100,000-row import on PostgreSQL, with 10,000-row batches)."""
    batch: list[RawRow] = []
    now = min(first or size, size)
    for raw in rows:
        batch.append(raw)
        if len(batch) >= now:
            yield batch
            batch = []
            now = min(now * 2, size)
    if batch:
        yield batch


@dataclass
class Prepared:
    """A batch qualified and sorted, and what the base held of it, read while the batches before it
    were written."""

    summary: Summary  # its rows read and the warnings of the rows kept
    rejected: list[Reject]
    good: list[tuple[RawRow, Qualified]]
    early: Known | None = None  # what the base held of its addresses, read ahead (None: not read)
    seen: int = 0  # how many batches were committed before that read
    stale: set[str] = field(default_factory=set)  # addresses written since by the batches before it


class _Written:
    """The addresses each committed batch created or changed, for the batches read ahead of them.

    A batch's contacts are read (``Prepared.early``) while the batches before it are still being
    written: what those batches write to an address of it is read again when it is written itself.
    """

    def __init__(self) -> None:
        self.committed = 0  # batches committed: read by the read-ahead thread, an int (atomic)
        self._changed: dict[int, set[str]] = {}

    def add(self, changed: set[str]) -> None:
        self._changed[self.committed] = changed
        self.committed += 1

    def since(self, seen: int) -> set[str]:
        """The addresses written by the batches committed after the first ``seen``; forgets older ones
        (the batches read ahead come in order, each read no earlier than the one before)."""
        for old in [n for n in self._changed if n < seen]:
            del self._changed[old]
        out: set[str] = set()
        for n in range(seen, self.committed):
            out |= self._changed[n]
        return out


KnownReader = Callable[[set[str]], tuple[int, Known]]


def _known_reader(engine: Engine, origin: Origin, written: _Written) -> KnownReader | None:
    """Reads a batch's contacts ahead, on a connection of its own (in a transaction of its own, each
    statement seeing what is committed); None where a second connection would see another base
    (in-memory SQLite)."""
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        return None

    def read(emails: set[str]) -> tuple[int, Known]:
        seen = written.committed  # before the read: what it sees of the batches after is read again
        with engine.connect() as conn:
            return seen, load_known(conn, origin, emails)

    return read


def _prepare(batch: list[RawRow], results: list[Qualified | Rejected]) -> Prepared:
    prepared = Prepared(Summary(read=len(batch)), [], [])
    for raw, result in zip(batch, results, strict=True):
        if isinstance(result, Rejected):
            prepared.rejected.append((raw.line, result.reason, raw.cells))
        else:
            prepared.good.append((raw, result))
            _count_issues(prepared.summary, raw.line, result)
    return prepared


def _qualified_batches(
    rows: Iterable[RawRow],
    columns: list[str],
    options: Options,
    size: int,
    table: Table | None = None,
    reader: KnownReader | None = None,
) -> Iterator[tuple[list[RawRow], Prepared, int]]:
    """Each batch, its rows qualified and sorted and, with a ``reader``, what the base holds of them;
    and how far into the file it ends (for the progress bar)."""
    # Qualifying in a worker process was tried: pickling the rows both ways cost more CPU than it
    # saved, and lost outright on a busy machine. A thread, one batch ahead (``_read_ahead``): the
    # more of a batch's work done there, the less the writer, who waits on the database, has to do.
    # The caller's batch size, if chosen, from the first batch; else from a small one up.
    for batch in _batches(rows, size, None if options.batch_size else DEFAULT_BATCH_SIZE):
        prepared = _prepare(batch, qualify_batch(columns, batch, options.rules))
        if reader and prepared.good:
            prepared.seen, prepared.early = reader({q.email for _, q in prepared.good})
        yield batch, prepared, table.position() if table else 0


# Python's cycle collector, at its default pace (every 700 new objects, a full pass every 100
# young ones), ran 2,000 times per 100,000 rows: a batch's rows, records and contacts are tens of
# thousands of objects that live until the batch is written, and each full pass went over them all
# and everything already loaded (caches, modules). A fifth of an import's CPU time on either database.
# During an import, a young pass every 50,000 new objects: a few passes per 100,000 rows (at 20,000,
# a hundred with PostgreSQL's 5,000-row batches, still a twentieth of the import's CPU time); the
# pace is the process's, set through connectors.collector, which a Brevo read-back uses too.
IMPORT_GC_THRESHOLD = BULK_GC_THRESHOLD


_END = object()


def _read_ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, made in a thread up to two ahead of the caller: the next batches are read and
    qualified while the caller waits on the database with the one before (the driver lets go of
    the GIL while it waits). On PostgreSQL that wait was half of an import's time.

    Same items in the same order; an exception raised making one is raised here, where that item
    would have come, so the batches before it are written first. When the caller stops early,
    the thread stops after the item it is making.
    """
    queue: Queue[tuple[Any, BaseException | None]] = Queue(maxsize=1)
    stop = threading.Event()

    def put(item: Any, error: BaseException | None = None) -> bool:
        while not stop.is_set():
            try:
                queue.put((item, error), timeout=0.1)
                return True
            except Full:
                continue
        return False

    def make() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the caller, raised there
            put(_END, exc)

    thread = threading.Thread(target=contextvars.copy_context().run, args=(make,), name="import-read-ahead")
    thread.start()
    try:
        while True:
            item, error = queue.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _commit_batch(
    engine: Engine,
    file_name: str,
    batch: list[RawRow],
    prepared: Prepared,
    options: Options,
    rejects: Rejects,
    total: Summary,
) -> tuple[dict[str, int], set[str]]:
    """Write one batch in its own transaction; returns the rows it added per table and the addresses
    whose contact it created or changed."""
    summary, rejected, good = prepared.summary, prepared.rejected, prepared.good
    added: dict[str, int] = {}
    changed: set[str] = set()
    with Session(engine) as session:
        written = write_batch(
            session,
            Origin(options.channel, file_name),
            good,
            summary,
            rejected,
            update=options.update,
            early=prepared.early,
            stale=prepared.stale,
        )
        count = 0
        if written is not None:
            joined = _join_list(session, file_name, written, options, summary)
            count = written.count + joined
            added = {**written.added, "membership": joined}
            changed = written.changed
            if joined:  # joining a list may change the contact too (its opt-out, its version)
                changed = changed | {email for _, email in written.touched}
        session.commit()
    summary.rejected = len(rejected)
    rejects.write(sorted(rejected, key=lambda r: r[0]))
    total.add(summary)
    log.debug(
        "import.batch_committed",
        file=file_name,
        first_line=batch[0].line,
        written=count,
        **summary.counts(),
    )
    return added, changed


def _count_issues(summary: Summary, line: int, q: Qualified) -> None:
    for issue in q.issues:
        if issue == INCOMPLETE:
            continue  # judged on the contact after merging, in write_batch
        if issue.startswith("phone"):
            summary.phones_dropped += 1
        elif issue.startswith(("SIRET", "SIREN")):
            summary.siret_dropped += 1
        else:
            summary.other_warnings += 1
        summary.note(line, issue)


def _join_list(session: Session, file_name: str, written: Written, options: Options, summary: Summary) -> int:
    """Join the batch's contacts to ``--list``, if given; a row that changed nothing but a list join
    counts as merged. Returns the number of contacts for which something was written."""
    if not (options.list_name and options.list_cfg is not None):
        return 0
    joined = _join_admitted(session, file_name, written, options, summary)
    count = len(joined)
    for _line, email in written.unchanged:
        if written.contact_id(email) in joined:
            joined.discard(written.contact_id(email))
            summary.unchanged -= 1
            summary.merged += 1
    return count


def _join_admitted(
    session: Session, file_name: str, written: Written, options: Options, summary: Summary
) -> set[int]:
    """Add each contact of the batch that the list's rules admit to ``--list``, with the consent
    the importer declared. The others stay in the base, out of the list, counted per reason: a
    contact joined to a list whose segment excludes it is never pushed there, and its membership
    still counts against the lists declared exclusive with it (a vendor imported into clients
    would lose the vendors list and gain nothing).

    Returns the ids of the contacts for which something was written."""
    assert options.list_name and options.list_cfg
    touched, contact_id = written.touched, written.contact_id
    ids = {contact_id(e) for _, e in touched}
    dialect, keys = session.connection().dialect.name, {"ids": list(ids)}
    by_id = {
        c.id: c for c in session.exec(select(Contact).where(among(Contact.id, "ids", dialect)), params=keys)
    }
    lists: dict[int, dict[str, str]] = {cid: {} for cid in ids}
    for m in session.exec(
        select(Membership).where(among(Membership.contact_id, "ids", dialect)), params=keys
    ):
        lists[m.contact_id][m.list_name] = m.status
    source = f"import:{options.channel}:{file_name}"
    joined: set[int] = set()
    seen: set[int] = set()
    for line, email in touched:
        cid = contact_id(email)
        if cid in seen:
            continue
        seen.add(cid)
        admitted = eligibility(options.list_name, options.list_cfg, by_id[cid], lists[cid], options.all_lists)
        if not admitted.may:
            _not_joined(summary, line, options.list_name, admitted.reasons[0])
            continue
        try:
            with session.no_autoflush:
                join_list(
                    session,
                    by_id[cid],
                    options.list_name,
                    options.list_cfg,
                    consent=options.consent,
                    source=source,
                    at=written.at,
                )
        except ConsentRequired as exc:
            _not_joined(summary, line, options.list_name, str(exc))
            continue
        if session.new or session.dirty:
            joined.add(cid)
            session.flush()
    return joined


def _not_joined(summary: Summary, line: int, list_name: str, reason: str) -> None:
    summary.not_joined += 1
    summary.not_joined_why[reason] += 1
    summary.note(line, f"not added to {list_name}: {reason}")
