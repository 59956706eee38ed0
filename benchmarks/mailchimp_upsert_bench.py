"""Upsert 100,000 members into a Mailchimp audience through the connector, against the simulator.

Run by hand:  /work/venv/bin/python benchmarks/mailchimp_upsert_bench.py [--members 100000] [--in-process]

Prints the write calls against the floor ceil(N/500), and the wall time with 0 ms and 200 ms of
simulated latency per request at 10 simultaneous connections. The floor for the latency run is
calls x latency / 10 connections; the target is within 1.2x of it.

By default the simulator runs in its own process (``serve``), as Mailchimp runs on its own
machines: in-process, its request handling shares the connector's interpreter lock and the
figure measures the simulator as much as the connector.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import time
from collections.abc import Iterator
from contextlib import contextmanager

from connectors.contract import MemberPush, Target
from connectors.mailchimp import MailchimpConnector
from connectors.mailchimp.connections import MAX_CONNECTIONS
from connectors.mailchimp.vocabulary import BATCH_SUBSCRIBE_MAX
from connectors.simulators.harness import free_port
from connectors.simulators.mailchimp import MailchimpSimulator, serve

API_KEY = "bench-key-us1"


@contextmanager
def simulator(latency_s: float, in_process: bool) -> Iterator[str]:
    if in_process:
        with MailchimpSimulator(api_key=API_KEY, max_connections=MAX_CONNECTIONS) as sim:
            sim.latency_s = latency_s
            yield sim.api_url
        return
    port = free_port()
    proc = multiprocessing.get_context("spawn").Process(
        target=serve, args=(port, API_KEY), kwargs={"latency_s": latency_s}, daemon=True
    )
    proc.start()
    url = f"http://127.0.0.1:{port}/3.0"
    try:
        probe = MailchimpConnector(API_KEY, url, max_retries=20, max_retry_seconds=20, backoff_base_s=0.1)
        probe.ping()
        probe.close()
        yield url
    finally:
        proc.terminate()
        proc.join(10)


def run(members: int, latency_s: float, in_process: bool) -> tuple[int, float, int]:
    pushes = [
        MemberPush(f"user{i}@example.fr", fields={"first_name": f"U{i}", "company": "ACME"})
        for i in range(members)
    ]
    with simulator(latency_s, in_process) as url:
        connector = MailchimpConnector(API_KEY, url, concurrency=MAX_CONNECTIONS)
        target: Target = connector.create_list("bench")
        writes_before = connector.stats.write_calls
        started = time.perf_counter()
        result = connector.upsert(target, pushes)
        elapsed = time.perf_counter() - started
        assert len(result.done) == members and not result.rejected, result.rejected[:3]
        assert connector.get_list(target.list_id)["stats"]["total_contacts"] == members
        connector.close()
        return connector.stats.write_calls - writes_before, elapsed, connector.stats.rate_limited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--in-process", action="store_true", help="run the simulator in this process")
    args = parser.parse_args()
    floor_calls = math.ceil(args.members / BATCH_SUBSCRIBE_MAX)
    where = "in-process" if args.in_process else "own process"
    print(f"members={args.members} floor_calls={floor_calls} connections={MAX_CONNECTIONS} simulator={where}")
    for latency in (0.0, 0.2):
        calls, elapsed, limited = run(args.members, latency, args.in_process)
        bound = floor_calls * latency / MAX_CONNECTIONS
        verdict = f"bound={bound:.2f}s ratio={elapsed / bound:.2f} (target <= 1.20)" if bound else ""
        print(
            f"latency={latency * 1000:.0f}ms write_calls={calls} (floor {floor_calls}) "
            f"wall={elapsed:.2f}s 429s={limited} {verdict}"
        )


if __name__ == "__main__":
    main()
