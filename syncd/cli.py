"""The ``syncd`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from syncd import db, log
from syncd.app import App, SchemaOutdated
from syncd.config import ConfigError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Group(click.Group):
    """Turns the errors a marketer can act on into one clear line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, SchemaOutdated) as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)


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
    click.echo(f"database: {_safe_url(app.url)}")
    providers = [p for p in ("brevo", "mailchimp") if getattr(cfg.providers, p)]
    click.echo(f"providers: {', '.join(providers) or 'none'}")
    click.echo(f"unsubscribe scope: {cfg.unsubscribe.scope}")
    click.echo(f"lists: {len(cfg.lists)}")
    for name, lst in cfg.lists.items():
        targets = ", ".join(t.target.key for t in lst.targets) or "no target"
        extra = " auto-enrol" if lst.auto_enroll else ""
        click.echo(f"  - {name}: consent {lst.consent}{extra}, on violation {lst.on_violation} → {targets}")
    for provider in providers:
        if not getattr(cfg.providers, provider).webhook_secret:
            click.echo(f"warning: providers.{provider}.webhook_secret is not set: its webhooks are refused")
        else:
            base = cfg.double_opt_in.public_url.rstrip("/")
            click.echo(f"webhook URL for {provider}: {base}/hooks/{provider}/<webhook_secret>")
    doi_lists = [n for n, lst in cfg.lists.items() if lst.consent == "double_opt_in"]
    if doi_lists and not cfg.double_opt_in.secret:
        lists = ", ".join(doi_lists)
        click.echo(f"warning: double_opt_in.secret is not set: no confirmation mail can be sent ({lists})")
    unscheduled = [n for n, lst in cfg.lists.items() if lst.targets and lst.schedule is None]
    if unscheduled:
        click.echo(f"note: not synced by the daemon (no schedule): {', '.join(unscheduled)}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@main.group(name="db")
def db_group() -> None:
    """Master base schema: migrations."""


@db_group.command()
@click.pass_obj
def upgrade(app: App) -> None:
    """Create or migrate the master base schema to the latest version."""
    engine = db.make_engine(app.url)
    db.upgrade(engine)
    click.echo(f"database {_safe_url(app.url)} at revision {db.current_revision(engine)}")


@db_group.command()
@click.pass_obj
def current(app: App) -> None:
    """Print the schema revision of the master base."""
    engine = db.make_engine(app.url)
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
    from connectors.simulators.server import free_port

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
@click.pass_obj
def run(app: App, host: str | None, port: int | None) -> None:
    """Run the daemon: the web app (webhooks, confirmation and preference pages, /healthz,
    /readyz, /metrics) and the scheduler (a sync per list on its schedule, webhook inbox, double
    opt-in mail, hygiene scan). SIGTERM finishes the batch in flight, then exits."""
    from syncd import daemon

    config, engine = app.config, app.engine
    click.echo(
        f"syncd listening on http://{host or config.server.host}:{port or config.server.port}", err=True
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


@inbox_group.command(name="requeue")
@click.argument("ids", nargs=-1, type=int)
@click.pass_obj
def inbox_requeue(app: App, ids: tuple[int, ...]) -> None:
    """Give dead letters (all, or the ids given) a fresh start, e.g. after a fix."""
    from syncd import inbox

    click.echo(f"{inbox.requeue(app.engine, list(ids) or None)} delivery(ies) queued again")


def _register_subcommands() -> None:
    import importlib

    for module, names in (
        ("syncd.contacts.cli", ("import_cmd", "contacts")),
        ("syncd.sync.cli", ("sync", "flags")),
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
