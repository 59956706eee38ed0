"""How the read commands print what they found, the same way everywhere: ``--format table``
(header row, aligned columns, one clear line when there is nothing), ``json`` (for scripts) and,
for lists, ``csv`` (for a spreadsheet); and counts that read as English ("1 addition",
"2 additions")."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import click

TABLE, JSON, CSV = "table", "json", "csv"
F = TypeVar("F", bound=Callable[..., Any])

# Irregular plurals of the words the CLI counts; the others take an "s".
_PLURALS = {
    "delivery": "deliveries",
    "entry": "entries",
    "reply": "replies",
    "day": "days",
    "address": "addresses",
    "was": "were",
}


class Failure(click.ClickException):
    """A command that cannot do its job: "error: MESSAGE" on stderr, exit status 1 (2 for a
    usage or config error), like the errors the CLI root turns into one line."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.exit_code = status

    def show(self, file: Any = None) -> None:
        click.secho(f"error: {self.format_message()}", fg="red", err=True)


def plural(n: int, singular: str, many: str | None = None) -> str:
    """``n`` and the noun agreeing with it: "0 flags", "1 flag", "2 flags"."""
    return f"{n} {singular if n == 1 else (many or plural_of(singular))}"


def plural_of(word: str) -> str:
    if word in _PLURALS:
        return _PLURALS[word]
    head, _, last = word.rpartition(" ")  # "open flag" → "open flags"
    if head:
        return f"{head} {plural_of(last)}"
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


# The sync plan's kinds of change (syncd.core.plan.Plan.KINDS) as nouns.
CHANGE_NOUNS = {
    "adds": "addition",
    "updates": "update",
    "removals": "removal",
    "unblocks": "unblock",
    "flags": "flag",
    "reconfirms": "reconfirmation",
}


def changes(counts: Mapping[str, int], empty: str = "") -> str:
    """``{"adds": 1, "removals": 2}`` → "1 addition, 2 removals" (zero counts left out)."""
    text = ", ".join(plural(n, CHANGE_NOUNS.get(kind, kind)) for kind, n in counts.items() if n)
    return text or empty


def format_option(*choices: str) -> Callable[[F], F]:
    """The ``--format`` option of a read command: ``table`` and ``json``, plus ``csv`` for lists."""
    names = choices or (TABLE, JSON)
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(names)),
        default=TABLE,
        show_default=True,
        help="table for people, json for scripts" + (", csv for a spreadsheet" if CSV in names else "") + ".",
    )


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def echo_rows(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    fmt: str,
    *,
    empty: str,
    headers: Sequence[str] | None = None,
) -> None:
    """A list of records: a table with a header row (or the one line ``empty`` when there is
    none), a JSON array, or CSV with a header row."""
    if fmt == JSON:
        echo_json([dict(r) for r in rows])
    elif fmt == CSV:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    elif not rows:
        click.echo(empty)
    else:
        for line in table_lines(rows, columns, headers or [c.upper() for c in columns]):
            click.echo(line)


def table_lines(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str], headers: Sequence[str]
) -> list[str]:
    """Aligned columns under a header row; an empty value shows as "-"."""
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    out = []
    for row in [list(headers), *cells]:
        out.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return out


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)
