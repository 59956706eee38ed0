"""Where things stand, for the marketer: each list's last and next run, open flags, pending
double opt-ins, the webhook inbox. One function builds it (``status``), for ``syncd status`` and
the daemon's ``/status`` and ``/`` alike; ``history`` lists past runs for ``syncd history``.

Everything here is a count, a time or a list name: no address, no name, no secret. A run's error
is masked the way the logs are (addresses, API keys), and cut to its first line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from syncd import doi, inbox
from syncd.config import Config, ListConfig, Schedule
from syncd.core.segments import auto_enrolled
from syncd.log import mask_personal_data
from syncd.models import Flag, InboxEvent, Membership, SyncRun, utcnow
from syncd.scheduler import latest_start, leader_present, next_due

# The figures a run's record keeps under ``counts["applied"]`` (flags: under ``planned``).
RUN_FIGURES = ("adds", "updates", "removals", "unblocks", "reconfirms")
ERROR_CHARS = 300
HISTORY_COLUMNS = (
    "id", "list", "target", "started_at", "finished_at", "duration_s", "outcome", "pulled",
    *RUN_FIGURES, "flags", "rejected", "write_calls", "error",
)  # fmt: skip
WHEN_DAEMON_UP = "when the daemon is up"


def status(engine: Engine, config: Config, *, now: datetime | None = None) -> dict[str, Any]:
    """The whole status as JSON-ready data (see the module notes)."""
    now = now or utcnow()
    daemon = leader_present(engine)
    flags = _open_flags(engine)
    members = _memberships(engine)
    return {
        "generated_at": _iso(now),
        "daemon": {"up": daemon, "seen_by": "the leader's lock" if daemon is not None else None},
        "lists": [
            _list_status(engine, name, lst, now, daemon, flags.get(name, {}), members.get(name, {}))
            for name, lst in config.lists.items()
        ],
        "double_opt_in": _doi(engine, members),
        "inbox": _inbox(engine),
    }


def history(engine: Engine, list_name: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Past runs, newest first, with their counts (one row per list and target)."""
    query = sa.select(SyncRun).order_by(SyncRun.id.desc()).limit(limit)  # type: ignore[union-attr]
    if list_name:
        query = query.where(SyncRun.list_name == list_name)  # type: ignore[arg-type]
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [run_record(row) for row in rows]


def run_record(row: Any) -> dict[str, Any]:
    """One ``SyncRun`` as the status shows it: times, outcome, the counts a marketer reads."""
    counts = row["counts"] or {}
    applied = counts.get("applied") or {}
    started, finished = _aware(row["started_at"]), _aware(row["finished_at"])
    return {
        "id": row["id"],
        "list": row["list_name"],
        "target": row["target_key"],
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "duration_s": round((finished - started).total_seconds(), 3) if started and finished else None,
        "outcome": row["status"],
        "pulled": counts.get("pulled", 0),
        **{kind: applied.get(kind, 0) for kind in RUN_FIGURES},
        "flags": (counts.get("planned") or {}).get("flags", 0),
        "rejected": counts.get("rejected", 0),
        "write_calls": counts.get("write_calls", 0),
        "error": safe_error(row["error"]),
    }


def safe_error(text: str | None) -> str | None:
    """A run's error, shown: first line, addresses and API keys masked, cut short."""
    if not text:
        return None
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return mask_personal_data(None, "", {"text": first[:ERROR_CHARS]})["text"]


def schedule_text(schedule: Schedule | None) -> str | None:
    if schedule is None:
        return None
    if schedule.cron:
        return f"cron {schedule.cron}"
    assert schedule.every is not None
    seconds = int(schedule.every.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"every {n} {unit}{'s' if n > 1 else ''}"
    return f"every {seconds} seconds"


# --- one list ----------------------------------------------------------------------------------


def _list_status(
    engine: Engine,
    name: str,
    lst: ListConfig,
    now: datetime,
    daemon: bool | None,
    flags: dict[str, int],
    members: dict[str, int],
) -> dict[str, Any]:
    targets = [t.target.key for t in lst.targets]
    last = _last_runs(engine, name, targets)
    return {
        "name": name,
        "title": lst.title or name,
        "description": lst.description,
        "consent": lst.consent,
        "schedule": schedule_text(lst.schedule),
        "next_run": _next_run(engine, name, lst, targets, now, daemon),
        "targets": [{"target": key, "last_run": last.get(key)} for key in targets],
        # Members of an auto-enrolled list are its segment: they hold no membership row.
        "auto_enrolled": auto_enrolled(lst),
        "members": members,
        "pending_double_opt_in": members.get("pending", 0),
        "open_flags": {"total": sum(flags.values()), "by_rule": flags},
    }


def _last_runs(engine: Engine, list_name: str, targets: list[str]) -> dict[str, dict[str, Any]]:
    """The latest run of each of the list's targets."""
    if not targets:
        return {}
    latest = (
        sa.select(sa.func.max(SyncRun.id))
        .where(SyncRun.list_name == list_name, SyncRun.target_key.in_(targets))  # type: ignore[arg-type,union-attr]
        .group_by(SyncRun.target_key)
    )
    with engine.connect() as conn:
        rows = conn.execute(sa.select(SyncRun).where(SyncRun.id.in_(latest))).mappings().all()  # type: ignore[union-attr]
    return {row["target_key"]: run_record(row) for row in rows}


def _next_run(
    engine: Engine,
    name: str,
    lst: ListConfig,
    targets: list[str],
    now: datetime,
    daemon: bool | None,
) -> dict[str, Any]:
    """When the daemon syncs the list next: from its schedule and its latest run (as the daemon's
    scheduler decides it, ``scheduler.next_due``). Nothing records a plan ahead: the daemon looks
    every second for the lists that are due."""
    if not targets:
        return {"at": None, "state": "no_target", "note": "no target: nothing to sync"}
    if lst.schedule is None:
        return {"at": None, "state": "no_schedule", "note": "no schedule: synced only by `syncd sync`"}
    due = next_due(lst.schedule, latest_start(engine, name, targets[0]))
    overdue = due <= now
    at = None if due.year == 1 else _iso(max(due, now) if daemon else due)
    if daemon:
        return {
            "at": at,
            "state": "due" if overdue else "scheduled",
            "note": "due now" if overdue else "scheduled",
        }
    note = WHEN_DAEMON_UP + (" (due now)" if overdue else "")
    if daemon is False:
        note += "; no daemon leads this base now"
    return {"at": at, "state": "waiting_for_daemon", "note": note}


# --- what every list shares ------------------------------------------------------------------


def _open_flags(engine: Engine) -> dict[str, dict[str, int]]:
    query = (
        sa.select(Flag.list_name, Flag.rule, sa.func.count())
        .where(Flag.resolved_at.is_(None))  # type: ignore[union-attr]
        .group_by(Flag.list_name, Flag.rule)
    )
    out: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for list_name, rule, n in conn.execute(query):
            out.setdefault(list_name, {})[rule] = n
    return out


def _memberships(engine: Engine) -> dict[str, dict[str, int]]:
    query = sa.select(Membership.list_name, Membership.status, sa.func.count()).group_by(
        Membership.list_name, Membership.status
    )
    out: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for list_name, state, n in conn.execute(query):
            out.setdefault(list_name, {})[state] = n
    return out


def _doi(engine: Engine, members: dict[str, dict[str, int]]) -> dict[str, Any]:
    return {
        "pending": sum(m.get("pending", 0) for m in members.values()),
        "links": doi.delivery_counts(engine),
        "dead_requests": len(doi.dead_requests(engine)),
    }


def _inbox(engine: Engine) -> dict[str, Any]:
    counts = inbox.backlog(engine)
    with engine.connect() as conn:
        oldest_waiting = conn.execute(
            sa.select(sa.func.min(InboxEvent.received_at)).where(InboxEvent.status == "new")  # type: ignore[arg-type]
        ).scalar()
        oldest_dead = conn.execute(
            sa.select(sa.func.min(InboxEvent.received_at)).where(InboxEvent.status == "dead")  # type: ignore[arg-type]
        ).scalar()
    return {
        "backlog": counts.get("new", 0),
        "oldest_waiting_at": _iso(_aware(oldest_waiting)),
        "dead_letters": counts.get("dead", 0),
        "oldest_dead_at": _iso(_aware(oldest_dead)),
        "by_state": dict(sorted(counts.items())),
    }


def _aware(value: datetime | None) -> datetime | None:
    """A time read by a Core query (SQLite hands back naive UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None
