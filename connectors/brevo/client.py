"""Brevo connector on the official ``sib_api_v3_sdk`` (7.6.0): reading, writing, erasing, sending.

The package's other modules hold Brevo's vocabulary, its contact import, its webhooks and its
transactional mail; syncd sees ``RemoteMember``, ``ProviderEvent`` and ``connectors.contract``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sib_api_v3_sdk as sib
import urllib3
from sib_api_v3_sdk.rest import ApiException

from connectors.brevo.imports import DIRECT_MAX, import_requests, wait_for_process
from connectors.brevo.transactional import smtp_email
from connectors.brevo.vocabulary import (
    EMAIL_SHAPE,
    PROVIDER,
    TRAITS,
    attributes_of,
    error_fields,
    error_from_api,
    format_cursor,
    json_object,
    latest,
    member_from_contact,
    parse_time,
    status_of,
)
from connectors.brevo.webhooks import parse_delivery, storable_body
from connectors.clock import ProviderClock
from connectors.collector import paced_collector
from connectors.contract import (
    ApiStats,
    BlockRecord,
    Delivery,
    Fatal,
    MemberPush,
    NotFound,
    Page,
    ProviderEvent,
    RateLimited,
    Rejected,
    RemoteMember,
    RemoteStatus,
    Rename,
    Renamed,
    Target,
    TargetPresence,
    Transient,
    WebhookRegistration,
    WriteResult,
)
from connectors.retry import RetryPolicy, call_with_retries

T = TypeVar("T")
DEFAULT_HOST = "https://api.brevo.com/v3"

# https://developers.brevo.com/reference/getcontactsfromlist : limit is at most 500
PAGE_SIZE = 500
ACCOUNT_PAGE_SIZE = 1000  # GET /contacts: at most 1,000 a page
# https://developers.brevo.com/reference/addcontacttolist / removecontactfromlist: 150 emails a call
LIST_BATCH = 150
# The marketing webhook events syncd's parser acts on (webhooks.EVENT_KINDS), in the names
# POST /webhooks takes. https://developers.brevo.com/reference/createwebhook
WEBHOOK_EVENTS = (
    "unsubscribed",
    "hardBounce",
    "softBounce",
    "spam",
    "listAddition",
    "contactUpdated",
    "contactDeleted",
)
# A read's cursor is the provider's time when it began (``connectors.clock``) minus this margin:
# Brevo's own lag between a change and the reads that show it, and the skew between its servers.
CURSOR_MARGIN = timedelta(seconds=3)
# Only without the provider's time (an answer with no Date header): the read's local start time
# minus this, as wide as the local clock may be off Brevo's.
CURSOR_SKEW = timedelta(minutes=2)


class _ClockedPool(urllib3.PoolManager):
    """The SDK's pool, telling the provider's clock the Date of every answer."""

    def __init__(self, clock: ProviderClock, **kw: Any):
        super().__init__(**kw)
        self.clock = clock

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:
        response = super().urlopen(method, url, redirect=redirect, **kw)
        self.clock.saw(response.headers.get("Date"))
        return response


class BrevoConnector:
    provider = PROVIDER
    traits = TRAITS
    webhook_events = WEBHOOK_EVENTS
    # Members the sync engine hands over per upsert: one import takes ~80,000 contacts (8 MB).
    preferred_batch = 50_000

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 6,
        max_retry_seconds: float = 120.0,
        api_key_name: str | None = None,
        concurrency: int = 1,
        cursor_margin_s: float = CURSOR_MARGIN.total_seconds(),
        settle_s: float = 0.0,
    ):
        """``settle_s``: how long a read waits after syncd's last write, so that its cursor
        passes that write (at least ``cursor_margin_s`` + ``clock.DATE_LAG``; 0: no wait, the
        next read returns syncd's last writes again)."""
        cfg = sib.Configuration()
        cfg.host = (base_url or DEFAULT_HOST).rstrip("/")
        cfg.api_key["api-key"] = api_key
        cfg.connection_pool_maxsize = max(4, concurrency)
        client = sib.ApiClient(cfg)
        # Retries are ours (counted, bounded, 429-aware): urllib3 must not retry behind our back.
        self.clock = ProviderClock()
        client.rest_client.pool_manager = _ClockedPool(
            self.clock, num_pools=4, maxsize=max(4, concurrency), retries=False
        )
        self.margin = timedelta(seconds=cursor_margin_s)
        self.settle_s = settle_s
        self._contacts = sib.ContactsApi(client)
        self._processes = sib.ProcessApi(client)
        self._emails = sib.TransactionalEmailsApi(client)
        self._webhooks = sib.WebhooksApi(client)
        # The SDK has no default timeout, and silently ignores a float one: it needs an int or a
        # (connect, read) tuple (sib_api_v3_sdk/rest.py).
        self._timeout = (timeout, timeout)
        self._policy = RetryPolicy(max_retries=max_retries, max_seconds=max_retry_seconds)
        self.api_key_name = api_key_name
        self.concurrency = max(1, concurrency)
        self.stats = ApiStats()
        self._lock = threading.Lock()

    # --- reading -------------------------------------------------------------------------------

    def pull(self, target: Target, since: str | None = None) -> Iterator[Page]:
        """Pages in creation order. With ``concurrency`` > 1, up to that many pages are fetched
        ahead (the first page gives the total), so memory stays bounded by the look-ahead.

        The last page's cursor is Brevo's time when the read began, minus the margin: every
        change stamped before it was there to be read."""
        list_id = int(target.list_id)
        for contacts, cursor in self._contact_pages(list_id, since):
            yield Page([member_from_contact(c, list_id) for c in contacts], cursor)

    def _contact_pages(self, list_id: int, since: str | None) -> Iterator[tuple[list[Any], str | None]]:
        """``pull``'s pages as Brevo's contact JSON, the read's cursor with the last one."""
        cursor = self._read_cursor(list_id)
        first = self._page(list_id, since, 0)
        contacts = first.get("contacts") or []
        total = first.get("count") or 0
        offsets = list(range(PAGE_SIZE, total, PAGE_SIZE)) if len(contacts) == PAGE_SIZE else []
        if not offsets:
            yield contacts, cursor
            return
        yield contacts, None
        with ThreadPoolExecutor(self.concurrency) as pool:
            ahead = [pool.submit(self._page, list_id, since, o) for o in offsets[: self.concurrency]]
            for i in range(len(offsets)):
                body = ahead.pop(0).result()
                if i + self.concurrency < len(offsets):
                    ahead.append(pool.submit(self._page, list_id, since, offsets[i + self.concurrency]))
                contacts = body.get("contacts") or []
                last = i == len(offsets) - 1 or len(contacts) < PAGE_SIZE
                yield contacts, cursor if last else None
                if last:
                    for f in ahead:
                        f.cancel()
                    return

    def pull_shared(self, targets: Sequence[Target], since: str | None = None) -> Iterator[list[Page]]:
        """A Brevo list is one target (no tags): every target of ``targets`` sees the same pages."""
        for page in self.pull(targets[0], since):
            yield [page] * len(targets)

    def changed_records(self, since: str) -> Iterator[list[RemoteMember]]:
        """The account's contacts changed since ``since``, on any list or none (``GET /contacts``
        with ``modifiedSince``, 1,000 a page, in creation order so that a change during the read
        moves no contact to a page already read): their address and id, for a change of address
        made at Brevo on a record a list syncd reads has not shown yet. Their status is not
        read here (no list is named): it is each list's own read that tells it."""
        offset = 0
        while True:
            body = self._call(
                "GET /contacts",
                lambda o=offset: json_object(
                    self._contacts.get_contacts(
                        limit=ACCOUNT_PAGE_SIZE,
                        offset=o,
                        modified_since=since,
                        sort="asc",
                        _request_timeout=self._timeout,
                        _preload_content=False,
                    ).data,
                    "GET /contacts",
                ),
            )
            contacts = body.get("contacts") or []
            yield [member_from_contact(c, 0) for c in contacts]
            offset += len(contacts)
            if len(contacts) < ACCOUNT_PAGE_SIZE:
                return

    def _read_cursor(self, list_id: int) -> str:
        """The cursor of a read about to begin: Brevo's time now (a lower bound, from the Date
        of an earlier answer), minus the margin; after syncd's writes, once they settled."""
        self.clock.settle(self.settle_s)
        now = self.clock.now()
        if now is None:
            # No answer yet to tell Brevo's time: the cheapest call does.
            self._call(
                "GET /contacts/lists/{id}",
                lambda: self._contacts.get_list(list_id, _request_timeout=self._timeout),
                id=list_id,
            )
            now = self.clock.now()
        if now is None:
            return format_cursor(datetime.now(UTC) - CURSOR_SKEW)
        return format_cursor(now - self.margin)

    def _page(self, list_id: int, since: str | None, offset: int) -> dict[str, Any]:
        """One page of the list, as Brevo's JSON (``getContacts``: ``contacts``, ``count``).

        Read raw (``_preload_content=False``) and parsed with ``json.loads``: the SDK's own
        deserialisation walks every contact of the page through its model layer, which cost
        more than the rest of a read-back together."""
        kwargs: dict[str, Any] = {"limit": PAGE_SIZE, "offset": offset, "sort": "asc"}
        if since:
            kwargs["modified_since"] = since

        def send() -> dict[str, Any]:
            answer = self._contacts.get_contacts_from_list(
                list_id, _request_timeout=self._timeout, _preload_content=False, **kwargs
            )
            return json_object(answer.data, f"GET /contacts/lists/{list_id}/contacts")

        return self._call("GET /contacts/lists/{id}/contacts", send, id=list_id)

    # --- writing -------------------------------------------------------------------------------

    def upsert(
        self, target: Target, members: Sequence[MemberPush], *, confirm_since: str | None = None
    ) -> WriteResult:
        """Create or update contacts with their attributes and put them in the list.

        Strategy (cheapest correct): up to DIRECT_MAX members, one ``POST /contacts`` each with
        ``updateEnabled`` (synchronous, exact per-member error). Above, ``POST /contacts/import``
        with ``listIds`` and ``updateExistingContacts``: one write call per 8 MB of JSON (tens of
        thousands of contacts), creating, updating and listing in one go; the process is polled,
        then the list is read back (``modifiedSince``) to confirm every member, since an import
        reports refused rows only by e-mail. ``add`` (150 a call, existing contacts only) plus
        ``POST /contacts/batch`` would cost ~100x more calls for the same effect.

        Neither path sends ``emailBlacklisted``: a contact blacklisted in Brevo stays blacklisted
        (syncd lifts a block only through ``set_blocked``).

        With ``confirm_since`` (the cursor of the list's last read that syncd reconciled), the
        read-back is a read of the list like any other: from that cursor, once the writes settled,
        every member it shows is in ``result.read`` and its cursor in ``result.cursor``, so that
        the next read does not return these writes again.
        """
        result = WriteResult()
        list_id = int(target.list_id)
        wanted: dict[str, MemberPush] = {}
        for m in members:
            email = m.email.strip().lower()
            if not EMAIL_SHAPE.match(email):
                result.rejected.append(Rejected(email, "invalid email address", "invalid_email"))
            elif m.status not in (RemoteStatus.SUBSCRIBED,):
                # Brevo lists have no pending state: syncd runs double opt-in itself, then pushes.
                result.rejected.append(
                    Rejected(email, f"Brevo cannot hold a {m.status} member", "unsupported_status")
                )
            else:
                wanted[email] = m
        if not wanted:
            return result
        # Brevo drops an import into a missing list silently: check the list once, up front.
        self._call(
            "GET /contacts/lists/{id}",
            lambda: self._contacts.get_list(list_id, _request_timeout=self._timeout),
            id=list_id,
        )
        started = datetime.now(UTC)
        if len(wanted) <= DIRECT_MAX:
            self._upsert_direct(list_id, wanted, result)
        else:
            self._upsert_by_import(list_id, wanted, result)
        confirmed, blocked = self._read_back(list_id, wanted, started, confirm_since, result)
        if len(wanted) > DIRECT_MAX:
            # An import reports refused rows only by e-mail: a member not read back was refused.
            for email in wanted:
                if email in confirmed:
                    result.done.append(email)
                else:
                    result.rejected.append(
                        Rejected(email, "Brevo did not import this contact (refused row)", "import_rejected")
                    )
        # A contact blocked account-wide (in Brevo's UI, by an unsubscribe) joins the list and stays
        # blocked: syncd learns of the block now, not at the next run's read.
        done = set(result.done)
        result.seen = [m for e, m in blocked.items() if e in done]
        return result

    def _read_back(
        self,
        list_id: int,
        wanted: Mapping[str, MemberPush],
        started: datetime,
        since: str | None,
        result: WriteResult,
    ) -> tuple[set[str], dict[str, RemoteMember]]:
        """The pushed members the list shows now (one incremental read of the list, a page at a
        time), and those of them blocked account-wide; with ``since``, every member the read
        shows goes into ``result.read``, and its cursor.

        Without ``since`` a contact becomes a ``RemoteMember`` only when blocked: confirming
        tens of thousands of rows needs their address and state, not a member each. The pages'
        JSON is tens of thousands of short-lived containers: with the cycle collector at its
        default pace, a full pass over the process's heap fell in one read-back in two, 0.05 s of
        its 0.15-0.2 s of CPU at 20,000 contacts (``connectors.collector`` paces it)."""
        confirmed: set[str] = set()
        blocked: dict[str, RemoteMember] = {}
        with paced_collector():
            for contacts, cursor in self._contact_pages(
                list_id, since or format_cursor(started - CURSOR_SKEW)
            ):
                if since is not None:
                    members = [member_from_contact(c, list_id) for c in contacts]
                    result.read.extend(members)
                    result.cursor = cursor or result.cursor
                    for m in members:
                        if m.email in wanted:
                            confirmed.add(m.email)
                            if m.status == RemoteStatus.BLOCKED:
                                blocked[m.email] = m
                    continue
                confirmed.update(e for e in (str(c["email"]).lower() for c in contacts) if e in wanted)
                # Only a contact with emailBlacklisted can be blocked (status_of).
                for c in contacts:
                    if c.get("emailBlacklisted") and status_of(c, list_id) == RemoteStatus.BLOCKED:
                        m = member_from_contact(c, list_id)
                        if m.email in wanted:
                            blocked[m.email] = m
        return confirmed, blocked

    def _upsert_direct(self, list_id: int, wanted: dict[str, MemberPush], result: WriteResult) -> None:
        for email, m in wanted.items():
            body = sib.CreateContact(
                email=email, attributes=attributes_of(m.fields), list_ids=[list_id], update_enabled=True
            )
            try:
                self._write(
                    "POST /contacts",
                    lambda b=body: self._contacts.create_contact(b, _request_timeout=self._timeout),
                    result,
                )
            except Fatal as exc:
                if exc.status != 400:
                    raise
                code, message = error_fields(exc.body)
                result.rejected.append(Rejected(email, message, code))
            else:
                result.done.append(email)

    def _upsert_by_import(self, list_id: int, wanted: dict[str, MemberPush], result: WriteResult) -> None:
        for body in import_requests(list_id, wanted):
            created = self._write(
                "POST /contacts/import",
                lambda b=body: self._contacts.import_contacts(b, _request_timeout=self._timeout),
                result,
            )
            self._wait_for_process(created.process_id)
            self.clock.wrote()  # the import's contacts are stamped when its process ran

    def _wait_for_process(self, process_id: int) -> None:
        wait_for_process(
            process_id,
            lambda: self._call(
                "GET /processes/{id}",
                lambda: self._processes.get_process(process_id, _request_timeout=self._timeout),
                id=process_id,
            ),
        )

    def remove(self, target: Target, emails: Sequence[str]) -> WriteResult:
        """Take contacts off the list. Not an unsubscribe: blacklist and listUnsubscribed untouched."""
        result = WriteResult()
        list_id = int(target.list_id)
        batch = sorted({e.strip().lower() for e in emails})
        chunks = [batch[i : i + LIST_BATCH] for i in range(0, len(batch), LIST_BATCH)]

        def one(chunk: list[str]) -> None:
            try:
                self._write(
                    "POST /contacts/lists/{id}/contacts/remove",
                    lambda: self._contacts.remove_contact_from_list(
                        list_id, sib.RemoveContactFromList(emails=chunk), _request_timeout=self._timeout
                    ),
                    result,
                    id=list_id,
                )
            except Fatal as exc:
                # Brevo answers 400 when none of the emails is in the list: already done.
                if exc.status != 400 or "does not exist" not in error_fields(exc.body)[1]:
                    raise
                with self._lock:
                    result.done.extend(chunk)
                return
            with self._lock:
                # contacts.failure names contacts that were not in the list: the goal holds anyway.
                result.done.extend(chunk)

        self._map(one, chunks)
        return result

    def erase(self, target: Target, email: str) -> bool:
        """GDPR erasure: the contact is deleted from the Brevo account (every list). True if Brevo
        held it. https://developers.brevo.com/reference/deletecontact"""
        try:
            self._write(
                "DELETE /contacts/{identifier}",
                lambda: self._contacts.delete_contact(email.strip().lower(), _request_timeout=self._timeout),
                None,
            )
        except NotFound:
            return False
        return True

    def set_blocked(self, email: str, blocked: bool) -> None:
        # https://developers.brevo.com/reference/updatecontact : emailBlacklisted is account-wide
        body = sib.UpdateContact(email_blacklisted=blocked)
        self._write(
            "PUT /contacts/{identifier}",
            lambda: self._contacts.update_contact(
                email.strip().lower(), body, _request_timeout=self._timeout
            ),
            None,
        )

    def rename(self, target: Target, old_email: str, new_email: str, remote_id: str | None = None) -> Renamed:
        """Change the contact's address (its ``EMAIL`` attribute): one record for the whole
        account, so every list sees the new address at once.

        The record is read first (``GET /contacts/{identifier}``, by its id where syncd knows it:
        an account user may have changed its address since). Brevo lifts a block when the address
        changes (https://help.brevo.com/hc/en-us/articles/208802209), so a blocked record is not
        renamed; it comes back as read (``Rename.BLOCKED``), its block one the master base may not
        know yet (a webhook still on its way). A record under the former address beside the
        person's, already under the new one, answers ``Rename.TAKEN``: it leaves the list.
        https://developers.brevo.com/reference/updatecontact"""
        old, new = old_email.strip().lower(), new_email.strip().lower()
        record = self._contact(remote_id) if remote_id else None
        if record is not None and str(record.get("email") or "").lower() == new:
            # The person's record has the new address already (an account user changed it): a
            # record still under the former one is a second record (a push under that address
            # crossed the change), taken off the list like a former address whose new one is taken.
            return Renamed(Rename.TAKEN if old != new and self._contact(old) is not None else Rename.MISSING)
        record = record or self._contact(old)
        if record is None or str(record.get("email") or "").lower() == new:
            return Renamed(Rename.MISSING)
        current = str(record.get("email") or old).lower()
        list_id = int(target.list_id)
        if record.get("emailBlacklisted"):
            member = member_from_contact(record, list_id)
            return Renamed(
                Rename.BLOCKED, replace(member, on_target=list_id in (record.get("listIds") or ()))
            )
        body = sib.UpdateContact(attributes={"EMAIL": new})
        try:
            self._write(
                "PUT /contacts/{identifier}",
                lambda: self._contacts.update_contact(current, body, _request_timeout=self._timeout),
                None,
            )
        except NotFound:
            return Renamed(Rename.MISSING)
        except Fatal as exc:
            if "duplicate_parameter" in str(exc.body or "") or "already associated" in str(exc):
                return Renamed(Rename.TAKEN)
            raise
        return Renamed(Rename.RENAMED)

    def _contact(self, identifier: str) -> dict[str, Any] | None:
        """The contact's JSON (``GET /contacts/{identifier}``: an address or an id), or None if
        Brevo has no such contact."""

        def send() -> dict[str, Any]:
            answer = self._contacts.get_contact_info(
                identifier, _request_timeout=self._timeout, _preload_content=False
            )
            return json_object(answer.data, "GET /contacts/{identifier}")

        try:
            return self._call("GET /contacts/{identifier}", send)
        except NotFound:
            return None

    def block_record(self, email: str) -> BlockRecord:
        """Brevo's own record of the contact: its campaign statistics list spam complaints and the
        blocks an account user set (UI or API, ``adminUnsubscription``), which a per-list
        unsubscribe does not explain. Read before syncd lifts a block; an unknown contact has none.
        https://developers.brevo.com/reference/getcontactstats"""
        try:
            stats = self._call(
                "GET /contacts/{identifier}/campaignStats",
                lambda: self._contacts.get_contact_stats(
                    email.strip().lower(), _request_timeout=self._timeout
                ),
            )
        except NotFound:
            return BlockRecord()
        unsubscriptions = stats.unsubscriptions
        admin = unsubscriptions.admin_unsubscription if unsubscriptions is not None else None
        user = unsubscriptions.user_unsubscription if unsubscriptions is not None else None
        return BlockRecord(
            complained_at=latest(c.event_time for c in stats.complaints or []),
            blocked_by_user_at=latest(u.event_time for u in admin or []),
            clicks=tuple(
                (str(u.campaign_id), at) for u in user or [] if (at := parse_time(u.event_time)) is not None
            ),
        )

    def create_list(self, name: str, folder_id: int | None = None) -> Target:
        # https://developers.brevo.com/reference/createlist : folderId is required
        body = sib.CreateList(name=name, folder_id=folder_id or 1)
        created = self._write(
            "POST /contacts/lists",
            lambda: self._contacts.create_list(body, _request_timeout=self._timeout),
            None,
        )
        return Target(PROVIDER, str(created.id))

    def send_email(self, **mail: Any) -> str:
        """One transactional e-mail; ``mail``: the keywords of ``transactional.smtp_email``.
        Returns Brevo's message id."""
        body = smtp_email(**mail)
        sent = self._call(
            "POST /smtp/email",
            lambda: self._emails.send_transac_email(body, _request_timeout=self._timeout),
        )
        return sent.message_id

    # --- the account's set-up: lists and webhooks ------------------------------------------------

    def presence(self, target: Target) -> TargetPresence:
        """Whether the list exists. https://developers.brevo.com/reference/getlist"""
        list_id = int(target.list_id)
        try:
            found = self._call(
                "GET /contacts/lists/{id}",
                lambda: self._contacts.get_list(list_id, _request_timeout=self._timeout),
                id=list_id,
            )
        except NotFound:
            return TargetPresence(list_found=False)
        return TargetPresence(list_found=True, list_name=found.name)

    def webhooks(self, target: Target) -> list[WebhookRegistration]:
        """The account's marketing webhooks: Brevo's webhooks are account-wide, each event names
        its list. https://developers.brevo.com/reference/getwebhooks (type defaults to transactional)"""
        found = self._call(
            "GET /webhooks",
            lambda: self._webhooks.get_webhooks(type="marketing", _request_timeout=self._timeout),
        )
        return [
            WebhookRegistration(id=str(w["id"]), url=str(w["url"]), events=tuple(w.get("events") or ()))
            for w in found.webhooks or []
        ]

    def register_webhook(self, target: Target, url: str, token: str | None = None) -> WebhookRegistration:
        """A marketing webhook for ``WEBHOOK_EVENTS``, with ``token`` as its bearer token.

        The body goes as a dict: the SDK's ``CreateWebhook`` (7.6.0) has no ``auth`` field,
        which the API takes. https://developers.brevo.com/reference/createwebhook"""
        body: dict[str, Any] = {
            "url": url,
            "description": "syncd",
            "events": list(WEBHOOK_EVENTS),
            "type": "marketing",
        }
        if token:
            body["auth"] = {"type": "bearer", "token": token}
        created = self._write(
            "POST /webhooks",
            lambda: self._webhooks.create_webhook(body, _request_timeout=self._timeout),
            None,
        )
        return WebhookRegistration(id=str(created.id), url=url, events=WEBHOOK_EVENTS)

    # --- webhooks ------------------------------------------------------------------------------

    def parse_webhook(
        self, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> list[ProviderEvent]:
        return self.parse_delivery(body, content_type, headers).events

    def parse_delivery(
        self, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> Delivery:
        return parse_delivery(body, self.api_key_name)

    def storable_body(self, body: bytes) -> str:
        return storable_body(body)

    # --- plumbing ------------------------------------------------------------------------------

    def _map(self, fn: Callable[[T], None], items: Sequence[T]) -> None:
        if self.concurrency == 1 or len(items) <= 1:
            for item in items:
                fn(item)
            return
        with ThreadPoolExecutor(self.concurrency) as pool:
            for f in [pool.submit(fn, item) for item in items]:
                f.result()

    def _write(self, endpoint: str, send: Callable[[], T], result: WriteResult | None, **ids: Any) -> T:
        def counted() -> T:
            with self._lock:
                self.stats.write_calls += 1
                if result is not None:
                    result.calls += 1
            try:
                return send()
            finally:
                self.clock.wrote()

        return self._call(endpoint, counted, **ids)

    def _call(self, endpoint: str, send: Callable[[], T], **ids: Any) -> T:
        """``endpoint`` (a path template, counted as it is) with ``ids`` filled in for the error
        message, so that it names the list or process concerned. Only ids: a contact's address
        ({identifier}) stays out of messages, which reach the logs."""
        where = endpoint.format(**ids) if ids else endpoint

        def once() -> T:
            with self._lock:
                self.stats.calls[endpoint] += 1
            try:
                return send()
            except ApiException as exc:
                error = error_from_api(exc, where)
                if isinstance(error, RateLimited):
                    with self._lock:
                        self.stats.rate_limited += 1
                raise error from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise Transient(f"{where}: {type(exc).__name__}: {exc}", provider=PROVIDER) from exc

        def on_retry(exc: Transient, wait: float, attempt: int) -> None:
            with self._lock:
                self.stats.retries += 1

        return call_with_retries(once, self._policy, on_retry=on_retry)
