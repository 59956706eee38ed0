"""Reading an import file: a CSV or XLSX as a header and a stream of rows, and each column mapped
to a contact field by its header (or by ``--map``).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncd.contacts.text import fold

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

    def position() -> int:
        # The rows close the file once read, before their last batch is written.
        return size if raw.closed else raw.tell()

    return Table(header, rows(), delimiter, position, size)


def _open_xlsx(path: Path) -> Table:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError) as exc:  # not a zip, or a zip without a workbook in it
        raise ImportFailed(
            f"cannot read {path}: not a valid Excel workbook ({exc}); open it in Excel and save it "
            "as .xlsx, or export it as CSV"
        ) from None
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


def to_record(columns: list[str], cells: list[Any]) -> dict[str, Any]:
    """One row keyed by field (``columns`` from ``map_header``); the unknown columns go under
    ``attributes`` by their header."""
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
