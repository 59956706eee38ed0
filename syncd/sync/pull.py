"""Reading a target: what changed at the provider goes into the master base before anything is planned.

A pulled status the master base does not know yet becomes the event a webhook would have
brought, applied through ``inbound.apply.apply_event``; a member the base has never seen is kept with
its provenance and no consent. ``Reader.reconcile`` also takes the members a write showed in a
state the push did not ask for (a refusal, a confirming read).

The targets of one remote list (a Mailchimp audience and its tags) are read together, once
(``read_together``). A target's cursor only moves to the cursor of a read whose every member was
reconciled and which began at or before the cursor it had (``Reader.covered``): the reads of a run
form a chain, so a change stamped before the stored cursor was always seen by one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlmodel import Session, select

from connectors.contract import (
    MEMBER_FIELDS,
    Connector,
    EventKind,
    Page,
    ProviderEvent,
    RemoteMember,
    RemoteStatus,
)
from syncd.contacts.bulk import column_among
from syncd.db import email_hash, erased_among, lost_a_race, session_scope
from syncd.inbound.apply import apply_event
from syncd.inbound.evidence import record_provider_evidence
from syncd.inbound.reconcile import lists_for_target
from syncd.log import get_logger
from syncd.models import AuditLog, Contact, Source, TargetState, utcnow
from syncd.providers import sharing_record
from syncd.sync.report import Progress, TargetReport
from syncd.sync.select import explained_blocks
from syncd.sync.state import ListTarget, earliest_cursor_among, pass_cursor, read_cursor, save_cursor

log = get_logger(__name__)

T = TypeVar("T")

# Attempts of a transaction that lost a race with another list's run (``Reader._retried``).
RACE_ATTEMPTS = 3

# Fields a member the provider has and the base does not brings with it: all but the country,
# which the base holds as a checked two-letter code and which nothing checks on this path.
IMPORTED_FIELDS = tuple(name for name in MEMBER_FIELDS if name != "country")


class Reader:
    """Pulls one target and reconciles what it holds with the master base."""

    def __init__(self, lt: ListTarget, connector: Connector, report: TargetReport, progress: Progress):
        self.lt, self.connector, self.report, self.progress = lt, connector, report, progress
        self.target = lt.target
        self.traits = connector.traits
        # The cursor of the last read of this target that syncd reconciled (stored or this run's).
        self.covered: str | None = None

    def stored_cursor(self) -> str | None:
        """The cursor the target's last run stored: where this run's read starts."""
        row = read_cursor(self.lt)
        self.covered = row.cursor if row else None
        return self.covered

    def take(self, page: Page, after_writes: bool = False) -> list[str]:
        """One page of a read of the target, reconciled (``after_writes``: the read that follows
        the run's writes, counted apart)."""
        if after_writes:
            self.report.read_after_writes += len(page.members)
        else:
            self.report.pulled += len(page.members)
            self.progress(f"{self.lt.list_name} ← {self.target.key}: reading", len(page.members))
        return self.reconcile(page.members)

    def follow_shared_records(self) -> int:
        """For a provider with one record per account (Brevo; the writer calls it before it pushes
        a contact new to the target whose record another list holds): the changes of address made
        at the provider on records that other lists' targets hold, since the earliest of their
        cursors (what their reads have not shown yet), followed in the master base. Pushed under
        the former address, the provider, no longer holding it, would take it for a new record:
        the person's old address back on a list, a second record beside theirs. Returns how many
        records the read showed (0: no read)."""
        lt = self.lt
        keys = sharing_record(lt.config, self.target.provider, self.target.list_id)
        since = earliest_cursor_among(lt, keys, but={(lt.list_name, self.target.key)})
        if since is None:
            return 0  # no other list has read a record of this account: none is known by its id
        seen = 0
        for members in self.connector.changed_records(since):
            seen += len(members)
            self.follow_renames(members, {m.email for m in members})
        return seen

    def advance(self, cursor: str) -> None:
        """A read that began at or before ``covered`` was reconciled whole: its cursor is stored."""
        save_cursor(self.lt, cursor)
        self.covered = cursor

    def reconcile(self, members: list[RemoteMember]) -> list[str]:
        """Provider-side changes first: they change the master base before anything is planned.
        Returns the addresses on the target that were erased from the master base at the
        contact's request: never re-imported, to be taken off the target."""
        if not members:
            return []
        members = self._news(members)
        if not members:
            return []
        counted = (self.report.created, dict(self.report.reconciled))

        def again() -> None:
            self.report.created, self.report.reconciled = counted[0], dict(counted[1])

        # A run of another list (``syncd sync --jobs``, another replica) has just added a contact
        # this page also shows, or changed the same contacts in another order (a deadlock
        # PostgreSQL broke): nothing of this page was kept; read again, it goes through.
        return self._retried("sync.reconcile_retried", lambda: self._reconcile(members), again)

    def _retried(self, event: str, work: Callable[[], T], again: Callable[[], None] | None = None) -> T:
        """``work`` (one transaction), run again when it lost a race with another list's run."""
        for attempt in range(1, RACE_ATTEMPTS + 1):
            try:
                return work()
            except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
                if attempt == RACE_ATTEMPTS or not lost_a_race(exc):
                    raise
                log.info(event, list=self.lt.list_name, target=self.target.key, attempt=attempt)
                if again is not None:
                    again()
        raise AssertionError("unreachable")

    def _reconcile(self, members: list[RemoteMember]) -> list[str]:
        now = utcnow()
        lt = self.lt
        erased_on_target: list[str] = []
        added = 0
        with session_scope(lt.engine) as s:
            members, carried = self._former_addresses(s, members)
            emails = [m.email for m in members]
            contacts = {c.email: c for c in s.exec(select(Contact).where(Contact.email.in_(emails)))}
            unknown = [m for m in members if m.email not in contacts]
            erased = erased_among(s, (m.email for m in unknown))
            contacts.update(self._renamed(s, [m for m in unknown if m.email not in erased], set(emails)))
            unknown = [m for m in unknown if m.email not in contacts]
            for m in unknown:
                if m.email in erased:
                    if m.on_target:
                        erased_on_target.append(m.email)
                elif m.status == RemoteStatus.SUBSCRIBED:
                    contacts[m.email] = self._import_unknown(s, m, now)
            s.flush()
            ids = [c.id for c in contacts.values()]
            states = {
                t.contact_id: t
                for t in s.exec(
                    select(TargetState).where(*lt.state_filter(), TargetState.contact_id.in_(ids))
                )
            }
            blocked: list[tuple[Contact, RemoteMember]] = []
            for m in members:
                contact = contacts.get(m.email)
                if contact is None:
                    continue
                state = states.get(contact.id)
                if state is None:
                    state = TargetState(
                        contact_id=contact.id,
                        list_name=lt.list_name,
                        target_key=self.target.key,
                        remote_email=carried.get(contact.email),
                    )
                    added += 1
                if state.remote_status != str(m.status):
                    # A new remote status is what the incremental plan must look at; a remote id
                    # learnt for a member syncd pushed is not.
                    state.remote_status, state.pulled_at = str(m.status), now
                    state.remote_changed_at = m.changed_at
                elif self._blocked_again(m, state.remote_changed_at):
                    state.remote_changed_at = m.changed_at  # this block's reason is looked at now
                state.remote_id = m.remote_id
                s.add(state)
                # The provider's opt-in evidence matters for members syncd did not put there; for
                # the others it only echoes syncd's own push.
                if m.evidence and state.pushed_hash is None and m.on_target:
                    record_provider_evidence(
                        s, contact, lt.list_name, m.evidence, f"provider:{self.target.key}"
                    )
                events = [self._event_for(m), *self._left_elsewhere(m)]
                for event in events:
                    if event is not None:
                        self._apply(s, event)
                if m.status == RemoteStatus.BLOCKED and self.traits.blocks_account_wide:
                    blocked.append((contact, m))
            if blocked:
                self._unexplained_blocks(s, blocked)
        lt.added_states(added)
        return erased_on_target

    def _former_addresses(
        self, s: Session, members: list[RemoteMember]
    ) -> tuple[list[RemoteMember], dict[str, str]]:
        """Members this target holds under an address the master base has since changed (a change
        of address learnt from another provider, not yet carried here): they are that contact.
        Returns the members under the contact's address, and the former address of each contact
        this target had no state for (``_left_behind``): the push carries the change to it."""
        state = TargetState.__table__
        contact = Contact.__table__
        # Any target sharing the provider's record knows it (a Brevo contact is on every list).
        keys = sharing_record(self.lt.config, self.target.provider, self.target.list_id) | {self.target.key}
        query = (
            sa.select(state.c.remote_email, contact.c.email)
            .join(contact, contact.c.id == state.c.contact_id)
            .where(
                state.c.target_key.in_(keys),
                state.c.remote_email.in_([m.email for m in members]),
            )
        )
        current = {r.remote_email: r.email for r in s.execute(query)}
        carried = self._left_behind(s, [m for m in members if m.email not in current], keys)
        current.update(carried)
        if not current:
            return members, {}
        members = [replace(m, email=current[m.email]) if m.email in current else m for m in members]
        return members, {new: old for old, new in carried.items()}

    def _left_behind(self, s: Session, members: list[RemoteMember], keys: set[str]) -> dict[str, str]:
        """Members under a contact's former address (``FormerAddress``) at a provider that never
        had a state for that contact: a change of address made at another provider before this
        target's first read of the person (its first run failed, the member was added in the
        provider's UI). They are that contact, and what they say (an unsubscribe) is the person's;
        pushed as new under the current address, the person would be subscribed a second time
        beside the member who left. Former address -> current address.

        Not for a contact the provider's record already knows (a state on a target sharing it: the
        member is another record, or one the base left), nor one whose current address the same
        read also shows (two members, not one renamed), nor for an address another contact holds
        now."""
        by_hash = {email_hash(m.email): m.email for m in members}
        if not by_hash:
            return {}
        rows = column_among(s, "formeraddress", "email_hash, contact_id", "email_hash", by_hash)
        if not rows:
            return {}
        # An address another contact holds now is that contact's, whoever had it before.
        taken = set(column_among(s, "contact", "email", "email", [by_hash[h] for h, _ in rows]))
        owners = {contact_id: by_hash[h] for h, contact_id in rows if by_hash[h] not in taken}
        if not owners:
            return {}
        state, contact = TargetState.__table__, Contact.__table__
        known = sa.select(state.c.id).where(
            state.c.contact_id == contact.c.id, state.c.target_key.in_(sorted(keys))
        )
        found = s.execute(
            sa.select(contact.c.id, contact.c.email).where(
                contact.c.id.in_(sorted(owners)), ~sa.exists(known)
            )
        )
        on_page = {m.email for m in members}
        return {owners[r.id]: r.email for r in found if r.email not in on_page}

    def _renamed(self, s: Session, unknown: list[RemoteMember], on_page: set[str]) -> dict[str, Contact]:
        """Members under an address the base does not hold whose provider id is a known contact's:
        the person changed address at the provider, and its webhook was lost or is still to come.
        Applied as that webhook would be (``EMAIL_CHANGED``: erased and taken addresses refused);
        returns the contacts now holding those addresses."""
        ids = {m.remote_id: m for m in unknown if m.remote_id}
        if not ids:
            return {}
        keys = sharing_record(self.lt.config, self.target.provider, self.target.list_id)
        rows = s.exec(
            select(TargetState.remote_id, Contact)
            .join(Contact, Contact.id == TargetState.contact_id)
            .where(TargetState.target_key.in_(keys), TargetState.remote_id.in_(list(ids)))
        ).all()
        found: dict[str, Contact] = {}
        for remote_id, contact in rows:
            m = ids.get(remote_id)
            if m is None or contact.email == m.email:
                continue
            if contact.email in on_page or m.email in found:
                continue  # the former address is on this page too: two members, not one renamed
            event = ProviderEvent(
                provider=self.target.provider,
                kind=EventKind.EMAIL_CHANGED,
                email=contact.email,
                new_email=m.email,
                occurred_at=m.changed_at or datetime.now(UTC),
                dedupe_key=f"pull:{self.target.provider}:{self.target.list_id}:email_changed:{remote_id}:{m.email}",
                target=self.target.list_id,
                reason="seen when reading the provider's list: a known member under a new address",
            )
            self._apply(s, event)
            if contact.email == m.email:
                found[m.email] = contact
        return found

    def follow_renames(self, elsewhere: list[RemoteMember], on_page: set[str]) -> None:
        """Members of the read that are not on this target (``Page.elsewhere``) whose provider
        record a target sharing it knows under another address: the change of address is followed
        now, before this target plans. Its plan would otherwise push the former address, which
        the provider, no longer holding it, takes for a new member: the person's old address
        subscribed, and a second contact once read back.

        A member still under an address the base has left (its rename refused here, the member
        taken off the target) is not a change at this provider; nor is a record the base has a
        change of address of its own to carry to (learnt from another provider; a target sharing
        the record holds its former address): the push carries the base's address to it."""
        known = [m for m in elsewhere if m.remote_id]
        if not known:
            return

        def follow() -> None:
            with session_scope(self.lt.engine) as s:
                hashes = {email_hash(m.email) for m in known}
                left = set(column_among(s, "formeraddress", "email_hash", "email_hash", hashes))
                carrying = self._carrying(s, {m.remote_id for m in known if m.remote_id})
                followed = [
                    m for m in known if email_hash(m.email) not in left and m.remote_id not in carrying
                ]
                self._renamed(s, followed, on_page)

        # Another list's run on the same remote list may follow the same change at the same time.
        self._retried("sync.rename_retried", follow)

    def _carrying(self, s: Session, remote_ids: set[str]) -> set[str]:
        """Of these provider records, those a target sharing them holds under a former address
        (``TargetState.remote_email``): the base has a change of address to carry to them."""
        keys = sharing_record(self.lt.config, self.target.provider, self.target.list_id) | {self.target.key}
        state = TargetState.__table__
        query = sa.select(state.c.remote_id).where(
            state.c.target_key.in_(sorted(keys)),
            state.c.remote_id.in_(sorted(remote_ids)),
            state.c.remote_email.is_not(None),
        )
        return set(s.execute(query).scalars())

    def _news(self, members: list[RemoteMember]) -> list[RemoteMember]:
        """The members whose remote status or id differs from what TargetState holds (or who are
        new to it): one cheap query, since most of an incremental read is the echo of syncd's own
        writes. A member syncd pushed shows its provider id on the read after the push: kept, it
        tells a later change of address at the provider from a new member."""
        contact, state = Contact.__table__, TargetState.__table__
        query = (
            sa.select(
                contact.c.email,
                state.c.id,
                state.c.remote_status,
                state.c.remote_id,
                state.c.remote_changed_at,
            )
            .select_from(
                contact.outerjoin(
                    state,
                    sa.and_(
                        state.c.contact_id == contact.c.id,
                        state.c.list_name == self.lt.list_name,
                        state.c.target_key == self.target.key,
                    ),
                )
            )
            .where(contact.c.email.in_([m.email for m in members]))
        )
        with self.lt.engine.connect() as conn:
            known = {r.email: r for r in conn.execute(query)}
        news, ids = [], []
        for m in members:
            row = known.get(m.email)
            if (
                row is None
                or row.remote_status != str(m.status)
                or self._blocked_again(m, row.remote_changed_at)
            ):
                news.append(m)
            elif m.remote_id is not None and row.remote_id != m.remote_id:
                if m.status == RemoteStatus.SUBSCRIBED:
                    # The echo of syncd's own push, with the id the provider gave the member: only
                    # the id is new, stored in one statement for the page.
                    ids.append({"k_id": row.id, "v_remote_id": m.remote_id})
                else:
                    news.append(m)
        if ids:
            with self.lt.engine.begin() as conn:
                conn.execute(
                    sa.update(state)
                    .where(state.c.id == sa.bindparam("k_id"))
                    .values(remote_id=sa.bindparam("v_remote_id")),
                    ids,
                )
        return news

    def _blocked_again(self, m: RemoteMember, seen_at: datetime | None) -> bool:
        """An account-wide block on a record changed since the block this target last saw: maybe
        a new one (another list's run lifted the first, then a complaint or an unsubscribe click
        blocked the address again); its reason is looked at again (``_unexplained_blocks``)."""
        if m.status != RemoteStatus.BLOCKED or not self.traits.blocks_account_wide or m.changed_at is None:
            return False
        return seen_at is None or m.changed_at > seen_at

    def _import_unknown(self, s: Session, m: RemoteMember, now: datetime) -> Contact:
        """A member the provider has and the master base does not: kept, with provenance and no
        consent; it is flagged, never pushed anywhere on the provider's word alone."""
        contact = Contact(
            email=m.email,
            created_at=now,
            updated_at=now,
            **{k: v for k, v in m.fields.items() if k in IMPORTED_FIELDS},
        )
        s.add(contact)
        s.flush()
        s.add(
            Source(
                contact_id=contact.id, channel=f"provider:{self.target.key}", detail=self.lt.list_name, at=now
            )
        )
        s.add(
            AuditLog(
                at=now,
                actor=self.lt.actor,
                action="contact.imported_from_provider",
                contact_id=contact.id,
                detail={"target": self.target.key},
            )
        )
        self.report.created += 1
        return contact

    def _apply(self, s: Session, event: ProviderEvent) -> None:
        outcome = apply_event(s, event, self.lt.config)
        self.report.count(self.report.reconciled, outcome)

    def _event_for(self, m: RemoteMember) -> ProviderEvent | None:
        """A pulled status the master base does not know yet, as the event its webhook would have
        brought, whoever the contact is: a hard bounce is a fact about the address, and an
        unsubscribe closes every list the remote list serves (an objection to the legitimate
        interest of an auto-enrolled list, recorded as an ``unsubscribed`` row), members or not."""
        kind = {
            RemoteStatus.UNSUBSCRIBED: EventKind.UNSUBSCRIBED,
            RemoteStatus.CLEANED: EventKind.BOUNCED_HARD,
        }.get(m.status)
        if kind is None:
            return None
        return self._pulled_event(m, kind, self.target.list_id, "seen when reading the provider's list")

    def _pulled_event(
        self, m: RemoteMember, kind: EventKind, list_id: str | None, reason: str
    ) -> ProviderEvent:
        at = m.changed_at or datetime.now(UTC)
        return ProviderEvent(
            provider=self.target.provider,
            kind=kind,
            email=m.email,
            occurred_at=at,
            dedupe_key=f"pull:{self.target.provider}:{list_id or '*'}:{kind}:{m.email}:{at.isoformat()}",
            target=list_id,
            reason=reason,
        )

    def _left_elsewhere(self, m: RemoteMember) -> list[ProviderEvent]:
        """The other mapped lists the provider records the contact as unsubscribed from (Brevo's
        listUnsubscribed, read on any of its lists): per-list opt-outs, recorded before anything
        asks whether an account-wide block has a per-list reason."""
        reason = f"listed as unsubscribed from that list when reading {self.target.key}"
        return [
            self._pulled_event(m, EventKind.UNSUBSCRIBED, list_id, reason)
            for list_id in m.unsubscribed_from
            if list_id != self.target.list_id
            and lists_for_target(self.lt.config, self.target.provider, list_id)
        ]

    def _unexplained_blocks(self, s: Session, blocked: list[tuple[Contact, RemoteMember]]) -> None:
        """An account-wide block the master base cannot explain by a per-list opt-out is the
        contact's opt-out from everything (a default Brevo account's unsubscribe, a block set in
        the provider's UI): recorded as such, with what was seen, and never lifted (LESSONS 11),
        also for an address that already bounced (the person's own word outlives the address)."""
        s.flush()
        ids = [c.id for c, _ in blocked if c.id is not None]
        explained = explained_blocks(self.lt, self.traits, s.connection(), ids)
        for contact, m in blocked:
            if contact.id in explained:
                continue
            # Read again, locked, as it is now: a run of another list (another replica, or one run
            # at the same time) may have just recorded the same block; its proof is not doubled.
            s.refresh(contact, with_for_update=True)
            if contact.global_opt_out:
                continue
            reason = (
                f"blocked account-wide at {self.target.key} with no per-list unsubscribe on record; "
                "seen when reading the provider's list"
            )
            self._apply(s, self._pulled_event(m, EventKind.UNSUBSCRIBED_ALL, None, reason))


def earliest(cursors: list[str | None]) -> str | None:
    """The cursor a read shared by several targets starts from: the earliest (None: from the
    start). A provider's cursors sort as they are in time (``connectors.contract.Page``)."""
    if not cursors or any(c is None for c in cursors):
        return None
    return min(c for c in cursors if c is not None)


@dataclass
class Bystander:
    """A target of another list on the remote list a read covers (another tag of a Mailchimp
    audience), with the cursor it had stored when the read began."""

    lt: ListTarget
    cursor: str
    shown: bool = False  # the read showed it a member changed after its cursor

    def sees(self, members: list[RemoteMember]) -> bool:
        """Whether its own read from its cursor could have shown any of ``members`` (those a read
        of it shows): a member changed before the cursor was seen by the read that took it. A
        provider's cursor is its time as ISO 8601 text; a change in the cursor's own second counts
        (Mailchimp shows change times to the second, later in that second than the cursor)."""
        since = datetime.fromisoformat(self.cursor)
        return any(m.changed_at is None or m.changed_at >= since for m in members)


def bystanders(lt: ListTarget, since: str | None) -> list[Bystander]:
    """The other lists' targets on ``lt``'s remote list whose stored cursor is at or after
    ``since`` (None: any): an incremental read from at or before their cursor, with its archived
    pass, is what their own read would be, and one that shows them nothing passes their cursor on
    (``read_together``), so that a list does not read again, at its next run, the members another
    list's run wrote there."""
    out = []
    for name, other in lt.config.lists.items():
        if name == lt.list_name:
            continue
        for t in other.targets:
            target = t.target
            if (target.provider, target.list_id) != (lt.target.provider, lt.target.list_id):
                continue
            them = ListTarget(lt.engine, lt.config, name, other, target)
            row = read_cursor(them)
            if row is not None and row.cursor is not None and (since is None or since <= row.cursor):
                out.append(Bystander(them, row.cursor))
    return out


def read_together(
    readers: list[Reader],
    connector: Connector,
    since: str | None,
    after_writes: bool = False,
    others: list[Bystander] | None = None,
) -> list[list[str]]:
    """One read of the remote list the readers' targets share, from ``since`` (at or before each
    one's ``covered``), each page reconciled for each target; the read's cursor is stored for each
    once the read is complete. Memory holds one page of the read. Returns, per reader, the
    addresses on its target erased from the master base.

    ``others`` (``bystanders``): other lists' targets on the remote list, read from at or before
    their cursor. The read is what theirs would have been up to its cursor: one that showed them
    no member changed since their cursor (their tag on none, no audience-wide opt-out) passes their
    cursor on, as their own read would have after reconciling nothing."""
    others = others or []
    erased: list[list[str]] = [[] for _ in readers]
    cursor = None
    for pages in connector.pull_shared([r.target for r in readers] + [b.lt.target for b in others], since):
        for found, reader, page in zip(erased, readers, pages[: len(readers)], strict=True):
            found += reader.take(page, after_writes)
        if pages[0].elsewhere:
            # A member another of the readers sees is that reader's to reconcile (a rename included).
            theirs = {m.email for page in pages[1 : len(readers)] for m in page.members}
            elsewhere = [m for m in pages[0].elsewhere if m.email not in theirs]
            on_page = {m.email for m in pages[0].members} | {m.email for m in pages[0].elsewhere}
            readers[0].follow_renames(elsewhere, on_page)
        for other, page in zip(others, pages[len(readers) :], strict=True):
            other.shown = other.shown or other.sees(page.members)
        cursor = pages[0].cursor or cursor
    if cursor:
        for reader in readers:
            reader.advance(cursor)
        for other in others:
            if not other.shown and pass_cursor(other.lt, other.cursor, cursor):
                log.info("sync.cursor_passed", list=other.lt.list_name, target=other.lt.target.key)
    return erased
