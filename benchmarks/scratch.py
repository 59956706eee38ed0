"""The database a benchmark run works in (shared by the benchmarks)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from syncd import db


@contextmanager
def bench_engine(database: str | None, tmp: Path, prefix: str) -> Iterator[Engine]:
    """A migrated engine for one run: on PostgreSQL (``database``) a throwaway schema, dropped at
    the end; otherwise a fresh SQLite file in ``tmp``."""
    if not database:
        engine = db.make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            db.upgrade(engine)
            yield engine
        finally:
            engine.dispose()
        return
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = db.make_engine(database)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = db.make_engine(database, connect_args={"options": f"-csearch_path={schema}"})
    try:
        db.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
