"""Webhook receivers: ``/hooks/{provider}/{secret}``, one per provider of the registry.

The receiver routes, throttles and stores; the provider's own webhook module authenticates a
delivery (``WebhookEndpoint``) and its connector parses it. A delivery is validated, stored raw in
the inbox and committed before the 2xx (DESIGN §4 rule 5); the inbox processor applies it later.
The answers are chosen for the providers' retry logic: 2xx = never send again (stored, or a
duplicate), 4xx = the delivery itself is wrong, 503 = try again later (the master base is
unreachable).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from connectors.contract import PayloadError, Refusal
from connectors.secrets import secret_matches
from syncd.log import get_logger
from syncd.metrics import WEBHOOK_RECEIVED, WEBHOOK_REJECTED
from syncd.providers import PROVIDERS, settings_of, webhook_endpoint
from syncd.web.intake import InboxWriter

log = get_logger(__name__)

MAX_BODY_BYTES = 1_000_000  # real deliveries are a few kB; a provider's batches stay well under this


class TooLarge(Exception):
    pass


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
        self._received = {name: WEBHOOK_RECEIVED.labels(name) for name in PROVIDERS}

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
            delivery = connector.parse_delivery(body, content_type, request.headers)
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
            self._received[provider].inc()
        answer: dict[str, Any] = {"status": outcome, "events": len(events)}
        if delivery.skipped:
            answer["skipped"] = [
                s.encode("utf-8", "backslashreplace").decode("utf-8") for s in delivery.skipped
            ]
        return JSONResponse(answer)
