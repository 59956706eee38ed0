"""Sync benchmark: N contacts, 3 lists, 2 providers, the real `syncd sync` command (run by hand).

    python benchmarks/sync_bench.py --contacts 100000
    python benchmarks/sync_bench.py --contacts 10000

Both simulators run in their own processes. Reports, for the first sync, the next run (which
reads none of what the first pushed: the first run's read after its writes moved the cursor past
them), a steady no-op re-sync and a re-sync after 1 % of the contacts
changed: wall time, provider write calls (from the run records) against the connectors' floor, and
the peak RSS of the `syncd sync` process. Runs are spaced 125 s apart, as scheduled runs are.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from connectors.brevo import BrevoConnector
from connectors.mailchimp import MailchimpConnector
from connectors.simulators import brevo as brevo_sim
from connectors.simulators import mailchimp as mailchimp_sim
from connectors.simulators.harness import free_port
from syncd import db
from syncd.models import Contact, Membership, SyncRun

BREVO_KEY, MC_KEY = "bench-brevo", "bench-key-us1"


def start(serve, key):
    port = free_port()
    proc = multiprocessing.get_context("spawn").Process(target=serve, args=(port, key), daemon=True)
    proc.start()
    return proc, port


def wait_up(make):
    for _ in range(100):
        try:
            return make()
        except Exception:  # noqa: BLE001 — not up yet
            time.sleep(0.1)
    raise SystemExit("simulator did not start")


def seed(url: str, n: int) -> None:
    engine = db.make_engine(url)
    db.upgrade(engine)
    kinds = ["client", "client", "prospect", "prospect", "vendor"]
    with engine.begin() as conn:
        for start_at in range(0, n, 10_000):
            rows = [
                {
                    "email": f"c{i:07d}@example.fr",
                    "first_name": f"Name{i}",
                    "last_name": "Dupont",
                    "kind": kinds[i % 5],
                    "tags": [],
                    "attributes": {},
                    "email_status": "valid",
                    "global_opt_out": False,
                    "version": 1,
                    "created_at": db_now(),
                    "updated_at": db_now(),
                }
                for i in range(start_at, min(n, start_at + 10_000))
            ]
            conn.execute(sa.insert(Contact.__table__), rows)
        ids = conn.execute(sa.select(Contact.id, Contact.kind)).all()
        members = [
            {
                "contact_id": cid,
                "list_name": "clients" if kind == "client" else "prospects",
                "status": "subscribed",
                "since": db_now(),
            }
            for cid, kind in ids
            if kind in ("client", "prospect")
        ]
        for i in range(0, len(members), 10_000):
            conn.execute(sa.insert(Membership.__table__), members[i : i + 10_000])
    if engine.dialect.name == "postgresql":
        # As `syncd import` leaves its tables (``db.Growth``): sized for the planner.
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE contact, membership")
    engine.dispose()


def db_now():
    from syncd.models import utcnow

    return utcnow()


def cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid`` and of its children it has reaped (Linux's /proc), 0 elsewhere.
    For PostgreSQL's postmaster, the reaped children are the backends of finished connections."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime: fields 14-17 of proc(5), here 11-14 after the command name.
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def postmaster_pid(url: str) -> int | None:
    """The PostgreSQL server's main process when it runs on this machine, else None."""
    if not url.startswith("postgresql"):
        return None
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            data = conn.exec_driver_sql("SHOW data_directory").scalar()
        return int(Path(data, "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, sa.exc.DBAPIError):
        return None
    finally:
        engine.dispose()


def run_sync(
    env: dict[str, str],
    config: Path,
    profile: str | None = None,
    lists: tuple[str, ...] = (),
    jobs: int = 1,
) -> tuple[float, int]:
    started = time.monotonic()
    python = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
    only = [a for name in lists for a in ("--list", name)]
    proc = subprocess.Popen(
        [*python, "-m", "syncd", "--config", str(config), "sync", "--jobs", str(jobs), *only],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read()
    if os.environ.get("SYNC_BENCH_VERBOSE"):
        print(out)
    if status != 0:
        print(out, proc.stderr.read())
        raise SystemExit("sync failed")
    return time.monotonic() - started, usage.ru_maxrss // 1024, usage.ru_utime + usage.ru_stime


def run_counts(url: str, since_id: int) -> dict[str, dict]:
    """Each target's run record since ``since_id``: write calls, members read, contacts planned."""
    engine = db.make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(SyncRun.target_key, SyncRun.counts).where(SyncRun.id > since_id)).all()
    engine.dispose()
    return {key: counts for key, counts in rows}


def run_times(url: str, since_id: int) -> list[tuple]:
    """Each list's and target's run since ``since_id``: its key, start and end."""
    engine = db.make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                sa.func.coalesce(SyncRun.target_key, SyncRun.list_name),
                SyncRun.started_at,
                SyncRun.finished_at,
            )
            .where(SyncRun.id > since_id, SyncRun.finished_at.is_not(None))
            .order_by(SyncRun.id)
        ).all()
    engine.dispose()
    return rows


def last_run_id(url: str) -> int:
    engine = db.make_engine(url)
    with engine.connect() as conn:
        value = conn.execute(sa.select(sa.func.max(SyncRun.id))).scalar() or 0
    engine.dispose()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--database", help="default: a fresh SQLite file")
    parser.add_argument("--profile", help="write a cProfile of one run (--profile-run) to this file")
    parser.add_argument(
        "--profile-run",
        type=int,
        choices=range(1, 5),
        default=3,
        help="which of the four runs --profile covers (default: 3, the steady no-op)",
    )
    parser.add_argument(
        "--first-only", action="store_true", help="stop after the first sync (memory scaling)"
    )
    parser.add_argument("--runs", type=int, default=4, help="stop after this many of the four runs")
    parser.add_argument("--jobs", type=int, default=1, help="`syncd sync --jobs`: lists synced at once")
    args = parser.parse_args()
    n = args.contacts
    tmp = Path(tempfile.mkdtemp(prefix="syncd-bench-"))
    url = args.database or f"sqlite:///{tmp / 'bench.db'}"
    schema = None
    if args.database:
        # A throwaway schema, dropped at the end: every `syncd sync` of the run works in it (the
        # URL's connection options set its search path).
        schema = f"sync_bench_{uuid.uuid4().hex[:10]}"
        admin = db.make_engine(args.database)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        url = f"{args.database}{'&' if '?' in args.database else '?'}options=-csearch_path%3D{schema}"

    b_proc, b_port = start(brevo_sim.serve, BREVO_KEY)
    m_proc, m_port = start(mailchimp_sim.serve, MC_KEY)
    try:
        b_url, m_url = f"http://127.0.0.1:{b_port}/v3", f"http://127.0.0.1:{m_port}/3.0"
        brevo = wait_up(lambda: BrevoConnector(BREVO_KEY, b_url))
        clients_b = wait_up(lambda: brevo.create_list("clients"))
        vendors_b = brevo.create_list("vendors")
        audience = wait_up(lambda: MailchimpConnector(MC_KEY, m_url).create_list("bench"))
        config = tmp / "syncd.yaml"
        config.write_text(f"""
version: 1
providers:
  brevo: {{api_key: "${{B_KEY}}", base_url: "{b_url}"}}
  mailchimp: {{api_key: "${{M_KEY}}", base_url: "{m_url}"}}
lists:
  clients:
    consent: single_opt_in
    segment: {{kind: [client]}}
    targets:
      - brevo: {{list_id: {clients_b.list_id}}}
      - mailchimp: {{audience: "{audience.list_id}", tag: clients}}
  prospects:
    consent: single_opt_in
    segment: {{kind: [prospect]}}
    targets: [{{mailchimp: {{audience: "{audience.list_id}", tag: prospects}}}}]
  vendors:
    consent: legitimate_interest
    segment: {{kind: [vendor]}}
    auto_enroll: true
    targets: [{{brevo: {{list_id: {vendors_b.list_id}}}}}]
""")
        pg = postmaster_pid(url)
        env = {**os.environ, "B_KEY": BREVO_KEY, "M_KEY": MC_KEY, "SYNCD_DATABASE_URL": url}
        t0 = time.monotonic()
        # Seeded in a process of its own: a child's peak RSS counts the parent's at fork time, so
        # this process must stay small for the `syncd sync` figures to be the sync's own.
        seeder = multiprocessing.get_context("spawn").Process(target=seed, args=(url, n))
        seeder.start()
        seeder.join()
        print(f"seeded {n} contacts in {time.monotonic() - t0:.1f}s ({url})")

        per_list = {"clients": 2 * n // 5, "prospects": 2 * n // 5, "vendors": n // 5}
        floor = {
            # One import per 8 MB of contacts (about 80,000 of the benchmark's).
            f"brevo:{clients_b.list_id}": math.ceil(per_list["clients"] / 80_000),
            f"brevo:{vendors_b.list_id}": math.ceil(per_list["vendors"] / 80_000),
            f"mailchimp:{audience.list_id}:clients": 2 * math.ceil(per_list["clients"] / 500),
            f"mailchimp:{audience.list_id}:prospects": 2 * math.ceil(per_list["prospects"] / 500),
        }
        phases = (
            "first sync",
            "next run, no change",
            "steady no-op re-sync",
            "re-sync after 1 % changed",
        )
        previous_done = time.monotonic()
        if args.first_only:
            for name in ("clients", "prospects", "vendors"):
                seconds, rss, _ = run_sync(env, config, lists=(name,))
                print(f"first sync of {name}: {seconds:.1f}s, peak RSS {rss} MB")
            return
        for phase in phases[: args.runs]:
            if not phase.startswith("first"):
                # Scheduled runs are minutes apart: wait until the provider's clock has moved past
                # the previous run's read-back window (the pull cursor's 2-minute safety skew).
                time.sleep(max(0.0, 125 - (time.monotonic() - previous_done)))
            if phase.startswith("re-sync after"):
                engine = db.make_engine(url)
                with engine.begin() as conn:  # as an import's merge does: the change and its stamp
                    conn.execute(
                        sa.update(Contact)
                        .where(Contact.id % 101 == 0)
                        .values(first_name="Changed", touched_at=db_now())
                    )
                engine.dispose()
            before = last_run_id(url)
            servers = {"Brevo simulator": b_proc.pid, "Mailchimp simulator": m_proc.pid, "PostgreSQL": pg}
            cpu_before = {name: cpu_seconds(pid) for name, pid in servers.items() if pid}
            seconds, rss, cpu = run_sync(
                env,
                config,
                args.profile if phase == phases[args.profile_run - 1] else None,
                jobs=args.jobs,
            )
            previous_done = time.monotonic()
            counts = run_counts(url, before)
            total = sum(c.get("write_calls", 0) for c in counts.values())
            print(f"\n{phase}: {seconds:.1f}s, peak RSS {rss} MB, write calls {total}")
            used = {name: cpu_seconds(servers[name]) - was for name, was in cpu_before.items()}
            print(
                "  CPU: syncd sync " + ", ".join([f"{cpu:.1f}s", *(f"{k} {v:.1f}s" for k, v in used.items())])
            )
            for key, started_at, finished_at in run_times(url, before):
                print(f"  {key}: {(finished_at - started_at).total_seconds():.1f}s")
            for key, run in sorted(counts.items()):
                c = run.get("write_calls", 0)
                extra = f" (floor {floor[key]}, {c / floor[key]:.2f}x)" if phase == "first sync" else ""
                print(
                    f"  {key}: {c}{extra}; members read {run.get('pulled', 0)} (after its writes "
                    f"{run.get('read_after_writes', 0)}, shared records {run.get('read_elsewhere', 0)}), "
                    f"contacts planned "
                    f"{run.get('contacts_planned', 0)}, skipped unchanged {run.get('unchanged', 0)}",
                    flush=True,
                )
    finally:
        for p in (b_proc, m_proc):
            p.terminate()
            p.join(5)
        shutil.rmtree(tmp, ignore_errors=True)
        if schema:
            admin = db.make_engine(args.database)
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
