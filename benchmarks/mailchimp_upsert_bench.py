"""Upsert 100,000 members into a Mailchimp audience through the connector, against the simulator.

Run by hand:  /work/venv/bin/python benchmarks/mailchimp_upsert_bench.py [--members 100000]

Prints the write calls against the floor ceil(N/500), and the wall time with 0 ms and 200 ms of
simulated latency per request at 10 simultaneous connections. The floor for the latency run is
calls x latency / 10 connections; the target is within 1.2x of it.
"""

from __future__ import annotations

import argparse
import math
import time

from connectors.base import MemberPush
from connectors.mailchimp import BATCH_SUBSCRIBE_MAX, MAX_CONNECTIONS, MailchimpConnector
from connectors.simulators.mailchimp import MailchimpSimulator


def run(members: int, latency_s: float) -> tuple[int, float, int]:
    pushes = [
        MemberPush(f"user{i}@example.fr", fields={"first_name": f"U{i}", "company": "ACME"})
        for i in range(members)
    ]
    with MailchimpSimulator(max_connections=MAX_CONNECTIONS) as sim:
        target = sim.create_target("bench")
        sim.latency_s = latency_s
        connector = MailchimpConnector(sim.api_key, sim.api_url, concurrency=MAX_CONNECTIONS)
        started = time.perf_counter()
        result = connector.upsert(target, pushes)
        elapsed = time.perf_counter() - started
        connector.close()
        assert len(result.done) == members and not result.rejected, result.rejected[:3]
        assert len(sim.members(target)) == members
        return sim.write_calls, elapsed, connector.stats["rate_limited"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    args = parser.parse_args()
    floor_calls = math.ceil(args.members / BATCH_SUBSCRIBE_MAX)
    print(f"members={args.members} floor_calls={floor_calls} connections={MAX_CONNECTIONS}")
    for latency in (0.0, 0.2):
        calls, elapsed, limited = run(args.members, latency)
        bound = floor_calls * latency / MAX_CONNECTIONS
        verdict = f"bound={bound:.2f}s ratio={elapsed / bound:.2f} (target <= 1.20)" if bound else ""
        print(
            f"latency={latency * 1000:.0f}ms write_calls={calls} (floor {floor_calls}) "
            f"wall={elapsed:.2f}s 429s={limited} {verdict}"
        )


if __name__ == "__main__":
    main()
