"""The one contract every provider connector meets, in the master base's terms.

Nothing outside a provider's own module ever sees a provider field name: connectors speak
``RemoteMember``, ``MemberPush`` and ``ProviderEvent``, and raise the error types below,
grouped by what the caller does next.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

# Fields a connector maps both ways between the master base and the provider.
MEMBER_FIELDS = ("first_name", "last_name", "phone", "company", "city", "country")


@dataclass(frozen=True)
class Target:
    """One provider-side list: a Brevo list, or a Mailchimp audience (optionally narrowed by a tag)."""

    provider: str  # "brevo" | "mailchimp"
    list_id: str  # Brevo list id, or Mailchimp audience id
    tag: str | None = None  # Mailchimp only: several syncd lists can share one audience through tags

    @property
    def key(self) -> str:
        return ":".join(p for p in (self.provider, self.list_id, self.tag) if p)


class RemoteStatus(StrEnum):
    SUBSCRIBED = "subscribed"
    PENDING = "pending"  # awaiting the provider's own confirmation
    UNSUBSCRIBED = "unsubscribed"  # from this target only
    CLEANED = "cleaned"  # bounced hard / address invalid at the provider
    BLOCKED = "blocked"  # provider-wide block (Brevo emailBlacklisted)
    TRANSACTIONAL = "transactional"  # known to the provider, never subscribed
    ARCHIVED = "archived"


@dataclass(frozen=True)
class RemoteMember:
    email: str  # lower-cased
    status: RemoteStatus
    fields: Mapping[str, str] = field(default_factory=dict)  # keys from MEMBER_FIELDS
    tags: tuple[str, ...] = ()
    remote_id: str | None = None
    changed_at: datetime | None = None  # provider's last change, UTC
    # Opt-in evidence the provider holds (Mailchimp: ip_signup, timestamp_signup, ip_opt, timestamp_opt)
    evidence: Mapping[str, str] = field(default_factory=dict)
    # Remote list ids the contact unsubscribed from, as the provider records them on the contact
    # (Brevo: listUnsubscribed): a per-list reason for an account-wide block, read from any list.
    unsubscribed_from: tuple[str, ...] = ()
    # False: not on the target itself, reported because its status there covers the target too
    # (a Mailchimp member without the target's tag, unsubscribed or cleaned: both are per audience).
    on_target: bool = True


@dataclass(frozen=True)
class ProviderTraits:
    """How a provider differs where the core must know it (the pure rules read this, never a name)."""

    # One unsubscribe blocks the address for the whole account, transactional mail included.
    blocks_account_wide: bool = False
    # A member who unsubscribed from a list stays on that list (the plan must take them off).
    keeps_unsubscribed_on_list: bool = False
    # A contact is deleted from the whole account at once (GDPR erasure), not list by list.
    erases_account_wide: bool = False
    # A contact is one record for the whole account: its remote id is the same on every list, and
    # a change of address made there renames it on every list at once.
    one_record_per_account: bool = False
    # Its upsert reads the list back before it returns (once syncd's writes settled, ``settle_s``):
    # a sync writes such targets after the list's others, so that their settling overlaps.
    upsert_reads_back: bool = False


@dataclass(frozen=True)
class BlockRecord:
    """What a provider's own record of a contact says of an account-wide block, beyond what its
    lists show: reasons that no per-list unsubscribe explains."""

    complained_at: datetime | None = None  # the latest spam complaint
    blocked_by_user_at: datetime | None = None  # the latest block set by an account user (UI, API)
    # The contact's clicks on campaigns' unsubscribe links, as (campaign id, when): in a default
    # Brevo account each one blocks the address.
    clicks: tuple[tuple[str, datetime], ...] = ()


class Rename(StrEnum):
    """What a ``rename`` did."""

    RENAMED = "renamed"
    MISSING = "missing"  # no record under the old address there (already renamed, or never held)
    TAKEN = "taken"  # the new address is already another record there
    # The record under the old address is blocked account-wide, and a change of address would lift
    # the block (Brevo): not renamed; ``Renamed.record`` shows it, for the master base to learn.
    BLOCKED = "blocked"


@dataclass(frozen=True)
class Renamed:
    """What a ``rename`` did, and for ``Rename.BLOCKED`` the record as read (its block and per-list
    unsubscribes, under the old address)."""

    outcome: Rename
    record: RemoteMember | None = None


@dataclass(frozen=True)
class MemberPush:
    """What syncd wants a member to look like on a target."""

    email: str
    status: RemoteStatus = RemoteStatus.SUBSCRIBED  # SUBSCRIBED or PENDING
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Page:
    members: list[RemoteMember]
    # Set on the last page only: the cursor to store for the next incremental read, once every
    # member the read returned is reconciled. It is the provider's time (never the local clock)
    # when the read began, minus a margin: every change stamped before it was there to be read.
    # Cursors of one provider are ISO-8601 UTC texts of one width: they sort as they are in time.
    cursor: str | None = None
    # Members of the same read that are not on this target (a Mailchimp audience member without
    # the target's tag, and no audience-wide opt-out): nothing this target holds, reported so that
    # a change of address of a provider record the target shares with another (the same member
    # under another tag) is followed before anything is pushed to it under the former address.
    elsewhere: list[RemoteMember] = field(default_factory=list)


@dataclass
class WriteResult:
    done: list[str] = field(default_factory=list)  # emails the provider accepted
    rejected: list[Rejected] = field(default_factory=list)
    calls: int = 0  # write calls made
    # Members the write's confirming read showed in a state the push did not ask for: a Brevo
    # contact blocked account-wide is put on the list, and receives nothing. The engine reconciles
    # them as a read of the list would, in the same run.
    seen: list[RemoteMember] = field(default_factory=list)
    # With ``upsert(confirm_since=...)``, where the write ends with a read of the list (Brevo's
    # read-back): every member that read returned, to reconcile like a pull, and its cursor.
    read: list[RemoteMember] = field(default_factory=list)
    cursor: str | None = None


@dataclass
class ApiStats:
    """What a connector has asked of its provider since it was made (for logs and metrics)."""

    calls: Counter[str] = field(default_factory=Counter)  # endpoint -> requests sent, retries included
    write_calls: int = 0
    rate_limited: int = 0  # 429 answers
    retries: int = 0

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@dataclass(frozen=True)
class TargetPresence:
    """What a provider holds of a target: whether its list (audience) exists, and its tag."""

    list_found: bool
    list_name: str | None = None
    tag_found: bool | None = None  # None: the target names no tag


@dataclass(frozen=True)
class WebhookRegistration:
    """A webhook registered at the provider, in the provider's own event names."""

    id: str
    url: str
    events: tuple[str, ...] = ()
    list_id: str | None = None  # the audience it belongs to (Mailchimp); None: account-wide (Brevo)


class EventKind(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"  # from the named target only
    UNSUBSCRIBED_ALL = "unsubscribed_all"
    BOUNCED_HARD = "bounced_hard"
    BOUNCED_SOFT = "bounced_soft"
    COMPLAINED = "complained"
    PROFILE_UPDATED = "profile_updated"
    EMAIL_CHANGED = "email_changed"
    DELETED = "deleted"


@dataclass(frozen=True)
class ProviderEvent:
    provider: str
    kind: EventKind
    email: str  # lower-cased; for EMAIL_CHANGED the old address
    occurred_at: datetime  # UTC
    dedupe_key: str
    target: str | None = None  # remote list id / audience id the event names, if any
    reason: str | None = None
    new_email: str | None = None  # EMAIL_CHANGED only
    fields: Mapping[str, str] = field(default_factory=dict)  # PROFILE_UPDATED: keys from MEMBER_FIELDS
    own_write: bool = False  # the echo of syncd's own API write: to be ignored
    # Brevo: the campaign whose unsubscribe link was clicked (``camp_id``), kept with the opt-out it
    # becomes, so that a lift can tell that click from a later one (``BlockRecord.clicks``).
    campaign: str | None = None


# --- errors, grouped by what the caller does next (the Singer SDK's fatal / retriable / skippable) --


class ConnectorError(Exception):
    """A provider call that failed, with the provider's own status and body (a caller that does
    not care which kind catches this)."""

    def __init__(self, message: str, *, provider: str = "", status: int | None = None, body: Any = None):
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.body = body


class Transient(ConnectorError):
    """Retriable: 5xx, timeouts, dropped connections. Retried with back-off, then raised."""


class RateLimited(Transient):
    """Retriable after ``wait_s``: the provider said too many requests (429)."""

    def __init__(self, message: str, *, wait_s: float, **kw: Any):
        super().__init__(message, **kw)
        self.wait_s = wait_s


class Fatal(ConnectorError):
    """The request itself is wrong (a 4xx): sending it again gives the same answer. The caller
    stops the work it is doing and reports the provider's message."""


class AuthFailed(Fatal):
    """Bad or revoked API key (401/403): stops the run."""


class NotFound(Fatal):
    """The list/audience (or member) does not exist (404)."""


def error_for_status(
    status: int | None, message: str, *, provider: str, body: Any = None, wait_s: float = 1.0
) -> ConnectorError:
    """The error type of a provider's HTTP answer: the one mapping every connector uses.
    ``status`` None (or 0): no answer at all. ``wait_s``: what a 429 asks to wait."""
    kw: dict[str, Any] = {"provider": provider, "status": status, "body": body}
    if status == 429:
        return RateLimited(message, wait_s=wait_s, **kw)
    if not status or status >= 500:
        return Transient(message, **kw)
    if status in (401, 403):
        return AuthFailed(message, **kw)
    if status == 404:
        return NotFound(message, **kw)
    return Fatal(message, **kw)


class PayloadError(ConnectorError):
    """A webhook body that cannot be understood: the receiver answers 400 with this message."""


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery, normalised: its events, and why each item left out was left out
    (a batch's bad item never sinks its good ones)."""

    events: list[ProviderEvent]
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Refusal:
    """A webhook request refused before its body is parsed: the answer to give, and ``reason``
    (the label the receiver counts it under)."""

    reason: str
    status: int
    text: str
    headers: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class WebhookEndpoint(Protocol):
    """How a provider's webhook deliveries prove where they come from, beyond the secret in the
    URL (which the receiver checks the same way for every provider)."""

    methods: tuple[str, ...]  # the HTTP methods the provider's endpoint answers

    @classmethod
    def from_settings(cls, settings: Any) -> WebhookEndpoint:
        """From the provider's config section."""
        ...

    def authenticate(self, headers: Mapping[str, str]) -> Refusal | None:
        """Checked before the body is read."""
        ...

    def handshake(self, method: str) -> str | None:
        """The text of a 200 answering the provider's check of the URL, or None: not a check."""
        ...

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Refusal | None:
        """Checked on the raw body, before it is parsed."""
        ...

    def describe(self) -> tuple[str, str | None]:
        """How deliveries are authenticated, and a warning for the operator when that is weak."""
        ...


@dataclass(frozen=True)
class Rejected:
    """Skippable: one member the provider refused, with the provider's own reason. Recorded per
    member, never swallowed; the rest of the batch goes on."""

    email: str
    reason: str
    code: str | None = None
    # The provider's own view of the member, when the refusal says something about consent (a
    # Mailchimp compliance state: the address unsubscribed or was cleaned). The engine reconciles
    # it as a read of the list would: the refusal is evidence of an opt-out it had missed.
    member: RemoteMember | None = None


@runtime_checkable
class Connector(Protocol):
    provider: str
    traits: ProviderTraits

    def pull(self, target: Target, since: str | None = None) -> Iterator[Page]:
        """Members of ``target`` page by page; only those changed since ``since`` when given.
        A read that begins soon after the connector's own writes waits for them to settle."""
        ...

    def pull_shared(self, targets: Sequence[Target], since: str | None = None) -> Iterator[list[Page]]:
        """One read for several targets on the same remote list (same provider and list id: a
        Mailchimp audience and its tags): per page read, the page as each target sees it, in the
        order of ``targets``."""
        ...

    def changed_records(self, since: str) -> Iterator[list[RemoteMember]]:
        """A provider with one record per account (``traits.one_record_per_account``): its
        records changed since ``since``, whatever list they are on, page by page (address and
        id; their status is each list's read's to tell). Others yield nothing: their reads of a
        remote list already show every record the list's targets share (``Page.elsewhere``)."""
        ...

    def upsert(
        self, target: Target, members: Sequence[MemberPush], *, confirm_since: str | None = None
    ) -> WriteResult:
        """Create or update members on the target, in batches at the provider's maximum.
        ``confirm_since``: the cursor of the target's last reconciled read; a connector whose
        write ends with a read of the list reads from there (``WriteResult.read``)."""
        ...

    def remove(self, target: Target, emails: Sequence[str]) -> WriteResult:
        """Take members off the target. Never an unsubscribe: the contact's consent is not touched."""
        ...

    def set_blocked(self, email: str, blocked: bool) -> None:
        """Set or lift a provider-wide block, where the provider has one."""
        ...

    def block_record(self, email: str) -> BlockRecord:
        """The provider's record of why the address may be blocked (read before a lift)."""
        ...

    def rename(self, target: Target, old_email: str, new_email: str, remote_id: str | None = None) -> Renamed:
        """Give the provider's record of ``old_email`` on ``target`` the address ``new_email``: a
        change of address the master base learnt elsewhere, carried to this provider.
        ``remote_id``: the record's id there, where syncd knows it (it finds the record under an
        address changed at the provider since). A record whose block a change of address would
        lift is left as it is (``Rename.BLOCKED``)."""
        ...

    def parse_webhook(
        self, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> list[ProviderEvent]:
        """Normalise one webhook delivery. Raises PayloadError with a clear reason."""
        ...

    def parse_delivery(
        self, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> Delivery:
        """``parse_webhook`` with the items left out and why. Raises PayloadError when nothing
        in the delivery can be used."""
        ...

    def storable_body(self, body: bytes) -> str:
        """The raw body as text the master base can store, parsing to the same events."""
        ...

    # The provider's event names that syncd's webhook parser acts on, which a registration asks for.
    webhook_events: tuple[str, ...]

    def presence(self, target: Target) -> TargetPresence:
        """Whether the target's list (audience) and tag exist at the provider. AuthFailed on a
        refused key; a missing list is an answer, not an error."""
        ...

    def webhooks(self, target: Target) -> list[WebhookRegistration]:
        """The webhooks that would deliver the target's events (Brevo: the account's marketing
        webhooks; Mailchimp: the audience's)."""
        ...

    def register_webhook(self, target: Target, url: str, token: str | None = None) -> WebhookRegistration:
        """Register ``url`` for ``webhook_events`` (``token``: the bearer token the provider sends
        with each delivery, where it has one). Not idempotent: look in ``webhooks`` first."""
        ...
