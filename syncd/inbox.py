"""The inbox processor: applies stored webhook deliveries to the master base.

Each row is claimed and applied in one transaction, each of its events in a SAVEPOINT of its
own; a failing event rolls back only its own changes and schedules a retry of what is left with
exponential back-off; after ``MAX_ATTEMPTS`` the row is ``dead``: kept,
visible with ``dead_letters`` and replayable with ``requeue``, never dropped. On PostgreSQL rows
are claimed with ``FOR UPDATE SKIP LOCKED``, so several replicas can drain side by side.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from connectors.contract import Connector, ProviderEvent
from syncd.config import Config
from syncd.inbox_purge import ERASED_BODY
from syncd.log import get_logger
from syncd.metrics import WEBHOOK_FAILED, WEBHOOK_PROCESSED
from syncd.models import InboxEvent, utcnow
from syncd.providers import Connectors

log = get_logger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=2)  # 30 s, 1 m, 2 m, … : the 8th attempt comes about 2 h after the first

Apply = Callable[[Session, ProviderEvent, Config], str]


def backoff(attempts: int) -> timedelta:
    return min(BACKOFF_BASE * (2 ** max(0, attempts - 1)), BACKOFF_CAP)


def drain(
    engine: Engine,
    config: Config,
    *,
    limit: int = 500,
    now: datetime | None = None,
    connectors: Mapping[str, Connector] | None = None,
    apply: Apply | None = None,
) -> Counter[str]:
    """Apply up to ``limit`` due inbox rows. Returns counts: done, retried, deferred, dead.

    Each event of a row applies in its own SAVEPOINT and, once applied, its key is kept on the
    row: one failing event never rolls back the others, and a retry applies only what is left.
    An event that cannot apply yet (``events.NOT_YET``) waits with the same back-off, and after
    ``MAX_ATTEMPTS`` settles for its outcome, noted on the row and logged.
    """
    if apply is None:
        from syncd.inbound.apply import apply_event as apply
    registry = Connectors.of(config, connectors)
    counts: Counter[str] = Counter()
    skip_locked = engine.dialect.name == "postgresql"
    for _ in range(limit):
        at = now or utcnow()
        with Session(engine, expire_on_commit=False) as session:
            row = _claim(session, at, skip_locked)
            if row is None:
                break
            row_id, provider, attempts = row.id, row.provider, row.attempts
            try:
                result = _apply_row(session, row, registry, apply, config, final=attempts + 1 >= MAX_ATTEMPTS)
                verdict = _settle(row, result, at)
                session.add(row)
                session.commit()
            except Exception as exc:  # noqa: BLE001 — any failure is recorded on the row, never lost
                session.rollback()
                counts[_record_failure(engine, row_id, attempts, exc, at)] += 1
                WEBHOOK_FAILED.labels(provider).inc()
                continue
        counts[verdict] += 1
        if result.failed:
            WEBHOOK_FAILED.labels(provider).inc()
        for outcome in result.outcomes:
            WEBHOOK_PROCESSED.labels(provider, outcome).inc()
    return counts


def _claim(session: Session, at: datetime, skip_locked: bool) -> InboxEvent | None:
    query = (
        select(InboxEvent)
        .where(InboxEvent.status == "new")
        .where(sa.or_(InboxEvent.next_attempt_at.is_(None), InboxEvent.next_attempt_at <= at))
        .order_by(InboxEvent.id)
        .limit(1)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    return session.exec(query).first()


@dataclass
class _RowResult:
    outcomes: list[str] = field(default_factory=list)  # of the events applied by this attempt
    failed: list[str] = field(default_factory=list)  # errors of the events that failed
    waiting: list[str] = field(default_factory=list)  # outcomes of the events that wait (NOT_YET)
    settled: list[str] = field(default_factory=list)  # NOT_YET outcomes accepted on the last attempt


def _apply_row(
    session: Session, row: InboxEvent, registry: Connectors, apply: Apply, config: Config, *, final: bool
) -> _RowResult:
    from syncd.inbound.apply import NOT_YET

    events = registry[row.provider].parse_webhook(row.payload.encode("utf-8"), row.content_type, {})
    applied = list(row.applied_keys or [])
    # A write before the first SAVEPOINT: pysqlite opens its transaction only before a write, and
    # a SAVEPOINT outside one would commit on release. The events and their keys commit together.
    row.attempts += 1
    session.add(row)
    session.flush()
    result = _RowResult()
    for event in sorted(events, key=lambda e: e.occurred_at):  # apply by event time
        if event.dedupe_key in applied:
            continue
        if event.own_write:
            outcome = "own_write"
        else:
            try:
                with session.begin_nested():
                    outcome = apply(session, event, config)
                    session.flush()
            except Exception as exc:  # noqa: BLE001 — recorded on the row; the other events go on
                result.failed.append(f"{event.kind}: {type(exc).__name__}: {exc}")
                log.warning("inbox.event_failed", inbox_id=row.id, kind=event.kind, error=type(exc).__name__)
                continue
            if outcome in NOT_YET and not final:
                result.waiting.append(outcome)
                continue
            if outcome in NOT_YET:
                result.settled.append(outcome)
        applied.append(event.dedupe_key)
        result.outcomes.append(outcome)
    row.applied_keys = applied
    return result


def _settle(row: InboxEvent, result: _RowResult, at: datetime) -> str:
    """The row's new state after an attempt; returns the verdict counted by ``drain``."""
    if result.failed:
        dead = row.attempts >= MAX_ATTEMPTS
        row.status = "dead" if dead else "new"
        row.next_attempt_at = None if dead else at + backoff(row.attempts)
        row.error = "; ".join(result.failed)[:4000]
        log.warning(
            "inbox.apply_failed",
            inbox_id=row.id,
            attempts=row.attempts,
            dead=dead,
            failed=len(result.failed),
            applied=len(result.outcomes),
        )
        return "dead" if dead else "retried"
    if result.waiting:
        row.next_attempt_at = at + backoff(row.attempts)
        row.error = "waiting: " + ", ".join(sorted(set(result.waiting)))
        log.info("inbox.deferred", inbox_id=row.id, attempts=row.attempts, waiting=len(result.waiting))
        return "deferred"
    row.status, row.processed_at = "done", at
    row.error = None
    if row.names_erased:
        # Kept raw only until applied: it names an erased address (``syncd.inbox_purge``).
        row.payload, row.purged_at = ERASED_BODY, at
    if result.settled:
        row.error = f"settled after {row.attempts} attempts: " + ", ".join(sorted(set(result.settled)))
        log.warning("inbox.wait_expired", inbox_id=row.id, attempts=row.attempts, outcomes=result.settled)
    return "done"


def _record_failure(engine: Engine, row_id: int | None, attempts: int, exc: Exception, at: datetime) -> str:
    attempts += 1
    dead = attempts >= MAX_ATTEMPTS
    error = f"{type(exc).__name__}: {exc}"[:4000]
    with engine.begin() as conn:
        # Compare-and-set on attempts: if another replica claimed the row in between, its result wins.
        conn.execute(
            sa.update(InboxEvent.__table__)  # type: ignore[attr-defined]
            .where(InboxEvent.id == row_id, InboxEvent.status == "new", InboxEvent.attempts == attempts - 1)
            .values(
                attempts=attempts,
                error=error,
                status="dead" if dead else "new",
                next_attempt_at=None if dead else at + backoff(attempts),
            )
        )
    log.warning("inbox.apply_failed", inbox_id=row_id, attempts=attempts, dead=dead, error=type(exc).__name__)
    return "dead" if dead else "retried"


def dead_letters(engine: Engine, limit: int = 1000) -> list[InboxEvent]:
    """Rows that failed ``MAX_ATTEMPTS`` times, oldest first, with their last error."""
    with Session(engine, expire_on_commit=False) as session:
        query = select(InboxEvent).where(InboxEvent.status == "dead").order_by(InboxEvent.id).limit(limit)
        return list(session.exec(query).all())


def requeue(engine: Engine, ids: list[int] | None = None) -> int:
    """Give dead rows (all, or those named) a fresh start, e.g. after a fix. Returns how many."""
    query = sa.update(InboxEvent.__table__).where(InboxEvent.status == "dead")  # type: ignore[attr-defined]
    if ids is not None:
        query = query.where(InboxEvent.id.in_(ids))  # type: ignore[union-attr]
    with engine.begin() as conn:
        return conn.execute(query.values(status="new", attempts=0, next_attempt_at=None)).rowcount


def backlog(engine: Engine) -> Counter[str]:
    """Rows per status (new, done, ignored, dead)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(InboxEvent.status, sa.func.count()).group_by(InboxEvent.status))
        return Counter({status: n for status, n in rows})
