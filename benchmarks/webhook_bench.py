"""Webhook intake benchmark: the app under uvicorn on loopback, a bounded load of Brevo deliveries.

    /work/venv/bin/python benchmarks/webhook_bench.py --events 20000 --concurrency 8

The server runs in its own process (as in production), on a fresh migrated SQLite base unless
``--database`` names another. The load generator (httpx, asyncio) sends a fixed number of distinct
deliveries with bounded concurrency and stops by itself. Reported: events/s sustained, p50/p99
latency, and events lost = 2xx answers minus rows in the inbox (must be 0). Targets: >= 1,000
events/s, p99 <= 50 ms, 0 lost.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

from connectors.base import EventKind, Target
from connectors.simulators.brevo import BrevoSimulator
from connectors.simulators.server import free_port

SECRET = "bench-secret"
TOKEN = "bench-token"
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}


def bench_config(database: str):
    from syncd.config import Config

    return Config.model_validate(
        {
            "version": 1,
            "database": database,
            "providers": {
                "brevo": {
                    "api_key": "k",
                    "base_url": "http://127.0.0.1:9/v3",
                    "webhook_secret": SECRET,
                    "webhook_token": TOKEN,
                }
            },
            "lists": {"news": {"targets": [{"brevo": {"list_id": 12}}]}},
        }
    )


def serve(database: str, port: int) -> None:
    import uvicorn

    from syncd import db
    from syncd.web.app import create_app

    engine = db.make_engine(database, pool_size=20, max_overflow=20)
    app = create_app(bench_config(database), engine)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")


def payloads(n: int) -> list[bytes]:
    sim, target = BrevoSimulator(), Target("brevo", "12")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        sim.webhook_payload(
            EventKind.UNSUBSCRIBED,
            f"user{i}@example.fr",
            target,
            occurred_at=start + timedelta(milliseconds=i),
        )[0]
        for i in range(n)
    ]


async def load(url: str, bodies: list[bytes], concurrency: int) -> tuple[list[float], int, int, float]:
    latencies: list[float] = []
    ok = failed = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal ok, failed
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, content=body, headers=HEADERS)
                    good = 200 <= r.status_code < 300
                except httpx.HTTPError:
                    good = False
                latencies.append(time.perf_counter() - t0)
                ok, failed = ok + good, failed + (not good)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, ok, failed, elapsed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), to tell the server's cost from the client's."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_up(base: str, proc: mp.Process) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not proc.is_alive():
            sys.exit("server process died")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    sys.exit("server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)  # httpx's pool slows past ~16
    parser.add_argument("--database", help="default: a fresh SQLite file in a temporary directory")
    args = parser.parse_args()

    from syncd import db

    tmp = tempfile.TemporaryDirectory()
    database = args.database or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    engine = db.make_engine(database)
    db.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM inboxevent"))

    bodies = payloads(args.events)
    port = free_port()
    proc = mp.get_context("spawn").Process(target=serve, args=(database, port), daemon=True)
    proc.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, proc)
        asyncio.run(load(f"{base}/hooks/brevo/{SECRET}", bodies[:200], 8))  # warm-up, stored too
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM inboxevent"))
        cpu_before = cpu_seconds(proc.pid)
        latencies, ok, failed, elapsed = asyncio.run(
            load(f"{base}/hooks/brevo/{SECRET}", bodies, args.concurrency)
        )
        server_cpu = cpu_seconds(proc.pid) - cpu_before
    finally:
        proc.terminate()
        proc.join(10)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM inboxevent")).scalar_one()
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(f"database     {engine.dialect.name}")
    print(f"events       {args.events} sent, concurrency {args.concurrency}")
    print(f"answers      {ok} 2xx, {failed} failed")
    print(f"throughput   {ok / elapsed:,.0f} events/s over {elapsed:.2f} s")
    print(
        f"latency      p50 {p(0.50):.1f} ms, p99 {p(0.99):.1f} ms, max {latencies[-1] * 1000:.1f} ms, "
        f"mean {statistics.fmean(latencies) * 1000:.1f} ms"
    )
    print(
        f"server CPU   {server_cpu / max(ok, 1) * 1e6:.0f} us per event "
        f"(= {max(ok, 1) / server_cpu:,.0f} events/s per core); load average {os.getloadavg()[0]:.1f}"
    )
    print(f"inbox rows   {stored}; lost (2xx without a row) = {max(0, ok - stored)}")
    engine.dispose()
    tmp.cleanup()


if __name__ == "__main__":
    main()
