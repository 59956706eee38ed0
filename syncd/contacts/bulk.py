"""Bulk writes and reads at the driver, for the importer's batches: SQLAlchemy's per-row parameter
processing and its expanding IN were most of the import's database time.

PostgreSQL is reached over a socket and plans each statement it is sent: there a batch's keys go
as one bound array (``= ANY(:keys)``, one plan whatever their number) instead of an ``IN`` list
of a thousand placeholders (planned afresh each time: 4-6x slower), and rows go by COPY. SQLite
runs in the process and keeps its executemany; its keys go as one JSON array
(``IN (SELECT value FROM json_each(:keys))``): one statement, compiled once and kept in the
driver's cache, where an ``IN`` list was rendered with a bound name per key and compiled again
for each batch (a third of the look-ups' time in a profile of a 300,000-row import).
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Iterable, Sequence
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
    """``column`` is one of the values bound as ``name`` (a list of strings or integers): ``= ANY(:name)``
    with one array on PostgreSQL, ``IN`` the elements of one JSON array on SQLite, an expanding
    ``IN`` elsewhere (``dialect``: the engine's dialect name)."""
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))
    if dialect == "sqlite":
        keys = sa.func.json_each(sa.bindparam(name, type_=sa.JSON)).table_valued("value")
        return column.in_(sa.select(keys.c.value).scalar_subquery())
    return column.in_(sa.bindparam(name, expanding=True))


def insert_many(
    session: Session, table: sa.Table, rows: list[dict[str, Any]], shared: dict[str, Any] | None = None
) -> None:
    """One driver-level executemany of ``rows`` (same keys each, as tuples), plus ``shared`` values
    for every row; on PostgreSQL one COPY."""
    conn = session.connection()
    if copies(conn):
        _copy(conn, table.name, *_copy_rows(conn, table, rows, shared or {}))
        return
    columns, values = _rows(conn, table, rows, shared or {}, text=False)
    quote, mark = conn.dialect.identifier_preparer.quote, "?" if conn.dialect.paramstyle == "qmark" else "%s"
    marks = ", ".join([mark] * len(columns))
    sql = f"INSERT INTO {table.name} ({', '.join(map(quote, columns))}) VALUES ({marks})"
    conn.exec_driver_sql(sql, list(values))


def new_ids(session: Session, table: sa.Table, n: int) -> list[int]:
    """``n`` fresh ids from the sequence of ``table``'s ``id`` (PostgreSQL), in one round trip: rows
    given their ids before they are written go by COPY, with nothing to read back."""
    # The sequence is looked up once (MATERIALIZED): per row, pg_get_serial_sequence cost 10x nextval.
    sql = (
        f"WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence('{table.name}', 'id')::regclass AS seq) "
        "SELECT nextval(s.seq) FROM s, generate_series(1, %s)"
    )
    return [r[0] for r in session.connection().exec_driver_sql(sql, (n,)).fetchall()]


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
    columns, values = _copy_rows(conn, table, rows, shared or {})
    _copy(conn, name, columns, values)
    return name, columns


def column_among(session: Session, table: str, columns: str, key: str, values: Iterable[str]) -> list[Any]:
    """``SELECT columns FROM table WHERE key IN (values)`` at the driver (``= ANY`` on PostgreSQL,
    the elements of one JSON array on SQLite): plain strings and integers only.

    SQLAlchemy's expanding IN renders a bound name per value; for a thousand keys per batch that was a
    visible share of the import's time.
    """
    values = list(values)
    if not values:
        return []
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        sql, params = f"SELECT {columns} FROM {table} WHERE {key} = ANY(%s)", (values,)
    elif conn.dialect.name == "sqlite":
        sql = f"SELECT {columns} FROM {table} WHERE {key} IN (SELECT value FROM json_each(?))"
        params = (json.dumps(values),)
    else:
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        sql, params = (
            f"SELECT {columns} FROM {table} WHERE {key} IN ({', '.join([mark] * len(values))})",
            tuple(values),
        )
    rows = conn.exec_driver_sql(sql, params).fetchall()
    return [r[0] for r in rows] if "," not in columns else [tuple(r) for r in rows]


def _shape(
    conn: sa.Connection, table: sa.Table, given: list[str], shared: dict[str, Any]
) -> tuple[dict[str, Any], Callable[[str], Any]]:
    """For an INSERT of rows holding the columns ``given``: the values of the other columns it sets
    (``shared``, else the column's default), as the driver takes them; and each column's value
    processor (None: the value as it is)."""
    dialect = conn.dialect

    def processor(name: str) -> Any:
        if copies(conn) and isinstance(table.c[name].type, sa.JSON):
            # COPY takes JSON as its text: serialised here once per shape, as psycopg would per row.
            return getattr(dialect, "_json_serializer", None) or json.dumps
        return table.c[name].type.dialect_impl(dialect).bind_processor(dialect)

    constants = {}
    for name in _inserted(dialect, table, (*given, *shared)):
        if name in given:
            continue
        value = shared[name] if name in shared else _default(table.c[name])
        proc = processor(name)
        constants[name] = proc(value) if proc and value is not None else value
    return constants, processor


@functools.lru_cache(maxsize=64)
def _inserted(dialect: sa.Dialect, table: sa.Table, names: tuple[str, ...]) -> tuple[str, ...]:
    """The columns an INSERT of ``names`` sets: those, and those with a default (compiled once)."""
    # Named parameters on every driver: the compiled statement's parameters are the column names.
    compiler = type(dialect)(paramstyle="named") if dialect.positional else dialect
    compiled = sa.insert(table).inline().values({n: sa.bindparam(n) for n in names}).compile(dialect=compiler)
    return tuple(compiled.params)


def _memo(proc: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``proc`` of a value, once per shape: tag lists and attribute dicts repeat from row to row."""
    memo: dict[str, Any] = {}

    def process(value: Any) -> Any:
        if value is None:
            return None
        if value.__class__ not in (list, dict):
            return proc(value)
        key = repr(value)
        if key not in memo:
            memo[key] = proc(value)
        return memo[key]

    return process


def _rows(
    conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], shared: dict[str, Any], *, text: bool
) -> tuple[list[str], Iterable[tuple[Any, ...]]]:
    """The columns and, lazily, each row's values in their order as the driver takes them: the
    columns of ``rows[0]`` (every row has them), then those ``shared`` or defaulted, the same in
    every row and processed once (``text``: dumped to COPY's text once, too).

    SQLAlchemy's per-row parameter processing was half of the import's database time: here only the
    columns that need it (JSON) are processed per row, and rows are tuples, not dicts."""
    given = list(rows[0])
    constants, processor = _shape(conn, table, given, shared)
    columns = [*given, *constants]
    pick = operator.itemgetter(*given)
    fixed = tuple(_as_text(conn, v) for v in constants.values()) if text else tuple(constants.values())
    procs = [(i, _memo(p)) for i, n in enumerate(given) if (p := processor(n)) is not None]
    if len(given) == 1:
        return columns, ((pick(row), *fixed) for row in rows)
    if not procs:
        return columns, (pick(row) + fixed for row in rows)

    def values(row: dict[str, Any]) -> tuple[Any, ...]:
        out = list(pick(row))
        for i, proc in procs:
            out[i] = proc(out[i])
        return (*out, *fixed)

    return columns, map(values, rows)


def _copy_rows(
    conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], shared: dict[str, Any]
) -> tuple[list[str], Iterable[tuple[Any, ...]]]:
    """``_rows`` for COPY."""
    return _rows(conn, table, rows, shared, text=True)


def _as_text(conn: sa.Connection, value: Any) -> Any:
    """``value`` as COPY's text format has it, by the driver's own adapter: a value repeated in every
    row (the batch's timestamps above all) is dumped once, not once per row."""
    if value is None or value.__class__ is str:
        return value
    from psycopg.adapt import PyFormat, Transformer  # PostgreSQL's driver: not installed with SQLite alone

    dumper = Transformer(conn.connection.driver_connection).get_dumper(value, PyFormat.TEXT)
    return bytes(dumper.dump(value)).decode()


def _copy(conn: sa.Connection, table: str, columns: list[str], rows: Iterable[Sequence[Any]]) -> None:
    """COPY: one stream per batch instead of one INSERT per row on the server."""
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        write = copy.write_row
        for values in rows:
            write(values)


def _default(column: sa.Column[Any]) -> Any:
    default = column.default
    if default is None or getattr(default, "is_sequence", False):
        return None
    # SQLAlchemy wraps a Python callable default so that it takes an execution context.
    return default.arg(None) if default.is_callable else default.arg
