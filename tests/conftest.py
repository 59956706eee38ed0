"""Shared fixtures: a real master base (SQLite file, or PostgreSQL when SYNCD_TEST_DATABASE_URL is set).

On PostgreSQL every test session gets its own schema, so concurrent runs never collide.
The schema is built by the Alembic migrations, as in production.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from syncd import db


def _pg_engine(url: str, schema: str | None = None) -> Engine:
    kw = {"connect_args": {"options": f"-csearch_path={schema}"}} if schema else {}
    return db.make_engine(url, **kw)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A URL to a fresh, migrated master base for this test session."""
    url = os.environ.get("SYNCD_TEST_DATABASE_URL")
    if not url:
        path = tmp_path_factory.mktemp("db") / "syncd-test.db"
        engine = db.make_engine(f"sqlite:///{path}")
        db.upgrade(engine)
        engine.dispose()
        yield f"sqlite:///{path}"
        return
    schema = f"syncd_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = _pg_engine(url, schema)
    db.upgrade(engine)
    engine.dispose()
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def _session_engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(_session_engine: Engine) -> Iterator[Engine]:
    """The session's master base, emptied before each test."""
    with _session_engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())
    yield _session_engine
