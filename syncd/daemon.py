"""``syncd run``: the web app and the scheduler in one process.

SIGTERM (or Ctrl-C) stops the web server, lets the job in flight finish its current batch
(the sync engine checks the stop signal between batches), releases the leadership, and exits.
Several replicas may run on one PostgreSQL base: see ``syncd.scheduler`` for who runs what.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from sqlalchemy.engine import Engine

from syncd import doi, hygiene, inbox, inbox_purge, metrics
from syncd.config import Config
from syncd.log import get_logger
from syncd.providers import Connectors
from syncd.scheduler import LIST_TICK, Job, Leader, ListSyncs, ScheduledList, build_scheduler, every
from syncd.sync.engine import sync_list
from syncd.web.app import create_app

log = get_logger(__name__)


def jobs_for(config: Config, engine: Engine, connectors: dict[str, Any], stop: threading.Event) -> list[Job]:
    """Every scheduled job of the daemon. On every replica: the list syncs (each list on its
    schedule, on whichever replica is free) and the inbox drain. On the leader: the inbox purge,
    double opt-in mail (send, remind, expire) and the hygiene scan."""
    sender: list[doi.Send] = []

    def send(mail: doi.Mail) -> None:
        if not sender:
            sender.append(doi.transport(config, connectors))
        sender[0](mail)

    exported: dict[str, tuple[int, int]] = {}
    exporting = threading.Lock()  # list syncs run in several threads (sync.jobs)

    def export_api_metrics() -> None:
        """Provider calls and 429s since the last export, from the connectors' own counters."""
        with exporting:
            _export_api_metrics()

    def _export_api_metrics() -> None:
        for provider, connector in connectors.items():
            stats = connector.stats
            calls, limited = exported.get(provider, (0, 0))
            metrics.API_CALLS.labels(provider).inc(stats.total - calls)
            metrics.API_RATE_LIMITED.labels(provider).inc(stats.rate_limited - limited)
            exported[provider] = (stats.total, stats.rate_limited)

    def sync_one(name: str) -> dict[str, Any]:
        started = time.monotonic()
        try:
            report = sync_list(engine, config, name, connectors, stop=stop)
        finally:
            export_api_metrics()
        metrics.SYNC_RUNS.labels(name, "ok" if report.ok else "failed").inc()
        metrics.SYNC_DURATION.labels(name).observe(time.monotonic() - started)
        return {"list": name, "ok": report.ok}

    def doi_job() -> dict[str, int]:
        try:
            return {
                "sent": doi.send_pending(engine, config, send),
                "reminded": doi.remind(engine, config, send),
                "expired": doi.expire(engine, config),
            }
        finally:
            export_api_metrics()

    scheduled = [
        ScheduledList(name, lst.schedule, lst.targets[0].target.key)
        for name, lst in config.lists.items()
        if lst.schedule is not None and lst.targets
    ]
    syncs = ListSyncs(engine, scheduled, sync_one, stop, jobs=config.sync.jobs)
    jobs = [Job("lists", syncs.tick, LIST_TICK, run_at_start=True, shared=True, logged=False)]
    jobs.append(
        Job(
            "inbox",
            lambda: dict(inbox.drain(engine, config, connectors=connectors)),
            every(seconds=10),
            shared=True,
        )
    )
    jobs.append(
        Job(
            "inbox-purge",
            lambda: inbox_purge.purge(engine, config.inbox.retention).total,
            every(minutes=5),
        )
    )
    jobs.append(Job("double-opt-in", doi_job, every(minutes=1), run_at_start=True))
    jobs.append(Job("hygiene", lambda: hygiene.scan(engine, config), every(hours=1)))
    return jobs


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM once it has stopped, which would kill the process before the
    scheduler's job in flight finishes: here the signal only asks the server to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run(
    config: Config,
    engine: Engine,
    *,
    host: str | None = None,
    port: int | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT; on ``sock`` when given (``syncd run`` binds it first, so
    that a busy port is an error before anything starts), else on host and port."""
    host = host or config.server.host
    port = port or config.server.port
    stop = threading.Event()
    connectors = Connectors(config)
    app = create_app(config, engine, connectors=connectors)
    leader = Leader(engine)
    scheduler = build_scheduler(jobs_for(config, engine, connectors, stop), leader)
    # proxy_headers off: the app reads X-Forwarded-For itself, from server.trusted_proxies only.
    server = _Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, proxy_headers=False)
    )
    scheduler.start()
    log.info("daemon.started", host=host, port=port, jobs=len(scheduler.get_jobs()))
    try:
        server.run(sockets=[sock] if sock else None)  # returns on SIGTERM / SIGINT
    finally:
        log.info("daemon.stopping")
        stop.set()
        scheduler.shutdown(wait=True)
        leader.release()
        log.info("daemon.stopped")
