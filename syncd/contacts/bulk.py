"""Bulk writes and reads at the driver, for the importer's batches: SQLAlchemy's per-row parameter
processing and its expanding IN were most of the import's database time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session


def insert_many(
    session: Session, table: sa.Table, rows: list[dict[str, Any]], shared: dict[str, Any] | None = None
) -> None:
    """One driver-level executemany of ``rows`` (same keys each), plus ``shared`` values for every row.

    SQLAlchemy's per-row parameter processing was half of the import's database time: here only the
    columns that need it (JSON) are processed per row, the shared ones (timestamps) and defaults once.
    """
    conn = session.connection()
    dialect = conn.dialect
    shared = shared or {}
    # Named parameters on every driver, so that a row is a dict: sqlite3 takes :name as well as ?.
    compiler = type(dialect)(paramstyle="named") if dialect.positional else dialect
    names = [*rows[0], *shared]
    compiled = sa.insert(table).inline().values({n: sa.bindparam(n) for n in names}).compile(dialect=compiler)

    def processor(name: str) -> Any:
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
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        # COPY: one stream per batch instead of one INSERT per row on the server.
        columns = list(params[0])
        cursor = conn.connection.driver_connection.cursor()
        copy_sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
        with cursor.copy(copy_sql) as copy:
            for values in params:
                copy.write_row([values[c] for c in columns])
        return
    conn.exec_driver_sql(str(compiled), params)


def column_among(session: Session, table: str, columns: str, key: str, values: Iterable[str]) -> list[Any]:
    """``SELECT columns FROM table WHERE key IN (values)`` at the driver: plain strings and integers only.

    SQLAlchemy's expanding IN renders a bound name per value; for a thousand keys per batch that was a
    visible share of the import's time.
    """
    values = list(values)
    if not values:
        return []
    conn = session.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f"SELECT {columns} FROM {table} WHERE {key} IN ({', '.join([mark] * len(values))})"
    rows = conn.exec_driver_sql(sql, tuple(values)).fetchall()
    return [r[0] for r in rows] if "," not in columns else [tuple(r) for r in rows]


def _default(column: sa.Column[Any]) -> Any:
    default = column.default
    if default is None or getattr(default, "is_sequence", False):
        return None
    # SQLAlchemy wraps a Python callable default so that it takes an execution context.
    return default.arg(None) if default.is_callable else default.arg
