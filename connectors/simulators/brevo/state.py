"""A Brevo account's contacts, lists and import processes, and Brevo's rules for changing them.

Everything here is in Brevo's own words (contact JSON: ``emailBlacklisted``, ``listIds``,
``listUnsubscribed``, ``attributes``); the HTTP API in ``api.py`` serves it.
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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
# https://developers.brevo.com/reference/createwebhook : the events and types a webhook takes
WEBHOOK_EVENTS = frozenset(
    {
        "sent", "hardBounce", "softBounce", "blocked", "spam", "delivered", "request", "click",
        "invalid", "deferred", "opened", "uniqueOpened", "unsubscribed", "listAddition",
        "contactUpdated", "contactDeleted", "inboundEmailProcessed",
    }
)  # fmt: skip
WEBHOOK_TYPES = ("transactional", "marketing", "inbound")
# Stricter than a shape check, as Brevo is: no empty or doubled dots, a dotted domain.
VALID_EMAIL = re.compile(r"^(?!\.)(?!.*\.\.)[A-Za-z0-9._%+'-]+(?<!\.)@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
DEFAULT_FOLDER = 1  # Brevo accounts start with list 1 in folder 1


@functools.lru_cache(maxsize=4096)
def iso(at: datetime) -> str:
    """Brevo's contact times: "2017-05-01T17:05:03.123Z". Cached: the contacts of one import
    share their time, and a page of 500 contacts formats two each."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds")[:23] + "Z"


def iso_brevo(at: datetime) -> str:
    """Brevo's webhook times: "2016-07-18 12:30:09+00:00" (https://developers.brevo.com/reference/getwebhooks)."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


def parse_iso(value: str) -> datetime:
    at = datetime.fromisoformat(value.strip().replace(" ", "+").replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


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
    # Campaign statistics: (campaign id, time) of each complaint and unsubscribe click, and the
    # times an account user blocked the address. The simulator's campaign to list L has the id L.
    complaints: list[tuple[int, datetime]] = field(default_factory=list)
    user_unsubscriptions: list[tuple[int, datetime]] = field(default_factory=list)
    admin_unsubscriptions: list[datetime] = field(default_factory=list)

    def campaign_stats(self) -> dict[str, Any]:
        """``GET /v3/contacts/{identifier}/campaignStats``."""

        def events(items: list[tuple[int, datetime]]) -> list[dict[str, Any]]:
            return [{"campaignId": cid, "eventTime": iso(at)} for cid, at in items]

        return {
            "messagesSent": [],
            "hardBounces": [],
            "softBounces": [],
            "complaints": events(self.complaints),
            "unsubscriptions": {
                "userUnsubscription": events(self.user_unsubscriptions),
                "adminUnsubscription": [{"eventTime": iso(at)} for at in self.admin_unsubscriptions],
            },
            "opened": [],
            "clicked": [],
            "transacAttributes": [],
            "delivered": [],
        }

    def as_json(self, extended: bool = False, copy: bool = True) -> dict[str, Any]:
        """The contact's JSON; ``copy=False`` shares its lists and attributes, for a body
        encoded before the account's lock is released."""
        body: dict[str, Any] = {
            "email": self.email,
            "id": self.id,
            "emailBlacklisted": self.email_blacklisted,
            "smsBlacklisted": self.sms_blacklisted,
            "createdAt": iso(self.created_at),
            "modifiedAt": iso(self.modified_at),
            "listIds": list(self.list_ids) if copy else self.list_ids,
            "listUnsubscribed": list(self.list_unsubscribed) if copy else self.list_unsubscribed,
            "attributes": dict(self.attributes) if copy else self.attributes,
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


class Account:
    """One Brevo account. Callers hold ``lock`` around a read or a change that spans several calls."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.import_delay_s = 0.0  # > 0: imports stay "queued" that long
        # The account feature "list-based unsubscriptions" (off on a default account).
        self.per_list_unsubscription = False
        self.contacts: dict[str, Contact] = {}
        self.lists: dict[int, BrevoList] = {}
        self.processes: dict[int, Process] = {}
        self._by_id: dict[int, Contact] = {}
        self._ids = itertools.count(1)
        self._list_ids = itertools.count(2)
        self._process_ids = itertools.count(1)
        self.webhooks: dict[int, dict[str, Any]] = {}  # by id, as GET /v3/webhooks shows them
        self._webhook_ids = itertools.count(1)
        self._page_cache: tuple[Any, list[Contact]] = (None, [])

    # --- what a user sets up in the account (the simulator's hooks) -----------------------------

    def create_list(self, name: str, folder_id: int = DEFAULT_FOLDER, list_id: int | None = None) -> int:
        """A new list; ``list_id``: with that id (as an account set up beforehand has it), which
        must be free. Lists created later never take an id already used."""
        with self.lock:
            if list_id is None:
                list_id = next(self._list_ids)
                while list_id in self.lists:
                    list_id = next(self._list_ids)
            elif list_id < 1:
                raise ValueError(f"list id {list_id} cannot be one: a positive integer")
            elif list_id in self.lists:
                raise ValueError(f"list id {list_id} is taken")
            lst = BrevoList(list_id, name, folder_id, datetime.now(UTC))
            self.lists[lst.id] = lst
            return lst.id

    # --- marketing webhooks (GET/POST /v3/webhooks, DELETE /v3/webhooks/{id}) -------------------

    def create_webhook(self, body: dict[str, Any]) -> int:
        """A webhook as ``POST /v3/webhooks`` creates it (body already checked)."""
        with self.lock:
            webhook_id = next(self._webhook_ids)
            now = iso_brevo(datetime.now(UTC))
            self.webhooks[webhook_id] = {
                "id": webhook_id,
                "url": body["url"],
                "description": str(body.get("description") or ""),
                "events": list(body["events"]),
                "type": body.get("type") or "transactional",
                "channel": body.get("channel") or "email",
                "createdAt": now,
                "modifiedAt": now,
                "batched": bool(body.get("batched", False)),
                **({"auth": body["auth"]} if isinstance(body.get("auth"), dict) else {}),
                **({"headers": body["headers"]} if isinstance(body.get("headers"), list) else {}),
            }
            return webhook_id

    def put_contact(
        self,
        email: str,
        *,
        list_ids: Iterable[int] = (),
        attributes: dict[str, Any] | None = None,
        email_blacklisted: bool = False,
        list_unsubscribed: Iterable[int] = (),
        modified_at: datetime | None = None,
    ) -> dict[str, Any]:
        """The contact as it stands in the account: created if new, its lists added (the listed
        ``list_unsubscribed`` after), blacklisted if asked. Returns its JSON."""
        with self.lock:
            at = modified_at or datetime.now(UTC)
            c = self.get_or_create(email.lower(), at)
            c.modified_at = at
            c.attributes.update(attributes or {})
            for list_id in list_ids:
                self.add_to_list(c, list_id, at)
            if email_blacklisted:
                c.email_blacklisted = True
            for list_id in list_unsubscribed:
                if list_id not in c.list_unsubscribed:
                    c.list_unsubscribed.append(list_id)
            return c.as_json()

    def contact(self, identifier: str) -> dict[str, Any] | None:
        """The contact's JSON, by email or id, as ``GET /v3/contacts/{identifier}`` gives it."""
        with self.lock:
            self.settle()
            c = self.find(identifier)
            return c.as_json() if c else None

    def list_contacts(self, list_id: int) -> list[dict[str, Any]]:
        """Every contact on the list (blacklisted or list-unsubscribed ones too), as contact JSON."""
        with self.lock:
            self.settle()
            return [c.as_json() for c in self.contacts.values() if list_id in c.list_ids]

    def contact_unsubscribes(self, email: str, list_id: int) -> None:
        """The contact clicks the unsubscribe link of a campaign sent to ``list_id``: Brevo blocks
        the address account-wide, or, with the account's list-based unsubscriptions, records the
        list in listUnsubscribed only. https://help.brevo.com/hc/en-us/articles/209502525"""
        with self.lock:
            c = self.contacts[email.lower()]
            now = datetime.now(UTC)
            if self.per_list_unsubscription:
                self.unsubscribe_from_list(c, list_id, now)
            else:
                self.block(c, now)
            c.user_unsubscriptions.append((list_id, now))

    def contact_complains(self, email: str, list_id: int) -> None:
        """The contact marks a campaign sent to ``list_id`` as spam: the address is blocked
        account-wide, and the complaint is in the contact's campaign statistics."""
        with self.lock:
            c = self.contacts[email.lower()]
            now = datetime.now(UTC)
            self.block(c, now)
            c.complaints.append((list_id, now))

    # --- Brevo's rules ---------------------------------------------------------------------------

    def get_or_create(self, email: str, at: datetime | None = None) -> Contact:
        c = self.contacts.get(email)
        if c is None:
            now = at or datetime.now(UTC)
            c = Contact(next(self._ids), email, now, now)
            self.contacts[email] = c
            self._by_id[c.id] = c
        return c

    def delete(self, c: Contact) -> None:
        del self.contacts[c.email]
        del self._by_id[c.id]

    def find(self, identifier: str) -> Contact | None:
        if identifier.isdigit():
            return self._by_id.get(int(identifier))
        return self.contacts.get(identifier.lower())

    @staticmethod
    def unsubscribe_from_list(c: Contact, list_id: int, at: datetime) -> None:
        if list_id not in c.list_unsubscribed:
            c.list_unsubscribed.append(list_id)
        c.modified_at = at

    @staticmethod
    def block(c: Contact, at: datetime) -> None:
        c.email_blacklisted = True
        c.modified_at = at

    @staticmethod
    def add_to_list(c: Contact, list_id: int, at: datetime) -> None:
        if list_id not in c.list_ids:
            c.list_ids.append(list_id)
        # Re-adding a contact to a list takes the list out of listUnsubscribed (the blacklist,
        # account-wide, is left alone). Assumption modelled on the Brevo UI's behaviour.
        if list_id in c.list_unsubscribed:
            c.list_unsubscribed.remove(list_id)
        c.modified_at = at

    def update(self, c: Contact, body: dict[str, Any], now: datetime) -> str | None:
        """Apply an update body (``PUT /v3/contacts/...``); the problem with it, if any."""
        attrs = dict(body.get("attributes") or {})
        new_email = str(attrs.pop("EMAIL", "") or "").lower()
        if new_email and new_email != c.email:
            if not VALID_EMAIL.match(new_email):
                return "Invalid email address"
            if new_email in self.contacts:
                return "email is already associated with another Contact"
            del self.contacts[c.email]
            c.email = new_email
            self.contacts[new_email] = c
            # Changing a blacklisted contact's email address lifts the blacklist.
            # https://help.brevo.com/hc/en-us/articles/208802209
            c.email_blacklisted = False
        c.attributes.update(attrs)
        if "emailBlacklisted" in body:
            if body["emailBlacklisted"] and not c.email_blacklisted:
                c.admin_unsubscriptions.append(now)  # blocked by an account user (UI or API)
            c.email_blacklisted = bool(body["emailBlacklisted"])
        if "smsBlacklisted" in body:
            c.sms_blacklisted = bool(body["smsBlacklisted"])
        for list_id in body.get("listIds") or []:
            self.add_to_list(c, int(list_id), now)
        for list_id in body.get("unlinkListIds") or []:
            if int(list_id) in c.list_ids:
                c.list_ids.remove(int(list_id))
        c.modified_at = now
        return None

    # --- imports ---------------------------------------------------------------------------------

    def start_import(self, body: dict[str, Any]) -> Process:
        """Queue an import (rows and listIds already read from the request)."""
        proc = Process(next(self._process_ids), "IMPORTUSER", time.monotonic() + self.import_delay_s, body)
        self.processes[proc.id] = proc
        if self.import_delay_s <= 0:
            self._apply_import(proc)
        return proc

    def settle(self) -> None:
        """Finish the imports whose time has come."""
        now = time.monotonic()
        for proc in self.processes.values():
            if proc.pending is not None and now >= proc.ready_at:
                self._apply_import(proc)

    def _apply_import(self, proc: Process) -> None:
        body, proc.pending = proc.pending, None
        assert body is not None
        now = datetime.now(UTC)
        update = body.get("updateExistingContacts", True)
        erase = body.get("emptyContactsAttributes", False)
        blacklist = bool(body.get("emailBlacklist"))
        list_ids = [int(i) for i in body.get("listIds") or []]
        valid, contacts = VALID_EMAIL.match, self.contacts
        for row in body["rows"]:
            email = str(row.get("email") or "").strip().lower()
            if not valid(email):
                proc.rejected.append(email)
                continue
            c = contacts.get(email)
            if c is None:
                c = self.get_or_create(email, now)
            elif not update:
                continue
            attributes = row.get("attributes") or {}
            c.attributes.update({k: v for k, v in attributes.items() if v != "" and v is not None})
            if erase:
                for k, v in attributes.items():
                    if v == "" or v is None:
                        c.attributes.pop(k, None)
            # emailBlacklist=true blacklists every imported contact; false leaves the status as it
            # is: an import never unblocks. https://developers.brevo.com/reference/importcontacts
            if blacklist:
                c.email_blacklisted = True
            for list_id in list_ids:
                self.add_to_list(c, list_id, now)
            c.modified_at = now

    # --- reads -----------------------------------------------------------------------------------

    def list_members(self, list_id: int, since: datetime | None, sort: str, offset: int) -> list[Contact]:
        # A read from offset 0 takes a snapshot that the following pages reuse, as a cursor would.
        key = (list_id, since, sort)
        if offset > 0 and self._page_cache[0] == key:
            return self._page_cache[1]
        found = [
            c
            for c in self.contacts.values()
            if list_id in c.list_ids and (since is None or c.modified_at > since)
        ]
        found.sort(key=lambda c: c.id, reverse=(sort != "asc"))
        self._page_cache = (key, found)
        return found

    def list_json(self, lst: BrevoList) -> dict[str, Any]:
        members = [c for c in self.contacts.values() if lst.id in c.list_ids]
        return {
            "id": lst.id,
            "name": lst.name,
            "totalBlacklisted": sum(1 for c in members if c.email_blacklisted),
            "totalSubscribers": sum(1 for c in members if not c.email_blacklisted),
            "uniqueSubscribers": len(members),
            "folderId": lst.folder_id,
        }
