"""One sync of one list: pull remote changes → reconcile them → plan → apply in batches.

Everything is streamed: remote members page by page, the master base in chunks of contacts, and
provider writes in buffered batches (the connector's preferred batch), so memory is bounded by
those sizes rather than by the base. State is committed
as it goes (TargetState after each accepted batch, the cursor after the pull), so a run killed
at any point converges on the next one: at worst the unfinished batch is sent again.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from connectors.contract import (
    Connector,
    ConnectorError,
    EventKind,
    ProviderEvent,
    RemoteMember,
    RemoteStatus,
    Target,
)
from syncd import doi, locks
from syncd.config import Config, ListConfig
from syncd.db import erased_among, session_scope
from syncd.events import apply_event, lists_for_target, record_provider_evidence, reported_by
from syncd.log import get_logger
from syncd.membership import require_confirmation
from syncd.models import (
    AuditLog,
    Consent,
    ConsentAction,
    Contact,
    Membership,
    Source,
    SyncCursor,
    SyncRun,
    TargetState,
    utcnow,
)
from syncd.segments import ContactFacts, auto_enrolled, consent_blockers, eligibility, lacks_proof
from syncd.sync.plan import (
    Plan,
    PlanItem,
    SyncedState,
    block_explained,
    desired_member,
    lifts_block,
    plan_target,
    state_after,
)

log = get_logger(__name__)

CHUNK = 1000  # contacts read from the master base at a time
FULL_PLAN_EVERY = timedelta(hours=24)
# Incremental plans look back this far before the previous plan's start, so that a write whose
# transaction was still open when that plan read the base is planned too.
PLAN_MARGIN = timedelta(minutes=2)
SAMPLE = 5  # changes shown per kind in a dry-run
BLOCK_LIFTED = "contact.block_lifted"  # AuditLog action: a lift answers the per-list opt-outs before it


@dataclass
class TargetReport:
    list_name: str
    target: str
    pulled: int = 0
    reconciled: dict[str, int] = field(default_factory=dict)
    created: int = 0
    planned: dict[str, int] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (email, provider's reason)
    samples: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # kind -> (email, reason)
    write_calls: int = 0
    failed: str | None = None
    incremental: bool = False

    @property
    def ok(self) -> bool:
        return self.failed is None


@dataclass
class ListReport:
    list_name: str
    dry_run: bool
    targets: list[TargetReport] = field(default_factory=list)
    skipped: str | None = None  # e.g. another run of this list holds the lock
    confirmations_sent: int = 0  # double opt-in mails to the members asked to confirm
    confirmations_failed: str | None = None  # why they could not be sent (the DOI job retries)

    @property
    def ok(self) -> bool:
        return self.skipped is None and all(t.ok for t in self.targets)

    @property
    def reconfirms(self) -> int:
        """Members without the proof the list needs, asked to confirm (planned, in a dry run).
        Every target plans the same ones; the first to apply them moves them to pending."""
        key = "planned" if self.dry_run else "applied"
        return max((getattr(t, key).get("reconfirms", 0) for t in self.targets), default=0)


Progress = Callable[[str, int], None]  # (step description, items done since last call)


def sync_list(
    engine: Engine,
    config: Config,
    list_name: str,
    connectors: dict[str, Connector],
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    send: doi.Send | None = None,
) -> ListReport:
    """Sync one list with each of its targets. Two runs of one list never overlap.

    Members the list's consent rule no longer accepts (a list switched to double opt-in) are
    moved to pending; with ``send``, their confirmation mails go out at the end of the run
    (without, the daemon's double opt-in job sends them)."""
    list_cfg = config.list(list_name)
    report = ListReport(list_name, dry_run)
    try:
        with locks.exclusive(engine, f"sync:{list_name}"):
            runs = [
                _Run(
                    engine,
                    config,
                    list_name,
                    list_cfg,
                    t.target,
                    connectors[t.target.provider],
                    dry_run,
                    progress,
                    stop,
                )
                for t in list_cfg.targets
            ]
            # Every target is read before any is planned: an unsubscribe seen on one target
            # (a Mailchimp audience) changes what the list's other targets must hold in this run.
            for run in runs:
                run.read()
            for run in runs:
                run.write()
            # A write that showed an opt-out the reads had not (a Mailchimp member archived after it
            # left, a Brevo contact blocked while on no list this run read) changed the master base
            # after some targets were written: those contacts are
            # planned again on every target, so that the run leaves nothing for the next one.
            revealed = sorted(set().union(*(run.revealed for run in runs)))
            if revealed:
                for run in runs:
                    run.replan(revealed)
            report.targets.extend(run.finish() for run in runs)
            if send is not None and report.reconfirms and not dry_run:
                _send_confirmations(engine, config, list_name, send, report)
    except locks.Busy:
        report.skipped = "another sync of this list is running"
        log.warning("sync.skipped_busy", list=list_name)
    return report


def _send_confirmations(
    engine: Engine, config: Config, list_name: str, send: doi.Send, report: ListReport
) -> None:
    """The double opt-in module's own sending path, for this list's pending requests."""
    batch = 1000
    try:
        while True:
            sent = doi.send_pending(engine, config, send, limit=batch, lists=[list_name])
            report.confirmations_sent += sent
            if sent < batch:
                break
    except doi.DoiNotConfigured as exc:
        report.confirmations_failed = str(exc)
        log.warning("sync.confirmations_not_sent", list=list_name, error=str(exc))


class _Run:
    def __init__(
        self,
        engine: Engine,
        config: Config,
        list_name: str,
        list_cfg: ListConfig,
        target: Target,
        connector: Connector,
        dry_run: bool,
        progress: Progress | None,
        stop: threading.Event | None,
    ):
        self.engine, self.config, self.list_name, self.list_cfg = engine, config, list_name, list_cfg
        self.target, self.connector, self.dry_run = target, connector, dry_run
        self.progress = progress or (lambda _step, _n: None)
        self.stop = stop or threading.Event()
        self.report = TargetReport(list_name, target.key)
        self.buffer: dict[str, list[tuple[PlanItem, SyncedState | None]]] = {
            "adds": [],
            "updates": [],
            "removals": [],
            "unblocks": [],
        }
        self.batch = int(getattr(connector, "preferred_batch", 5000))
        self.traits = connector.traits
        self.lifts: list[tuple[int, str]] = []  # account-wide blocks to lift, with no list state to keep
        self.erased: list[str] = []  # remote members whose address was erased from the master base
        self.revealed: set[str] = set()  # members whose refusal brought their state back
        self.full = True

    # --- the run -------------------------------------------------------------------------------

    def read(self) -> None:
        """First phase: what changed at the provider goes into the master base."""
        self.run_id = None if self.dry_run else self._start_run()
        self.started = utcnow()
        log.info("sync.started", list=self.list_name, target=self.target.key, dry_run=self.dry_run)
        if self.dry_run:
            return
        try:
            self._pull()
        except ConnectorError as exc:
            self._failed(exc)

    def write(self) -> None:
        """Second phase, once every target of the list was read: plan and apply."""
        if self.report.failed is None:
            since, self.full = self._planning_window(self.started)
            self.report.incremental = not self.full
            self._plan_and_apply(since)

    def replan(self, emails: list[str]) -> None:
        """Plan and apply again, for ``emails`` only: contacts whose master-base state a refusal
        at one of the list's targets changed after this target was written."""
        if self.report.failed is None and not self.dry_run:
            self._plan_and_apply(None, only=emails)

    def _plan_and_apply(self, since: datetime | None, only: list[str] | None = None) -> None:
        try:
            for plan, states in self._plans(since, only):
                self._take(plan, states)
                if self.stop.is_set():
                    raise _Stopped()
            self._flush(force=True)
        except _Stopped:
            self.report.failed = "stopped before the end (the next run completes it)"
        except ConnectorError as exc:
            self._failed(exc)

    def finish(self) -> TargetReport:
        """The run's record and the planning window for the next run."""
        if self.run_id is not None:
            if self.report.ok:
                self._remember_plan(self.started, self.full)
            self._finish_run(self.run_id)
        log.info(
            "sync.finished",
            list=self.list_name,
            target=self.target.key,
            incremental=self.report.incremental,
            planned=self.report.planned,
            applied=self.report.applied,
            write_calls=self.report.write_calls,
            failed=self.report.failed,
        )
        return self.report

    def _failed(self, exc: ConnectorError) -> None:
        self.report.failed = f"{type(exc).__name__}: {exc}"
        log.error("sync.failed", list=self.list_name, target=self.target.key, error=str(exc))

    # --- incremental planning -------------------------------------------------------------------

    def _rules_hash(self) -> str:
        """Everything a plan depends on besides the base: the lists' rules and the unsubscribe scope."""
        doc = {
            "lists": {n: lst.model_dump(mode="json") for n, lst in self.config.lists.items()},
            "scope": self.config.unsubscribe.scope,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()

    def _planning_window(self, now: datetime) -> tuple[datetime | None, bool]:
        """``(since, full)``: plan only contacts touched since ``since``, or everyone (``full``).

        A run plans everyone when it is the first, when the list rules changed, or when the last
        full plan is older than FULL_PLAN_EVERY (a safety net for changes made outside syncd)."""
        with Session(self.engine) as s:
            row = s.exec(self._cursor_query()).first()
        if (
            row is None
            or row.planned_at is None
            or row.full_plan_at is None
            or row.rules_hash != self._rules_hash()
            or now - row.full_plan_at > FULL_PLAN_EVERY
        ):
            return None, True
        return row.planned_at - PLAN_MARGIN, False

    def _remember_plan(self, started: datetime, full: bool) -> None:
        with session_scope(self.engine) as s:
            row = s.exec(self._cursor_query()).first() or SyncCursor(
                list_name=self.list_name, target_key=self.target.key
            )
            row.planned_at, row.rules_hash = started, self._rules_hash()
            if full:
                row.full_plan_at = started
            s.add(row)

    # --- pull and reconcile ----------------------------------------------------------------------

    def _pull(self) -> None:
        with Session(self.engine) as s:
            row = s.exec(self._cursor_query()).first()
            since = row.cursor if row else None
        cursor = None
        for page in self.connector.pull(self.target, since):
            self._reconcile(page.members)
            self.report.pulled += len(page.members)
            self.progress(f"{self.list_name} ← {self.target.key}: reading", len(page.members))
            cursor = page.cursor or cursor
        if cursor:
            with session_scope(self.engine) as s:
                row = s.exec(self._cursor_query()).first() or SyncCursor(
                    list_name=self.list_name, target_key=self.target.key
                )
                row.cursor, row.updated_at = cursor, utcnow()
                s.add(row)

    def _cursor_query(self) -> Any:
        return select(SyncCursor).where(
            SyncCursor.list_name == self.list_name, SyncCursor.target_key == self.target.key
        )

    def _reconcile(self, members: list[RemoteMember]) -> None:
        """Provider-side changes first: they change the master base before anything is planned."""
        if not members:
            return
        members = self._news(members)
        if not members:
            return
        now = utcnow()
        with session_scope(self.engine) as s:
            emails = [m.email for m in members]
            contacts = {c.email: c for c in s.exec(select(Contact).where(Contact.email.in_(emails)))}
            unknown = [m for m in members if m.email not in contacts]
            erased = erased_among(s, (m.email for m in unknown))
            for m in unknown:
                if m.email in erased:
                    # Erased at the contact's request: never re-imported; taken off the target.
                    if m.on_target:
                        self.erased.append(m.email)
                elif m.status == RemoteStatus.SUBSCRIBED:
                    contacts[m.email] = self._import_unknown(s, m, now)
            s.flush()
            ids = [c.id for c in contacts.values()]
            states = {
                t.contact_id: t
                for t in s.exec(
                    select(TargetState).where(*self._state_filter(), TargetState.contact_id.in_(ids))
                )
            }
            memberships = {
                m.contact_id: m
                for m in s.exec(
                    select(Membership).where(
                        Membership.list_name == self.list_name, Membership.contact_id.in_(ids)
                    )
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
                        contact_id=contact.id, list_name=self.list_name, target_key=self.target.key
                    )
                if state.remote_status != str(m.status):
                    # A new remote status is what the incremental plan must look at; a remote id
                    # learnt for a member syncd pushed is not.
                    state.remote_status, state.pulled_at = str(m.status), now
                    state.remote_changed_at = m.changed_at
                state.remote_id = m.remote_id
                s.add(state)
                # The provider's opt-in evidence matters for members syncd did not put there; for
                # the others it only echoes syncd's own push.
                if m.evidence and state.pushed_hash is None and m.on_target:
                    record_provider_evidence(
                        s, contact, self.list_name, m.evidence, f"provider:{self.target.key}"
                    )
                events = [self._event_for(m, memberships.get(contact.id)), *self._left_elsewhere(m)]
                for event in events:
                    if event is not None:
                        self._apply(s, event)
                if m.status == RemoteStatus.BLOCKED and self.traits.blocks_account_wide:
                    blocked.append((contact, m))
            if blocked:
                self._unexplained_blocks(s, blocked)

    def _news(self, members: list[RemoteMember]) -> list[RemoteMember]:
        """The members whose remote status differs from what TargetState holds (or who are new to
        it): one cheap query, since most of an incremental read is the echo of syncd's own writes."""
        contact, state = Contact.__table__, TargetState.__table__
        query = (
            sa.select(contact.c.email, state.c.remote_status)
            .select_from(
                contact.outerjoin(
                    state,
                    sa.and_(
                        state.c.contact_id == contact.c.id,
                        state.c.list_name == self.list_name,
                        state.c.target_key == self.target.key,
                    ),
                )
            )
            .where(contact.c.email.in_([m.email for m in members]))
        )
        with self.engine.connect() as conn:
            known = {r.email: r.remote_status for r in conn.execute(query)}
        return [m for m in members if m.email not in known or known[m.email] != str(m.status)]

    def _import_unknown(self, s: Session, m: RemoteMember, now: datetime) -> Contact:
        """A member the provider has and the master base does not: kept, with provenance and no
        consent; it is flagged, never pushed anywhere on the provider's word alone."""
        contact = Contact(
            email=m.email,
            created_at=now,
            updated_at=now,
            **{
                k: v
                for k, v in m.fields.items()
                if k in ("first_name", "last_name", "phone", "company", "city")
            },
        )
        s.add(contact)
        s.flush()
        s.add(
            Source(
                contact_id=contact.id, channel=f"provider:{self.target.key}", detail=self.list_name, at=now
            )
        )
        s.add(
            AuditLog(
                at=now,
                actor=f"sync:{self.list_name}",
                action="contact.imported_from_provider",
                contact_id=contact.id,
                detail={"target": self.target.key},
            )
        )
        self.report.created += 1
        return contact

    def _apply(self, s: Session, event: ProviderEvent) -> None:
        outcome = apply_event(s, event, self.config)
        self.report.reconciled[outcome] = self.report.reconciled.get(outcome, 0) + 1

    def _event_for(self, m: RemoteMember, membership: Membership | None) -> ProviderEvent | None:
        """A pulled status the master base does not know yet, as the event a webhook would have brought.

        It concerns a member of the list, or someone on an auto-enrolled list without a row: an
        unsubscribe there is an objection to the legitimate interest, recorded like any opt-out
        (an ``unsubscribed`` row), so that no target of the list holds the contact any more."""
        active = membership is not None and membership.status in ("subscribed", "pending")
        objection = membership is None and auto_enrolled(self.list_cfg)
        if not (active or objection):
            return None
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
            if list_id != self.target.list_id and lists_for_target(self.config, self.target.provider, list_id)
        ]

    def _unexplained_blocks(self, s: Session, blocked: list[tuple[Contact, RemoteMember]]) -> None:
        """An account-wide block the master base cannot explain by a per-list opt-out is the
        contact's opt-out from everything (a default Brevo account's unsubscribe, a block set in
        the provider's UI): recorded as such, with what was seen, and never lifted (LESSONS 11)."""
        s.flush()
        explained = self._explained_blocks(s.connection(), [c.id for c, _ in blocked if c.id is not None])
        for contact, m in blocked:
            if contact.id in explained or consent_blockers(contact):
                continue
            reason = (
                f"blocked account-wide at {self.target.key} with no per-list unsubscribe on record; "
                "seen when reading the provider's list"
            )
            self._apply(s, self._pulled_event(m, EventKind.UNSUBSCRIBED_ALL, None, reason))

    def _explained_blocks(self, conn: Any, ids: list[int]) -> set[int]:
        """The contacts among ``ids`` whose account-wide block at this provider the master base
        explains: a per-list opt-out that this provider reported (by webhook or on a list read;
        ``events.apply_event`` records it with source ``events.reported_by(provider)``) from a list with a
        target there, newer than syncd's last lift. An opt-out the contact gave syncd itself (its
        unsubscribe link, the preference centre) never blocked anyone at the provider."""
        if not ids or not self.traits.blocks_account_wide:
            return set()
        provider = self.target.provider
        lists = [
            n
            for n, lst in self.config.lists.items()
            if any(t.target.provider == provider for t in lst.targets)
        ]
        consent, audit = Consent.__table__, AuditLog.__table__
        opted_out = dict(
            conn.execute(
                sa.select(consent.c.contact_id, sa.func.max(consent.c.at))
                .where(
                    consent.c.action == ConsentAction.OPT_OUT,
                    consent.c.source == reported_by(provider),
                    consent.c.list_name.in_(lists),
                    consent.c.contact_id.in_(ids),
                )
                .group_by(consent.c.contact_id)
            ).all()
        )
        if not opted_out:
            return set()
        lifted: dict[int, datetime] = {}
        for row in conn.execute(
            sa.select(audit.c.contact_id, audit.c.at, audit.c.detail).where(
                audit.c.action == BLOCK_LIFTED, audit.c.contact_id.in_(list(opted_out))
            )
        ):
            if (row.detail or {}).get("provider") == provider:
                lifted[row.contact_id] = max(row.at, lifted.get(row.contact_id, row.at))
        return {cid for cid, at in opted_out.items() if block_explained(at, lifted.get(cid))}

    # --- plan ----------------------------------------------------------------------------------

    def _state_filter(self) -> tuple[Any, ...]:
        return (TargetState.list_name == self.list_name, TargetState.target_key == self.target.key)

    def _chunks(self, since: datetime | None, only: list[str] | None = None) -> Iterator[list[Any]]:
        """Contacts that concern this list on this target, by id, CHUNK at a time (plain rows:
        building ORM objects for every contact of a large base costs more than the plan).

        With ``since``, only those touched since then: their record, any of their memberships (an
        exclusive list may have changed), or what was just read of them from this target."""
        contact = Contact.__table__
        if only is not None:
            ids: Any = sa.select(contact.c.id.label("id")).where(contact.c.email.in_(only)).subquery()
        elif since is not None:
            ids = sa.union(
                sa.select(contact.c.id.label("id")).where(contact.c.touched_at > since),
                sa.select(Membership.contact_id).where(Membership.touched_at > since),
                sa.select(TargetState.contact_id).where(*self._state_filter(), TargetState.pulled_at > since),
            ).subquery()
        elif self.list_cfg.auto_enroll:
            ids = None
        else:
            ids = sa.union(
                sa.select(Membership.contact_id.label("id")).where(Membership.list_name == self.list_name),
                sa.select(TargetState.contact_id).where(*self._state_filter()),
            ).subquery()
        last = 0
        while True:
            with self.engine.connect() as conn:
                if ids is None:
                    query = sa.select(contact).where(contact.c.id > last)
                else:
                    page = sa.select(ids.c.id).where(ids.c.id > last).order_by(ids.c.id).limit(CHUNK)
                    chunk_ids = [r.id for r in conn.execute(page)]
                    if not chunk_ids:
                        return
                    query = sa.select(contact).where(contact.c.id.in_(chunk_ids))
                rows = conn.execute(query.order_by(contact.c.id).limit(CHUNK)).all()
            if not rows:
                return
            yield rows
            last = rows[-1].id

    def _plans(
        self, since: datetime | None, only: list[str] | None = None
    ) -> Iterator[tuple[Plan, dict[int, SyncedState | None]]]:
        m_cols = (Membership.contact_id, Membership.list_name, Membership.status, Membership.since)
        t_cols = (
            TargetState.contact_id,
            TargetState.pushed_hash,
            TargetState.remote_status,
            TargetState.remote_changed_at,
        )
        scope = self.config.unsubscribe.scope
        for contacts in self._chunks(since, only):
            ids = [c.id for c in contacts]
            with self.engine.connect() as conn:
                memberships: dict[int, dict[str, Any]] = {}
                for m in conn.execute(sa.select(*m_cols).where(Membership.contact_id.in_(ids))):
                    memberships.setdefault(m.contact_id, {})[m.list_name] = m
                states = {
                    t.contact_id: SyncedState.of(t)
                    for t in conn.execute(
                        sa.select(*t_cols).where(*self._state_filter(), TargetState.contact_id.in_(ids))
                    )
                }
                confirmed = self._confirmations(conn, ids)
                held = [
                    cid
                    for cid, st in states.items()
                    if st and st.remote_status in (RemoteStatus.BLOCKED, RemoteStatus.UNSUBSCRIBED)
                ]
                explained = self._explained_blocks(conn, held)
            rows = []
            for c in contacts:
                facts = ContactFacts.of(c)
                mine = memberships.get(c.id, {})
                statuses = {name: m.status for name, m in mine.items()}
                own = mine.get(self.list_name)
                status, joined = (own.status, own.since) if own else (None, None)
                elig = eligibility(self.list_name, self.list_cfg, facts, statuses, self.config.lists)
                wanted = desired_member(
                    self.list_name,
                    self.list_cfg,
                    facts,
                    status,
                    elig,
                    since=joined,
                    proven=not lacks_proof(self.list_cfg, status, joined, confirmed.get(c.id)),
                )
                synced = states.get(c.id)
                rows.append((c.id, wanted, synced))
                if lifts_block(
                    facts, wanted, synced, scope=scope, traits=self.traits, explained=c.id in explained
                ):
                    self.lifts.append((c.id, c.email))
            yield (
                plan_target(
                    self.target,
                    self.list_cfg,
                    rows,
                    scope=scope,
                    traits=self.traits,
                    explained_blocks=explained,
                ),
                states,
            )

    def _confirmations(self, conn: Any, ids: list[int]) -> dict[int, datetime]:
        """Contact id -> time of its latest double opt-in confirmation for this list (a
        double-opt-in list only: the proof ``segments.lacks_proof`` asks for)."""
        if self.list_cfg.consent != "double_opt_in":
            return {}
        consent = Consent.__table__
        return dict(
            conn.execute(
                sa.select(consent.c.contact_id, sa.func.max(consent.c.at))
                .where(
                    consent.c.action == ConsentAction.DOI_CONFIRMED,
                    consent.c.list_name == self.list_name,
                    consent.c.contact_id.in_(ids),
                )
                .group_by(consent.c.contact_id)
            ).all()
        )

    # --- apply ---------------------------------------------------------------------------------

    def _take(self, plan: Plan, states: dict[int, SyncedState | None]) -> None:
        for kind, n in plan.counts().items():
            self.report.planned[kind] = self.report.planned.get(kind, 0) + n
        for kind in Plan.KINDS:
            samples = self.report.samples.setdefault(kind, [])
            for item in getattr(plan, kind)[: SAMPLE - len(samples)]:
                samples.append((item.email, item.reason))
        if self.dry_run:
            return
        self._apply_reconfirms(plan.reconfirms)
        for kind in self.buffer:
            self.buffer[kind].extend((item, states.get(item.contact_id)) for item in getattr(plan, kind))
        self._flush()

    def _flush(self, force: bool = False) -> None:
        if self.dry_run:
            return
        pushes = self.buffer["adds"] + self.buffer["updates"]
        if pushes and (force or len(pushes) >= self.batch):
            self._apply_upserts()
        if self.buffer["removals"] and (force or len(self.buffer["removals"]) >= self.batch):
            self._apply_removals()
        if self.buffer["unblocks"] and (force or len(self.buffer["unblocks"]) >= self.batch):
            self._apply_unblocks()
        if force and self.erased:
            result = self.connector.remove(self.target, self.erased)
            self.report.write_calls += result.calls
            self.report.applied["erased"] = len(result.done)
            self.erased = []
        if force and self.lifts:
            for _, email in self.lifts:
                self.connector.set_blocked(email, False)
                self.report.write_calls += 1
            self._record_lifts([cid for cid, _ in self.lifts])
            self.report.applied["unblocks"] = self.report.applied.get("unblocks", 0) + len(self.lifts)
            self.lifts = []

    def _apply_upserts(self) -> None:
        items = [(kind, item, before) for kind in ("adds", "updates") for item, before in self.buffer[kind]]
        self.buffer["adds"], self.buffer["updates"] = [], []
        result = self.connector.upsert(self.target, [item.push for _, item, _ in items])
        self.report.write_calls += result.calls
        done = set(result.done)
        accepted = [(kind, item, before) for kind, item, before in items if item.email in done]
        self._store(accepted)
        for kind, _, _ in accepted:
            self.report.applied[kind] = self.report.applied.get(kind, 0) + 1
        for r in result.rejected:
            self.report.rejected.append((r.email, r.reason))
            log.warning(
                "sync.member_rejected",
                list=self.list_name,
                target=self.target.key,
                email=r.email,
                reason=r.reason,
                code=r.code,
            )
        # A refusal, or a confirming read, that shows the member's state (an opt-out syncd had
        # missed: a Mailchimp compliance state, a Brevo block) changes the master base now; the list's targets plan those members again before the run ends (sync_list).
        shown = [r.member for r in result.rejected if r.member is not None] + result.seen
        self._reconcile(shown)
        self.revealed.update(m.email for m in shown)
        self.progress(f"{self.list_name} → {self.target.key}: writing", len(items))

    def _apply_removals(self) -> None:
        items = self.buffer["removals"]
        self.buffer["removals"] = []
        result = self.connector.remove(self.target, [item.email for item, _ in items])
        self.report.write_calls += result.calls
        done = set(result.done)
        self._store([("removals", item, before) for item, before in items if item.email in done])
        self.report.applied["removals"] = self.report.applied.get("removals", 0) + len(done)
        for r in result.rejected:
            self.report.rejected.append((r.email, r.reason))

    def _apply_unblocks(self) -> None:
        items = self.buffer["unblocks"]
        self.buffer["unblocks"] = []
        done = []
        for item, before in items:
            self.connector.set_blocked(item.email, False)
            self.report.write_calls += 1
            done.append(("unblocks", item, before))
        self._store(done)
        self._record_lifts([item.contact_id for item, _ in items])
        self.report.applied["unblocks"] = self.report.applied.get("unblocks", 0) + len(done)

    def _record_lifts(self, contact_ids: list[int]) -> None:
        """A lift answers every per-list opt-out before it: a later block needs a new reason."""
        if not contact_ids:
            return
        now = utcnow()
        detail = {"provider": self.target.provider, "target": self.target.key}
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(AuditLog.__table__),
                [
                    {
                        "at": now,
                        "actor": f"sync:{self.list_name}",
                        "action": BLOCK_LIFTED,
                        "contact_id": cid,
                        "detail": detail,
                    }
                    for cid in contact_ids
                ],
            )

    def _apply_reconfirms(self, items: list[PlanItem]) -> None:
        """Members without the proof the list now needs go back to pending, in one transaction;
        the plan takes them off the targets, a confirmation mail brings them back."""
        if not items:
            return
        now = utcnow()
        done = 0
        with session_scope(self.engine) as s:
            for item in items:
                contact = s.get(Contact, item.contact_id)
                if contact is None:
                    continue
                moved = require_confirmation(
                    s, contact, self.list_name, reason=item.reason, source=f"sync:{self.list_name}", at=now
                )
                done += moved is not None
        self.report.applied["reconfirms"] = self.report.applied.get("reconfirms", 0) + done
        log.info("sync.reconfirms", list=self.list_name, target=self.target.key, count=done)

    def _store(self, accepted: list[tuple[str, PlanItem, SyncedState | None]]) -> None:
        """What the provider accepted becomes TargetState, in one transaction per batch.

        Plain statements, CHUNK rows at a time: a batch can hold tens of thousands of members,
        too many to keep as ORM objects in one session."""
        if not accepted:
            return
        now = utcnow()
        table = TargetState.__table__
        update = (
            sa.update(table)
            .where(table.c.id == sa.bindparam("k_id"))
            .values(pushed_hash=sa.bindparam("v_hash"), remote_status=sa.bindparam("v_status"), pushed_at=now)
        )
        with self.engine.begin() as conn:
            for start in range(0, len(accepted), CHUNK):
                part = accepted[start : start + CHUNK]
                existing = dict(
                    conn.execute(
                        sa.select(table.c.contact_id, table.c.id).where(
                            *self._state_filter(), table.c.contact_id.in_([i.contact_id for _, i, _ in part])
                        )
                    ).all()
                )
                gone, changed, new = [], [], {}
                for kind, item, before in part:
                    after = state_after(item, kind, before)
                    row_id = existing.get(item.contact_id)
                    if after is None:
                        if row_id is not None:
                            gone.append(row_id)
                        continue
                    status = str(after.remote_status) if after.remote_status else None
                    if row_id is None:
                        new[item.contact_id] = {
                            "contact_id": item.contact_id,
                            "list_name": self.list_name,
                            "target_key": self.target.key,
                            "pushed_hash": after.pushed_hash,
                            "remote_status": status,
                            "pushed_at": now,
                        }
                    else:
                        changed.append({"k_id": row_id, "v_hash": after.pushed_hash, "v_status": status})
                if gone:
                    conn.execute(sa.delete(table).where(table.c.id.in_(gone)))
                if changed:
                    conn.execute(update, changed)
                if new:
                    conn.execute(sa.insert(table), list(new.values()))

    # --- the run's record ----------------------------------------------------------------------

    def _start_run(self) -> int:
        """The run's record; the list's lock is held, so a record of this list and target still
        ``running`` belongs to a run that was killed: it is marked interrupted."""
        with session_scope(self.engine) as s:
            now = utcnow()
            stale = s.connection().execute(
                sa.update(SyncRun)
                .where(
                    SyncRun.list_name == self.list_name,  # type: ignore[arg-type]
                    SyncRun.target_key == self.target.key,  # type: ignore[arg-type]
                    SyncRun.status == "running",  # type: ignore[arg-type]
                )
                .values(status="interrupted", finished_at=now, error=INTERRUPTED)
            )
            if stale.rowcount:
                log.warning(
                    "sync.interrupted_runs", list=self.list_name, target=self.target.key, runs=stale.rowcount
                )
            run = SyncRun(list_name=self.list_name, target_key=self.target.key, started_at=now)
            s.add(run)
            s.flush()
            assert run.id is not None
            return run.id

    def _finish_run(self, run_id: int) -> None:
        r = self.report
        with session_scope(self.engine) as s:
            run = s.get(SyncRun, run_id)
            assert run is not None
            run.finished_at = utcnow()
            run.status = "ok" if r.ok else "failed"
            run.error = r.failed
            run.counts = {
                "pulled": r.pulled,
                "created": r.created,
                "reconciled": r.reconciled,
                "planned": r.planned,
                "applied": r.applied,
                "rejected": len(r.rejected),
                "write_calls": r.write_calls,
            }
            s.add(run)


class _Stopped(Exception):
    pass


INTERRUPTED = (
    "interrupted: the process stopped before this run finished (killed, crashed or the machine "
    "went down); the next run of the list picked up its work"
)


def recent_runs(engine: Engine, list_name: str | None = None, limit: int = 20) -> list[SyncRun]:
    """The latest runs' records, newest first (``syncd runs``)."""
    query = select(SyncRun).order_by(SyncRun.id.desc()).limit(limit)  # type: ignore[union-attr]
    if list_name:
        query = query.where(SyncRun.list_name == list_name)
    with Session(engine) as s:
        return list(s.exec(query))
