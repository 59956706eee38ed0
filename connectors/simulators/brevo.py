"""A stateful Brevo API v3 on loopback, for tests and the demo.

Field names, status codes and error bodies follow Brevo's OpenAPI file (brevo-v3.yml); the
contract suite checks every request and answer against it. Each behaviour that mirrors a
documented Brevo rule cites its documentation page.

Beside the API (under ``/v3``), a simulator-only admin API under ``/_sim`` (same ``api-key``
header; no fault injection, rate limit or call log) sets up what real Brevo does not expose:

- ``GET /_sim/account``, ``PUT /_sim/account`` ``{"perListUnsubscription": true}``: the account
  feature Brevo enables on request. Off (the default account), a contact's unsubscribe click
  blocks the address account-wide (``emailBlacklisted``); on, it adds the campaign's list to the
  contact's ``listUnsubscribed`` instead. https://help.brevo.com/hc/en-us/articles/209502525
- ``POST /_sim/contacts/{email or id}/unsubscribe`` ``{"listId": 12}``: the contact's own click
  on the unsubscribe link of a campaign sent to that list, under the account's setting.

The account-wide block itself is the real API's: ``PUT /v3/contacts/{identifier}`` with
``{"emailBlacklisted": true}`` (``false`` lifts it).
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.base import EventKind, RemoteMember, RemoteStatus, Target
from connectors.simulators.harness import ThreadedServer

PROVIDER = "brevo"
ADMIN_PREFIX = "/_sim/"
# https://developers.brevo.com/reference/getcontactsfromlist : limit maximum 500
LIST_PAGE_MAX = 500
# https://developers.brevo.com/reference/getcontacts : limit maximum 1000
CONTACTS_PAGE_MAX = 1000
# https://developers.brevo.com/reference/getlists : limit maximum 50
LISTS_PAGE_MAX = 50
# https://developers.brevo.com/reference/addcontacttolist : at most 150 emails per call
LIST_BATCH_MAX = 150
# https://developers.brevo.com/reference/importcontacts : body up to 10 MB
IMPORT_MAX_BYTES = 10 * 1024 * 1024
# Stricter than a shape check, as Brevo is: no empty or doubled dots, a dotted domain.
VALID_EMAIL = re.compile(r"^(?!\.)(?!.*\.\.)[A-Za-z0-9._%+'-]+(?<!\.)@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
FIELD_ATTRIBUTES = {
    "first_name": "FIRSTNAME",
    "last_name": "LASTNAME",
    "phone": "SMS",
    "company": "COMPANY",
    "city": "CITY",
    "country": "COUNTRY",
}
# syncd kind -> the Brevo marketing webhook event name it arrives as.
# https://developers.brevo.com/docs/marketing-webhooks
WEBHOOK_EVENTS = {
    EventKind.UNSUBSCRIBED: "unsubscribe",
    EventKind.UNSUBSCRIBED_ALL: "unsubscribe",
    EventKind.BOUNCED_HARD: "hard_bounce",
    EventKind.BOUNCED_SOFT: "soft_bounce",
    EventKind.COMPLAINED: "spam",
    EventKind.SUBSCRIBED: "list_addition",
    EventKind.PROFILE_UPDATED: "contact_updated",
    EventKind.EMAIL_CHANGED: "contact_updated",
    EventKind.DELETED: "contact_deleted",
}


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def parse_iso(value: str) -> datetime:
    at = datetime.fromisoformat(value.strip().replace(" ", "+").replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    # errorModel: {"code": ..., "message": ...}
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


@dataclass
class Contact:
    id: int
    email: str
    created_at: datetime
    modified_at: datetime
    attributes: dict[str, Any] = field(default_factory=dict)
    email_blacklisted: bool = False
    sms_blacklisted: bool = False
    list_ids: list[int] = field(default_factory=list)
    list_unsubscribed: list[int] = field(default_factory=list)

    def as_json(self, extended: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "email": self.email,
            "id": self.id,
            "emailBlacklisted": self.email_blacklisted,
            "smsBlacklisted": self.sms_blacklisted,
            "createdAt": iso(self.created_at),
            "modifiedAt": iso(self.modified_at),
            "listIds": list(self.list_ids),
            "listUnsubscribed": list(self.list_unsubscribed),
            "attributes": dict(self.attributes),
        }
        if extended:
            body["statistics"] = {}
        return body


@dataclass
class BrevoList:
    id: int
    name: str
    folder_id: int
    created_at: datetime


@dataclass
class Process:
    id: int
    name: str
    ready_at: float
    pending: dict[str, Any] | None  # the import still to apply
    rejected: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CallRecord:
    method: str
    path: str
    status: int
    query: str = ""
    body: Any = None


class BrevoSimulator:
    provider = PROVIDER

    def __init__(self, api_key: str = "sim-key", rate_limit_per_s: float | None = None):
        self.api_key = api_key
        self.rate_limit_per_s = rate_limit_per_s
        self.rate_limit_window_s = 1.0
        self.latency_s = 0.0
        self.import_delay_s = 0.0  # > 0: imports stay "queued" that long
        self.fail_reset_s = 1.0  # x-sib-ratelimit-reset sent with fail_next(n, status=429)
        self.webhook_token: str | None = None  # the bearer token the webhooks it fires carry
        # The account feature "list-based unsubscriptions" (off on a default account).
        self.per_list_unsubscription = False
        self.outbox: list[dict[str, Any]] = []
        self.calls: list[CallRecord] = []
        self._lock = threading.RLock()
        self._contacts: dict[str, Contact] = {}
        self._by_id: dict[int, Contact] = {}
        self._lists: dict[int, BrevoList] = {}
        self._processes: dict[int, Process] = {}
        self._ids = itertools.count(1)
        self._list_ids = itertools.count(2)  # Brevo accounts start with list 1 in folder 1
        self._process_ids = itertools.count(1)
        self._fail: list[int] = []
        self._drop = 0
        self._window_start = 0.0
        self._window_count = 0
        self._server: ThreadedServer | None = None
        self._page_cache: tuple[Any, list[Contact]] = (None, [])
        self.app = Starlette(routes=self._routes())

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> BrevoSimulator:
        self._server = ThreadedServer(self)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> BrevoSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        assert self._server is not None, "simulator not started"
        return f"{self._server.url}/v3"

    # --- test hooks (same names as the Mailchimp simulator) ------------------------------------

    def create_target(self, name: str = "x", tag: str | None = None) -> Target:
        with self._lock:
            lst = BrevoList(next(self._list_ids), name, 1, datetime.now(UTC))
            self._lists[lst.id] = lst
            return Target(PROVIDER, str(lst.id))

    def seed(self, target: Target, members: list[dict[str, Any]]) -> None:
        list_id = int(target.list_id)
        with self._lock:
            for m in members:
                at = m.get("changed_at") or datetime.now(UTC)
                c = self._get_or_create(m["email"].lower(), at)
                c.modified_at = at
                for name, attr in FIELD_ATTRIBUTES.items():
                    if m.get(name):
                        c.attributes[attr] = m[name]
                self._add_to_list(c, list_id, at)
                status = m.get("status", "subscribed")
                if status == "blocked":
                    c.email_blacklisted = True
                elif status == "unsubscribed" and list_id not in c.list_unsubscribed:
                    c.list_unsubscribed.append(list_id)

    def members(self, target: Target) -> dict[str, RemoteMember]:
        list_id = int(target.list_id)
        with self._lock:
            self._settle()
            out = {}
            for c in self._contacts.values():
                if list_id not in c.list_ids:
                    continue
                if c.email_blacklisted:
                    status = RemoteStatus.BLOCKED
                elif list_id in c.list_unsubscribed:
                    status = RemoteStatus.UNSUBSCRIBED
                else:
                    status = RemoteStatus.SUBSCRIBED
                fields = {n: str(c.attributes[a]) for n, a in FIELD_ATTRIBUTES.items() if c.attributes.get(a)}
                out[c.email] = RemoteMember(
                    c.email,
                    status,
                    fields,
                    remote_id=str(c.id),
                    changed_at=parse_iso(iso(c.modified_at)),
                    unsubscribed_from=tuple(str(i) for i in c.list_unsubscribed),
                )
            return out

    def is_blocked(self, email: str) -> bool:
        with self._lock:
            c = self._contacts.get(email.lower())
            return bool(c and c.email_blacklisted)

    @property
    def write_calls(self) -> int:
        return sum(1 for c in self.calls if c.method != "GET" and c.path.startswith("/v3/contacts"))

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next ``n`` API requests answer ``status`` (replaces any pending failures; 0 clears)."""
        with self._lock:
            self._fail = [status] * n

    def drop_next(self, n: int) -> None:
        """The next ``n`` API requests get no answer: the connection is closed (0 clears)."""
        with self._lock:
            self._drop = n

    def unsubscribe(self, email: str, target: Target) -> None:
        """The contact blocked account-wide *and* the list recorded in listUnsubscribed, whatever
        the account's setting: a blocked contact whose per-list reason Brevo shows. A real click
        gives one or the other, by the account's setting: see ``POST /_sim/contacts/.../unsubscribe``.
        https://help.brevo.com/hc/en-us/articles/208802209"""
        with self._lock:
            c = self._contacts[email.lower()]
            now = datetime.now(UTC)
            self._unsubscribe_from_list(c, int(target.list_id), now)
            self._block(c, now)

    def contact_unsubscribes(self, email: str, list_id: int) -> None:
        """The contact clicks the unsubscribe link of a campaign sent to ``list_id``: Brevo blocks
        the address account-wide, or, with the account's list-based unsubscriptions, records the
        list in listUnsubscribed only. https://help.brevo.com/hc/en-us/articles/209502525"""
        with self._lock:
            c = self._contacts[email.lower()]
            now = datetime.now(UTC)
            if self.per_list_unsubscription:
                self._unsubscribe_from_list(c, list_id, now)
            else:
                self._block(c, now)

    def webhook_payload(
        self, kind: EventKind, email: str, target: Target | None = None, **extra: Any
    ) -> tuple[bytes, str]:
        at: datetime = extra.pop("occurred_at", None) or datetime.now(UTC)
        c = self._contacts.get(email.lower())
        payload: dict[str, Any] = {
            "event": WEBHOOK_EVENTS[kind],
            "email": email,
            "id": c.id if c else 1,
            "date_event": at.strftime("%Y-%m-%d %H:%M:%S"),  # account time zone in real traffic
            "ts_event": int(at.timestamp()),
            "ts_epoch": int(at.timestamp() * 1000),
        }
        if kind in (
            EventKind.UNSUBSCRIBED,
            EventKind.BOUNCED_HARD,
            EventKind.BOUNCED_SOFT,
            EventKind.COMPLAINED,
        ):
            payload.update({"camp_id": extra.pop("camp_id", 1), "tag": "", "sending_ip": "185.41.28.109"})
        if kind in (EventKind.UNSUBSCRIBED, EventKind.SUBSCRIBED) and target is not None:
            payload["list_id"] = [int(target.list_id)]
        if kind in (EventKind.BOUNCED_HARD, EventKind.BOUNCED_SOFT):
            payload["reason"] = extra.pop("reason", "mailbox does not exist")
        if kind in (EventKind.PROFILE_UPDATED, EventKind.EMAIL_CHANGED):
            fields = extra.pop("fields", {})
            attrs = {FIELD_ATTRIBUTES[k]: v for k, v in fields.items() if k in FIELD_ATTRIBUTES}
            if kind is EventKind.EMAIL_CHANGED:
                attrs["EMAIL"] = extra.pop("new_email")
            payload["attributes"] = attrs
        payload.update(extra)
        return json.dumps(payload).encode(), "application/json"

    def fire_webhook(
        self, url: str, kind: EventKind, email: str, target: Target | None = None, **extra: Any
    ) -> httpx.Response:
        body, content_type = self.webhook_payload(kind, email, target, **extra)
        headers = {"Content-Type": content_type}
        if self.webhook_token:
            # The webhook's bearer token, as Brevo sends it when the webhook has one.
            headers["Authorization"] = f"Bearer {self.webhook_token}"
        return httpx.post(url, content=body, headers=headers, timeout=10)

    # --- ASGI: faults, auth, rate limit, call log ----------------------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if path.startswith(ADMIN_PREFIX):
            # The simulator's own admin API: authenticated, but no faults, limits or call log.
            if self._key(scope) != self.api_key:
                return await error(401, "unauthorized", "Key not found")(scope, receive, send)
            return await self.app(scope, receive, send)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        with self._lock:
            drop = self._drop > 0
            self._drop -= 1 if drop else 0
            fail = self._fail.pop(0) if (not drop and self._fail) else None
        if drop:
            await self._drop_connection(receive, send)
            self._log(method, path, 0, scope)
            return
        if fail is not None:
            headers = {}
            if fail == 429:
                headers = self._rate_headers(0, self.fail_reset_s)
            resp = error(
                fail, "rate_limited" if fail == 429 else "internal_error", "Simulated failure", headers
            )
            self._log(method, path, fail, scope)
            return await resp(scope, receive, send)
        if self._key(scope) != self.api_key:
            self._log(method, path, 401, scope)
            return await error(401, "unauthorized", "Key not found")(scope, receive, send)
        extra_headers: dict[str, str] = {}
        if path.startswith("/v3/contacts") and self.rate_limit_per_s:
            limited, extra_headers = self._take_token()
            if limited:
                self._log(method, path, 429, scope)
                resp = error(429, "too_many_requests", "Too many requests", extra_headers)
                return await resp(scope, receive, send)

        status_holder: dict[str, int] = {}

        async def send_logged(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                # Logged before the client can see the answer, so a test reading the log after
                # its call returned never misses that call.
                self._log(method, path, message["status"], scope)
                message["headers"] = list(message.get("headers", [])) + [
                    (k.encode(), v.encode()) for k, v in extra_headers.items()
                ]
            await send(message)

        await self.app(scope, receive, send_logged)
        if "status" not in status_holder:
            self._log(method, path, 0, scope)

    async def _drop_connection(self, receive: Any, send: Any) -> None:
        while True:  # consume the request, then close the socket without answering
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if transport is not None:
            transport.abort()
        await asyncio.sleep(0.01)

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

    # --- state helpers -------------------------------------------------------------------------

    def _get_or_create(self, email: str, at: datetime | None = None) -> Contact:
        c = self._contacts.get(email)
        if c is None:
            now = at or datetime.now(UTC)
            c = Contact(next(self._ids), email, now, now)
            self._contacts[email] = c
            self._by_id[c.id] = c
        return c

    @staticmethod
    def _unsubscribe_from_list(c: Contact, list_id: int, at: datetime) -> None:
        if list_id not in c.list_unsubscribed:
            c.list_unsubscribed.append(list_id)
        c.modified_at = at

    @staticmethod
    def _block(c: Contact, at: datetime) -> None:
        c.email_blacklisted = True
        c.modified_at = at

    def _find(self, identifier: str) -> Contact | None:
        if identifier.isdigit():
            return self._by_id.get(int(identifier))
        return self._contacts.get(identifier.lower())

    def _add_to_list(self, c: Contact, list_id: int, at: datetime) -> None:
        if list_id not in c.list_ids:
            c.list_ids.append(list_id)
        # Re-adding a contact to a list takes the list out of listUnsubscribed (the blacklist,
        # account-wide, is left alone). Assumption modelled on the Brevo UI's behaviour.
        if list_id in c.list_unsubscribed:
            c.list_unsubscribed.remove(list_id)
        c.modified_at = at

    def _update(self, c: Contact, body: dict[str, Any], now: datetime) -> str | None:
        attrs = dict(body.get("attributes") or {})
        new_email = str(attrs.pop("EMAIL", "") or "").lower()
        if new_email and new_email != c.email:
            if not VALID_EMAIL.match(new_email):
                return "Invalid email address"
            if new_email in self._contacts:
                return "email is already associated with another Contact"
            del self._contacts[c.email]
            c.email = new_email
            self._contacts[new_email] = c
            # Changing a blacklisted contact's email address lifts the blacklist.
            # https://help.brevo.com/hc/en-us/articles/208802209
            c.email_blacklisted = False
        c.attributes.update(attrs)
        if "emailBlacklisted" in body:
            c.email_blacklisted = bool(body["emailBlacklisted"])
        if "smsBlacklisted" in body:
            c.sms_blacklisted = bool(body["smsBlacklisted"])
        for list_id in body.get("listIds") or []:
            self._add_to_list(c, int(list_id), now)
        for list_id in body.get("unlinkListIds") or []:
            if int(list_id) in c.list_ids:
                c.list_ids.remove(int(list_id))
        c.modified_at = now
        return None

    def _settle(self) -> None:
        now = time.monotonic()
        for proc in self._processes.values():
            if proc.pending is not None and now >= proc.ready_at:
                self._apply_import(proc)

    def _apply_import(self, proc: Process) -> None:
        body, proc.pending = proc.pending, None
        assert body is not None
        now = datetime.now(UTC)
        update = body.get("updateExistingContacts", True)
        erase = body.get("emptyContactsAttributes", False)
        for row in body["rows"]:
            email = str(row.get("email") or "").strip().lower()
            if not VALID_EMAIL.match(email):
                proc.rejected.append(email)
                continue
            exists = email in self._contacts
            c = self._get_or_create(email, now)
            if exists and not update:
                continue
            for k, v in (row.get("attributes") or {}).items():
                if v in ("", None):
                    if erase:
                        c.attributes.pop(k, None)
                else:
                    c.attributes[k] = v
            # emailBlacklist=true blacklists every imported contact; false leaves the status as it
            # is: an import never unblocks. https://developers.brevo.com/reference/importcontacts
            if body.get("emailBlacklist"):
                c.email_blacklisted = True
            for list_id in body.get("listIds") or []:
                self._add_to_list(c, int(list_id), now)
            c.modified_at = now

    def _list_members(self, list_id: int, since: datetime | None, sort: str, offset: int) -> list[Contact]:
        # A read from offset 0 takes a snapshot that the following pages reuse, as a cursor would.
        key = (list_id, since, sort)
        if offset > 0 and self._page_cache[0] == key:
            return self._page_cache[1]
        found = [
            c
            for c in self._contacts.values()
            if list_id in c.list_ids and (since is None or c.modified_at > since)
        ]
        found.sort(key=lambda c: c.id, reverse=(sort != "asc"))
        self._page_cache = (key, found)
        return found

    # --- routes --------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        return [
            Route("/v3/contacts", self.get_contacts, methods=["GET"]),
            Route("/v3/contacts", self.create_contact, methods=["POST"]),
            Route("/v3/contacts/import", self.import_contacts, methods=["POST"]),
            Route("/v3/contacts/lists", self.get_lists, methods=["GET"]),
            Route("/v3/contacts/lists", self.create_list, methods=["POST"]),
            Route("/v3/contacts/lists/{list_id:int}", self.get_list, methods=["GET"]),
            Route("/v3/contacts/lists/{list_id:int}/contacts", self.list_contacts, methods=["GET"]),
            Route("/v3/contacts/lists/{list_id:int}/contacts/add", self.add_to_list, methods=["POST"]),
            Route(
                "/v3/contacts/lists/{list_id:int}/contacts/remove", self.remove_from_list, methods=["POST"]
            ),
            Route("/v3/contacts/{identifier}", self.get_contact, methods=["GET"]),
            Route("/v3/contacts/{identifier}", self.update_contact, methods=["PUT"]),
            Route("/v3/contacts/{identifier}", self.delete_contact, methods=["DELETE"]),
            Route("/v3/processes/{process_id:int}", self.get_process, methods=["GET"]),
            Route("/v3/smtp/email", self.send_email, methods=["POST"]),
            Route("/_sim/account", self.admin_account, methods=["GET", "PUT"]),
            Route("/_sim/contacts/{identifier}/unsubscribe", self.admin_unsubscribe, methods=["POST"]),
        ]

    @staticmethod
    async def _json(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    @staticmethod
    def _int_param(request: Request, name: str, default: int) -> int:
        return int(request.query_params.get(name, default))

    @staticmethod
    def _sort(request: Request) -> str:
        sort = request.query_params.get("sort", "desc")
        if sort not in ("asc", "desc"):
            raise ValueError(f"sort must be asc or desc, not {sort!r}")
        return sort

    async def get_contacts(self, request: Request) -> Response:
        try:
            limit = self._int_param(request, "limit", 50)
            offset = self._int_param(request, "offset", 0)
            since_raw = request.query_params.get("modifiedSince")
            since = parse_iso(since_raw) if since_raw else None
            sort = self._sort(request)
        except ValueError as exc:
            return error(400, "invalid_parameter", str(exc))
        if limit > CONTACTS_PAGE_MAX or limit < 0:
            return error(400, "out_of_range", f"Limit exceeds max value of {CONTACTS_PAGE_MAX}")
        with self._lock:
            self._settle()
            found = [c for c in self._contacts.values() if since is None or c.modified_at > since]
            found.sort(key=lambda c: c.id, reverse=sort != "asc")
            page = [c.as_json() for c in found[offset : offset + limit]]
        return JSONResponse({"contacts": page, "count": len(found)})

    async def get_contact(self, request: Request) -> Response:
        with self._lock:
            self._settle()
            c = self._find(request.path_params["identifier"])
            if c is None:
                return error(404, "document_not_found", "Contact does not exist")
            return JSONResponse(c.as_json(extended=True))

    async def create_contact(self, request: Request) -> Response:
        body = await self._json(request)
        if not isinstance(body, dict):
            return error(400, "bad_request", "Input must be a valid JSON object")
        email = str(body.get("email") or "").strip().lower()
        if not email:
            return error(400, "missing_parameter", "email is missing")
        if not VALID_EMAIL.match(email):
            return error(400, "invalid_parameter", "Invalid email address")
        now = datetime.now(UTC)
        with self._lock:
            self._settle()
            for list_id in body.get("listIds") or []:
                if int(list_id) not in self._lists:
                    return error(404, "document_not_found", f"List ID {list_id} does not exist")
            existing = self._contacts.get(email)
            if existing is not None and not body.get("updateEnabled"):
                # https://developers.brevo.com/reference/createcontact : updateEnabled to update
                return error(400, "duplicate_parameter", "Contact already exist")
            c = existing or self._get_or_create(email, now)
            problem = self._update(c, body, now)
            if problem:
                return error(400, "invalid_parameter", problem)
            if existing is not None:
                return Response(status_code=204)
            return JSONResponse({"id": c.id}, status_code=201)

    async def update_contact(self, request: Request) -> Response:
        body = await self._json(request)
        if not isinstance(body, dict):
            return error(400, "bad_request", "Input must be a valid JSON object")
        with self._lock:
            self._settle()
            c = self._find(request.path_params["identifier"])
            if c is None:
                return error(404, "document_not_found", "Contact does not exist")
            problem = self._update(c, body, datetime.now(UTC))
            if problem:
                return error(400, "invalid_parameter", problem)
        return Response(status_code=204)

    async def delete_contact(self, request: Request) -> Response:
        with self._lock:
            c = self._find(request.path_params["identifier"])
            if c is None:
                return error(404, "document_not_found", "Contact does not exist")
            del self._contacts[c.email]
            del self._by_id[c.id]
        return Response(status_code=204)

    async def import_contacts(self, request: Request) -> Response:
        raw = await request.body()
        if len(raw) > IMPORT_MAX_BYTES:
            return error(400, "out_of_range", "Maximum allowed body size is 10MB")
        body = await self._json(request)
        if not isinstance(body, dict):
            return error(400, "bad_request", "Input must be a valid JSON object")
        if body.get("jsonBody") is not None:
            rows = list(body["jsonBody"])
        elif body.get("fileBody"):
            rows = [
                {"email": r.pop("EMAIL", ""), "attributes": r}
                for r in csv.DictReader(io.StringIO(body["fileBody"]), delimiter=";")
            ]
        else:
            return error(400, "missing_parameter", "fileUrl, fileBody or jsonBody is missing")
        list_ids = body.get("listIds") or []
        if not list_ids and not body.get("newList"):
            return error(400, "missing_parameter", "listIds or newList is missing")
        with self._lock:
            for list_id in list_ids:
                if int(list_id) not in self._lists:
                    return error(400, "invalid_parameter", f"List ID {list_id} does not exist")
            if body.get("newList"):
                target = self.create_target(body["newList"].get("listName", "import"))
                list_ids = [*list_ids, int(target.list_id)]
            pending = {**body, "rows": rows, "listIds": list_ids}
            proc = Process(
                next(self._process_ids), "IMPORTUSER", time.monotonic() + self.import_delay_s, pending
            )
            self._processes[proc.id] = proc
            if self.import_delay_s <= 0:
                self._apply_import(proc)
        return JSONResponse({"processId": proc.id}, status_code=202)

    async def get_process(self, request: Request) -> Response:
        with self._lock:
            self._settle()
            proc = self._processes.get(request.path_params["process_id"])
            if proc is None:
                return error(404, "document_not_found", "Process ID not found")
            status = "queued" if proc.pending is not None else "completed"
            return JSONResponse({"id": proc.id, "status": status, "name": proc.name})

    async def create_list(self, request: Request) -> Response:
        body = await self._json(request)
        if not isinstance(body, dict) or not body.get("name") or body.get("folderId") is None:
            # https://developers.brevo.com/reference/createlist : name and folderId are required
            return error(400, "missing_parameter", "name and folderId are required")
        with self._lock:
            lst = BrevoList(next(self._list_ids), str(body["name"]), int(body["folderId"]), datetime.now(UTC))
            self._lists[lst.id] = lst
        return JSONResponse({"id": lst.id}, status_code=201)

    async def get_lists(self, request: Request) -> Response:
        try:
            limit = self._int_param(request, "limit", 10)
            offset = self._int_param(request, "offset", 0)
            sort = self._sort(request)
        except ValueError as exc:
            return error(400, "invalid_parameter", str(exc))
        if limit > LISTS_PAGE_MAX or limit < 0 or offset < 0:
            return error(400, "out_of_range", f"Limit exceeds max value of {LISTS_PAGE_MAX}")
        with self._lock:
            self._settle()
            lists = sorted(self._lists.values(), key=lambda x: x.id)
            if sort != "asc":
                lists.reverse()
            page = [self._list_json(lst) for lst in lists[offset : offset + limit]]
        return JSONResponse({"lists": page, "count": len(lists)})

    def _list_json(self, lst: BrevoList) -> dict[str, Any]:
        members = [c for c in self._contacts.values() if lst.id in c.list_ids]
        return {
            "id": lst.id,
            "name": lst.name,
            "totalBlacklisted": sum(1 for c in members if c.email_blacklisted),
            "totalSubscribers": sum(1 for c in members if not c.email_blacklisted),
            "uniqueSubscribers": len(members),
            "folderId": lst.folder_id,
        }

    async def get_list(self, request: Request) -> Response:
        list_id = request.path_params["list_id"]
        with self._lock:
            self._settle()
            lst = self._lists.get(list_id)
            if lst is None:
                return error(404, "document_not_found", "List ID does not exist")
            body = self._list_json(lst)
            return JSONResponse(
                {**body, "createdAt": iso(lst.created_at), "campaignStats": [], "dynamicList": False}
            )

    async def list_contacts(self, request: Request) -> Response:
        list_id = request.path_params["list_id"]
        try:
            limit = self._int_param(request, "limit", 50)
            offset = self._int_param(request, "offset", 0)
            since_raw = request.query_params.get("modifiedSince")
            since = parse_iso(since_raw) if since_raw else None
            sort = self._sort(request)
        except ValueError as exc:
            return error(400, "invalid_parameter", str(exc))
        if limit > LIST_PAGE_MAX or limit < 0:
            return error(400, "out_of_range", f"Limit exceeds max value of {LIST_PAGE_MAX}")
        with self._lock:
            self._settle()
            if list_id not in self._lists:
                return error(404, "document_not_found", "List ID does not exist")
            found = self._list_members(list_id, since, sort, offset)
            page = [c.as_json() for c in found[offset : offset + limit]]
        return JSONResponse({"contacts": page, "count": len(found)})

    async def _list_batch(self, request: Request) -> tuple[int, list[str]] | Response:
        list_id = request.path_params["list_id"]
        body = await self._json(request)
        # Body is one of emails / ids / extIds; the OpenAPI oneOf overlaps, accept any branch.
        if not isinstance(body, dict):
            return error(400, "bad_request", "Input must be a valid JSON object")
        keys = [str(v) for k in ("emails", "ids", "extIds") for v in (body.get(k) or [])]
        if not keys and not body.get("all"):
            return error(400, "missing_parameter", "emails, ids or extIds is missing")
        if len(keys) > LIST_BATCH_MAX:
            return error(400, "out_of_range", f"Maximum {LIST_BATCH_MAX} contacts per request")
        if list_id not in self._lists:
            return error(404, "document_not_found", "List ID does not exist")
        return list_id, keys

    async def add_to_list(self, request: Request) -> Response:
        parsed = await self._list_batch(request)
        if isinstance(parsed, Response):
            return parsed
        list_id, keys = parsed
        success, failure = [], []
        now = datetime.now(UTC)
        with self._lock:
            self._settle()
            for key in keys:
                # Contacts must already exist; unknown ones come back in contacts.failure.
                # https://developers.brevo.com/reference/addcontacttolist
                c = self._find(key)
                if c is None:
                    failure.append(key)
                else:
                    self._add_to_list(c, list_id, now)
                    success.append(key)
        if not success:
            return error(400, "invalid_parameter", "Contact already in list and/or does not exist")
        return JSONResponse({"contacts": {"success": success, "failure": failure}}, status_code=201)

    async def remove_from_list(self, request: Request) -> Response:
        parsed = await self._list_batch(request)
        if isinstance(parsed, Response):
            return parsed
        list_id, keys = parsed
        success, failure = [], []
        now = datetime.now(UTC)
        with self._lock:
            self._settle()
            if not keys:  # {"all": true}
                keys = [c.email for c in self._contacts.values() if list_id in c.list_ids]
            for key in keys:
                # Removal leaves emailBlacklisted and listUnsubscribed alone: it is not an unsubscribe.
                c = self._find(key)
                if c is None or list_id not in c.list_ids:
                    failure.append(key)
                else:
                    c.list_ids.remove(list_id)
                    c.modified_at = now
                    success.append(key)
        if not success:
            return error(400, "invalid_parameter", "Contact already removed from list and/or does not exist")
        return JSONResponse({"contacts": {"success": success, "failure": failure}}, status_code=201)

    async def send_email(self, request: Request) -> Response:
        body = await self._json(request)
        if not isinstance(body, dict):
            return error(400, "bad_request", "Input must be a valid JSON object")
        # https://developers.brevo.com/reference/sendtransacemail : sender, to, and a content
        if not body.get("sender") or not body.get("to"):
            return error(400, "missing_parameter", "sender and to are required")
        if not (body.get("htmlContent") or body.get("textContent") or body.get("templateId")):
            return error(400, "missing_parameter", "htmlContent, textContent or templateId is required")
        message_id = f"<{uuid.uuid4().hex}@smtp-relay.mailin.fr>"
        mail = {
            "sender": body["sender"],
            "to": body["to"],
            "subject": body.get("subject"),
            "htmlContent": body.get("htmlContent"),
            "textContent": body.get("textContent"),
            "headers": body.get("headers") or {},
            "messageId": message_id,
        }
        with self._lock:
            self.outbox.append(mail)
        return JSONResponse({"messageId": message_id}, status_code=201)

    # --- the simulator's own admin API (/_sim) ---------------------------------------------------

    async def admin_account(self, request: Request) -> Response:
        if request.method == "PUT":
            body = await self._json(request)
            value = body.get("perListUnsubscription") if isinstance(body, dict) else None
            if not isinstance(value, bool):
                return error(400, "invalid_parameter", "perListUnsubscription (true or false) is required")
            with self._lock:
                self.per_list_unsubscription = value
        return JSONResponse({"perListUnsubscription": self.per_list_unsubscription})

    async def admin_unsubscribe(self, request: Request) -> Response:
        body = await self._json(request)
        list_id = body.get("listId") if isinstance(body, dict) else None
        if not isinstance(list_id, int) or isinstance(list_id, bool):
            return error(400, "invalid_parameter", "listId (the campaign's list) is required")
        with self._lock:
            c = self._find(request.path_params["identifier"])
            if c is None:
                return error(404, "document_not_found", "Contact does not exist")
            if list_id not in self._lists:
                return error(404, "document_not_found", "List ID does not exist")
            self.contact_unsubscribes(c.email, list_id)
            return JSONResponse(c.as_json())


def serve(port: int, api_key: str) -> None:
    """Run a Brevo simulator in the foreground (``syncd simulate brevo``) until interrupted."""
    import uvicorn

    sim = BrevoSimulator(api_key=api_key)
    uvicorn.run(sim, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
