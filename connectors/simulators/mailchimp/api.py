"""The Mailchimp Marketing API 3.0 over HTTP (under ``/3.0``), served from an ``Account``.

Field names and types follow Mailchimp's Marketing API description 3.0.55; the contract suite
checks every request and answer against it. Errors are problem+json.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.simulators.mailchimp.state import (
    BATCH_SUBSCRIBE_MAX,
    PAGE_MAX,
    SEGMENT_BATCH_MAX,
    STATUSES,
    WEBHOOK_EVENTS,
    WEBHOOK_SOURCES,
    Account,
    Audience,
    Member,
    ProblemError,
    invalid,
    listing_changes,
    not_found,
    now,
    parse_ts,
    subscriber_hash,
)
from connectors.simulators.mailchimp.views import (
    list_json,
    member_json,
    segment_json,
    select_fields,
    webhook_json,
)
from connectors.simulators.mailchimp.webhooks import check_url

DOCS_ERRORS = "https://mailchimp.com/developer/marketing/docs/errors/"
Handler = Callable[[Request, Any], dict | None]


def problem(status: int, title: str, detail: str, instance: str = "", **extra: Any) -> Response:
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


def _error_code(e: ProblemError) -> str:
    return "ERROR_CONTACT_EXISTS" if e.title == "Member Exists" else "ERROR_GENERIC"


def _paging(request: Request) -> tuple[int, int]:
    try:
        count = int(request.query_params.get("count", 10))
        offset = int(request.query_params.get("offset", 0))
    except ValueError as exc:
        raise invalid("count and offset must be integers.") from exc
    if count > PAGE_MAX or count < 0 or offset < 0:
        # https://mailchimp.com/developer/marketing/docs/methods-parameters/#pagination
        raise invalid(f"count must be between 0 and {PAGE_MAX}.")
    return count, offset


class MailchimpApi:
    """The endpoints, mixed into the simulator, which gives them ``account``: each a ``Handler``
    run under the account's lock; ``routes`` lists them."""

    account: Account
    # Like Mailchimp, check a new webhook's URL with a GET (on under ``syncd simulate``; off for
    # tests that register a URL nobody serves).
    verify_webhook_urls = False

    def routes(self) -> list[Route]:
        h = self.handle
        return [
            Route("/3.0/ping", h(self.ping), methods=["GET"]),
            Route("/3.0/lists", h(self.create_list), methods=["POST"]),
            Route("/3.0/lists/{list_id}", h(self.get_list), methods=["GET"]),
            Route("/3.0/lists/{list_id}", h(self.batch_subscribe), methods=["POST"]),
            Route("/3.0/lists/{list_id}/members", h(self.list_members), methods=["GET"]),
            Route("/3.0/lists/{list_id}/members", h(self.add_member), methods=["POST"]),
            Route(
                "/3.0/lists/{list_id}/members/{hash}",
                h(self.one_member),
                methods=["GET", "PUT", "PATCH", "DELETE"],
            ),
            Route(
                "/3.0/lists/{list_id}/members/{hash}/actions/delete-permanent",
                h(self.forget),
                methods=["POST"],
            ),
            Route("/3.0/lists/{list_id}/segments", h(self.segments), methods=["GET", "POST"]),
            Route("/3.0/lists/{list_id}/segments/{seg_id:int}", h(self.batch_segment), methods=["POST"]),
            Route("/3.0/lists/{list_id}/tag-search", h(self.tag_search), methods=["GET"]),
            Route("/3.0/lists/{list_id}/webhooks", h(self.audience_webhooks), methods=["GET", "POST"]),
            Route("/3.0/lists/{list_id}/webhooks/{webhook_id}", h(self.delete_webhook), methods=["DELETE"]),
        ]

    def handle(self, fn: Handler) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            body = None
            if request.method in ("POST", "PUT", "PATCH"):
                raw = await request.body()
                try:
                    body = json.loads(raw) if raw.strip() else None
                except ValueError:
                    return problem(
                        400,
                        "JSON Parse Error",
                        "We encountered an unspecified JSON parsing error.",
                        request.url.path,
                    )
            try:
                with self.account.lock:
                    result = fn(request, body)
            except ProblemError as e:
                extra = {"errors": e.errors} if e.errors else {}
                return problem(e.status, e.title, e.detail, request.url.path, **extra)
            if result is None:
                return Response(status_code=204)
            return JSONResponse(result)

        return endpoint

    def _member_json(self, a: Audience, m: Member, brief: bool = False) -> dict:
        """Every member the API answers with is rendered here (a test's subclass may alter it)."""
        return member_json(a, m, brief)

    def audience(self, request: Request) -> Audience:
        audience = self.account.audiences.get(request.path_params["list_id"])
        if audience is None:
            raise not_found()
        return audience

    # --- endpoints -------------------------------------------------------------------------------

    def ping(self, request: Request, body: Any) -> dict:
        return {"health_status": "Everything's Chimpy!"}

    def create_list(self, request: Request, body: Any) -> dict:
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
        return list_json(self.account.audiences[self.account.create_audience(body["name"])])

    def get_list(self, request: Request, body: Any) -> dict:
        return list_json(self.audience(request))

    def batch_subscribe(self, request: Request, body: Any) -> dict:
        audience = self.audience(request)
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
            raise invalid(f"The maximum number of members per batch is {BATCH_SUBSCRIBE_MAX}.")
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
                member, is_new = self.account.write_member(
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

    def add_member(self, request: Request, body: Any) -> dict:
        audience = self.audience(request)
        body = body or {}
        email = str(body.get("email_address", ""))
        member, _ = self.account.write_member(
            audience, email, body, body.get("status"), update_existing=False, single=True
        )
        return self._member_json(audience, member)

    def one_member(self, request: Request, body: Any) -> dict | None:
        audience = self.audience(request)
        key = request.path_params["hash"]
        member = audience.member_by_key(key)
        h = member.id if member else (subscriber_hash(key) if "@" in key else key.lower())
        method = request.method
        if method == "GET":
            if not member:
                raise not_found()
            return self._member_json(audience, member)
        if method == "DELETE":
            # https://mailchimp.com/developer/marketing/api/list-members/archive-list-member/
            if not member or member.status == "archived":
                raise not_found()
            member.status_before_archive, member.status = member.status, "archived"
            member.last_changed = now()
            return None
        body = body or {}
        if method == "PATCH" and not member:
            raise not_found()
        if method == "PATCH" and body.get("email_address"):
            # A new address for an existing member (update-list-member): the member is renamed.
            self.account.change_email(audience, member, str(body["email_address"]))
            h = member.id
        email = str(body.get("email_address") or (member.email if member else ""))
        status = body.get("status") or (body.get("status_if_new") if not member else None)
        if subscriber_hash(email) != h:
            raise invalid("The email address does not match the subscriber hash.")
        member, _ = self.account.write_member(
            audience, email, body, status, update_existing=True, single=True
        )
        return self._member_json(audience, member)

    def forget(self, request: Request, body: Any) -> None:
        # https://mailchimp.com/developer/marketing/api/list-members/delete-list-member/ : permanent, GDPR
        audience = self.audience(request)
        h = request.path_params["hash"].lower()
        if audience.members.pop(h, None) is None:
            raise not_found()
        audience.forgotten.add(h)
        return None

    def segments(self, request: Request, body: Any) -> dict:
        audience = self.audience(request)
        if request.method == "POST":
            name = str((body or {}).get("name", "")).strip()
            if not name:
                raise invalid("The segment name is required.")
            if name in audience.segments.values():
                raise invalid("Bad Request: Tag already exists.")
            seg_id = self.account.create_tag(audience.id, name)
            for email in (body or {}).get("static_segment") or []:
                m = audience.members.get(subscriber_hash(email))
                if m and m.status != "archived":
                    m.tags.add(name)
            return segment_json(audience, seg_id)
        count, offset = _paging(request)
        ids = sorted(audience.segments)
        return {
            "segments": [segment_json(audience, i) for i in ids[offset : offset + count]],
            "list_id": audience.id,
            "total_items": len(ids),
        }

    def tag_search(self, request: Request, body: Any) -> dict:
        audience = self.audience(request)
        prefix = request.query_params.get("name", "")
        tags = [{"id": i, "name": n} for i, n in sorted(audience.segments.items()) if n.startswith(prefix)]
        return {"tags": tags, "total_items": len(tags)}

    def batch_segment(self, request: Request, body: Any) -> dict:
        audience = self.audience(request)
        seg_id = request.path_params["seg_id"]
        if seg_id not in audience.segments:
            raise not_found()
        name = audience.segments[seg_id]
        body = body or {}
        to_add, to_remove = body.get("members_to_add") or [], body.get("members_to_remove") or []
        if len(to_add) > SEGMENT_BATCH_MAX or len(to_remove) > SEGMENT_BATCH_MAX:
            # https://mailchimp.com/developer/marketing/api/list-segments/batch-add-or-remove-members/
            raise invalid(f"A maximum of {SEGMENT_BATCH_MAX} members can be sent per request.")
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

    def list_members(self, request: Request, body: Any) -> dict:
        audience = self.audience(request)
        q = request.query_params
        count, offset = _paging(request)
        status = q.get("status")
        if status and status not in STATUSES:
            raise invalid(f"Invalid status: {status}")
        since = parse_ts(q.get("since_last_changed"), "since_last_changed")
        # Archived contacts are listed only when asked for by status (assumed from the Archive page:
        # https://mailchimp.com/help/archive-unarchive-contacts/ - they leave the audience's counts).
        key = (status, since, listing_changes())
        if audience.listing[0] == key:
            rows = audience.listing[1]
        else:
            rows = [
                m
                for m in audience.members.values()
                if (m.status == status if status else m.status != "archived")
                and (since is None or m.last_changed > since)
            ]
            audience.listing = (key, rows)
        page = [self._member_json(audience, m) for m in rows[offset : offset + count]]
        result = {"members": page, "list_id": audience.id, "total_items": len(rows), "_links": []}
        return select_fields(result, q.get("fields"), q.get("exclude_fields"))

    def audience_webhooks(self, request: Request, body: Any) -> dict:
        """https://mailchimp.com/developer/marketing/api/list-webhooks/ : list or add."""
        audience = self.audience(request)
        if request.method == "GET":
            hooks = [webhook_json(audience, w) for w in audience.webhooks.values()]
            return {"webhooks": hooks, "list_id": audience.id, "total_items": len(hooks), "_links": []}
        body = body if isinstance(body, dict) else {}
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ProblemError(
                400,
                "Invalid Resource",
                "The resource submitted could not be validated.",
                [{"field": "url", "message": "This value should be a valid URL."}],
            )
        flags = {}
        for group, names in (("events", WEBHOOK_EVENTS), ("sources", WEBHOOK_SOURCES)):
            given = body.get(group) or {}
            if not isinstance(given, dict):
                raise invalid(f"{group} must be an object.")
            flags[group] = {n: bool(given.get(n, False)) for n in names}
        if any(w["url"] == url for w in audience.webhooks.values()):
            # One webhook per URL and audience, as Mailchimp users report
            # (github.com/mailchimp/mailchimp-client-lib-codegen/issues/11); the wording is ours.
            raise invalid("A webhook with this URL already exists for this audience.")
        if self.verify_webhook_urls:
            self._verify_webhook_url(url)
        webhook_id = secrets.token_hex(5)
        audience.webhooks[webhook_id] = {"id": webhook_id, "url": url, **flags}
        return webhook_json(audience, audience.webhooks[webhook_id])

    @staticmethod
    def _verify_webhook_url(url: str) -> None:
        """Mailchimp GETs a new webhook's URL and refuses the webhook unless it answers 200
        (https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/; the
        message is the one Mailchimp users report)."""
        try:
            status = str(check_url(url).status_code)
        except httpx.HTTPError:
            status = "0"
        if status != "200":
            raise invalid(
                "We couldn't verify the URL is working. Please double check and try again. "
                f"HTTP Code: {status}"
            )

    def delete_webhook(self, request: Request, body: Any) -> None:
        audience = self.audience(request)
        if audience.webhooks.pop(request.path_params["webhook_id"], None) is None:
            raise not_found()
        return None
