"""Named locks: one holder at a time per base, and two bases in one PostgreSQL database apart."""

from __future__ import annotations

import os

import pytest

from syncd import db, locks


def test_a_held_lock_is_busy_for_another_holder_and_free_after(engine):
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        pytest.skip("an in-memory SQLite base has one process")
    other = db.make_engine(engine.url.render_as_string(hide_password=False))
    try:
        with locks.exclusive(engine, "sync:news"):
            with pytest.raises(locks.Busy):
                with locks.exclusive(other, "sync:news"):
                    pass
            with locks.exclusive(other, "sync:clients"):
                pass
        with locks.exclusive(other, "sync:news"):
            pass
    finally:
        other.dispose()


def test_bases_in_two_schemas_of_one_database_do_not_share_locks(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("schemas and advisory locks are PostgreSQL's")
    public = db.make_engine(os.environ["SYNCD_TEST_DATABASE_URL"])  # the database's public schema
    try:
        with locks.exclusive(engine, "sync:news"), locks.exclusive(public, "sync:news"):
            with public.connect() as conn:
                assert locks.schema_key(conn, "sync:news") == locks.lock_key("sync:news")
    finally:
        public.dispose()
