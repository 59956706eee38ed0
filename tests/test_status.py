"""``syncd.status``: what it says of the runs, the next run, the daemon, flags and the inbox, from
rows as the sync, the hygiene scan and the webhook intake leave them."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlmodel import Session

from syncd.config import Config
from syncd.models import Contact, Flag, InboxEvent, Membership, SyncRun, utcnow
from syncd.scheduler import Leader, leader_present
from syncd.status import history, status


def make_config(schedule: str | None = "every 15 minutes") -> Config:
    target = {"brevo": {"list_id": 7}}
    news: dict = {"consent": "single_opt_in", "targets": [target]}
    if schedule:
        news["schedule"] = schedule
    return Config.model_validate(
        {
            "version": 1,
            "providers": {"brevo": {"api_key": "k"}},
            "lists": {"news": news, "club": {"consent": "double_opt_in"}},
        }
    )


def add_run(engine, started, *, status="ok", error=None, applied=None, flags=0, finished=True):
    with Session(engine) as s:
        run = SyncRun(
            list_name="news",
            target_key="brevo:7",
            started_at=started,
            finished_at=started + timedelta(seconds=2.5) if finished else None,
            status=status,
            error=error,
            counts={"applied": applied or {}, "planned": {"flags": flags}, "pulled": 3, "write_calls": 1},
        )
        s.add(run)
        s.commit()
        return run.id


def test_the_last_run_of_each_target_with_its_counts_duration_and_masked_error(engine):
    now = utcnow()
    add_run(engine, now - timedelta(hours=2), applied={"adds": 9})
    add_run(
        engine,
        now - timedelta(minutes=5),
        status="failed",
        error="PayloadError: ana.dupont@example.fr rejected with key xkeysib-0123456789abcdef\nTraceback…",
        applied={"adds": 2, "updates": 1, "removals": 3},
        flags=4,
    )
    news = status(engine, make_config(), now=now)["lists"][0]
    run = news["targets"][0]["last_run"]
    assert (run["adds"], run["updates"], run["removals"], run["flags"]) == (2, 1, 3, 4)
    assert run["outcome"] == "failed" and run["duration_s"] == 2.5
    assert run["error"] == "PayloadError: a***@example.fr rejected with key ***"
    assert [r["adds"] for r in history(engine)] == [2, 9]
    assert [r["adds"] for r in history(engine, "news", limit=1)] == [2]
    assert history(engine, "club") == []


def test_a_run_in_progress_has_no_duration(engine):
    now = utcnow()
    add_run(engine, now - timedelta(seconds=30), status="running", finished=False)
    run = status(engine, make_config(), now=now)["lists"][0]["targets"][0]["last_run"]
    assert run["outcome"] == "running" and run["duration_s"] is None and run["finished_at"] is None


def test_the_next_run_counts_from_the_latest_start_and_waits_for_a_daemon(engine):
    now = utcnow()
    started = now - timedelta(minutes=5)
    add_run(engine, started)
    nxt = status(engine, make_config(), now=now)["lists"][0]["next_run"]
    assert nxt["state"] == "waiting_for_daemon" and nxt["note"].startswith("when the daemon is up")
    assert nxt["at"] == (started + timedelta(minutes=15)).isoformat(timespec="seconds")

    overdue = status(engine, make_config(), now=now + timedelta(hours=1))["lists"][0]["next_run"]
    assert "(due now)" in overdue["note"]
    assert status(engine, make_config(None), now=now)["lists"][0]["next_run"]["state"] == "no_schedule"
    assert status(engine, make_config(), now=now)["lists"][1]["next_run"]["state"] == "no_target"


def test_a_daemon_holding_the_leaders_lock_is_seen_and_its_next_run_is_scheduled(engine):
    now = utcnow()
    add_run(engine, now - timedelta(minutes=5))
    assert leader_present(engine) is False
    leader = Leader(engine)
    try:
        assert leader.is_leader()
        assert leader_present(engine) is True
        data = status(engine, make_config(), now=now)
        assert data["daemon"]["up"] is True
        assert data["lists"][0]["next_run"]["state"] == "scheduled"
        late = status(engine, make_config(), now=now + timedelta(hours=1))["lists"][0]["next_run"]
        assert late["state"] == "due" and late["at"] == (now + timedelta(hours=1)).isoformat(
            timespec="seconds"
        )
    finally:
        leader.release()
    assert leader_present(engine) is False


def test_flags_pending_double_opt_ins_and_the_inbox_are_counted_without_an_address(engine):
    with Session(engine) as s:
        contacts = [Contact(email=f"person{i}@example.fr") for i in range(3)]
        s.add_all(contacts)
        s.flush()
        s.add(Flag(contact_id=contacts[0].id, list_name="news", rule="not_in_segment", detail="kind"))
        s.add(Flag(contact_id=contacts[1].id, list_name="news", rule="not_in_segment"))
        s.add(Flag(contact_id=contacts[2].id, list_name="news", rule="exclusive", resolved_at=utcnow()))
        s.add(Membership(contact_id=contacts[0].id, list_name="club", status="pending"))
        s.add(Membership(contact_id=contacts[1].id, list_name="club", status="subscribed"))
        for i, state in enumerate(("new", "new", "dead", "done")):
            s.add(
                InboxEvent(
                    provider="brevo",
                    dedupe_key=f"k{i}",
                    content_type="application/json",
                    payload='{"email": "person0@example.fr"}',
                    status=state,
                )
            )
        s.commit()
    data = status(engine, make_config())
    news, club = data["lists"]
    assert news["open_flags"] == {"total": 2, "by_rule": {"not_in_segment": 2}}
    assert club["pending_double_opt_in"] == 1 and club["members"] == {"pending": 1, "subscribed": 1}
    assert data["double_opt_in"]["pending"] == 1
    assert data["inbox"]["backlog"] == 2 and data["inbox"]["dead_letters"] == 1
    assert data["inbox"]["by_state"] == {"dead": 1, "done": 1, "new": 2}
    assert "@" not in json.dumps(data)
