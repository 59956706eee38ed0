"""The writer of one target: plan items in, provider writes out, in batches of the connector's size.

Shaped like a Singer SDK sink: ``take`` buffers a chunk's plan per kind and writes a batch as soon
as one ``is_full`` (``max_size``: the connector's preferred batch); ``drain`` writes whatever is
left, then the removals of erased addresses and the account-wide lifts. What the provider
accepted becomes TargetState batch by batch (``state.store_accepted``), so a run killed midway
sends at worst its unfinished batch again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Protocol

from connectors.contract import (
    AuthFailed,
    Connector,
    EventKind,
    Fatal,
    ProviderEvent,
    RemoteMember,
    Rename,
    Renamed,
    WriteResult,
)
from syncd.contacts.bulk import column_among
from syncd.core.plan import PlanItem, SyncedState
from syncd.db import session_scope
from syncd.inbound.apply import apply_event
from syncd.log import get_logger
from syncd.membership import require_confirmation
from syncd.models import Contact, utcnow
from syncd.sync.report import Progress, TargetReport
from syncd.sync.select import ChunkPlan
from syncd.sync.state import (
    CHUNK,
    Accepted,
    ListTarget,
    clicks_heard,
    forget_former_addresses,
    held_elsewhere,
    last_lifts,
    record_ids,
    record_lifts,
    store_accepted,
    store_stamps,
)

log = get_logger(__name__)

# Members a write showed in a state the push did not ask for go back through the reader, which
# answers with the addresses erased from the master base among them.
Reconcile = Callable[[list[RemoteMember]], list[str]]


class Chain(Protocol):
    """The target's reads in this run (``pull.Reader``): where the last reconciled one began
    (``covered``), and how a write that ends with a read of the list moves it on (``advance``)."""

    covered: str | None

    def advance(self, cursor: str) -> None: ...

    def follow_shared_records(self) -> int: ...


Buffered = tuple[PlanItem, SyncedState | None]


def held_as(item: PlanItem, before: SyncedState | None) -> str:
    """The address the target holds the member under: a former one until the next push renames it."""
    return before.remote_email if before is not None and before.remote_email else item.email


class Writer:
    def __init__(
        self,
        lt: ListTarget,
        connector: Connector,
        report: TargetReport,
        progress: Progress,
        reconcile: Reconcile,
        chain: Chain | None = None,
    ):
        self.lt, self.connector, self.report, self.progress = lt, connector, report, progress
        self.reconcile = reconcile
        self.chain = chain
        self.max_size = int(getattr(connector, "preferred_batch", 5000))
        self.upserts: dict[str, list[Buffered]] = {"adds": [], "updates": []}
        self.removals: list[Buffered] = []
        self.unblocks: list[Buffered] = []
        self.lifts: list[tuple[int, str]] = []  # account-wide blocks to lift, with no list state to keep
        self.erased: list[str] = []  # remote members whose address was erased from the master base
        # Members to plan again in this run: a refusal brought their state back, or their address
        # changed since their push was planned.
        self.revealed: set[str] = set()
        self.stamps: dict[int, str] = {}  # buffered members: what their plan read (stamps.stamp)
        self.followed_shared = False  # the account's changes of address read in this run

    # --- the sink ------------------------------------------------------------------------------

    def take(self, chunk: ChunkPlan) -> None:
        """One chunk's plan: the reconfirmations now, the provider writes when a batch is full."""
        plan, states = chunk.plan, chunk.states
        self._reconfirm(plan.reconfirms)
        for kind, items in (("adds", plan.adds), ("updates", plan.updates)):
            self.upserts[kind].extend((item, states.get(item.contact_id)) for item in items)
        self.removals.extend((item, states.get(item.contact_id)) for item in plan.removals)
        self.unblocks.extend((item, states.get(item.contact_id)) for item in plan.unblocks)
        for item in (*plan.adds, *plan.updates, *plan.removals, *plan.unblocks):
            if item.contact_id in chunk.stamps:
                self.stamps[item.contact_id] = chunk.stamps[item.contact_id]
        self.lifts.extend(chunk.lifts)
        store_stamps(self.lt, chunk.settled)
        self._write(force=False)

    def erase(self, emails: list[str]) -> None:
        """Addresses on the target erased from the master base: taken off when the writer drains."""
        self.erased.extend(emails)

    def is_full(self, kind: str) -> bool:
        """Whether a batch of ``kind`` (upserts, removals, unblocks) is ready to be written."""
        return self._buffered(kind) >= self.max_size

    def _buffered(self, kind: str) -> int:
        if kind == "upserts":
            return len(self.upserts["adds"]) + len(self.upserts["updates"])
        return len(self.removals if kind == "removals" else self.unblocks)

    def drain(self) -> None:
        """Everything still buffered, then the erased addresses and the lifts."""
        self._write(force=True)
        if self.erased:
            result = self.connector.remove(self.lt.target, self.erased)
            self.report.write_calls += result.calls
            self.report.applied["erased"] = len(result.done)
            self.erased = []
        if self.lifts:
            lifts = self._vet_lifts(self.lifts)
            for _, email in lifts:
                self.connector.set_blocked(email, False)
                self.report.write_calls += 1
            record_lifts(self.lt, [cid for cid, _ in lifts])
            self.report.count(self.report.applied, "unblocks", len(lifts))
            self.lifts = []

    def _vet_lifts(self, lifts: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """The lifts the provider's own record allows. A per-list unsubscribe explains a block only
        if nothing else stands behind it: a spam complaint, a block an account user set since
        syncd's last lift, or a click on a campaign's unsubscribe link since that lift and since the
        contact's latest opt-in that no per-list opt-out the provider reported by webhook accounts
        for (its webhook lost or still to come: a list's read cannot tell it, since it dates what it
        shows by the record's last change), is recorded (a complaint; an opt-out from everything) and
        the block kept; the list's targets then take the contact off in this run (``sync_list``)."""
        provider, key = self.lt.target.provider, self.lt.target.key
        ids = [cid for cid, _ in lifts]
        with self.lt.engine.connect() as conn:
            lifted = last_lifts(self.lt, conn, ids)
            heard = clicks_heard(self.lt, conn, ids)
        allowed = []
        with session_scope(self.lt.engine) as s:
            for cid, email in lifts:
                record = self.connector.block_record(email)
                user_block = record.blocked_by_user_at
                campaigns, opted_in = heard.get(cid, (set(), None))
                since = max((t for t in (lifted.get(cid), opted_in) if t is not None), default=None)
                unheard = [
                    at
                    for campaign, at in record.clicks
                    if (since is None or at > since) and campaign not in campaigns
                ]
                if record.complained_at is not None:
                    kind, at, why = EventKind.COMPLAINED, record.complained_at, "a spam complaint"
                elif user_block is not None and (cid not in lifted or user_block > lifted[cid]):
                    kind, at, why = EventKind.UNSUBSCRIBED_ALL, user_block, "a block set by an account user"
                elif unheard:
                    kind, at, why = (
                        EventKind.UNSUBSCRIBED_ALL,
                        max(unheard),
                        "an unsubscribe click not heard of",
                    )
                else:
                    allowed.append((cid, email))
                    continue
                event = ProviderEvent(
                    provider=provider,
                    kind=kind,
                    email=email,
                    occurred_at=at,
                    dedupe_key=f"record:{provider}:{kind}:{email}:{at.isoformat()}",
                    reason=f"{key}'s record of the contact shows {why}, read before a lift",
                )
                self.report.count(self.report.reconciled, apply_event(s, event, self.lt.config))
                self.revealed.add(email)
        return allowed

    def _write(self, force: bool) -> None:
        for kind, write in (
            ("upserts", self._upsert),
            ("removals", self._remove),
            ("unblocks", self._unblock),
        ):
            if self._buffered(kind) and (force or self.is_full(kind)):
                write()

    # --- one batch of each kind ------------------------------------------------------------------

    def _follow_shared_records(self, items: list[Buffered]) -> None:
        """Before the first push, in a run, of contacts new to this target whose provider record
        another list's target holds (one record per account: Brevo), the changes of address made
        at the provider on such records since the other lists' reads are followed (one read of the
        account's changed records). A contact it renames is withheld from the push as planned
        under its former address (``_moved_since_planned``) and planned again in this run."""
        if self.followed_shared or self.chain is None or not self.connector.traits.one_record_per_account:
            return
        new_here = [item.contact_id for item, before in items if before is None or before.pushed_hash is None]
        if not new_here or not record_ids(self.lt, new_here):
            return
        self.followed_shared = True
        self.report.read_elsewhere += self.chain.follow_shared_records()

    def _moved_since_planned(self, items: list[PlanItem]) -> set[int]:
        """The contacts whose address is no longer the one their push was planned with (another
        list's run followed a change of address meanwhile), or that are gone (erased): not pushed
        now, planned again under their address of the moment. Pushed under the former address, a
        Mailchimp audience would take it as a new member (the address is free there since the
        change) and the read after the write would bring it back as a new contact."""
        if not items:
            return set()
        # A batch holds up to tens of thousands of members: their ids go as one array, not a bound
        # parameter each (SQLite takes at most 32,766).
        with session_scope(self.lt.engine) as s:
            current = dict(column_among(s, "contact", "id, email", "id", {item.contact_id for item in items}))
        moved = {item.contact_id for item in items if current.get(item.contact_id) != item.email}
        # Planned again in this run under their address of the moment (``sync_list``'s replan).
        self.revealed.update(email for contact_id in moved if (email := current.get(contact_id)))
        if moved:
            log.info(
                "sync.moved_since_planned",
                list=self.lt.list_name,
                target=self.lt.target.key,
                count=len(moved),
            )
        return moved

    def _upsert(self) -> None:
        items = [(kind, item, before) for kind in ("adds", "updates") for item, before in self.upserts[kind]]
        self.upserts = {"adds": [], "updates": []}
        self._follow_shared_records([(item, before) for _, item, before in items])
        withheld = self._moved_since_planned([item for _, item, _ in items])
        items = [entry for entry in items if entry[1].contact_id not in withheld]
        withheld |= self._carry_renames([(item, before) for _, item, before in items])
        if withheld:
            items = [entry for entry in items if entry[1].contact_id not in withheld]
            for contact_id in withheld:
                self.stamps.pop(contact_id, None)  # not written: planned again, stamped again
            if not items:
                return
        since = self.chain.covered if self.chain is not None else None
        result = self.connector.upsert(
            self.lt.target, [item.push for _, item, _ in items], confirm_since=since
        )
        self.report.write_calls += result.calls
        done = set(result.done)
        accepted = [(kind, item, before) for kind, item, before in items if item.email in done]
        self._moved_while_pushed(
            store_accepted(self.lt, accepted, self._stamps_of(item for _, item, _ in items))
        )
        for kind, _, _ in accepted:
            self.report.count(self.report.applied, kind)
        for r in result.rejected:
            self.report.rejected.append((r.email, r.reason))
            log.warning(
                "sync.member_rejected",
                list=self.lt.list_name,
                target=self.lt.target.key,
                email=r.email,
                reason=r.reason,
                code=r.code,
            )
        # A refusal, or a confirming read, that shows the member's state (an opt-out syncd had
        # missed: a Mailchimp compliance state, a Brevo block) changes the master base now; the
        # list's targets plan those members again before the run ends (sync_list).
        shown = [r.member for r in result.rejected if r.member is not None] + result.seen
        self.erase(self.reconcile(shown))
        self.revealed.update(m.email for m in shown)
        self._confirmed(result, {m.email for m in shown})
        self.progress(f"{self.lt.list_name} → {self.lt.target.key}: writing", len(items))

    def _moved_while_pushed(self, moved: dict[int, str]) -> None:
        """Contacts whose address changed while they were pushed (``store_accepted``): the target
        holds them under the address pushed; planned again in this run, the push renames them."""
        if moved:
            self.revealed.update(moved.values())
            log.info(
                "sync.moved_while_pushed", list=self.lt.list_name, target=self.lt.target.key, count=len(moved)
            )

    def _stamps_of(self, items: Iterable[PlanItem]) -> dict[int, str]:
        """The stamps of a written batch's members, no longer kept once it is written."""
        return {i.contact_id: st for i in items if (st := self.stamps.pop(i.contact_id, None)) is not None}

    def _confirmed(self, result: WriteResult, shown: set[str]) -> None:
        """A write that ended with a read of the list from the chain's cursor (Brevo's read-back):
        that read is reconciled like a pull, its cursor stored, after what was accepted (so
        syncd's own writes are known echoes)."""
        if self.chain is None or result.cursor is None:
            return
        read = [m for m in result.read if m.email not in shown]
        self.report.read_after_writes += len(result.read)
        # A page at a time, as a pull: one session over tens of thousands of members would hold
        # each one's contact and state at once.
        for start in range(0, len(read), CHUNK):
            self.erase(self.reconcile(read[start : start + CHUNK]))
        self.chain.advance(result.cursor)

    def _carry_renames(self, items: list[Buffered]) -> set[int]:
        """Members whose provider record is under a former address (the master base learnt the
        change of address from another provider): renamed there before the push, one call each (a
        change of address is rare), so that the push updates the person's record instead of adding
        a second one beside it. The record is the one this target holds, or, for a member this
        target holds nothing of yet, the one a target sharing it holds (another list of a Brevo
        account, another tag of the audience). If the new address is already another record there,
        the former one leaves the target: one person, one membership.

        A record the provider will not rename without lifting its block (Brevo) keeps its address:
        its block is reconciled like one a write reveals, and the member is withheld from this
        push (returned); the run plans it again with what the master base now knows."""
        elsewhere = held_elsewhere(
            self.lt,
            {item.contact_id for item, before in items if before is None or before.pushed_hash is None},
        )
        moves = []
        for item, before in items:
            old = before.remote_email if before is not None and before.remote_email else None
            old = old or elsewhere.get(item.contact_id)
            if old and old != item.email:
                moves.append((item, old))
        ids = record_ids(self.lt, [item.contact_id for item, _ in moves])
        withheld: dict[int, str] = {}
        shown: list[RemoteMember] = []
        for item, old in moves:
            outcome = self._rename(old, item.email, ids.get(item.contact_id))
            self.report.write_calls += outcome.outcome in (Rename.RENAMED, Rename.TAKEN)
            if outcome.outcome is Rename.RENAMED:
                self.report.count(self.report.applied, "renames")
            elif outcome.outcome is Rename.TAKEN:
                result = self.connector.remove(self.lt.target, [old])
                self.report.write_calls += result.calls
            elif outcome.outcome is Rename.BLOCKED and outcome.record is not None:
                # The contact's own record, whatever address it has there now: its block is theirs.
                withheld[item.contact_id] = item.email
                shown.append(replace(outcome.record, email=item.email))
        if shown:
            self.erase(self.reconcile(shown))
            self.revealed.update(withheld.values())
            log.info(
                "sync.rename_withheld", list=self.lt.list_name, target=self.lt.target.key, count=len(shown)
            )
        forget_former_addresses(
            self.lt, [item.contact_id for item, _ in moves if item.contact_id not in withheld]
        )
        return set(withheld)

    def _rename(self, old: str, new: str, remote_id: str | None) -> Renamed:
        try:
            return self.connector.rename(self.lt.target, old, new, remote_id)
        except Fatal as exc:
            if isinstance(exc, AuthFailed):
                raise
            # Refused for another reason (a Mailchimp address deleted for good cannot be given
            # back): the former address leaves the target, and the push answers for the new one
            # like for any member.
            log.warning(
                "sync.rename_refused", list=self.lt.list_name, target=self.lt.target.key, error=str(exc)
            )
            return Renamed(Rename.TAKEN)

    def _remove(self) -> None:
        items, self.removals = self.removals, []
        # A member the target holds under a former address is taken off under that address.
        held = [held_as(item, before) for item, before in items]
        result = self.connector.remove(self.lt.target, held)
        self.report.write_calls += result.calls
        done = set(result.done)
        store_accepted(
            self.lt,
            [("removals", i, b) for (i, b), email in zip(items, held, strict=True) if email in done],
            self._stamps_of(item for item, _ in items),
        )
        self.report.count(self.report.applied, "removals", len(done))
        for r in result.rejected:
            self.report.rejected.append((r.email, r.reason))

    def _unblock(self) -> None:
        """Members blocked account-wide for a per-list unsubscribe from another list: lifted here,
        where they are still members, once the provider's own record shows nothing else behind
        the block (``_vet_lifts``: this list may be synced before the one they left, whose run
        would have read the record first)."""
        items, self.unblocks = self.unblocks, []
        allowed = {cid for cid, _ in self._vet_lifts([(i.contact_id, held_as(i, b)) for i, b in items])}
        refused = [item for item, _ in items if item.contact_id not in allowed]
        self._stamps_of(refused)  # planned again with what the record showed
        self.revealed.update(item.email for item in refused)
        items = [(item, before) for item, before in items if item.contact_id in allowed]
        done: list[Accepted] = []
        for item, before in items:
            self.connector.set_blocked(held_as(item, before), False)
            self.report.write_calls += 1
            done.append(("unblocks", item, before))
        store_accepted(self.lt, done, self._stamps_of(item for item, _ in items))
        record_lifts(self.lt, [item.contact_id for item, _ in items])
        self.report.count(self.report.applied, "unblocks", len(done))

    def _reconfirm(self, items: list[PlanItem]) -> None:
        """Members without the proof the list now needs go back to pending, in one transaction;
        the plan takes them off the targets, a confirmation mail brings them back."""
        if not items:
            return
        now = utcnow()
        done = 0
        with session_scope(self.lt.engine) as s:
            for item in items:
                contact = s.get(Contact, item.contact_id)
                if contact is None:
                    continue
                moved = require_confirmation(
                    s, contact, self.lt.list_name, reason=item.reason, source=self.lt.actor, at=now
                )
                done += moved is not None
        self.report.count(self.report.applied, "reconfirms", done)
        log.info("sync.reconfirms", list=self.lt.list_name, target=self.lt.target.key, count=done)
