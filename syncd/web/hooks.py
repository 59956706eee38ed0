"""Webhook receivers: ``/hooks/brevo/{secret}`` and ``/hooks/mailchimp/{secret}``.

A delivery is validated with the provider's connector, stored raw in the inbox and committed
before the 2xx (DESIGN §4 rule 5); the inbox processor applies it later. The answers are chosen
for the providers' retry logic: 2xx = never send again (stored, or a duplicate), 4xx = the
delivery itself is wrong, 503 = try again later (the master base is unreachable).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from connectors.contract import PayloadError, ProviderEvent
from connectors.text import clean_text
from syncd.inbox_purge import intake_columns
from syncd.log import get_logger
from syncd.metrics import WEBHOOK_RECEIVED, WEBHOOK_REJECTED
from syncd.models import InboxEvent, utcnow

log = get_logger(__name__)

MAX_BODY_BYTES = 1_000_000  # real deliveries are a few kB; Brevo batches stay well under this


class TooLarge(Exception):
    pass


class InboxWriter:
    """Stores deliveries. On SQLite, writes go one at a time through a lock, so that threads queue
    here in order instead of sleeping in SQLite's busy handler (which wrecks tail latency)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = threading.Lock() if engine.dialect.name == "sqlite" else None
        self._table = InboxEvent.__table__  # type: ignore[attr-defined]

    def store(
        self,
        provider: str,
        body: bytes,
        content_type: str,
        events: Sequence[ProviderEvent],
        payload: str | None = None,
    ) -> str:
        """``stored``, ``ignored`` (kept, nothing to apply) or ``duplicate``. Raises SQLAlchemyError.

        ``payload``: the body as storable text (the connector's ``storable_body``)."""
        ignored = not events or all(e.own_write for e in events)
        row = {
            "provider": provider,
            "dedupe_key": dedupe_key(provider, body, events),
            "content_type": clean_text(content_type)[:100],
            "payload": body.decode("utf-8") if payload is None else payload,
            "received_at": utcnow(),
            "status": "ignored" if ignored else "new",
            "attempts": 0,
        }
        if ignored:
            row["processed_at"] = row["received_at"]
        try:
            if self._lock is None:
                self._insert(row, events)
            else:
                with self._lock:
                    self._insert(row, events)
        except sa.exc.IntegrityError:
            return "duplicate"
        return "ignored" if row["status"] == "ignored" else "stored"

    def _insert(self, row: dict[str, Any], events: Sequence[ProviderEvent]) -> None:
        with self.engine.begin() as conn:
            # A body naming an erased address is not kept raw (see syncd.inbox_purge).
            row.update(intake_columns(conn, events, row["payload"], row["received_at"]))
            conn.execute(self._table.insert().values(**row))


def dedupe_key(provider: str, body: bytes, events: Sequence[ProviderEvent]) -> str:
    """One key per delivery, derived from its events' keys (so a redelivery collides with it).

    A delivery with no event syncd acts on (a Brevo ``delivered``, a Mailchimp ``campaign``) is
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


def secret_matches(given: str, expected: str | None) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())  # type: ignore[union-attr]


def not_found() -> Response:
    return PlainTextResponse("Not Found", status_code=404)


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
    settings = getattr(config.providers, provider)
    if not settings.webhook_secret:
        return "none: every delivery is refused (404)", f"providers.{provider}.webhook_secret is not set"
    if provider == "brevo":
        if settings.webhook_token:
            return "URL secret + bearer token (Authorization: Bearer)", None
        if settings.webhook_auth == "bearer":
            return "URL secret + bearer token, but no token is set: every delivery is refused (401)", (
                "providers.brevo.webhook_token is not set: set the webhook's bearer token in Brevo and "
                "here (or accept the weaker URL secret alone with webhook_auth: url_secret)"
            )
        return "URL secret only", (
            "Brevo webhooks are authenticated by the URL secret alone (webhook_auth: url_secret): "
            "anyone who learns the URL can post events; set a bearer token (webhook_token)"
        )
    if settings.signing_secret:
        return "URL secret + signature (X-Mailchimp-Signature, HMAC-SHA256, 300 s)", None
    return "URL secret only", (
        "Mailchimp webhooks are authenticated by the URL secret alone: set "
        "providers.mailchimp.signing_secret once the webhook is signed"
    )


class WebhookReceiver:
    """The two providers' endpoints, sharing one store-then-acknowledge path."""

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

    async def brevo(self, request: Request) -> Response:
        return await self._guarded("brevo", request, self._brevo_auth)

    async def mailchimp(self, request: Request) -> Response:
        return await self._guarded("mailchimp", request, self._mailchimp_auth)

    async def _guarded(self, provider: str, request: Request, auth: Callable[..., Any]) -> Response:
        address = request.client.host if request.client else "unknown"
        wait = self.throttle.retry_after(address)
        if wait is not None:
            WEBHOOK_REJECTED.labels(provider, "throttled").inc()
            return refused("Too Many Requests", 429, {"Retry-After": str(wait)})
        refusal = auth(request)
        if refusal is not None:
            self.throttle.failed(address)
            log.warning("webhook.auth_failed", provider=provider, status=refusal.status_code)
            return refusal
        if request.method == "GET":
            # Mailchimp checks the URL with a GET when the webhook is registered: it wants a 200.
            return PlainTextResponse("OK")
        return await self._receive(provider, request)

    def _brevo_auth(self, request: Request) -> Response | None:
        settings = self.config.providers.brevo
        if settings is None or not secret_matches(request.path_params["secret"], settings.webhook_secret):
            WEBHOOK_REJECTED.labels("brevo", "secret").inc()
            return not_found()
        if settings.webhook_token or settings.webhook_auth == "bearer":
            # Brevo sends "Authorization: Bearer <token>" when the webhook is created with one;
            # required unless the config opts out (webhook_auth: url_secret).
            # https://developers.brevo.com/docs/how-to-use-webhooks#securing-webhooks
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not secret_matches(token.strip(), settings.webhook_token):
                WEBHOOK_REJECTED.labels("brevo", "token").inc()
                return refused("Unauthorized", 401, {"WWW-Authenticate": "Bearer"})
        return None

    def _mailchimp_auth(self, request: Request) -> Response | None:
        settings = self.config.providers.mailchimp
        if settings is None or not secret_matches(request.path_params["secret"], settings.webhook_secret):
            WEBHOOK_REJECTED.labels("mailchimp", "secret").inc()
            return not_found()
        return None

    async def _receive(self, provider: str, request: Request) -> Response:
        try:
            body = await read_body(request)
        except TooLarge:
            WEBHOOK_REJECTED.labels(provider, "too_large").inc()
            return PlainTextResponse(f"Payload Too Large (over {MAX_BODY_BYTES} bytes)", status_code=413)
        content_type = request.headers.get("content-type", "")
        connector = self.connectors[provider]
        if provider == "mailchimp" and self.config.providers.mailchimp.signing_secret:
            signature = request.headers.get("x-mailchimp-signature")
            if not connector.verify_signature(
                body, signature, self.config.providers.mailchimp.signing_secret
            ):
                WEBHOOK_REJECTED.labels(provider, "signature").inc()
                address = request.client.host if request.client else "unknown"
                self.throttle.failed(address)
                return PlainTextResponse("Bad signature", status_code=401)
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
            outcome = await run_in_threadpool(
                self.writer.store, provider, body, content_type, events, payload
            )
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
