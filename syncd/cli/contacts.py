"""``syncd contacts show|export|forget|set|note|subscribe|unsubscribe``: one contact (its record or
its timeline, GDPR access and erasure, changes and notes by hand), and ``export --all``: every
contact."""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from connectors.contract import ConnectorError
from syncd.app import App
from syncd.cli.output import JSON, Failure, echo_json, echo_rows, format_option, plural
from syncd.contacts import gdpr
from syncd.notes import CHANNELS as NOTE_CHANNELS
from syncd.providers import PROVIDERS, make_connector
from syncd.users import cli_actor
from syncd.web.wording import LANGUAGES


@click.group("contacts")
def contacts() -> None:
    """Look up one contact, change it by hand (fields, tags, lists), export what is held about
    them (one, or every contact), or erase them (GDPR)."""


@contacts.command()
@click.argument("email")
@click.option(
    "--timeline",
    "as_timeline",
    is_flag=True,
    help="What happened to the contact, oldest first: sources, consents, lists, provider events, "
    "pushes, notes and changes, each with who did it.",
)
@click.option(
    "--lang",
    type=click.Choice(LANGUAGES),
    default="en",
    show_default=True,
    help="The language of the timeline's summaries (with --timeline).",
)
@format_option()
@click.pass_obj
def show(app: App, email: str, as_timeline: bool, lang: str, fmt: str) -> None:
    """Show one contact: record, sources, consents, list memberships, provider states and flags;
    or with --timeline its history."""
    from sqlmodel import Session

    if as_timeline:
        _show_timeline(app, email, fmt, lang)
        return
    with Session(app.engine) as session:
        contact = gdpr.find_contact(session, email)
        if contact is None:
            forgotten = gdpr.is_forgotten(session, email)
            why = "this address was erased at the contact's request" if forgotten else "no such contact"
            click.secho(f"error: {why}", fg="red", err=True)
            sys.exit(1)
        record = gdpr.contact_record(session, contact)
    if fmt == JSON:
        echo_json(record)
        return
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


def _show_timeline(app: App, email: str, fmt: str, lang: str) -> None:
    from sqlmodel import Session

    from syncd.timeline import timeline

    with Session(app.engine) as session:
        entries = timeline(session, email, lang)
        if entries is None:
            _the_contact(session, email)  # one line, exit status 1
            return
    rows = [e.as_dict() for e in entries]
    if fmt == JSON:
        echo_json(rows)
        return
    for row, entry in zip(rows, entries, strict=True):
        row["time"] = entry.at.strftime("%Y-%m-%d %H:%M:%S")
    echo_rows(
        rows,
        ["time", "kind", "summary", "actor"],
        fmt,
        empty="nothing recorded for this contact",
        headers=["TIME (UTC)", "KIND", "SUMMARY", "BY"],
    )


def _section(title: str, rows: list[dict[str, Any]], line: Any) -> None:
    click.echo(f"{title}: {len(rows) or 'none'}")
    for row in rows:
        click.echo(f"  - {line(row)}")


@contacts.command()
@click.argument("email", required=False)
@click.option("--all", "everyone", is_flag=True, help="Every contact, with its lists (bulk extraction).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv"]),
    default="json",
    show_default=True,
    help="With --all: a JSON array or a CSV file.",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
@click.pass_obj
def export(app: App, email: str | None, everyone: bool, fmt: str, output: Path | None) -> None:
    """Export as JSON everything held about one contact (GDPR right of access), or with --all
    every contact and its list memberships, as JSON or CSV, written as it is read."""
    if everyone == bool(email):
        raise click.UsageError("give one EMAIL, or --all for every contact")
    if everyone:
        _export_all(app, fmt, output)
        return
    if fmt != "json":
        raise click.UsageError("one contact is exported as JSON: --format csv goes with --all")
    data = gdpr.export_contact(app.engine, email or "")
    if data is None:
        holder = gdpr.former_holder(app.engine, email or "")
        click.secho("error: no such contact", fg="red", err=True)
        if holder is not None:
            _former_address_note(email or "", holder, "export")
        sys.exit(1)
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        click.echo(f"written to {output}", err=True)
    else:
        click.echo(text)


def _export_all(app: App, fmt: str, output: Path | None) -> None:
    from syncd.contacts import export as bulk

    write = bulk.write_csv if fmt == "csv" else bulk.write_json
    rows = bulk.contacts(app.engine)
    if output is None:
        write(rows, sys.stdout)
        return
    with output.open("w", encoding="utf-8", newline="") as handle:
        n = write(rows, handle)
    click.echo(f"{plural(n, 'contact')} written to {output}", err=True)


@contacts.command()
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--local-only", is_flag=True, help="Erase from the master base only, not at the providers.")
@click.pass_obj
def forget(app: App, email: str, yes: bool, local_only: bool) -> None:
    """Erase one contact for good (GDPR right to erasure).

    The contact and everything attached (sources, consents, list memberships, flags, notes) are deleted,
    the audit trail and the stored webhook deliveries keep no personal data about them, and the
    address is blocked: a later import
    of it is rejected and a sync never brings it back. Unless --local-only, the contact is also
    deleted at the providers of the config's lists (Brevo account, Mailchimp audiences).

    An address the contact has left (a change of address) is blocked, and the address the contact
    has now is named (exit 1): run the command again under it once the request is checked.
    """
    if not yes:
        click.confirm(f"Erase {email} for good? This cannot be undone", abort=True)
    from syncd.inbox_purge import connector_parser

    result = gdpr.forget_contact(app.engine, email, actor=cli_actor(), parse=connector_parser(app.config))
    if result.found:
        removed = ", ".join(plural(n, t) for t, n in result.deleted.items() if n)
        scrubbed = plural(result.audit_scrubbed, "audit entry")
        click.echo(f"erased: {removed}; {scrubbed} scrubbed; address blocked")
    else:
        click.echo("no contact with that address; the address is blocked from future imports")
    click.echo(f"webhook inbox: {plural(result.inbox_scrubbed, 'stored delivery')} scrubbed")
    if result.former_of is not None:
        _former_address_note(email, result.former_of, "forget")
    if result.inbox_held:
        click.echo(
            f"  {result.inbox_held} still to apply (they carry other contacts' events): "
            "scrubbed once applied (syncd inbox drain, then syncd inbox purge; the daemon does both)"
        )
    if not local_only:
        _erase_at_providers(app, [gdpr.lookup_email(email), *result.former])
    if result.former_of is not None:
        sys.exit(1)  # the person's record is still held: the request is not complete


def _former_address_note(email: str, holder: gdpr.FormerHolder, command: str) -> None:
    """A request under an address a contact left: who holds the record now, and what to run if the
    request is theirs (the former address alone may be someone else's by now)."""
    click.secho(
        f"{gdpr.lookup_email(email)} is a former address of the contact now at {holder.email} "
        f"(changed {holder.until:%Y-%m-%d}); if the request is theirs, run: "
        f"syncd contacts {command} {holder.email}",
        fg="yellow",
        err=True,
    )


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


# --- changes by hand ---------------------------------------------------------------------------------


def _actor() -> str:
    """``cli:<os user>``: who made a change by hand, for the audit trail."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = str(os.getuid())
    return f"cli:{user}"


def _the_contact(session: Any, email: str) -> Any:
    """The contact, or one line and exit status 1 (unknown, or erased)."""
    contact = gdpr.find_contact(session, email)
    if contact is None:
        erased = gdpr.is_forgotten(session, email)
        click.secho(
            "error: this address was erased at the contact's request"
            if erased
            else f"error: no contact with the address {gdpr.lookup_email(email)}",
            fg="red",
            err=True,
        )
        sys.exit(1)
    return contact


@contacts.command("set")
@click.argument("email")
@click.argument("assignments", nargs=-1, metavar="FIELD=VALUE...")
@click.option(
    "--tag", "tags", multiple=True, metavar="+TAG|-TAG", help="Add (+) or remove (-) a tag; repeatable."
)
@click.pass_obj
def set_fields(app: App, email: str, assignments: tuple[str, ...], tags: tuple[str, ...]) -> None:
    """Change one contact's fields, checked as an import checks them.

    FIELD is one of first_name, last_name, phone, company, siret, kind, stage, country, region,
    city, postal_code; an empty VALUE clears it. Phones become international (+33…), a country
    its ISO code, a kind one of the config's kinds. Each change is audited (old → new) under
    cli:<your user name>. Example: syncd contacts set ana@example.fr kind=client phone="06 12 34 56 78"
    --tag +vip --tag=-salon
    """
    from sqlmodel import Session

    from syncd.contacts import edit

    if not assignments and not tags:
        raise click.UsageError("nothing to change: give FIELD=VALUE pairs or --tag +TAG/-TAG")
    try:
        pairs = edit.parse_assignments(assignments)
        tag_ops = edit.parse_tags(tags)
    except edit.InvalidChange as exc:
        raise click.BadParameter(
            str(exc), param_hint="FIELD=VALUE" if "--tag" not in str(exc) else "--tag"
        ) from None
    with Session(app.engine) as session:
        contact = _the_contact(session, email)
        try:
            values = edit.qualified_values(contact, pairs, app.config)
        except edit.InvalidChange as exc:
            raise click.BadParameter(str(exc), param_hint="FIELD=VALUE") from None
        changes = edit.apply_changes(session, contact, values, tag_ops, actor=_actor())
        session.commit()
    if not changes:
        click.echo("nothing to change: the contact already holds these values")
    for c in changes:
        click.echo(f"{c.field}: {c.old!r} → {c.new!r}")


@contacts.command()
@click.argument("email")
@click.option(
    "--channel",
    required=True,
    metavar="|".join(NOTE_CHANNELS),
    help="How the team was in touch: " + ", ".join(NOTE_CHANNELS) + ".",
)
@click.option("--text", "text", required=True, help="What was said or agreed (at most 2000 characters).")
@click.pass_obj
def note(app: App, email: str, channel: str, text: str) -> None:
    """Keep a note about one contact (a call, a meeting at a fair), under cli:<your user name>.

    The note shows in `syncd contacts show EMAIL --timeline`, is exported and erased with the
    contact; the audit trail records that a note was added and its channel, never its text.
    Example: syncd contacts note ana@example.fr --channel phone --text "wants the spring catalogue"
    """
    from syncd.notes import InvalidNote, UnknownContact, add_note

    try:
        add_note(app.engine, email, channel, text, cli_actor())
    except InvalidNote as exc:
        raise Failure(str(exc), status=2) from None
    except UnknownContact as exc:
        raise Failure(str(exc)) from None
    click.echo(f"note added to {gdpr.lookup_email(email)}")


@contacts.command()
@click.argument("email")
@click.option("--list", "list_name", required=True, help="The list of the config to join.")
@click.option(
    "--consent",
    type=click.Choice(["single_opt_in", "double_opt_in"]),
    required=True,
    help="single_opt_in: the contact agreed, record it; double_opt_in: mail a confirmation link "
    "(double_opt_in lists only), the contact joins once they click.",
)
@click.option(
    "--evidence",
    metavar="TEXT",
    help="What the contact agreed to, where and when (kept with the consent); required to bring "
    "back someone who left the list or opted out.",
)
@click.option(
    "--send/--no-send",
    default=True,
    show_default=True,
    help="Double opt-in: mail the confirmation now, or leave it to the daemon's double opt-in job.",
)
@click.pass_obj
def subscribe(app: App, email: str, list_name: str, consent: str, evidence: str | None, send: bool) -> None:
    """Add one contact to a list, with the consent recorded (source cli:<your user name>).

    Refused, with the reason: an address bounced, complained or invalid, or erased; a contact
    outside the list's segment or kept out by its exclusive_with rule. A double-opt-in list
    makes the contact pending and mails the confirmation link (at once when double_opt_in.secret
    is set, else by the daemon's job); the next sync pushes the contact once they confirm.
    """
    from sqlmodel import Session

    from syncd.contacts import edit

    app.config.list(list_name)  # unknown list: one clear line, exit status 2
    actor = _actor()
    with Session(app.engine, expire_on_commit=False) as session:
        contact = _the_contact(session, email)
        try:
            joined = edit.subscribe(
                session, app.config, contact, list_name, consent=consent, evidence=evidence, source=actor
            )
        except edit.Refused as exc:
            click.secho(f"error: not subscribed: {exc}", fg="red", err=True)
            sys.exit(1)
        session.commit()
        status = joined.status
        if status == "pending" and send and app.config.double_opt_in.secret:
            _send_confirmation(app, session, contact, list_name)
        elif status == "pending":
            click.echo(f"{list_name}: pending; the daemon's double opt-in job mails the confirmation link")
        else:
            click.echo(f"{list_name}: {status}")


def _send_confirmation(app: App, session: Any, contact: Any, list_name: str) -> None:
    from syncd import doi
    from syncd.doi.requests import send_link
    from syncd.models import utcnow

    try:
        sent = send_link(
            app.engine, session, app.config, doi.transport(app.config), contact, list_name, now=utcnow()
        )
    except (doi.DoiNotConfigured, ConnectorError) as exc:
        sent, reason = False, str(exc)
    else:
        reason = "see `syncd doi status`"
    if sent:
        click.echo(f"{list_name}: pending; confirmation link mailed")
    else:
        click.secho(
            f"{list_name}: pending; the confirmation could not be mailed now ({reason}): "
            "the daemon's double opt-in job tries again",
            fg="yellow",
        )


@contacts.command()
@click.argument("email")
@click.option("--list", "list_name", help="Leave this list only (the others stay as they are).")
@click.option("--all", "everything", is_flag=True, help="Unsubscribe from everything (a global opt-out).")
@click.option("--reason", default="asked the team", show_default=True, help="Why, for the record.")
@click.pass_obj
def unsubscribe(app: App, email: str, list_name: str | None, everything: bool, reason: str) -> None:
    """Take one contact off one list (--list L: the other lists stay) or off everything (--all),
    as if they had clicked the unsubscribe link; recorded under cli:<your user name>. The next
    `syncd sync` takes them off the provider's list."""
    from sqlmodel import Session

    from syncd.membership import leave_list, membership, opt_out_everywhere

    if bool(list_name) == everything:
        raise click.UsageError("give --list L to leave one list, or --all for everything")
    if list_name:
        app.config.list(list_name)
    actor = _actor()
    with Session(app.engine) as session:
        contact = _the_contact(session, email)
        held = membership(session, contact.id, list_name) if list_name else None
        if held is not None and held.status == "unsubscribed" or (everything and contact.global_opt_out):
            click.echo(f"already unsubscribed from {list_name or 'everything'}: nothing to do")
            return
        if list_name:
            leave_list(session, contact, list_name, reason=f"cli: {reason}", source=actor)
            done = f"unsubscribed from {list_name}; the other lists are unchanged"
        else:
            opt_out_everywhere(session, contact, reason=f"cli: {reason}", source=actor)
            done = "unsubscribed from everything"
        session.commit()
    click.echo(f"{done}; the next `syncd sync` updates the providers")
