"""What a sync stores as it goes: TargetState per accepted batch, the cursors, the run's record.

Every statement here concerns one list on one of its targets (``ListTarget``), and is written
as plain SQL where a batch can hold tens of thousands of rows.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from connectors.contract import Target
from syncd.config import Config, ListConfig
from syncd.core.plan import PlanItem, SyncedState, state_after
from syncd.db import Growth, session_scope
from syncd.inbound.apply import reported_by
from syncd.log import get_logger
from syncd.models import AuditLog, Consent, ConsentAction, Contact, SyncCursor, SyncRun, TargetState, utcnow
from syncd.providers import sharing_record
from syncd.sync.report import TargetReport

log = get_logger(__name__)

CHUNK = 1000  # rows read or written at a time
# The columns a plan finds a target's states by (``select``): analysed as a target's states grow,
# from this many on (a plan comparing the stamps of 8,000 candidates on a target believed empty
# took 9.9 s: each contact's state found by scanning the target's).
STATE_LOOKUPS = ("target_key", "list_name", "contact_id", "pulled_at")
STATES_FLOOR = 1000
BLOCK_LIFTED = "contact.block_lifted"  # AuditLog action: a lift answers the per-list opt-outs before it
INTERRUPTED = (
    "interrupted: the process stopped before this run finished (killed, crashed or the machine "
    "went down); the next run of the list picked up its work"
)

# A plan item the provider accepted: (kind, item, the TargetState it was planned against).
Accepted = tuple[str, PlanItem, SyncedState | None]


@dataclass(frozen=True)
class ListTarget:
    """One list on one of its targets: what every read and write of a run is about."""

    engine: Engine
    config: Config
    list_name: str
    list_cfg: ListConfig
    target: Target

    def state_filter(self) -> tuple[Any, ...]:
        return (TargetState.list_name == self.list_name, TargetState.target_key == self.target.key)

    def cursor_query(self) -> Any:
        return select(SyncCursor).where(
            SyncCursor.list_name == self.list_name, SyncCursor.target_key == self.target.key
        )

    @property
    def actor(self) -> str:
        return f"sync:{self.list_name}"

    def added_states(self, rows: int) -> None:
        """``rows`` new TargetState rows are committed: the planner's statistics of the table are
        refreshed once this target's states have doubled (PostgreSQL). A first sync of a large
        list fills them from none, and a planner that believes the target empty looks each chunk's
        states up by scanning the whole target (every chunk slower than the last) instead of by
        contact: the table's size does not help, its statistics know no row of a new target."""
        if rows:
            self._growth.add({"targetstate": rows})
            self._growth.refresh()

    @functools.cached_property
    def _growth(self) -> Growth:
        return Growth(
            self.engine,
            {"targetstate": STATE_LOOKUPS},
            sizes=lambda: {"targetstate": self._states()},
            floor=STATES_FLOOR,
        )

    def _states(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.count()).select_from(TargetState).where(*self.state_filter())
            ).scalar_one()


# --- cursors ------------------------------------------------------------------------------------


def read_cursor(lt: ListTarget) -> SyncCursor | None:
    with Session(lt.engine) as s:
        return s.exec(lt.cursor_query()).first()


def earliest_cursor_among(lt: ListTarget, keys: set[str], but: set[tuple[str, str]]) -> str | None:
    """The earliest cursor stored for the targets ``keys`` (of any list), leaving out the
    (list, target) pairs ``but``; None when none of them has been read."""
    if not keys:
        return None
    table = SyncCursor.__table__
    query = sa.select(table.c.list_name, table.c.target_key, table.c.cursor).where(
        table.c.target_key.in_(sorted(keys)), table.c.cursor.is_not(None)
    )
    with lt.engine.connect() as conn:
        cursors = [r.cursor for r in conn.execute(query) if (r.list_name, r.target_key) not in but]
    return min(cursors, default=None)


def save_cursor(lt: ListTarget, cursor: str) -> None:
    """The provider's cursor after a complete read: the next read asks only for what changed."""
    with session_scope(lt.engine) as s:
        row = s.exec(lt.cursor_query()).first() or SyncCursor(
            list_name=lt.list_name, target_key=lt.target.key
        )
        row.cursor, row.updated_at = cursor, utcnow()
        s.add(row)


def pass_cursor(lt: ListTarget, was: str, cursor: str) -> bool:
    """Another list's read showed nothing of this target up to ``cursor``: the cursor moves there,
    if it is still ``was`` (the target's own run may have stored another since) and ``cursor`` is
    later. One statement: no lock of the target's list is needed. Whether it moved."""
    if cursor <= was:
        return False
    table = SyncCursor.__table__
    with lt.engine.begin() as conn:
        moved = conn.execute(
            sa.update(table)
            .where(
                table.c.list_name == lt.list_name,
                table.c.target_key == lt.target.key,
                table.c.cursor == was,
            )
            .values(cursor=cursor, updated_at=utcnow())
        ).rowcount
    return bool(moved)


def rules_hash(config: Config) -> str:
    """Everything a plan depends on besides the base: the lists' rules and the unsubscribe scope."""
    doc = {
        "lists": {n: lst.model_dump(mode="json") for n, lst in config.lists.items()},
        "scope": config.unsubscribe.scope,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def remember_plan(lt: ListTarget, started: datetime, full: bool, snapshot: str | None = None) -> None:
    """A complete plan's start (its time, and on PostgreSQL its ``snapshot``): the next run plans
    only what was written since (``select``)."""
    with session_scope(lt.engine) as s:
        row = s.exec(lt.cursor_query()).first() or SyncCursor(
            list_name=lt.list_name, target_key=lt.target.key
        )
        row.planned_at, row.rules_hash = started, rules_hash(lt.config)
        row.planned_snapshot = snapshot
        if full:
            row.full_plan_at = started
        s.add(row)


# --- TargetState and lifts -----------------------------------------------------------------------


def store_accepted(
    lt: ListTarget, accepted: list[Accepted], stamps: dict[int, str] | None = None
) -> dict[int, str]:
    """What the provider accepted becomes TargetState, in one transaction per batch, with the
    ``stamps`` of the plan that asked for it (``stamps.stamp``).

    A contact whose address changed while it was pushed (another list's run followed a change of
    address between the writer's last check and the provider's answer) is held by the target
    under the address pushed: remembered as its former one (``remote_email``), as the change of
    address does for the states it finds, so that a read finds the member to be that contact and
    the next push renames it. Returns those contacts, with their address now, to plan again.

    Plain statements, CHUNK rows at a time: a batch can hold tens of thousands of members,
    too many to keep as ORM objects in one session."""
    if not accepted:
        return {}
    stamps = stamps or {}
    now = utcnow()
    table = TargetState.__table__
    update = (
        sa.update(table)
        .where(table.c.id == sa.bindparam("k_id"))
        .values(
            pushed_hash=sa.bindparam("v_hash"),
            remote_status=sa.bindparam("v_status"),
            plan_stamp=sa.bindparam("v_stamp"),
            pushed_at=now,
        )
    )
    added = 0
    moved: dict[int, str] = {}
    contact = Contact.__table__
    with lt.engine.begin() as conn:
        for start in range(0, len(accepted), CHUNK):
            part = accepted[start : start + CHUNK]
            # Each contact's address now, and its state on the target if it has one.
            rows = conn.execute(
                sa.select(contact.c.id.label("contact_id"), contact.c.email, table.c.id, table.c.remote_email)
                .select_from(
                    contact.outerjoin(table, sa.and_(table.c.contact_id == contact.c.id, *lt.state_filter()))
                )
                .where(contact.c.id.in_([i.contact_id for _, i, _ in part]))
            ).all()
            existing = {r.contact_id: r.id for r in rows if r.id is not None}
            # A member taken off while the target still holds it under a former address keeps its
            # row (emptied): the address stays known as this contact's, should it come back.
            former = {r.contact_id for r in rows if r.remote_email}
            address = {r.contact_id: r.email for r in rows}
            gone, changed, new, carried = [], [], {}, []
            for kind, item, before in part:
                after = state_after(item, kind, before)
                row_id = existing.get(item.contact_id)
                if after is None:
                    if row_id is not None and item.contact_id in former:
                        emptied = {"k_id": row_id, "v_hash": None, "v_status": None}
                        changed.append({**emptied, "v_stamp": stamps.get(item.contact_id)})
                    elif row_id is not None:
                        gone.append(row_id)
                    continue
                # Pushed under an address the contact has left since: the target holds it so.
                now_at = address.get(item.contact_id)
                held = item.email if now_at is not None and now_at != item.email else None
                if held is not None:
                    moved[item.contact_id] = now_at
                status = str(after.remote_status) if after.remote_status else None
                if row_id is None:
                    new[item.contact_id] = {
                        "contact_id": item.contact_id,
                        "list_name": lt.list_name,
                        "target_key": lt.target.key,
                        "pushed_hash": after.pushed_hash,
                        "remote_status": status,
                        "plan_stamp": stamps.get(item.contact_id),
                        "pushed_at": now,
                        "remote_email": held,
                    }
                    continue
                changed.append(
                    {
                        "k_id": row_id,
                        "v_hash": after.pushed_hash,
                        "v_status": status,
                        "v_stamp": stamps.get(item.contact_id),
                    }
                )
                if held is not None and item.contact_id not in former:
                    carried.append({"k_id": row_id, "v_email": held})
            if gone:
                conn.execute(sa.delete(table).where(table.c.id.in_(gone)))
            if changed:
                conn.execute(update, changed)
            if carried:
                conn.execute(
                    sa.update(table)
                    .where(table.c.id == sa.bindparam("k_id"))
                    .values(remote_email=sa.bindparam("v_email")),
                    carried,
                )
            if new:
                conn.execute(sa.insert(table), list(new.values()))
                added += len(new)
    lt.added_states(added)
    return moved


def store_stamps(lt: ListTarget, stamps: dict[int, str]) -> None:
    """Contacts whose plan asked nothing of the target: the stamp of what the plan read, so that
    an incremental plan skips them until one of those rows changes."""
    if not stamps:
        return
    table = TargetState.__table__
    update = (
        sa.update(table)
        .where(*lt.state_filter(), table.c.contact_id == sa.bindparam("k_contact"))
        .values(plan_stamp=sa.bindparam("v_stamp"))
    )
    with lt.engine.begin() as conn:
        conn.execute(update, [{"k_contact": cid, "v_stamp": st} for cid, st in stamps.items()])


def forget_former_addresses(lt: ListTarget, contact_ids: list[int]) -> None:
    """The provider record of these contacts now has their current address (renamed, or found
    missing or taken): every target that shares the record stops remembering the former one."""
    if not contact_ids:
        return
    keys = sharing_record(lt.config, lt.target.provider, lt.target.list_id) | {lt.target.key}
    table = TargetState.__table__
    with lt.engine.begin() as conn:
        conn.execute(
            sa.update(table)
            .where(table.c.contact_id.in_(contact_ids), table.c.target_key.in_(keys))
            .values(remote_email=None)
        )


def held_elsewhere(lt: ListTarget, contact_ids: set[int]) -> dict[int, str]:
    """The former address under which another target sharing this one's provider record (another
    list of a Brevo account, another tag of the audience) still holds each of these contacts."""
    keys = sharing_record(lt.config, lt.target.provider, lt.target.list_id) - {lt.target.key}
    if not keys or not contact_ids:
        return {}
    table = TargetState.__table__
    query = sa.select(table.c.contact_id, table.c.remote_email).where(
        table.c.target_key.in_(sorted(keys)), table.c.remote_email.is_not(None)
    )
    with lt.engine.connect() as conn:
        return {r.contact_id: r.remote_email for r in conn.execute(query) if r.contact_id in contact_ids}


def record_ids(lt: ListTarget, contact_ids: list[int]) -> dict[int, str]:
    """The provider's id of each contact's record, as the last read of a target sharing it showed:
    this target's own where it has one (the record it holds), else another's."""
    keys = sharing_record(lt.config, lt.target.provider, lt.target.list_id) | {lt.target.key}
    if not contact_ids:
        return {}
    table = TargetState.__table__
    own = sa.case((table.c.target_key == lt.target.key, 1), else_=0)
    query = (
        sa.select(table.c.contact_id, table.c.remote_id)
        .where(
            table.c.contact_id.in_(contact_ids),
            table.c.target_key.in_(sorted(keys)),
            table.c.remote_id.is_not(None),
        )
        .order_by(own, table.c.target_key)  # the last row of a contact wins: its own target's
    )
    with lt.engine.connect() as conn:
        return {r.contact_id: r.remote_id for r in conn.execute(query)}


def clicks_heard(
    lt: ListTarget, conn: Any, contact_ids: list[int]
) -> dict[int, tuple[set[str], datetime | None]]:
    """What the master base heard of each contact that answers an unsubscribe click at this
    target's provider: the campaigns of the per-list opt-outs the provider reported by webhook
    (their consent's evidence names the campaign), and the contact's latest opt-in."""
    consent = Consent.__table__
    heard: dict[int, tuple[set[str], datetime | None]] = {cid: (set(), None) for cid in contact_ids}
    rows = conn.execute(
        sa.select(consent.c.contact_id, consent.c.action, consent.c.at, consent.c.evidence).where(
            consent.c.contact_id.in_(contact_ids),
            sa.or_(
                sa.and_(
                    consent.c.action == ConsentAction.OPT_OUT,
                    consent.c.source == reported_by(lt.target.provider),
                ),
                consent.c.action.in_([ConsentAction.OPT_IN, ConsentAction.DOI_CONFIRMED]),
            ),
        )
    )
    for row in rows:
        campaigns, opted_in = heard[row.contact_id]
        if row.action == ConsentAction.OPT_OUT:
            if (row.evidence or {}).get("campaign"):
                campaigns.add(str(row.evidence["campaign"]))
        elif opted_in is None or row.at > opted_in:
            heard[row.contact_id] = (campaigns, row.at)
    return heard


def last_lifts(lt: ListTarget, conn: Any, contact_ids: list[int]) -> dict[int, datetime]:
    """When syncd last lifted a block of each contact at this target's provider (the audit log)."""
    audit = AuditLog.__table__
    lifted: dict[int, datetime] = {}
    for row in conn.execute(
        sa.select(audit.c.contact_id, audit.c.at, audit.c.detail).where(
            audit.c.action == BLOCK_LIFTED, audit.c.contact_id.in_(contact_ids)
        )
    ):
        if (row.detail or {}).get("provider") == lt.target.provider:
            lifted[row.contact_id] = max(row.at, lifted.get(row.contact_id, row.at))
    return lifted


def record_lifts(lt: ListTarget, contact_ids: list[int]) -> None:
    """A lift answers every per-list opt-out before it: a later block needs a new reason."""
    if not contact_ids:
        return
    now = utcnow()
    detail = {"provider": lt.target.provider, "target": lt.target.key}
    with lt.engine.begin() as conn:
        conn.execute(
            sa.insert(AuditLog.__table__),
            [
                {"at": now, "actor": lt.actor, "action": BLOCK_LIFTED, "contact_id": cid, "detail": detail}
                for cid in contact_ids
            ],
        )


# --- the run's record ----------------------------------------------------------------------------


def start_run(lt: ListTarget) -> int:
    """The run's record; the list's lock is held, so a record of this list and target still
    ``running`` belongs to a run that was killed: it is marked interrupted."""
    with session_scope(lt.engine) as s:
        now = utcnow()
        stale = s.connection().execute(
            sa.update(SyncRun)
            .where(
                SyncRun.list_name == lt.list_name,  # type: ignore[arg-type]
                SyncRun.target_key == lt.target.key,  # type: ignore[arg-type]
                SyncRun.status == "running",  # type: ignore[arg-type]
            )
            .values(status="interrupted", finished_at=now, error=INTERRUPTED)
        )
        if stale.rowcount:
            log.warning("sync.interrupted_runs", list=lt.list_name, target=lt.target.key, runs=stale.rowcount)
        run = SyncRun(list_name=lt.list_name, target_key=lt.target.key, started_at=now)
        s.add(run)
        s.flush()
        assert run.id is not None
        return run.id


def finish_run(engine: Engine, run_id: int, r: TargetReport) -> None:
    with session_scope(engine) as s:
        run = s.get(SyncRun, run_id)
        assert run is not None
        run.finished_at = utcnow()
        run.status = "ok" if r.ok else "failed"
        run.error = r.failed
        run.counts = {
            "pulled": r.pulled,
            "read_after_writes": r.read_after_writes,
            "read_elsewhere": r.read_elsewhere,
            "created": r.created,
            "reconciled": r.reconciled,
            "planned": r.planned,
            "applied": r.applied,
            "rejected": len(r.rejected),
            "write_calls": r.write_calls,
            "contacts_planned": r.contacts_planned,
            "unchanged": r.unchanged,
        }
        s.add(run)


def recent_runs(engine: Engine, list_name: str | None = None, limit: int = 20) -> list[SyncRun]:
    """The latest runs' records, newest first (``syncd runs``)."""
    query = select(SyncRun).order_by(SyncRun.id.desc()).limit(limit)  # type: ignore[union-attr]
    if list_name:
        query = query.where(SyncRun.list_name == list_name)
    with Session(engine) as s:
        return list(s.exec(query))
