"""``syncd webhooks register``: syncd's webhook URLs registered at the providers, and what
``syncd check --online`` shares with it (which URL each provider must call, and where)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

import click

from connectors.contract import Connector, ConnectorError, NotFound, Target, WebhookRegistration
from syncd.app import App
from syncd.cli.output import plural
from syncd.config import Config
from syncd.providers import make_connector, settings_of

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class HookPoint:
    """Where one webhook is registered: Brevo's are account-wide (one per account), Mailchimp's
    belong to an audience (one per audience, whatever its tags). ``target``: a target there."""

    provider: str
    target: Target
    lists: tuple[str, ...]  # the syncd lists it serves

    @property
    def label(self) -> str:
        if self.provider == "brevo":
            return "brevo account"
        return f"mailchimp audience {self.target.list_id}"


def hook_points(cfg: Config) -> list[HookPoint]:
    """One per Brevo account and per Mailchimp audience that the config's lists name."""
    found: dict[tuple[str, str | None], tuple[Target, list[str]]] = {}
    for name, lst in cfg.lists.items():
        for t in lst.targets:
            target = t.target
            key = (target.provider, target.list_id if target.provider == "mailchimp" else None)
            if key not in found:
                found[key] = (Target(target.provider, target.list_id), [])
            if name not in found[key][1]:
                found[key][1].append(name)
    return [HookPoint(key[0], target, tuple(names)) for key, (target, names) in found.items()]


def public_base(cfg: Config, public_url: str | None) -> str:
    """The URL the providers reach the web app at: ``--public-url``, else the config's
    ``double_opt_in.public_url`` (the same app serves the confirmation pages and the webhooks)."""
    return (public_url or cfg.double_opt_in.public_url).rstrip("/")


def hook_url(cfg: Config, provider: str, base: str) -> str | None:
    """The URL the web app receives ``provider``'s deliveries at (``/hooks/<provider>/<secret>``,
    syncd/web/hooks.py), or None without a ``webhook_secret`` (every delivery is refused)."""
    settings = settings_of(cfg, provider)
    secret = getattr(settings, "webhook_secret", None)
    return f"{base}/hooks/{provider}/{secret}" if secret else None


def shown(url: str, provider: str) -> str:
    """The URL as printed: its secret hidden (a terminal's scrollback is no place for it)."""
    return url.rsplit("/", 1)[0] + "/<webhook_secret>" if f"/hooks/{provider}/" in url else url


def ours(registrations: list[WebhookRegistration], url: str) -> WebhookRegistration | None:
    return next((r for r in registrations if r.url == url), None)


def missing_events(connector: Connector, registration: WebhookRegistration) -> list[str]:
    return [e for e in connector.webhook_events if e not in registration.events]


def bearer_token(cfg: Config, provider: str) -> str | None:
    return getattr(settings_of(cfg, provider), "webhook_token", None)


def unreachable_warning(cfg: Config, provider: str, base: str) -> str | None:
    """A loopback public URL registered at the real provider: it could never call it."""
    settings = settings_of(cfg, provider)
    if urlsplit(base).hostname in LOOPBACK and not getattr(settings, "base_url", None):
        return (
            f"warning: the public URL {base} is on this machine only: {provider} cannot deliver "
            "there (set double_opt_in.public_url or give --public-url)"
        )
    return None


def config_problems(cfg: Config, points: list[HookPoint]) -> list[str]:
    """What must be set before registering: a secret for each provider's URL, and the bearer
    token Brevo deliveries need unless ``webhook_auth: url_secret``."""
    problems = []
    for provider in dict.fromkeys(p.provider for p in points):
        settings = settings_of(cfg, provider)
        if not settings.webhook_secret:
            problems.append(
                f"providers.{provider}.webhook_secret is not set: syncd would refuse every delivery "
                "(make one with 'syncd secret')"
            )
        if provider == "brevo" and settings.webhook_auth == "bearer" and not settings.webhook_token:
            problems.append(
                "providers.brevo.webhook_token is not set: syncd would refuse every Brevo delivery "
                "(set one, or webhook_auth: url_secret)"
            )
    return problems


@click.group(name="webhooks")
def webhooks_group() -> None:
    """syncd's webhooks at the providers."""


@webhooks_group.command(name="register")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="The YAML file to use.")
@click.option(
    "--public-url",
    metavar="URL",
    help="Where the providers reach syncd's web app [default: the config's double_opt_in.public_url].",
)
@click.pass_obj
def webhooks_register(app: App, config_path: str | None, public_url: str | None) -> None:
    """Register syncd's webhook at each Brevo account and Mailchimp audience the config's lists
    use, for the events syncd reads. A webhook already registered with the same URL is left as
    it is: running it again registers nothing new."""
    if config_path:
        app.config_path = config_path
    cfg = app.require_config_file()
    points = hook_points(cfg)
    if not points:
        click.echo("no list of the config has a target: nothing to register")
        return
    problems = config_problems(cfg, points)
    if problems:
        for problem in problems:
            click.secho(f"error: {problem}", fg="red", err=True)
        sys.exit(2)
    base = public_base(cfg, public_url)
    created = kept = failed = incomplete = 0
    connectors: dict[str, Connector] = {}
    for provider in dict.fromkeys(p.provider for p in points):
        warning = unreachable_warning(cfg, provider, base)
        if warning:
            click.secho(warning, fg="yellow", err=True)
    for point in points:
        connector = connectors.setdefault(point.provider, make_connector(cfg, point.provider))
        url = hook_url(cfg, point.provider, base)
        assert url is not None  # config_problems required the secret
        try:
            outcome = register_one(cfg, connector, point, url)
        except NotFound:
            failed += 1
            click.secho(
                f"error: {point.label}: does not exist (create it, then run this again)", fg="red", err=True
            )
            continue
        except ConnectorError as exc:
            failed += 1
            click.secho(f"error: {point.label}: {exc}", fg="red", err=True)
            continue
        created += outcome == "registered"
        kept += outcome == "kept"
        incomplete += outcome == "incomplete"
    for connector in connectors.values():
        close = getattr(connector, "close", None)
        if close:
            close()
    if created:
        click.echo(f"registered {plural(created, 'webhook')}; {kept + incomplete} already registered")
    elif not failed:
        click.echo(f"nothing new to register: {plural(kept + incomplete, 'webhook')} already registered")
    if failed:
        click.secho(f"{plural(failed, 'webhook')} could not be registered", fg="red", err=True)
    if failed or incomplete:
        sys.exit(1)


def register_one(cfg: Config, connector: Connector, point: HookPoint, url: str) -> str:
    """Register ``url`` at ``point`` unless it is there already; what was done, as printed."""
    existing = ours(connector.webhooks(point.target), url)
    where = f"{point.label} ({', '.join(point.lists)})"
    if existing is None:
        connector.register_webhook(point.target, url, bearer_token(cfg, point.provider))
        click.echo(f"{where}: registered {shown(url, point.provider)}")
        return "registered"
    lacking = missing_events(connector, existing)
    if lacking:
        click.echo(
            f"{where}: already registered, but without the events {', '.join(lacking)}: "
            f"add them at {point.provider} (webhook {existing.id})"
        )
        return "incomplete"
    click.echo(f"{where}: already registered {shown(url, point.provider)}")
    return "kept"
