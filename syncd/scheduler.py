"""Background jobs on APScheduler 3.x, and which replica runs each.

On PostgreSQL, several syncd replicas may run. Shared jobs (the list syncs, the inbox drain) run
on every replica, each piece of work under its own lock (a list's advisory lock, ``FOR UPDATE
SKIP LOCKED``); the other jobs run on the leader, the replica holding a PostgreSQL advisory lock,
and another takes over when its session dies (the lock goes with it). On SQLite (one process by
nature) a file lock beside the database keeps a second daemon idle.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from syncd import locks
from syncd.config import Schedule
from syncd.log import get_logger
from syncd.models import SyncRun

log = get_logger(__name__)

# Any constant works: it only has to be the same for every replica of one deployment (a base in
# another schema than public leads under a key of its schema's name: ``locks.schema_key``).
LEADER_LOCK_KEY = 0x5CD5_0001
LEADER_TICK = Schedule(every=timedelta(seconds=2))


class Leader:
    """Who runs the scheduled jobs. ``is_leader()`` is cheap and re-tries to take the lead."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._conn: sa.Connection | None = None
        self._key = LEADER_LOCK_KEY
        self._file: Any = None
        self._mutex = threading.Lock()

    def is_leader(self) -> bool:
        with self._mutex:
            if self.engine.dialect.name == "postgresql":
                return self._postgres()
            return self._file_lock()

    def may_run(self, job: Job) -> bool:
        """A shared job runs on every PostgreSQL replica; any other job only on the leader."""
        if job.shared and self.engine.dialect.name == "postgresql":
            return True
        return self.is_leader()

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
            self._key = locks.schema_key(conn, "leader", public=LEADER_LOCK_KEY)
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar()
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
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
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


def leader_present(engine: Engine) -> bool | None:
    """Whether a daemon leads this base now (holds the leader's lock), read without taking the
    lock: PostgreSQL's ``pg_locks``; on SQLite, Linux's ``/proc/locks`` for the lock file beside
    the database. None when it cannot be told (another system, an in-memory base)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            key = locks.schema_key(conn, "leader", public=LEADER_LOCK_KEY) & 0xFFFF_FFFF_FFFF_FFFF
            held = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND objsubid = 1 AND classid = CAST(:hi AS oid) AND objid = CAST(:lo AS oid)"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"hi": key >> 32, "lo": key & 0xFFFF_FFFF},
            ).scalar()
        return bool(held)
    database = engine.url.database or ""
    if not database or database.startswith(":memory:"):
        return None
    try:
        st = os.stat(database + ".leader.lock")
    except FileNotFoundError:
        return False
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as table:  # "1: FLOCK ADVISORY WRITE <pid> <maj:min:inode> 0 EOF"
            rows = [line.split() for line in table]
    except OSError:
        return None
    return any(len(r) > 5 and r[1] == "FLOCK" and r[5] == wanted for r in rows)  # "->": a waiter


@dataclass(frozen=True)
class Job:
    name: str
    func: Callable[[], Any]
    schedule: Schedule
    run_at_start: bool = False  # also once when the daemon starts (then on schedule)
    shared: bool = False  # on every replica (it locks its own work), not only on the leader
    logged: bool = True  # job.started / job.finished at info (off for a job that logs its own work)


def trigger_for(schedule: Schedule) -> Any:
    if schedule.cron:
        return CronTrigger.from_crontab(schedule.cron, timezone="UTC")
    assert schedule.every is not None
    return IntervalTrigger(seconds=schedule.every.total_seconds(), timezone="UTC")


def every(**kw: float) -> Schedule:
    return Schedule(every=timedelta(**kw))


def build_scheduler(jobs: list[Job], leader: Leader) -> BackgroundScheduler:
    """One APScheduler job per ``Job``: never overlapping itself, missed runs coalesced. Each
    replica also asks for the lead at start and every few seconds, so that one leads from the
    start and another takes over within seconds of its death, whatever the jobs' schedules."""
    scheduler = BackgroundScheduler(
        timezone="UTC",
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 300},
    )
    scheduler.add_job(
        leader.is_leader, trigger_for(LEADER_TICK), id="leader", next_run_time=datetime.now(UTC)
    )
    for job in jobs:
        first = {"next_run_time": datetime.now(UTC)} if job.run_at_start else {}
        scheduler.add_job(_led(job, leader), trigger_for(job.schedule), id=job.name, name=job.name, **first)
    return scheduler


def _led(job: Job, leader: Leader) -> Callable[[], None]:
    def run() -> None:
        if not leader.may_run(job):
            log.debug("job.skipped_not_leader", job=job.name)
            return
        if job.logged:
            run_logged(job.name, job.func)
        else:
            try:
                job.func()
            except Exception as exc:  # a failed job must not kill the scheduler; it runs again next time
                log.exception("job.failed", job=job.name, error=type(exc).__name__)

    return run


def run_logged(name: str, func: Callable[[], Any]) -> bool:
    """Run one job's work with its start and end logged; False if it failed (logged, not raised:
    a failed job must not kill the scheduler, it runs again next time)."""
    log.info("job.started", job=name)
    try:
        result = func()
    except Exception as exc:
        log.exception("job.failed", job=name, error=type(exc).__name__)
        return False
    log.info("job.finished", job=name, result=result if isinstance(result, dict | int | str) else None)
    return True


# --- list syncs, shared by replicas ------------------------------------------------------------

LIST_TICK = every(seconds=1)  # how often a replica looks for a due list


def next_due(schedule: Schedule, last_start: datetime | None) -> datetime:
    """When a list whose latest run started at ``last_start`` is due again (never run: now)."""
    if last_start is None:
        return datetime.min.replace(tzinfo=UTC)
    if last_start.tzinfo is None:  # SQLite hands back naive UTC
        last_start = last_start.replace(tzinfo=UTC)
    if schedule.every is not None:
        return last_start + schedule.every
    after = last_start + timedelta(microseconds=1)
    fire = trigger_for(schedule).get_next_fire_time(None, after)
    return fire if fire is not None else datetime.max.replace(tzinfo=UTC)


def latest_start(engine: Engine, list_name: str, first_target: str) -> datetime | None:
    """When the list's latest run started, by any replica or command: a run opens one SyncRun row
    per target as it reaches it, the first target first."""
    query = (
        sa.select(SyncRun.started_at)
        .where(SyncRun.list_name == list_name, SyncRun.target_key == first_target)  # type: ignore[arg-type]
        .order_by(SyncRun.id.desc())  # type: ignore[union-attr]
        .limit(1)
    )
    with engine.connect() as conn:
        return conn.execute(query).scalar()


@dataclass(frozen=True)
class ScheduledList:
    name: str
    schedule: Schedule
    first_target: str  # the key of the target its runs start with


class ListSyncs:
    """One replica's share of the list syncs. Each tick runs every list that is due (from its runs
    in the database, whoever ran them) and that no other replica is running, most overdue first,
    ``jobs`` at a time: N replicas sync up to N x ``jobs`` lists at once. A replica claims a list
    with a lock (``due:<list>``), checks under it that the list is still due, and syncs it holding
    the claim, so that a list another replica (or another of this replica's workers) has just
    synced is not synced again; the sync takes the list's own lock too, which also keeps a
    `syncd sync` from the command line apart.

    With ``jobs`` > 1 the tick runs that many workers. A worker that finds no list to start while
    another is still syncing one waits for a list to become due (looking every ``poll``) rather
    than leave, so that lists falling due during a long sync still run beside it; the tick ends
    when every worker is idle."""

    def __init__(
        self,
        engine: Engine,
        lists: list[ScheduledList],
        sync: Callable[[str], Any],
        stop: threading.Event,
        *,
        jobs: int = 1,
        busy_retry: timedelta = timedelta(seconds=5),
        poll: timedelta = timedelta(seconds=1),
    ):
        self.engine, self.sync, self.stop, self.busy_retry = engine, sync, stop, busy_retry
        self.jobs, self.poll = max(1, jobs), poll
        self.lists = {lst.name: lst for lst in lists}
        self._look_at = dict.fromkeys(self.lists, datetime.min.replace(tzinfo=UTC))  # when to look again
        self._mutex = threading.Lock()  # guards _look_at and _running between this replica's workers
        self._running: set[str] = set()  # lists a worker of this replica is claiming or syncing

    def tick(self) -> list[str]:
        """Run the due lists that are free, most overdue first; the names of those run."""
        if self.jobs == 1:
            return self._work()
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="list-sync") as pool:
            workers = [pool.submit(self._work) for _ in range(self.jobs)]
        return [name for w in workers for name in w.result()]

    def _work(self) -> list[str]:
        ran: list[str] = []
        while not self.stop.is_set():
            now = datetime.now(UTC)
            with self._mutex:
                candidates = sorted(
                    (at, name)
                    for name, at in self._look_at.items()
                    if at <= now and name not in self._running
                )
            started = next((name for _, name in candidates if self._run_if_due(name, now)), None)
            if started is not None:
                ran.append(started)
                continue
            with self._mutex:
                others_busy = bool(self._running)
                soonest = min(self._look_at.values(), default=now + self.poll)
            if self.jobs == 1 or not others_busy:
                break
            self.stop.wait(min(max((soonest - now).total_seconds(), 0.05), self.poll.total_seconds()))
        return ran

    def _run_if_due(self, name: str, now: datetime) -> bool:
        with self._mutex:
            if name in self._running:  # another worker of this replica took it meanwhile
                return False
            self._running.add(name)
            # Also if the database fails below; only this worker touches the list's entry until
            # it leaves _running.
            self._look_at[name] = now + self.busy_retry
        lst = self.lists[name]
        try:
            with locks.exclusive(self.engine, f"due:{name}"):
                due = next_due(lst.schedule, latest_start(self.engine, name, lst.first_target))
                if due > now:
                    self._look_at[name] = due
                    return False
                # From this start, even if the run fails before it writes a SyncRun row.
                self._look_at[name] = next_due(lst.schedule, now)
                run_logged(f"sync:{name}", lambda: self.sync(name))
                return True
        except locks.Busy:
            log.debug("sync.claimed_elsewhere", list=name)
            return False
        finally:
            with self._mutex:
                self._running.discard(name)
