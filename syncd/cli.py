"""The ``syncd`` command line."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa

from syncd import db, log
from syncd.app import App, SchemaOutdated
from syncd.config import ConfigError, UnknownList

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Group(click.Group):
    """Turns the errors an operator can act on (a bad config, a database that cannot be reached
    or named) into one clear line and exit status 2, for every command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, UnknownList, SchemaOutdated, db.DatabaseURLError) as exc:
            _fail(str(exc))
        except DATABASE_UNREACHABLE as exc:
            app = ctx.obj if isinstance(ctx.obj, App) else None
            _fail(f"cannot use the database {_described_url(app)}: {_reason(exc, app)}")


DATABASE_UNREACHABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)


def _fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(2)


def _described_url(app: App | None) -> str:
    try:
        return db.safe_url(app.url) if app else "(unknown)"
    except ConfigError:
        return "(unknown)"


def _reason(exc: Exception, app: App | None) -> str:
    """The driver's own first line (psycopg: 'connection timeout expired', 'connection refused'),
    without SQLAlchemy's SQL echo and links, and never the password."""
    orig = getattr(exc, "orig", None) or exc
    text = next((line.strip() for line in str(orig).splitlines() if line.strip()), type(exc).__name__)
    text = text.split(" (Background on this error at:")[0]
    password = _password(app)
    return text.replace(password, "***") if password else text


def _password(app: App | None) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        return make_url(db.normalise_url(app.url)).password if app else None  # type: ignore[return-value]
    except Exception:
        return None


@click.group(cls=_Group, context_settings=CONTEXT)
@click.option(
    "--config",
    "config_path",
    envvar="SYNCD_CONFIG",
    type=click.Path(dir_okay=False),
    help="The YAML file describing lists, providers and rules [env SYNCD_CONFIG; default ./syncd.yaml].",
)
@click.option(
    "--database",
    "database_url",
    envvar="SYNCD_DATABASE_URL",
    help="Master base URL, overriding the config [default sqlite:///syncd.db].",
)
@click.option("--log-level", default="warning", show_default=True, help="debug, info, warning or error.")
@click.version_option(package_name="syncd")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, database_url: str | None, log_level: str) -> None:
    """syncd keeps one clean master contact base and keeps your Brevo lists and Mailchimp
    audiences in line with it: imports, deduplication, consent, double opt-in, per-list
    unsubscribes and wrong-list flags.

    Start with `syncd demo`, then write your own YAML (see config/example.yaml) and check it
    with `syncd check --config FILE`.
    """
    log.configure(log_level)
    ctx.obj = App(config_path=config_path, database_url=database_url)


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="The YAML file to check.")
@click.pass_obj
def check(app: App, config_path: str | None) -> None:
    """Validate a config file and print a summary of its lists and targets."""
    if config_path:
        app.config_path = config_path
    cfg = app.config
    click.echo(f"config OK: {app.config_path or 'built-in defaults'}")
    click.echo(f"database: {db.safe_url(app.url)}")
    providers = [p for p in ("brevo", "mailchimp") if getattr(cfg.providers, p)]
    click.echo(f"providers: {', '.join(providers) or 'none'}")
    click.echo(f"unsubscribe scope: {cfg.unsubscribe.scope}")
    click.echo(f"lists: {len(cfg.lists)}")
    for name, lst in cfg.lists.items():
        targets = ", ".join(t.target.key for t in lst.targets) or "no target"
        extra = " auto-enrol" if lst.auto_enroll else ""
        click.echo(f"  - {name}: consent {lst.consent}{extra}, on violation {lst.on_violation} → {targets}")
    from syncd.web.hooks import auth_summary

    for provider in providers:
        if not getattr(cfg.providers, provider).webhook_secret:
            click.echo(f"warning: providers.{provider}.webhook_secret is not set: its webhooks are refused")
            continue
        base = cfg.double_opt_in.public_url.rstrip("/")
        click.echo(f"webhook URL for {provider}: {base}/hooks/{provider}/<webhook_secret>")
        mechanism, weakness = auth_summary(cfg, provider)
        click.echo(f"webhook authentication for {provider}: {mechanism}")
        if weakness:
            click.echo(f"warning: {weakness}")
    doi_lists = [n for n, lst in cfg.lists.items() if lst.consent == "double_opt_in"]
    if doi_lists and not cfg.double_opt_in.secret:
        lists = ", ".join(doi_lists)
        click.echo(f"warning: double_opt_in.secret is not set: no confirmation mail can be sent ({lists})")
    unscheduled = [n for n, lst in cfg.lists.items() if lst.targets and lst.schedule is None]
    if unscheduled:
        click.echo(f"note: not synced by the daemon (no schedule): {', '.join(unscheduled)}")


@main.command()
@click.argument("names", nargs=-1)
def secret(names: tuple[str, ...]) -> None:
    """Print a fresh random secret (43 characters) for a webhook URL, a bearer or signing secret,
    or double_opt_in.secret. With variable names, print one NAME=secret line each, ready for a
    secrets.env file: `syncd secret BREVO_WEBHOOK_SECRET SYNCD_SECRET >> secrets.env`."""
    from syncd.secret import generate

    for name in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise click.BadParameter(f"{name!r} is not an environment variable name", param_hint="NAMES")
    if not names:
        click.echo(generate())
    for name in names:
        click.echo(f"{name}={generate()}")


@main.group(name="db")
def db_group() -> None:
    """Master base schema: migrations."""


@db_group.command()
@click.pass_obj
def upgrade(app: App) -> None:
    """Create or migrate the master base schema to the latest version."""
    engine = app.new_engine()
    db.upgrade(engine)
    click.echo(f"database {db.safe_url(app.url)} at revision {db.current_revision(engine)}")


@db_group.command()
@click.pass_obj
def current(app: App) -> None:
    """Print the schema revision of the master base."""
    engine = app.new_engine()
    rev, head = db.current_revision(engine), db.head_revision()
    click.echo(f"revision {rev or 'none'} (latest {head})")
    if rev != head:
        sys.exit(1)


@main.command()
@click.argument("provider", type=click.Choice(["brevo", "mailchimp"]))
@click.option("--port", type=int, default=0, help="Port on 127.0.0.1 [default: a free one].")
@click.option("--api-key", default=None, help="The API key the simulator accepts.")
def simulate(provider: str, port: int, api_key: str | None) -> None:
    """Run a provider simulator on 127.0.0.1, to try a config without real accounts.

    \b
    Besides the provider's API, each simulator has an admin API under /_sim (same API key) to
    play what happens on the provider's side:
    Brevo (header api-key):
      PUT  /_sim/account  {"perListUnsubscription": true}   the per-list unsubscription feature
      POST /_sim/contacts/EMAIL/unsubscribe  {"listId": 12}  the contact's own unsubscribe click
      (the account-wide block is the real API's: PUT /v3/contacts/EMAIL {"emailBlacklisted": true})
    Mailchimp (Basic auth, any user name):
      POST /_sim/lists/AUDIENCE/members/EMAIL/ACTION, ACTION one of: unsubscribe ({"reason":
      "abuse"} for a complaint), resubscribe, clean, change-email ({"new_email": "..."})
    """
    from connectors.simulators.harness import free_port

    port = port or free_port()
    if provider == "brevo":
        from connectors.simulators.brevo import serve

        key = api_key or "sim-brevo-key"
        click.echo(f"Brevo simulator on http://127.0.0.1:{port}/v3 (api key: {key}); Ctrl-C stops it")
    else:
        from connectors.simulators.mailchimp import serve

        key = api_key or "sim-mailchimp-key-us1"
        click.echo(f"Mailchimp simulator on http://127.0.0.1:{port}/3.0 (api key: {key}); Ctrl-C stops it")
    serve(port, key)


@main.command()
@click.option("--host", help="Address to listen on [default: the config's server.host, else 127.0.0.1].")
@click.option("--port", type=int, help="Port [default: the config's server.port, else 8080].")
@click.option(
    "--trusted-proxies",
    envvar="SYNCD_TRUSTED_PROXIES",
    metavar="CIDR,...",
    help="Reverse proxies whose X-Forwarded-For gives the client's address, comma-separated "
    "(e.g. 10.0.0.0/8,127.0.0.1) [env SYNCD_TRUSTED_PROXIES; default: the config's "
    "server.trusted_proxies, else none].",
)
@click.pass_obj
def run(app: App, host: str | None, port: int | None, trusted_proxies: str | None) -> None:
    """Run the daemon: the web app (webhooks, confirmation and preference pages, /healthz,
    /readyz, /metrics) and the scheduler (a sync per list on its schedule, webhook inbox, double
    opt-in mail, hygiene scan). SIGTERM finishes the batch in flight, then exits."""
    from syncd import daemon
    from syncd.netaddr import parse_networks

    config, engine = app.config, app.engine
    if trusted_proxies is not None:
        try:
            networks = parse_networks(trusted_proxies)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--trusted-proxies") from None
        server = config.server.model_copy(update={"trusted_proxies": networks})
        config = config.model_copy(update={"server": server})
    proxies = ", ".join(str(n) for n in config.server.trusted_proxies) or "none"
    click.echo(
        f"syncd listening on http://{host or config.server.host}:{port or config.server.port} "
        f"(trusted proxies: {proxies})",
        err=True,
    )
    daemon.run(config, engine, host=host, port=port)


@main.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the demo base (and rejects files) in this folder [default: a temporary one, removed].",
)
@click.option("--keep-running", is_flag=True, help="Leave the daemon and the simulators up at the end.")
@click.option("--port", type=int, help="Port of the demo's web app [default: a free one].")
def demo(folder: Path | None, keep_running: bool, port: int | None) -> None:
    """See syncd do its whole job in one minute, on a throw-away base and the bundled Brevo and
    Mailchimp simulators: import, double opt-in, sync, a per-list unsubscribe, a spam
    complaint and the hygiene scan, narrated with the numbers."""
    from syncd.demo import run_demo

    run_demo(folder, keep_running=keep_running, port=port)


@main.group(name="inbox")
def inbox_group() -> None:
    """The webhook inbox: deliveries stored before they were acknowledged, then applied."""


@inbox_group.command(name="status")
@click.pass_obj
def inbox_status(app: App) -> None:
    """Count deliveries per state, and list the dead letters (failed every retry) with their error."""
    from syncd import inbox

    counts = inbox.backlog(app.engine)
    click.echo(", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "the inbox is empty")
    for row in inbox.dead_letters(app.engine):
        click.echo(
            f"dead #{row.id} {row.provider} received {row.received_at:%Y-%m-%d %H:%M} "
            f"after {row.attempts} attempts: {(row.error or '').splitlines()[0][:200]}"
        )


@inbox_group.command(name="drain")
@click.option("--limit", type=int, default=10_000, show_default=True)
@click.pass_obj
def inbox_drain(app: App, limit: int) -> None:
    """Apply the deliveries waiting in the inbox now (the daemon does it every 10 seconds)."""
    from syncd import inbox

    counts = inbox.drain(app.engine, app.config, limit=limit)
    click.echo(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing to apply")


@inbox_group.command(name="purge")
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Purge what was applied longer ago than this (30m, 2h, 7d) [default: the config's inbox.retention].",
)
@click.pass_obj
def inbox_purge(app: App, older_than: str | None) -> None:
    """Remove the personal data of applied deliveries: the raw body of those applied longer ago
    than inbox.retention (30 days by default), and at once of those naming an erased address.
    The rows stay (status, times), so that a provider's redelivery is still recognised. Deliveries
    waiting to be applied and dead letters keep their body. The daemon does it every 5 minutes."""
    from syncd import inbox_purge
    from syncd.config import parse_duration

    try:
        retention = parse_duration(older_than) if older_than else app.config.inbox.retention
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    done = inbox_purge.purge(app.engine, retention)
    click.echo(
        f"{done.total} delivery(ies) purged of personal data: {done.retention} applied more than "
        f"{_duration(retention)} ago, {done.erased} naming an erased address"
    )


def _duration(value: Any) -> str:
    days, seconds = value.days, value.seconds
    if days and not seconds:
        return f"{days} day(s)"
    return str(value)


@inbox_group.command(name="requeue")
@click.argument("ids", nargs=-1, type=int)
@click.pass_obj
def inbox_requeue(app: App, ids: tuple[int, ...]) -> None:
    """Give dead letters (all, or the ids given) a fresh start, e.g. after a fix."""
    from syncd import inbox

    click.echo(f"{inbox.requeue(app.engine, list(ids) or None)} delivery(ies) queued again")


@main.group(name="doi")
def doi_group() -> None:
    """Double opt-in mail: confirmation requests syncd could not send."""


@doi_group.command(name="status")
@click.pass_obj
def doi_status(app: App) -> None:
    """Count confirmation links per delivery state, and list the requests syncd gave up mailing
    (a permanent refusal, or every retry failed) with the reason."""
    from syncd import doi

    counts = doi.delivery_counts(app.engine)
    dead = doi.dead_requests(app.engine)
    click.echo(", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no confirmation link yet")
    for d in dead:
        click.echo(
            f"dead #{d.token_id} {d.email} list {d.list_name} after {d.attempts} attempts, "
            f"last {d.last_at:%Y-%m-%d %H:%M}: {d.error.splitlines()[0][:200] if d.error else ''}"
        )


@doi_group.command(name="requeue")
@click.argument("ids", nargs=-1, type=int)
@click.pass_obj
def doi_requeue(app: App, ids: tuple[int, ...]) -> None:
    """Give dead requests (all, or the ids `doi status` shows) one more attempt, e.g. after fixing
    the mail server."""
    from syncd import doi

    click.echo(f"{doi.requeue(app.engine, list(ids) or None)} request(s) queued again")


def _register_subcommands() -> None:
    import importlib

    for module, names in (
        ("syncd.contacts.cli", ("import_cmd", "contacts")),
        ("syncd.sync.cli", ("sync", "flags", "runs")),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        for name in names:
            main.add_command(getattr(mod, name))


_register_subcommands()
