"""Brevo's API v3 over HTTP (under ``/v3``), served from an ``Account``.

Field names, status codes and error bodies follow Brevo's OpenAPI file (brevo-v3.yml); the
contract suite checks every request and answer against it.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.simulators.brevo.state import (
    CONTACTS_PAGE_MAX,
    IMPORT_MAX_BYTES,
    LIST_BATCH_MAX,
    LIST_PAGE_MAX,
    LISTS_PAGE_MAX,
    VALID_EMAIL,
    WEBHOOK_EVENTS,
    WEBHOOK_TYPES,
    Account,
    BrevoList,
    Contact,
    iso,
    parse_iso,
)
from connectors.simulators.harness import read_json


def json_bytes(body: Any) -> bytes:
    """A JSON answer's body, as Starlette's ``JSONResponse`` renders one."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    # errorModel: {"code": ..., "message": ...}
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def bad_json() -> JSONResponse:
    return error(400, "bad_request", "Input must be a valid JSON object")


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int
    sort: str
    since: datetime | None

    def of(self, rows: list[Any]) -> list[Any]:
        return rows[self.offset : self.offset + self.limit]


def csv_rows(text: str) -> list[dict[str, Any]]:
    """An import's ``fileBody`` (``;``-separated, a header of attribute names with ``EMAIL``) as
    rows of ``email`` and ``attributes``, as ``csv.DictReader`` reads them: a short row's missing
    cells are None, a long row's extra cells are under the key None, blank lines are skipped.
    A row as long as the header (every row syncd sends) is zipped with it directly."""
    reader = csv.reader(io.StringIO(text), delimiter=";")
    header = next(reader, [])
    width = len(header)
    rows = []
    for values in reader:
        if not values:
            continue
        if len(values) == width:
            attributes: dict[Any, Any] = dict(zip(header, values, strict=True))
        else:
            attributes = dict(zip(header, values + [None] * (width - len(values)), strict=False))
            if len(values) > width:
                attributes[None] = values[width:]
        rows.append({"email": attributes.pop("EMAIL", ""), "attributes": attributes})
    return rows


def page_params(
    request: Request, default_limit: int, max_limit: int, *, since: bool = True, strict_offset: bool = False
) -> Page | Response:
    """``limit``, ``offset``, ``sort`` (and ``modifiedSince``) of a read, or the 400 Brevo gives."""
    q = request.query_params
    try:
        limit = int(q.get("limit", default_limit))
        offset = int(q.get("offset", 0))
        since_raw = q.get("modifiedSince") if since else None
        modified_since = parse_iso(since_raw) if since_raw else None
        sort = q.get("sort", "desc")
        if sort not in ("asc", "desc"):
            raise ValueError(f"sort must be asc or desc, not {sort!r}")
    except ValueError as exc:
        return error(400, "invalid_parameter", str(exc))
    if limit > max_limit or limit < 0 or (strict_offset and offset < 0):
        return error(400, "out_of_range", f"Limit exceeds max value of {max_limit}")
    return Page(limit, offset, sort, modified_since)


class BrevoApi:
    """The endpoints, mixed into the simulator, which gives them ``account`` and ``outbox`` (the
    transactional mails sent); ``routes`` lists them."""

    account: Account
    outbox: list[dict[str, Any]]

    def routes(self) -> list[Route]:
        return [
            Route("/v3/contacts", self.get_contacts, methods=["GET"]),
            Route("/v3/contacts", self.create_contact, methods=["POST"]),
            Route("/v3/contacts/import", self.import_contacts, methods=["POST"]),
            Route("/v3/contacts/lists", self.get_lists, methods=["GET"]),
            Route("/v3/contacts/lists", self.post_list, methods=["POST"]),
            Route("/v3/contacts/lists/{list_id:int}", self.get_list, methods=["GET"]),
            Route("/v3/contacts/lists/{list_id:int}/contacts", self.get_list_contacts, methods=["GET"]),
            Route("/v3/contacts/lists/{list_id:int}/contacts/add", self.add_to_list, methods=["POST"]),
            Route(
                "/v3/contacts/lists/{list_id:int}/contacts/remove", self.remove_from_list, methods=["POST"]
            ),
            Route("/v3/contacts/{identifier}/campaignStats", self.get_contact_stats, methods=["GET"]),
            Route("/v3/contacts/{identifier}", self.get_contact, methods=["GET"]),
            Route("/v3/contacts/{identifier}", self.update_contact, methods=["PUT"]),
            Route("/v3/contacts/{identifier}", self.delete_contact, methods=["DELETE"]),
            Route("/v3/processes/{process_id:int}", self.get_process, methods=["GET"]),
            Route("/v3/smtp/email", self.send_email, methods=["POST"]),
            Route("/v3/webhooks", self.get_webhooks, methods=["GET"]),
            Route("/v3/webhooks", self.create_webhook, methods=["POST"]),
            Route("/v3/webhooks/{webhook_id:int}", self.delete_webhook, methods=["DELETE"]),
        ]

    # --- contacts --------------------------------------------------------------------------------

    async def get_contacts(self, request: Request) -> Response:
        page = page_params(request, 50, CONTACTS_PAGE_MAX)
        if isinstance(page, Response):
            return page
        a = self.account
        with a.lock:
            a.settle()
            found = [c for c in a.contacts.values() if page.since is None or c.modified_at > page.since]
            found.sort(key=lambda c: c.id, reverse=page.sort != "asc")
            body = [c.as_json() for c in page.of(found)]
        return JSONResponse({"contacts": body, "count": len(found)})

    async def get_contact(self, request: Request) -> Response:
        return self._contact_view(request, lambda c: c.as_json(extended=True))

    async def get_contact_stats(self, request: Request) -> Response:
        return self._contact_view(request, lambda c: c.campaign_stats())

    def _contact_view(self, request: Request, view: Callable[[Contact], dict[str, Any]]) -> Response:
        a = self.account
        with a.lock:
            a.settle()
            c = a.find(request.path_params["identifier"])
            if c is None:
                return error(404, "document_not_found", "Contact does not exist")
            return JSONResponse(view(c))

    async def create_contact(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            return bad_json()
        email = str(body.get("email") or "").strip().lower()
        if not email:
            return error(400, "missing_parameter", "email is missing")
        if not VALID_EMAIL.match(email):
            return error(400, "invalid_parameter", "Invalid email address")
        now = datetime.now(UTC)
        a = self.account
        with a.lock:
            a.settle()
            for list_id in body.get("listIds") or []:
                if int(list_id) not in a.lists:
                    return error(404, "document_not_found", f"List ID {list_id} does not exist")
            existing = a.contacts.get(email)
            if existing is not None and not body.get("updateEnabled"):
                # https://developers.brevo.com/reference/createcontact : updateEnabled to update
                return error(400, "duplicate_parameter", "Contact already exist")
            c = existing or a.get_or_create(email, now)
            problem = a.update(c, body, now)
            if problem:
                return error(400, "invalid_parameter", problem)
            if existing is not None:
                return Response(status_code=204)
            return JSONResponse({"id": c.id}, status_code=201)

    async def update_contact(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            return bad_json()
        a = self.account
        with a.lock:
            a.settle()
            c = a.find(request.path_params["identifier"])
            if c is None:
                return error(404, "document_not_found", "Contact does not exist")
            problem = a.update(c, body, datetime.now(UTC))
            if problem:
                return error(400, "invalid_parameter", problem)
        return Response(status_code=204)

    async def delete_contact(self, request: Request) -> Response:
        with self.account.lock:
            c = self.account.find(request.path_params["identifier"])
            if c is None:
                return error(404, "document_not_found", "Contact does not exist")
            self.account.delete(c)
        return Response(status_code=204)

    async def import_contacts(self, request: Request) -> Response:
        raw = await request.body()
        if len(raw) > IMPORT_MAX_BYTES:
            return error(400, "out_of_range", "Maximum allowed body size is 10MB")
        body = await read_json(request)
        if not isinstance(body, dict):
            return bad_json()
        if body.get("jsonBody") is not None:
            rows = list(body["jsonBody"])
        elif body.get("fileBody"):
            rows = csv_rows(body["fileBody"])
        else:
            return error(400, "missing_parameter", "fileUrl, fileBody or jsonBody is missing")
        list_ids = body.get("listIds") or []
        if not list_ids and not body.get("newList"):
            return error(400, "missing_parameter", "listIds or newList is missing")
        a = self.account
        with a.lock:
            for list_id in list_ids:
                if int(list_id) not in a.lists:
                    return error(400, "invalid_parameter", f"List ID {list_id} does not exist")
            if body.get("newList"):
                list_ids = [*list_ids, a.create_list(body["newList"].get("listName", "import"))]
            proc = a.start_import({**body, "rows": rows, "listIds": list_ids})
        return JSONResponse({"processId": proc.id}, status_code=202)

    async def get_process(self, request: Request) -> Response:
        a = self.account
        with a.lock:
            a.settle()
            proc = a.processes.get(request.path_params["process_id"])
            if proc is None:
                return error(404, "document_not_found", "Process ID not found")
            status = "queued" if proc.pending is not None else "completed"
            return JSONResponse({"id": proc.id, "status": status, "name": proc.name})

    # --- lists -----------------------------------------------------------------------------------

    async def post_list(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict) or not body.get("name") or body.get("folderId") is None:
            # https://developers.brevo.com/reference/createlist : name and folderId are required
            return error(400, "missing_parameter", "name and folderId are required")
        list_id = self.account.create_list(str(body["name"]), int(body["folderId"]))
        return JSONResponse({"id": list_id}, status_code=201)

    async def get_lists(self, request: Request) -> Response:
        page = page_params(request, 10, LISTS_PAGE_MAX, since=False, strict_offset=True)
        if isinstance(page, Response):
            return page
        a = self.account
        with a.lock:
            a.settle()
            lists = sorted(a.lists.values(), key=lambda x: x.id)
            if page.sort != "asc":
                lists.reverse()
            body = [a.list_json(lst) for lst in page.of(lists)]
        return JSONResponse({"lists": body, "count": len(lists)})

    async def get_list(self, request: Request) -> Response:
        a = self.account
        with a.lock:
            a.settle()
            lst: BrevoList | None = a.lists.get(request.path_params["list_id"])
            if lst is None:
                return error(404, "document_not_found", "List ID does not exist")
            body = a.list_json(lst)
            return JSONResponse(
                {**body, "createdAt": iso(lst.created_at), "campaignStats": [], "dynamicList": False}
            )

    async def get_list_contacts(self, request: Request) -> Response:
        list_id = request.path_params["list_id"]
        page = page_params(request, 50, LIST_PAGE_MAX)
        if isinstance(page, Response):
            return page
        a = self.account
        with a.lock:
            a.settle()
            if list_id not in a.lists:
                return error(404, "document_not_found", "List ID does not exist")
            found = a.list_members(list_id, page.since, page.sort, page.offset)
            # Encoded under the lock, from the contacts as they are: no copy of each one first.
            content = json_bytes(
                {"contacts": [c.as_json(copy=False) for c in page.of(found)], "count": len(found)}
            )
        return Response(content, media_type="application/json")

    async def add_to_list(self, request: Request) -> Response:
        def add(c: Contact | None, list_id: int, now: datetime) -> bool:
            # Contacts must already exist; unknown ones come back in contacts.failure.
            # https://developers.brevo.com/reference/addcontacttolist
            if c is None:
                return False
            self.account.add_to_list(c, list_id, now)
            return True

        return await self._change_list(request, add, "Contact already in list and/or does not exist")

    async def remove_from_list(self, request: Request) -> Response:
        def remove(c: Contact | None, list_id: int, now: datetime) -> bool:
            # Removal leaves emailBlacklisted and listUnsubscribed alone: it is not an unsubscribe.
            if c is None or list_id not in c.list_ids:
                return False
            c.list_ids.remove(list_id)
            c.modified_at = now
            return True

        refused = "Contact already removed from list and/or does not exist"
        return await self._change_list(request, remove, refused, everyone_on_list=True)

    async def _change_list(
        self,
        request: Request,
        change: Callable[[Contact | None, int, datetime], bool],
        refused: str,
        everyone_on_list: bool = False,
    ) -> Response:
        """Apply ``change`` to each contact the body names (``{"all": true}``: with
        ``everyone_on_list``, every contact on the list); 400 ``refused`` when it fits none."""
        list_id = request.path_params["list_id"]
        body = await read_json(request)
        # Body is one of emails / ids / extIds; the OpenAPI oneOf overlaps, accept any branch.
        if not isinstance(body, dict):
            return bad_json()
        keys = [str(v) for k in ("emails", "ids", "extIds") for v in (body.get(k) or [])]
        if not keys and not body.get("all"):
            return error(400, "missing_parameter", "emails, ids or extIds is missing")
        if len(keys) > LIST_BATCH_MAX:
            return error(400, "out_of_range", f"Maximum {LIST_BATCH_MAX} contacts per request")
        a = self.account
        if list_id not in a.lists:
            return error(404, "document_not_found", "List ID does not exist")
        success, failure = [], []
        now = datetime.now(UTC)
        with a.lock:
            a.settle()
            if not keys and everyone_on_list:
                keys = [c.email for c in a.contacts.values() if list_id in c.list_ids]
            for key in keys:
                (success if change(a.find(key), list_id, now) else failure).append(key)
        if not success:
            return error(400, "invalid_parameter", refused)
        return JSONResponse({"contacts": {"success": success, "failure": failure}}, status_code=201)

    # --- transactional mail ----------------------------------------------------------------------

    async def send_email(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            return bad_json()
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
        with self.account.lock:
            self.outbox.append(mail)
        return JSONResponse({"messageId": message_id}, status_code=201)

    # --- webhooks --------------------------------------------------------------------------------

    async def get_webhooks(self, request: Request) -> Response:
        # https://developers.brevo.com/reference/getwebhooks : type defaults to transactional
        kind = request.query_params.get("type", "transactional")
        sort = request.query_params.get("sort", "desc")
        if kind not in WEBHOOK_TYPES or sort not in ("asc", "desc"):
            return error(400, "invalid_parameter", "type or sort has an invalid value")
        with self.account.lock:
            found = [dict(w) for w in self.account.webhooks.values() if w["type"] == kind]
        found.sort(key=lambda w: w["id"], reverse=sort == "desc")
        return JSONResponse({"webhooks": found})

    async def create_webhook(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            return bad_json()
        # https://developers.brevo.com/reference/createwebhook : url and events are required
        url, events = body.get("url"), body.get("events")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return error(400, "invalid_parameter", "url must be a valid URL")
        if not isinstance(events, list) or not events:
            return error(400, "missing_parameter", "events is missing")
        unknown = [e for e in events if e not in WEBHOOK_EVENTS]
        if unknown:
            return error(400, "invalid_parameter", f"Invalid event(s): {', '.join(map(str, unknown))}")
        if body.get("type", "transactional") not in WEBHOOK_TYPES:
            return error(400, "invalid_parameter", "type must be transactional, marketing or inbound")
        return JSONResponse({"id": self.account.create_webhook(body)}, status_code=201)

    async def delete_webhook(self, request: Request) -> Response:
        with self.account.lock:
            if self.account.webhooks.pop(request.path_params["webhook_id"], None) is None:
                return error(404, "document_not_found", "Webhook ID does not exist")
        return Response(status_code=204)
