"""A stateful loopback stand-in for the Mailchimp Marketing API 3.0, for tests and the demo.

It serves the endpoints syncd's connector calls, under ``/3.0``, with Mailchimp's rules where
they matter to syncd: batch caps, member states and their transitions, the compliance state,
problem+json errors, Basic auth, and the limit of simultaneous connections. Field names and types
follow Mailchimp's Marketing API description 3.0.55; the contract suite checks every request and
answer against it. Test hooks (``seed``, ``members``, ``fail_next``, ``drop_next``,
``webhook_payload``...) share their names with the Brevo simulator so that one contract test
drives both.

Beside the API, a simulator-only admin API under ``/_sim`` (same Basic auth; no fault injection,
connection limit or call log) plays what a member does on Mailchimp's side, which the API can
only approximate (``PATCH .../members/{hash}`` with a ``status`` is the API's own way, as syncd
or a user's app would do it):

- ``POST /_sim/lists/{list_id}/members/{email or subscriber hash}/{action}`` with ``action``:
  ``unsubscribe`` (the member's click; ``{"reason": "abuse"}`` for a spam complaint),
  ``resubscribe`` (the member signs up again through a form: subscribed, new opt-in time;
  ``{"ip": ...}`` optional), ``clean`` (a hard bounce: cleaned) and ``change-email``
  (``{"new_email": ...}``: the member updates their address; the subscriber hash follows).

No webhook is sent by these actions: ``fire_webhook`` (or ``webhook_payload``) makes the one
Mailchimp would send.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.base import EventKind, RemoteMember, RemoteStatus, Target
from connectors.simulators.harness import ThreadedServer

PROVIDER = "mailchimp"
ADMIN_PREFIX = "/_sim/"
BATCH_SUBSCRIBE_MAX = (
    500  # https://mailchimp.com/developer/marketing/api/lists/batch-subscribe-or-unsubscribe/
)
SEGMENT_BATCH_MAX = (
    500  # https://mailchimp.com/developer/marketing/api/list-segments/batch-add-or-remove-members/
)
PAGE_MAX = 1000  # https://mailchimp.com/developer/marketing/docs/methods-parameters/#pagination
DOCS_ERRORS = "https://mailchimp.com/developer/marketing/docs/errors/"
# Merge tags the simulator knows for seed()/members(), in the master base's names.
_MERGE = {
    "first_name": "FNAME",
    "last_name": "LNAME",
    "phone": "PHONE",
    "company": "COMPANY",
    "city": "CITY",
    "country": "COUNTRY",
}
_STATUSES = {"subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived"}
# https://mailchimp.com/help/about-compliance-state/ : unsubscribed/cleaned come back only via pending
_COMPLIANCE = {"unsubscribed", "cleaned"}
_MEMBER_ACTIONS = ("unsubscribe", "resubscribe", "clean", "change-email")
_WRITABLE = _STATUSES - {"archived"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")


def subscriber_hash(email: str) -> str:
    # https://mailchimp.com/developer/marketing/docs/methods-parameters/#path-parameters
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def _iso(ts: datetime | None) -> str:
    return ts.astimezone(UTC).replace(microsecond=0).isoformat() if ts else ""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class CallRecord:
    method: str
    path: str
    status: int | None = None  # None: the connection was dropped
    emails: tuple[str, ...] = ()  # members a batch call carried


@dataclass
class _Member:
    email: str
    status: str
    merge_fields: dict[str, str] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)
    last_changed: datetime = field(default_factory=_now)
    ip_signup: str = ""
    timestamp_signup: datetime | None = None
    ip_opt: str = ""
    timestamp_opt: datetime | None = None
    status_before_archive: str | None = None
    unsubscribe_reason: str = ""
    id: str = ""  # subscriber hash, set on first write

    def __post_init__(self) -> None:
        self.id = self.id or subscriber_hash(self.email)


@dataclass
class _Audience:
    id: str
    name: str
    members: dict[str, _Member] = field(default_factory=dict)  # by subscriber hash
    segments: dict[int, str] = field(default_factory=dict)  # static segments = tags: id -> name
    forgotten: set[str] = field(default_factory=set)
    created_at: datetime = field(default_factory=_now)


class ProblemError(Exception):
    def __init__(self, status: int, title: str, detail: str, errors: list[dict] | None = None):
        super().__init__(detail)
        self.status, self.title, self.detail, self.errors = status, title, detail, errors


def _problem(status: int, title: str, detail: str, instance: str = "", **extra: Any) -> Response:
    # https://mailchimp.com/developer/marketing/docs/errors/ : errors are application/problem+json
    body = {
        "type": DOCS_ERRORS,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance or secrets.token_hex(8),
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


class MailchimpSimulator:
    provider = PROVIDER

    def __init__(self, api_key: str = "sim-key-us1", max_connections: int = 10):
        self.api_key = api_key
        self.max_connections = max_connections
        self.latency_s = 0.0
        self.rate_limit_per_s: float | None = None
        self.webhook_secret: str | None = None  # when set, fire_webhook signs its deliveries
        self.calls: list[CallRecord] = []
        self._lock = threading.RLock()
        self._audiences: dict[str, _Audience] = {}
        self._next_segment = 1000
        self._fail: list[tuple[int, bytes | None]] = []
        self._drop = 0
        self._in_flight = 0
        self._next_allowed = 0.0
        self._server: ThreadedServer | None = None
        self._router = Starlette(routes=self._routes())

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> MailchimpSimulator:
        self._server = ThreadedServer(self.app).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MailchimpSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        assert self._server, "simulator not started"
        return f"{self._server.url}/3.0"

    # --- test hooks --------------------------------------------------------------------------

    @property
    def write_calls(self) -> int:
        with self._lock:
            return sum(1 for c in self.calls if c.method != "GET")  # /_sim calls are not logged

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def fail_next(self, n: int, status: int = 503, body: bytes | None = None) -> None:
        """Answer the next n requests with ``status``: problem+json, or ``body`` as given (b"": empty;
        marked ``x-sim-injected: raw``, since it is not an answer the API itself would give).

        Replaces any failures still pending: ``fail_next(0)`` clears them.
        """
        with self._lock:
            self._fail = [(status, body)] * n

    def drop_next(self, n: int) -> None:
        """Close the next n requests' connections without answering; ``drop_next(0)`` clears."""
        with self._lock:
            self._drop = n

    def create_target(self, name: str = "x", tag: str | None = None) -> Target:
        with self._lock:
            audience = self._new_audience(name)
            if tag:
                self._segment_id(audience, tag, create=True)
        return Target(PROVIDER, audience.id, tag)

    def seed(self, target: Target, members: list[dict]) -> None:
        with self._lock:
            audience = self._audience(target.list_id)
            for spec in members:
                email = spec["email"]
                status = spec.get("status", "subscribed")
                changed = spec.get("changed_at") or _now()
                member = _Member(
                    email=email,
                    status=status,
                    merge_fields={tag: spec[k] for k, tag in _MERGE.items() if spec.get(k) is not None},
                    last_changed=changed,
                    ip_signup=spec.get("ip_signup", ""),
                    timestamp_signup=spec.get("timestamp_signup"),
                    ip_opt=spec.get("ip_opt", ""),
                    timestamp_opt=spec.get("timestamp_opt") or changed,
                    tags=set(spec.get("tags", ())),
                )
                if target.tag:
                    member.tags.add(target.tag)
                for tag in member.tags:
                    self._segment_id(audience, tag, create=True)
                audience.members[subscriber_hash(email)] = member

    def members(self, target: Target) -> dict[str, RemoteMember]:
        """What the connector would report on a full pull: archived members are not listed."""
        with self._lock:
            audience = self._audience(target.list_id)
            return {
                m.email.lower(): self._remote(audience, m)
                for m in audience.members.values()
                if m.status != "archived" and (not target.tag or target.tag in m.tags)
            }

    def member_status(self, target: Target, email: str) -> str | None:
        """The raw Mailchimp status, archived included (None: unknown to the audience)."""
        with self._lock:
            m = self._audience(target.list_id).members.get(subscriber_hash(email))
            return m.status if m else None

    def is_blocked(self, email: str) -> bool:
        return False  # Mailchimp has no account-wide block list

    def unsubscribe(self, email: str, target: Target) -> None:
        # https://mailchimp.com/help/unsubscribes/ : the link unsubscribes from this audience only
        with self._lock:
            audience = self._audience(target.list_id)
            self._member_acts(audience, audience.members[subscriber_hash(email)], "unsubscribe", {})

    def webhook_payload(
        self, kind: EventKind | str, email: str, target: Target | None = None, **extra: Any
    ) -> tuple[bytes, str]:
        """Body and content type exactly as Mailchimp posts them (form-encoded, ``data[...]`` keys).

        https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/
        """
        if kind not in _WEBHOOK_SHAPES:
            raise ValueError(
                f"Mailchimp sends no webhook for {kind!r} (no account-wide unsubscribe, no soft bounce)"
            )
        mc_type, data = _WEBHOOK_SHAPES[kind][0], dict(_WEBHOOK_SHAPES[kind][1])
        for key in ("action", "reason"):
            if key in extra:
                data[key] = extra.pop(key)
        fired = extra.pop("fired_at", None) or _now()
        list_id = target.list_id if target else extra.pop("list_id", "a1b2c3d4e5")
        merges = {"EMAIL": email, **{_MERGE[k]: extra.pop(k) for k in list(extra) if k in _MERGE}}
        pairs: list[tuple[str, str]] = [("type", mc_type), ("fired_at", fired.strftime("%Y-%m-%d %H:%M:%S"))]
        if mc_type == "upemail":
            new_email = extra.pop("new_email")
            pairs += [
                ("data[list_id]", list_id),
                ("data[new_id]", subscriber_hash(new_email)),
                ("data[new_email]", new_email),
                ("data[old_email]", email),
            ]
        elif mc_type == "cleaned":
            pairs += [
                ("data[list_id]", list_id),
                ("data[campaign_id]", extra.pop("campaign_id", "4fjk2ma9xd")),
                ("data[reason]", data.get("reason", "hard")),
                ("data[email]", email),
            ]
        elif mc_type == "campaign":
            pairs += [
                ("data[id]", "5aa2102003"),
                ("data[subject]", extra.pop("subject", "Campaign")),
                ("data[status]", "sent"),
                ("data[reason]", ""),
                ("data[list_id]", list_id),
            ]
        else:
            pairs += [(f"data[{k}]", v) for k, v in data.items()]
            pairs += [
                ("data[id]", subscriber_hash(email)[:10]),
                ("data[list_id]", list_id),
                ("data[email]", email),
                ("data[email_type]", "html"),
            ]
            pairs += [(f"data[merges][{k}]", v) for k, v in merges.items()]
            pairs += [("data[ip_opt]", extra.pop("ip_opt", "10.20.10.30"))]
            if mc_type == "subscribe":
                pairs += [("data[ip_signup]", extra.pop("ip_signup", "10.20.10.30"))]
            if mc_type == "unsubscribe":
                pairs += [("data[campaign_id]", extra.pop("campaign_id", "cb398d21d2"))]
        pairs += [(f"data[{k}]", str(v)) for k, v in extra.items()]
        return urlencode(pairs).encode(), "application/x-www-form-urlencoded"

    def sign(self, body: bytes, secret: str, t: int | None = None) -> str:
        t = int(time.time()) if t is None else t
        mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return f"t={t},v1={mac}"

    def fire_webhook(
        self, url: str, kind: EventKind | str, email: str, target: Target | None = None, **extra: Any
    ) -> httpx.Response:
        body, content_type = self.webhook_payload(kind, email, target, **extra)
        headers = {"Content-Type": content_type, "User-Agent": "MailChimp.com"}
        if self.webhook_secret:
            headers["X-Mailchimp-Signature"] = self.sign(body, self.webhook_secret)
        return httpx.post(url, content=body, headers=headers, timeout=10)

    def check_webhook_url(self, url: str) -> httpx.Response:
        # A GET validates the URL: https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/
        return httpx.get(url, headers={"User-Agent": "MailChimp.com"}, timeout=10)

    # --- ASGI entry: auth, faults, connection limit, latency ----------------------------------

    @property
    def app(self) -> MailchimpSimulator:
        """The ASGI application (the simulator itself)."""
        return self

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"].startswith(ADMIN_PREFIX):
            # The simulator's own admin API: authenticated, but no faults, limits or call log.
            if not self._authorised(scope):
                response = _problem(401, "API Key Invalid", "Your API key may be invalid.", scope["path"])
                return await response(scope, receive, send)
            return await self._router(scope, receive, send)
        record = CallRecord(scope["method"], scope["path"])
        with self._lock:
            self.calls.append(record)
            drop = self._drop > 0
            self._drop -= drop
            fail = self._fail.pop(0) if self._fail and not drop else None
        if drop:
            await _drop_connection(send)
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
            if response is None:
                await self._router(scope, receive, recording_send)
            else:
                await response(scope, receive, recording_send)
        finally:
            self._in_flight -= 1

    def _gate(self, scope: dict, fail: tuple[int, bytes | None] | None) -> Response | None:
        path = scope["path"]
        if fail is not None:
            status, body = fail
            if body is not None:
                # Raw, as a gateway in front of the API might answer: marked so that a check of
                # the API's description knows this answer is not the API's.
                return Response(body, status_code=status, headers={"x-sim-injected": "raw"})
            return _problem(
                status, "Service Unavailable" if status >= 500 else "Error", "Injected failure", path
            )
        if self._in_flight > self.max_connections:
            # https://mailchimp.com/developer/marketing/docs/fundamentals/#api-limits : 10 simultaneous
            # connections; beyond that 429, with no rate-limit headers.
            return _problem(
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
                return _problem(429, "Too Many Requests", "Too many requests per second.", path)
            self._next_allowed = now + interval
        if not path.startswith("/3.0/"):
            return _problem(404, "Resource Not Found", "The requested resource could not be found.", path)
        if not self._authorised(scope):
            # https://mailchimp.com/developer/marketing/docs/fundamentals/#authentication-methods
            return _problem(
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

    # --- routes ------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        h = self._handle
        return [
            Route("/3.0/ping", h(self._ping), methods=["GET"]),
            Route("/3.0/lists", h(self._create_list), methods=["POST"]),
            Route("/3.0/lists/{list_id}", h(self._get_list), methods=["GET"]),
            Route("/3.0/lists/{list_id}", h(self._batch_subscribe), methods=["POST"]),
            Route("/3.0/lists/{list_id}/members", h(self._list_members), methods=["GET"]),
            Route("/3.0/lists/{list_id}/members", h(self._add_member), methods=["POST"]),
            Route(
                "/3.0/lists/{list_id}/members/{hash}",
                h(self._member),
                methods=["GET", "PUT", "PATCH", "DELETE"],
            ),
            Route(
                "/3.0/lists/{list_id}/members/{hash}/actions/delete-permanent",
                h(self._forget),
                methods=["POST"],
            ),
            Route("/3.0/lists/{list_id}/segments", h(self._segments), methods=["GET", "POST"]),
            Route("/3.0/lists/{list_id}/segments/{seg_id:int}", h(self._batch_segment), methods=["POST"]),
            Route("/3.0/lists/{list_id}/tag-search", h(self._tag_search), methods=["GET"]),
            Route("/_sim/lists/{list_id}/members/{member}/{action}", h(self._admin_action), methods=["POST"]),
        ]

    def _handle(self, fn: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            body = None
            if request.method in ("POST", "PUT", "PATCH"):
                raw = await request.body()
                try:
                    body = _json_loads(raw) if raw.strip() else None
                except ValueError:
                    return _problem(
                        400,
                        "JSON Parse Error",
                        "We encountered an unspecified JSON parsing error.",
                        request.url.path,
                    )
            try:
                with self._lock:
                    result = fn(request, body)
            except ProblemError as e:
                extra = {"errors": e.errors} if e.errors else {}
                return _problem(e.status, e.title, e.detail, request.url.path, **extra)
            if result is None:
                return Response(status_code=204)
            return JSONResponse(result)

        return endpoint

    def _ping(self, request: Request, body: Any) -> dict:
        return {"health_status": "Everything's Chimpy!"}

    def _create_list(self, request: Request, body: Any) -> dict:
        # https://mailchimp.com/developer/marketing/api/lists/add-list/ : these fields are required
        required = ("name", "contact", "permission_reminder", "email_type_option", "campaign_defaults")
        missing = [k for k in required if not isinstance(body, dict) or body.get(k) in (None, "")]
        if missing:
            raise ProblemError(
                400,
                "Invalid Resource",
                "The resource submitted could not be validated.",
                [{"field": k, "message": "This value should not be blank."} for k in missing],
            )
        return self._list_json(self._new_audience(body["name"]))

    def _get_list(self, request: Request, body: Any) -> dict:
        return self._list_json(self._audience_or_404(request))

    def _batch_subscribe(self, request: Request, body: Any) -> dict:
        audience = self._audience_or_404(request)
        members = (body or {}).get("members")
        if not isinstance(members, list):
            raise ProblemError(
                400,
                "Invalid Resource",
                "Schema describes array, object found instead",
                [{"field": "members", "message": "Required"}],
            )
        if len(members) > BATCH_SUBSCRIBE_MAX:
            # https://mailchimp.com/developer/marketing/api/lists/batch-subscribe-or-unsubscribe/
            raise ProblemError(
                400, "Invalid Resource", f"The maximum number of members per batch is {BATCH_SUBSCRIBE_MAX}."
            )
        update_existing = bool(body.get("update_existing"))
        request.scope["sim_record"].emails = tuple(str(m.get("email_address", "")) for m in members)
        created, updated, errors, seen = [], [], [], set()
        for spec in members:
            email = str(spec.get("email_address", ""))
            try:
                h = subscriber_hash(email)
                if h in seen:
                    raise ProblemError(400, "Duplicate", f"{email} appears more than once in this batch.")
                seen.add(h)
                member, is_new = self._write_member(
                    audience, email, spec, spec.get("status"), update_existing, h=h
                )
            except ProblemError as e:
                errors.append(
                    {
                        "email_address": email,
                        "error": e.detail,
                        "error_code": _error_code(e),
                        "field": "",
                        "field_message": "",
                    }
                )
                continue
            (created if is_new else updated).append(self._member_json(audience, member, brief=True))
        return {
            "new_members": created,
            "updated_members": updated,
            "errors": errors,
            "total_created": len(created),
            "total_updated": len(updated),
            "error_count": len(errors),
            "_links": [],
        }

    def _add_member(self, request: Request, body: Any) -> dict:
        audience = self._audience_or_404(request)
        body = body or {}
        member, _ = self._write_member(
            audience,
            str(body.get("email_address", "")),
            body,
            body.get("status"),
            update_existing=False,
            single=True,
        )
        return self._member_json(audience, member)

    def _member(self, request: Request, body: Any) -> dict | None:
        audience = self._audience_or_404(request)
        h = request.path_params["hash"].lower()
        member = audience.members.get(h)
        method = request.method
        if method == "GET":
            if not member:
                raise self._not_found(request)
            return self._member_json(audience, member)
        if method == "DELETE":
            # https://mailchimp.com/developer/marketing/api/list-members/archive-list-member/
            if not member or member.status == "archived":
                raise self._not_found(request)
            member.status_before_archive, member.status = member.status, "archived"
            member.last_changed = _now()
            return None
        body = body or {}
        if method == "PATCH" and not member:
            raise self._not_found(request)
        email = str(body.get("email_address") or (member.email if member else ""))
        status = body.get("status") or (body.get("status_if_new") if not member else None)
        if subscriber_hash(email) != h:
            raise ProblemError(
                400, "Invalid Resource", "The email address does not match the subscriber hash."
            )
        member, _ = self._write_member(audience, email, body, status, update_existing=True, single=True)
        return self._member_json(audience, member)

    def _forget(self, request: Request, body: Any) -> None:
        # https://mailchimp.com/developer/marketing/api/list-members/delete-list-member/ : permanent, GDPR
        audience = self._audience_or_404(request)
        h = request.path_params["hash"].lower()
        if audience.members.pop(h, None) is None:
            raise self._not_found(request)
        audience.forgotten.add(h)
        return None

    def _segments(self, request: Request, body: Any) -> dict:
        audience = self._audience_or_404(request)
        if request.method == "POST":
            name = str((body or {}).get("name", "")).strip()
            if not name:
                raise ProblemError(400, "Invalid Resource", "The segment name is required.")
            if name in audience.segments.values():
                raise ProblemError(400, "Invalid Resource", "Bad Request: Tag already exists.")
            seg_id = self._segment_id(audience, name, create=True)
            for email in (body or {}).get("static_segment") or []:
                m = audience.members.get(subscriber_hash(email))
                if m and m.status != "archived":
                    m.tags.add(name)
            return self._segment_json(audience, seg_id)
        count, offset = self._paging(request)
        ids = sorted(audience.segments)
        return {
            "segments": [self._segment_json(audience, i) for i in ids[offset : offset + count]],
            "list_id": audience.id,
            "total_items": len(ids),
        }

    def _tag_search(self, request: Request, body: Any) -> dict:
        audience = self._audience_or_404(request)
        prefix = request.query_params.get("name", "")
        tags = [{"id": i, "name": n} for i, n in sorted(audience.segments.items()) if n.startswith(prefix)]
        return {"tags": tags, "total_items": len(tags)}

    def _batch_segment(self, request: Request, body: Any) -> dict:
        audience = self._audience_or_404(request)
        seg_id = request.path_params["seg_id"]
        if seg_id not in audience.segments:
            raise self._not_found(request)
        name = audience.segments[seg_id]
        body = body or {}
        to_add, to_remove = body.get("members_to_add") or [], body.get("members_to_remove") or []
        if len(to_add) > SEGMENT_BATCH_MAX or len(to_remove) > SEGMENT_BATCH_MAX:
            # https://mailchimp.com/developer/marketing/api/list-segments/batch-add-or-remove-members/
            raise ProblemError(
                400, "Invalid Resource", f"A maximum of {SEGMENT_BATCH_MAX} members can be sent per request."
            )
        request.scope["sim_record"].emails = tuple(to_add) + tuple(to_remove)
        added, removed, absent = [], [], []
        for email, adding in [(e, True) for e in to_add] + [(e, False) for e in to_remove]:
            m = audience.members.get(subscriber_hash(email))
            if not m or m.status == "archived":
                absent.append(email)  # "emails not present on the list will be ignored" (same page)
                continue
            (m.tags.add if adding else m.tags.discard)(name)
            (added if adding else removed).append(self._member_json(audience, m, brief=True))
        errors = (
            [{"email_addresses": absent, "error": "Email addresses are not subscribed to the list."}]
            if absent
            else []
        )
        return {
            "members_added": added,
            "members_removed": removed,
            "errors": errors,
            "total_added": len(added),
            "total_removed": len(removed),
            "error_count": len(absent),
        }

    def _list_members(self, request: Request, body: Any) -> dict:
        audience = self._audience_or_404(request)
        q = request.query_params
        count, offset = self._paging(request)
        status = q.get("status")
        if status and status not in _STATUSES:
            raise ProblemError(400, "Invalid Resource", f"Invalid status: {status}")
        since = _parse_ts(q.get("since_last_changed"), "since_last_changed")
        # Archived contacts are listed only when asked for by status (assumed from the Archive page:
        # https://mailchimp.com/help/archive-unarchive-contacts/ - they leave the audience's counts).
        rows = [
            m
            for m in audience.members.values()
            if (m.status == status if status else m.status != "archived")
            and (since is None or m.last_changed > since)
        ]
        page = [self._member_json(audience, m) for m in rows[offset : offset + count]]
        result = {"members": page, "list_id": audience.id, "total_items": len(rows), "_links": []}
        return _select_fields(result, q.get("fields"), q.get("exclude_fields"))

    def _admin_action(self, request: Request, body: Any) -> dict:
        audience = self._audience_or_404(request)
        key = request.path_params["member"]
        member = audience.members.get(subscriber_hash(key) if "@" in key else key.lower())
        if member is None:
            raise self._not_found(request)
        action = request.path_params["action"]
        if action not in _MEMBER_ACTIONS:
            raise ProblemError(
                400, "Invalid Resource", f"Unknown action {action!r}: one of {', '.join(_MEMBER_ACTIONS)}."
            )
        member = self._member_acts(audience, member, action, body if isinstance(body, dict) else {})
        return self._member_json(audience, member)

    # --- state rules -------------------------------------------------------------------------

    def _member_acts(self, audience: _Audience, member: _Member, action: str, data: dict) -> _Member:
        """What a member does on Mailchimp's side (not through the API): see the module's docstring."""
        now = _now()
        if action == "unsubscribe":
            member.status = "unsubscribed"
            member.unsubscribe_reason = "abuse" if data.get("reason") == "abuse" else "manual"
        elif action == "resubscribe":
            # A signup form records the member's own opt-in: the way out of the compliance state.
            member.status, member.timestamp_opt, member.ip_opt = "subscribed", now, str(data.get("ip", ""))
            member.unsubscribe_reason = ""
        elif action == "clean":
            member.status = "cleaned"
        elif action == "change-email":
            new_email = str(data.get("new_email", "")).strip()
            if not _EMAIL.match(new_email):
                raise ProblemError(400, "Invalid Resource", "new_email must be a valid email address.")
            new_hash = subscriber_hash(new_email)
            if new_hash in audience.members and new_hash != member.id:
                raise ProblemError(400, "Member Exists", f"{new_email} is already a list member.")
            del audience.members[member.id]
            member.email, member.id = new_email, new_hash
            audience.members[new_hash] = member
        member.status_before_archive = None
        member.last_changed = now
        return member

    def _write_member(
        self,
        audience: _Audience,
        email: str,
        spec: dict,
        status: str | None,
        update_existing: bool,
        single: bool = False,
        h: str | None = None,
    ) -> tuple[_Member, bool]:
        if not _EMAIL.match(email):
            raise ProblemError(
                400, "Invalid Resource", f"{email} looks fake or invalid, please enter a real email address."
            )
        h = h or subscriber_hash(email)
        if status is not None and status not in _WRITABLE:
            raise ProblemError(400, "Invalid Resource", f"Invalid status: {status}")
        member = audience.members.get(h)
        if member is None and h in audience.forgotten:
            # https://mailchimp.com/developer/marketing/docs/errors/ "Forgotten Email Not Subscribed"
            raise ProblemError(
                400,
                "Forgotten Email Not Subscribed",
                f"{email} was permanently deleted and cannot be re-imported. "
                "The contact must re-subscribe to get back on the list.",
            )
        if member is not None and not update_existing and not single:
            raise ProblemError(
                400,
                "Member Exists",
                f"{email} is already a list member. Use PUT to insert or update list members.",
            )
        if member is not None and member.status != "archived" and single and not update_existing:
            raise ProblemError(400, "Member Exists", f"{email} is already a list member.")
        now = _now()
        is_new = member is None
        if member is None:
            if status is None:
                raise ProblemError(400, "Invalid Resource", "The status field is required for a new member.")
            member = _Member(
                email=email,
                status="",
                last_changed=now,
                id=h,
                ip_signup=spec.get("ip_signup", ""),
                timestamp_signup=_parse_ts(spec.get("timestamp_signup"), "timestamp_signup"),
            )
        previous = member.status_before_archive if member.status == "archived" else member.status
        if status == "subscribed" and previous in _COMPLIANCE:
            # https://mailchimp.com/help/about-compliance-state/ : resubscribing needs the contact's own
            # confirmation, so the API refuses; the way back is status "pending". An archived contact
            # keeps its former status here (conservative reading of the same page).
            raise ProblemError(
                400,
                "Member In Compliance State",
                f"{email} is in a compliance state due to unsubscribe, bounce, or compliance "
                "review and cannot be subscribed.",
            )
        changed = is_new or member.status == "archived"
        if status and status != member.status:
            changed = True
            member.status = status
            if status in ("subscribed", "pending"):
                member.ip_opt = spec.get("ip_opt", member.ip_opt if status == "subscribed" else "")
                member.timestamp_opt = _parse_ts(spec.get("timestamp_opt"), "timestamp_opt") or now
        merges = {k: str(v) for k, v in (spec.get("merge_fields") or {}).items()}
        if any(member.merge_fields.get(k) != v for k, v in merges.items()):
            member.merge_fields.update(merges)
            changed = True
        if member.status != "archived":
            member.status_before_archive = None
        if changed:
            member.last_changed = now
        audience.members[h] = member
        return member, is_new

    # --- helpers -----------------------------------------------------------------------------

    def _new_audience(self, name: str) -> _Audience:
        audience = _Audience(id=secrets.token_hex(5), name=name)
        self._audiences[audience.id] = audience
        return audience

    def _audience(self, list_id: str) -> _Audience:
        return self._audiences[list_id]

    def _audience_or_404(self, request: Request) -> _Audience:
        audience = self._audiences.get(request.path_params["list_id"])
        if audience is None:
            raise self._not_found(request)
        return audience

    @staticmethod
    def _not_found(request: Request) -> ProblemError:
        return ProblemError(404, "Resource Not Found", "The requested resource could not be found.")

    def _segment_id(self, audience: _Audience, name: str, create: bool = False) -> int:
        for seg_id, seg_name in audience.segments.items():
            if seg_name == name:
                return seg_id
        self._next_segment += 1
        audience.segments[self._next_segment] = name
        return self._next_segment

    @staticmethod
    def _paging(request: Request) -> tuple[int, int]:
        try:
            count = int(request.query_params.get("count", 10))
            offset = int(request.query_params.get("offset", 0))
        except ValueError as exc:
            raise ProblemError(400, "Invalid Resource", "count and offset must be integers.") from exc
        if count > PAGE_MAX or count < 0 or offset < 0:
            # https://mailchimp.com/developer/marketing/docs/methods-parameters/#pagination
            raise ProblemError(400, "Invalid Resource", f"count must be between 0 and {PAGE_MAX}.")
        return count, offset

    def _list_json(self, a: _Audience) -> dict:
        live = [m for m in a.members.values() if m.status != "archived"]
        return {
            "id": a.id,
            "web_id": abs(hash(a.id)) % 10**6,
            "name": a.name,
            "date_created": _iso(a.created_at),
            "list_rating": 0,
            "email_type_option": False,
            "stats": {
                "member_count": sum(m.status == "subscribed" for m in live),
                "unsubscribe_count": sum(m.status == "unsubscribed" for m in live),
                "cleaned_count": sum(m.status == "cleaned" for m in live),
                "total_contacts": len(live),
            },
        }

    def _segment_json(self, a: _Audience, seg_id: int) -> dict:
        name = a.segments[seg_id]
        return {
            "id": seg_id,
            "name": name,
            "type": "static",
            "list_id": a.id,
            "member_count": sum(name in m.tags for m in a.members.values() if m.status != "archived"),
            "created_at": _iso(a.created_at),
            "updated_at": _iso(a.created_at),
        }

    def _member_json(self, a: _Audience, m: _Member, brief: bool = False) -> dict:
        h = m.id
        if brief:
            return {"id": h, "email_address": m.email, "status": m.status}
        tags = [{"id": i, "name": n} for i, n in a.segments.items() if n in m.tags]
        body = {
            "id": h,
            "email_address": m.email,
            "unique_email_id": h[:10],
            "contact_id": h,
            "email_type": "html",
            "status": m.status,
            "merge_fields": dict(m.merge_fields),
            "ip_signup": m.ip_signup,
            "timestamp_signup": _iso(m.timestamp_signup),
            "ip_opt": m.ip_opt,
            "timestamp_opt": _iso(m.timestamp_opt),
            "last_changed": _iso(m.last_changed),
            "language": "",
            "vip": False,
            "list_id": a.id,
            "tags_count": len(tags),
            "tags": tags,
        }
        if m.unsubscribe_reason and m.status == "unsubscribed":
            body["unsubscribe_reason"] = m.unsubscribe_reason
        # The description types both timestamps as date-time: an unknown one is left out, not "".
        for name in ("timestamp_signup", "timestamp_opt"):
            if not body[name]:
                del body[name]
        return body

    def _remote(self, a: _Audience, m: _Member) -> RemoteMember:
        evidence = {
            k: v
            for k, v in (
                ("ip_signup", m.ip_signup),
                ("timestamp_signup", _iso(m.timestamp_signup)),
                ("ip_opt", m.ip_opt),
                ("timestamp_opt", _iso(m.timestamp_opt)),
            )
            if v
        }
        return RemoteMember(
            email=m.email.lower(),
            status=RemoteStatus(m.status),
            fields={k: m.merge_fields[tag] for k, tag in _MERGE.items() if m.merge_fields.get(tag)},
            tags=tuple(sorted(m.tags)),
            remote_id=m.id,
            changed_at=m.last_changed,
            evidence=evidence,
        )


# Mailchimp's webhook for each normalised event kind: (type, data fields).
# https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/#webhook-events
_WEBHOOK_SHAPES: dict[Any, tuple[str, dict[str, str]]] = {
    EventKind.SUBSCRIBED: ("subscribe", {}),
    EventKind.UNSUBSCRIBED: ("unsubscribe", {"action": "unsub", "reason": "manual"}),
    EventKind.COMPLAINED: ("unsubscribe", {"action": "unsub", "reason": "abuse"}),
    EventKind.DELETED: ("unsubscribe", {"action": "delete", "reason": "manual"}),
    EventKind.BOUNCED_HARD: ("cleaned", {"reason": "hard"}),
    EventKind.PROFILE_UPDATED: ("profile", {}),
    EventKind.EMAIL_CHANGED: ("upemail", {}),
    "campaign": ("campaign", {}),
    "cleaned": ("cleaned", {"reason": "hard"}),
}


def _error_code(e: ProblemError) -> str:
    return "ERROR_CONTACT_EXISTS" if e.title == "Member Exists" else "ERROR_GENERIC"


def _json_loads(raw: bytes) -> Any:
    return json.loads(raw)


def _parse_ts(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value
    try:
        ts = datetime.fromisoformat(str(value).replace(" ", "T"))
    except ValueError as exc:
        raise ProblemError(400, "Invalid Resource", f"{name} must be an ISO 8601 date-time.") from exc
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _select_fields(result: dict, fields: str | None, exclude: str | None) -> dict:
    """``fields`` / ``exclude_fields`` with dot notation into sub-objects and lists of objects.

    https://mailchimp.com/developer/marketing/docs/methods-parameters/#partial-responses
    """
    if fields:
        result = _keep(result, [f.strip().split(".") for f in fields.split(",") if f.strip()])
    if exclude:
        for path in (f.strip().split(".") for f in exclude.split(",") if f.strip()):
            _drop(result, path)
    return result


def _keep(obj: Any, paths: list[list[str]]) -> Any:
    if isinstance(obj, list):
        return [_keep(o, paths) for o in obj]
    if not isinstance(obj, dict) or any(not p for p in paths):
        return obj
    out = {}
    for key in obj:
        sub = [p[1:] for p in paths if p[0] == key]
        if sub:
            out[key] = obj[key] if any(not s for s in sub) else _keep(obj[key], sub)
    return out


def _drop(obj: Any, path: list[str]) -> None:
    if isinstance(obj, list):
        for o in obj:
            _drop(o, path)
    elif isinstance(obj, dict) and path[0] in obj:
        if len(path) == 1:
            del obj[path[0]]
        else:
            _drop(obj[path[0]], path[1:])


async def _drop_connection(send: Any) -> None:
    """Close the TCP connection without a response, as a network failure looks to the client."""
    cycle = getattr(send, "__self__", None)  # uvicorn's RequestResponseCycle
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("drop_next needs uvicorn's HTTP protocol")
    transport.close()
    cycle.disconnected = True
    await asyncio.sleep(0)


def serve(port: int, api_key: str, *, latency_s: float = 0.0) -> None:
    """Run a simulator in the foreground until interrupted (``syncd simulate mailchimp``)."""
    import uvicorn

    sim = MailchimpSimulator(api_key=api_key)
    sim.latency_s = latency_s
    uvicorn.run(sim.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
