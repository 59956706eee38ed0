"""Group commit at intake: deliveries arriving together share one transaction, yet each gets its
own answer, only once its row is committed, and a redelivery is still told apart."""

from __future__ import annotations

import asyncio
import json

import httpx
import sqlalchemy as sa
from sqlmodel import Session, select
from webfixtures import BREVO_AUTH, BREVO_SECRET

from connectors.brevo.webhooks import parse_delivery
from connectors.simulators.harness import ThreadedServer
from syncd import db
from syncd.inbox_purge import ERASED_BODY
from syncd.models import InboxEvent, Tombstone, utcnow
from syncd.web.app import create_app
from syncd.web.intake import InboxWriter, _Pending

JSON = {"Content-Type": "application/json", **BREVO_AUTH}


def unsubscribe(email: str) -> bytes:
    at = int(utcnow().timestamp())
    return json.dumps({"event": "unsubscribe", "email": email, "ts_event": at, "list_id": [12]}).encode()


def post_together(url: str, bodies: list[bytes]) -> list[httpx.Response]:
    """Every body at once, each on its own connection, so that they queue for the same writer."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(bodies))
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            hook = f"{url}/hooks/brevo/{BREVO_SECRET}"
            return await asyncio.gather(*(client.post(hook, content=b, headers=JSON) for b in bodies))

    return asyncio.run(run())


def stored_rows(engine) -> list[InboxEvent]:
    with Session(engine) as s:
        return list(s.exec(select(InboxEvent).order_by(InboxEvent.id)).all())


def test_deliveries_arriving_together_are_each_stored_and_answered(served, engine):
    bodies = [unsubscribe(f"user{i}@example.fr") for i in range(40)]
    answers = post_together(served.url, bodies)
    assert [(r.status_code, r.json()) for r in answers] == [(200, {"status": "stored", "events": 1})] * 40
    assert sorted(row.payload for row in stored_rows(engine)) == sorted(b.decode() for b in bodies)


def test_one_delivery_sent_many_times_at_once_is_stored_once(served, engine):
    body = unsubscribe("ana@example.fr")
    answers = post_together(served.url, [body] * 12)
    assert all(r.status_code == 200 for r in answers)
    assert sorted(r.json()["status"] for r in answers) == ["duplicate"] * 11 + ["stored"]
    assert [row.payload for row in stored_rows(engine)] == [body.decode()]


def pending(writer: InboxWriter, loop: asyncio.AbstractEventLoop, email: str, provider: str | None):
    body = unsubscribe(email)
    return _Pending(writer.row(provider, body, "application/json", [], None), [], loop)  # type: ignore[arg-type]


def test_a_row_the_base_refuses_costs_the_rest_of_its_batch_nothing(engine):
    """A provider of NULL breaks a NOT NULL column: that delivery alone gets the error (a 500,
    never a 2xx); the others of the same batch are committed and get their outcome."""
    writer = InboxWriter(engine)
    loop = asyncio.new_event_loop()
    try:
        batch = [
            pending(writer, loop, "ana@example.fr", "brevo"),
            pending(writer, loop, "bob@example.fr", None),
            pending(writer, loop, "eve@example.fr", "brevo"),
        ]
        with writer.connect() as conn:
            outcomes = writer.write(conn, batch)
    finally:
        loop.close()
    assert outcomes[0] == outcomes[2] == "ignored"  # no event syncd acts on: kept, nothing to apply
    assert isinstance(outcomes[1], sa.exc.IntegrityError)
    assert sorted(json.loads(row.payload)["email"] for row in stored_rows(engine)) == [
        "ana@example.fr",
        "eve@example.fr",
    ]


def test_a_batch_holding_the_same_delivery_twice_stores_it_once(engine):
    writer = InboxWriter(engine)
    loop = asyncio.new_event_loop()
    try:
        batch = [pending(writer, loop, "ana@example.fr", "brevo") for _ in range(2)]
        batch[1].row["dedupe_key"] = batch[0].row["dedupe_key"]  # the same delivery, received twice
        with writer.connect() as conn:
            outcomes = writer.write(conn, batch)
    finally:
        loop.close()
    assert outcomes == ["ignored", "duplicate"]
    assert len(stored_rows(engine)) == 1


def lock_the_inbox(conn: sa.Connection) -> None:
    """Another writer's transaction keeps every insert into the inbox waiting until it ends."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE inboxevent IN ACCESS EXCLUSIVE MODE")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite: one writer at a time


def test_a_batch_whose_insert_fails_answers_each_of_its_deliveries_503_and_acknowledges_none(
    config, database_url, engine
):
    """The inbox stays locked for longer than a statement may wait (1 s): the batch's insert
    fails, and every delivery waiting for it is told to come again; once the lock is gone, the
    same deliveries are stored, each once."""
    bodies = [unsubscribe(f"user{i}@example.fr") for i in range(6)]
    impatient = db.make_engine(database_url, timeouts=db.Timeouts(statement=1))
    try:
        with ThreadedServer(create_app(config, impatient)) as srv:
            with engine.connect() as holder:
                lock_the_inbox(holder)
                refused = post_together(srv.url, bodies)
                holder.rollback()
            retried = post_together(srv.url, bodies)
            again = post_together(srv.url, bodies[:2])
    finally:
        impatient.dispose()
    assert [(r.status_code, bool(r.headers.get("Retry-After"))) for r in refused] == [(503, True)] * 6
    assert [(r.status_code, r.json()["status"]) for r in retried] == [(200, "stored")] * 6
    assert [r.json()["status"] for r in again] == ["duplicate"] * 2
    assert sorted(row.payload for row in stored_rows(engine)) == sorted(b.decode() for b in bodies)


def test_a_batch_keeps_no_body_of_an_erased_address_and_every_other_body_raw(engine):
    writer = InboxWriter(engine)
    with Session(engine) as s:
        s.add(Tombstone(email_hash=db.email_hash("gone@example.fr")))
        s.commit()
    loop = asyncio.new_event_loop()
    try:
        batch = []
        for email in ("ana@example.fr", "gone@example.fr"):
            body = unsubscribe(email)
            events = parse_delivery(body, None).events
            batch.append(_Pending(writer.row("brevo", body, "application/json", events, None), events, loop))
        with writer.connect() as conn:
            outcomes = writer.write(conn, batch)
    finally:
        loop.close()
    rows = {row.dedupe_key: row for row in stored_rows(engine)}
    ana, gone = (rows[p.row["dedupe_key"]] for p in batch)
    assert outcomes == ["stored", "ignored"]  # nothing of an erased person is applied
    assert json.loads(ana.payload)["email"] == "ana@example.fr" and not ana.names_erased
    assert (gone.payload, gone.status, gone.names_erased) == (ERASED_BODY, "ignored", True)
