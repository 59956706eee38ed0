"""DESIGN §4 rule 5 as a property: every acknowledged webhook is stored before its 2xx, and a
duplicate delivery has no second effect — whatever the order and the repeats."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simkit import BrevoSimulator
from sqlmodel import Session, SQLModel, select
from starlette.testclient import TestClient
from webfixtures import BREVO_AUTH, BREVO_SECRET, MAILCHIMP_SECRET, make_config

from connectors.contract import EventKind, Target
from syncd import inbox
from syncd.db import session_scope
from syncd.membership import join_list
from syncd.models import Contact, InboxEvent, Membership, utcnow
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


# --- any delivery: 400 with its reason, or stored and then applied; never a 5xx ------------------

AUDIENCE_ID = "a1b2c3d4e5"
NASTY = st.sampled_from(["\x00", "\ud800", "\udfff", "\r\n", "\x1b", "\u2028", "é", "@", "%00", "\\"])
TEXT = st.lists(st.one_of(st.characters(), NASTY), max_size=12).map("".join)
EMAILS = st.one_of(st.sampled_from(PEOPLE), st.sampled_from(["new@example.fr", "x@y"]), TEXT)
MOMENTS = st.integers(min_value=0, max_value=10_000).map(lambda s: BASE + timedelta(seconds=s))

BREVO_ITEMS = st.fixed_dictionaries(
    {
        "event": st.one_of(
            st.sampled_from(
                ["unsubscribed", "hard_bounce", "soft_bounce", "spam", "list_addition", "contact_updated"]
                + ["contact_deleted", "delivered"]
            ),
            TEXT,
        ),
        "email": EMAILS,
        "ts_event": st.one_of(MOMENTS.map(lambda t: int(t.timestamp())), TEXT, st.none()),
    },
    optional={
        "list_id": st.one_of(st.lists(st.sampled_from([12, 13, 99]), max_size=2), TEXT),
        "attributes": st.dictionaries(
            st.sampled_from(["FIRSTNAME", "LASTNAME", "SMS", "EMAIL", "COMPANY"]), st.one_of(TEXT, EMAILS)
        ),
        "reason": TEXT,
        "message-id": TEXT,
        "tag": TEXT,
    },
)
BREVO_BODIES = st.one_of(
    st.lists(BREVO_ITEMS, min_size=1, max_size=4).map(lambda items: json.dumps(items).encode()),
    BREVO_ITEMS.map(lambda item: json.dumps(item).encode()),
    st.binary(max_size=40),
)
MAILCHIMP_FORMS = st.fixed_dictionaries(
    {
        "type": st.one_of(st.sampled_from(["subscribe", "unsubscribe", "profile", "upemail", "cleaned"])),
        "fired_at": st.one_of(MOMENTS.map(lambda t: t.strftime("%Y-%m-%d %H:%M:%S")), TEXT),
        "data[email]": EMAILS,
        "data[list_id]": st.one_of(st.just(AUDIENCE_ID), TEXT),
    },
    optional={
        "data[old_email]": EMAILS,
        "data[new_email]": EMAILS,
        "data[action]": st.sampled_from(["unsub", "delete"]),
        "data[reason]": st.one_of(st.sampled_from(["manual", "abuse", "hard"]), TEXT),
        "data[merges][FNAME]": TEXT,
        "data[merges][LNAME]": TEXT,
        "data[merges][PHONE]": TEXT,
    },
)


def _form_body(form: dict[str, str], raw_nul: bool) -> bytes:
    body = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in form.items()}).encode()
    return body.replace(b"%00", b"\x00") if raw_nul else body


MAILCHIMP_BODIES = st.one_of(
    st.builds(_form_body, MAILCHIMP_FORMS, st.booleans()),
    st.binary(max_size=40),
)


def _seed(engine, config) -> None:
    _reset(engine)
    with session_scope(engine) as s:
        for email in PEOPLE:
            c = Contact(email=email, first_name="X", updated_at=BASE - timedelta(days=2))
            s.add(c)
            s.flush()
            for name in ("news", "offers", "club"):
                join_list(s, c, name, config.lists[name], consent="single_opt_in", source="form", at=BASE)


def _deliver_and_drain(engine, provider: str, bodies: list[bytes]) -> None:
    config = make_config()
    _seed(engine, config)
    path, headers = {
        "brevo": (f"/hooks/brevo/{BREVO_SECRET}", {"content-type": "application/json", **BREVO_AUTH}),
        "mailchimp": (
            f"/hooks/mailchimp/{MAILCHIMP_SECRET}",
            {"content-type": "application/x-www-form-urlencoded"},
        ),
    }[provider]
    with TestClient(create_app(config, engine), raise_server_exceptions=False) as client:
        for body in bodies:
            before = _count(engine)
            answer = client.post(path, content=body, headers=headers)
            assert answer.status_code in (200, 400), (answer.status_code, body, answer.text)
            if answer.status_code == 400:
                assert answer.text.strip(), "a refusal says why"
                assert _count(engine) == before, "nothing is stored from a refused delivery"
            else:
                assert _count(engine) == before + (answer.json()["status"] != "duplicate")
    at = utcnow()
    for attempt in range(1, inbox.MAX_ATTEMPTS + 1):
        inbox.drain(engine, config, now=at)
        at += inbox.backoff(attempt)
    with Session(engine) as s:
        rows = s.exec(select(InboxEvent)).all()
        left = [(r.status, r.error) for r in rows if r.status not in ("done", "ignored")]
    assert left == [], "every stored delivery is applied"


def _count(engine) -> int:
    with Session(engine) as s:
        return len(s.exec(select(InboxEvent)).all())


# A longer run by hand: SYNCD_FUZZ_EXAMPLES=1000 pytest tests/web/test_delivery_properties.py
FUZZ = settings(
    max_examples=int(os.environ.get("SYNCD_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(bodies=st.lists(BREVO_BODIES, min_size=1, max_size=4))
def test_any_brevo_delivery_is_refused_with_a_reason_or_stored_and_applied(engine, bodies):
    _deliver_and_drain(engine, "brevo", bodies)


@FUZZ
@given(bodies=st.lists(MAILCHIMP_BODIES, min_size=1, max_size=4))
def test_any_mailchimp_delivery_is_refused_with_a_reason_or_stored_and_applied(engine, bodies):
    _deliver_and_drain(engine, "mailchimp", bodies)
