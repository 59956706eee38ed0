"""``syncd simulate``: a provider simulator on 127.0.0.1, set up from a config if given."""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urlsplit

import click

from syncd.app import App
from syncd.config import Config
from syncd.providers import settings_of

DEFAULT_KEYS = {"brevo": "sim-brevo-key", "mailchimp": "sim-mailchimp-key-us1"}
API_PREFIX = {"brevo": "/v3", "mailchimp": "/3.0"}


@click.command()
@click.argument("provider", type=click.Choice(["brevo", "mailchimp"]))
@click.option(
    "--port",
    type=int,
    default=0,
    help="Port on 127.0.0.1 [default: the config's base_url port, or a free one].",
)
@click.option(
    "--api-key", default=None, help="The API key the simulator accepts [default: the config's api_key]."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Create the lists (Brevo) or audiences and tags (Mailchimp) this config's lists name, "
    "with the ids it gives them.",
)
@click.pass_obj
def simulate(app: App, provider: str, port: int, api_key: str | None, config_path: str | None) -> None:
    """Run a provider simulator on 127.0.0.1, to try a config without real accounts.

    \b
    With --config, the simulator starts with every list, audience and tag the config's lists
    target, under the config's ids, and accepts the config's API key: point the provider's
    base_url at it (http://127.0.0.1:PORT/v3 for Brevo, /3.0 for Mailchimp) and run syncd.

    \b
    Besides the provider's API, each simulator has an admin API under /_sim (same API key) to
    play what happens on the provider's side:
    Brevo (header api-key):
      PUT  /_sim/account  {"perListUnsubscription": true}   the per-list unsubscription feature
      POST /_sim/contacts/EMAIL/unsubscribe  {"listId": 12}  the contact's own unsubscribe click
      (the account-wide block is the real API's: PUT /v3/contacts/EMAIL {"emailBlacklisted": true})
      GET  /_sim/outbox (a page), /_sim/outbox.json  the transactional mails sent, with their
      links (double opt-in confirmations when double_opt_in.transport is brevo); no key needed
    Mailchimp (Basic auth, any user name):
      POST /_sim/lists/AUDIENCE/members/EMAIL/ACTION, ACTION one of: unsubscribe ({"reason":
      "abuse"} for a complaint), resubscribe, clean, change-email ({"new_email": "..."})
      Like Mailchimp, it checks a new webhook's URL with a GET: run syncd's web app first.
    """
    from connectors.simulators.harness import free_port

    settings = None
    if config_path:
        app.config_path = config_path
        settings = settings_of(app.config, provider)
    key = api_key or getattr(settings, "api_key", None) or DEFAULT_KEYS[provider]
    port = port or configured_port(settings) or free_port()
    sim = make_simulator(provider, key)
    if config_path:
        try:
            lines = set_up(sim, app.config, provider)
        except ValueError as exc:
            click.secho(f"error: {config_path}: {exc}", fg="red", err=True)
            sys.exit(2)
        for line in lines or [f"the config's lists name no {provider} target: nothing created"]:
            click.echo(line)
        warning = base_url_warning(settings, provider, port)
        if warning:
            click.secho(warning, fg="yellow", err=True)
    url = f"http://127.0.0.1:{port}"
    name = "Brevo" if provider == "brevo" else "Mailchimp"
    if provider == "brevo":
        click.echo(f"transactional mails sent: {url}/_sim/outbox (JSON: {url}/_sim/outbox.json)")
    click.echo(f"{name} simulator on {url}{API_PREFIX[provider]} (api key: {key}); Ctrl-C stops it")
    sim.run_forever(port)


def make_simulator(provider: str, api_key: str) -> Any:
    if provider == "brevo":
        from connectors.simulators.brevo import BrevoSimulator

        return BrevoSimulator(api_key=api_key)
    from connectors.simulators.mailchimp import MailchimpSimulator

    sim = MailchimpSimulator(api_key=api_key)
    sim.verify_webhook_urls = True  # as Mailchimp does: syncd's web app must answer there
    return sim


def set_up(sim: Any, cfg: Config, provider: str) -> list[str]:
    """Create, through the simulator's own hooks, each list (audience, tag) the config's lists
    name as a target of ``provider``, with the config's id; what was created, one line each.
    ValueError names the config key of an id the simulator cannot take."""
    wanted: dict[str, tuple[list[str], list[str], str]] = {}  # id -> syncd lists, tags, config key
    for name, lst in cfg.lists.items():
        for i, t in enumerate(lst.targets):
            target = t.target
            if target.provider != provider:
                continue
            names, tags, _ = wanted.setdefault(target.list_id, ([], [], f"lists.{name}.targets[{i}]"))
            if name not in names:
                names.append(name)
            if target.tag and target.tag not in tags:
                tags.append(target.tag)
    lines = []
    for list_id, (names, tags, key) in wanted.items():
        title = ", ".join(names)
        try:
            if provider == "brevo":
                sim.create_list(title, list_id=int(list_id))
                lines.append(f"created Brevo list {list_id} {title!r} (for {title})")
                continue
            sim.create_audience(title, list_id=list_id)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from exc
        for tag in tags:
            sim.create_tag(list_id, tag)
        with_tags = f" with tags {', '.join(tags)}" if tags else ""
        lines.append(f"created Mailchimp audience {list_id} {title!r}{with_tags} (for {title})")
    return lines


def configured_port(settings: Any) -> int | None:
    """The port of the provider's ``base_url`` when it points at this machine (a simulator's)."""
    base_url = getattr(settings, "base_url", None)
    if not base_url:
        return None
    parts = urlsplit(base_url)
    return parts.port if parts.hostname in ("127.0.0.1", "localhost") else None


def base_url_warning(settings: Any, provider: str, port: int) -> str | None:
    """A config whose provider section would not reach this simulator."""
    expected = f"http://127.0.0.1:{port}{API_PREFIX[provider]}"
    base_url = getattr(settings, "base_url", None)
    if settings is None:
        return f"note: the config has no providers.{provider} section to point at {expected}"
    if not base_url or configured_port(settings) != port:
        return f"note: set providers.{provider}.base_url to {expected} to use this simulator"
    return None
