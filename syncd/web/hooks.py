"""Webhook receivers: ``/hooks/brevo/{secret}`` and ``/hooks/mailchimp/{secret}``.

A delivery is validated with the provider's connector, stored raw in the inbox and committed
before the 2xx (DESIGN §4 rule 5); the inbox processor applies it later. The answers are chosen
for the providers' retry logic: 2xx = never send again (stored, or a duplicate), 4xx = the
delivery itself is wrong, 503 = try again later (the master base is unreachable).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from connectors.base import PayloadError, ProviderEvent
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

    def store(self, provider: str, body: bytes, content_type: str, events: Sequence[ProviderEvent]) -> str:
        """``stored``, ``ignored`` (kept, nothing to apply) or ``duplicate``. Raises SQLAlchemyError."""
        ignored = not events or all(e.own_write for e in events)
        row = {
            "provider": provider,
            "dedupe_key": dedupe_key(provider, body, events),
            "content_type": content_type[:100],
            "payload": body.decode("utf-8"),
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


class WebhookReceiver:
    """The two providers' endpoints, sharing one store-then-acknowledge path."""

    def __init__(self, config: Any, writer: InboxWriter, connectors: Mapping[str, Any]):
        self.config = config
        self.writer = writer
        self.connectors = connectors

    async def brevo(self, request: Request) -> Response:
        settings = self.config.providers.brevo
        if settings is None or not secret_matches(request.path_params["secret"], settings.webhook_secret):
            WEBHOOK_REJECTED.labels("brevo", "secret").inc()
            return not_found()
        if settings.webhook_token:
            # Brevo sends "Authorization: Bearer <token>" when the webhook is created with one.
            # https://developers.brevo.com/docs/how-to-use-webhooks#securing-webhooks
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not secret_matches(token.strip(), settings.webhook_token):
                WEBHOOK_REJECTED.labels("brevo", "token").inc()
                return PlainTextResponse(
                    "Unauthorized", status_code=401, headers={"WWW-Authenticate": "Bearer"}
                )
        return await self._receive("brevo", request)

    async def mailchimp(self, request: Request) -> Response:
        settings = self.config.providers.mailchimp
        if settings is None or not secret_matches(request.path_params["secret"], settings.webhook_secret):
            WEBHOOK_REJECTED.labels("mailchimp", "secret").inc()
            return not_found()
        if request.method == "GET":
            # Mailchimp checks the URL with a GET when the webhook is registered: it wants a 200.
            return PlainTextResponse("OK")
        return await self._receive("mailchimp", request)

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
                return PlainTextResponse("Bad signature", status_code=401)
        try:
            events = connector.parse_webhook(body, content_type, dict(request.headers))
            body.decode("utf-8")
        except PayloadError as exc:
            WEBHOOK_REJECTED.labels(provider, "malformed").inc()
            return PlainTextResponse(str(exc), status_code=400)
        except UnicodeDecodeError:
            WEBHOOK_REJECTED.labels(provider, "malformed").inc()
            return PlainTextResponse("webhook body is not UTF-8", status_code=400)
        try:
            outcome = await run_in_threadpool(self.writer.store, provider, body, content_type, events)
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
        return JSONResponse({"status": outcome, "events": len(events)})
