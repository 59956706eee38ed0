"""``syncd check --online``: each list's targets and syncd's webhooks, as the providers see them."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from connectors.contract import Connector, ConnectorError, NotFound, Target, TargetPresence
from syncd.cli.webhooks import hook_url, missing_events, ours, public_base, shown
from syncd.config import Config
from syncd.providers import make_connector

HEADERS = ("LIST", "TARGET", "LIST/AUDIENCE", "TAG", "WEBHOOK")


@dataclass
class Row:
    list_name: str
    target: Target
    cells: list[str] = field(default_factory=list)  # list/audience, tag, webhook
    missing: list[str] = field(default_factory=list)  # what is missing, said in full

    @property
    def place(self) -> str:
        t = self.target
        return f"brevo list {t.list_id}" if t.provider == "brevo" else f"mailchimp audience {t.list_id}"

    @property
    def label(self) -> str:
        return f"{self.place} tag {self.target.tag}" if self.target.tag else self.place


class Provider:
    """One provider's answers, each asked once: a target's presence, the webhooks at a point."""

    def __init__(self, cfg: Config, name: str, base: str):
        self.name = name
        self.connector: Connector = make_connector(cfg, name)
        self.url = hook_url(cfg, name, base)
        self._presence: dict[Target, TargetPresence] = {}
        self._webhooks: dict[str | None, str] = {}

    def presence(self, target: Target) -> TargetPresence:
        if target not in self._presence:
            self._presence[target] = self.connector.presence(target)
        return self._presence[target]

    def webhook(self, target: Target) -> tuple[str, str | None]:
        """The webhook cell, and what is missing (None: nothing)."""
        if self.url is None:
            return "no webhook_secret", f"providers.{self.name}.webhook_secret (no URL to register)"
        point = target.list_id if self.name == "mailchimp" else None  # Brevo's are account-wide
        if point not in self._webhooks:
            self._webhooks[point] = self._webhook_state(target)
        state = self._webhooks[point]
        where = f"mailchimp audience {target.list_id}" if point else "the brevo account"
        return state, None if state == "registered" else f"syncd's webhook at {where} ({state})"

    def _webhook_state(self, target: Target) -> str:
        assert self.url is not None
        try:
            found = ours(self.connector.webhooks(target), self.url)
        except NotFound:
            return "MISSING"
        if found is None:
            return "MISSING"
        lacking = missing_events(self.connector, found)
        return f"lacks {', '.join(lacking)}" if lacking else "registered"

    def close(self) -> None:
        close = getattr(self.connector, "close", None)
        if close:
            close()


def check_target(provider: Provider, row: Row) -> None:
    presence = provider.presence(row.target)
    if presence.list_found:
        row.cells.append(f"found ({presence.list_name})" if presence.list_name else "found")
    else:
        row.cells.append("MISSING")
        row.missing.append(row.place)
    if presence.tag_found is None:
        row.cells.append("-")
    elif presence.tag_found:
        row.cells.append("found")
    else:
        row.cells.append("MISSING")
        row.missing.append(f"tag {row.target.tag} in mailchimp audience {row.target.list_id}")
    if not presence.list_found and row.target.provider == "mailchimp":
        row.cells.append("-")  # an audience's webhooks need the audience
        return
    state, missing = provider.webhook(row.target)
    row.cells.append(state)
    if missing:
        row.missing.append(missing)


def check_online(cfg: Config, public_url: str | None) -> int:
    """Print the table; the number of missing pieces (0: everything is in place)."""
    base = public_base(cfg, public_url)
    rows = [Row(name, t.target) for name, lst in cfg.lists.items() for t in lst.targets]
    click.echo(f"online (webhook URL base {base}):")
    if not rows:
        click.echo("no list of the config has a target: nothing to check")
        return 0
    providers: dict[str, Provider] = {}
    failed: dict[str, str] = {}
    for row in rows:
        name = row.target.provider
        if name in failed:
            row.cells = ["error", "error", "error"]
            continue
        try:
            provider = providers.get(name) or providers.setdefault(name, Provider(cfg, name, base))
            check_target(provider, row)
        except ConnectorError as exc:
            failed[name] = str(exc)
            row.cells = ["error", "error", "error"]
    for provider in providers.values():
        provider.close()
    table([HEADERS, *[(r.list_name, r.label, *r.cells) for r in rows]])
    missing = list(dict.fromkeys(m for r in rows for m in r.missing))
    for name, error in failed.items():
        click.secho(f"error: {name}: {error}", fg="red", err=True)
    if missing:
        click.secho(f"missing ({len(missing)}):", fg="red")
        for piece in missing:
            click.echo(f"  - {piece}")
    if not missing and not failed:
        url_note = ", ".join(shown(p.url, p.name) for p in providers.values() if p.url)
        click.echo(f"online: every list, audience, tag and webhook is in place ({url_note})")
    return len(missing) + len(failed)


def table(lines: list[tuple[str, ...]]) -> None:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
