"""``syncd sync``, and what syncs leave to look at: ``syncd flags`` and ``syncd runs``."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

import click

from syncd import doi, hygiene
from syncd.app import App
from syncd.cli.output import CSV, JSON, TABLE, Failure, changes, echo_json, echo_rows, format_option, plural
from syncd.log import mask_email
from syncd.providers import make_connector
from syncd.sync.engine import sync_list
from syncd.sync.report import ListReport
from syncd.sync.state import recent_runs


@click.command()
@click.option(
    "--list", "list_names", multiple=True, help="Only this list (repeatable) [default: every list]."
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 16),
    default=None,
    help="Lists synced at once (each list's targets stay in one run; calls to a provider stay "
    "within its concurrency) [default: the config's sync.jobs, 1 unless set].",
)
@click.option("--dry-run", is_flag=True, help="Show what would change, per list and target; change nothing.")
@click.option("--show-emails", is_flag=True, help="Show addresses in clear in the samples (default: masked).")
@format_option()
@click.pass_obj
def sync(
    app: App, list_names: tuple[str, ...], jobs: int | None, dry_run: bool, show_emails: bool, fmt: str
) -> None:
    """Bring the providers' lists in line with the master base.

    For each list and each of its targets: read what changed at the provider (unsubscribes,
    bounces, profile edits) into the master base, compute the plan (adds, updates, removals,
    unblocks) and apply it in batches. Members of a double-opt-in list without a confirmation on
    record become pending and are mailed a confirmation. With --dry-run, print the plan — counts
    and a sample of each change with its reason — and apply nothing. --format json prints the
    same reports (the plan, with --dry-run) for a script. Exit status 1 if any batch failed or
    confirmation mails could not be sent.

    Lists are synced --jobs at a time (a list's wait for its writes to settle overlaps the others'
    work); their reports print in the config's order. Ctrl-C stops every list after its current
    batch: the next run completes it.
    """
    config = app.require_config_file()
    jobs = app.list_jobs = jobs or config.sync.jobs  # before the engine: its pool is sized for them
    if not config.lists:
        raise Failure(f"{app.config_file} declares no list: nothing to sync", 2)
    names = list(list_names) or list(config.lists)
    for name in names:
        config.list(name)  # unknown list: clear error before any work
    providers = {t.target.provider for n in names for t in config.lists[n].targets}
    connectors = {p: make_connector(config, p) for p in providers}
    mailer: list[doi.Send] = []
    mail_lock = threading.Lock()

    def send(mail: doi.Mail) -> str:
        with mail_lock:  # one transport, one mail at a time
            if not mailer:
                mailer.append(doi.transport(config, connectors))
            return mailer[0](mail)

    stop = threading.Event()
    progress = _Progress()
    engine = app.engine  # opened (and migrated) once, before the lists' threads share it

    def one(name: str) -> ListReport:
        return sync_list(
            engine, config, name, connectors, dry_run=dry_run, progress=progress, stop=stop, send=send
        )

    reports = []

    def finished(report: ListReport) -> None:
        if fmt == TABLE:
            progress.clear()
            _print_report(report, show_emails)
        reports.append(report)

    with progress:
        if jobs == 1 or len(names) == 1:
            # In this thread: Ctrl-C reaches the run itself, and a profiler sees it.
            for name in names:
                finished(one(name))
        else:
            with ThreadPoolExecutor(min(jobs, len(names)), thread_name_prefix="sync") as pool:
                try:
                    # In the config's order, each as soon as it and the lists before it are done.
                    for future in [pool.submit(one, name) for name in names]:
                        finished(future.result())
                except BaseException:
                    stop.set()  # Ctrl-C or a failure: the other lists stop after their current batch
                    raise
    if fmt == JSON:
        echo_json([_report_data(r, show_emails) for r in reports])
    # Members asked to confirm who could not be mailed wait for nothing: a failure to act on.
    ok = all(r.ok and not r.confirmations_failed for r in reports)
    flagged = sum(t.planned.get("flags", 0) for r in reports for t in r.targets)
    if flagged and fmt == TABLE:
        click.echo(f"{plural(flagged, 'member')} kept against the list rules: see `syncd flags`")
    if not ok:
        sys.exit(1)


class _Progress:
    """A progress line on a terminal (the latest step of any list); silent when piped."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.done: dict[str, int] = {}
        self.shown = False
        self._lock = threading.Lock()

    def __call__(self, step: str, n: int) -> None:
        with self._lock:
            self.done[step] = self.done.get(step, 0) + n
            if self.tty:
                click.echo(f"\r\033[K{step}: {self.done[step]}", nl=False, err=True)
                self.shown = True

    def clear(self) -> None:
        """Before a report is printed: the progress line leaves the terminal's last line."""
        with self._lock:
            if self.shown:
                click.echo("\r\033[K", nl=False, err=True)
                self.shown = False

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()


def _print_report(report: ListReport, show_emails: bool) -> None:
    mode = "plan (dry run, nothing applied)" if report.dry_run else "sync"
    click.echo(f"{report.list_name}: {mode}")
    if report.skipped:
        click.echo(f"  skipped: {report.skipped}")
    for t in report.targets:
        planned = changes(t.planned, "nothing to change")
        scope = "contacts changed since the last run" if t.incremental else "every contact"
        click.echo(f"  → {t.target}: {planned} (planned over {scope})")
        if not report.dry_run:
            click.echo(
                f"    read {plural(t.pulled, 'remote member')} ({t.created} new to the base); "
                f"applied: {changes(t.applied, 'none')}; write calls: {t.write_calls}"
            )
            for outcome, n in sorted(t.reconciled.items()):
                click.echo(f"    provider change {outcome}: {n}")
        # The reason may quote the address too (Mailchimp: "<address> looks fake or invalid").
        shown = (lambda text: text) if show_emails else mask_email
        for kind, samples in t.samples.items():
            for email, reason in samples:
                click.echo(shown(f"    {kind[:-1]}: {email} — {reason}"))
        for email, reason in t.rejected[:10]:
            click.echo(shown(f"    rejected by the provider: {email} — {reason}"))
        if t.failed:
            click.secho(f"    FAILED: {t.failed}", fg="red")
    if report.reconfirms and report.dry_run:
        click.echo(
            f"  {plural(report.reconfirms, 'member')} without a double opt-in confirmation for this list: "
            "a sync makes them pending, mails them a confirmation and takes them off the targets "
            "until they confirm"
        )
    elif report.reconfirms:
        click.echo(
            f"  {plural(report.reconfirms, 'member')} without a double opt-in confirmation for this list: "
            f"now pending, off the targets until they confirm; confirmation mails sent: "
            f"{report.confirmations_sent}"
        )
    if report.confirmations_failed:
        click.secho(
            f"  confirmation mails not sent: {report.confirmations_failed} "
            "(the daemon's double opt-in job sends them once this is fixed)",
            fg="yellow",
        )


def _report_data(report: ListReport, show_emails: bool) -> dict[str, Any]:
    """A list's report for --format json: the figures as stored, the addresses masked unless
    --show-emails."""
    shown = (lambda text: text) if show_emails else mask_email
    data = asdict(report)
    data["ok"], data["reconfirms"] = report.ok, report.reconfirms
    for t in data["targets"]:
        t["samples"] = {
            kind: [{"email": shown(e), "reason": shown(r)} for e, r in items]
            for kind, items in t["samples"].items()
            if items
        }
        t["rejected"] = [{"email": shown(e), "reason": shown(r)} for e, r in t["rejected"]]
    return data


@click.command()
@click.option("--list", "list_name", help="Only this list.")
@format_option(TABLE, CSV, JSON)
@click.option("--scan/--no-scan", default=True, show_default=True, help="Re-scan the base before reporting.")
@click.pass_obj
def flags(app: App, list_name: str | None, fmt: str, scan: bool) -> None:
    """Report wrong-list flags: contacts in a list (or on a provider's list) against its rules.

    Rules: not_in_segment (e.g. a client in the vendors list), exclusive (two lists declared
    exclusive), unconfirmed (double opt-in pending yet on the provider's list), opted_out_present
    (unsubscribed/bounced/complained yet on the provider's list), unknown_remote (added at the
    provider, not through syncd), invalid_email. A list's `on_violation: remove` lets sync fix them.
    """
    if list_name:
        app.config.list(list_name)
    if scan:
        hygiene.scan(app.engine, app.config, [list_name] if list_name else None)
    rows = hygiene.open_flags(app.engine, list_name)
    columns = ["list", "rule", "email", "target", "detail", "detected_at"]
    echo_rows(rows, columns if fmt != TABLE else columns[:5], fmt, empty="no open flags")
    if fmt == TABLE and rows:
        click.echo(plural(len(rows), "open flag"))


@click.command()
@click.option("--list", "list_name", help="Only this list.")
@click.option("--limit", type=int, default=20, show_default=True, help="How many runs, newest first.")
@click.pass_obj
def runs(app: App, list_name: str | None, limit: int) -> None:
    """Show the latest sync runs: when, which list and target, how each ended (ok, failed,
    interrupted: the process was killed before it finished; the next run completed its work)
    and what it changed. A run still shown running is in progress now."""
    rows = recent_runs(app.engine, list_name, limit)
    if not rows:
        click.echo("no sync run yet")
    for r in rows:
        ended = f"{r.finished_at:%Y-%m-%d %H:%M:%S}" if r.finished_at else "-"
        applied = changes(r.counts.get("applied") or {})
        line = (
            f"#{r.id} {r.started_at:%Y-%m-%d %H:%M:%S} → {ended}  {r.list_name} → {r.target_key}  {r.status}"
        )
        detail = mask_email(r.error or "") or (f"applied: {applied}" if applied else "")
        click.echo(f"{line}  {detail}".rstrip())
