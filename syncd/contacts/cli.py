"""``syncd import`` and ``syncd contacts show|export|forget``: the click layer only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from syncd.app import App
from syncd.contacts import gdpr
from syncd.contacts.importer import ImportFailed, ImportInterrupted, Options, Summary, import_file, parse_map
from syncd.contacts.qualify import Rules

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
    help="Where to write the rows that were not imported [default: FILE.rejects.csv beside FILE].",
)
@click.option(
    "--batch-size", type=click.IntRange(1), default=1000, show_default=True, help="Rows per transaction."
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
    batch_size: int,
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
    )
    engine = app.engine
    bar = _ProgressBar() if sys.stderr.isatty() else None
    try:
        summary = import_file(engine, file, options, rejects_path=rejects_path, progress=bar)
    except ImportFailed as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
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


@click.group("contacts")
def contacts() -> None:
    """Look up one contact, export what is held about them, or erase them (GDPR)."""


@contacts.command()
@click.argument("email")
@click.pass_obj
def show(app: App, email: str) -> None:
    """Show one contact: record, sources, consents, list memberships, provider states and flags."""
    from sqlmodel import Session

    with Session(app.engine) as session:
        contact = gdpr.find_contact(session, email)
        if contact is None:
            forgotten = gdpr.is_forgotten(session, email)
            click.echo("this address was erased at the contact's request" if forgotten else "no such contact")
            sys.exit(1)
        record = gdpr.contact_record(session, contact)
    c = record["contact"]
    name = " ".join(p for p in (c["first_name"], c["last_name"]) if p) or "(no name)"
    click.echo(f"{name} <{c['email']}>  #{c['id']}  email {c['email_status']}")
    for key in ("kind", "stage", "company", "siret", "phone", "postal_code", "city", "region", "country"):
        if c[key]:
            click.echo(f"  {key:<12} {c[key]}")
    if c["tags"]:
        click.echo(f"  {'tags':<12} {', '.join(c['tags'])}")
    for key, value in c["attributes"].items():
        click.echo(f"  {key:<12} {value}")
    if c["global_opt_out"]:
        click.echo(f"  OPTED OUT of everything since {c['opt_out_at']}: {c['opt_out_reason']}")
    click.echo(f"  created {c['created_at']}, updated {c['updated_at']} (version {c['version']})")
    _section(
        "sources",
        record["sources"],
        lambda r: (
            f"{r['channel']}  {r['detail'] or ''}" + (f" row {r['row']}" if r["row"] else "") + f"  {r['at']}"
        ),
    )
    _section(
        "consents",
        record["consents"],
        lambda r: f"{r['at']}  {r['action']}  list {r['list_name'] or 'all'}  source {r['source'] or '-'}",
    )
    _section(
        "lists",
        record["memberships"],
        lambda r: (
            f"{r['list_name']}: {r['status']} since {r['since']}"
            + (f" ({r['reason']})" if r["reason"] else "")
        ),
    )
    _section(
        "provider targets",
        record["target_states"],
        lambda r: (
            f"{r['target_key']} list {r['list_name']}: "
            f"{r['remote_status'] or '-'}, pushed {r['pushed_at'] or 'never'}"
        ),
    )
    _section(
        "flags",
        record["flags"],
        lambda r: (
            f"{r['list_name']}: {r['rule']} {r['detail'] or ''}" + (" (resolved)" if r["resolved_at"] else "")
        ),
    )


def _section(title: str, rows: list[dict[str, Any]], line: Any) -> None:
    click.echo(f"{title}: {len(rows) or 'none'}")
    for row in rows:
        click.echo(f"  - {line(row)}")


@contacts.command()
@click.argument("email")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
@click.pass_obj
def export(app: App, email: str, output: Path | None) -> None:
    """Export as JSON everything held about one contact (GDPR right of access)."""
    data = gdpr.export_contact(app.engine, email)
    if data is None:
        click.secho("no such contact", fg="red", err=True)
        sys.exit(1)
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        click.echo(f"written to {output}", err=True)
    else:
        click.echo(text)


@contacts.command()
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--local-only", is_flag=True, help="Erase from the master base only, not at the providers.")
@click.pass_obj
def forget(app: App, email: str, yes: bool, local_only: bool) -> None:
    """Erase one contact for good (GDPR right to erasure).

    The contact and everything attached (sources, consents, list memberships, flags) are deleted,
    the audit trail and the stored webhook deliveries keep no personal data about them, and the
    address is blocked: a later import
    of it is rejected and a sync never brings it back. Unless --local-only, the contact is also
    deleted at the providers of the config's lists (Brevo account, Mailchimp audiences).
    """
    if not yes:
        click.confirm(f"Erase {email} for good? This cannot be undone", abort=True)
    from syncd.inbox_purge import connector_parser

    result = gdpr.forget_contact(app.engine, email, actor="cli", parse=connector_parser(app.config))
    if result.found:
        removed = ", ".join(f"{n} {t}" for t, n in result.deleted.items() if n)
        click.echo(f"erased: {removed}; {result.audit_scrubbed} audit entries scrubbed; address blocked")
    else:
        click.echo("no contact with that address; the address is blocked from future imports")
    click.echo(f"webhook inbox: {result.inbox_scrubbed} stored deliveries scrubbed")
    if result.inbox_held:
        click.echo(
            f"  {result.inbox_held} still to apply (they carry other contacts' events): "
            "scrubbed once applied (syncd inbox drain, then syncd inbox purge; the daemon does both)"
        )
    if not local_only:
        _erase_at_providers(app, gdpr.lookup_email(email))


def _erase_at_providers(app: App, email: str) -> None:
    from connectors.contract import ConnectorError
    from syncd.providers import make_connector

    # Brevo deletes account-wide: once is enough; Mailchimp erases per audience.
    targets = {}
    for lst in app.config.lists.values():
        for t in lst.targets:
            target = t.target
            key = "brevo" if target.provider == "brevo" else f"mailchimp:{target.list_id}"
            targets.setdefault(key, target)
    failed = False
    for key, target in sorted(targets.items()):
        try:
            held = make_connector(app.config, target.provider).erase(target, email)
        except ConnectorError as exc:
            failed = True
            click.secho(f"{key}: NOT erased ({exc}); run the command again later", fg="red", err=True)
            continue
        click.echo(f"{key}: {'deleted' if held else 'not held there'}")
    if failed:
        sys.exit(1)
