"""``syncd inbox status|drain|purge|requeue``: the webhook inbox."""

from __future__ import annotations

from typing import Any

import click

from syncd.app import App
from syncd.cli.output import JSON, echo_json, format_option, plural


@click.group(name="inbox")
def inbox_group() -> None:
    """The webhook inbox: deliveries stored before they were acknowledged, then applied."""


@inbox_group.command(name="status")
@format_option()
@click.pass_obj
def inbox_status(app: App, fmt: str) -> None:
    """Count deliveries per state, and list the dead letters (failed every retry) with their error."""
    from syncd import inbox

    counts = inbox.backlog(app.engine)
    if fmt == JSON:
        dead = [
            {
                "id": r.id,
                "provider": r.provider,
                "received_at": r.received_at,
                "attempts": r.attempts,
                "error": r.error,
            }
            for r in inbox.dead_letters(app.engine)
        ]
        echo_json({"counts": dict(sorted(counts.items())), "dead": dead})
        return
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
        f"{plural(done.total, 'delivery')} purged of personal data: {done.retention} applied more "
        f"than {_duration(retention)} ago, {done.erased} naming an erased address"
    )


def _duration(value: Any) -> str:
    days, seconds = value.days, value.seconds
    if days and not seconds:
        return plural(days, "day")
    return str(value)


@inbox_group.command(name="requeue")
@click.argument("ids", nargs=-1, type=int)
@click.pass_obj
def inbox_requeue(app: App, ids: tuple[int, ...]) -> None:
    """Give dead letters (all, or the ids given) a fresh start, e.g. after a fix."""
    from syncd import inbox

    n = inbox.requeue(app.engine, list(ids) or None)
    click.echo(f"{plural(n, 'delivery', 'deliveries')} queued again")
