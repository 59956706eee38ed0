"""Webhook deliveries into the inbox, with group commit (DESIGN §4 rule 5: committed before the 2xx).

The requests waiting at one moment are written by a writer thread in one multi-row
``INSERT … ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key``, and each is answered once
that statement has committed, with its own outcome (``stored``, ``ignored``, ``duplicate``) or the
error that kept it from being stored. Each writer thread keeps one connection, in autocommit, while
deliveries keep coming: a batch costs two round trips (the tombstone check, the insert, which
commits as it returns), with no pool checkout, ping, BEGIN or COMMIT of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from connectors.contract import ProviderEvent
from connectors.text import clean_text
from syncd.db import email_hash, tombstone_query
from syncd.inbox_purge import intake_columns_of, named_in
from syncd.models import InboxEvent, utcnow

# The master base cannot be reached, answers too slowly, or every pooled connection is busy
# (the same list as syncd.web.app's 503 handler).
DATABASE_UNAVAILABLE = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
    sa.exc.DisconnectionError,
)
Outcome = str | BaseException


class InboxWriter:
    """Stores deliveries with group commit; see the module's docstring.

    A batch that fails for another reason than an unreachable base is retried one delivery at a
    time, so that one bad row never costs the others their answer; an unreachable base answers
    every delivery of the batch with its error (503), none of them 2xx. SQLite has one writer
    thread (its writes are serialised anyway, and queueing here beats sleeping in its busy
    handler); PostgreSQL has two, so that one batch is built while the other waits for its commit.
    Threads stop when idle, giving their connection back to the pool, and start again with the
    next delivery.
    """

    MAX_BATCH = 64  # deliveries a statement: bounds its time, hence the wait of the ones behind
    IDLE_S = 1.0  # a writer thread with nothing to do for this long stops

    def __init__(self, engine: Engine, threads: int | None = None):
        self.engine = engine
        self._table: sa.Table = InboxEvent.__table__  # type: ignore[attr-defined]
        self._threads = threads or (1 if engine.dialect.name == "sqlite" else 2)
        self._statements: dict[int, str] = {}
        # Each column's conversion to the driver's value (UTC datetimes, booleans on SQLite).
        self._processors = [(c, self._table.c[c].type.bind_processor(engine.dialect)) for c in INTAKE_COLUMNS]
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._running = 0
        self._lock = threading.Lock()

    async def store(
        self,
        provider: str,
        body: bytes,
        content_type: str,
        events: Sequence[ProviderEvent],
        payload: str | None = None,
    ) -> str:
        """``stored``, ``ignored`` (kept, nothing to apply) or ``duplicate``, once committed.
        Raises SQLAlchemyError.

        ``payload``: the body as storable text (the connector's ``storable_body``)."""
        loop = asyncio.get_running_loop()
        pending = _Pending(self.row(provider, body, content_type, events, payload), events, loop)
        self._queue.put(pending)
        self._ensure_writer()
        return await pending.future

    def row(
        self,
        provider: str,
        body: bytes,
        content_type: str,
        events: Sequence[ProviderEvent],
        payload: str | None,
    ) -> dict[str, Any]:
        ignored = not events or all(e.own_write for e in events)
        at = utcnow()
        return {
            "provider": provider,
            "dedupe_key": dedupe_key(provider, body, events),
            "content_type": clean_text(content_type)[:100],
            "payload": body.decode("utf-8") if payload is None else payload,
            "received_at": at,
            "status": "ignored" if ignored else "new",
            "attempts": 0,
            "processed_at": at if ignored else None,
            "purged_at": None,
            "names_erased": False,
        }

    def connect(self) -> sa.Connection:
        """A connection in autocommit: each statement is its own transaction, committed before it
        returns."""
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    # --- the writer threads ----------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        with self._lock:
            if self._running < self._threads:
                self._running += 1
                threading.Thread(target=self._write_loop, name="inbox-writer", daemon=True).start()

    def _write_loop(self) -> None:
        conn: sa.Connection | None = None
        try:
            while (batch := self._next_batch()) is not None:
                try:
                    conn = conn or self.connect()
                    outcomes = self.write(conn, batch)
                except DATABASE_UNAVAILABLE as exc:  # no connection: nothing was stored
                    outcomes = [exc] * len(batch)
                except BaseException as exc:  # the thread is going down: no request may wait forever
                    settle(batch, [exc] * len(batch))
                    with self._lock:
                        self._running -= 1
                    raise
                if conn is not None and any(isinstance(o, BaseException) for o in outcomes):
                    conn.close()  # it may be broken: the next batch checks a fresh one out
                    conn = None
                settle(batch, outcomes)
        finally:
            if conn is not None:
                conn.close()

    def _next_batch(self) -> list[_Pending] | None:
        """The deliveries waiting now (at most MAX_BATCH); None once idle for IDLE_S, when the
        thread stops."""
        while True:
            try:
                batch = [self._queue.get(timeout=self.IDLE_S)]
                break
            except queue.Empty:
                with self._lock:
                    # A delivery queued after this check finds ``_running`` lowered and starts a thread.
                    if self._queue.empty():
                        self._running -= 1
                        return None
        while len(batch) < self.MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def write(self, conn: sa.Connection, batch: list[_Pending]) -> list[Outcome]:
        """Each delivery's outcome, or the exception that kept it from being stored."""
        try:
            return self._commit(conn, batch)
        except DATABASE_UNAVAILABLE as exc:
            return [exc] * len(batch)  # nothing was stored; every request answers 503
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
        outcomes: list[Outcome] = []
        for pending in batch:
            try:
                outcomes.extend(self._commit(conn, [pending]))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def _commit(self, conn: sa.Connection, batch: list[_Pending]) -> list[str]:
        """One insert, committed when it returns; the outcomes in the batch's order.

        A key twice in the batch is inserted once, for its first delivery. Rows go in in
        dedupe-key order, so that two PostgreSQL writers holding the same deliveries wait for each
        other, never in a cycle (a deadlock would cost both batches a 503)."""
        first: dict[str, int] = {}
        for i, pending in enumerate(batch):
            first.setdefault(pending.row["dedupe_key"], i)
        named = {i: named_in(batch[i].events, batch[i].row["payload"]) for i in first.values()}
        # One tombstone query for the batch: a body naming an erased address is not kept raw (see
        # syncd.inbox_purge). A batch is small: its addresses are hashed without asking first
        # whether anyone was ever erased (erased_among's probe), which would cost a round trip.
        erased = self._erased(conn, set().union(*named.values()))
        order = sorted(first.values(), key=lambda i: batch[i].row["dedupe_key"])
        rows = {i: _stored_row(batch[i], erased & named[i]) for i in order}
        inserted = self._insert(conn, list(rows.values()))
        return [
            _outcome(rows[i]) if i in rows and rows[i]["dedupe_key"] in inserted else "duplicate"
            for i in range(len(batch))
        ]  # committed: only now may any of them be acknowledged

    def _erased(self, conn: sa.Connection, emails: set[str]) -> set[str]:
        if not emails:
            return set()
        by_hash = {email_hash(e): e for e in emails}
        return {by_hash[h] for (h,) in _at_driver(conn, *tombstone_query(conn.dialect, list(by_hash)))}

    def _insert(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> set[str]:
        """The dedupe keys inserted (a key already taken inserts nothing)."""
        params = tuple(
            row[column] if process is None else process(row[column])
            for row in rows
            for column, process in self._processors
        )
        return {key for (key,) in _at_driver(conn, self._statement(len(rows)), params)}

    def _statement(self, n: int) -> str:
        if n not in self._statements:
            mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
            values = ", ".join(["(" + ", ".join([mark] * len(INTAKE_COLUMNS)) + ")"] * n)
            self._statements[n] = (
                f"INSERT INTO {self._table.name} ({', '.join(INTAKE_COLUMNS)}) VALUES {values} "
                "ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key"
            )
        return self._statements[n]


def _at_driver(conn: sa.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """The rows of ``sql`` run on the driver's own cursor, its errors raised as SQLAlchemy's.

    SQLAlchemy's execution layer (execution context, result metadata) costs more CPU than the
    driver's own work for these two small statements, run once per batch at every delivery rate.
    """
    dbapi_conn = conn.connection.dbapi_connection
    cursor = dbapi_conn.cursor()  # type: ignore[union-attr]
    error = conn.dialect.loaded_dbapi.Error
    try:
        cursor.execute(sql, params)
        return cursor.fetchall()
    except error as exc:
        disconnected = conn.dialect.is_disconnect(exc, dbapi_conn, cursor)
        raise sa.exc.DBAPIError.instance(
            sql, params, exc, error, connection_invalidated=disconnected, dialect=conn.dialect
        ) from exc
    finally:
        cursor.close()


def _stored_row(pending: _Pending, erased: set[str]) -> dict[str, Any]:
    """The row as stored: without the raw body when every event names an erased address."""
    return {**pending.row, **intake_columns_of(erased, pending.events, pending.row["received_at"])}


def _outcome(row: dict[str, Any]) -> str:
    return "ignored" if row["status"] == "ignored" else "stored"


class _Pending:
    """One delivery waiting for its statement, and the request's future in its own event loop."""

    __slots__ = ("events", "future", "loop", "row")

    def __init__(self, row: dict[str, Any], events: Sequence[ProviderEvent], loop: asyncio.AbstractEventLoop):
        self.row, self.events, self.loop = row, events, loop
        self.future: asyncio.Future[str] = loop.create_future()

    def resolve(self, outcome: Outcome) -> None:
        if self.future.done():  # the request was cancelled (client gone)
            return
        if isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


def settle(batch: list[_Pending], outcomes: list[Outcome]) -> None:
    """From a writer thread: hands each outcome to its request's loop, one wake-up per loop."""
    by_loop: defaultdict[asyncio.AbstractEventLoop, list[tuple[_Pending, Outcome]]] = defaultdict(list)
    for pending, outcome in zip(batch, outcomes, strict=True):
        by_loop[pending.loop].append((pending, outcome))
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve_all, settled)
        except RuntimeError:
            pass  # the loop closed: nobody waits for these answers (the rows, if stored, stay)


def _resolve_all(settled: list[tuple[_Pending, Outcome]]) -> None:
    for pending, outcome in settled:
        pending.resolve(outcome)


# Every column a delivery's row sets, in a fixed order.
INTAKE_COLUMNS = (
    "provider",
    "dedupe_key",
    "content_type",
    "payload",
    "received_at",
    "status",
    "attempts",
    "processed_at",
    "purged_at",
    "names_erased",
)


def dedupe_key(provider: str, body: bytes, events: Sequence[ProviderEvent]) -> str:
    """One key per delivery, derived from its events' keys (so a redelivery collides with it).

    A delivery with no event syncd acts on (a delivery report, a campaign sent) is
    keyed by its body's hash: it is still kept, as every acknowledged delivery is.
    """
    if events:
        material = "\n".join(sorted({e.dedupe_key for e in events}))
    else:
        material = "body:" + hashlib.sha256(body).hexdigest()
    return f"{provider}:{hashlib.sha256(material.encode()).hexdigest()}"
