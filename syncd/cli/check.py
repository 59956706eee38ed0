"""``syncd check``: validate a config and summarise it."""

from __future__ import annotations

import sys

import click

from syncd import db
from syncd.app import App


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="The YAML file to check.")
@click.option(
    "--online",
    is_flag=True,
    help="Also ask each provider, with the configured key, whether every list, audience and tag "
    "exists and syncd's webhook is registered; exit 1 if anything is missing.",
)
@click.option(
    "--public-url",
    metavar="URL",
    help="With --online: where the providers reach syncd [default: double_opt_in.public_url].",
)
@click.pass_obj
def check(app: App, config_path: str | None, online: bool, public_url: str | None) -> None:
    """Validate a config file and print a summary of its lists and targets (with --online, check
    them at the providers too)."""
    if config_path:
        app.config_path = config_path
    cfg = app.config
    checked = (
        app.config_file or "no config file (no --config, no SYNCD_CONFIG, no ./syncd.yaml): built-in defaults"
    )
    click.echo(f"config OK: {checked}")
    click.echo(f"database: {db.safe_url(app.url)}")
    providers = [name for name, settings in cfg.providers if settings is not None]
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
    if online:
        from syncd.cli.online import check_online

        if check_online(cfg, public_url):
            sys.exit(1)
