"""Several `syncd run` replicas on one PostgreSQL base share the list syncs: each runs whichever
due list is free, and no list ever runs on two replicas at once."""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from simkit import BrevoSimulator
from test_daemon import finished_jobs, load_config_with, start_daemon, stop_daemon, wait_for

from syncd.config import Schedule
from syncd.db import session_scope
from syncd.membership import join_list
from syncd.models import Contact, SyncRun
from syncd.scheduler import next_due

LISTS = ("alpha", "beta", "gamma", "delta")
PERIOD = timedelta(seconds=3)


@pytest.fixture
def postgresql_only(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("several replicas share the syncs only on PostgreSQL; SQLite has one process")


def test_two_replicas_both_sync_lists_and_never_the_same_list_at_once(postgresql_only, tmp_path, engine):
    with BrevoSimulator() as brevo:
        brevo.latency_s = 0.15  # each run waits on a few provider calls: runs overlap in time
        path = _config_with_four_lists(tmp_path, engine, brevo)
        env = {
            **os.environ,
            "T_KEY": brevo.api_key,
            "SYNCD_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        }
        logs = [tmp_path / f"replica{i}.log" for i in (1, 2)]
        replicas = [start_daemon(path, env, log) for log in logs]
        try:
            wait_for(
                lambda: (
                    all(len(synced(log)) >= 2 for log in logs)
                    and all(len(runs) >= 2 for runs in _runs_by_list(engine).values())
                ),
                timeout=90,
                what="both replicas syncing lists, every list at least twice",
            )
        finally:
            for proc in replicas:
                stop_daemon(proc)

    runs = _runs_by_list(engine)
    assert set(runs) == set(LISTS)
    for name, spans in runs.items():
        for (start, end), (next_start, _) in zip(spans, spans[1:], strict=False):
            assert end is not None and end <= next_start, f"two runs of {name} overlapped"
            # Whichever replica ran it, a list runs again only when its schedule says so.
            assert next_start - start >= PERIOD, f"{name} ran again {next_start - start} after its last run"
    for log in logs:
        assert synced(log), "a replica synced no list"


def test_one_replica_with_sync_jobs_runs_lists_side_by_side_never_one_twice(tmp_path, engine):
    """`sync.jobs: 2`: one `syncd run` syncs two lists at once (their provider waits overlap),
    never more, and never one list twice at once; on SQLite as on PostgreSQL."""
    with BrevoSimulator() as brevo:
        brevo.latency_s = 0.15
        path = _config_with_four_lists(tmp_path, engine, brevo, jobs=2)
        env = {
            **os.environ,
            "T_KEY": brevo.api_key,
            "SYNCD_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        }
        replica = start_daemon(path, env, tmp_path / "replica.log")
        try:
            wait_for(
                lambda: (
                    len(_runs_by_list(engine)) == len(LISTS)
                    and all(len(runs) >= 2 and runs[1][1] for runs in _runs_by_list(engine).values())
                ),
                timeout=90,
                what="every list synced twice",
            )
        finally:
            stop_daemon(replica)

    runs = _runs_by_list(engine)
    for name, spans in runs.items():
        for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False):
            assert end is not None and end <= next_start, f"two runs of {name} overlapped"
    spans = [span for name_spans in runs.values() for span in name_spans if span[1] is not None]
    at_once = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert at_once == 2, f"{at_once} lists synced at once with sync.jobs 2"


def test_a_list_is_due_from_its_latest_run_whoever_ran_it():
    start = datetime(2026, 3, 1, 9, 0, 0, 250_000, tzinfo=UTC)
    assert next_due(Schedule(every=timedelta(minutes=15)), start) == start + timedelta(minutes=15)
    assert next_due(Schedule(every=timedelta(minutes=15)), None) <= start
    # SQLite gives back naive UTC
    assert next_due(Schedule(every=timedelta(hours=1)), start.replace(tzinfo=None)) == start + timedelta(
        hours=1
    )
    quarter = Schedule(cron="*/15 * * * *")
    assert next_due(quarter, start) == datetime(2026, 3, 1, 9, 15, tzinfo=UTC)
    # A run that started on the very minute of its cron line is not due again at once.
    assert next_due(quarter, datetime(2026, 3, 1, 9, 15, tzinfo=UTC)) == datetime(
        2026, 3, 1, 9, 30, tzinfo=UTC
    )


def _config_with_four_lists(tmp_path, engine, brevo, jobs=1):
    targets = {name: brevo.create_target(name) for name in LISTS}
    lists = "".join(
        f"""
  {name}:
    consent: single_opt_in
    targets: [{{brevo: {{list_id: {target.list_id}}}}}]
    schedule: every {PERIOD.seconds} seconds
"""
        for name, target in targets.items()
    )
    path = tmp_path / "syncd.yaml"
    path.write_text(f"""
version: 1
providers:
  brevo: {{api_key: "${{T_KEY}}", base_url: "{brevo.api_url}", settle_s: 0}}
sync: {{jobs: {jobs}}}
lists:{lists}""")
    config = load_config_with(path, T_KEY=brevo.api_key)
    with session_scope(engine) as s:
        for name in LISTS:
            contact = Contact(email=f"ana.{name}@example.fr", first_name="Ana")
            s.add(contact)
            s.flush()
            join_list(s, contact, name, config.lists[name], consent="single_opt_in", source="form")
    return path


def synced(log_path) -> list[str]:
    """The lists a replica synced, from its log."""
    return [job.removeprefix("sync:") for job in finished_jobs(log_path) if job.startswith("sync:")]


def _runs_by_list(engine) -> dict[str, list[tuple[datetime, datetime | None]]]:
    """Each list's runs (one target each: one SyncRun row per run), in order of start."""
    runs: dict[str, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(SyncRun.list_name, SyncRun.started_at, SyncRun.finished_at).order_by(
                SyncRun.started_at  # type: ignore[arg-type]
            )
        )
        for name, started, finished in rows:
            runs[name].append((started, finished))
    return dict(runs)
