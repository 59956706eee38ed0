"""The inbox processor: applied once, retried with back-off, dead-lettered, never dropped."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from simkit import BrevoSimulator, MailchimpSimulator
from sqlmodel import Session, select

from connectors.contract import EventKind, Target
from syncd.config import Config
from syncd.inbox import MAX_ATTEMPTS, backlog, dead_letters, drain, requeue
from syncd.models import AuditLog, Contact, InboxEvent, Membership

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CONFIG = Config.model_validate(
    {
        "version": 1,
        "providers": {
            "brevo": {"api_key": "k", "base_url": "http://127.0.0.1:9/v3", "api_key_name": "syncd"},
            "mailchimp": {"api_key": "k-us1", "base_url": "http://127.0.0.1:9/3.0"},
        },
        "lists": {"news": {"targets": [{"brevo": {"list_id": 12}}]}},
    }
)


def store(engine, provider: str, kind: EventKind, email: str, n: int = 1, **extra) -> list[int]:
    sim = BrevoSimulator() if provider == "brevo" else MailchimpSimulator()
    target = Target("brevo", "12") if provider == "brevo" else Target("mailchimp", "a1b2c3d4e5")
    ids = []
    with Session(engine) as s:
        for i in range(n):
            at = NOW - timedelta(minutes=n - i)
            body, ctype = sim.webhook_payload(
                kind,
                email,
                target,
                **({"occurred_at": at} if provider == "brevo" else {"fired_at": at}),
                **extra,
            )
            row = InboxEvent(
                provider=provider,
                dedupe_key=f"{provider}:{kind}:{i}:{email}",
                content_type=ctype,
                payload=body.decode(),
            )
            s.add(row)
            s.flush()
            ids.append(row.id)
        s.commit()
    return ids


def rows(engine) -> list[InboxEvent]:
    with Session(engine) as s:
        return list(s.exec(select(InboxEvent).order_by(InboxEvent.id)).all())


def failing(session, event, config) -> str:
    session.add(AuditLog(actor="test", action="half-done"))  # must be rolled back with the row
    raise RuntimeError("reconcile exploded")


def test_rows_are_applied_and_marked_done(engine):
    store(engine, "mailchimp", EventKind.PROFILE_UPDATED, "ana@example.fr", n=3)
    seen = []
    counts = drain(engine, CONFIG, now=NOW, apply=lambda s, e, c: seen.append(e.kind) or "applied")
    assert counts["done"] == 3 and len(seen) == 3
    assert {r.status for r in rows(engine)} == {"done"}
    assert drain(engine, CONFIG, now=NOW, apply=failing)["done"] == 0  # nothing left to do


def test_a_failure_rolls_back_retries_with_back_off_and_keeps_the_error(engine):
    [row_id] = store(engine, "brevo", EventKind.UNSUBSCRIBED, "ana@example.fr")
    assert drain(engine, CONFIG, now=NOW, apply=failing) == {"retried": 1}
    [row] = rows(engine)
    assert (row.status, row.attempts) == ("new", 1)
    assert row.next_attempt_at == NOW + timedelta(seconds=30)
    assert "reconcile exploded" in row.error
    with Session(engine) as s:
        assert s.exec(select(AuditLog)).all() == []  # the half-done change did not survive

    assert drain(engine, CONFIG, now=NOW + timedelta(seconds=10), apply=failing) == {}  # not due yet
    drain(engine, CONFIG, now=NOW + timedelta(seconds=31), apply=failing)
    [row] = rows(engine)
    assert row.attempts == 2 and row.next_attempt_at == NOW + timedelta(seconds=31 + 60)


def test_after_max_attempts_the_row_is_dead_visible_and_replayable(engine):
    store(engine, "brevo", EventKind.UNSUBSCRIBED, "ana@example.fr")
    at = NOW
    for _ in range(MAX_ATTEMPTS):
        drain(engine, CONFIG, now=at, apply=failing)
        at += timedelta(days=1)
    [dead] = dead_letters(engine)
    assert (dead.status, dead.attempts) == ("dead", MAX_ATTEMPTS)
    assert backlog(engine) == {"dead": 1}
    assert drain(engine, CONFIG, now=at, apply=failing) == {}  # dead rows are left alone

    assert requeue(engine) == 1
    assert drain(engine, CONFIG, now=at, apply=lambda s, e, c: "applied") == {"done": 1}
    assert dead_letters(engine) == []


def test_a_delivery_is_applied_by_event_time_and_skips_our_own_echo(engine):
    items = [
        {"event": "unsubscribe", "email": "a@example.fr", "list_id": [12], "ts_epoch": 2_000},
        {
            "event": "contact_updated",
            "email": "a@example.fr",
            "ts_epoch": 1_000,
            "api_key_name": "syncd",
            "attributes": {"FIRSTNAME": "A"},
        },
        {"event": "hard_bounce", "email": "a@example.fr", "ts_epoch": 1_500},
    ]
    with Session(engine) as s:
        s.add(
            InboxEvent(
                provider="brevo",
                dedupe_key="brevo:batch",
                content_type="application/json",
                payload=json.dumps(items),
            )
        )
        s.commit()
    seen = []
    drain(engine, CONFIG, now=NOW, apply=lambda s, e, c: seen.append(e.kind) or "applied")
    assert seen == [EventKind.BOUNCED_HARD, EventKind.UNSUBSCRIBED]


def test_real_events_reach_the_master_base(engine):
    with Session(engine) as s:
        c = Contact(email="ana@example.fr", updated_at=NOW - timedelta(days=1))
        s.add(c)
        s.flush()
        s.add(
            Membership(contact_id=c.id, list_name="news", status="subscribed", since=NOW - timedelta(days=1))
        )
        s.commit()
    store(engine, "brevo", EventKind.UNSUBSCRIBED, "ana@example.fr")
    assert drain(engine, CONFIG, now=NOW) == {"done": 1}
    with Session(engine) as s:
        assert s.exec(select(Membership.status)).one() == "unsubscribed"


def test_replicas_draining_together_apply_each_row_once(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip(
            "several replicas drain only on PostgreSQL (FOR UPDATE SKIP LOCKED); SQLite has one process"
        )
    store(engine, "mailchimp", EventKind.PROFILE_UPDATED, "ana@example.fr", n=60)
    applied: list[int] = []
    lock = threading.Lock()

    def apply(session, event, config) -> str:
        with lock:
            applied.append(event.occurred_at)
        return "applied"

    threads = [
        threading.Thread(target=drain, args=(engine, CONFIG), kwargs={"now": NOW, "apply": apply})
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(applied) == 60 == len(set(applied))
    assert {r.status for r in rows(engine)} == {"done"}


def test_the_inbox_commands_show_and_requeue_dead_letters(engine):
    from click.testing import CliRunner

    from syncd.cli import main
    from syncd.db import session_scope
    from syncd.models import InboxEvent

    with session_scope(engine) as s:
        s.add(
            InboxEvent(
                provider="brevo",
                dedupe_key="k-dead",
                content_type="application/json",
                payload="{}",
                status="dead",
                attempts=8,
                error="PayloadError: no email\ntrace",
            )
        )
        s.add(
            InboxEvent(
                provider="brevo",
                dedupe_key="k-done",
                content_type="application/json",
                payload="{}",
                status="done",
                attempts=1,
            )
        )
    url = engine.url.render_as_string(hide_password=False)
    status = CliRunner().invoke(main, ["--database", url, "inbox", "status"])
    assert status.exit_code == 0, status.output
    assert "1 dead, 1 done" in status.output
    assert "after 8 attempts: PayloadError: no email" in status.output
    requeued = CliRunner().invoke(main, ["--database", url, "inbox", "requeue"])
    assert "1 delivery queued again" in requeued.output
    assert "1 done, 1 new" in CliRunner().invoke(main, ["--database", url, "inbox", "status"]).output


def test_one_failing_event_keeps_the_others_of_its_delivery_and_a_retry_applies_only_it(engine):
    items = [
        {"event": "unsubscribe", "email": "a@example.fr", "list_id": [12], "ts_epoch": 1_000},
        {"event": "hard_bounce", "email": "b@example.fr", "ts_epoch": 2_000},
        {"event": "spam", "email": "c@example.fr", "ts_epoch": 3_000},
    ]
    with Session(engine) as s:
        s.add(
            InboxEvent(
                provider="brevo",
                dedupe_key="batch",
                content_type="application/json",
                payload=json.dumps(items),
            )
        )
        s.commit()
    calls: list[str] = []
    broken = {"b@example.fr"}

    def apply(session, event, config) -> str:
        calls.append(event.email)
        session.add(AuditLog(actor="test", action=f"applied {event.email}"))
        if event.email in broken:
            raise RuntimeError("this event only")
        return "applied"

    assert drain(engine, CONFIG, now=NOW, apply=apply) == {"retried": 1}
    with Session(engine) as s:
        assert sorted(a.action for a in s.exec(select(AuditLog))) == [
            "applied a@example.fr",
            "applied c@example.fr",
        ]
    [row] = rows(engine)
    assert (row.status, row.attempts, len(row.applied_keys)) == ("new", 1, 2)
    assert "this event only" in row.error

    broken.clear()
    calls.clear()
    assert drain(engine, CONFIG, now=NOW + timedelta(minutes=1), apply=apply) == {"done": 1}
    assert calls == ["b@example.fr"]  # the others were not applied a second time
    with Session(engine) as s:
        assert len(s.exec(select(AuditLog)).all()) == 3


def test_applied_deliveries_lose_their_body_after_the_retention_and_stay_recognised(live, tmp_path):
    w = live
    crm = tmp_path / "clients.csv"
    crm.write_text("email;type\nana@exemple.fr;client\n", encoding="utf-8")
    imported = w.cli("import", str(crm), "--source", "crm", "--list", "clients", "--consent", "single_opt_in")
    assert imported.exit_code == 0, imported.output
    old_body, json_type = w.brevo.webhook_payload(
        EventKind.PROFILE_UPDATED, "ana@exemple.fr", fields={"city": "Lyon"}
    )
    recent_body, form_type = w.mailchimp.webhook_payload(
        EventKind.PROFILE_UPDATED, "ana@exemple.fr", w.clients_mc, first_name="Ana"
    )
    for hook, body, content_type in (
        (w.brevo_hook, old_body, json_type),
        (w.mailchimp_hook, recent_body, form_type),
    ):
        answer = w.post(hook, body, content_type)
        assert answer.json()["status"] == "stored", answer.text
    assert "2 done" in w.cli("inbox", "drain").output
    waiting, _ = w.brevo.webhook_payload(EventKind.UNSUBSCRIBED, "ana@exemple.fr", w.clients_b)
    w.post(w.brevo_hook, waiting, json_type)

    nothing = w.cli("inbox", "purge")
    assert nothing.exit_code == 0 and nothing.output.startswith("0 deliveries purged"), nothing.output
    key = rows(w.engine)[0].dedupe_key
    with Session(w.engine) as s:  # the Brevo delivery was applied 31 days ago
        applied = s.exec(select(InboxEvent).where(InboxEvent.dedupe_key == key)).one()
        applied.processed_at = datetime.now(UTC) - timedelta(days=31)
        s.add(applied)
        s.commit()
    purged = w.cli("inbox", "purge")
    assert "1 delivery purged of personal data: 1 applied more than 30 days ago" in purged.output

    first, second, third = rows(w.engine)
    assert "ana" not in first.payload and first.purged_at is not None
    assert (first.status, first.dedupe_key) == ("done", key)
    assert "ana" in second.payload and second.purged_at is None  # within the retention
    assert third.status == "new" and "ana" in third.payload  # not applied yet: kept whatever its age
    again = w.post(w.brevo_hook, old_body, json_type)
    assert again.json()["status"] == "duplicate"
    assert len(rows(w.engine)) == 3
