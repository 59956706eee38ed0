"""Webhook receivers, at the HTTP level: what is stored, and what each answer tells the provider."""

from __future__ import annotations

import json
import time

import pytest
from simkit import BrevoSimulator, MailchimpSimulator
from sqlmodel import Session, select
from starlette.testclient import TestClient
from webfixtures import AUDIENCE, BREVO_AUTH, BREVO_SECRET, MAILCHIMP_SECRET, make_config

from connectors.contract import EventKind, Target
from syncd import db
from syncd.models import InboxEvent
from syncd.web.app import create_app

BREVO = f"/hooks/brevo/{BREVO_SECRET}"
MAILCHIMP = f"/hooks/mailchimp/{MAILCHIMP_SECRET}"
NEWS = Target("brevo", "12")


def inbox(engine) -> list[InboxEvent]:
    with Session(engine) as s:
        return list(s.exec(select(InboxEvent).order_by(InboxEvent.id)).all())


def brevo_body(kind=EventKind.UNSUBSCRIBED, email="ana@example.fr", target=NEWS, **extra) -> bytes:
    body, _ = BrevoSimulator().webhook_payload(kind, email, target, **extra)
    return body


def mailchimp_body(kind=EventKind.UNSUBSCRIBED, email="ana@example.fr", **extra) -> bytes:
    body, _ = MailchimpSimulator().webhook_payload(kind, email, Target("mailchimp", AUDIENCE), **extra)
    return body


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json", **BREVO_AUTH}


def test_brevo_delivery_is_stored_raw_before_the_answer(client, engine):
    body = brevo_body()
    r = client.post(BREVO, content=body, headers=JSON)
    assert r.status_code == 200 and r.json() == {"status": "stored", "events": 1}
    [row] = inbox(engine)
    assert (row.provider, row.status, row.payload) == ("brevo", "new", body.decode())
    assert row.dedupe_key.startswith("brevo:")


def test_mailchimp_delivery_is_stored_raw(client, engine):
    body = mailchimp_body()
    r = client.post(MAILCHIMP, content=body, headers=FORM)
    assert r.status_code == 200
    [row] = inbox(engine)
    assert (row.provider, row.content_type, row.payload) == ("mailchimp", FORM["Content-Type"], body.decode())


def test_mailchimp_registration_check_gets_200(client, engine):
    assert client.get(MAILCHIMP).status_code == 200
    assert inbox(engine) == []


@pytest.mark.parametrize(
    "path", ["/hooks/brevo/wrong", "/hooks/mailchimp/wrong", f"/hooks/brevo/{MAILCHIMP_SECRET}"]
)
def test_wrong_secret_is_404_and_nothing_is_stored(client, engine, path):
    r = client.post(path, content=brevo_body(), headers=JSON)
    assert r.status_code == 404
    assert client.get("/hooks/mailchimp/wrong").status_code == 404
    assert inbox(engine) == []


def test_provider_without_a_secret_has_no_endpoint(engine):
    config = make_config(providers={"brevo": {"webhook_secret": None}})
    with TestClient(create_app(config, engine)) as c:
        assert c.post("/hooks/brevo/None", content=brevo_body(), headers=JSON).status_code == 404
        assert c.post("/hooks/brevo/", content=brevo_body(), headers=JSON).status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "headers", "message"),
    [
        (BREVO, b"{not json", JSON, "not JSON"),
        (BREVO, json.dumps({"event": "unsubscribe"}).encode(), JSON, "email"),
        (BREVO, json.dumps({"event": "teleported", "email": "a@b.fr"}).encode(), JSON, "unknown value"),
        (MAILCHIMP, b"type=unsubscribe&fired_at=2026-01-01+00:00:00", FORM, "data[email]"),
        (MAILCHIMP, b'{"type": "unsubscribe"}', JSON, "form-encoded"),
    ],
)
def test_malformed_delivery_is_400_with_the_reason(client, engine, path, body, headers, message):
    r = client.post(path, content=body, headers=headers)
    assert r.status_code == 400
    assert message in r.text
    assert inbox(engine) == []


def test_oversized_body_is_413(client, engine):
    r = client.post(BREVO, content=b"[" + b" " * 1_100_000 + b"]", headers=JSON)
    assert r.status_code == 413
    assert inbox(engine) == []


def test_duplicate_delivery_is_acknowledged_once_stored_once(client, engine):
    body = mailchimp_body(EventKind.BOUNCED_HARD)
    first = client.post(MAILCHIMP, content=body, headers=FORM)
    again = client.post(MAILCHIMP, content=body, headers=FORM)
    assert (first.json()["status"], again.json()["status"]) == ("stored", "duplicate")
    assert again.status_code == 200
    assert len(inbox(engine)) == 1


def test_brevo_echo_of_our_own_write_is_kept_as_ignored(engine):
    config = make_config(providers={"brevo": {"api_key_name": "syncd"}})
    body = brevo_body(EventKind.PROFILE_UPDATED, fields={"first_name": "Ana"}, api_key_name="syncd")
    with TestClient(create_app(config, engine)) as c:
        assert c.post(BREVO, content=body, headers=JSON).json()["status"] == "ignored"
    [row] = inbox(engine)
    assert row.status == "ignored" and row.processed_at is not None


def test_event_syncd_does_not_act_on_is_still_kept(client, engine):
    body = json.dumps({"event": "delivered", "email": "a@example.fr", "ts_event": 1_700_000_000}).encode()
    assert client.post(BREVO, content=body, headers=JSON).json() == {"status": "ignored", "events": 0}
    assert [r.status for r in inbox(engine)] == ["ignored"]


def test_brevo_bearer_token_is_required_when_configured(engine):
    config = make_config(providers={"brevo": {"webhook_token": "tok-123"}})
    with TestClient(create_app(config, engine)) as c:
        assert c.post(BREVO, content=brevo_body(), headers=JSON).status_code == 401
        bad = {**JSON, "Authorization": "Bearer tok-999"}
        assert c.post(BREVO, content=brevo_body(), headers=bad).status_code == 401
        good = {**JSON, "Authorization": "Bearer tok-123"}
        assert c.post(BREVO, content=brevo_body(), headers=good).status_code == 200
    assert len(inbox(engine)) == 1


def test_mailchimp_signature_is_checked_when_a_signing_secret_is_set(engine):
    config = make_config(providers={"mailchimp": {"signing_secret": "sign-me"}})
    sim = MailchimpSimulator()
    body = mailchimp_body()
    with TestClient(create_app(config, engine)) as c:
        assert c.post(MAILCHIMP, content=body, headers=FORM).status_code == 401
        forged = {**FORM, "X-Mailchimp-Signature": sim.sign(body, "another-secret")}
        assert c.post(MAILCHIMP, content=body, headers=forged).status_code == 401
        stale = {**FORM, "X-Mailchimp-Signature": sim.sign(body, "sign-me", t=int(time.time()) - 3600)}
        assert c.post(MAILCHIMP, content=body, headers=stale).status_code == 401
        signed = {**FORM, "X-Mailchimp-Signature": sim.sign(body, "sign-me")}
        assert c.post(MAILCHIMP, content=body, headers=signed).status_code == 200
    assert len(inbox(engine)) == 1


def unreachable_engine(engine, tmp_path):
    if engine.dialect.name == "postgresql":
        return db.make_engine(
            "postgresql+psycopg://postgres@127.0.0.1:1/nowhere", connect_args={"connect_timeout": 2}
        )
    return db.make_engine(f"sqlite:///{tmp_path}/missing-dir/syncd.db")


def test_database_down_is_503_then_the_retry_is_stored(engine, config, tmp_path):
    body = brevo_body()
    down = unreachable_engine(engine, tmp_path)
    with TestClient(create_app(config, down)) as c:
        r = c.post(BREVO, content=body, headers=JSON)
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert c.get("/readyz").status_code == 503
        assert c.get("/healthz").status_code == 200
    down.dispose()
    with TestClient(create_app(config, engine)) as c:  # the provider's retry, once the base is back
        assert c.post(BREVO, content=body, headers=JSON).status_code == 200
        assert c.get("/readyz").status_code == 200
    assert len(inbox(engine)) == 1


def test_metrics_count_received_deliveries(client):
    before = _metric(client, 'syncd_webhook_events_received_total{provider="mailchimp"}')
    client.post(MAILCHIMP, content=mailchimp_body(EventKind.PROFILE_UPDATED, first_name="Zoé"), headers=FORM)
    assert _metric(client, 'syncd_webhook_events_received_total{provider="mailchimp"}') == before + 1
    text = client.get("/metrics").text
    for name in (
        "syncd_sync_runs",
        "syncd_api_calls",
        "syncd_doi_sent",
        "syncd_doi_confirmed",
        "syncd_doi_expired",
    ):
        assert f"# TYPE {name}" in text


def _metric(client, sample: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0
