"""``syncd import``: contacts from a CSV or Excel file, the click layer only."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from syncd.app import App
from syncd.cli.output import plural
from syncd.contacts.importer import ImportCancelled, ImportInterrupted, Options, import_file
from syncd.contacts.qualify import Rules
from syncd.contacts.summary import Summary
from syncd.contacts.tables import ImportFailed, parse_map

CONSENTS = ("single_opt_in", "none")


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--source",
    "channel",
    required=True,
    help="Where these contacts come from: newsletter, site, fair-2024, purchased-file…",
)
@click.option("--kind", help="Kind given to rows without a type column value (client, prospect, vendor…).")
@click.option(
    "--list",
    "list_name",
    help="Also add the imported contacts to this list of the config: those its segment and "
    "exclusivity rules admit (the others are imported, kept out of it, and counted per reason).",
)
@click.option(
    "--consent",
    type=click.Choice(CONSENTS),
    help="What the people in the file agreed to, for --list. single_opt_in records an opt-in "
    "(proof: this source and file); none records nothing (a purchased file).",
)
@click.option(
    "--map",
    "mapping",
    metavar="'Col=field,…'",
    help="Say which column holds which field when the headers are not recognised, "
    "e.g. 'Adresse=email,Nom société=company'. Fields: email, first_name, last_name, "
    "phone, company, siret, siren, kind, tags, city, postal_code, country, region, ignore.",
)
@click.option(
    "--rejects",
    "rejects_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the rows that were not imported [default: FILE.rejects-DATE-TIME.csv beside "
    "FILE, a new one for each run].",
)
@click.option(
    "--update",
    is_flag=True,
    help="The file's values win over those already held (a kind, a phone, a company…); each value "
    "replaced is audited (old → new). Without it a value held is kept and the difference reported.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=None,
    help="Rows per transaction [default: 5,000 on PostgreSQL, 1,000 on SQLite].",
)
@click.pass_obj
def import_cmd(
    app: App,
    file: Path,
    channel: str,
    kind: str | None,
    list_name: str | None,
    consent: str | None,
    mapping: str | None,
    rejects_path: Path | None,
    batch_size: int | None,
    update: bool,
) -> None:
    """Import contacts from a CSV (; , or tab; UTF-8 or Windows-1252) or an Excel .xlsx file.

    Addresses are checked, names and phone numbers cleaned up, duplicates merged with the contacts
    already known (a value already held is kept; the difference is reported). Rows that cannot be
    imported are written to a rejects file with their line number and the reason. Running the same
    import twice changes nothing the second time.
    """
    cfg = app.config
    if kind and kind not in cfg.kinds:
        raise click.BadParameter(
            f"unknown kind {kind!r}; expected one of {', '.join(cfg.kinds)}", param_hint="--kind"
        )
    if consent and not list_name:
        raise click.UsageError("--consent goes with --list: consent is given to a list")
    list_cfg = None
    if list_name:
        if list_name not in cfg.lists:
            raise click.BadParameter(
                f"unknown list {list_name!r}; the config has: {', '.join(cfg.lists) or 'none'}",
                param_hint="--list",
            )
        list_cfg = cfg.lists[list_name]
        consent = consent or "none"
        if consent == "none" and list_cfg.consent != "legitimate_interest":
            raise click.UsageError(
                f"list {list_name!r} needs {list_cfg.consent.replace('_', ' ')}: pass "
                "--consent single_opt_in only if the people in this file opted in to it "
                "(a purchased file cannot join it)"
            )
    try:
        overrides = parse_map(mapping)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--map") from None
    q = cfg.qualification
    options = Options(
        channel=channel,
        rules=Rules(q.default_region.upper(), q.check_deliverability, tuple(cfg.kinds), kind),
        mapping=overrides,
        list_name=list_name,
        list_cfg=list_cfg,
        all_lists=cfg.lists,
        consent=consent or "none",
        batch_size=batch_size,
        update=update,
    )
    engine = app.engine
    bar = _ProgressBar() if sys.stderr.isatty() else None
    rejects_path = rejects_path or run_rejects_path(file)
    try:
        summary = import_file(engine, file, options, rejects_path=rejects_path, progress=bar)
    except ImportFailed as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    except ImportCancelled as exc:
        if bar:
            bar.close()
        _cancelled(file, channel, exc, rejects_path)
    except ImportInterrupted as exc:
        if bar:
            bar.close()
        _print_summary(file, channel, exc.summary)
        click.secho(
            f"error: {exc}; the rows before that batch are imported, run the same command again "
            "once the problem is fixed",
            fg="red",
            err=True,
        )
        sys.exit(1)
    if bar:
        bar.close()
    _print_summary(file, channel, summary)
    if summary.rejects_path:
        click.echo(f"rows not imported: {summary.rejects_path}")


def run_rejects_path(file: Path, now: datetime | None = None) -> Path:
    """This run's rejects file beside FILE, named after the time of the run: a second import of
    the same file never overwrites the rejects of the first."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    path, n = file.with_name(f"{file.stem}.rejects-{stamp}.csv"), 1
    while path.exists():
        n += 1
        path = file.with_name(f"{file.stem}.rejects-{stamp}-{n}.csv")
    return path


def _cancelled(file: Path, channel: str, exc: ImportCancelled, rejects_path: Path) -> None:
    """Ctrl-C: what is in the base, and that running the command again is safe (each row's
    provenance is recorded, so rows already imported come out unchanged, not duplicated)."""
    s = exc.summary
    if s.rejected:
        s.rejects_path = str(rejects_path)
    _print_summary(file, channel, s)
    done = (
        f"committed the rows up to line {exc.line} ({plural(s.read, 'row')} read)"
        if s.read
        else "no row committed"
    )
    click.secho(
        f"interrupted: {done}, nothing of the batch in progress; run the same command again to "
        "import the rest (rows already imported are recognised, not duplicated)",
        fg="yellow",
        err=True,
    )
    sys.exit(130)


class _ProgressBar:
    """click's progress bar on stderr, created once the size is known."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = click.progressbar(length=max(total, 1), label="importing", file=sys.stderr)
            self._bar.__enter__()
        self._bar.update(max(0, done - self._done))
        self._done = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def _print_summary(file: Path, channel: str, s: Summary) -> None:
    click.echo(f"import of {file.name} (source: {channel})")
    lines = [
        ("read", s.read, ""),
        ("imported (new)", s.imported, ""),
        ("merged", s.merged, ""),
        ("unchanged", s.unchanged, ""),
        ("rejected", s.rejected, f"  → {s.rejects_path}" if s.rejects_path else ""),
        ("incomplete (no name)", s.incomplete, ""),
        ("conflicts (value kept)", s.conflicts, ""),
        *([("updated (file won)", s.updated, "")] if s.updated else []),
        ("phones dropped", s.phones_dropped, ""),
        ("SIRET/SIREN dropped", s.siret_dropped, ""),
        ("other warnings", s.other_warnings, ""),
    ]
    if s.not_joined:
        lines.append(("not added to the list", s.not_joined, "  (imported, kept out of the list)"))
    for label, value, extra in lines:
        click.echo(f"  {label:<24}{value:>9}{extra}")
    for reason, n in s.not_joined_why.most_common():
        click.echo(f"    {n:>6}  {reason}")
    if s.notes:
        click.echo("details:" if len(s.notes) < 50 else "details (first 50):")
        for note in s.notes:
            click.echo(f"  {note}")
