"""Import benchmark: a generated 1,000,000-row CSV into a fresh master base, end to end.

    python benchmarks/import_bench.py                      # SQLite file in a temp dir
    python benchmarks/import_bench.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test
    python benchmarks/import_bench.py --rows 100000        # a quicker run

On PostgreSQL the run uses a throwaway schema, dropped at the end, and also reports the CPU time of
the server processes that served the import (when the server runs on this machine): with the
client's, the work an import costs whatever else the machine is doing, where the end-to-end rate
follows the machine's load. Targets: >= 25,000 rows/s and a peak RSS <= 500 MB. ~10 % of the rows
repeat an earlier address (other case), ~3 % are invalid.

It also reports where the import's time goes (the ``steps`` and ``database and bookkeeping``
lines). The importer runs in two threads: the read-ahead thread reads and qualifies the next
batches (parsing, validation: syncd's CPU) and looks their contacts up in the base; the writer
writes each batch (the database and the bookkeeping around it: matching, merges, provenance,
conflicts, list joins, the statistics refresh). Each step's wall time and the CPU time of the
thread running it are summed. "database and bookkeeping" is given two ways: the writer's busy time
(``_commit_batch`` and ``Growth.refresh``) over the import's wall time, the rest being the writer
waiting for qualified batches (on a loaded machine this counts the time the thread waits for the
interpreter lock or a core); and, steadier under load, the CPU time of the writer, of the look-ups
and of the server (PostgreSQL) over all the CPU time, client and server: everything but reading
and qualifying the rows. Target: <= 40 % on both databases.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from scratch import bench_engine
from stdnum import luhn

from syncd import db, log
from syncd.contacts import importer
from syncd.contacts.importer import Options, import_file
from syncd.contacts.qualify import Rules

FIRST = ["marie", "JEAN", "Éloïse", "jean-françois", "Luc", "Camille", "Hugo", "Léa", "Chloé", "Louis"]
LAST = ["Dupont", "MARTIN", "de la tour", "Lefèvre", "O'BRIEN", "Moreau", "Girard", "Roux", "Bonnet", "Petit"]
CITIES = [
    ("75011", "Paris"),
    ("69002", "Lyon"),
    ("33000", "Bordeaux"),
    ("59000", "Lille"),
    ("44000", "Nantes"),
]
COMPANIES = 5000
DOMAINS = [f"exemple{i}.fr" for i in range(2000)] + ["gmail.com", "orange.fr", "free.fr", "wanadoo.fr"]


def siret_of(company: int) -> str:
    """A valid SIRET per company (Luhn), written with spaces one time in two; a company in five has none."""
    if company % 5 == 4:
        return ""
    head = f"{company:08d}"
    siren = next(head + d for d in "0123456789" if luhn.is_valid(head + d))
    siret = next(siren + "0001" + d for d in "0123456789" if luhn.is_valid(siren + "0001" + d))
    return siret if company % 2 else f"{siret[:3]} {siret[3:6]} {siret[6:9]} {siret[9:]}"


def generate(path: Path, rows: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    sirets = [siret_of(c) for c in range(COMPANIES)]
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        f.write("Civilité;Prénom;Nom;E-mail;Téléphone;Société;SIRET;Code postal;Ville;Pays;type;tags\n")
        for i in range(rows):
            r = rnd.random()
            n = rnd.randrange(i) if r < 0.10 and i else i
            email = f"user{n}.{LAST[n % 10][:2].lower()}@{DOMAINS[n % len(DOMAINS)]}"
            if r < 0.10:
                email = email.upper()
            elif r < 0.13:
                email = email.replace("@", "@@") if r < 0.115 else email.split("@")[0]
            phone = f"06 {n % 100:02d} {n // 100 % 100:02d} {n // 10000 % 100:02d} {n % 97:02d}"
            if n % 3 == 1:
                phone = "+33 (0)" + phone[1:]
            cp, city = CITIES[n % 5]
            kind = ("client", "prospect", "vendor")[n % 3]
            f.write(
                f"M.;{FIRST[n % 10]};{LAST[n // 10 % 10]};{email};{phone};Société {n % COMPANIES};"
                f"{sirets[n % COMPANIES]};{cp};{city};France;{kind};salon,{kind}\n"
            )


def peak_rss_mb() -> float:
    """The larger of this process's and its worker's peak (ru_maxrss is in KiB on Linux)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def backend_pids(engine: sa.Engine) -> set[int]:
    """The server processes of the engine's connections, recorded as they are opened (PostgreSQL)."""
    pids: set[int] = set()
    if engine.dialect.name == "postgresql":

        def record(dbapi_conn: object, _record: object) -> None:
            with dbapi_conn.cursor() as cur:  # type: ignore[attr-defined]
                cur.execute("SELECT pg_backend_pid()")
                pids.add(cur.fetchone()[0])

        sa.event.listen(engine, "connect", record)
    return pids


def server_cpu_seconds(pids: set[int]) -> float | None:
    """User + system CPU time of these server processes, from /proc; None if one cannot be read
    (a server on another machine)."""
    total = 0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    except (OSError, IndexError, ValueError):
        return None
    return total / os.sysconf("SC_CLK_TCK")


class Split:
    """Wall and CPU time (of the thread running it) spent in the importer's steps, summed per step."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def timed(self, name: str, fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - t0
                self.cpu[name] = self.cpu.get(name, 0.0) + time.thread_time() - c0

        return run

    def install(self) -> None:
        """Times the writer's steps and the read-ahead's (the importer looks them up as module globals)."""
        importer._commit_batch = self.timed("write", importer._commit_batch)
        importer.qualify_batch = self.timed("qualify", importer.qualify_batch)
        importer.load_known = self.timed("look-ups ahead", importer.load_known)
        db.Growth.refresh = self.timed("statistics", db.Growth.refresh)

    def report(self, elapsed: float, cpu: float, server_cpu: float | None) -> list[str]:
        """The writer's busy share of the wall time, and the database's and bookkeeping's share of the
        CPU time (client and server): everything but reading and qualifying the rows."""
        wall, used = self.wall, self.cpu
        writer = wall.get("write", 0.0) + wall.get("statistics", 0.0)
        steps = ", ".join(f"{k} {wall[k]:.1f} s ({used[k]:.1f} s CPU)" for k in wall)
        database = sum(used.get(k, 0.0) for k in ("write", "statistics", "look-ups ahead"))
        database += server_cpu or 0.0
        both = cpu + (server_cpu or 0.0)
        return [
            f"steps: {steps}",
            f"database and bookkeeping: writer busy {writer:.1f} s = {writer / elapsed:.0%} of the wall "
            "time; "
            f"{database:.1f} s = {database / both:.0%} of the CPU time (client + server); "
            f"reading and qualifying {both - database:.1f} s CPU",
        ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database", help="PostgreSQL URL (default: a fresh SQLite file)")
    parser.add_argument("--batch-size", type=int, help="rows per transaction (default: the importer's)")
    args = parser.parse_args()
    log.configure("warning")
    split = Split()
    split.install()

    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        csv_path = Path(tmp) / "contacts.csv"
        t0 = time.perf_counter()
        generate(csv_path, args.rows)
        print(
            f"generated {args.rows:,} rows ({csv_path.stat().st_size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        with bench_engine(args.database, Path(tmp), "bench") as engine:
            engine.dispose()  # the migrations' connections are not the import's
            pids = backend_pids(engine)
            rss_before = peak_rss_mb()
            options = Options(channel="bench", rules=Rules(), batch_size=args.batch_size)
            cpu0 = _cpu_seconds()
            t0 = time.perf_counter()
            summary = import_file(engine, csv_path, options)
            elapsed = time.perf_counter() - t0
            cpu = _cpu_seconds() - cpu0
            server_cpu = server_cpu_seconds(pids) if pids else None
            with engine.connect() as conn:
                contacts = conn.execute(sa.text("SELECT count(*) FROM contact")).scalar_one()
    print(f"database: {engine.dialect.name}")
    print(f"counts: {summary.counts()}")
    print(f"contacts in the base: {contacts:,}")
    print(f"import: {elapsed:.1f} s, {args.rows / elapsed:,.0f} rows/s end to end")
    print(f"CPU time: {cpu:.1f} s, {args.rows / cpu:,.0f} rows per CPU-second")
    if server_cpu is not None:
        both = cpu + server_cpu
        print(
            f"server CPU time: {server_cpu:.1f} s ({len(pids)} connection(s)); client + server "
            f"{both:.1f} s, {args.rows / both:,.0f} rows per CPU-second"
        )
    for line in split.report(elapsed, cpu, server_cpu):
        print(line)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"peak RSS: {peak_rss_mb():.0f} MB (before the import: {rss_before:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
