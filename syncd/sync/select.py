"""The planning queries: which contacts a run plans, what it reads of them, and their plans.

A run plans every contact of the list (a full plan) or only those touched since the previous
plan (incremental): their ids are read once per plan, then CHUNK contacts at a time, each chunk
read in one go and handed to the pure rules (``syncd.core``): the result is a ``ChunkPlan``
value, the writer's input.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from connectors.contract import ProviderTraits, RemoteStatus
from syncd import db
from syncd.core.plan import Plan, SyncedState, block_explained, desired_member, lifts_block, plan_target
from syncd.core.segments import ContactFacts, eligibility, lacks_proof
from syncd.db import without_jit
from syncd.inbound.apply import reported_by
from syncd.models import Consent, ConsentAction, Contact, Membership, TargetState
from syncd.sync.stamps import memberships_among, memberships_of, stamp
from syncd.sync.state import CHUNK, ListTarget, last_lifts, read_cursor, rules_hash

FULL_PLAN_EVERY = timedelta(hours=24)
# SQLite: incremental plans look back this far before the previous plan's start, so that a write
# whose transaction was still open when that plan read the base is planned too. PostgreSQL needs no
# margin: it tells the transactions the previous plan could not see (``Since.snapshot``).
PLAN_MARGIN = timedelta(minutes=2)


@dataclass(frozen=True)
class Since:
    """Where an incremental plan starts: the rows written after the previous plan began.

    ``at``: the previous plan's start less PLAN_MARGIN, compared with the rows' ``touched_at``
    (SQLite, or when no snapshot of this server was stored). ``snapshot``: on PostgreSQL, the
    previous plan's snapshot (``db.snapshot_here``): a row whose writing transaction it could not
    see is selected,
    however long that transaction stayed open, and no row it could see is (the run right after a
    first push looks at none of the contacts imported before it)."""

    at: datetime
    snapshot: str | None = None

    @property
    def xmin(self) -> int:
        """The snapshot's oldest transaction still running then: every row written by an older one
        was visible to it."""
        assert self.snapshot is not None
        return int(db.pg_snapshot(self.snapshot).split(":", 1)[0])

    def written_after(self, xid: Any, at: Any) -> Any:
        """The row (its writer's ``xid``, its ``at`` time) was written after the previous plan
        began: an SQL condition."""
        if self.snapshot is None:
            return at > self.at
        visible = sa.func.pg_visible_in_snapshot(
            sa.cast(sa.cast(xid, sa.Text), _XID8),
            sa.cast(sa.literal(db.pg_snapshot(self.snapshot)), _SNAPSHOT),
        )
        return sa.and_(xid >= self.xmin, sa.not_(visible))


class _PostgresType(sa.types.UserDefinedType[Any]):
    """A PostgreSQL type named in a cast (``xid8``, ``pg_snapshot``)."""

    cache_ok = True

    def __init__(self, name: str):
        self.name = name

    def get_col_spec(self, **_kw: Any) -> str:
        return self.name


_XID8, _SNAPSHOT = _PostgresType("xid8"), _PostgresType("pg_snapshot")


@dataclass
class ChunkPlan:
    """One chunk's plan, with the TargetState each item was planned against (``states``) and the
    account-wide blocks to lift for contacts with no list state to keep (``lifts``).

    ``stamps``: what the plan read of each contact it planned (``stamp``), stored with the outcome;
    ``settled``: the held contacts whose plan asks nothing, with a stamp to store now;
    ``unchanged``: contacts an incremental plan skipped, their stamp unchanged (counted once, on an
    empty chunk of its own); ``contacts``: the contacts it planned."""

    plan: Plan
    states: dict[int, SyncedState | None]
    lifts: list[tuple[int, str]] = field(default_factory=list)  # (contact id, email)
    stamps: dict[int, str] = field(default_factory=dict)
    settled: dict[int, str] = field(default_factory=dict)
    unchanged: int = 0
    contacts: int = 0


def _with_stamp(lt: ListTarget) -> Any:
    """Contacts, whole, each with its ``stamp`` on this target (a query to narrow). PostgreSQL
    finds each state by its contact only once it has statistics of the states: the writer
    refreshes them as a push fills a target (``writer.STATE_LOOKUPS``)."""
    contact = Contact.__table__
    state = TargetState.__table__.alias("stamped_state")
    mine = sa.and_(
        state.c.contact_id == contact.c.id,
        state.c.list_name == lt.list_name,
        state.c.target_key == lt.target.key,
    )
    pulled, memberships = state.c.pulled_at, memberships_of(contact.c.id)
    return sa.select(contact, stamp(contact.c.touched_at, pulled, memberships).label("stamp")).select_from(
        contact.outerjoin(state, mine)
    )


def planning_window(lt: ListTarget, now: datetime) -> tuple[Since | None, bool]:
    """``(since, full)``: plan only contacts touched since ``since``, or everyone (``full``).

    A run plans everyone when it is the first, when the list rules changed, or when the last
    full plan is older than FULL_PLAN_EVERY (a safety net for changes made outside syncd)."""
    row = read_cursor(lt)
    if (
        row is None
        or row.planned_at is None
        or row.full_plan_at is None
        or row.rules_hash != rules_hash(lt.config)
        or now - row.full_plan_at > FULL_PLAN_EVERY
    ):
        return None, True
    return Since(row.planned_at - PLAN_MARGIN, db.snapshot_here(lt.engine, row.planned_snapshot)), False


@dataclass(frozen=True)
class Selection:
    """The ids a plan reads, in order, and how many contacts an incremental plan skipped."""

    ids: array[int]
    unchanged: int = 0


def chunks(
    lt: ListTarget,
    since: Since | None,
    only: list[str] | None = None,
    size: int = CHUNK,
    selection: Selection | None = None,
) -> Iterator[list[Any]]:
    """Contacts that concern this list on this target, by id, ``size`` at a time (plain rows:
    building ORM objects for every contact of a large base costs more than the plan), each with
    its ``stamp``.

    With ``since``, only those touched since then (their record, any of their memberships: an
    exclusive list may have changed, or what was just read of them from this target) and changed
    since their last stored plan. ``selection``: the ids, when the caller has read them."""
    contact = Contact.__table__
    ids = (selection or contact_ids(lt, since, only)).ids
    for start in range(0, len(ids), size):
        part = ids[start : start + size].tolist()
        # The range lets PostgreSQL use the primary key even before it has statistics of the
        # table (a fresh import): an IN list alone is then costed as a scan of the whole table.
        query = _with_stamp(lt).where(contact.c.id.between(part[0], part[-1]), contact.c.id.in_(part))
        with lt.engine.connect() as conn:
            rows = conn.execute(query.order_by(contact.c.id)).all()
        if rows:  # empty only if its contacts were erased since the ids were read
            yield rows


def concerns(lt: ListTarget, contact_id: Any) -> Any:
    """A condition on a contact id that holds for every contact the list's plan on this target may
    ask anything of: a member of the list, a contact the target holds, or, for an auto-enrolled
    list, a contact in the part of its segment SQL can tell (kind, stage, e-mail status: exact
    values). The rules themselves (``syncd.core``) decide within it. None: no narrowing.

    Anyone else is wanted off the list and is not on the target: its plan is empty, whatever
    changed. An auto-enrolled list of vendors thus reads its vendors, not the whole base."""
    member = sa.exists().where(Membership.contact_id == contact_id, Membership.list_name == lt.list_name)
    held = sa.exists().where(*lt.state_filter(), TargetState.contact_id == contact_id)
    if not lt.list_cfg.auto_enroll:
        return sa.or_(member, held)
    contact = Contact.__table__.alias("in_segment")  # ``contact_id`` may be the contact table's own
    exact = _in_segment(lt, contact)
    if not exact:
        return None
    in_segment = sa.exists().where(contact.c.id == contact_id, *exact)
    return sa.or_(member, held, in_segment)


def _in_segment(lt: ListTarget, contact: Any) -> list[Any]:
    """The conditions on ``contact`` (the contact table or an alias) that SQL can tell of the
    list's segment: exact values of kind, stage and e-mail status. Empty: SQL can tell nothing."""
    segment = lt.list_cfg.segment
    return [
        _one_of(getattr(contact.c, name), values, unset="valid" if name == "email_status" else None)
        for name in ("kind", "stage", "email_status")
        if segment is not None and (values := getattr(segment, name)) is not None
    ]


def _one_of(column: Any, values: list[str], unset: str | None) -> Any:
    """``column`` holds one of ``values``; an unset column reads as ``unset`` (as ``ContactFacts``
    reads an unset e-mail status as valid)."""
    if unset is not None and unset in values:
        return sa.or_(column.in_(values), column.is_(None))
    return column.in_(values)


def contact_ids(lt: ListTarget, since: Since | None, only: list[str] | None) -> Selection:
    """The ids ``chunks`` reads, in order, from one query per plan: a query per chunk would run
    the whole UNION again for each (a full plan would grow with the square of the base). Eight
    bytes a contact, read in pages.

    A full plan reads the list's members and the contacts this target holds; for an auto-enrolled
    list, also every contact in the part of its segment SQL can tell (``concerns``), or every
    contact when it can tell nothing."""
    contact = Contact.__table__
    if only is None and since is not None:
        return _changed_since(lt, since)
    auto_enroll = lt.list_cfg.auto_enroll
    exact = _in_segment(lt, contact) if auto_enroll else []
    if only is not None:
        query: Any = sa.select(contact.c.id).where(contact.c.email.in_(only))
    elif auto_enroll and not exact:
        query = sa.select(contact.c.id)
    else:
        sources = [
            sa.select(Membership.contact_id.label("id")).where(Membership.list_name == lt.list_name),
            sa.select(TargetState.contact_id).where(*lt.state_filter()),
        ]
        if exact:
            sources.append(sa.select(contact.c.id).where(*exact))
        query = sa.union(*sources)
    ids = array("q")
    with lt.engine.connect() as conn:
        result = conn.execution_options(yield_per=10 * CHUNK).execute(query.order_by(sa.column("id")))
        for part in result.scalars().partitions():
            ids.extend(part)
    return Selection(ids)


def _changed_since(lt: ListTarget, since: Since) -> Selection:
    """An incremental plan's ids: the contacts touched since ``since`` that concern the list on
    this target, less those whose stored ``stamp`` still holds (the database compares them: the
    run right after a push reads none of the contacts it pushed). Each row read says whether its
    contact changed and how many were selected in all; the first row is read even unchanged, for
    that count."""
    flagged = _flagged(lt, since)
    counted = sa.select(
        flagged.c.id,
        flagged.c.changed,
        sa.func.count().over().label("selected"),
        sa.func.row_number().over(order_by=flagged.c.id).label("nth"),
    ).subquery()
    query = sa.select(counted.c.id, counted.c.changed, counted.c.selected).where(
        sa.or_(counted.c.changed, counted.c.nth == 1)
    )
    ids, selected = array("q"), 0
    with lt.engine.connect() as conn:
        without_jit(conn)
        result = conn.execution_options(yield_per=10 * CHUNK).execute(query.order_by(counted.c.id))
        for part in result.partitions():
            ids.extend(row.id for row in part if row.changed)
            selected = part[0].selected
    return Selection(ids, selected - len(ids))


def _flagged(lt: ListTarget, since: Since) -> Any:
    """``(id, changed)`` of each contact touched since ``since`` that concerns the list on this
    target: ``changed`` unless its state here holds the stamp it has now."""
    contact = Contact.__table__
    touched = sa.union(
        sa.select(contact.c.id).where(since.written_after(contact.c.touched_xid, contact.c.touched_at)),
        sa.select(Membership.contact_id.label("id")).where(
            since.written_after(Membership.touched_xid, Membership.touched_at)
        ),
        sa.select(TargetState.contact_id).where(
            *lt.state_filter(), since.written_after(TargetState.pulled_xid, TargetState.pulled_at)
        ),
    ).subquery()
    concerned = sa.select(touched.c.id)
    # A contact the list's plan asks nothing of, however it changed, is not planned: an import
    # of a thousand prospects re-plans only the lists they joined or fall in.
    concern = concerns(lt, touched.c.id)
    if concern is not None:
        concerned = concerned.where(concern)
    candidate = concerned.cte("candidate")
    planned = TargetState.__table__.alias("planned")
    mine = sa.and_(
        planned.c.contact_id == candidate.c.id,
        planned.c.list_name == lt.list_name,
        planned.c.target_key == lt.target.key,
    )
    members = memberships_among(sa.select(candidate.c.id))
    now = stamp(contact.c.touched_at, planned.c.pulled_at, members.c.text)
    changed = sa.or_(planned.c.plan_stamp.is_(None), planned.c.plan_stamp != now)
    return (
        sa.select(candidate.c.id, changed.label("changed"))
        .select_from(
            candidate.join(contact, contact.c.id == candidate.c.id)
            .outerjoin(planned, mine)
            .outerjoin(members, members.c.contact_id == candidate.c.id)
        )
        .subquery()
    )


def plans(
    lt: ListTarget, traits: ProviderTraits, since: Since | None, only: list[str] | None = None
) -> Iterator[ChunkPlan]:
    """Each chunk's plan for this target (``since`` and ``only`` as for ``chunks``).

    An incremental plan skips the contacts whose ``stamp`` is the one stored with their state on
    this target: planned, and the outcome stored, since anything they depend on last changed (the
    run right after a push plans none of the contacts it pushed). A full plan plans everyone."""
    m_cols = (
        Membership.contact_id,
        Membership.list_name,
        Membership.status,
        Membership.since,
        Membership.touched_at,
    )
    t_cols = (
        TargetState.contact_id,
        TargetState.pushed_hash,
        TargetState.remote_status,
        TargetState.remote_changed_at,
        TargetState.remote_email,
        TargetState.pulled_at,
        TargetState.plan_stamp,
    )
    scope = lt.config.unsubscribe.scope
    selection = contact_ids(lt, since, only) if since is not None and only is None else None
    if selection is not None and selection.unchanged:
        yield ChunkPlan(Plan(lt.target), {}, unchanged=selection.unchanged)
    # Each chunk's stamps are read with its contacts, before their memberships and states: a
    # change since makes the stored stamp older, never newer.
    for contacts in chunks(lt, since, only, selection=selection):
        ids = [c.id for c in contacts]
        stamps = {c.id: c.stamp for c in contacts}
        with lt.engine.connect() as conn:
            memberships: dict[int, dict[str, Any]] = {}
            for m in conn.execute(sa.select(*m_cols).where(Membership.contact_id.in_(ids))):
                memberships.setdefault(m.contact_id, {})[m.list_name] = m
            rows_of = {
                t.contact_id: t
                for t in conn.execute(
                    sa.select(*t_cols).where(*lt.state_filter(), TargetState.contact_id.in_(ids))
                )
            }
            states = {cid: SyncedState.of(rows_of[cid]) for cid in ids if cid in rows_of}
            confirmed = confirmations(lt, conn, ids)
            held = [
                cid
                for cid, st in states.items()
                if st and st.remote_status in (RemoteStatus.BLOCKED, RemoteStatus.UNSUBSCRIBED)
            ]
            explained = explained_blocks(lt, traits, conn, held)
        rows = []
        lifts = []
        for c in contacts:
            facts = ContactFacts.of(c)
            mine = memberships.get(c.id, {})
            statuses = {name: m.status for name, m in mine.items()}
            own = mine.get(lt.list_name)
            status, joined = (own.status, own.since) if own else (None, None)
            elig = eligibility(lt.list_name, lt.list_cfg, facts, statuses, lt.config.lists)
            wanted = desired_member(
                lt.list_name,
                lt.list_cfg,
                facts,
                status,
                elig,
                since=joined,
                proven=not lacks_proof(lt.list_cfg, status, joined, confirmed.get(c.id)),
            )
            synced = states.get(c.id)
            rows.append((c.id, wanted, synced))
            if lifts_block(facts, wanted, synced, scope=scope, traits=traits, explained=c.id in explained):
                lifts.append((c.id, c.email))
        plan = plan_target(
            lt.target, lt.list_cfg, rows, scope=scope, traits=traits, explained_blocks=explained
        )
        asked = {item.contact_id for kind in Plan.KINDS for item in getattr(plan, kind)}
        asked.update(cid for cid, _ in lifts)
        settled = {
            cid: stamps[cid]
            for cid in ids
            if cid in rows_of and cid not in asked and rows_of[cid].plan_stamp != stamps[cid]
        }
        yield ChunkPlan(plan, states, lifts, stamps, settled, contacts=len(ids))


def confirmations(lt: ListTarget, conn: Any, ids: list[int]) -> dict[int, datetime]:
    """Contact id -> time of its latest double opt-in confirmation for this list (a
    double-opt-in list only: the proof ``segments.lacks_proof`` asks for)."""
    if lt.list_cfg.consent != "double_opt_in":
        return {}
    consent = Consent.__table__
    return dict(
        conn.execute(
            sa.select(consent.c.contact_id, sa.func.max(consent.c.at))
            .where(
                consent.c.action == ConsentAction.DOI_CONFIRMED,
                consent.c.list_name == lt.list_name,
                consent.c.contact_id.in_(ids),
            )
            .group_by(consent.c.contact_id)
        ).all()
    )


def explained_blocks(lt: ListTarget, traits: ProviderTraits, conn: Any, ids: list[int]) -> set[int]:
    """The contacts among ``ids`` whose account-wide block at this provider the master base
    explains: a per-list opt-out that this provider reported (by webhook or on a list read;
    ``inbound.apply.apply_event`` records it with source ``reported_by(provider)``) from a list
    with a target there, newer than syncd's last lift. An opt-out the contact gave syncd itself (its
    unsubscribe link, the preference centre) never blocked anyone at the provider."""
    if not ids or not traits.blocks_account_wide:
        return set()
    provider = lt.target.provider
    lists = [
        n for n, lst in lt.config.lists.items() if any(t.target.provider == provider for t in lst.targets)
    ]
    consent = Consent.__table__
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
    lifted = last_lifts(lt, conn, list(opted_out))
    return {cid for cid, at in opted_out.items() if block_explained(at, lifted.get(cid))}
