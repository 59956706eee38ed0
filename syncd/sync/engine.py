"""One sync of one list: pull remote changes → reconcile them → plan → apply in batches.

This module holds the run's phases; the pieces are values passed between modules: ``pull``
reads a target and reconciles it (returning the erased addresses it saw), ``select`` yields each
chunk's ``ChunkPlan``, the ``writer`` buffers and applies them, ``state`` stores what was
accepted, ``report`` counts.

Everything is streamed: remote members page by page, the master base in chunks of contacts, and
provider writes in buffered batches (the connector's preferred batch), so memory is bounded by
those sizes rather than by the base. State is committed as it goes (TargetState after each
accepted batch, the cursor after the pull), so a run killed at any point converges on the next
one: at worst the unfinished batch is sent again.
"""

from __future__ import annotations

import threading

from sqlalchemy.engine import Engine

from connectors.contract import Connector, ConnectorError
from syncd import db, doi, locks
from syncd.config import Config
from syncd.log import get_logger
from syncd.models import utcnow
from syncd.sync.pull import Reader, bystanders, earliest, read_together
from syncd.sync.report import ListReport, Progress, TargetReport
from syncd.sync.select import Since, planning_window, plans
from syncd.sync.state import ListTarget, finish_run, remember_plan, start_run
from syncd.sync.writer import Writer

log = get_logger(__name__)


def sync_list(
    engine: Engine,
    config: Config,
    list_name: str,
    connectors: dict[str, Connector],
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    send: doi.Send | None = None,
) -> ListReport:
    """Sync one list with each of its targets. Two runs of one list never overlap.

    Members the list's consent rule no longer accepts (a list switched to double opt-in) are
    moved to pending; with ``send``, their confirmation mails go out at the end of the run
    (without, the daemon's double opt-in job sends them)."""
    list_cfg = config.list(list_name)
    report = ListReport(list_name, dry_run)
    try:
        with locks.exclusive(engine, f"sync:{list_name}"):
            runs = [
                _Run(
                    ListTarget(engine, config, list_name, list_cfg, t.target),
                    connectors[t.target.provider],
                    dry_run,
                    progress,
                    stop,
                )
                for t in list_cfg.targets
            ]
            # Every target is read before any is planned: an unsubscribe seen on one target
            # (a Mailchimp audience) changes what the list's other targets must hold in this run.
            groups = _by_remote_list(runs)
            for group in groups:
                _read(group, connectors[group[0].lt.target.provider])
            # A target whose upsert waits for the writes to settle and reads them back is written
            # last: the others' writes settle during that wait, and their reads after writes
            # (below) start at once. Writes to different targets are independent.
            for run in sorted(runs, key=lambda run: run.traits.upsert_reads_back):
                run.write()
            # A write that showed an opt-out the reads had not (a Mailchimp member archived after it
            # left, a Brevo contact blocked while on no list this run read, a complaint in Brevo's
            # record read before a lift) changed the master base after some targets were written:
            # those contacts are planned again on every target, so that the run leaves nothing for
            # the next one.
            revealed = sorted(set().union(*(run.revealed for run in runs)))
            if revealed:
                for run in runs:
                    run.replan(revealed)
            wrote = {run.lt.target.provider for run in runs if run.report.write_calls}
            for group in groups:
                if group[0].lt.target.provider in wrote:
                    _read_after_writes(group, connectors[group[0].lt.target.provider])
            report.targets.extend(run.finish() for run in runs)
            if send is not None and report.reconfirms and not dry_run:
                _send_confirmations(engine, config, list_name, send, report)
    except locks.Busy:
        report.skipped = "another sync of this list is running"
        log.warning("sync.skipped_busy", list=list_name)
    return report


def _by_remote_list(runs: list[_Run]) -> list[list[_Run]]:
    """The runs whose targets are on one remote list (a Mailchimp audience and its tags), in the
    list's order: one read serves them all."""
    groups: dict[tuple[str, str], list[_Run]] = {}
    for run in runs:
        groups.setdefault((run.lt.target.provider, run.lt.target.list_id), []).append(run)
    return list(groups.values())


def _read(group: list[_Run], connector: Connector) -> None:
    """First phase, for the targets of one remote list: what changed at the provider goes into
    the master base (one read, from the earliest of their cursors)."""
    for run in group:
        run.begin()
    if group[0].dry_run:
        return
    readers = [run.reader for run in group]
    since = earliest([r.stored_cursor() for r in readers])
    if any(planning_window(run.lt, run.started)[1] for run in group):
        # The day's full plan reads the whole list too: a change a provider showed in its filtered
        # reads later than the cursor's margin allows for is never missed for more than a day.
        since = None
    for run in group:
        run.read_from = since
    # A full read reports no archived member to its targets (an incremental one does): it covers
    # no other target.
    others = [] if since is None else bystanders(group[0].lt, since)
    try:
        erased = read_together(readers, connector, since, others=others)
    except ConnectorError as exc:
        for run in group:
            run._failed(exc)
        return
    for run, emails in zip(group, erased, strict=True):
        run.writer.erase(emails)


def _read_after_writes(group: list[_Run], connector: Connector) -> None:
    """The remote list read again once the run's writes settled, from the cursor of its last
    reconciled read: what someone else changed meanwhile is reconciled now, and the cursor passes
    syncd's own writes. A failure here leaves the cursor where it was (the next run reads more)."""
    live = [run for run in group if run.report.ok and not run.dry_run and not run.stop.is_set()]
    since = earliest([run.reader.covered for run in live])
    if not live or since is None:
        return
    # The other lists' targets on this remote list whose cursor this run's first read started at
    # or before: this read starts at their cursor too (going back no further than this run read
    # already), so that it covers them and passes their cursor beyond syncd's writes.
    others = bystanders(live[0].lt, live[0].read_from)
    since = earliest([since, *(other.cursor for other in others)])
    assert since is not None  # every bystander has a cursor
    try:
        erased = read_together(
            [run.reader for run in live], connector, since, after_writes=True, others=others
        )
    except ConnectorError as exc:
        log.warning(
            "sync.read_after_writes_failed",
            list=group[0].lt.list_name,
            targets=[run.lt.target.key for run in live],
            error=str(exc),
        )
        return
    for run, emails in zip(live, erased, strict=True):
        if emails:  # erased at the contact's request while syncd wrote: taken off now
            run.writer.erase(emails)
            try:
                run.writer.drain()
            except ConnectorError as exc:
                run._failed(exc)


def _send_confirmations(
    engine: Engine, config: Config, list_name: str, send: doi.Send, report: ListReport
) -> None:
    """The double opt-in module's own sending path, for this list's pending requests."""
    batch = 1000
    try:
        while True:
            sent = doi.send_pending(engine, config, send, limit=batch, lists=[list_name])
            report.confirmations_sent += sent
            if sent < batch:
                break
    except doi.DoiNotConfigured as exc:
        report.confirmations_failed = str(exc)
        log.warning("sync.confirmations_not_sent", list=list_name, error=str(exc))


class _Run:
    """One target of the list, through the run's phases: read, write, replan, finish."""

    def __init__(
        self,
        lt: ListTarget,
        connector: Connector,
        dry_run: bool,
        progress: Progress | None,
        stop: threading.Event | None,
    ):
        self.lt, self.dry_run = lt, dry_run
        self.traits = connector.traits
        self.progress = progress or (lambda _step, _n: None)
        self.stop = stop or threading.Event()
        self.report = TargetReport(lt.list_name, lt.target.key)
        self.reader = Reader(lt, connector, self.report, self.progress)
        self.writer = Writer(lt, connector, self.report, self.progress, self.reader.reconcile, self.reader)
        self.full = True
        self.read_from: str | None = None  # where the run's first read of the target began (None: whole)

    @property
    def revealed(self) -> set[str]:
        """Members to plan again on every target (``sync_list``): a refusal at this target brought
        their state back, or their address changed since their push here was planned."""
        return self.writer.revealed

    def begin(self) -> None:
        """The run's record; the read itself is shared by the targets of one remote list (``_read``)."""
        self.run_id = None if self.dry_run else start_run(self.lt)
        # Taken before anything of the run is read: whatever this run's plan does not see, the next
        # run's plan selects (``select.Since``).
        self.snapshot = db.snapshot(self.lt.engine)
        self.started = utcnow()
        log.info("sync.started", list=self.lt.list_name, target=self.lt.target.key, dry_run=self.dry_run)

    def write(self) -> None:
        """Second phase, once every target of the list was read: plan and apply."""
        if self.report.failed is None:
            since, self.full = planning_window(self.lt, self.started)
            self.report.incremental = not self.full
            self._plan_and_apply(since)

    def replan(self, emails: list[str]) -> None:
        """Plan and apply again, for ``emails`` only: contacts whose master-base state a refusal
        at one of the list's targets changed after this target was written."""
        if self.report.failed is None and not self.dry_run:
            self._plan_and_apply(None, only=emails)

    def _plan_and_apply(self, since: Since | None, only: list[str] | None = None) -> None:
        try:
            for chunk in plans(self.lt, self.traits, since, only):
                self.report.planned_chunk(chunk.plan)
                self.report.unchanged += chunk.unchanged
                self.report.contacts_planned += chunk.contacts
                if not self.dry_run:
                    self.writer.take(chunk)
                if self.stop.is_set():
                    raise _Stopped()
            if not self.dry_run:
                self.writer.drain()
        except _Stopped:
            self.report.failed = "stopped before the end (the next run completes it)"
        except ConnectorError as exc:
            self._failed(exc)

    def finish(self) -> TargetReport:
        """The run's record and the planning window for the next run."""
        if self.run_id is not None:
            if self.report.ok:
                remember_plan(self.lt, self.started, self.full, self.snapshot)
            finish_run(self.lt.engine, self.run_id, self.report)
        log.info(
            "sync.finished",
            list=self.lt.list_name,
            target=self.lt.target.key,
            incremental=self.report.incremental,
            contacts_planned=self.report.contacts_planned,
            unchanged=self.report.unchanged,
            planned=self.report.planned,
            applied=self.report.applied,
            write_calls=self.report.write_calls,
            failed=self.report.failed,
        )
        return self.report

    def _failed(self, exc: ConnectorError) -> None:
        self.report.failed = f"{type(exc).__name__}: {exc}"
        log.error("sync.failed", list=self.lt.list_name, target=self.lt.target.key, error=str(exc))


class _Stopped(Exception):
    pass
