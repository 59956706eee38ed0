"""Upsert 100,000 members into the Brevo simulator; API write calls vs the strategy's minimum, wall time.

Run by hand:
    /work/venv/bin/python benchmarks/brevo_upsert_bench.py --latency-ms 0 200 --concurrency 1 8
"""

from __future__ import annotations

import argparse
import math
import time

from connectors.brevo import BrevoConnector
from connectors.brevo.client import LIST_BATCH
from connectors.brevo.imports import IMPORT_MAX_BYTES, import_chunks
from connectors.contract import MemberPush, Target
from connectors.simulators.brevo import BrevoSimulator


def members(n: int) -> list[MemberPush]:
    return [
        MemberPush(
            f"member{i:06d}@example.com",
            fields={"first_name": f"First{i}", "last_name": f"Last{i}", "company": f"Company {i % 500}"},
        )
        for i in range(n)
    ]


def import_minimum(pushes: list[MemberPush]) -> int:
    """Import calls the CSV bodies need: their total size over the 8 MB cap, rounded up."""
    size = sum(len(body.encode()) for body in import_chunks({m.email: m for m in pushes}))
    return math.ceil(size / IMPORT_MAX_BYTES)


def run(n: int, latency_ms: float, concurrency: int) -> None:
    pushes = members(n)
    with BrevoSimulator() as sim:
        list_id = sim.create_list("bench")
        target = Target("brevo", str(list_id))
        for m in pushes[: n // 2]:  # half exist
            sim.put_contact(m.email, list_ids=[list_id], attributes={"FIRSTNAME": "Old"})
        sim.reset_calls()
        sim.latency_s = latency_ms / 1000
        conn = BrevoConnector(sim.api_key, sim.api_url, timeout=120.0, concurrency=concurrency)
        started = time.perf_counter()
        result = conn.upsert(target, pushes)
        elapsed = time.perf_counter() - started
        assert len(result.done) == n and not result.rejected, result.rejected[:3]
        assert len(sim.list_contacts(list_id)) == n
        reads = sum(1 for c in sim.calls if c.method == "GET")
        print(
            f"latency={latency_ms:>4.0f} ms  concurrency={concurrency}  members={n}  "
            f"write_calls={result.calls} "
            f"(sim saw {sim.write_calls}; import minimum {import_minimum(pushes)}; "
            f"add-to-list alone would need {math.ceil(n / LIST_BATCH)}, one-by-one {n})  "
            f"read_calls={reads}  wall={elapsed:.1f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0, 200])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    for latency in args.latency_ms:
        for concurrency in args.concurrency:
            run(args.members, latency, concurrency)


if __name__ == "__main__":
    main()
