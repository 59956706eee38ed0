"""Planning benchmark: which contacts a plan selects, and the plan itself, at N contacts (run by hand).

    .venv/bin/python benchmarks/plan_bench.py --contacts 10000
    .venv/bin/python benchmarks/plan_bench.py --contacts 100000
    .venv/bin/python benchmarks/plan_bench.py --contacts 100000 --database postgresql+psycopg://...

No provider is called: the base is seeded as after a first sync (2/5 of the contacts members of
``clients``, each with its TargetState on the list's Brevo target), then ``select.chunks`` (the id
selection and the contact rows) and ``select.plans`` (the same, plus the reads and the pure rules
of each chunk) are timed for a full plan, for incremental plans after 1 % and after every contact
was touched, and for the auto-enrolled ``vendors`` list (every contact). Reports the wall time of each
and what it selected or planned. On PostgreSQL the base lives in a schema of its own, dropped at
the end.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from scratch import bench_engine

from connectors.brevo import TRAITS
from syncd import db
from syncd.config import Config
from syncd.models import Contact, Membership, TargetState, utcnow
from syncd.sync.select import Since, chunks, plans
from syncd.sync.state import ListTarget

BATCH = 10_000
KINDS = ["client", "client", "prospect", "prospect", "vendor"]
CONFIG = {
    "version": 1,
    "providers": {"brevo": {"api_key": "bench", "base_url": "http://127.0.0.1:9/v3"}},
    "lists": {
        "clients": {
            "consent": "single_opt_in",
            "segment": {"kind": ["client"]},
            "targets": [{"brevo": {"list_id": 1}}],
        },
        "vendors": {
            "consent": "legitimate_interest",
            "segment": {"kind": ["vendor"]},
            "auto_enroll": True,
            "targets": [{"brevo": {"list_id": 2}}],
        },
    },
}


def seed(engine: sa.Engine, n: int) -> None:
    """N contacts touched a day ago; the clients members, each with what a first sync stored."""
    long_ago = utcnow() - timedelta(days=1)
    with engine.begin() as conn:
        for start in range(0, n, BATCH):
            conn.execute(
                sa.insert(Contact.__table__),
                [
                    {
                        "email": f"c{i:07d}@example.fr",
                        "first_name": f"Name{i}",
                        "kind": KINDS[i % 5],
                        "tags": [],
                        "attributes": {},
                        "created_at": long_ago,
                        "updated_at": long_ago,
                        "touched_at": long_ago,
                    }
                    for i in range(start, min(n, start + BATCH))
                ],
            )
        clients = [cid for cid, kind in conn.execute(sa.select(Contact.id, Contact.kind)) if kind == "client"]
        for start in range(0, len(clients), BATCH):
            part = clients[start : start + BATCH]
            conn.execute(
                sa.insert(Membership.__table__),
                [
                    {
                        "contact_id": cid,
                        "list_name": "clients",
                        "status": "subscribed",
                        "since": long_ago,
                        "touched_at": long_ago,
                    }
                    for cid in part
                ],
            )
            conn.execute(
                sa.insert(TargetState.__table__),
                [
                    {
                        "contact_id": cid,
                        "list_name": "clients",
                        "target_key": "brevo:1",
                        "remote_status": "subscribed",
                        "pushed_at": long_ago,
                    }
                    for cid in part
                ],
            )


def touch(engine: sa.Engine, every: int) -> None:
    """One contact in ``every`` changed now, as an import's merge stamps it."""
    with engine.begin() as conn:
        conn.execute(sa.update(Contact).where(Contact.id % every == 0).values(touched_at=utcnow()))


def timed(label: str, count: Callable[[], tuple[int, str]]) -> None:
    started = time.perf_counter()
    n, what = count()
    seconds = time.perf_counter() - started
    print(f"  {label:<40} {seconds:8.2f}s  {n:>8} {what}")


def selected(it: Iterator[list]) -> tuple[int, str]:
    return sum(len(rows) for rows in it), "contacts selected"


def planned(lt: ListTarget, since: Since | None) -> tuple[int, str]:
    return sum(chunk.plan.writes for chunk in plans(lt, TRAITS, since)), "writes planned"


def bench(engine: sa.Engine, n: int) -> None:
    config = Config.model_validate(CONFIG)
    clients, vendors = (
        ListTarget(engine, config, name, config.lists[name], config.lists[name].targets[0].target)
        for name in ("clients", "vendors")
    )
    t0 = time.perf_counter()
    seed(engine, n)
    print(f"seeded {n} contacts in {time.perf_counter() - t0:.1f}s ({engine.url.render_as_string()})")
    timed("clients, full: ids and rows (chunks)", lambda: selected(chunks(clients, None)))
    timed("clients, full: plan (plans)", lambda: planned(clients, None))
    timed("vendors (auto-enrolled), full: plan", lambda: planned(vendors, None))
    # What a run keeps of its plan's start: its time and, on PostgreSQL, its snapshot.
    since = Since(utcnow(), db.snapshot(engine))
    touch(engine, 100)
    timed("clients, 1 % touched: ids and rows", lambda: selected(chunks(clients, since)))
    since = Since(utcnow(), db.snapshot(engine))
    touch(engine, 1)
    timed("clients, all touched: ids and rows", lambda: selected(chunks(clients, since)))
    timed("clients, all touched: plan", lambda: planned(clients, since))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--database", help="a PostgreSQL URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="syncd-plan-bench-"))
    try:
        with bench_engine(args.database, tmp, "plan_bench") as engine:
            bench(engine, args.contacts)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
