"""Engine and sessions for the master base: a SQLite file by default, PostgreSQL by URL."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session

from syncd.log import get_logger

log = get_logger(__name__)

DEFAULT_URL = "sqlite:///syncd.db"
MIGRATIONS = Path(__file__).with_name("migrations")


def lost_a_race(exc: BaseException) -> bool:
    """Whether a transaction failed only because another ran beside it (lists synced at once,
    replicas): a row the other had just inserted under the same unique key, or PostgreSQL ending
    this one to break a deadlock between them (SQLSTATE 40P01). Nothing of the transaction was
    kept; run again, it sees the other's work."""
    if isinstance(exc, sa.exc.IntegrityError):
        return True
    return isinstance(exc, sa.exc.OperationalError) and getattr(exc.orig, "sqlstate", None) == "40P01"


def email_hash(email: str) -> str:
    """Irreversible key of a normalised address (tombstones, flags on unknown remote members).

    A lone surrogate (an address-shaped token of a webhook body can hold one) is hashed as it
    stands instead of failing; a valid address hashes as its UTF-8."""
    return hashlib.sha256(email.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()


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
    return {
        by_hash[h] for (h,) in conn.exec_driver_sql(*tombstone_query(conn.dialect, list(by_hash))).fetchall()
    }


def tombstone_query(dialect: sa.Dialect, hashes: list[str]) -> tuple[str, tuple[Any, ...]]:
    """The statement, at the driver, that returns which of ``hashes`` are tombstones.

    At the driver: SQLAlchemy's expanding IN renders one bound name per value, visible at import
    scale. PostgreSQL takes the hashes as one array: it plans an IN list afresh for each length."""
    if dialect.name == "postgresql":
        return "SELECT email_hash FROM tombstone WHERE email_hash = ANY(%s)", (hashes,)
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    return f"SELECT email_hash FROM tombstone WHERE email_hash IN ({', '.join([mark] * len(hashes))})", tuple(
        hashes
    )


@dataclass(frozen=True)
class Timeouts:
    """How long the master base may keep a caller waiting, in seconds (config ``database_timeouts``).

    Without them a network partition hangs every webhook for libpq's 130 s and keeps the pool
    exhausted long after the network heals.
    """

    connect: float = 5  # PostgreSQL: reach the server and log in; also how long sent data may
    # stay unacknowledged on an open connection (tcp_user_timeout), so a dead peer is noticed
    statement: float = 30  # PostgreSQL: statement_timeout; SQLite: wait for another writer's lock
    pool_checkout: float = 5  # wait for a free connection of the pool


def normalise_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` (as Heroku, Render or libpq write them) mean
    PostgreSQL through psycopg 3, the driver syncd ships with."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


class DatabaseURLError(ValueError):
    """The database URL names no database syncd can use; the message says how to write one."""


URL_FORMS = "sqlite:///path/to/syncd.db or postgresql+psycopg://user:password@host:5432/dbname"


def make_engine(url: str = DEFAULT_URL, *, timeouts: Timeouts | None = None, **kw: Any) -> Engine:
    url = normalise_url(url)
    try:
        return _engine(url, timeouts or Timeouts(), **kw)
    except sa.exc.ArgumentError as exc:  # NoSuchModuleError included: an unknown dialect
        raise DatabaseURLError(f"database URL {safe_url(url)}: {exc}; expected {URL_FORMS}") from None
    except ModuleNotFoundError as exc:
        hint = "pip install 'syncd[postgres]'" if "psycopg" in str(exc.name) else f"expected {URL_FORMS}"
        raise DatabaseURLError(f"database URL {safe_url(url)}: no driver ({exc.name}); {hint}") from None


def safe_url(url: str) -> str:
    """The URL as it may be shown: the password hidden."""
    try:
        return sa.engine.make_url(normalise_url(url)).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(unreadable)"


def sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite base (None for an in-memory one or another database)."""
    name = engine.url.database
    if engine.dialect.name != "sqlite" or name in (None, "", ":memory:") or name.startswith("file:"):
        return None
    return Path(name)


def holds_no_data(engine: Engine) -> bool:
    """True when no table but Alembic's own has a row: a base just created and never written."""
    tables = [t for t in sa.inspect(engine).get_table_names() if t != "alembic_version"]
    with engine.connect() as conn:
        return all(conn.exec_driver_sql(f'SELECT 1 FROM "{t}" LIMIT 1').first() is None for t in tables)


def remove_sqlite_file(engine: Engine) -> None:
    """Delete a SQLite base's file and its journal files (the caller checked it holds nothing)."""
    file = sqlite_file(engine)
    engine.dispose()
    if file is not None:
        for path in (file, *(file.with_name(file.name + s) for s in ("-wal", "-shm", "-journal"))):
            path.unlink(missing_ok=True)


# SQLAlchemy's pool: 5 connections kept, 10 more when busy. A list's sync holds up to three at once
# on PostgreSQL (the advisory locks of its claim and of the list, held for the run, and its
# session): each list synced beside the first adds three to the overflow.
POOL_SIZE, POOL_OVERFLOW = 5, 10
CONNECTIONS_PER_LIST_SYNC = 3


def pool_overflow(list_jobs: int) -> int:
    """The pool's overflow for a process that syncs ``list_jobs`` lists at once."""
    return POOL_OVERFLOW + CONNECTIONS_PER_LIST_SYNC * (max(1, list_jobs) - 1)


def _engine(url: str, t: Timeouts, *, list_jobs: int = 1, **kw: Any) -> Engine:
    in_memory = url.startswith("sqlite") and sa.engine.make_url(url).database in (None, "", ":memory:")
    if not in_memory:  # an in-memory SQLite base has one connection per thread, no pool to wait on
        kw.setdefault("pool_timeout", t.pool_checkout)
        kw.setdefault("pool_size", POOL_SIZE)
        kw.setdefault("max_overflow", pool_overflow(list_jobs))
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": t.statement}, **kw)
        sa.event.listen(
            engine, "connect", functools.partial(_sqlite_pragmas, busy_ms=int(t.statement * 1000))
        )
        return engine
    engine = sa.create_engine(url, pool_pre_ping=True, **kw)
    if engine.dialect.name == "postgresql":
        sa.event.listen(engine, "do_connect", functools.partial(_postgresql_limits, t))
    return engine


def _postgresql_limits(
    t: Timeouts, _dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]
) -> None:
    """Added to the connection's parameters; what the URL or ``connect_args`` say wins."""
    cparams.setdefault("connect_timeout", max(2, round(t.connect)))  # libpq's minimum is 2 s
    cparams.setdefault("tcp_user_timeout", int(t.connect * 1000))
    options = str(cparams.get("options") or "")
    if "statement_timeout" not in options:
        cparams["options"] = f"{options} -c statement_timeout={int(t.statement * 1000)}".strip()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, *, busy_ms: int) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (the web app) never wait for the sync's writer
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={busy_ms}")
    cur.close()
    # What PostgreSQL has built in and SQLite lacks, for the queries that need it (``sorted_concat``).
    dbapi_conn.create_function("md5", 1, _md5, deterministic=True)
    dbapi_conn.create_aggregate("syncd_sorted_concat", 1, _SortedConcat)


def _md5(text: str | None) -> str | None:
    return None if text is None else hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


class _SortedConcat:
    """SQLite's ``sorted_concat``: its ``group_concat`` takes no ORDER BY before SQLite 3.44."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def step(self, value: str | None) -> None:
        if value is not None:
            self.parts.append(value)

    def finalize(self) -> str | None:
        return ";".join(sorted(self.parts)) if self.parts else None


class sorted_concat(FunctionElement[str]):
    """An aggregate: the group's non-null texts, sorted, joined by ``;`` (NULL for none).

    Sorted, so that the same rows give the same text however the database reads them."""

    type = sa.String()
    inherit_cache = True


@compiles(sorted_concat, "postgresql")
def _sorted_concat_postgresql(element: sorted_concat, compiler: Any, **kw: Any) -> str:
    text = compiler.process(element.clauses, **kw)
    return f"string_agg({text}, ';' ORDER BY {text} COLLATE \"C\")"


@compiles(sorted_concat, "sqlite")
def _sorted_concat_sqlite(element: sorted_concat, compiler: Any, **kw: Any) -> str:
    return f"syncd_sorted_concat({compiler.process(element.clauses, **kw)})"


class utc_text(FunctionElement[str]):
    """A time as text, in UTC to the microsecond whatever the session's time zone or date style
    (NULL for NULL): one value, one text, for comparing times for equality in SQL."""

    type = sa.String()
    inherit_cache = True


@compiles(utc_text, "postgresql")
def _utc_text_postgresql(element: utc_text, compiler: Any, **kw: Any) -> str:
    when = compiler.process(element.clauses, **kw)
    return f"to_char(({when}) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"


@compiles(utc_text, "sqlite")
def _utc_text_sqlite(element: utc_text, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)  # stored as UTC text (``models.UTCDateTime``)


def without_jit(conn: sa.Connection) -> None:
    """Until its transaction ends, PostgreSQL runs this connection's queries uncompiled: a query
    whose estimated cost crosses ``jit_above_cost`` over a large base can spend longer compiling
    than running (an incremental plan's selection at 100,000 contacts: 1.6 s of 3.7 s)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL jit = off")


_SNAPSHOT_NOW = (
    "SELECT (SELECT system_identifier FROM pg_control_system())::text || '/' || pg_current_snapshot()::text"
)


def snapshot(engine: Engine) -> str | None:
    """PostgreSQL: the transactions a query starting now can see, and on which server: text
    ``<system identifier>/<xmin>:<xmax>:<xip,…>`` (``pg_current_snapshot()``). A later query tells
    whether a row's writer (its ``touched_xid``) was among them (``snapshot_here``). None on SQLite,
    and where the server refuses to tell (a managed server may keep ``pg_control_system()`` to its
    administrators): incremental plans then select by time, as on SQLite."""
    if engine.dialect.name != "postgresql":
        return None
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(_SNAPSHOT_NOW).scalar_one()
    except sa.exc.ProgrammingError as exc:  # permission denied, no such function
        log.warning("db.snapshot_unavailable", error=str(exc.orig).splitlines()[0])
        return None


def snapshot_here(engine: Engine, stored: str | None) -> str | None:
    """A ``snapshot`` taken earlier, if transaction ids since then can be compared with it: taken
    by this server (a base restored from a dump into another cluster counts transactions afresh:
    its system identifier differs) and not ahead of its transaction counter. None otherwise: the
    caller falls back to times."""
    if stored is None or engine.dialect.name != "postgresql" or "/" not in stored:
        return None
    server, taken = stored.split("/", 1)
    current = snapshot(engine)
    if current is None:
        return None
    here, now = current.split("/", 1)
    if server != here or int(taken.split(":")[1]) > int(now.split(":")[1]):
        return None
    return stored


def pg_snapshot(stored: str) -> str:
    """The ``pg_snapshot`` text of a ``snapshot`` (``xmin:xmax:xip,…``)."""
    return stored.split("/", 1)[1]


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


class Growth:
    """Refreshes the planner's statistics of the tables a bulk write fills (an import, a sync's
    target states), once each has grown by a large factor (PostgreSQL).

    The planner sizes a table by its last ANALYZE. On a new base (autovacuum not run yet) it
    believes the contact table empty while an import fills it, and plans the batch's look-ups
    for an empty table: 666 rows/s at 100,000 rows against 9,400 rows/s at 40,000. Bulk loaders
    refresh the statistics themselves instead of waiting on autovacuum: here a table is analysed
    once the rows an import added since its last refresh reach both ``floor`` and the size the
    planner believed (the table doubled), so an import from empty analyses each table about
    log2(rows / floor) times.

    Only the columns the import looks its rows up by are analysed (``tables``: table → columns):
    the row count, what the planner was missing, is refreshed whatever the columns, at a fraction
    of the cost of every column's statistics (a quarter of an import's server time at 100,000
    rows). The other columns keep theirs until autovacuum analyses the whole table, which such an
    ANALYZE does not postpone.

    SQLite is left alone: its planner takes the email index for a batch's look-ups without any
    statistics, and nothing else the importer reads depends on them.
    """

    FLOOR = 10_000

    def __init__(
        self,
        engine: sa.Engine,
        tables: Mapping[str, Sequence[str]],
        sizes: Callable[[], Mapping[str, float]] | None = None,
        floor: int | None = None,
    ):
        """``sizes``: the part of each table the writer fills, when it is not the whole table (a
        sync's target states: the planner's estimate for a new target is near zero however large
        the table). Default: the rows the planner believes the table holds."""
        self.engine, self.columns = engine, dict(tables)
        self.floor = self.FLOOR if floor is None else floor
        self.active = engine.dialect.name == "postgresql"
        self.sizes = sizes or self._reltuples
        self.believed = dict.fromkeys(tables, 0.0)
        self.added = dict.fromkeys(tables, 0)
        if self.active:
            self.believed.update(self.sizes())

    def add(self, counts: dict[str, int]) -> None:
        for table, n in counts.items():
            if table in self.added:
                self.added[table] += n

    def refresh(self) -> list[str]:
        """ANALYZE the tables that grew enough since the planner last sized them; returns them."""
        if not self.active:
            return []
        grown = [t for t, n in self.added.items() if n >= max(self.floor, self.believed[t])]
        if not grown:
            return []
        with self.engine.begin() as conn:
            targets = [f"{t} ({', '.join(self.columns[t])})" for t in grown]
            conn.exec_driver_sql(f"ANALYZE {', '.join(targets)}")
        self.believed.update(self.sizes())
        for table in grown:
            self.added[table] = 0
        log.info("db.statistics_refreshed", tables=grown)
        return grown

    def _reltuples(self) -> dict[str, float]:
        """The row count the planner believes of each table (never analysed: 0)."""
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT relname, reltuples FROM pg_class WHERE oid = ANY(%s::regclass[])",
                (list(self.believed),),
            ).fetchall()
        return {name: max(0.0, float(n)) for name, n in rows}
