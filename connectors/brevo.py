"""Brevo connector on the official ``sib_api_v3_sdk`` (7.6.0).

Everything Brevo-specific lives here: attribute names, event names, caps, error bodies. The rest of
syncd sees ``RemoteMember``, ``ProviderEvent`` and the error types of ``connectors.contract``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sib_api_v3_sdk as sib
import urllib3
from sib_api_v3_sdk.rest import ApiException

from connectors.contract import (
    ApiStats,
    ConnectorError,
    Delivery,
    EventKind,
    Fatal,
    MemberPush,
    NotFound,
    Page,
    PayloadError,
    ProviderEvent,
    ProviderTraits,
    RateLimited,
    Rejected,
    RemoteMember,
    RemoteStatus,
    Target,
    Transient,
    WriteResult,
    error_for_status,
)
from connectors.retry import RetryPolicy, call_with_retries
from connectors.text import clean_text, email_problem

T = TypeVar("T")
PROVIDER = "brevo"
DEFAULT_HOST = "https://api.brevo.com/v3"

# syncd field -> Brevo contact attribute. FIRSTNAME, LASTNAME and SMS exist in every account; the
# others must be created once in the account (Contacts > Settings > Contact attributes).
# https://developers.brevo.com/docs/synchronise-contact-lists
ATTRIBUTES = {
    "first_name": "FIRSTNAME",
    "last_name": "LASTNAME",
    "phone": "SMS",
    "company": "COMPANY",
    "city": "CITY",
    "country": "COUNTRY",
}
FIELDS_BY_ATTRIBUTE = {attr: name for name, attr in ATTRIBUTES.items()}

# https://developers.brevo.com/reference/getcontactsfromlist : limit is at most 500
PAGE_SIZE = 500
# https://developers.brevo.com/reference/addcontacttolist / removecontactfromlist: 150 emails a call
LIST_BATCH = 150
# https://developers.brevo.com/reference/importcontacts : body up to 10 MB, "a safe limit of around 8 MB"
IMPORT_MAX_BYTES = 8_000_000
# At or below this many members, one synchronous POST /contacts each costs no more calls than an
# import (1 write + at least 1 process poll + 1 verification read), and answers per member at once.
DIRECT_MAX = 3
IMPORT_TIMEOUT_S = 900.0
# A pull's cursor is its start time minus this, so that writes racing the read are seen again.
CURSOR_SKEW = timedelta(minutes=2)

# Brevo webhook event name -> syncd event kind; None: a known event syncd does not act on.
# Names differ between the documentation and real traffic, hence the variants.
# https://developers.brevo.com/docs/marketing-webhooks
# https://developers.brevo.com/docs/transactional-webhooks
EVENT_KINDS: dict[str, EventKind | None] = {
    "unsubscribed": EventKind.UNSUBSCRIBED,
    "unsubscribe": EventKind.UNSUBSCRIBED,
    "hard_bounce": EventKind.BOUNCED_HARD,
    "hard_bounced": EventKind.BOUNCED_HARD,
    "hardbounce": EventKind.BOUNCED_HARD,
    "invalid_email": EventKind.BOUNCED_HARD,
    "soft_bounce": EventKind.BOUNCED_SOFT,
    "soft_bounced": EventKind.BOUNCED_SOFT,
    "softbounce": EventKind.BOUNCED_SOFT,
    "spam": EventKind.COMPLAINED,
    "complaint": EventKind.COMPLAINED,
    "list_addition": EventKind.SUBSCRIBED,
    "contact_updated": EventKind.PROFILE_UPDATED,
    "contact_deleted": EventKind.DELETED,
    # A send refused because the address is already blacklisted: the block was reported by the
    # unsubscribe/complaint/bounce that caused it, and syncd's base already holds it.
    "blocked": None,
    "delivered": None,
    "request": None,
    "sent": None,
    "deferred": None,
    "opened": None,
    "unique_opened": None,
    "first_opening": None,
    "click": None,
    "clicked": None,
}
LIST_EVENTS = {EventKind.UNSUBSCRIBED, EventKind.SUBSCRIBED}
OWN_WRITE_EVENTS = {"contact_updated", "list_addition"}

# Brevo refuses addresses it cannot parse; checked locally so a bad row never costs a call.
EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# An unsubscribe blacklists the contact for the whole account (emailBlacklisted), and a contact who
# unsubscribed from a list stays in it, the list named in listUnsubscribed.
# https://help.brevo.com/hc/en-us/articles/208802209 ; https://developers.brevo.com/docs/blocklisted-contacts
TRAITS = ProviderTraits(blocks_account_wide=True, keeps_unsubscribed_on_list=True)


class BrevoConnector:
    provider = PROVIDER
    traits = TRAITS
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
    ):
        cfg = sib.Configuration()
        cfg.host = (base_url or DEFAULT_HOST).rstrip("/")
        cfg.api_key["api-key"] = api_key
        cfg.connection_pool_maxsize = max(4, concurrency)
        client = sib.ApiClient(cfg)
        # Retries are ours (counted, bounded, 429-aware): urllib3 must not retry behind our back.
        client.rest_client.pool_manager = urllib3.PoolManager(
            num_pools=4, maxsize=max(4, concurrency), retries=False
        )
        self._contacts = sib.ContactsApi(client)
        self._processes = sib.ProcessApi(client)
        self._emails = sib.TransactionalEmailsApi(client)
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
        ahead (the first page gives the total), so memory stays bounded by the look-ahead."""
        started = datetime.now(UTC)
        list_id = int(target.list_id)
        cursor = format_cursor(started - CURSOR_SKEW)
        first = self._page(list_id, since, 0)
        total = first.count or 0
        offsets = list(range(PAGE_SIZE, total, PAGE_SIZE)) if len(first.contacts or []) == PAGE_SIZE else []
        if not offsets:
            yield Page([member_from_contact(c, list_id) for c in first.contacts or []], cursor)
            return
        yield Page([member_from_contact(c, list_id) for c in first.contacts or []])
        with ThreadPoolExecutor(self.concurrency) as pool:
            ahead = [pool.submit(self._page, list_id, since, o) for o in offsets[: self.concurrency]]
            for i in range(len(offsets)):
                resp = ahead.pop(0).result()
                if i + self.concurrency < len(offsets):
                    ahead.append(pool.submit(self._page, list_id, since, offsets[i + self.concurrency]))
                contacts = resp.contacts or []
                last = i == len(offsets) - 1 or len(contacts) < PAGE_SIZE
                yield Page([member_from_contact(c, list_id) for c in contacts], cursor if last else None)
                if last:
                    for f in ahead:
                        f.cancel()
                    return

    def _page(self, list_id: int, since: str | None, offset: int) -> Any:
        kwargs: dict[str, Any] = {"limit": PAGE_SIZE, "offset": offset, "sort": "asc"}
        if since:
            kwargs["modified_since"] = since
        return self._call(
            "GET /contacts/lists/{id}/contacts",
            lambda: self._contacts.get_contacts_from_list(list_id, _request_timeout=self._timeout, **kwargs),
        )

    # --- writing -------------------------------------------------------------------------------

    def upsert(self, target: Target, members: Sequence[MemberPush]) -> WriteResult:
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
        )
        started = datetime.now(UTC)
        if len(wanted) <= DIRECT_MAX:
            self._upsert_direct(list_id, wanted, result)
        else:
            self._upsert_by_import(list_id, wanted, result)
        confirmed = self._read_back(list_id, wanted, started)
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
        result.seen = [m for e, m in confirmed.items() if e in done and m.status == RemoteStatus.BLOCKED]
        return result

    def _read_back(
        self, list_id: int, wanted: Mapping[str, MemberPush], started: datetime
    ) -> dict[str, RemoteMember]:
        """The pushed members as the list shows them now (one incremental read of the list)."""
        confirmed: dict[str, RemoteMember] = {}
        for page in self.pull(Target(PROVIDER, str(list_id)), format_cursor(started - CURSOR_SKEW)):
            confirmed.update((m.email, m) for m in page.members if m.email in wanted)
        return confirmed

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
        for csv_body in import_chunks(wanted):
            body = sib.RequestContactImport(
                # A CSV body, not jsonBody: one string the SDK sends as it is, where a JSON body is
                # deep-copied by the SDK's serialiser (tens of MB for 50,000 contacts).
                file_body=csv_body,
                list_ids=[list_id],
                update_existing_contacts=True,
                # Empty values leave Brevo's data alone rather than erase it.
                empty_contacts_attributes=False,
                # Only ever adds a blacklist; never sent as an unblock. Blacklisted contacts
                # stay blacklisted through an import:
                # https://help.brevo.com/hc/en-us/articles/209499265
                email_blacklist=False,
            )
            created = self._write(
                "POST /contacts/import",
                lambda b=body: self._contacts.import_contacts(b, _request_timeout=self._timeout),
                result,
            )
            self._wait_for_process(created.process_id)

    def _wait_for_process(self, process_id: int) -> None:
        # https://developers.brevo.com/reference/getprocess : queued -> in_process -> completed
        deadline = time.monotonic() + IMPORT_TIMEOUT_S
        pause = 0.05
        while True:
            proc = self._call(
                "GET /processes/{id}",
                lambda: self._processes.get_process(process_id, _request_timeout=self._timeout),
            )
            if proc.status == "completed":
                return
            if time.monotonic() > deadline:
                raise Transient(f"import process {process_id} still {proc.status}", provider=PROVIDER)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)

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

    def create_list(self, name: str, folder_id: int | None = None) -> Target:
        # https://developers.brevo.com/reference/createlist : folderId is required
        body = sib.CreateList(name=name, folder_id=folder_id or 1)
        created = self._write(
            "POST /contacts/lists",
            lambda: self._contacts.create_list(body, _request_timeout=self._timeout),
            None,
        )
        return Target(PROVIDER, str(created.id))

    def send_email(
        self,
        *,
        sender_email: str,
        sender_name: str,
        to_email: str,
        to_name: str | None,
        subject: str,
        html: str,
        text: str,
        headers: dict[str, str],
    ) -> str:
        # https://developers.brevo.com/reference/sendtransacemail
        mail = sib.SendSmtpEmail(
            sender=sib.SendSmtpEmailSender(email=sender_email, name=sender_name),
            to=[sib.SendSmtpEmailTo(email=to_email, name=to_name or None)],
            subject=subject,
            html_content=html,
            text_content=text,
            headers=dict(headers),
        )
        sent = self._call(
            "POST /smtp/email",
            lambda: self._emails.send_transac_email(mail, _request_timeout=self._timeout),
        )
        return sent.message_id

    # --- webhooks ------------------------------------------------------------------------------

    def parse_webhook(
        self, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> list[ProviderEvent]:
        return self.parse_delivery(body, content_type, headers).events

    def parse_delivery(
        self, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> Delivery:
        """One delivery: a JSON object, or a batch (a JSON array) of them.

        A batch's bad item is left out with its reason, so that it never sinks the good ones;
        a delivery with nothing usable is refused whole.
        """
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadError(f"Brevo webhook body is not JSON: {exc}", provider=PROVIDER) from exc
        except RecursionError as exc:
            raise PayloadError("Brevo webhook body is nested too deeply", provider=PROVIDER) from exc
        if not isinstance(payload, list):
            return Delivery(events_from_payload(payload, self.api_key_name))
        if not payload:
            raise PayloadError("Brevo webhook batch is empty", provider=PROVIDER)
        events: list[ProviderEvent] = []
        skipped: list[str] = []
        for index, item in enumerate(payload):
            try:
                events.extend(events_from_payload(item, self.api_key_name))
            except PayloadError as exc:
                skipped.append(f"item {index}: {exc}")
        if len(skipped) == len(payload):
            raise PayloadError("; ".join(skipped[:5]), provider=PROVIDER)
        return Delivery(events, skipped)

    def storable_body(self, body: bytes) -> str:
        # A JSON text holds no raw control character (json.loads refuses one): stored as sent.
        return body.decode("utf-8")

    # --- plumbing ------------------------------------------------------------------------------

    def _map(self, fn: Callable[[T], None], items: Sequence[T]) -> None:
        if self.concurrency == 1 or len(items) <= 1:
            for item in items:
                fn(item)
            return
        with ThreadPoolExecutor(self.concurrency) as pool:
            for f in [pool.submit(fn, item) for item in items]:
                f.result()

    def _write(self, endpoint: str, send: Callable[[], T], result: WriteResult | None) -> T:
        def counted() -> T:
            with self._lock:
                self.stats.write_calls += 1
                if result is not None:
                    result.calls += 1
            return send()

        return self._call(endpoint, counted)

    def _call(self, endpoint: str, send: Callable[[], T]) -> T:
        def once() -> T:
            with self._lock:
                self.stats.calls[endpoint] += 1
            try:
                return send()
            except ApiException as exc:
                error = error_from_api(exc, endpoint)
                if isinstance(error, RateLimited):
                    with self._lock:
                        self.stats.rate_limited += 1
                raise error from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise Transient(f"{endpoint}: {type(exc).__name__}: {exc}", provider=PROVIDER) from exc

        def on_retry(exc: Transient, wait: float, attempt: int) -> None:
            with self._lock:
                self.stats.retries += 1

        return call_with_retries(once, self._policy, on_retry=on_retry)


# --- Brevo vocabulary <-> syncd ----------------------------------------------------------------


def error_fields(body: Any) -> tuple[str | None, str]:
    """``code`` and ``message`` of Brevo's error body (``errorModel`` in the OpenAPI file)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return None, body
    if isinstance(body, dict):
        return body.get("code"), str(body.get("message", ""))
    return None, ""


def error_from_api(exc: ApiException, endpoint: str) -> ConnectorError:
    status = exc.status or 0
    code, message = error_fields(exc.body)
    wait = 1.0
    if status == 429:
        # https://developers.brevo.com/docs/api-limits : wait x-sib-ratelimit-reset seconds
        try:
            wait = max(0.0, float((exc.headers or {}).get("x-sib-ratelimit-reset")))
        except (TypeError, ValueError):
            wait = 1.0
    text = f"{endpoint}: {status} {code or exc.reason}: {message}"
    return error_for_status(status, text, provider=PROVIDER, body=exc.body, wait_s=wait)


def member_from_contact(c: Mapping[str, Any], list_id: int) -> RemoteMember:
    # https://developers.brevo.com/docs/blocklisted-contacts : emailBlacklisted is account-wide;
    # listUnsubscribed names the lists the contact unsubscribed from.
    # The per-list unsubscribe is the signal syncd acts on: it wins over the account-wide block
    # that Brevo sets with it, which syncd lifts for the contact's other lists.
    left = c.get("listUnsubscribed") or []
    if list_id in left:
        status = RemoteStatus.UNSUBSCRIBED
    elif c.get("emailBlacklisted"):
        status = RemoteStatus.BLOCKED
    else:
        status = RemoteStatus.SUBSCRIBED
    attrs = c.get("attributes") or {}
    fields = {name: str(attrs[attr]) for attr, name in FIELDS_BY_ATTRIBUTE.items() if attrs.get(attr)}
    return RemoteMember(
        email=str(c["email"]).lower(),
        status=status,
        fields=fields,
        remote_id=str(c["id"]) if c.get("id") is not None else None,
        changed_at=parse_time(c.get("modifiedAt")),
        unsubscribed_from=tuple(str(i) for i in left),
    )


def attributes_of(fields: Mapping[str, str]) -> dict[str, str]:
    return {ATTRIBUTES[k]: v for k, v in fields.items() if k in ATTRIBUTES and v is not None}


def import_chunks(wanted: Mapping[str, MemberPush]) -> Iterator[str]:
    """CSV bodies for ``POST /contacts/import`` (``;``-separated, attribute names as headers),
    each under IMPORT_MAX_BYTES. An empty cell leaves Brevo's value alone (emptyContactsAttributes
    false). https://developers.brevo.com/docs/import-your-contacts-to-brevo"""
    header = ["EMAIL", *ATTRIBUTES.values()]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    writer.writerow(header)
    start, rows = out.tell(), 0
    for email, m in wanted.items():
        mark = out.tell()
        writer.writerow([email, *(m.fields.get(name) or "" for name in ATTRIBUTES)])
        if rows and out.tell() > IMPORT_MAX_BYTES:
            text = out.getvalue()
            yield text[:mark]
            out = io.StringIO()
            writer = csv.writer(out, delimiter=";", lineterminator="\n")
            writer.writerow(header)
            out.write(text[mark:])
            rows = 0
        rows += 1
    if out.tell() > start:
        yield out.getvalue()


def format_cursor(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def event_time(item: Mapping[str, Any]) -> tuple[datetime, str]:
    # ts_epoch (ms) and ts_event (s) are UTC; date_event follows the account's time zone, so it is
    # only a last resort. https://developers.brevo.com/docs/marketing-webhooks
    for key, scale in (("ts_epoch", 1000.0), ("ts_event", 1.0), ("ts", 1.0)):
        raw = item.get(key)
        if raw not in (None, ""):
            try:
                return datetime.fromtimestamp(float(raw) / scale, UTC), str(raw)
            except (TypeError, ValueError, OverflowError, OSError) as exc:
                # OSError: the C library refuses some out-of-range times (EOVERFLOW) before Python does.
                raise PayloadError(f"Brevo webhook field '{key}' is not a timestamp: {raw!r}") from exc
    for key in ("date_event", "date"):
        if item.get(key):
            try:
                return parse_time(str(item[key]).replace(" ", "T")), str(item[key])  # type: ignore[return-value]
            except ValueError as exc:
                raise PayloadError(f"Brevo webhook field '{key}' is not a date: {item[key]!r}") from exc
    raise PayloadError("Brevo webhook has no 'ts_event' (nor ts_epoch, ts, date_event)", provider=PROVIDER)


def events_from_payload(item: Any, api_key_name: str | None) -> list[ProviderEvent]:
    if not isinstance(item, dict):
        raise PayloadError("Brevo webhook item is not a JSON object", provider=PROVIDER)
    name = item.get("event")
    if not isinstance(name, str) or not name:
        raise PayloadError("Brevo webhook has no 'event' field", provider=PROVIDER)
    if name.lower() not in EVENT_KINDS:
        raise PayloadError(f"Brevo webhook field 'event' has an unknown value: {name!r}", provider=PROVIDER)
    kind = EVENT_KINDS[name.lower()]
    email = item.get("email")
    problem = email_problem(email)
    if problem:
        raise PayloadError(f"Brevo webhook field 'email' {problem}", provider=PROVIDER)
    if kind is None:
        return []
    email = email.strip().lower()
    occurred_at, ts = event_time(item)
    ts = clean_text(ts)
    lists = item.get("list_id")
    if lists is None or lists == "":
        lists = []
    elif not isinstance(lists, list):
        lists = [lists]
    attrs = item.get("attributes") if isinstance(item.get("attributes"), dict) else {}
    new_email = None
    if kind is EventKind.PROFILE_UPDATED:
        changed = attrs.get("EMAIL")
        if changed not in (None, "") and email_problem(changed):
            raise PayloadError(
                f"Brevo webhook field 'attributes.EMAIL' {email_problem(changed)}", provider=PROVIDER
            )
        changed = str(changed or "").strip().lower()
        if changed and changed != email:
            kind, new_email = EventKind.EMAIL_CHANGED, changed
    own = bool(api_key_name) and name.lower() in OWN_WRITE_EVENTS and item.get("api_key_name") == api_key_name
    # Free text is cleaned before anything hashes or stores it (connectors/text.py says why).
    fields = {FIELDS_BY_ATTRIBUTE[k]: clean_text(v) for k, v in attrs.items() if k in FIELDS_BY_ATTRIBUTE}
    message_id = clean_text(item.get("message-id") or item.get("message_id") or "")
    reason = clean_text(item.get("reason") or "") or None

    def one(target: str | None, as_kind: EventKind) -> ProviderEvent:
        raw = "|".join((PROVIDER, name.lower(), email, target or "", ts, message_id))
        return ProviderEvent(
            provider=PROVIDER,
            kind=as_kind,
            email=email,
            occurred_at=occurred_at,
            dedupe_key=hashlib.sha256(raw.encode()).hexdigest()[:32],
            target=target,
            reason=reason,
            new_email=new_email,
            fields=fields,
            own_write=own,
        )

    if kind in LIST_EVENTS:
        if lists:
            return [one(clean_text(list_id), kind) for list_id in lists]
        if kind is EventKind.UNSUBSCRIBED:
            # An unsubscribe naming no list is Brevo's account-wide one.
            return [one(None, EventKind.UNSUBSCRIBED_ALL)]
    return [one(None, kind)]
