"""Replica benchmark: one `syncd run` against two, four lists of a few seconds of sync work each
(run by hand, on PostgreSQL: replicas share the list syncs only there).

    .venv/bin/python benchmarks/replica_bench.py postgresql+psycopg://postgres@127.0.0.1:5432/test

Each round gets a fresh schema and fresh Brevo lists (a simulator whose every call waits
``--latency`` seconds), starts the replicas together, and waits until every list has synced once.
Reports the wall time from the SyncRun rows (first start to last end), the lists each replica
synced (from its log), and whether two runs of one list ever overlapped. With ``--jobs N`` it also
runs one and two replicas each syncing N lists at once (``sync.jobs``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from connectors.simulators.brevo import BrevoSimulator
from connectors.simulators.harness import free_port
from syncd import db
from syncd.config import load_config
from syncd.db import session_scope
from syncd.membership import join_list
from syncd.models import Contact, SyncRun

LISTS = ("alpha", "beta", "gamma", "delta")
KEY = "bench-brevo"
os.environ["BENCH_BREVO_KEY"] = KEY  # read by the config here and by the replicas it starts


def round_with(replicas: int, jobs: int, url: str, latency: float, contacts: int, workdir: Path) -> dict:
    schema = f"replica_bench_{uuid.uuid4().hex[:8]}"
    admin = db.make_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    schema_url = f"{url}{sep}options=-csearch_path%3D{schema}"
    engine = db.make_engine(schema_url)
    try:
        db.upgrade(engine)
        with BrevoSimulator(api_key=KEY) as brevo:
            path = configure(workdir / f"syncd-{replicas}-{jobs}.yaml", brevo, jobs)
            seed(engine, path, contacts)
            brevo.latency_s = latency
            logs = [workdir / f"replicas{replicas}-jobs{jobs}-{i}.log" for i in range(replicas)]
            procs = [start_replica(path, schema_url, log) for log in logs]
            try:
                wait_all_synced(engine)
            finally:
                for proc in procs:
                    stop(proc)
            return measure(engine, logs)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def configure(path: Path, brevo: BrevoSimulator, jobs: int) -> Path:
    lists = "".join(
        f"""
  {name}:
    consent: single_opt_in
    targets: [{{brevo: {{list_id: {brevo.create_list(name)}}}}}]
    schedule: every 1 hour
"""
        for name in LISTS
    )
    path.write_text(f"""
version: 1
providers:
  brevo: {{api_key: "${{BENCH_BREVO_KEY}}", base_url: "{brevo.api_url}"}}
sync: {{jobs: {jobs}}}
lists:{lists}""")
    return path


def seed(engine: sa.Engine, path: Path, contacts: int) -> None:
    config = load_config(path)
    with session_scope(engine) as s:
        for name in LISTS:
            for i in range(contacts):
                contact = Contact(email=f"c{i}.{name}@example.fr", first_name="Ana")
                s.add(contact)
                s.flush()
                join_list(s, contact, name, config.lists[name], consent="single_opt_in", source="form")


def start_replica(path: Path, url: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "SYNCD_DATABASE_URL": url}
    command = [sys.executable, "-m", "syncd", "--log-level", "info", "--config", str(path), "run"]
    with log.open("w") as handle:
        return subprocess.Popen(
            [*command, "--port", str(free_port())], env=env, stdout=subprocess.DEVNULL, stderr=handle
        )


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_all_synced(engine: sa.Engine, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    done = sa.select(sa.func.count(sa.distinct(SyncRun.list_name))).where(SyncRun.status == "ok")  # type: ignore[arg-type]
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(done).scalar() == len(LISTS):
                return
        time.sleep(0.2)
    raise SystemExit("the lists did not all sync in time")


def measure(engine: sa.Engine, logs: list[Path]) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(SyncRun.list_name, SyncRun.started_at, SyncRun.finished_at).order_by(SyncRun.started_at)  # type: ignore[arg-type]
        ).all()
    wall = (max(r.finished_at for r in rows) - min(r.started_at for r in rows)).total_seconds()
    per_list: dict[str, list] = {}
    for r in rows:
        per_list.setdefault(r.list_name, []).append(r)
    overlaps = sum(
        1
        for runs in per_list.values()
        for a, b in zip(runs, runs[1:], strict=False)
        if a.finished_at > b.started_at
    )
    longest = max((r.finished_at - r.started_at).total_seconds() for r in rows)
    return {
        "wall_s": round(wall, 2),
        "runs": len(rows),
        "longest_run_s": round(longest, 2),
        "overlapping_runs": overlaps,
        "lists_by_replica": [synced_lists(log) for log in logs],
    }


def synced_lists(log: Path) -> list[str]:
    names = []
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "job.finished" and str(event.get("job", "")).startswith("sync:"):
            names.append(event["job"].removeprefix("sync:"))
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url", help="a PostgreSQL URL (a schema is made and dropped in it)")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds each provider call waits")
    parser.add_argument("--contacts", type=int, default=50, help="members per list")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="also run rounds with this `sync.jobs` (lists a replica syncs at once)",
    )
    args = parser.parse_args()
    rounds = [(1, 1), (2, 1)] + ([(1, args.jobs), (2, args.jobs)] if args.jobs > 1 else [])
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            (n, jobs): round_with(n, jobs, args.database_url, args.latency, args.contacts, Path(tmp))
            for n, jobs in rounds
        }
    for (n, jobs), r in results.items():
        print(f"{n} replica(s), sync.jobs {jobs}: {json.dumps(r)}")
    one = results[(1, 1)]["wall_s"]
    for (n, jobs), r in results.items():
        if (n, jobs) != (1, 1):
            print(f"speed-up of {n} replica(s) x {jobs} job(s) over 1 x 1: {one / r['wall_s']:.2f}x")


if __name__ == "__main__":
    main()
