"""DESIGN §4 rule 5 as a property: every acknowledged webhook is stored before its 2xx, and a
duplicate delivery has no second effect — whatever the order and the repeats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, SQLModel, select
from starlette.testclient import TestClient
from webfixtures import BREVO_AUTH, BREVO_SECRET, make_config

from connectors.base import EventKind, Target
from connectors.simulators.brevo import BrevoSimulator
from syncd import inbox
from syncd.db import session_scope
from syncd.membership import join_list
from syncd.models import Contact, InboxEvent, Membership
from syncd.web.app import create_app

PEOPLE = ["ana@example.fr", "bob@example.fr", "chloe@example.fr"]
LISTS = {"news": "12", "offers": "13"}
BASE = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

# A pool of distinct provider events: (person, list) unsubscribes, each at its own time.
POOL = [
    (p, name, BASE + timedelta(minutes=i))
    for i, (p, name) in enumerate((p, n) for p in PEOPLE for n in LISTS)
]


def _reset(engine) -> None:
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(deliveries=st.lists(st.integers(min_value=0, max_value=len(POOL) - 1), min_size=1, max_size=15))
def test_each_delivery_is_stored_once_and_applied_once(engine, deliveries):
    _reset(engine)
    config = make_config()
    with session_scope(engine) as s:
        for email in PEOPLE:
            c = Contact(email=email, first_name="X")
            s.add(c)
            s.flush()
            for name in LISTS:
                join_list(
                    s,
                    c,
                    name,
                    config.lists[name],
                    consent="single_opt_in",
                    source="form",
                    at=BASE - timedelta(days=1),
                )
    sim = BrevoSimulator()
    bodies = {
        i: sim.webhook_payload(EventKind.UNSUBSCRIBED, email, Target("brevo", LISTS[name]), occurred_at=at)
        for i, (email, name, at) in enumerate(POOL)
    }
    with TestClient(create_app(config, engine)) as client:
        for i in deliveries:
            body, ctype = bodies[i]
            answer = client.post(
                f"/hooks/brevo/{BREVO_SECRET}", content=body, headers={"content-type": ctype, **BREVO_AUTH}
            )
            assert answer.status_code == 200
            with Session(engine) as s:  # stored before the answer came back
                assert (
                    s.exec(select(InboxEvent).where(InboxEvent.payload == body.decode())).first() is not None
                )
    with Session(engine) as s:
        assert len(s.exec(select(InboxEvent)).all()) == len(set(deliveries))
    inbox.drain(engine, config)
    inbox.drain(engine, config)  # a second drain finds nothing left to apply
    delivered = {(POOL[i][0], POOL[i][1]) for i in deliveries}
    with Session(engine) as s:
        for c in s.exec(select(Contact)):
            states = {
                m.list_name: m.status for m in s.exec(select(Membership).where(Membership.contact_id == c.id))
            }
            for name in LISTS:
                expected = "unsubscribed" if (c.email, name) in delivered else "subscribed"
                assert states[name] == expected, (c.email, name)
            assert c.global_opt_out is False
