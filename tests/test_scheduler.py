import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

from syncd.config import Schedule
from syncd.scheduler import Job, Leader, build_scheduler

HOLD_LEADERSHIP = """
import sys, time
from syncd import db, log
log.configure("error")
from syncd.scheduler import Leader
leader = Leader(db.make_engine(sys.argv[1]))
print("leader" if leader.is_leader() else "follower", flush=True)
time.sleep(120)
"""


def url_of(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_only_one_replica_leads_and_another_takes_over_when_it_dies(engine):
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD_LEADERSHIP, url_of(engine)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout.readline().strip() == "leader"
        second = Leader(engine)
        assert second.is_leader() is False
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not second.is_leader():
            assert time.monotonic() < deadline, "the surviving replica never took the lead"
            time.sleep(0.1)
        assert second.is_leader() is True
        second.release()
    finally:
        first.kill()
        first.wait()


def test_jobs_run_only_on_the_leader_and_never_overlap(engine):
    leader, follower = Leader(engine), Leader(engine)
    assert leader.is_leader()
    runs = {"leader": 0, "follower": 0}
    running, overlaps = threading.Lock(), []

    def slow(who):
        def job():
            if not running.acquire(blocking=False):
                overlaps.append(who)
                return
            try:
                runs[who] += 1
                time.sleep(0.3)
            finally:
                running.release()

        return job

    fast = Schedule(every=timedelta(seconds=0.1))
    schedulers = [
        build_scheduler([Job("sync", slow("leader"), fast)], leader),
        build_scheduler([Job("sync", slow("follower"), fast)], follower),
    ]
    for s in schedulers:
        s.start()
    time.sleep(1.2)
    for s in schedulers:
        s.shutdown(wait=True)
    leader.release()
    follower.release()
    assert runs["leader"] >= 2
    assert runs["follower"] == 0
    assert overlaps == []


def test_a_list_falling_due_during_a_long_sync_runs_beside_it(engine):
    """With two workers, a list that falls due while the other worker is still syncing a long one
    starts then, not after it: the idle worker waits for it instead of ending the tick."""
    from datetime import UTC, datetime

    from syncd.db import session_scope
    from syncd.models import SyncRun
    from syncd.scheduler import ListSyncs, ScheduledList

    hourly = Schedule(every=timedelta(hours=1))
    # "later" last ran 1 h - 1.5 s ago: due 1.5 s into the long sync of "long".
    with session_scope(engine) as s:
        s.add(
            SyncRun(
                list_name="later",
                target_key="t-later",
                started_at=datetime.now(UTC) - hourly.every + timedelta(seconds=1.5),
            )
        )
    later_started = threading.Event()
    seen: list[tuple[str, bool]] = []

    def sync(name: str) -> None:
        if name == "long":
            # True only if "later" starts while this sync is still running.
            seen.append((name, later_started.wait(timeout=10)))
        else:
            later_started.set()
            seen.append((name, True))

    syncs = ListSyncs(
        engine,
        [ScheduledList("long", hourly, "t-long"), ScheduledList("later", hourly, "t-later")],
        sync,
        threading.Event(),
        jobs=2,
        poll=timedelta(milliseconds=200),
    )
    started = time.monotonic()
    ran = syncs.tick()
    assert sorted(ran) == ["later", "long"]
    assert ("long", True) in seen, "the list due during the long sync waited for it to end"
    assert time.monotonic() - started < 10
    # Nothing is due any more: the next tick starts nothing and returns at once.
    assert syncs.tick() == []
