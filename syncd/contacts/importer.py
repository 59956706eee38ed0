"""Importing a CSV or XLSX file into the master base: read → qualify → dedupe → upsert, in batches.

- The file is streamed; each batch of rows is one transaction (a failure leaves the earlier
  batches committed and nothing of the failing one).
- Per batch: one SELECT for tombstones, one for the known contacts, one for the provenance
  already recorded, then bulk inserts/updates (SQLAlchemy Core, executemany).
- Idempotent: provenance is one ``Source`` per (contact, channel, file name, row); a row whose
  contact already holds everything it brings, and whose Source exists, changes nothing.
- Unknown columns are kept in ``Contact.attributes`` under their header as written.
- Row statuses: *imported* (created a contact), *merged* (matched a contact already in the base
  or earlier in the file, and wrote something: a field, a tag, its provenance, a list join),
  *unchanged* (matched and wrote nothing), *rejected* (written to the rejects file).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncd.config import ListConfig
from syncd.contacts.dedupe import Conflict, merge, new_contact
from syncd.contacts.qualify import INCOMPLETE, Qualified, Rejected, Rules, fold, qualify
from syncd.core.segments import eligibility
from syncd.db import erased_among
from syncd.log import get_logger
from syncd.models import AuditLog, Contact, Membership, Source, utcnow

log = get_logger(__name__)

FIELDS = (
    "email",
    "first_name",
    "last_name",
    "full_name",
    "phone",
    "company",
    "siret",
    "siren",
    "kind",
    "stage",
    "tags",
    "country",
    "region",
    "city",
    "postal_code",
)
IGNORE = "ignore"
ERASED = "erased at the contact's request"

_ALIASES = {
    "email": "email|mail|e-mail|courriel|adresse email|adresse mail|adresse e-mail|email address",
    "first_name": "prénom|first name|firstname|given name",
    "last_name": "nom|nom de famille|last name|lastname|surname|family name",
    "full_name": "name|full name|nom complet|contact",
    "phone": "téléphone|tél|tel|phone|portable|mobile|gsm|téléphone portable|tél portable|tél mobile"
    "|téléphone mobile|numéro de téléphone|phone number|mobile phone",
    "company": "société|entreprise|raison sociale|company|organisation|organization|company name",
    "siret": "siret|numéro siret|n° siret",
    "siren": "siren|numéro siren|n° siren",
    "city": "ville|city|commune|localité|town",
    "postal_code": "code postal|cp|postal code|zip|zip code|postcode",
    "country": "pays|country",
    "region": "région|state|province",
    "tags": "tags|tag|étiquettes|labels",
    "kind": "type|kind|type de contact|catégorie|category",
    "stage": "stage|étape",
    IGNORE: "civilité|civility|title|salutation|titre",
}
# Headers are compared folded: case, accents, spaces and punctuation do not matter.
HEADER_FIELDS = {fold(alias): name for name, aliases in _ALIASES.items() for alias in aliases.split("|")}


class ImportFailed(Exception):
    """The file cannot be imported at all (missing, unreadable, no email column): nothing was written."""


class ImportInterrupted(Exception):
    """A batch failed: the batches before it are committed, the failing one left no trace."""

    def __init__(self, line: int, cause: BaseException, summary: Summary):
        super().__init__(f"import stopped near line {line}: {cause}")
        self.line, self.cause, self.summary = line, cause, summary


@dataclass
class Options:
    channel: str
    rules: Rules = Rules()
    mapping: dict[str, str] = field(default_factory=dict)  # header → field, from --map
    list_name: str | None = None
    list_cfg: ListConfig | None = None
    all_lists: Mapping[str, ListConfig] = field(default_factory=dict)  # for --list's exclusivity rules
    consent: str = "none"
    batch_size: int = 1000


@dataclass
class Summary:
    read: int = 0
    imported: int = 0
    merged: int = 0
    unchanged: int = 0
    rejected: int = 0
    incomplete: int = 0
    conflicts: int = 0
    phones_dropped: int = 0
    siret_dropped: int = 0
    other_warnings: int = 0
    not_joined: int = 0
    not_joined_why: Counter[str] = field(default_factory=Counter)  # reason → contacts not added to --list
    notes: list[str] = field(default_factory=list)  # first warnings and conflicts, for the marketer
    rejects_path: str | None = None

    def add(self, other: Summary) -> None:
        for name in (
            "read",
            "imported",
            "merged",
            "unchanged",
            "rejected",
            "incomplete",
            "conflicts",
            "phones_dropped",
            "siret_dropped",
            "other_warnings",
            "not_joined",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.not_joined_why.update(other.not_joined_why)
        self.notes.extend(other.notes[: max(0, 50 - len(self.notes))])

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}


# --- reading ------------------------------------------------------------------------------------


@dataclass(slots=True)
class RawRow:
    line: int
    cells: list[Any]
    error: str | None = None


@dataclass
class Table:
    header: list[str]
    rows: Iterator[RawRow]
    delimiter: str = ";"
    position: Callable[[], int] = lambda: 0  # bytes or rows read so far, for the progress bar
    size: int = 0


def open_table(path: str | Path) -> Table:
    """The header and a stream of rows of a CSV (any of ; , tab; UTF-8, BOM or Windows-1252) or XLSX."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            return _open_xlsx(path)
        return _open_csv(path)
    except ImportFailed:
        raise
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ImportFailed(f"cannot read {path}: {exc}") from None


def detect_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM) unless the non-ASCII lines look like Windows-1252."""
    good = bad = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            if chunk.isascii():
                continue
            for line in (chunk + f.readline()).splitlines():
                if line.isascii():
                    continue
                try:
                    line.decode("utf-8")
                    good += 1
                except UnicodeDecodeError:
                    bad += 1
            if good + bad >= 200:
                break
    return "utf-8-sig" if good >= bad else "cp1252"


_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes the encoding could not decode (surrogateescape)


def _open_csv(path: Path) -> Table:
    encoding = detect_encoding(path)
    size = path.stat().st_size
    raw = path.open("rb")
    text = io.TextIOWrapper(raw, encoding=encoding, errors="surrogateescape", newline="")
    first = text.readline()
    if not first.strip():
        text.close()
        raise ImportFailed(f"cannot read {path}: the file is empty or its first line is blank")
    delimiter = max(";,\t", key=first.count)
    header = [h.strip() for h in next(csv.reader([first], delimiter=delimiter))]
    if _UNDECODABLE.search(first):
        text.close()
        raise ImportFailed(f"cannot read {path}: the header line is not {encoding} text")
    reader = csv.reader(text, delimiter=delimiter)
    width = len(header)
    label = encoding.removesuffix("-sig")

    def rows() -> Iterator[RawRow]:
        try:
            start = 2
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield RawRow(start, [], f"unreadable CSV row: {exc}")
                    start = reader.line_num + 2
                    continue
                line, start = start, reader.line_num + 2  # + the header line
                joined = "".join(cells)
                if not joined or joined.isspace():
                    continue
                if _UNDECODABLE.search(joined):
                    yield RawRow(line, cells, f"not valid {label} text")
                elif len(cells) != width and (len(cells) < width or "".join(cells[width:]).strip()):
                    yield RawRow(line, cells, f"expected {width} columns, found {len(cells)}")
                else:
                    yield RawRow(line, cells)
        finally:
            text.close()

    return Table(header, rows(), delimiter, raw.tell, size)


def _open_xlsx(path: Path) -> Table:
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    ws = wb.active
    it = ws.iter_rows(values_only=True)
    first = next(it, None)
    if first is None:
        wb.close()
        raise ImportFailed(f"cannot read {path}: the sheet is empty")
    header = ["" if v is None else str(v).strip() for v in first]
    done = [1]

    def rows() -> Iterator[RawRow]:
        try:
            for n, values in enumerate(it, start=2):
                done[0] = n
                cells = [
                    "" if v is None else (v.isoformat() if hasattr(v, "isoformat") else v) for v in values
                ]
                if any(str(c).strip() for c in cells):
                    yield RawRow(n, cells + [""] * (len(header) - len(cells)))
        finally:
            wb.close()

    return Table(header, rows(), ";", lambda: done[0], ws.max_row or 0)


def map_header(header: list[str], overrides: dict[str, str] | None = None) -> list[str]:
    """The field of each column: a name of ``FIELDS``, ``ignore``, or ``attributes.<header>``."""
    by_fold = {fold(k): v for k, v in (overrides or {}).items()}
    out: list[str] = []
    for name in header:
        key = fold(name)
        target = by_fold.get(key) or HEADER_FIELDS.get(key) or f"attributes.{name}"
        if target in out and target not in (IGNORE,) and not target.startswith("attributes."):
            target = f"attributes.{name}"
        out.append(target)
    return out


def parse_map(text: str | None) -> dict[str, str]:
    """``'Col=field,Other Col=field'`` → {header: field}; ``ValueError`` on an unknown field."""
    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        column, sep, target = part.partition("=")
        target = target.strip()
        if not sep or not column.strip():
            raise ValueError(f"expected Column=field, got {part.strip()!r}")
        if target not in FIELDS and target != IGNORE and not target.startswith("attributes."):
            raise ValueError(
                f"unknown field {target!r}; expected one of {', '.join(FIELDS)}, ignore, attributes.NAME"
            )
        mapping[column.strip()] = target
    return mapping


# --- importing ----------------------------------------------------------------------------------

CONTACT = Contact.__table__
SOURCE = Source.__table__
AUDIT = AuditLog.__table__
# Built once; the expanding IN takes the batch's keys as one parameter.
_KNOWN_AMONG = sa.select(CONTACT).where(CONTACT.c.email.in_(sa.bindparam("keys", expanding=True)))


class Rejects:
    """The rejects CSV: line number as in the file, reason, then the original columns. Opened lazily."""

    def __init__(self, path: Path, header: list[str], delimiter: str):
        self.path, self.header, self.delimiter = path, header, delimiter
        self._file: Any = None
        self._writer: Any = None

    def write(self, rows: list[tuple[int, str, list[Any]]]) -> None:
        if not rows:
            return
        if self._writer is None:
            self._file = self.path.open("w", encoding="utf-8-sig", errors="surrogateescape", newline="")
            self._writer = csv.writer(self._file, delimiter=self.delimiter)
            self._writer.writerow(["row", "reason", *self.header])
        self._writer.writerows([line, reason, *cells] for line, reason, cells in rows)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def default_rejects_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f"{path.stem}.rejects.csv")


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
    last_line = 1
    try:
        for batch, results in _qualified_batches(rows, columns, options):
            last_line = batch[-1].line
            _commit_batch(engine, file_name, batch, results, options, rejects, total)
            if progress and table:
                progress(table.position(), table.size)
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
        Rejected(raw.error) if raw.error else qualify(_record(columns, raw.cells), rules) for raw in batch
    ]


def _batches(rows: Iterable[RawRow], size: int) -> Iterator[list[RawRow]]:
    batch: list[RawRow] = []
    for raw in rows:
        batch.append(raw)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _qualified_batches(
    rows: Iterable[RawRow], columns: list[str], options: Options
) -> Iterator[tuple[list[RawRow], list[Qualified | Rejected]]]:
    # Qualifying in a worker process was tried: pickling the rows both ways cost more CPU than it
    # saved, and lost outright on a busy machine. One process, batch by batch.
    for batch in _batches(rows, options.batch_size):
        yield batch, qualify_batch(columns, batch, options.rules)


def _commit_batch(
    engine: Engine,
    file_name: str,
    batch: list[RawRow],
    results: list[Qualified | Rejected],
    options: Options,
    rejects: Rejects,
    total: Summary,
) -> None:
    summary = Summary(read=len(batch))
    rejected: list[tuple[int, str, list[Any]]] = []
    good: list[tuple[RawRow, Qualified]] = []
    for raw, result in zip(batch, results, strict=True):
        if isinstance(result, Rejected):
            rejected.append((raw.line, result.reason, raw.cells))
        else:
            good.append((raw, result))
            _count_issues(summary, raw.line, result)
    with Session(engine) as session:
        written = _write(session, file_name, good, options, summary, rejected)
        session.commit()
    summary.rejected = len(rejected)
    rejects.write(sorted(rejected, key=lambda r: r[0]))
    total.add(summary)
    log.debug(
        "import.batch_committed",
        file=file_name,
        first_line=batch[0].line,
        written=written,
        **summary.counts(),
    )


def _record(columns: list[str], cells: list[Any]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for target, value in zip(columns, cells, strict=False):
        if value is None or value == "" or target == IGNORE:
            continue
        if target[:11] == "attributes.":
            if isinstance(value, str):
                value = value.strip()
            if value != "":
                attributes[target[11:]] = value
        else:
            record[target] = value
    record["attributes"] = attributes
    return record


def _count_issues(summary: Summary, line: int, q: Qualified) -> None:
    for issue in q.issues:
        if issue == INCOMPLETE:
            continue  # judged on the contact after merging, in _write
        if issue.startswith("phone"):
            summary.phones_dropped += 1
        elif issue.startswith(("SIRET", "SIREN")):
            summary.siret_dropped += 1
        else:
            summary.other_warnings += 1
        if len(summary.notes) < 50:
            summary.notes.append(f"row {line}: {issue}")


def _write(
    session: Session,
    file_name: str,
    good: list[tuple[RawRow, Qualified]],
    options: Options,
    summary: Summary,
    rejected: list[tuple[int, str, list[Any]]],
) -> int:
    """Apply one batch inside the session's transaction; returns the number of statements' rows written."""
    if not good:
        return 0
    at = utcnow()
    erased = erased_among(session, (q.email for _, q in good))
    if erased:
        rejected.extend((raw.line, ERASED, raw.cells) for raw, q in good if q.email in erased)
        good = [(raw, q) for raw, q in good if q.email not in erased]
    emails = {q.email for _, q in good}
    known = {r["email"]: dict(r) for r in session.execute(_KNOWN_AMONG, {"keys": list(emails)}).mappings()}
    ids = [r["id"] for r in known.values()]
    sourced: set[tuple[int, int | None]] = set()
    noted: set[tuple[int, int]] = set()
    if ids:
        sourced = set(
            session.execute(
                sa.select(SOURCE.c.contact_id, SOURCE.c.row).where(
                    SOURCE.c.contact_id.in_(ids),
                    SOURCE.c.channel == options.channel,
                    SOURCE.c.detail == file_name,
                )
            ).tuples()
        )
        for cid, detail in session.execute(
            sa.select(AUDIT.c.contact_id, AUDIT.c.detail).where(
                AUDIT.c.contact_id.in_(ids), AUDIT.c.action == "import.conflict"
            )
        ).tuples():
            if detail.get("file") == file_name and detail.get("channel") == options.channel:
                noted.add((cid, detail.get("row")))

    created: dict[str, dict[str, Any]] = {}
    dirty: set[str] = set()
    sources: list[tuple[str, int]] = []
    conflicts: list[tuple[str, int, list[Conflict]]] = []
    touched: list[tuple[int, str]] = []  # (line, email) of each row kept, for list joins
    unchanged: list[tuple[int, str]] = []
    for raw, q in good:
        current = known.get(q.email) or created.get(q.email)
        if q.incomplete and not (current and (current["first_name"] or current["last_name"])):
            summary.incomplete += 1
            if len(summary.notes) < 50:
                summary.notes.append(f"row {raw.line}: {INCOMPLETE}")
        if current is None:
            created[q.email] = new_contact(q)
            sources.append((q.email, raw.line))
            summary.imported += 1
            touched.append((raw.line, q.email))
            continue
        changes, found = merge(current, q)
        wrote = bool(changes)
        if changes:
            current.update(changes)
            if q.email in known:
                dirty.add(q.email)
        if found:
            summary.conflicts += len(found)
            for c in found:
                if len(summary.notes) < 50:
                    summary.notes.append(f"row {raw.line}: {c.field} kept {c.kept!r}, file had {c.offered!r}")
            cid = current.get("id")
            if cid is None or (cid, raw.line) not in noted:
                conflicts.append((q.email, raw.line, found))
                wrote = True
        cid = current.get("id")
        if cid is None or (cid, raw.line) not in sourced:
            sources.append((q.email, raw.line))
            wrote = True
        touched.append((raw.line, q.email))
        if wrote:
            summary.merged += 1
        else:
            summary.unchanged += 1
            unchanged.append((raw.line, q.email))

    written = 0
    if created:
        rows = list(created.values())
        _insert_many(
            session, CONTACT, rows, {"created_at": at, "updated_at": at, "touched_at": at, "version": 1}
        )
        # A plain executemany and one SELECT: INSERT … RETURNING in parameter order falls back to
        # one statement per row on SQLite.
        for cid, email in _column_among(session, "contact", "id, email", "email", created):
            created[email]["id"] = cid
        written += len(rows)
    if dirty:
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
        written += len(params)

    def contact_id(email: str) -> int:
        return (known.get(email) or created[email])["id"]

    if sources:
        _insert_many(
            session,
            SOURCE,
            [{"contact_id": contact_id(e), "row": line} for e, line in sources],
            {"channel": options.channel, "detail": file_name, "at": at},
        )
        written += len(sources)
    if conflicts:
        session.execute(
            sa.insert(AUDIT),
            [
                {
                    "at": at,
                    "actor": "import",
                    "action": "import.conflict",
                    "contact_id": contact_id(e),
                    "detail": {
                        "file": file_name,
                        "channel": options.channel,
                        "row": line,
                        "conflicts": [c.as_dict() for c in found],
                    },
                }
                for e, line, found in conflicts
            ],
        )
        written += len(conflicts)
    if options.list_name and options.list_cfg is not None:
        joined = _join_list(session, file_name, touched, contact_id, options, summary, at)
        written += len(joined)
        for _line, email in unchanged:
            if contact_id(email) in joined:
                joined.discard(contact_id(email))
                summary.unchanged -= 1
                summary.merged += 1
    return written


def _insert_many(
    session: Session, table: sa.Table, rows: list[dict[str, Any]], shared: dict[str, Any] | None = None
) -> None:
    """One driver-level executemany of ``rows`` (same keys each), plus ``shared`` values for every row.

    SQLAlchemy's per-row parameter processing was half of the import's database time: here only the
    columns that need it (JSON) are processed per row, the shared ones (timestamps) and defaults once.
    """
    conn = session.connection()
    dialect = conn.dialect
    shared = shared or {}
    # Named parameters on every driver, so that a row is a dict: sqlite3 takes :name as well as ?.
    compiler = type(dialect)(paramstyle="named") if dialect.positional else dialect
    names = [*rows[0], *shared]
    compiled = sa.insert(table).inline().values({n: sa.bindparam(n) for n in names}).compile(dialect=compiler)

    def processor(name: str) -> Any:
        return table.c[name].type.dialect_impl(dialect).bind_processor(dialect)

    constants = {}
    for name in compiled.params:
        if name in rows[0]:
            continue
        value = shared[name] if name in shared else _default(table.c[name])
        proc = processor(name)
        constants[name] = proc(value) if proc and value is not None else value
    procs = [(n, p, {}) for n in rows[0] if (p := processor(n)) is not None]
    params = []
    for row in rows:
        values = {**row, **constants}
        for name, proc, memo in procs:
            value = values[name]
            if value is None:
                continue
            # Tag lists and attribute dicts repeat from row to row: serialise each shape once.
            key = repr(value) if value.__class__ in (list, dict) else None
            if key is None:
                values[name] = proc(value)
            elif key in memo:
                values[name] = memo[key]
            else:
                values[name] = memo[key] = proc(value)
        params.append(values)
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        # COPY: one stream per batch instead of one INSERT per row on the server.
        columns = list(params[0])
        cursor = conn.connection.driver_connection.cursor()
        copy_sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
        with cursor.copy(copy_sql) as copy:
            for values in params:
                copy.write_row([values[c] for c in columns])
        return
    conn.exec_driver_sql(str(compiled), params)


def _column_among(session: Session, table: str, columns: str, key: str, values: Iterable[str]) -> list[Any]:
    """``SELECT columns FROM table WHERE key IN (values)`` at the driver: plain strings and integers only.

    SQLAlchemy's expanding IN renders a bound name per value; for a thousand keys per batch that was a
    visible share of the import's time.
    """
    values = list(values)
    if not values:
        return []
    conn = session.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f"SELECT {columns} FROM {table} WHERE {key} IN ({', '.join([mark] * len(values))})"
    rows = conn.exec_driver_sql(sql, tuple(values)).fetchall()
    return [r[0] for r in rows] if "," not in columns else [tuple(r) for r in rows]


def _default(column: sa.Column[Any]) -> Any:
    default = column.default
    if default is None or getattr(default, "is_sequence", False):
        return None
    # SQLAlchemy wraps a Python callable default so that it takes an execution context.
    return default.arg(None) if default.is_callable else default.arg


def _join_list(
    session: Session,
    file_name: str,
    touched: list[tuple[int, str]],
    contact_id: Callable[[str], int],
    options: Options,
    summary: Summary,
    at: Any,
) -> set[int]:
    """Add each contact of the batch that the list's rules admit to ``--list``, with the consent
    the importer declared. The others stay in the base, out of the list, counted per reason: a
    contact joined to a list whose segment excludes it is never pushed there, and its membership
    still counts against the lists declared exclusive with it (a vendor imported into clients
    would lose the vendors list and gain nothing).

    Returns the ids of the contacts for which something was written."""
    from syncd.membership import ConsentRequired, join_list

    assert options.list_name and options.list_cfg
    ids = {contact_id(e) for _, e in touched}
    by_id = {c.id: c for c in session.exec(select(Contact).where(Contact.id.in_(ids)))}
    lists: dict[int, dict[str, str]] = {cid: {} for cid in ids}
    for m in session.exec(select(Membership).where(Membership.contact_id.in_(ids))):
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
                    at=at,
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
    if len(summary.notes) < 50:
        summary.notes.append(f"row {line}: not added to {list_name}: {reason}")
