"""A Mailchimp account's audiences, members and tags, and Mailchimp's rules for changing them.

Everything here is in Mailchimp's own words (audience/list ids, member statuses as strings,
merge fields, tags); the HTTP API in ``api.py`` serves it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

BATCH_SUBSCRIBE_MAX = (
    500  # https://mailchimp.com/developer/marketing/api/lists/batch-subscribe-or-unsubscribe/
)
SEGMENT_BATCH_MAX = (
    500  # https://mailchimp.com/developer/marketing/api/list-segments/batch-add-or-remove-members/
)
PAGE_MAX = 1000  # https://mailchimp.com/developer/marketing/docs/methods-parameters/#pagination
STATUSES = {"subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived"}
# https://mailchimp.com/help/about-compliance-state/ : unsubscribed/cleaned come back only via pending
COMPLIANCE = {"unsubscribed", "cleaned"}
MEMBER_ACTIONS = ("unsubscribe", "resubscribe", "clean", "change-email")
WRITABLE = STATUSES - {"archived"}
# https://mailchimp.com/developer/marketing/api/list-webhooks/add-webhook/ : events and sources
WEBHOOK_EVENTS = ("subscribe", "unsubscribe", "profile", "cleaned", "upemail", "campaign")
WEBHOOK_SOURCES = ("user", "admin", "api")
AUDIENCE_ID = re.compile(r"^[A-Za-z0-9]+$")  # it goes in URL paths: /3.0/lists/{list_id}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")


def subscriber_hash(email: str) -> str:
    # https://mailchimp.com/developer/marketing/docs/methods-parameters/#path-parameters
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def iso(ts: datetime | None) -> str:
    return ts.astimezone(UTC).replace(microsecond=0).isoformat() if ts else ""


def now() -> datetime:
    return datetime.now(UTC)


class ProblemError(Exception):
    """A refusal, answered as problem+json."""

    def __init__(self, status: int, title: str, detail: str, errors: list[dict] | None = None):
        super().__init__(detail)
        self.status, self.title, self.detail, self.errors = status, title, detail, errors


def invalid(detail: str) -> ProblemError:
    return ProblemError(400, "Invalid Resource", detail)


def not_found() -> ProblemError:
    return ProblemError(404, "Resource Not Found", "The requested resource could not be found.")


def parse_ts(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value
    try:
        ts = datetime.fromisoformat(str(value).replace(" ", "T"))
    except ValueError as exc:
        raise invalid(f"{name} must be an ISO 8601 date-time.") from exc
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


# Bumped whenever the set of members a listing could return changes: a member added to or removed
# from an audience, or a member's status or last change set. A listing computed under the same
# count is still exact, so the pages of one read share it (see ``Audience.listing``).
_listing_changes = 0


def listing_changes() -> int:
    return _listing_changes


def _listing_changed() -> None:
    global _listing_changes
    _listing_changes += 1


class _Members(dict):
    """An audience's members by subscriber hash; adding or removing one counts as a listing change."""

    def __setitem__(self, key: str, value: Member) -> None:
        _listing_changed()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        _listing_changed()
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        _listing_changed()
        return super().pop(key, *default)


@dataclass
class Member:
    email: str
    status: str
    merge_fields: dict[str, str] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)
    last_changed: datetime = field(default_factory=now)
    ip_signup: str = ""
    timestamp_signup: datetime | None = None
    ip_opt: str = ""
    timestamp_opt: datetime | None = None
    status_before_archive: str | None = None
    unsubscribe_reason: str = ""
    id: str = ""  # subscriber hash, set on first write
    # The member's own id, kept when the address changes (the API's ``contact_id``).
    contact_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.id = self.id or subscriber_hash(self.email)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("status", "last_changed"):
            _listing_changed()
        object.__setattr__(self, name, value)


@dataclass
class Audience:
    id: str
    name: str
    members: dict[str, Member] = field(default_factory=_Members)  # by subscriber hash
    segments: dict[int, str] = field(default_factory=dict)  # static segments = tags: id -> name
    forgotten: set[str] = field(default_factory=set)
    webhooks: dict[str, dict] = field(default_factory=dict)  # by id: url, events, sources
    created_at: datetime = field(default_factory=now)
    # The last listing of members (its status and since filters, the listing change count it was
    # made under, the members): the next page of the same read reuses it while nothing changed,
    # instead of scanning the whole audience again for each page.
    listing: tuple[Any, list[Member]] = field(default=(None, []), repr=False, compare=False)

    def member_by_key(self, key: str) -> Member | None:
        """By email address, subscriber hash or ``contact_id``: the member endpoints' path takes any
        of the three ("This endpoint also accepts a list member's email address or contact_id")."""
        if "@" in key:
            return self.members.get(subscriber_hash(key))
        key = key.lower()
        found = self.members.get(key)
        if found is None:  # a contact_id (rare: a scan)
            found = next((m for m in self.members.values() if m.contact_id == key), None)
        return found


class Account:
    """One Mailchimp account. Callers hold ``lock`` around a read or a change."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.audiences: dict[str, Audience] = {}
        self._next_segment = 1000

    # --- what a user sets up in the account (the simulator's hooks) -----------------------------

    def create_audience(self, name: str, list_id: str | None = None) -> str:
        """A new audience; ``list_id``: with that id (as an account set up beforehand has it),
        which must be free; otherwise a random one, as Mailchimp gives."""
        with self.lock:
            if list_id is None:
                list_id = secrets.token_hex(5)
                while list_id in self.audiences:
                    list_id = secrets.token_hex(5)
            elif not AUDIENCE_ID.match(list_id):
                raise ValueError(f"audience id {list_id!r} cannot be one: letters and digits only")
            elif list_id in self.audiences:
                raise ValueError(f"audience id {list_id!r} is taken")
            audience = Audience(id=list_id, name=name)
            self.audiences[audience.id] = audience
            return audience.id

    def create_tag(self, list_id: str, name: str) -> int:
        """The tag's static segment id (created if the audience has no such tag yet)."""
        with self.lock:
            audience = self.audiences[list_id]
            for seg_id, seg_name in audience.segments.items():
                if seg_name == name:
                    return seg_id
            self._next_segment += 1
            audience.segments[self._next_segment] = name
            return self._next_segment

    def put_member(
        self,
        list_id: str,
        email: str,
        *,
        status: str = "subscribed",
        merge_fields: dict[str, str] | None = None,
        tags: Iterable[str] = (),
        last_changed: datetime | None = None,
        ip_signup: str = "",
        timestamp_signup: datetime | None = None,
        ip_opt: str = "",
        timestamp_opt: datetime | None = None,
    ) -> Member:
        """The member as it stands in the audience (replacing any, whose ``contact_id`` it keeps),
        its tags created."""
        with self.lock:
            changed = last_changed or now()
            member = Member(
                email=email,
                status=status,
                merge_fields=dict(merge_fields or {}),
                last_changed=changed,
                ip_signup=ip_signup,
                timestamp_signup=timestamp_signup,
                ip_opt=ip_opt,
                timestamp_opt=timestamp_opt or changed,
                tags=set(tags),
            )
            held = self.audiences[list_id].members.get(member.id)
            if held is not None:
                member.contact_id = held.contact_id  # the same member in a new state
            for tag in member.tags:
                self.create_tag(list_id, tag)
            self.audiences[list_id].members[member.id] = member
            return member

    def members(self, list_id: str) -> list[Member]:
        """Every member of the audience, archived ones too."""
        with self.lock:
            return list(self.audiences[list_id].members.values())

    def member(self, list_id: str, email: str) -> Member | None:
        with self.lock:
            return self.audiences[list_id].members.get(subscriber_hash(email))

    def member_acts(self, audience: Audience, member: Member, action: str, data: dict) -> Member:
        """What a member does on Mailchimp's side, not through the API: ``unsubscribe`` (the
        member's click; ``reason`` "abuse" for a spam complaint), ``resubscribe`` (a signup form),
        ``clean`` (a hard bounce), ``change-email`` (``new_email``)."""
        at = now()
        if action == "unsubscribe":
            member.status = "unsubscribed"
            member.unsubscribe_reason = "abuse" if data.get("reason") == "abuse" else "manual"
        elif action == "resubscribe":
            # A signup form records the member's own opt-in: the way out of the compliance state.
            member.status, member.timestamp_opt, member.ip_opt = "subscribed", at, str(data.get("ip", ""))
            member.unsubscribe_reason = ""
        elif action == "clean":
            member.status = "cleaned"
        elif action == "change-email":
            self.change_email(audience, member, str(data.get("new_email", "")))
        member.status_before_archive = None
        member.last_changed = at
        return member

    def change_email(self, audience: Audience, member: Member, new_email: str) -> None:
        """A member's new address (the member's own profile form, or an API ``PATCH``): same member,
        same ``contact_id``, status and tags; a new subscriber hash."""
        new_email = new_email.strip()
        if not EMAIL.match(new_email):
            raise invalid("The email address must be a valid email address.")
        new_hash = subscriber_hash(new_email)
        if new_hash == member.id:
            member.email = new_email
            return
        if new_hash in audience.members:
            raise ProblemError(400, "Member Exists", f"{new_email} is already a list member.")
        if new_hash in audience.forgotten:
            raise ProblemError(
                400,
                "Forgotten Email Not Subscribed",
                f"{new_email} was permanently deleted and cannot be re-imported.",
            )
        del audience.members[member.id]
        member.email, member.id = new_email, new_hash
        audience.members[new_hash] = member
        member.last_changed = now()

    # --- Mailchimp's rules for an API write ------------------------------------------------------

    def write_member(
        self,
        audience: Audience,
        email: str,
        spec: dict,
        status: str | None,
        update_existing: bool,
        single: bool = False,
        h: str | None = None,
    ) -> tuple[Member, bool]:
        if not EMAIL.match(email):
            raise invalid(f"{email} looks fake or invalid, please enter a real email address.")
        h = h or subscriber_hash(email)
        if status is not None and status not in WRITABLE:
            raise invalid(f"Invalid status: {status}")
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
        at = now()
        is_new = member is None
        if member is None:
            if status is None:
                raise invalid("The status field is required for a new member.")
            member = Member(
                email=email,
                status="",
                last_changed=at,
                id=h,
                ip_signup=spec.get("ip_signup", ""),
                timestamp_signup=parse_ts(spec.get("timestamp_signup"), "timestamp_signup"),
            )
        previous = member.status_before_archive if member.status == "archived" else member.status
        if status == "subscribed" and previous in COMPLIANCE:
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
                member.timestamp_opt = parse_ts(spec.get("timestamp_opt"), "timestamp_opt") or at
        merges = {k: str(v) for k, v in (spec.get("merge_fields") or {}).items()}
        if any(member.merge_fields.get(k) != v for k, v in merges.items()):
            member.merge_fields.update(merges)
            changed = True
        if member.status != "archived":
            member.status_before_archive = None
        if changed:
            member.last_changed = at
        audience.members[h] = member
        return member, is_new
