"""A stateful loopback stand-in for the Mailchimp Marketing API 3.0, for tests, trials and the demo.

It serves the endpoints syncd's connector calls, under ``/3.0``, with Mailchimp's rules where
they matter to syncd: batch caps, member states and their transitions, the compliance state,
problem+json errors, Basic auth, and the limit of simultaneous connections.

Beside the API, a simulator-only admin API under ``/_sim`` (same Basic auth; no fault injection,
connection limit or call log) plays what a member does on Mailchimp's side, which the API can
only approximate (``PATCH .../members/{hash}`` with a ``status`` is the API's own way, as syncd
or a user's app would do it):

- ``POST /_sim/lists/{list_id}/members/{email or subscriber hash}/{action}`` with ``action``:
  ``unsubscribe`` (the member's click; ``{"reason": "abuse"}`` for a spam complaint),
  ``resubscribe`` (the member signs up again through a form: subscribed, new opt-in time;
  ``{"ip": ...}`` optional), ``clean`` (a hard bounce: cleaned) and ``change-email``
  (``{"new_email": ...}``: the member updates their address; the subscriber hash follows).

A new webhook (``POST /3.0/lists/{list_id}/webhooks``) is refused when the audience has one with
the same URL; with ``verify_webhook_urls`` (on under ``syncd simulate``), also unless its URL
answers a GET with 200, as Mailchimp checks it.

No webhook is sent by these actions: ``webhook_payload`` and ``post_webhook`` make and post the
one Mailchimp would send. In Python, the account's hooks (``create_audience``, ``create_tag``,
``put_member``, ``audience_members``, ``member``, ``member_action``) speak Mailchimp's words only.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import time
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.simulators.harness import CallRecord, Simulator, drop_connection, raw_answer
from connectors.simulators.mailchimp import webhooks
from connectors.simulators.mailchimp.api import MailchimpApi, problem
from connectors.simulators.mailchimp.state import MEMBER_ACTIONS, Account, Member, invalid, not_found

ADMIN_PREFIX = "/_sim/"


class MailchimpSimulator(Simulator, MailchimpApi):
    api_prefix = "/3.0"
    write_paths = "/"  # every call that is not a GET

    def __init__(self, api_key: str = "sim-key-us1", max_connections: int = 10):
        super().__init__(api_key)
        self.max_connections = max_connections
        self.webhook_secret: str | None = None  # when set, post_webhook signs its deliveries
        self.account = Account()
        self._in_flight = 0
        self._next_allowed = 0.0
        self._hold_for = 0  # see hold_until_concurrent
        self._release: asyncio.Event | None = None
        admin = Route(
            "/_sim/lists/{list_id}/members/{member}/{action}",
            self.handle(self.admin_action),
            methods=["POST"],
        )
        self.router = Starlette(routes=[*self.routes(), admin])

    # --- the account, in Mailchimp's words ---------------------------------------------------------

    def create_audience(self, name: str, list_id: str | None = None) -> str:
        """A new audience (``list_id``: with that id, which must be free; else a random one)."""
        return self.account.create_audience(name, list_id)

    def create_tag(self, list_id: str, name: str) -> int:
        return self.account.create_tag(list_id, name)

    def put_member(self, list_id: str, email: str, **state: Any) -> Member:
        return self.account.put_member(list_id, email, **state)

    def audience_members(self, list_id: str) -> list[Member]:
        """Every member of the audience, archived ones too."""
        return self.account.members(list_id)

    def member(self, list_id: str, email: str) -> Member | None:
        return self.account.member(list_id, email)

    def member_action(self, list_id: str, email: str, action: str, **data: Any) -> Member:
        """What the member does on Mailchimp's side (see the admin API above)."""
        with self.account.lock:
            audience = self.account.audiences[list_id]
            member = audience.member_by_key(email)
            assert member is not None, f"{email} is not in audience {list_id}"
            return self.account.member_acts(audience, member, action, data)

    def webhook_payload(
        self, type: str, email: str, list_id: str = webhooks.SOME_LIST, **data: Any
    ) -> tuple[bytes, str]:
        """Body and content type of the webhook Mailchimp posts (see ``webhooks.payload``)."""
        return webhooks.payload(type, email, list_id, **data), webhooks.CONTENT_TYPE

    def post_webhook(
        self, url: str, body: bytes, content_type: str = webhooks.CONTENT_TYPE
    ) -> httpx.Response:
        return webhooks.post(url, body, content_type, self.webhook_secret)

    def sign(self, body: bytes, secret: str, t: int | None = None) -> str:
        return webhooks.sign(body, secret, t)

    def check_webhook_url(self, url: str) -> httpx.Response:
        return webhooks.check_url(url)

    def hold_until_concurrent(self, n: int, timeout_s: float = 10.0) -> None:
        """Hold the next API calls until ``n`` of them are in flight at once, then answer them all.

        A connection-limit storm depends on the machine's speed: on a slow or loaded machine a
        client's calls may never overlap. Holding them (once, at most ``timeout_s``) makes the
        overlap certain; each call is still judged against the limit when it arrives.
        """
        self._hold_for, self._hold_timeout_s = n, timeout_s

    async def _wait_for_company(self) -> None:
        if self._release is None:
            self._release = asyncio.Event()
        release = self._release
        if self._in_flight >= self._hold_for:
            self._hold_for, self._release = 0, None
            release.set()
            return
        try:
            await asyncio.wait_for(release.wait(), self._hold_timeout_s)
        except TimeoutError:
            self._hold_for, self._release = 0, None

    # --- ASGI entry: auth, faults, connection limit, latency ----------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"].startswith(ADMIN_PREFIX):
            # The simulator's own admin API: authenticated, but no faults, limits or call log.
            if not self._authorised(scope):
                response = problem(401, "API Key Invalid", "Your API key may be invalid.", scope["path"])
                return await response(scope, receive, send)
            return await self.router(scope, receive, send)
        record = CallRecord(scope["method"], scope["path"])
        with self._lock:
            self.calls.append(record)
        drop, fail = self._take_fault()
        if drop:
            await drop_connection(receive, send)
            return
        scope["sim_record"] = record

        loop = asyncio.get_running_loop()
        respond_at = loop.time() + self.latency_s

        async def recording_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                # latency_s is the response time seen by the client, counted from arrival: the
                # request's own work happens inside it, as on a service that works in parallel.
                await asyncio.sleep(max(0.0, respond_at - loop.time()))
            await send(message)

        self._in_flight += 1  # the event loop is single-threaded: no lock needed
        try:
            response = self._gate(scope, fail)
            if self._hold_for:
                await self._wait_for_company()
            if response is None:
                self._acts_on(scope["method"], scope["path"])
                await self.router(scope, receive, recording_send)
            else:
                await response(scope, receive, recording_send)
        finally:
            self._in_flight -= 1

    def _gate(self, scope: dict, fail: tuple[int, bytes | None] | None) -> Response | None:
        path = scope["path"]
        if fail is not None:
            status, body = fail
            if body is not None:
                return raw_answer(status, body)
            return problem(
                status, "Service Unavailable" if status >= 500 else "Error", "Injected failure", path
            )
        if self._in_flight > self.max_connections:
            # https://mailchimp.com/developer/marketing/docs/fundamentals/#api-limits : 10 simultaneous
            # connections; beyond that 429, with no rate-limit headers.
            return problem(
                429,
                "Too Many Requests",
                f"You have exceeded the limit of {self.max_connections} simultaneous connections.",
                path,
            )
        if self.rate_limit_per_s:
            # Not a Mailchimp rule (it limits connections): a smooth rate for API symmetry with
            # the Brevo simulator, at most one request every 1/rate seconds, no burst.
            now, interval = time.monotonic(), 1.0 / self.rate_limit_per_s
            if self._next_allowed > now:
                return problem(429, "Too Many Requests", "Too many requests per second.", path)
            self._next_allowed = now + interval
        if not path.startswith("/3.0/"):
            return problem(404, "Resource Not Found", "The requested resource could not be found.", path)
        if not self._authorised(scope):
            # https://mailchimp.com/developer/marketing/docs/fundamentals/#authentication-methods
            return problem(
                401,
                "API Key Invalid",
                "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
                path,
            )
        return None

    def _authorised(self, scope: dict) -> bool:
        headers = dict(scope["headers"])
        value = headers.get(b"authorization", b"").decode()
        if value.lower().startswith("basic "):
            try:
                _, _, key = base64.b64decode(value[6:]).decode().partition(":")
            except ValueError:
                return False
            return hmac.compare_digest(key, self.api_key)
        if value.lower().startswith("bearer "):
            return hmac.compare_digest(value[7:], self.api_key)
        return False

    # --- the simulator's own admin API (/_sim) ---------------------------------------------------

    def admin_action(self, request: Request, body: Any) -> dict:
        audience = self.audience(request)
        member = audience.member_by_key(request.path_params["member"])
        if member is None:
            raise not_found()
        action = request.path_params["action"]
        if action not in MEMBER_ACTIONS:
            raise invalid(f"Unknown action {action!r}: one of {', '.join(MEMBER_ACTIONS)}.")
        member = self.account.member_acts(audience, member, action, body if isinstance(body, dict) else {})
        return self._member_json(audience, member)


def serve(port: int, api_key: str, *, latency_s: float = 0.0) -> None:
    """Run a simulator in the foreground until interrupted (``syncd simulate mailchimp``)."""
    sim = MailchimpSimulator(api_key=api_key)
    sim.latency_s = latency_s
    sim.run_forever(port)
