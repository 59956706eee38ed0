"""Webhook receivers: ``/hooks/{provider}/{secret}``, one per provider of the registry.

The receiver routes, throttles and stores; the provider's own webhook module authenticates a
delivery (``WebhookEndpoint``) and its connector parses it. A delivery is validated, stored raw in
the inbox and committed before the 2xx (DESIGN §4 rule 5); the inbox processor applies it later.
The answers are chosen for the providers' retry logic: 2xx = never send again (stored, or a
duplicate), 4xx = the delivery itself is wrong, 503 = try again later (the master base is
unreachable).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from connectors.contract import PayloadError, ProviderEvent, Refusal
from connectors.secrets import secret_matches
from connectors.text import clean_text
from syncd.db import erased_among
from syncd.inbox_purge import intake_columns_of, named_in
from syncd.log import get_logger
from syncd.metrics import WEBHOOK_RECEIVED, WEBHOOK_REJECTED
from syncd.models import InboxEvent, utcnow
from syncd.providers import PROVIDERS, settings_of, webhook_endpoint

log = get_logger(__name__)

# The master base cannot be reached, answers too slowly, or every pooled connection is busy
# (the same list as syncd.web.app's 503 handler).
DATABASE_UNAVAILABLE = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
    sa.exc.DisconnectionError,
)
MAX_BODY_BYTES = 1_000_000  # real deliveries are a few kB; a provider's batches stay well under this


class TooLarge(Exception):
    pass


class InboxWriter:
    """Stores deliveries with group commit: the requests waiting at one moment are written in one
    transaction by a writer thread, and each is answered once that transaction has committed.

    A 2xx is still given only for a committed row: a request's future is resolved after the
    commit, with its own outcome (``stored``, ``ignored``, ``duplicate``) or the error that
    prevented it. A batch that fails for another reason than an unreachable base is retried one
    delivery at a time, so that one bad row never costs the others their answer. SQLite has one
    writer thread (its writes are serialised anyway, and queueing here beats sleeping in its busy
    handler); PostgreSQL has a few. Threads stop when idle and start again with the next delivery.

    One prepared ``INSERT … ON CONFLICT (dedupe_key) DO NOTHING`` (SQLite and PostgreSQL): the
    statement is compiled once and cached, and a redelivery is told by the row count (no
    exception, no aborted transaction), in the same batch or not.
    """

    MAX_BATCH = 64  # deliveries a transaction: bounds its time, hence the wait of the ones behind
    IDLE_S = 5.0  # a writer thread with nothing to do for this long stops

    def __init__(self, engine: Engine, threads: int | None = None):
        self.engine = engine
        self._table = InboxEvent.__table__  # type: ignore[attr-defined]
        self._statement = _insert_unless_duplicate(self._table, engine.dialect.name)
        self._threads = threads or (1 if engine.dialect.name == "sqlite" else 4)
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
        pending = _Pending(self._row(provider, body, content_type, events, payload), events, loop)
        self._queue.put(pending)
        self._ensure_writer()
        return await pending.future

    def _row(
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

    # --- the writer threads ----------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        with self._lock:
            if self._running < self._threads:
                self._running += 1
                threading.Thread(target=self._write_loop, name="inbox-writer", daemon=True).start()

    def _write_loop(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.IDLE_S)
            except queue.Empty:
                with self._lock:
                    # A delivery queued after this check finds ``_running`` lowered and starts a thread.
                    if self._queue.empty():
                        self._running -= 1
                        return
                continue
            batch = [first]
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                outcomes = self._write(batch)
            except BaseException as exc:  # the thread is going down: no request may wait forever
                for pending in batch:
                    pending.settle(exc)
                with self._lock:
                    self._running -= 1
                raise
            for pending, outcome in zip(batch, outcomes, strict=True):
                pending.settle(outcome)

    def _write(self, batch: list[_Pending]) -> list[str | BaseException]:
        """Each delivery's outcome, or the exception that kept it from being stored."""
        try:
            return list(self._commit(batch))
        except DATABASE_UNAVAILABLE as exc:
            return [exc] * len(batch)  # nothing was stored; every request answers 503
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
        outcomes: list[str | BaseException] = []
        for pending in batch:
            try:
                outcomes.extend(self._commit([pending]))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def _commit(self, batch: list[_Pending]) -> list[str]:
        """One transaction; the outcomes in the batch's order. Rows go in in dedupe-key order, so
        that two PostgreSQL writers holding the same deliveries wait for each other, never in a
        cycle (a deadlock would cost both batches a 503)."""
        order = sorted(range(len(batch)), key=lambda i: batch[i].row["dedupe_key"])
        outcomes: list[str] = [""] * len(batch)
        named = [named_in(p.events, p.row["payload"]) for p in batch]
        with self.engine.begin() as conn:
            # One tombstone query for the batch: a body naming an erased address is not kept raw
            # (see syncd.inbox_purge).
            erased = erased_among(conn, set().union(*named))
            for i in order:
                outcomes[i] = self._insert(conn, batch[i], erased & named[i])
        return outcomes  # committed: only now may any of them be acknowledged

    def _insert(self, conn: sa.Connection, pending: _Pending, erased: set[str]) -> str:
        row = {**pending.row, **intake_columns_of(erased, pending.events, pending.row["received_at"])}
        if self._statement.is_insert:  # a dialect without ON CONFLICT: the unique key refuses
            with conn.begin_nested():
                try:
                    conn.execute(self._statement, row)
                except sa.exc.IntegrityError:
                    return "duplicate"
        elif conn.execute(self._statement, row).rowcount == 0:
            return "duplicate"
        return "ignored" if row["status"] == "ignored" else "stored"


class _Pending:
    """One delivery waiting for its transaction, and the request's future in its own event loop."""

    __slots__ = ("events", "future", "loop", "row")

    def __init__(self, row: dict[str, Any], events: Sequence[ProviderEvent], loop: asyncio.AbstractEventLoop):
        self.row, self.events, self.loop = row, events, loop
        self.future: asyncio.Future[str] = loop.create_future()

    def settle(self, outcome: str | BaseException) -> None:
        """From the writer thread: hands the outcome to the request's loop (which may be gone)."""
        try:
            self.loop.call_soon_threadsafe(self._resolve, outcome)
        except RuntimeError:
            pass  # the loop closed: nobody waits for this answer (the row, if stored, stays)

    def _resolve(self, outcome: str | BaseException) -> None:
        if self.future.done():  # the request was cancelled (client gone)
            return
        if isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


# Every column ``store`` sets, in a fixed order: one statement serves every delivery.
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


def _insert_unless_duplicate(table: sa.Table, dialect: str) -> sa.TextClause | sa.Insert:
    """The inbox insert; on SQLite and PostgreSQL a taken dedupe key inserts nothing (row count 0).

    Written as text with typed parameters: SQLAlchemy caches its compiled form (it does not cache
    the dialects' ``on_conflict_do_nothing`` constructs, which it would compile per delivery)."""
    if dialect not in ("sqlite", "postgresql"):
        return table.insert()
    names = ", ".join(INTAKE_COLUMNS)
    values = ", ".join(f":{c}" for c in INTAKE_COLUMNS)
    return sa.text(
        f"INSERT INTO {table.name} ({names}) VALUES ({values}) ON CONFLICT (dedupe_key) DO NOTHING"
    ).bindparams(*(sa.bindparam(c, type_=table.c[c].type) for c in INTAKE_COLUMNS))


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


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def refused(reason: str, status_code: int = 400, headers: Mapping[str, str] | None = None) -> Response:
    # A reason can quote the delivery, lone surrogates included: escaped, never a 500.
    text = reason.encode("utf-8", "backslashreplace").decode("utf-8")
    return PlainTextResponse(text, status_code=status_code, headers=dict(headers or {}))


class FailureThrottle:
    """Authentication failures per client address, as a token bucket: ``burst`` failures at once,
    then one per ``refill_s`` seconds. An address over its budget gets 429 on every webhook
    request, a right secret included (a throttle a right guess could pass would not slow the
    guessing). In-process: each replica counts its own; memory is bounded by ``max_clients``.
    """

    def __init__(
        self,
        burst: int = 30,
        refill_s: float = 2.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.burst, self.refill_s, self.max_clients, self._clock = burst, refill_s, max_clients, clock
        self._spent: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (spent, at)
        self._lock = threading.Lock()

    def _current(self, address: str, now: float) -> float:
        spent, at = self._spent.get(address, (0.0, now))
        return max(0.0, spent - (now - at) / self.refill_s)

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or None when it is within its budget."""
        with self._lock:
            if address not in self._spent:
                return None
            over = self._current(address, self._clock()) - (self.burst - 1)
            return math.ceil(over * self.refill_s) if over > 0 else None

    def failed(self, address: str) -> None:
        with self._lock:
            now = self._clock()
            self._spent[address] = (min(self._current(address, now) + 1, self.burst + 1.0), now)
            self._spent.move_to_end(address)
            while len(self._spent) > self.max_clients:
                self._spent.popitem(last=False)


def auth_summary(config: Any, provider: str) -> tuple[str, str | None]:
    """How ``provider``'s endpoint authenticates a delivery, and a warning when that is weak."""
    settings = settings_of(config, provider)
    if not settings.webhook_secret:
        return "none: every delivery is refused (404)", f"providers.{provider}.webhook_secret is not set"
    return webhook_endpoint(config, provider).describe()


class WebhookReceiver:
    """Every provider's endpoint, sharing one authenticate-store-acknowledge path."""

    def __init__(
        self,
        config: Any,
        writer: InboxWriter,
        connectors: Mapping[str, Any],
        throttle: FailureThrottle | None = None,
    ):
        self.config = config
        self.writer = writer
        self.connectors = connectors
        self.throttle = throttle or FailureThrottle()
        self._auth: dict[str, tuple[Any, Any]] = {}

    def routes(self) -> list[Route]:
        """``/hooks/{provider}/{secret}`` for each provider, with the methods it answers."""
        return [
            Route(f"/hooks/{name}/{{secret}}", self._endpoint(name), methods=list(p.webhooks.methods))
            for name, p in PROVIDERS.items()
        ]

    def _endpoint(self, provider: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self._guarded(provider, request)

        return endpoint

    async def _guarded(self, provider: str, request: Request) -> Response:
        address = request.client.host if request.client else "unknown"
        wait = self.throttle.retry_after(address)
        if wait is not None:
            WEBHOOK_REJECTED.labels(provider, "throttled").inc()
            return refused("Too Many Requests", 429, {"Retry-After": str(wait)})
        settings, auth = self._auth_of(provider)
        if auth is None or not secret_matches(request.path_params["secret"], settings.webhook_secret):
            return self._refuse(provider, address, Refusal("secret", 404, "Not Found"))
        refusal = auth.authenticate(request.headers)
        if refusal is not None:
            return self._refuse(provider, address, refusal)
        answer = auth.handshake(request.method)
        if answer is not None:
            return PlainTextResponse(answer)
        try:
            body = await read_body(request)
        except TooLarge:
            WEBHOOK_REJECTED.labels(provider, "too_large").inc()
            return PlainTextResponse(f"Payload Too Large (over {MAX_BODY_BYTES} bytes)", status_code=413)
        refusal = auth.verify(body, request.headers)
        if refusal is not None:
            return self._refuse(provider, address, refusal)
        return await self._receive(provider, request, body)

    def _auth_of(self, provider: str) -> tuple[Any, Any]:
        """``provider``'s config section and webhook endpoint (None, None: not configured), made
        once: the config does not change while the app runs."""
        if provider not in self._auth:
            settings = settings_of(self.config, provider)
            endpoint = webhook_endpoint(self.config, provider) if settings is not None else None
            self._auth[provider] = (settings, endpoint)
        return self._auth[provider]

    def _refuse(self, provider: str, address: str, refusal: Refusal) -> Response:
        WEBHOOK_REJECTED.labels(provider, refusal.reason).inc()
        self.throttle.failed(address)
        log.warning("webhook.auth_failed", provider=provider, status=refusal.status, reason=refusal.reason)
        return refused(refusal.text, refusal.status, refusal.headers)

    async def _receive(self, provider: str, request: Request, body: bytes) -> Response:
        content_type = request.headers.get("content-type", "")
        connector = self.connectors[provider]
        try:
            delivery = connector.parse_delivery(body, content_type, dict(request.headers))
            payload = connector.storable_body(body)
        except PayloadError as exc:
            WEBHOOK_REJECTED.labels(provider, "malformed").inc()
            return refused(str(exc))
        except UnicodeDecodeError:
            WEBHOOK_REJECTED.labels(provider, "malformed").inc()
            return refused("webhook body is not UTF-8")
        events = delivery.events
        if delivery.skipped:
            log.warning("webhook.items_skipped", provider=provider, skipped=len(delivery.skipped))
        try:
            outcome = await self.writer.store(provider, body, content_type, events, payload)
        except sa.exc.SQLAlchemyError as exc:
            WEBHOOK_REJECTED.labels(provider, "database").inc()
            log.error("webhook.store_failed", provider=provider, error=type(exc).__name__)
            return PlainTextResponse(
                "Service Unavailable: the master base cannot be reached",
                status_code=503,
                headers={"Retry-After": "30"},
            )
        if outcome != "duplicate":
            WEBHOOK_RECEIVED.labels(provider).inc()
        answer: dict[str, Any] = {"status": outcome, "events": len(events)}
        if delivery.skipped:
            answer["skipped"] = [
                s.encode("utf-8", "backslashreplace").decode("utf-8") for s in delivery.skipped
            ]
        return JSONResponse(answer)
