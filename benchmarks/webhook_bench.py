"""Webhook intake benchmark: a bounded load of Brevo unsubscribes against `syncd run` itself.

    python benchmarks/webhook_bench.py --events 5000 --concurrency 8 32
    python benchmarks/webhook_bench.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test
    python benchmarks/webhook_bench.py --target app --events 20000     # the bare app under uvicorn
    python benchmarks/webhook_bench.py --client httpx                   # the older, heavier generator

``--target daemon`` (the default) starts ``syncd run`` as a subprocess, as an operator runs it: its
own connection pool, its scheduler and inbox job, on a fresh migrated base (a SQLite file, or its
own schema in the PostgreSQL database named, dropped at the end) holding one subscribed contact per
delivery. The load generator (asyncio; bare HTTP/1.1 keep-alive connections, or httpx with
``--client httpx``, which costs the shared CPU several times more per request) sends that many
distinct unsubscribes with bounded concurrency and stops by itself; the benchmark then waits until
the daemon's inbox job has applied everything. Reported per run: deliveries acknowledged per second,
p50/p99 latency, time until all were applied, and lost = deliveries acknowledged 2xx whose
unsubscribe is not in the master base (must be 0). ``--target app`` serves only the web app (no
scheduler) and counts stored rows. Targets: >= 1,000 events/s at concurrency 8, p99 <= 50 ms, 0
lost.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

from connectors.simulators.brevo.webhooks import campaign_fields, payload
from connectors.simulators.harness import free_port

# Fresh secrets, as an operator makes them (`syncd secret`): the config refuses made-up ones.
SECRET, TOKEN = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
WARM_UP = 200  # deliveries sent before the measured load
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
CONFIG = """version: 1
database: ${BENCH_DATABASE_URL}
providers:
  brevo:
    api_key: ${BENCH_BREVO_KEY}
    base_url: http://127.0.0.1:9/v3
    webhook_secret: ${BENCH_WEBHOOK_SECRET}
    webhook_token: ${BENCH_WEBHOOK_TOKEN}
lists:
  news:
    consent: single_opt_in
    targets: [{brevo: {list_id: 12}}]
"""


def email(i: int) -> str:
    return f"user{i}@example.fr"


def payloads(n: int, first: int = 0) -> list[bytes]:
    """Unsubscribes of ``email(first)`` … from now on (an event older than the membership it names
    would not apply)."""
    start = datetime.now(UTC)
    at = [start + timedelta(milliseconds=i) for i in range(n)]
    # Contact id 1: the events name no contact the simulator holds.
    return [
        payload("unsubscribe", email(first + i), 1, at[i], **campaign_fields(), list_id=[12])
        for i in range(n)
    ]


# --- the master base ------------------------------------------------------------------------------


@contextmanager
def fresh_base(database: str | None) -> Iterator[str]:
    """A migrated, empty base: a SQLite file in a temporary directory, or a schema of its own in
    the PostgreSQL database named (dropped afterwards, so a shared database is left as it was)."""
    from syncd import db

    if not database or database.startswith("sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            engine = db.make_engine(url)
            db.upgrade(engine)
            engine.dispose()
            yield url
        return
    schema = f"webhook_bench_{uuid.uuid4().hex[:10]}"
    admin = db.make_engine(database)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{database}{'&' if '?' in database else '?'}options=-csearch_path%3D{schema}"
    try:
        engine = db.make_engine(url)
        db.upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def seed_members(url: str, n: int) -> None:
    """One contact per delivery, subscribed to the list the unsubscribes name."""
    from sqlmodel import Session

    from syncd import db
    from syncd.config import ListConfig
    from syncd.membership import join_list
    from syncd.models import Contact

    engine = db.make_engine(url)
    news = ListConfig(consent="single_opt_in")
    for start in range(0, n, 1000):
        with Session(engine) as s:
            for i in range(start, min(n, start + 1000)):
                c = Contact(email=email(i), first_name="Bench")
                s.add(c)
                s.flush()
                join_list(s, c, "news", news, consent="single_opt_in", source="bench")
            s.commit()
    engine.dispose()


def outcome(url: str) -> tuple[dict[str, int], set[str]]:
    """Inbox rows per status, and the addresses that left the list."""
    from syncd import db

    engine = db.make_engine(url)
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT status, count(*) FROM inboxevent GROUP BY status")).all())
        left = {
            e
            for (e,) in conn.execute(
                sa.text(
                    "SELECT c.email FROM contact c JOIN membership m ON m.contact_id = c.id "
                    "WHERE m.list_name = 'news' AND m.status = 'unsubscribed'"
                )
            )
        }
    engine.dispose()
    return rows, left


# --- the servers ----------------------------------------------------------------------------------


def serve_app(database: str, port: int, secret: str, token: str) -> None:
    """The bare app under uvicorn, in a spawned process: the secrets are passed in, since the
    child re-imports this module and would otherwise draw secrets of its own (every delivery
    refused 404, then throttled 429)."""
    import uvicorn

    from syncd import db
    from syncd.config import Config
    from syncd.web.app import create_app

    config = Config.model_validate(
        {
            "version": 1,
            "database": database,
            "providers": {
                "brevo": {
                    "api_key": "k",
                    "base_url": "http://127.0.0.1:9/v3",
                    "webhook_secret": secret,
                    "webhook_token": token,
                }
            },
            "lists": {"news": {"targets": [{"brevo": {"list_id": 12}}]}},
        }
    )
    engine = db.make_engine(database, pool_size=20, max_overflow=20)
    app = create_app(config, engine)
    # As `syncd run` serves it: syncd reads X-Forwarded-For itself (syncd.web.proxies).
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        proxy_headers=False,
    )


@contextmanager
def bare_app(url: str, port: int) -> Iterator[int]:
    proc = mp.get_context("spawn").Process(target=serve_app, args=(url, port, SECRET, TOKEN), daemon=True)
    proc.start()
    try:
        wait_until_up(f"http://127.0.0.1:{port}", proc.is_alive)
        yield proc.pid  # type: ignore[misc]
    finally:
        proc.terminate()
        proc.join(10)


@contextmanager
def daemon(url: str, port: int, folder: Path) -> Iterator[int]:
    """`syncd run` in a subprocess, stopped with SIGTERM (its exit status is checked)."""
    path = folder / "syncd.yaml"
    path.write_text(CONFIG)
    env = {
        **os.environ,
        "BENCH_DATABASE_URL": url,
        "BENCH_BREVO_KEY": "bench-key",
        "BENCH_WEBHOOK_SECRET": SECRET,
        "BENCH_WEBHOOK_TOKEN": TOKEN,
    }
    log = (folder / "daemon.log").open("w")
    cmd = [
        sys.executable,
        "-m",
        "syncd",
        "--config",
        str(path),
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", lambda: proc.poll() is None)
        yield proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        errors = [
            line
            for line in (folder / "daemon.log").read_text().splitlines()
            if "[error" in line or '"error"' in line
        ]
        if errors:
            print(f"daemon logged {len(errors)} errors, the last: {errors[-1][:300]}")
        if proc.returncode != 0:
            print(f"daemon exited with {proc.returncode}; log: {(folder / 'daemon.log').read_text()[-2000:]}")


def wait_until_up(base: str, alive) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not alive():
            sys.exit("server process died")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    sys.exit("server did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), to tell the server's cost from the client's."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the load -------------------------------------------------------------------------------------


async def load(
    url: str, bodies: list[bytes], concurrency: int, client: str = "raw"
) -> tuple[list[float], set[int], Counter[str], float]:
    """Sends every body once; returns the latencies, the indexes acknowledged 2xx, the other
    answers (status code or error name) and the elapsed time."""
    latencies: list[float] = []
    acked: set[int] = set()
    refused: Counter[str] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(bodies)):
        queue.put_nowait(i)

    def answered(i: int, status: int | str, t0: float) -> None:
        if isinstance(status, int) and 200 <= status < 300:
            acked.add(i)
        else:
            refused[str(status)] += 1
        latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    if client == "httpx":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:

            async def worker() -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    t0 = time.perf_counter()
                    try:
                        r = await http.post(url, content=bodies[i], headers=HEADERS)
                        answered(i, r.status_code, t0)
                    except httpx.HTTPError as exc:
                        answered(i, type(exc).__name__, t0)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
    else:
        target = httpx.URL(url)

        async def raw_worker() -> None:
            connection = None
            while not queue.empty():
                i = queue.get_nowait()
                t0 = time.perf_counter()
                try:
                    connection = connection or await RawConnection.open(target)
                    status, keep = await connection.post(bodies[i])
                    answered(i, status, t0)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    answered(i, type(exc).__name__, t0)
                    keep = False
                if not keep and connection is not None:
                    connection.close()
                    connection = None
            if connection is not None:
                connection.close()

        await asyncio.gather(*(raw_worker() for _ in range(concurrency)))
    return latencies, acked, refused, time.perf_counter() - started


class RawConnection:
    """A bare HTTP/1.1 keep-alive connection: the request written in one go, the answer read by its
    Content-Length. Several times cheaper per request than httpx, so that on a small machine the
    load generator leaves the CPU to the server it measures (``--client httpx`` for comparison)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes):
        self.reader, self.writer, self.head = reader, writer, head

    @classmethod
    async def open(cls, url: httpx.URL) -> RawConnection:
        reader, writer = await asyncio.open_connection(url.host, url.port)
        fields = {"Host": f"{url.host}:{url.port}", **HEADERS}
        head = f"POST {url.raw_path.decode()} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in fields.items()
        )
        return cls(reader, writer, head.encode())

    async def post(self, body: bytes) -> tuple[int, bool]:
        """The answer's status, and whether the connection may be used again."""
        self.writer.write(b"%sContent-Length: %d\r\n\r\n%s" % (self.head, len(body), body))
        status = int((await self.reader.readuntil(b"\r\n")).split(b" ", 2)[1])
        length, keep = 0, True
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                keep = False
        await self.reader.readexactly(length)
        return status, keep

    def close(self) -> None:
        self.writer.close()


def wait_applied(url: str, expected: int, timeout_s: float) -> float | None:
    """Seconds until no inbox row is left to apply and ``expected`` rows are done; None on time-out."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        rows, _ = outcome(url)
        if rows.get("new", 0) == 0 and rows.get("done", 0) >= expected:
            return time.monotonic() - started
        time.sleep(0.5)
    return None


def run_once(
    target: str, database: str | None, events: int, concurrency: int, apply_timeout: float, client: str
) -> None:
    with fresh_base(database) as url, tempfile.TemporaryDirectory() as tmp:
        if target == "daemon":
            # The warm-up's contacts too: an unsubscribe naming no contact waits for one (inbox
            # back-off) and would keep the inbox from ever being all applied.
            seed_members(url, events + WARM_UP)
        bodies = payloads(events)
        warm = payloads(WARM_UP, first=events)
        port = free_port()
        server = daemon(url, port, Path(tmp)) if target == "daemon" else bare_app(url, port)
        with server as pid:
            hook = f"http://127.0.0.1:{port}/hooks/brevo/{SECRET}"
            _, warm_acked, warm_refused, _ = asyncio.run(load(hook, warm, 8, client))
            if len(warm_acked) != len(warm):
                sys.exit(f"the server refused the warm-up deliveries: {dict(warm_refused)}")
            cpu_before = cpu_seconds(pid)
            latencies, acked, refused, elapsed = asyncio.run(load(hook, bodies, concurrency, client))
            server_cpu = cpu_seconds(pid) - cpu_before
            applied_after = (
                wait_applied(url, len(acked) + len(warm), apply_timeout) if target == "daemon" else None
            )
        rows, left = outcome(url)
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    ok = len(acked)
    print(f"--- {target} on {dialect}, {events} deliveries, concurrency {concurrency}, {client} client")
    print(f"answers      {ok} 2xx, {events - ok} not: {dict(refused) or 'none'}")
    print(f"throughput   {ok / elapsed:,.0f} events/s over {elapsed:.2f} s")
    print(
        f"latency      p50 {p(0.50):.1f} ms, p99 {p(0.99):.1f} ms, max {latencies[-1] * 1000:.1f} ms, "
        f"mean {statistics.fmean(latencies) * 1000:.1f} ms"
    )
    print(
        f"server CPU   {server_cpu / max(ok, 1) * 1e6:.0f} us per event "
        f"(= {max(ok, 1) / server_cpu:,.0f} events/s per core); load average {os.getloadavg()[0]:.1f}"
    )
    stored = sum(rows.values()) - len(warm)
    if target == "daemon":
        lost = len({email(i) for i in acked} - left)
        after = (
            f"{applied_after:.1f} s after the last answer" if applied_after is not None else "NOT all applied"
        )
        print(f"inbox        {rows}; applied {after}")
        print(f"lost         {lost} (acknowledged 2xx, unsubscribe not in the master base)")
    else:
        print(f"inbox rows   {stored}; lost (2xx without a row) = {max(0, ok - stored)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", choices=["daemon", "app"], default="daemon")
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--database", help="PostgreSQL URL (a schema of its own is used); default: SQLite")
    parser.add_argument(
        "--apply-timeout", type=float, default=600, help="seconds to wait for the inbox job [600]"
    )
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator: bare HTTP/1.1 keep-alive connections, or httpx (several times the CPU) [raw]",
    )
    args = parser.parse_args()
    for concurrency in args.concurrency:
        run_once(args.target, args.database, args.events, concurrency, args.apply_timeout, args.client)


if __name__ == "__main__":
    main()
