"""Bulk writes and reads at the driver, for the importer's batches: SQLAlchemy's per-row parameter
processing and its expanding IN were most of the import's database time.

PostgreSQL is reached over a socket and plans each statement it is sent: there a batch's keys go
as one bound array (``= ANY(:keys)``, one plan whatever their number) instead of an ``IN`` list
of a thousand placeholders (planned afresh each time: 4-6x slower), and rows go by COPY. SQLite
runs in the process and keeps its ``IN`` lists and executemany.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Session

from syncd.log import get_logger

log = get_logger(__name__)


def copies(conn: sa.Connection) -> bool:
    """Whether ``conn`` writes rows by COPY and looks keys up by array (PostgreSQL through psycopg)."""
    return conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg"


def among(column: sa.ColumnElement[Any], name: str, dialect: str) -> sa.ColumnElement[bool]:
    """``column`` is one of the values bound as ``name`` (a list): ``= ANY(:name)`` with one array
    on PostgreSQL, an expanding ``IN`` elsewhere (``dialect``: the engine's dialect name)."""
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))
    return column.in_(sa.bindparam(name, expanding=True))


def insert_many(
    session: Session, table: sa.Table, rows: list[dict[str, Any]], shared: dict[str, Any] | None = None
) -> None:
    """One driver-level executemany of ``rows`` (same keys each), plus ``shared`` values for every
    row; on PostgreSQL one COPY."""
    conn = session.connection()
    sql, params = _driver_rows(conn, table, rows, shared or {})
    if copies(conn):
        _copy(conn, table.name, params)
        return
    conn.exec_driver_sql(sql, params)


def stage(
    session: Session, table: sa.Table, rows: list[dict[str, Any]], shared: dict[str, Any] | None = None
) -> tuple[str, list[str]]:
    """COPY ``rows`` into ``table``'s staging twin (PostgreSQL); returns its name and the columns written.

    The twin is a temporary table of the same columns, without constraints (a row to update
    carries its id, a row to insert none), made once per connection and emptied at each commit;
    a rolled-back transaction leaves nothing in it either. One batch per transaction uses it.
    """
    conn = session.connection()
    name = f"syncd_stage_{table.name}"
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ON COMMIT DELETE ROWS "
        f"AS SELECT * FROM {table.name} WITH NO DATA"
    )
    _, params = _driver_rows(conn, table, rows, shared or {})
    _copy(conn, name, params)
    return name, list(params[0])


def column_among(session: Session, table: str, columns: str, key: str, values: Iterable[str]) -> list[Any]:
    """``SELECT columns FROM table WHERE key IN (values)`` at the driver (``= ANY`` on PostgreSQL):
    plain strings and integers only.

    SQLAlchemy's expanding IN renders a bound name per value; for a thousand keys per batch that was a
    visible share of the import's time.
    """
    values = list(values)
    if not values:
        return []
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        sql, params = f"SELECT {columns} FROM {table} WHERE {key} = ANY(%s)", (values,)
    else:
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        sql, params = (
            f"SELECT {columns} FROM {table} WHERE {key} IN ({', '.join([mark] * len(values))})",
            tuple(values),
        )
    rows = conn.exec_driver_sql(sql, params).fetchall()
    return [r[0] for r in rows] if "," not in columns else [tuple(r) for r in rows]


def _driver_rows(
    conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], shared: dict[str, Any]
) -> tuple[str, list[dict[str, Any]]]:
    """The INSERT of ``rows`` with named parameters, and each row's values as the driver takes them.

    SQLAlchemy's per-row parameter processing was half of the import's database time: here only the
    columns that need it (JSON) are processed per row, the shared ones (timestamps) and defaults once.
    """
    dialect = conn.dialect
    # Named parameters on every driver, so that a row is a dict: sqlite3 takes :name as well as ?.
    compiler = type(dialect)(paramstyle="named") if dialect.positional else dialect
    names = [*rows[0], *shared]
    compiled = sa.insert(table).inline().values({n: sa.bindparam(n) for n in names}).compile(dialect=compiler)

    def processor(name: str) -> Any:
        if copies(conn) and isinstance(table.c[name].type, sa.JSON):
            # COPY takes JSON as its text: serialised here once per shape, as psycopg would per row.
            return getattr(dialect, "_json_serializer", None) or json.dumps
        return table.c[name].type.dialect_impl(dialect).bind_processor(dialect)

    constants = {}
    for name in compiled.params:
        if name in rows[0]:
            continue
        value = shared[name] if name in shared else _default(table.c[name])
        proc = processor(name)
        constants[name] = proc(value) if proc and value is not None else value
    procs = [(n, p, {}) for n in rows[0] if (p := processor(n)) is not None]
    params = []
    for row in rows:
        values = {**row, **constants}
        for name, proc, memo in procs:
            value = values[name]
            if value is None:
                continue
            # Tag lists and attribute dicts repeat from row to row: serialise each shape once.
            key = repr(value) if value.__class__ in (list, dict) else None
            if key is None:
                values[name] = proc(value)
            elif key in memo:
                values[name] = memo[key]
            else:
                values[name] = memo[key] = proc(value)
        params.append(values)
    return str(compiled), params


def _copy(conn: sa.Connection, table: str, params: list[dict[str, Any]]) -> None:
    """COPY: one stream per batch instead of one INSERT per row on the server."""
    columns = list(params[0])
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for values in params:
            copy.write_row([values[c] for c in columns])


def _default(column: sa.Column[Any]) -> Any:
    default = column.default
    if default is None or getattr(default, "is_sequence", False):
        return None
    # SQLAlchemy wraps a Python callable default so that it takes an execution context.
    return default.arg(None) if default.is_callable else default.arg


class Growth:
    """Refreshes the planner's statistics of the tables an import fills, once each has grown by a
    large factor (PostgreSQL).

    The planner sizes a table by its last ANALYZE. On a new base (autovacuum not run yet) it
    believes the contact table empty while an import fills it, and plans the batch's look-ups
    for an empty table: 666 rows/s at 100,000 rows against 9,400 rows/s at 40,000. Bulk loaders
    refresh the statistics themselves instead of waiting on autovacuum: here a table is analysed
    once the rows an import added since its last refresh reach both ``floor`` and the size the
    planner believed (the table doubled), so an import from empty analyses each table about
    log2(rows / floor) times.

    SQLite is left alone: its planner takes the email index for a batch's look-ups without any
    statistics, and nothing else the importer reads depends on them.
    """

    FLOOR = 10_000

    def __init__(self, engine: sa.Engine, tables: Sequence[str]):
        self.engine, self.floor = engine, self.FLOOR
        self.active = engine.dialect.name == "postgresql"
        self.believed = dict.fromkeys(tables, 0.0)
        self.added = dict.fromkeys(tables, 0)
        if self.active:
            self.believed.update(self._reltuples())

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
            conn.exec_driver_sql(f"ANALYZE {', '.join(grown)}")
        self.believed.update(self._reltuples())
        for table in grown:
            self.added[table] = 0
        log.info("import.statistics_refreshed", tables=grown)
        return grown

    def _reltuples(self) -> dict[str, float]:
        """The row count the planner believes of each table (never analysed: 0)."""
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT relname, reltuples FROM pg_class WHERE oid = ANY(%s::regclass[])",
                (list(self.believed),),
            ).fetchall()
        return {name: max(0.0, float(n)) for name, n in rows}
