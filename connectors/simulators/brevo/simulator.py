"""A stateful Brevo API v3 on loopback, for tests, trials and the demo.

Beside the API (under ``/v3``), a simulator-only admin API under ``/_sim`` (same ``api-key``
header; no fault injection, rate limit or call log) sets up what real Brevo does not expose:

- ``GET /_sim/account``, ``PUT /_sim/account`` ``{"perListUnsubscription": true}``: the account
  feature Brevo enables on request. Off (the default account), a contact's unsubscribe click
  blocks the address account-wide (``emailBlacklisted``); on, it adds the campaign's list to the
  contact's ``listUnsubscribed`` instead. https://help.brevo.com/hc/en-us/articles/209502525
- ``POST /_sim/contacts/{email or id}/unsubscribe`` ``{"listId": 12}``: the contact's own click
  on the unsubscribe link of a campaign sent to that list, under the account's setting.
- ``POST /_sim/contacts/{email or id}/complaint`` ``{"listId": 12}``: the contact marks a campaign
  sent to that list as spam; Brevo blocks the address account-wide.
- ``GET /_sim/outbox`` (an HTML page) and ``GET /_sim/outbox.json``: the transactional mails the
  simulator accepted (``POST /v3/smtp/email``), newest first, with the links they hold: where a
  trial finds a double opt-in confirmation link. Open without the key, so that a browser shows
  them: the simulator listens on loopback only and holds trial data.

The account-wide block itself is the real API's: ``PUT /v3/contacts/{identifier}`` with
``{"emailBlacklisted": true}`` (``false`` lifts it). Each unsubscribe click, complaint and block
set through the API is kept in the contact's campaign statistics
(``GET /v3/contacts/{identifier}/campaignStats``); the campaign to list L has the id L.

In Python, the account's own hooks (``create_list``, ``put_contact``, ``contact``,
``list_contacts``, ``contact_unsubscribes``, ``contact_complains``) and ``webhook_payload`` /
``post_webhook`` speak Brevo's words only.
"""

from __future__ import annotations

import asyncio
import html
import math
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from connectors.simulators.brevo import webhooks
from connectors.simulators.brevo.api import BrevoApi, error
from connectors.simulators.brevo.state import Account
from connectors.simulators.harness import CallRecord, Simulator, drop_connection, raw_answer, read_json

ADMIN_PREFIX = "/_sim/"
OPEN_PATHS = ("/_sim/outbox", "/_sim/outbox.json")  # readable without the key (a browser's)
LINK = re.compile(r"""https?://[^\s"'<>]+""")


class BrevoSimulator(Simulator, BrevoApi):
    api_prefix = "/v3"
    write_paths = "/v3/contacts"

    def __init__(self, api_key: str = "sim-key", rate_limit_per_s: float | None = None):
        super().__init__(api_key)
        self.rate_limit_per_s = rate_limit_per_s
        self.rate_limit_window_s = 1.0
        self.fail_reset_s = 1.0  # x-sib-ratelimit-reset sent with fail_next(n, status=429)
        self.webhook_token: str | None = None  # the bearer token the webhooks it posts carry
        self.account = Account()
        self.outbox: list[dict[str, Any]] = []  # the transactional mails sent, with their messageId
        self._window_start = 0.0
        self._window_count = 0
        admin = [
            Route("/_sim/account", self.admin_account, methods=["GET", "PUT"]),
            Route("/_sim/contacts/{identifier}/unsubscribe", self.admin_unsubscribe, methods=["POST"]),
            Route("/_sim/contacts/{identifier}/complaint", self.admin_complaint, methods=["POST"]),
            Route("/_sim/outbox", self.admin_outbox_page, methods=["GET"]),
            Route("/_sim/outbox.json", self.admin_outbox_json, methods=["GET"]),
        ]
        self.router = Starlette(routes=self.routes() + admin)

    # --- the account, in Brevo's words -------------------------------------------------------------

    @property
    def per_list_unsubscription(self) -> bool:
        """The account feature "list-based unsubscriptions" (off on a default account)."""
        return self.account.per_list_unsubscription

    @per_list_unsubscription.setter
    def per_list_unsubscription(self, value: bool) -> None:
        self.account.per_list_unsubscription = value

    @property
    def import_delay_s(self) -> float:
        """> 0: imports stay "queued" that long."""
        return self.account.import_delay_s

    @import_delay_s.setter
    def import_delay_s(self, value: float) -> None:
        self.account.import_delay_s = value

    def create_list(self, name: str, folder_id: int = 1, list_id: int | None = None) -> int:
        """A new list (``list_id``: with that id, which must be free)."""
        return self.account.create_list(name, folder_id, list_id)

    def put_contact(self, email: str, **state: Any) -> dict[str, Any]:
        return self.account.put_contact(email, **state)

    def contact(self, identifier: str) -> dict[str, Any] | None:
        return self.account.contact(identifier)

    def list_contacts(self, list_id: int) -> list[dict[str, Any]]:
        return self.account.list_contacts(list_id)

    def contact_unsubscribes(self, email: str, list_id: int) -> None:
        self.account.contact_unsubscribes(email, list_id)

    def contact_complains(self, email: str, list_id: int) -> None:
        self.account.contact_complains(email, list_id)

    def webhook_payload(
        self, event: str, email: str, at: datetime | None = None, **fields: Any
    ) -> tuple[bytes, str]:
        """Body and content type of the webhook Brevo posts for ``event`` (see ``webhooks``)."""
        c = self.account.contacts.get(email.lower())
        return webhooks.payload(event, email, c.id if c else 1, at, **fields), webhooks.CONTENT_TYPE

    def post_webhook(
        self, url: str, body: bytes, content_type: str = webhooks.CONTENT_TYPE
    ) -> httpx.Response:
        return webhooks.post(url, body, content_type, self.webhook_token)

    # --- ASGI: faults, auth, rate limit, call log ----------------------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.router(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if path.startswith(ADMIN_PREFIX):
            # The simulator's own admin API: authenticated, but no faults, limits or call log.
            if path not in OPEN_PATHS and self._key(scope) != self.api_key:
                return await error(401, "unauthorized", "Key not found")(scope, receive, send)
            return await self.router(scope, receive, send)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        drop, fail = self._take_fault()
        if drop:
            await drop_connection(receive, send)
            self._log(method, path, 0, scope)
            return
        if fail is not None:
            self._log(method, path, fail[0], scope)
            return await self._failure(*fail)(scope, receive, send)
        if self._key(scope) != self.api_key:
            self._log(method, path, 401, scope)
            return await error(401, "unauthorized", "Key not found")(scope, receive, send)
        self._acts_on(method, path)
        extra_headers: dict[str, str] = {}
        if path.startswith(self.write_paths) and self.rate_limit_per_s:
            limited, extra_headers = self._take_token()
            if limited:
                self._log(method, path, 429, scope)
                resp = error(429, "too_many_requests", "Too many requests", extra_headers)
                return await resp(scope, receive, send)

        answered = False

        async def send_logged(message: dict) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                # Logged before the client can see the answer, so a test reading the log after
                # its call returned never misses that call.
                self._log(method, path, message["status"], scope)
                message["headers"] = list(message.get("headers", [])) + [
                    (k.encode(), v.encode()) for k, v in extra_headers.items()
                ]
            await send(message)

        await self.router(scope, receive, send_logged)
        if not answered:
            self._log(method, path, 0, scope)

    def _failure(self, status: int, body: bytes | None) -> Response:
        if body is not None:
            return raw_answer(status, body)
        headers = self._rate_headers(0, self.fail_reset_s) if status == 429 else {}
        code = "rate_limited" if status == 429 else "internal_error"
        return error(status, code, "Simulated failure", headers)

    @staticmethod
    def _key(scope: dict) -> str | None:
        return {k.decode().lower(): v.decode() for k, v in scope["headers"]}.get("api-key")

    def _log(self, method: str, path: str, status: int, scope: dict) -> None:
        with self._lock:
            self.calls.append(CallRecord(method, path, status, scope.get("query_string", b"").decode()))

    def _rate_headers(self, remaining: int, reset_s: float) -> dict[str, str]:
        # https://developers.brevo.com/docs/api-limits : x-sib-ratelimit-* headers, reset in seconds
        reset = str(math.ceil(reset_s)) if reset_s >= 1 else f"{reset_s:.3f}"
        limit = str(int(self.rate_limit_per_s * self.rate_limit_window_s)) if self.rate_limit_per_s else "0"
        return {
            "x-sib-ratelimit-limit": limit,
            "x-sib-ratelimit-remaining": str(max(0, remaining)),
            "x-sib-ratelimit-reset": reset,
        }

    def _take_token(self) -> tuple[bool, dict[str, str]]:
        with self._lock:
            now = time.monotonic()
            window = self.rate_limit_window_s
            if now - self._window_start >= window:
                self._window_start, self._window_count = now, 0
            allowed = max(1, int(self.rate_limit_per_s * window))  # type: ignore[operator]
            reset = self._window_start + window - now
            if self._window_count >= allowed:
                return True, self._rate_headers(0, reset)
            self._window_count += 1
            return False, self._rate_headers(allowed - self._window_count, reset)

    # --- the simulator's own admin API (/_sim) ---------------------------------------------------

    async def admin_account(self, request: Request) -> Response:
        if request.method == "PUT":
            body = await read_json(request)
            value = body.get("perListUnsubscription") if isinstance(body, dict) else None
            if not isinstance(value, bool):
                return error(400, "invalid_parameter", "perListUnsubscription (true or false) is required")
            with self.account.lock:
                self.account.per_list_unsubscription = value
        return JSONResponse({"perListUnsubscription": self.account.per_list_unsubscription})

    async def admin_unsubscribe(self, request: Request) -> Response:
        return await self._contact_acts(request, self.account.contact_unsubscribes)

    async def admin_complaint(self, request: Request) -> Response:
        return await self._contact_acts(request, self.account.contact_complains)

    async def _contact_acts(self, request: Request, act: Callable[[str, int], None]) -> Response:
        """The contact's own action on a campaign sent to ``listId``."""
        body = await read_json(request)
        list_id = body.get("listId") if isinstance(body, dict) else None
        if not isinstance(list_id, int) or isinstance(list_id, bool):
            return error(400, "invalid_parameter", "listId (the campaign's list) is required")
        a = self.account
        with a.lock:
            c = a.find(request.path_params["identifier"])
            if c is None:
                return error(404, "document_not_found", "Contact does not exist")
            if list_id not in a.lists:
                return error(404, "document_not_found", "List ID does not exist")
            act(c.email, list_id)
            return JSONResponse(c.as_json())

    def outbox_json(self) -> list[dict[str, Any]]:
        """The mails sent, newest first, each with the links its content holds."""
        with self.account.lock:
            mails = [dict(m) for m in reversed(self.outbox)]
        for mail in mails:
            text = f"{mail.get('textContent') or ''} {html.unescape(mail.get('htmlContent') or '')}"
            mail["links"] = list(dict.fromkeys(LINK.findall(text)))
        return mails

    async def admin_outbox_json(self, request: Request) -> Response:
        return JSONResponse({"mails": self.outbox_json()})

    async def admin_outbox_page(self, request: Request) -> Response:
        rows = []
        for mail in self.outbox_json():
            to = ", ".join(str(t.get("email", "")) for t in mail.get("to") or [] if isinstance(t, dict))
            links = "".join(
                f'<li><a href="{html.escape(u)}">{html.escape(u)}</a></li>' for u in mail["links"]
            )
            rows.append(
                f"<section><h2>{html.escape(str(mail.get('subject') or '(no subject)'))}</h2>"
                f"<p>to {html.escape(to)} · {html.escape(mail['messageId'])}</p><ul>{links}</ul></section>"
            )
        body = "".join(rows) or "<p>No mail sent yet.</p>"
        page = (
            '<!doctype html><html lang="en"><meta charset="utf-8"><title>Brevo simulator: outbox</title>'
            f"<h1>Transactional mails sent ({len(rows)})</h1>{body}"
            '<p><a href="/_sim/outbox.json">as JSON</a></p></html>'
        )
        return HTMLResponse(page)


def serve(port: int, api_key: str) -> None:
    """Run a Brevo simulator in the foreground (``syncd simulate brevo``) until interrupted."""
    BrevoSimulator(api_key=api_key).run_forever(port)
