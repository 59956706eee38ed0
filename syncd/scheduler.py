"""Background jobs on APScheduler 3.x, run only by the leader replica.

On PostgreSQL, several syncd replicas may run: the one holding a PostgreSQL advisory lock runs
the scheduled jobs, and another takes over when its session dies (the lock goes with it). On
SQLite (one process by nature) a file lock beside the database keeps a second daemon idle.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from syncd.config import Schedule
from syncd.log import get_logger

log = get_logger(__name__)

# Any constant works: it only has to be the same for every replica of one deployment.
LEADER_LOCK_KEY = 0x5CD5_0001


class Leader:
    """Who runs the scheduled jobs. ``is_leader()`` is cheap and re-tries to take the lead."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._conn: sa.Connection | None = None
        self._file: Any = None
        self._mutex = threading.Lock()

    def is_leader(self) -> bool:
        with self._mutex:
            if self.engine.dialect.name == "postgresql":
                return self._postgres()
            return self._file_lock()

    def _postgres(self) -> bool:
        if self._conn is not None:
            try:
                # The lock lives as long as this session: if the session answers, we still lead.
                self._conn.execute(sa.text("SELECT 1"))
                self._conn.commit()
                return True
            except sa.exc.DBAPIError:
                log.warning("leader.connection_lost")
            self._close()
        try:
            conn = self.engine.connect()
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK_KEY}).scalar()
            conn.commit()
        except sa.exc.DBAPIError:
            return False
        if got:
            self._conn = conn
            log.info("leader.acquired")
            return True
        conn.close()
        return False

    def _file_lock(self) -> bool:
        if self._file is not None:
            return True
        path = (self.engine.url.database or "syncd") + ".leader.lock"
        if path.startswith(":memory:"):
            return True
        handle = open(path, "a+")  # noqa: SIM115 (held for the process's life)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        log.info("leader.acquired")
        return True

    def _close(self) -> None:
        if self._conn is not None:
            try:
                # Unlock explicitly: the pool would keep the session (and the lock) alive.
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": LEADER_LOCK_KEY})
                self._conn.commit()
            except sa.exc.DBAPIError:
                pass
            try:
                self._conn.invalidate()
                self._conn.close()
            except sa.exc.DBAPIError:
                pass
            self._conn = None

    def release(self) -> None:
        with self._mutex:
            self._close()
            if self._file is not None:
                self._file.close()
                self._file = None


@dataclass(frozen=True)
class Job:
    name: str
    func: Callable[[], Any]
    schedule: Schedule
    run_at_start: bool = False  # also once when the daemon starts (then on schedule)


def trigger_for(schedule: Schedule) -> Any:
    if schedule.cron:
        return CronTrigger.from_crontab(schedule.cron, timezone="UTC")
    assert schedule.every is not None
    return IntervalTrigger(seconds=schedule.every.total_seconds(), timezone="UTC")


def every(**kw: float) -> Schedule:
    return Schedule(every=timedelta(**kw))


def build_scheduler(jobs: list[Job], leader: Leader) -> BackgroundScheduler:
    """One APScheduler job per ``Job``: never overlapping itself, missed runs coalesced."""
    scheduler = BackgroundScheduler(
        timezone="UTC",
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 300},
    )
    for job in jobs:
        first = {"next_run_time": datetime.now(UTC)} if job.run_at_start else {}
        scheduler.add_job(_led(job, leader), trigger_for(job.schedule), id=job.name, name=job.name, **first)
    return scheduler


def _led(job: Job, leader: Leader) -> Callable[[], None]:
    def run() -> None:
        if not leader.is_leader():
            log.debug("job.skipped_not_leader", job=job.name)
            return
        log.info("job.started", job=job.name)
        try:
            result = job.func()
        except Exception as exc:  # a failed job must not kill the scheduler; it runs again next time
            log.exception("job.failed", job=job.name, error=type(exc).__name__)
            return
        log.info(
            "job.finished", job=job.name, result=result if isinstance(result, dict | int | str) else None
        )

    return run
