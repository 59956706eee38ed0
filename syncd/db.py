"""Engine and sessions for the master base: a SQLite file by default, PostgreSQL by URL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

DEFAULT_URL = "sqlite:///syncd.db"
MIGRATIONS = Path(__file__).with_name("migrations")


def email_hash(email: str) -> str:
    """Irreversible key of a normalised address (tombstones, flags on unknown remote members)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def erased_among(db: Session | sa.Connection, emails: Iterable[str]) -> set[str]:
    """The addresses among ``emails`` (normalised) that were erased at the contact's request.

    The one tombstone check of every path that creates a contact or gives one a new address
    (import, webhook events, provider pulls): an erased person never comes back (LESSONS 8).
    """
    emails = set(emails)
    if not emails:
        return set()
    conn = db if isinstance(db, sa.Connection) else db.connection()
    if len(emails) > 1 and conn.exec_driver_sql("SELECT 1 FROM tombstone LIMIT 1").first() is None:
        return set()  # hashing a whole batch costs more than asking whether anyone was ever erased
    by_hash = {email_hash(e): e for e in emails}
    # At the driver: SQLAlchemy's expanding IN renders one bound name per value, visible at import scale.
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f"SELECT email_hash FROM tombstone WHERE email_hash IN ({', '.join([mark] * len(by_hash))})"
    return {by_hash[h] for (h,) in conn.exec_driver_sql(sql, tuple(by_hash)).fetchall()}


def make_engine(url: str = DEFAULT_URL, **kw: Any) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30}, **kw)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, **kw)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (the web app) never wait for the sync's writer
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with the Alembic migrations (never ``create_all``)."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(None)).get_current_head()  # type: ignore[arg-type]
