"""``syncd contacts show|export|forget``: one contact, its GDPR access and erasure."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from connectors.contract import ConnectorError
from syncd.app import App
from syncd.contacts import gdpr
from syncd.providers import PROVIDERS, make_connector
from syncd.users import cli_actor


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

    result = gdpr.forget_contact(app.engine, email, actor=cli_actor(), parse=connector_parser(app.config))
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
        _erase_at_providers(app, [gdpr.lookup_email(email), *result.former])


def _erase_at_providers(app: App, addresses: list[str]) -> None:
    # A provider that deletes account-wide (Brevo) is asked once; the others (Mailchimp) per list.
    targets = {}
    for lst in app.config.lists.values():
        for t in lst.targets:
            target = t.target
            whole = PROVIDERS[target.provider].traits.erases_account_wide
            key = target.provider if whole else f"{target.provider}:{target.list_id}"
            targets.setdefault(key, target)
    failed = False
    for key, target in sorted(targets.items()):
        connector = make_connector(app.config, target.provider)
        try:
            held = [connector.erase(target, email) for email in addresses]
        except ConnectorError as exc:
            failed = True
            click.secho(f"{key}: NOT erased ({exc}); run the command again later", fg="red", err=True)
            continue
        click.echo(f"{key}: {'deleted' if any(held) else 'not held there'}")
    if failed:
        sys.exit(1)
