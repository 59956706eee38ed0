"""Every delivery is either refused at intake with a 400 that says why, or stored and applied
(LESSONS 12): against the app on a real server, then the real inbox drain."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from urllib.parse import urlencode

import httpx
import pytest
from simkit import MailchimpSimulator
from sqlmodel import Session, select
from webfixtures import AUDIENCE, BREVO_AUTH, BREVO_SECRET, MAILCHIMP_SECRET, add_contact, make_config

from connectors.contract import EventKind, Target
from connectors.simulators.harness import ThreadedServer
from syncd.inbox import MAX_ATTEMPTS, backoff, drain
from syncd.models import Contact, InboxEvent, Membership, utcnow
from syncd.web.app import create_app
from syncd.web.hooks import FailureThrottle

JSON = {"Content-Type": "application/json", **BREVO_AUTH}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CLUB = Target("mailchimp", AUDIENCE)


def brevo_item(event: str, email: str, at: datetime | None = None, **extra) -> dict:
    at = at or utcnow()
    return {"event": event, "email": email, "ts_event": int(at.timestamp()), **extra}


def post_brevo(served, payload, raw: bytes | None = None) -> httpx.Response:
    body = raw if raw is not None else json.dumps(payload).encode()
    return httpx.post(f"{served.url}/hooks/brevo/{BREVO_SECRET}", content=body, headers=JSON, timeout=30)


def post_mailchimp(served, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{served.url}/hooks/mailchimp/{MAILCHIMP_SECRET}", content=body, headers=FORM, timeout=30
    )


def contact(engine, email: str) -> Contact | None:
    with Session(engine) as s:
        return s.exec(select(Contact).where(Contact.email == email)).first()


def lists_of(engine, contact_id: int) -> dict[str, str]:
    with Session(engine) as s:
        rows = s.exec(select(Membership).where(Membership.contact_id == contact_id)).all()
        return {m.list_name: m.status for m in rows}


def inbox(engine) -> list[InboxEvent]:
    with Session(engine) as s:
        return list(s.exec(select(InboxEvent).order_by(InboxEvent.id)).all())


# --- 1. text no database column takes -------------------------------------------------------


def test_a_nul_in_a_brevo_name_is_cleaned_and_the_update_applied(engine, config, served):
    cid = add_contact(engine, "ana@example.fr", {"news": "single_opt_in"}, first_name="Ana")
    item = brevo_item("contact_updated", "ana@example.fr", attributes={"FIRSTNAME": "Ana\u0000ïs"})
    assert post_brevo(served, item).status_code == 200
    assert drain(engine, config) == {"done": 1}
    with Session(engine) as s:
        assert s.get(Contact, cid).first_name == "Anaïs"


def test_a_brevo_batch_mixing_an_unsubscribe_with_a_nul_field_keeps_the_unsubscribe(engine, config, served):
    ana = add_contact(engine, "ana@example.fr", {"news": "single_opt_in", "offers": "single_opt_in"})
    add_contact(engine, "bob@example.fr", {"news": "single_opt_in"}, first_name="Bob")
    batch = [
        brevo_item("unsubscribed", "ana@example.fr", list_id=[12]),
        brevo_item("contact_updated", "bob@example.fr", attributes={"FIRSTNAME": "Bo\u0000bby"}),
    ]
    assert post_brevo(served, batch).json() == {"status": "stored", "events": 2}
    assert drain(engine, config) == {"done": 1}
    assert lists_of(engine, ana) == {"news": "unsubscribed", "offers": "subscribed"}
    assert contact(engine, "bob@example.fr").first_name == "Bobby"


def test_a_lone_surrogate_in_a_name_is_replaced_and_the_update_applied(engine, config, served):
    cid = add_contact(engine, "ana@example.fr", {"news": "single_opt_in"}, first_name="Ana")
    raw = (
        b'{"event": "contact_updated", "email": "ana@example.fr", "ts_event": %d,'
        b' "attributes": {"FIRSTNAME": "Zo\\ud800e"}}' % int(utcnow().timestamp())
    )
    assert post_brevo(served, None, raw=raw).status_code == 200
    assert drain(engine, config) == {"done": 1}
    with Session(engine) as s:
        assert s.get(Contact, cid).first_name == "Zo\ufffde"


def test_a_raw_nul_byte_in_a_mailchimp_form_is_stored_and_applied(engine, config, served):
    cid = add_contact(engine, "ana@example.fr", {"club": "double_opt_in"}, first_name="Ana")
    body = urlencode(
        {
            "type": "profile",
            "fired_at": utcnow().strftime("%Y-%m-%d %H:%M:%S"),
            "data[email]": "ana@example.fr",
            "data[list_id]": AUDIENCE,
            "data[merges][FNAME]": "ANUL",
        }
    ).encode()
    body = body.replace(b"ANUL", b"Ana\x00\xc3\xafs")  # a raw NUL byte, as a client could send it
    r = post_mailchimp(served, body)
    assert r.status_code == 200, r.text
    assert drain(engine, config) == {"done": 1}
    with Session(engine) as s:
        assert s.get(Contact, cid).first_name == "Anaïs"
    [row] = inbox(engine)
    assert "%00" in row.payload and "\x00" not in row.payload  # the same form field, storable


# --- 3. no 500 at intake ------------------------------------------------------------------


def test_json_nested_too_deeply_is_refused_with_400(engine, served):
    r = post_brevo(served, None, raw=b"[" * 5000 + b"]" * 5000)
    assert r.status_code == 400 and "nested too deeply" in r.text
    assert inbox(engine) == []


@pytest.mark.parametrize("ts_event", [b"1e18", b"1e13", b"9223372036854775808"])
def test_a_time_out_of_any_calendar_is_refused_with_400(engine, served, ts_event):
    raw = b'{"event": "unsubscribed", "email": "ana@example.fr", "ts_event": %s, "list_id": [12]}' % ts_event
    r = post_brevo(served, None, raw=raw)
    assert r.status_code == 400 and "'ts_event'" in r.text
    assert inbox(engine) == []


@pytest.mark.parametrize("email", ["\\ud800@example.fr", "ana\\u0000@example.fr", "ana@", "@example.fr"])
def test_an_address_that_cannot_be_one_is_refused_with_400_and_the_reason(engine, served, email):
    raw = (
        b'{"event": "unsubscribed", "email": "%s", "ts_event": 1764000000, "list_id": [12]}' % email.encode()
    )
    r = post_brevo(served, None, raw=raw)
    assert r.status_code == 400 and "'email'" in r.text
    assert inbox(engine) == []


def test_a_lone_surrogate_in_a_message_id_is_cleaned_and_the_event_applied(engine, config, served):
    cid = add_contact(engine, "ana@example.fr", {"news": "single_opt_in"})
    raw = (
        b'{"event": "hard_bounce", "email": "ana@example.fr", "ts_event": 1764000000,'
        b' "message-id": "<\\udfff@mail>"}'
    )
    assert post_brevo(served, None, raw=raw).status_code == 200
    assert drain(engine, config) == {"done": 1}
    assert lists_of(engine, cid) == {"news": "cleaned"}


def test_a_batch_item_with_an_impossible_address_is_skipped_and_the_others_applied(engine, config, served):
    ana = add_contact(engine, "ana@example.fr", {"news": "single_opt_in"})
    batch = [brevo_item("unsubscribed", "not an address", list_id=[12])]
    batch.append(brevo_item("unsubscribed", "ana@example.fr", list_id=[12]))
    r = post_brevo(served, batch)
    assert r.status_code == 200
    assert r.json()["events"] == 1 and "item 0" in r.json()["skipped"][0]
    assert drain(engine, config) == {"done": 1}
    assert lists_of(engine, ana) == {"news": "unsubscribed"}


# --- 2. order ----------------------------------------------------------------------------------


def test_a_mailchimp_profile_before_its_upemail_waits_and_then_applies(engine, config, served):
    cid = add_contact(engine, "ana@example.fr", {"club": "double_opt_in"}, first_name="Ana")
    sim = MailchimpSimulator()
    changed, edited = utcnow() - timedelta(minutes=2), utcnow() - timedelta(minutes=1)
    profile, _ = sim.webhook_payload(
        EventKind.PROFILE_UPDATED, "ana.new@example.fr", CLUB, fired_at=edited, first_name="Anaïs"
    )
    upemail, _ = sim.webhook_payload(
        EventKind.EMAIL_CHANGED, "ana@example.fr", CLUB, fired_at=changed, new_email="ana.new@example.fr"
    )
    assert post_mailchimp(served, profile).status_code == 200  # the later event arrives first
    assert post_mailchimp(served, upemail).status_code == 200
    at = utcnow()
    assert drain(engine, config, now=at) == {"deferred": 1, "done": 1}
    assert drain(engine, config, now=at + backoff(1)) == {"done": 1}
    with Session(engine) as s:
        c = s.get(Contact, cid)
        assert (c.email, c.first_name) == ("ana.new@example.fr", "Anaïs")


def test_an_event_that_never_becomes_applicable_ends_visibly(engine, config, served):
    sim = MailchimpSimulator()
    body, _ = sim.webhook_payload(EventKind.PROFILE_UPDATED, "nobody@example.fr", CLUB, first_name="X")
    assert post_mailchimp(served, body).status_code == 200
    at = utcnow()
    for attempt in range(1, MAX_ATTEMPTS):
        assert drain(engine, config, now=at) == {"deferred": 1}
        at += backoff(attempt)
    assert drain(engine, config, now=at) == {"done": 1}
    [row] = inbox(engine)
    assert row.status == "done" and row.attempts == MAX_ATTEMPTS
    assert row.error == f"settled after {MAX_ATTEMPTS} attempts: ignored:unknown_contact"


# --- 12. webhook authentication ---------------------------------------------------------------


def test_a_brevo_delivery_without_the_bearer_token_is_refused_by_default(engine):
    config = make_config(providers={"brevo": {"webhook_token": None}})
    body = json.dumps(brevo_item("unsubscribed", "ana@example.fr", list_id=[12])).encode()
    with ThreadedServer(create_app(config, engine)) as srv:
        url = f"{srv.url}/hooks/brevo/{BREVO_SECRET}"
        assert httpx.post(url, content=body, headers=JSON).status_code == 401
        plain = {"Content-Type": "application/json"}
        assert httpx.post(url, content=body, headers=plain).status_code == 401
    assert inbox(engine) == []
    opted_out = make_config(providers={"brevo": {"webhook_token": None, "webhook_auth": "url_secret"}})
    with ThreadedServer(create_app(opted_out, engine)) as srv:
        url = f"{srv.url}/hooks/brevo/{BREVO_SECRET}"
        assert httpx.post(url, content=body, headers={"Content-Type": "application/json"}).status_code == 200


# --- 9. wrong secrets are throttled -------------------------------------------------------------


def test_repeated_wrong_secrets_from_one_address_are_throttled(engine, served):
    body = json.dumps(brevo_item("unsubscribed", "ana@example.fr", list_id=[12])).encode()
    with httpx.Client(base_url=served.url, timeout=30) as http:
        answers = [http.post(f"/hooks/brevo/guess-{i}", content=body, headers=JSON) for i in range(40)]
        assert {r.status_code for r in answers[:30]} == {404}
        assert {r.status_code for r in answers[30:]} == {429}
        assert int(answers[-1].headers["Retry-After"]) >= 1
        # Over its budget, the address is refused whatever it sends, the right secret included.
        assert http.post(f"/hooks/brevo/{BREVO_SECRET}", content=body, headers=JSON).status_code == 429
    assert inbox(engine) == []


def test_a_throttled_address_may_try_again_once_its_budget_refills():
    now = [1000.0]
    throttle = FailureThrottle(burst=3, refill_s=2.0, max_clients=2, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("198.51.100.7") is None
        throttle.failed("198.51.100.7")
    assert throttle.retry_after("198.51.100.7") == 2
    assert throttle.retry_after("203.0.113.9") is None  # counted per address
    now[0] += 2.0
    assert throttle.retry_after("198.51.100.7") is None


def test_the_throttle_forgets_the_least_recent_address_beyond_its_size():
    throttle = FailureThrottle(burst=1, refill_s=60.0, max_clients=2, clock=lambda: 0.0)
    throttle.failed("198.51.100.7")
    assert throttle.retry_after("198.51.100.7") is not None
    throttle.failed("203.0.113.9")
    throttle.failed("192.0.2.1")
    assert throttle.retry_after("198.51.100.7") is None  # memory stays bounded
    assert throttle.retry_after("192.0.2.1") is not None
