"""Mailchimp audiences behind syncd's ``Connector`` contract, on mailchimp-marketing 3.0.80.

Everything Mailchimp-specific lives here: the merge-field table, the webhook vocabulary, the
batch caps, the compliance state and the error shapes. A ``Target`` is an audience, optionally
narrowed by a tag (several syncd lists can share one audience through tags).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import requests
import structlog
from mailchimp_marketing import Client
from mailchimp_marketing.api_client import ApiClient, ApiClientError
from requests.adapters import HTTPAdapter

from connectors.contract import (
    ApiStats,
    AuthFailed,
    ConnectorError,
    Delivery,
    EventKind,
    MemberPush,
    NotFound,
    Page,
    PayloadError,
    ProviderEvent,
    ProviderTraits,
    Rejected,
    RemoteMember,
    RemoteStatus,
    Target,
    WriteResult,
    error_for_status,
)
from connectors.retry import RetryPolicy, call_with_retries
from connectors.text import clean_text, email_problem

log = structlog.get_logger(__name__)
T = TypeVar("T")

PROVIDER = "mailchimp"
BATCH_SUBSCRIBE_MAX = (
    500  # https://mailchimp.com/developer/marketing/api/lists/batch-subscribe-or-unsubscribe/
)
SEGMENT_BATCH_MAX = (
    500  # https://mailchimp.com/developer/marketing/api/list-segments/batch-add-or-remove-members/
)
PAGE_MAX = 1000  # https://mailchimp.com/developer/marketing/docs/methods-parameters/#pagination
# https://mailchimp.com/developer/marketing/docs/fundamentals/#api-limits : 10 simultaneous connections
MAX_CONNECTIONS = 10
CURSOR_SKEW = timedelta(minutes=2)  # re-read a little: a duplicate is harmless, a gap is not

# The one table between master-base field names and Mailchimp merge tags. FNAME, LNAME, PHONE
# are default merge fields; COMPANY, CITY and COUNTRY must exist in the audience as text fields.
# https://mailchimp.com/developer/marketing/docs/merge-fields/
MERGE_FIELDS = {
    "first_name": "FNAME",
    "last_name": "LNAME",
    "phone": "PHONE",
    "company": "COMPANY",
    "city": "CITY",
    "country": "COUNTRY",
}
_FIELD_OF_MERGE = {tag: name for name, tag in MERGE_FIELDS.items()}

# Only what syncd uses. https://mailchimp.com/developer/marketing/docs/methods-parameters/#partial-responses
_MEMBER_FIELDS = [
    "total_items",
    *(
        f"members.{f}"
        for f in (
            "id",
            "email_address",
            "status",
            "merge_fields",
            "tags",
            "last_changed",
            "ip_signup",
            "timestamp_signup",
            "ip_opt",
            "timestamp_opt",
        )
    ),
]
_EVIDENCE = ("ip_signup", "timestamp_signup", "ip_opt", "timestamp_opt")
# Statuses that hold for the whole audience, whatever the member's tags.
# https://mailchimp.com/help/about-compliance-state/
AUDIENCE_WIDE = (RemoteStatus.UNSUBSCRIBED, RemoteStatus.CLEANED)

# Mailchimp's webhook vocabulary -> syncd's events: (type, qualifier). The qualifier is
# data[reason] for "cleaned", and for "unsubscribe" "abuse" (a spam complaint) or data[action].
# https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/#webhook-events
WEBHOOK_EVENTS: dict[tuple[str, str], EventKind | None] = {
    ("subscribe", ""): EventKind.SUBSCRIBED,
    ("unsubscribe", "unsub"): EventKind.UNSUBSCRIBED,  # this audience only, never "all"
    ("unsubscribe", "delete"): EventKind.DELETED,  # an admin deleted the contact: no opt-out
    ("unsubscribe", "abuse"): EventKind.COMPLAINED,
    ("profile", ""): EventKind.PROFILE_UPDATED,
    ("upemail", ""): EventKind.EMAIL_CHANGED,
    ("cleaned", "hard"): EventKind.BOUNCED_HARD,
    ("cleaned", "abuse"): EventKind.COMPLAINED,
    ("campaign", ""): None,  # a campaign was sent: nothing for the master base
}

# Per-member batch errors in syncd's words (Rejected.code); the provider's text stays in reason.
# https://mailchimp.com/help/about-compliance-state/ and https://mailchimp.com/developer/marketing/docs/errors/
_REJECTION_CODES = (
    ("compliance state", "compliance_state"),
    ("looks fake or invalid", "invalid_email"),
    ("permanently deleted", "forgotten"),
    ("already a list member", "exists"),
)


class _PooledApiClient(ApiClient):
    """The SDK's client on one pooled ``requests.Session``: the SDK opens a connection per call.

    The pool is as large as the concurrency and blocks beyond it, so syncd never opens more
    connections than Mailchimp allows at once.
    """

    def __init__(self, config: dict, pool_size: int):
        super().__init__(config)
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, pool_block=True, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def request(self, method, url, query_params=None, headers=None, body=None):  # noqa: ANN001
        # No body when the SDK has none (an action such as delete-permanent), not a JSON null.
        data = json.dumps(body) if method in ("POST", "PUT", "PATCH") and body is not None else None
        return self._session.request(
            method,
            url,
            params=query_params,
            headers=headers,
            data=data,
            auth=("syncd", self.api_key),
            timeout=self.timeout,
        )

    def close(self) -> None:
        self._session.close()


class _ConnectionGate:
    """At most ``limit`` calls in flight; the limit halves on a 429 and creeps back on success.

    Mailchimp counts simultaneous connections per account, so other apps on the same account
    take some of the 10: a 429 means "fewer at once", not "wait and send as many".
    """

    def __init__(self, limit: int):
        self.ceiling = self.limit = limit
        self._in_flight = self._successes = 0
        self._cond = threading.Condition()

    def __enter__(self) -> _ConnectionGate:
        with self._cond:
            while self._in_flight >= self.limit:
                self._cond.wait()
            self._in_flight += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def crowded(self) -> None:
        with self._cond:
            self.limit, self._successes = max(1, min(self.limit, self._in_flight) // 2), 0

    def succeeded(self) -> None:
        with self._cond:
            self._successes += 1
            if self._successes >= self.limit and self.limit < self.ceiling:
                self.limit, self._successes = self.limit + 1, 0
                self._cond.notify_all()


class MailchimpConnector:
    provider = PROVIDER
    # No account-wide block; an unsubscribed member is off the audience's mailings where it stands.
    # https://mailchimp.com/help/unsubscribes/
    traits = ProviderTraits()
    # Members the sync engine hands over per upsert: whole batch-subscribe calls, 10 in flight.
    preferred_batch = 5_000

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 6,
        max_retry_seconds: float = 120.0,
        concurrency: int = 10,
        backoff_base_s: float = 0.5,
    ):
        self.concurrency = max(1, min(concurrency, MAX_CONNECTIONS))
        self.retry = RetryPolicy(
            max_retries=max_retries, max_seconds=max_retry_seconds, base_s=backoff_base_s
        )
        self.client = Client()
        self.client.api_client = _PooledApiClient({"api_key": api_key, "timeout": timeout}, self.concurrency)
        for name in ("lists", "ping"):
            getattr(self.client, name).api_client = self.client.api_client
        # The SDK swaps the substring "server" anywhere in the URL for the data centre; with the
        # host built here, that replacement is switched off (an empty ``server`` skips it).
        self.client.api_client.host = base_url.rstrip("/") if base_url else _host_for(api_key)
        self.client.api_client.server = ""
        self.stats = ApiStats()
        self._stats_lock = threading.Lock()
        self._segments: dict[tuple[str, str], int] = {}
        self._gate = _ConnectionGate(self.concurrency)

    # --- reading -----------------------------------------------------------------------------

    def pull(self, target: Target, since: str | None = None) -> Iterator[Page]:
        """Members page by page; with a tag, members of the audience without it are skipped,
        except those unsubscribed or cleaned.

        A member lacking the tag is not on this target; but Mailchimp's unsubscribe and clean are
        per audience, so they concern the tag's list as well: such a member is reported, marked
        ``on_target=False``, so that the engine knows it before planning any target of the list
        (instead of learning it from a compliance-state refusal once another target was written).
        Archived members are read only on incremental pulls (status=archived), to report them as ARCHIVED.
        Mailchimp does not move ``last_changed`` for tag edits made in its app: a tag target needs
        a full pull now and then to see them.
        """
        started = datetime.now(UTC)
        statuses: list[str | None] = [None, "archived"] if since else [None]
        for n, status in enumerate(statuses):
            last_status = n == len(statuses) - 1
            for members, last in self._member_pages(target.list_id, since, status):
                page = Page([m for m in (_seen_by(target, m) for m in members) if m is not None])
                if last and last_status:
                    page.cursor = _iso(started - CURSOR_SKEW)
                yield page

    def _member_pages(
        self, list_id: str, since: str | None, status: str | None
    ) -> Iterator[tuple[list[RemoteMember], bool]]:
        # Offset paging in the default order: a change during the read moves no member
        # (ordering by last_changed would shift the pages and skip one).
        offset = 0
        while True:
            params: dict[str, Any] = {"count": PAGE_MAX, "offset": offset, "fields": _MEMBER_FIELDS}
            if since:
                params["since_last_changed"] = since
            if status:
                params["status"] = status
            body = (
                self._call(
                    "get_list_members_info", self.client.lists.get_list_members_info, list_id, **params
                )
                or {}
            )
            rows = body.get("members") or []
            offset += len(rows)
            last = len(rows) < PAGE_MAX or offset >= int(body.get("total_items") or 0)
            yield [_remote_member(r) for r in rows], last
            if last:
                return

    def get_list(self, list_id: str) -> dict:
        return self._call("get_list", self.client.lists.get_list, list_id)

    def ping(self) -> bool:
        return bool(self._call("ping", self.client.ping.get))

    # --- writing -----------------------------------------------------------------------------

    def upsert(self, target: Target, members: Sequence[MemberPush]) -> WriteResult:
        """Batch subscribe (update_existing) 500 at a time, then tag the accepted ones.

        Tags cannot ride on batch subscribe, and one call per member (``/members/{hash}/tags``)
        would cost up to 500x more; batch-adding to the tag's static segment takes one call per
        500 members, so a tagged upsert costs two calls per 500. ``POST /batches`` is asynchronous
        and needs polling: no cheaper for syncd. Unsubscribed/cleaned members are refused with
        ``Rejected(code="compliance_state")``: only the sync engine may ask for ``pending``.
        """
        unique = {m.email.strip().lower(): m for m in members}
        chunks = _chunks(list(unique.values()), BATCH_SUBSCRIBE_MAX)
        segment_id = self._segment_for(target, create=True) if target.tag and chunks else None
        return self._run_concurrently(chunks, lambda chunk: self._upsert_chunk(target, chunk, segment_id))

    def _upsert_chunk(self, target: Target, chunk: list[MemberPush], segment_id: int | None) -> WriteResult:
        body = {"members": [_member_body(m) for m in chunk], "update_existing": True}
        result = WriteResult()
        answer = (
            self._write(
                "batch_list_members", result, self.client.lists.batch_list_members, target.list_id, body
            )
            or {}
        )
        refused = {str(e.get("email_address", "")).strip().lower(): e for e in answer.get("errors") or []}
        result.rejected = [self._with_member(target, _rejected(email, e)) for email, e in refused.items()]
        accepted = [m.email.strip().lower() for m in chunk if m.email.strip().lower() not in refused]
        if segment_id is not None and accepted:
            self._segment_batch(target, segment_id, result, members_to_add=accepted)
        result.done = accepted
        return result

    def _with_member(self, target: Target, rejected: Rejected) -> Rejected:
        """A compliance-state refusal is Mailchimp saying the address unsubscribed or was cleaned,
        archived since or not (https://mailchimp.com/help/about-compliance-state/): the member's
        state and last change go back with the refusal, as a read of the audience would give them
        (a tag's view of the audience never shows a member outside the tag)."""
        if rejected.code != "compliance_state":
            return rejected
        try:
            row = self._call(
                "get_list_member",
                self.client.lists.get_list_member,
                target.list_id,
                subscriber_hash(rejected.email),
            )
        except NotFound:
            return rejected
        member = _remote_member(row)
        if member.status not in (RemoteStatus.UNSUBSCRIBED, RemoteStatus.CLEANED):
            # Archived after it left: the refusal itself is the evidence of the opt-out.
            member = replace(member, status=RemoteStatus.UNSUBSCRIBED)
        return replace(rejected, member=member)

    def remove(self, target: Target, emails: Sequence[str]) -> WriteResult:
        """Take members off the target, never unsubscribing them.

        With a tag, the tag is removed (the member stays in the audience for its other lists);
        without one, the member is archived. https://mailchimp.com/help/archive-unarchive-contacts/
        """
        unique = list(dict.fromkeys(e.strip().lower() for e in emails))
        if not unique:
            return WriteResult()
        if target.tag:
            segment_id = self._segment_for(target, create=False)
            if segment_id is None:  # the tag was never used: nobody carries it
                return WriteResult(done=unique)

            def untag(chunk: list[str]) -> WriteResult:
                result = WriteResult(done=chunk)
                self._segment_batch(target, segment_id, result, members_to_remove=chunk)
                return result

            return self._run_concurrently(_chunks(unique, SEGMENT_BATCH_MAX), untag)
        return self._run_concurrently(unique, lambda email: self._archive(target, email))

    def _archive(self, target: Target, email: str) -> WriteResult:
        result = WriteResult(done=[email])
        try:
            self._write(
                "delete_list_member",
                result,
                self.client.lists.delete_list_member,
                target.list_id,
                subscriber_hash(email),
            )
        except NotFound:
            pass  # not in the audience (or already archived): already off the target
        return result

    def erase(self, target: Target, email: str) -> bool:
        """GDPR erasure in one audience: permanent deletion (the address cannot be re-added unless
        the person signs up again). True if Mailchimp held the member.
        https://mailchimp.com/developer/marketing/api/list-members/delete-list-member/"""
        try:
            self._write(
                "delete_list_member_permanent",
                WriteResult(),
                self.client.lists.delete_list_member_permanent,
                target.list_id,
                subscriber_hash(email),
            )
        except NotFound:
            return False
        return True

    def set_blocked(self, email: str, blocked: bool) -> None:
        """No-op: Mailchimp has no account-wide block list; its states are per audience.

        https://mailchimp.com/help/about-compliance-state/
        """

    def create_list(
        self,
        name: str,
        *,
        contact: Mapping[str, str] | None = None,
        from_email: str = "news@example.com",
        from_name: str | None = None,
    ) -> Target:
        # https://mailchimp.com/developer/marketing/api/lists/add-list/ : contact, permission reminder
        # and campaign defaults are required.
        body = {
            "name": name,
            "contact": dict(
                contact
                or {"company": name, "address1": "-", "city": "-", "state": "", "zip": "-", "country": "FR"}
            ),
            "permission_reminder": "You subscribed to this list.",
            "email_type_option": False,
            "campaign_defaults": {
                "from_name": from_name or name,
                "from_email": from_email,
                "subject": "",
                "language": "en",
            },
        }
        result = WriteResult()
        answer = self._write("create_list", result, self.client.lists.create_list, body)
        return Target(PROVIDER, answer["id"])

    def close(self) -> None:
        self.client.api_client.close()

    # --- tags as static segments -------------------------------------------------------------

    def _segment_for(self, target: Target, *, create: bool) -> int | None:
        """The id of the static segment behind ``target.tag``; tags are static segments.

        https://mailchimp.com/developer/marketing/api/list-segments/
        """
        key = (target.list_id, target.tag or "")
        if key in self._segments:
            return self._segments[key]
        offset = 0
        while True:
            page = self._call(
                "list_segments",
                self.client.lists.list_segments,
                target.list_id,
                type="static",
                count=PAGE_MAX,
                offset=offset,
                fields=["segments.id", "segments.name", "total_items"],
            )
            segments = page.get("segments") or []
            found = [s["id"] for s in segments if s.get("name") == target.tag]
            if found:
                self._segments[key] = int(found[0])
                return self._segments[key]
            offset += len(segments)
            if not segments or offset >= int(page.get("total_items") or 0):
                break
        if not create:
            return None
        created = self._write(
            "create_segment",
            WriteResult(),
            self.client.lists.create_segment,
            target.list_id,
            {"name": target.tag, "static_segment": []},
        )
        self._segments[key] = int(created["id"])
        return self._segments[key]

    def _segment_batch(
        self, target: Target, segment_id: int, result: WriteResult, **change: list[str]
    ) -> None:
        answer = (
            self._write(
                "batch_segment_members",
                result,
                self.client.lists.batch_segment_members,
                change,
                target.list_id,
                segment_id,
            )
            or {}
        )
        # Addresses not in the audience are ignored by Mailchimp: for a removal that is success;
        # for an addition it cannot happen (only members just accepted are tagged).
        if "members_to_add" in change:
            absent = {
                e.strip().lower()
                for err in answer.get("errors") or []
                for e in err.get("email_addresses", [])
            }
            result.rejected += [
                Rejected(e, "not in the audience, tag not added", "not_in_audience") for e in absent
            ]
            result.done = [e for e in result.done if e not in absent]

    # --- calls, errors, retries --------------------------------------------------------------

    def _run_concurrently(self, items: list[T], work: Callable[[T], WriteResult]) -> WriteResult:
        total = WriteResult()
        if not items:
            return total
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            for part in pool.map(work, items):
                total.done += part.done
                total.rejected += part.rejected
                total.calls += part.calls
                total.seen += part.seen
        return total

    def _write(
        self, endpoint: str, result: WriteResult, fn: Callable[..., Any], *args: Any, **kw: Any
    ) -> Any:
        def counted() -> Any:
            result.calls += 1
            return fn(*args, **kw)

        return self._call(endpoint, counted, write=True)

    def _call(self, endpoint: str, fn: Callable[..., Any], *args: Any, write: bool = False, **kw: Any) -> Any:
        attempts = [0]

        def once() -> Any:
            attempts[0] += 1
            self._count(endpoint, write)
            with self._gate:
                try:
                    answer = fn(*args, **kw)
                except ApiClientError as exc:
                    raise self._error(endpoint, exc.status_code, exc.text, attempts[0]) from None
            if isinstance(answer, requests.Response):
                # The SDK returns a non-2xx response with an empty body instead of raising.
                if not answer.ok:
                    raise self._error(endpoint, answer.status_code, answer.text, attempts[0])
                answer = None
            self._gate.succeeded()
            return answer

        def on_retry(exc: Exception, wait: float, attempt: int) -> None:
            with self._stats_lock:
                self.stats.retries += 1
            log.warning(
                "mailchimp.retry",
                endpoint=endpoint,
                status=getattr(exc, "status", None),
                wait_s=round(wait, 3),
                attempt=attempt + 1,
            )

        return call_with_retries(once, self.retry, on_retry=on_retry)

    def _count(self, endpoint: str, write: bool) -> None:
        with self._stats_lock:
            self.stats.calls[endpoint] += 1
            self.stats.write_calls += write

    def _error(self, endpoint: str, status: int | None, text: Any, attempt: int) -> ConnectorError:
        """One place maps Mailchimp's answers to syncd's error types.

        https://mailchimp.com/developer/marketing/docs/errors/ : 401/403 key, 404 resource,
        429 too many simultaneous connections, 5xx on Mailchimp's side.
        """
        problem = _problem(text)
        message = (
            f"Mailchimp {endpoint}: {status or 'network'} {problem.get('title', '')} "
            f"{problem.get('detail', '')}".strip()
        )
        wait = 0.0
        if status == 429:
            with self._stats_lock:
                self.stats.rate_limited += 1
            self._gate.crowded()
            # No rate-limit headers from Mailchimp: the wait is our own back-off.
            wait = self.retry.backoff_s(attempt - 1)
        return error_for_status(status, message, provider=PROVIDER, body=problem or text, wait_s=wait)

    # --- webhooks ----------------------------------------------------------------------------

    @staticmethod
    def verify_signature(
        body: bytes, header: str | None, secret: str, tolerance_s: float = 300, now: float | None = None
    ) -> bool:
        return verify_signature(body, header, secret, tolerance_s, now)

    def parse_webhook(
        self, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> list[ProviderEvent]:
        return self.parse_delivery(body, content_type, headers).events

    def storable_body(self, body: bytes) -> str:
        # A raw NUL byte and "%00" decode to the same form field; only the latter can be stored
        # in a PostgreSQL text column.
        return body.decode("utf-8").replace("\x00", "%00")

    def parse_delivery(
        self, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> Delivery:
        """One Mailchimp delivery (form-encoded, ``data[...]`` keys) as normalised events.

        https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/
        """
        form = _form(body, content_type)
        for key in ("data[email]", "data[old_email]", "data[new_email]"):
            problem = email_problem(form[key]) if form.get(key) else None
            if problem:
                raise PayloadError(f"Mailchimp webhook '{key}' {problem}", provider=PROVIDER, body=body)
        # Free text is cleaned before anything hashes or stores it (connectors/text.py says why).
        form = {clean_text(k): clean_text(v) for k, v in form.items()}
        return Delivery(self._events(form, body))

    def _events(self, form: Mapping[str, str], body: bytes) -> list[ProviderEvent]:
        kind_name = form.get("type")
        if not kind_name:
            raise PayloadError("Mailchimp webhook without 'type'", provider=PROVIDER, body=body)
        qualifier = _qualifier(kind_name, form)
        if (kind_name, qualifier) not in WEBHOOK_EVENTS:
            raise PayloadError(
                f"unknown Mailchimp webhook: type={kind_name!r} qualifier={qualifier!r}",
                provider=PROVIDER,
                body=body,
            )
        kind = WEBHOOK_EVENTS[(kind_name, qualifier)]
        if kind is None:
            return []
        email_key = "data[old_email]" if kind is EventKind.EMAIL_CHANGED else "data[email]"
        email = form.get(email_key, "").strip().lower()
        if not email:
            raise PayloadError(
                f"Mailchimp {kind_name} webhook without '{email_key}'", provider=PROVIDER, body=body
            )
        new_email = form.get("data[new_email]", "").strip().lower() or None
        if kind is EventKind.EMAIL_CHANGED and not new_email:
            raise PayloadError(
                "Mailchimp upemail webhook without 'data[new_email]'", provider=PROVIDER, body=body
            )
        fields = {
            _FIELD_OF_MERGE[k[13:-1]]: v
            for k, v in form.items()
            if k.startswith("data[merges][") and k[13:-1] in _FIELD_OF_MERGE
        }
        return [
            ProviderEvent(
                provider=PROVIDER,
                kind=kind,
                email=email,
                occurred_at=_fired_at(form.get("fired_at"), body),
                dedupe_key=_dedupe_key(form),
                target=form.get("data[list_id]") or None,
                reason=form.get("data[reason]") or form.get("data[action]") or None,
                new_email=new_email,
                fields=fields,
            )
        ]


def verify_signature(
    body: bytes, header: str | None, secret: str, tolerance_s: float = 300, now: float | None = None
) -> bool:
    """Check ``X-Mailchimp-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``.

    On the raw bytes, in constant time, within ``tolerance_s`` of ``now``.
    https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/
    """
    if not header or not secret:
        return False
    parts = [p.strip().partition("=") for p in header.split(",")]
    stamps = [v for k, _, v in parts if k == "t"]
    signatures = [v for k, _, v in parts if k == "v1"]
    if len(stamps) != 1 or not signatures or not stamps[0].isdigit():
        return False
    now = time.time() if now is None else now
    if abs(now - int(stamps[0])) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), stamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in signatures)


def subscriber_hash(email: str) -> str:
    # https://mailchimp.com/developer/marketing/docs/methods-parameters/#path-parameters : MD5 of lower-case
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def _host_for(api_key: str) -> str:
    # https://mailchimp.com/developer/marketing/docs/fundamentals/#api-structure : the key ends in "-<dc>"
    _, _, dc = api_key.rpartition("-")
    if not dc or not dc.isalnum():
        raise AuthFailed("Mailchimp API key has no data-centre suffix (like '-us19')", provider=PROVIDER)
    return f"https://{dc}.api.mailchimp.com/3.0"


def _problem(text: Any) -> dict:
    """The problem+json body, whether the SDK parsed it (a dict) or not (a raw string)."""
    if isinstance(text, dict):
        return text
    if isinstance(text, bytes | str) and text:
        try:
            parsed = json.loads(text)
        except ValueError:
            return {"detail": str(text)[:200]}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _member_body(m: MemberPush) -> dict:
    body: dict[str, Any] = {"email_address": m.email.strip().lower(), "status": m.status.value}
    merges = {MERGE_FIELDS[k]: v for k, v in m.fields.items() if k in MERGE_FIELDS and v is not None}
    if merges:
        body["merge_fields"] = merges
    return body


def _rejected(email: str, error: Mapping[str, Any]) -> Rejected:
    text = str(error.get("error") or error.get("field_message") or "rejected")
    code = next((c for needle, c in _REJECTION_CODES if needle in text.lower()), None)
    return Rejected(email, text, code or error.get("error_code"))


def _seen_by(target: Target, member: RemoteMember) -> RemoteMember | None:
    """What a read of ``target`` reports of an audience member (None: nothing). Without the
    target's tag, only an audience-wide opt-out, marked as not on the target."""
    if not target.tag or target.tag in member.tags:
        return member
    if member.status in AUDIENCE_WIDE:
        return replace(member, on_target=False)
    return None


def _remote_member(row: Mapping[str, Any]) -> RemoteMember:
    merges = row.get("merge_fields") or {}
    return RemoteMember(
        email=str(row["email_address"]).strip().lower(),
        status=RemoteStatus(row["status"]),
        fields={
            name: str(merges[tag]) for name, tag in MERGE_FIELDS.items() if merges.get(tag) not in (None, "")
        },
        tags=tuple(t["name"] for t in row.get("tags") or ()),
        remote_id=row.get("id"),
        changed_at=_parse_iso(row.get("last_changed")),
        evidence={k: str(row[k]) for k in _EVIDENCE if row.get(k)},
    )


def _form(body: bytes, content_type: str) -> dict[str, str]:
    if "application/x-www-form-urlencoded" not in (content_type or "").lower():
        raise PayloadError(
            f"Mailchimp webhooks are form-encoded, got {content_type!r}", provider=PROVIDER, body=body
        )
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(
            f"Mailchimp webhook body is not form data: {exc}", provider=PROVIDER, body=body
        ) from exc
    return dict(pairs)


def _qualifier(kind_name: str, form: Mapping[str, str]) -> str:
    if kind_name == "unsubscribe":
        return "abuse" if form.get("data[reason]") == "abuse" else form.get("data[action]") or "unsub"
    if kind_name == "cleaned":
        return form.get("data[reason]") or "hard"
    return ""


def _fired_at(value: str | None, body: bytes) -> datetime:
    # fired_at is "YYYY-MM-DD HH:MM:SS" in UTC.
    try:
        return datetime.strptime(value or "", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError as exc:
        raise PayloadError(
            f"Mailchimp webhook 'fired_at' is not 'YYYY-MM-DD HH:MM:SS': {value!r}",
            provider=PROVIDER,
            body=body,
        ) from exc


def _dedupe_key(form: Mapping[str, str]) -> str:
    """Stable across redeliveries and field order: a hash of the sorted raw fields."""
    canonical = json.dumps(sorted(form.items()), ensure_ascii=False, separators=(",", ":"))
    return f"{PROVIDER}:{hashlib.sha256(canonical.encode()).hexdigest()}"


def _parse_iso(value: Any) -> datetime | None:
    if not value:
        return None
    ts = datetime.fromisoformat(str(value))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).replace(microsecond=0).isoformat()


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
