"""Mailchimp audiences behind syncd's ``Connector`` contract, on mailchimp-marketing 3.0.80.

The package's other modules hold Mailchimp's vocabulary, its tags (static segments), its
webhooks and the HTTP under the SDK; syncd sees ``RemoteMember`` and ``connectors.contract``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import requests
import structlog
from mailchimp_marketing import Client
from mailchimp_marketing.api_client import ApiClientError

from connectors.clock import ProviderClock
from connectors.contract import (
    ApiStats,
    BlockRecord,
    ConnectorError,
    Delivery,
    MemberPush,
    NotFound,
    Page,
    ProviderEvent,
    Rejected,
    RemoteMember,
    RemoteStatus,
    Rename,
    Renamed,
    Target,
    TargetPresence,
    WebhookRegistration,
    WriteResult,
    error_for_status,
)
from connectors.mailchimp.connections import MAX_CONNECTIONS, ConnectionGate, PooledApiClient
from connectors.mailchimp.segments import TagSegments
from connectors.mailchimp.vocabulary import (
    BATCH_SUBSCRIBE_MAX,
    MEMBER_QUERY_FIELDS,
    PAGE_MAX,
    PROVIDER,
    SEGMENT_BATCH_MAX,
    TRAITS,
    host_for,
    iso_time,
    member_body,
    problem_of,
    rejected_of,
    remote_member,
    seen_by,
    subscriber_hash,
)
from connectors.mailchimp.webhooks import parse_delivery, storable_body, verify_signature
from connectors.retry import RetryPolicy, call_with_retries

log = structlog.get_logger(__name__)

T = TypeVar("T")
# A read's cursor is Mailchimp's time when it began (``connectors.clock``) minus this margin:
# Mailchimp's own lag between a change and the reads that show it, and the skew between its servers.
CURSOR_MARGIN = timedelta(seconds=3)
# Only without the provider's time (an answer with no Date header): the read's local start time
# minus this, as wide as the local clock may be off Mailchimp's.
CURSOR_SKEW = timedelta(minutes=2)
# The audience webhook events syncd's parser acts on (webhooks.py), and the sources it wants them
# from: a member's or an account user's change, never syncd's own API writes echoed back.
# https://mailchimp.com/developer/marketing/api/list-webhooks/add-webhook/
WEBHOOK_EVENTS = ("subscribe", "unsubscribe", "profile", "cleaned", "upemail")
WEBHOOK_SOURCES = {"user": True, "admin": True, "api": False}


class MailchimpConnector:
    provider = PROVIDER
    traits = TRAITS
    webhook_events = WEBHOOK_EVENTS
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
        cursor_margin_s: float = CURSOR_MARGIN.total_seconds(),
        settle_s: float = 0.0,
    ):
        """``settle_s``: how long a read waits after syncd's last write, so that its cursor
        passes that write (at least ``cursor_margin_s`` + ``clock.DATE_LAG``; 0: no wait, the
        next read returns syncd's last writes again)."""
        self.concurrency = max(1, min(concurrency, MAX_CONNECTIONS))
        self.retry = RetryPolicy(
            max_retries=max_retries, max_seconds=max_retry_seconds, base_s=backoff_base_s
        )
        self.client = Client()
        self.clock = ProviderClock()
        self.margin = timedelta(seconds=cursor_margin_s)
        self.settle_s = settle_s
        self.client.api_client = PooledApiClient(
            {"api_key": api_key, "timeout": timeout}, self.concurrency, self.clock
        )
        for name in ("lists", "ping"):
            getattr(self.client, name).api_client = self.client.api_client
        # The SDK swaps the substring "server" anywhere in the URL for the data centre; with the
        # host built here, that replacement is switched off (an empty ``server`` skips it).
        self.client.api_client.host = base_url.rstrip("/") if base_url else host_for(api_key)
        self.client.api_client.server = ""
        self.stats = ApiStats()
        self._stats_lock = threading.Lock()
        self._segments = TagSegments(self.client.lists, self._call, self._write)
        self._gate = ConnectionGate(self.concurrency)

    # --- reading -----------------------------------------------------------------------------

    def pull(self, target: Target, since: str | None = None) -> Iterator[Page]:
        """Members page by page; with a tag, members of the audience without it are skipped,
        except those unsubscribed or cleaned.

        A member lacking the tag is not on this target; but Mailchimp's unsubscribe and clean are
        per audience, so they concern the tag's list as well: such a member is reported, marked
        ``on_target=False``, so that the engine knows it before planning any target of the list
        (instead of learning it from a compliance-state refusal once another target was written).
        Archived members are reported as ARCHIVED on incremental pulls only (``pull_shared``).
        Mailchimp does not move ``last_changed`` for tag edits made in its app: a tag target needs
        a full pull now and then to see them.
        """
        for pages in self.pull_shared([target], since):
            yield pages[0]

    def pull_shared(self, targets: Sequence[Target], since: str | None = None) -> Iterator[list[Page]]:
        """One read of the audience for all its ``targets`` (tags of it, or the whole audience):
        each page of members, as each target sees it (``pull``). The last pages carry the cursor:
        Mailchimp's time when the read began, minus the margin.

        Archived members are listed apart (``status=archived``): an incremental read reports them
        as ARCHIVED; a full read only beside its pages (``Page.elsewhere``), where a member who
        changed address and was then archived still tells the change (pushed under the former
        address, which the audience no longer holds, the person would be added anew)."""
        audiences = {t.list_id for t in targets}
        if len(audiences) != 1:
            raise ValueError(f"one read serves one audience, not {sorted(audiences)}")
        list_id = targets[0].list_id
        cursor = self._read_cursor()
        statuses: list[str | None] = [None, "archived"]
        for n, status in enumerate(statuses):
            last_status = n == len(statuses) - 1
            for members, last in self._member_pages(list_id, since, status):
                if status == "archived" and since is None:
                    pages = [Page([], elsewhere=list(members)) for _ in targets]
                else:
                    pages = [_page(t, members) for t in targets]
                if last and last_status:
                    for page in pages:
                        page.cursor = cursor
                yield pages

    def changed_records(self, since: str) -> Iterator[list[RemoteMember]]:
        """Nothing: a read of the audience shows every member its tags share (``Page.elsewhere``)."""
        return iter(())

    def _read_cursor(self) -> str:
        """The cursor of a read about to begin: Mailchimp's time now (a lower bound, from the
        Date of an earlier answer), minus the margin; after syncd's writes, once they settled."""
        self.clock.settle(self.settle_s)
        now = self.clock.now()
        if now is None:
            self.ping()  # no answer yet to tell Mailchimp's time: the cheapest call does
            now = self.clock.now()
        if now is None:
            return iso_time(datetime.now(UTC) - CURSOR_SKEW)
        return iso_time(now - self.margin)

    def _member_pages(
        self, list_id: str, since: str | None, status: str | None
    ) -> Iterator[tuple[list[RemoteMember], bool]]:
        # Offset paging in the default order: a change during the read moves no member
        # (ordering by last_changed would shift the pages and skip one).
        offset = 0
        while True:
            params: dict[str, Any] = {"count": PAGE_MAX, "offset": offset, "fields": MEMBER_QUERY_FIELDS}
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
            yield [remote_member(r) for r in rows], last
            if last:
                return

    def get_list(self, list_id: str) -> dict:
        return self._call("get_list", self.client.lists.get_list, list_id)

    def ping(self) -> bool:
        return bool(self._call("ping", self.client.ping.get))

    # --- writing -----------------------------------------------------------------------------

    def upsert(
        self, target: Target, members: Sequence[MemberPush], *, confirm_since: str | None = None
    ) -> WriteResult:
        """Batch subscribe (update_existing) 500 at a time, then tag the accepted ones.

        Tags cannot ride on batch subscribe, and one call per member (``/members/{hash}/tags``)
        would cost up to 500x more; batch-adding to the tag's static segment takes one call per
        500 members, so a tagged upsert costs two calls per 500. ``POST /batches`` is asynchronous
        and needs polling: no cheaper for syncd. Unsubscribed/cleaned members are refused with
        ``Rejected(code="compliance_state")``: only the sync engine may ask for ``pending``.
        """
        unique = {m.email.strip().lower(): m for m in members}
        chunks = _chunks(list(unique.values()), BATCH_SUBSCRIBE_MAX)
        segment_id = self._segments.id_for(target, create=True) if target.tag and chunks else None
        return self._run_concurrently(chunks, lambda chunk: self._upsert_chunk(target, chunk, segment_id))

    def _upsert_chunk(self, target: Target, chunk: list[MemberPush], segment_id: int | None) -> WriteResult:
        body = {"members": [member_body(m) for m in chunk], "update_existing": True}
        result = WriteResult()
        answer = (
            self._write(
                "batch_list_members", result, self.client.lists.batch_list_members, target.list_id, body
            )
            or {}
        )
        refused = {str(e.get("email_address", "")).strip().lower(): e for e in answer.get("errors") or []}
        result.rejected = [self._with_member(target, rejected_of(email, e)) for email, e in refused.items()]
        accepted = [m.email.strip().lower() for m in chunk if m.email.strip().lower() not in refused]
        if segment_id is not None and accepted:
            self._segments.batch(target, segment_id, result, members_to_add=accepted)
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
        member = remote_member(row)
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
            segment_id = self._segments.id_for(target, create=False)
            if segment_id is None:  # the tag was never used: nobody carries it
                return WriteResult(done=unique)

            def untag(chunk: list[str]) -> WriteResult:
                result = WriteResult(done=chunk)
                self._segments.batch(target, segment_id, result, members_to_remove=chunk)
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

    def rename(self, target: Target, old_email: str, new_email: str, remote_id: str | None = None) -> Renamed:
        """Change a member's address in the audience (``PATCH`` with a new ``email_address``):
        the member keeps its status, tags and history (an unsubscribed member stays so: Mailchimp
        has no block that a change of address lifts). The member is addressed by the hash of its
        former address; when Mailchimp holds nothing under it and its ``contact_id`` is known
        (``remote_id``), by that id, which the member endpoints take in place of the hash: the
        member may have changed address at Mailchimp meanwhile (its webhook lost), and is still
        the person's, to be renamed rather than joined by a second member under the new address.
        https://mailchimp.com/developer/marketing/api/list-members/update-list-member/"""
        outcome = self._patch_address(target, subscriber_hash(old_email), new_email)
        if outcome.outcome is Rename.MISSING and remote_id:
            outcome = self._patch_address(target, remote_id, new_email)
        return outcome

    def _patch_address(self, target: Target, key: str, new_email: str) -> Renamed:
        try:
            self._write(
                "update_list_member",
                WriteResult(),
                self.client.lists.update_list_member,
                target.list_id,
                key,
                {"email_address": new_email.strip().lower()},
            )
        except NotFound:
            return Renamed(Rename.MISSING)
        except ConnectorError as exc:
            if exc.status == 400 and "Member Exists" in f"{exc} {exc.body}":
                return Renamed(Rename.TAKEN)
            raise
        return Renamed(Rename.RENAMED)

    def set_blocked(self, email: str, blocked: bool) -> None:
        """No-op: Mailchimp has no account-wide block list; its states are per audience.

        https://mailchimp.com/help/about-compliance-state/
        """

    def block_record(self, email: str) -> BlockRecord:
        """Nothing to read: Mailchimp has no account-wide block."""
        return BlockRecord()

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

    # --- the account's set-up: audiences, tags and webhooks ----------------------------------

    def presence(self, target: Target) -> TargetPresence:
        """Whether the audience exists, and the tag (a static segment) when the target has one."""
        try:
            found = self._call("get_list", self.client.lists.get_list, target.list_id)
        except NotFound:
            return TargetPresence(list_found=False, tag_found=False if target.tag else None)
        tag_found = None
        if target.tag:
            tag_found = self._segments.id_for(target, create=False) is not None
        return TargetPresence(list_found=True, list_name=(found or {}).get("name"), tag_found=tag_found)

    def webhooks(self, target: Target) -> list[WebhookRegistration]:
        """The audience's webhooks. https://mailchimp.com/developer/marketing/api/list-webhooks/"""
        answer = self._call("get_list_webhooks", self.client.lists.get_list_webhooks, target.list_id) or {}
        return [_registration(w, target.list_id) for w in answer.get("webhooks") or []]

    def register_webhook(self, target: Target, url: str, token: str | None = None) -> WebhookRegistration:
        """An audience webhook for ``WEBHOOK_EVENTS`` from ``WEBHOOK_SOURCES`` (Mailchimp has no
        bearer token: ``token`` is not used)."""
        body = {
            "url": url,
            "events": {name: name in WEBHOOK_EVENTS for name in (*WEBHOOK_EVENTS, "campaign")},
            "sources": dict(WEBHOOK_SOURCES),
        }
        answer = self._write(
            "create_list_webhook", WriteResult(), self.client.lists.create_list_webhook, target.list_id, body
        )
        return _registration(answer or {"id": "", "url": url}, target.list_id)

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

    def parse_delivery(
        self, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> Delivery:
        return parse_delivery(body, content_type)

    def storable_body(self, body: bytes) -> str:
        return storable_body(body)

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
            try:
                return fn(*args, **kw)
            finally:
                self.clock.wrote()

        return self._call(endpoint, counted, write=True)

    def _call(self, endpoint: str, fn: Callable[..., Any], *args: Any, write: bool = False, **kw: Any) -> Any:
        attempts = [0]
        # The message names the audience (the first text argument of every lists.* call; a
        # member's subscriber hash comes after it and stays out).
        audience = next((a for a in args if isinstance(a, str)), None)
        where = f"{endpoint} (audience {audience})" if audience else endpoint

        def once() -> Any:
            attempts[0] += 1
            self._count(endpoint, write)
            with self._gate:
                try:
                    answer = fn(*args, **kw)
                except ApiClientError as exc:
                    raise self._error(where, exc.status_code, exc.text, attempts[0]) from None
            if isinstance(answer, requests.Response):
                # The SDK returns a non-2xx response with an empty body instead of raising.
                if not answer.ok:
                    raise self._error(where, answer.status_code, answer.text, attempts[0])
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
        problem = problem_of(text)
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


def _registration(w: Mapping[str, Any], list_id: str) -> WebhookRegistration:
    events = tuple(name for name, on in (w.get("events") or {}).items() if on)
    return WebhookRegistration(
        id=str(w.get("id", "")), url=str(w.get("url", "")), events=events, list_id=list_id
    )


def _page(target: Target, members: list[RemoteMember]) -> Page:
    """A page of the audience as ``target`` sees it, the members it does not see beside."""
    page = Page([])
    for m in members:
        seen = seen_by(target, m)
        if seen is None:
            page.elsewhere.append(m)
        else:
            page.members.append(seen)
    return page


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
