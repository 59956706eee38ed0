"""Named locks that keep two runs of the same job apart, across processes.

PostgreSQL: a session advisory lock (it dies with the session, so a killed run never leaves a
stale lock). Advisory locks are per database, not per schema: a base in another schema than
``public`` (two deployments, or two test sessions, in one database) locks under its schema's name.
SQLite: an exclusive file lock beside the database file.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Engine


class Busy(Exception):
    """Another run holds the lock."""


def lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def schema_key(conn: sa.Connection, name: str, public: int | None = None) -> int:
    """The advisory lock key of ``name`` for the base this connection uses. In ``public`` it is
    ``public`` (if given) or ``lock_key(name)``, as before schemas counted, so that replicas of
    an older release and of this one agree on it during a rolling upgrade."""
    schema = conn.execute(sa.text("SELECT current_schema()")).scalar()
    if schema in (None, "public"):
        return lock_key(name) if public is None else public
    return lock_key(f"{schema}:{name}")


@contextmanager
def exclusive(engine: Engine, name: str) -> Iterator[None]:
    """Hold the lock ``name`` for the block, or raise Busy at once."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            key = schema_key(conn, name)
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
            if not got:
                raise Busy(name)
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    database = engine.url.database or ""
    if not database or database == ":memory:":
        yield
        return
    safe = hashlib.sha256(name.encode()).hexdigest()[:16]
    with open(f"{database}.{safe}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise Busy(name) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
