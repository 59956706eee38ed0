"""The inbox processor: applies stored webhook deliveries to the master base.

Each row is claimed and applied in one transaction; a failure rolls the row's changes back and
schedules a retry with exponential back-off; after ``MAX_ATTEMPTS`` the row is ``dead``: kept,
visible with ``dead_letters`` and replayable with ``requeue``, never dropped. On PostgreSQL rows
are claimed with ``FOR UPDATE SKIP LOCKED``, so several replicas can drain side by side.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from connectors.base import ProviderEvent
from syncd.config import Config
from syncd.log import get_logger
from syncd.metrics import WEBHOOK_FAILED, WEBHOOK_PROCESSED
from syncd.models import InboxEvent, utcnow

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
    connectors: Mapping[str, Any] | None = None,
    apply: Apply | None = None,
) -> Counter[str]:
    """Apply up to ``limit`` due inbox rows. Returns counts: done, retried, dead."""
    if apply is None:
        from syncd.events import apply_event as apply
    parsers = _Parsers(config, connectors)
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
                outcomes = _apply_row(session, row, parsers, apply, config)
                row.status, row.processed_at, row.error = "done", at, None
                row.attempts = attempts + 1
                session.add(row)
                session.commit()
            except Exception as exc:  # noqa: BLE001 — any failure is recorded on the row, never lost
                session.rollback()
                counts[_record_failure(engine, row_id, attempts, exc, at)] += 1
                WEBHOOK_FAILED.labels(provider).inc()
                continue
        counts["done"] += 1
        for outcome in outcomes:
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


def _apply_row(
    session: Session, row: InboxEvent, parsers: _Parsers, apply: Apply, config: Config
) -> list[str]:
    events = parsers.get(row.provider).parse_webhook(row.payload.encode("utf-8"), row.content_type, {})
    outcomes = []
    for event in sorted(events, key=lambda e: e.occurred_at):  # apply by event time
        outcomes.append("own_write" if event.own_write else apply(session, event, config))
    session.flush()
    return outcomes


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


class _Parsers:
    def __init__(self, config: Config, given: Mapping[str, Any] | None):
        self._config = config
        self._connectors = dict(given or {})

    def get(self, provider: str) -> Any:
        if provider not in self._connectors:
            from syncd.providers import make_connector

            self._connectors[provider] = make_connector(self._config, provider)
        return self._connectors[provider]


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
