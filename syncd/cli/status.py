"""``syncd status`` and ``syncd history``: where the lists stand, and their past runs."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

import click

from syncd import status as state
from syncd.app import App
from syncd.cli.output import CHANGE_NOUNS, TABLE, echo_rows, plural

RUN_LINE_COUNTS = ("adds", "updates", "removals", "flags")
# syncd history's table: one run a row, under a header row.
HISTORY_TABLE = ("id", "list", "target", "started_at", "duration", "outcome", *RUN_LINE_COUNTS, "error")


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
def status(app: App, fmt: str) -> None:
    """Where each list stands: per target its last run (start, duration, outcome, adds, updates,
    removals, flags, error), the next scheduled run, open flags and pending double opt-ins; then
    the webhook inbox's backlog and dead letters. Counts only: no address is shown."""
    data = state.status(app.engine, app.require_config_file())
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    up = data["daemon"]["up"]
    click.echo(
        "daemon: " + {True: "up (a daemon leads this base)", False: "not running", None: "cannot tell"}[up]
    )
    if not data["lists"]:
        click.echo("no list in the config")
    for lst in data["lists"]:
        _print_list(lst)
    d, box = data["double_opt_in"], data["inbox"]
    links = ", ".join(f"{n} {k}" for k, n in sorted(d["links"].items())) or "none"
    click.echo(
        f"double opt-in: {d['pending']} pending; links {links}; "
        f"{plural(d['dead_requests'], 'request')} given up (syncd doi status)"
    )
    waiting = f" (oldest {box['oldest_waiting_at']})" if box["oldest_waiting_at"] else ""
    dead = f" (oldest {box['oldest_dead_at']}: syncd inbox status)" if box["oldest_dead_at"] else ""
    dead_letters = plural(box["dead_letters"], "dead letter")
    click.echo(f"inbox: {box['backlog']} waiting{waiting}, {dead_letters}{dead}")


def _print_list(lst: dict[str, Any]) -> None:
    title = f"{lst['name']} ({lst['consent'].replace('_', ' ')}"
    title += f", {lst['schedule']})" if lst["schedule"] else ", no schedule)"
    click.echo(title)
    nxt = lst["next_run"]
    click.echo(f"  next run: {nxt['at'] + ' ' if nxt['at'] else ''}({nxt['note']})")
    for t in lst["targets"]:
        click.echo(f"  → {t['target']}: {_run_line(t['last_run'])}")
    members = ", ".join(f"{n} {k}" for k, n in sorted(lst["members"].items())) or "none"
    if lst["auto_enrolled"]:
        members = f"the segment (auto-enrolled); rows: {members}"
    flags = lst["open_flags"]
    rules = ", ".join(f"{n} {r}" for r, n in sorted(flags["by_rule"].items()))
    click.echo(
        f"  members: {members}; pending double opt-in: {lst['pending_double_opt_in']}; "
        f"open flags: {flags['total']}" + (f" ({rules})" if rules else "")
    )


def _run_line(run: dict[str, Any] | None) -> str:
    if run is None:
        return "never synced"
    took = _duration(run)
    counts = ", ".join(plural(run[kind], CHANGE_NOUNS[kind]) for kind in RUN_LINE_COUNTS)
    line = f"last run #{run['id']} {run['started_at']}, {took}, {run['outcome']}: {counts}"
    return line + (f"; error: {run['error']}" if run["error"] else "")


def _duration(run: dict[str, Any]) -> str:
    return f"{run['duration_s']:.1f} s" if run["duration_s"] is not None else "still running"


@click.command()
@click.option("--list", "list_name", help="Only this list.")
@click.option(
    "--limit", type=click.IntRange(1), default=20, show_default=True, help="How many runs, newest first."
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True
)
@click.pass_obj
def history(app: App, list_name: str | None, limit: int, fmt: str) -> None:
    """Past sync runs, newest first: one line per list and target, with what each changed."""
    if list_name:
        app.config.list(list_name)  # unknown list: one clear line, exit status 2
    rows = state.history(app.engine, list_name, limit)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(state.HISTORY_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        shown = [{**r, "duration": _duration(r)} for r in rows]
        echo_rows(shown, HISTORY_TABLE, TABLE, empty="no sync run yet")
