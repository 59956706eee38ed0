"""``syncd doi status|requeue``: confirmation requests syncd could not send."""

from __future__ import annotations

from dataclasses import asdict

import click

from syncd.app import App
from syncd.cli.output import JSON, echo_json, format_option, plural


@click.group(name="doi")
def doi_group() -> None:
    """Double opt-in mail: confirmation requests syncd could not send."""


@doi_group.command(name="status")
@format_option()
@click.pass_obj
def doi_status(app: App, fmt: str) -> None:
    """Count confirmation links per delivery state, and list the requests syncd gave up mailing
    (a permanent refusal, or every retry failed) with the reason."""
    from syncd import doi

    counts = doi.delivery_counts(app.engine)
    dead = doi.dead_requests(app.engine)
    if fmt == JSON:
        echo_json({"counts": dict(sorted(counts.items())), "dead": [asdict(d) for d in dead]})
        return
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

    click.echo(f"{plural(doi.requeue(app.engine, list(ids) or None), 'request')} queued again")
