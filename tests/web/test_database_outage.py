"""A master base that does not answer, or a pool with no free connection, is a prompt 503 with
Retry-After on every route that needs the base: the provider retries, nothing hangs.

The HTTP client gives up after CLIENT_PATIENCE_S: without the timeouts a request waits 130 s
(psycopg's default connect timeout) or 30 s (SQLAlchemy's default pool wait) and the test fails.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from simkit import BrevoSimulator
from sqlmodel import Session
from webfixtures import BREVO_SECRET, BREVO_TOKEN, add_contact

from connectors.contract import EventKind, Target
from connectors.simulators.harness import ThreadedServer
from syncd import db, doi
from syncd.models import Contact
from syncd.web.app import create_app

CLIENT_PATIENCE_S = 20
FAST = db.Timeouts(connect=2, statement=5, pool_checkout=1)
DELIVERY, _ = BrevoSimulator().webhook_payload(
    EventKind.UNSUBSCRIBED, "ana@example.fr", Target("brevo", "12")
)


@pytest.fixture
def silent_database() -> Iterator[str]:
    """A PostgreSQL URL whose address accepts TCP connections and never answers a byte."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # never accepted: the handshake completes, the login never does
        yield f"postgresql+psycopg://syncd:pw@127.0.0.1:{listener.getsockname()[1]}/syncd"


def post_delivery(base: str) -> httpx.Response:
    return httpx.post(
        f"{base}/hooks/brevo/{BREVO_SECRET}",
        content=DELIVERY,
        headers={"content-type": "application/json", "authorization": f"Bearer {BREVO_TOKEN}"},
        timeout=CLIENT_PATIENCE_S,
    )


def test_an_unanswering_database_is_a_503_with_retry_after_on_webhooks_and_readyz(config, silent_database):
    engine = db.make_engine(silent_database, timeouts=FAST)
    try:
        with ThreadedServer(create_app(config, engine)) as srv:
            hook = post_delivery(srv.url)
            ready = httpx.get(f"{srv.url}/readyz", timeout=CLIENT_PATIENCE_S)
            health = httpx.get(f"{srv.url}/healthz", timeout=CLIENT_PATIENCE_S)
    finally:
        engine.dispose()
    assert hook.status_code == 503 and hook.headers["Retry-After"]
    assert ready.status_code == 503 and ready.headers["Retry-After"]
    assert health.status_code == 200


def test_deliveries_waiting_together_for_an_unanswering_database_each_get_a_503(config, silent_database):
    """They share a batch: none of them is acknowledged, and none waits for the others' time-outs."""
    engine = db.make_engine(silent_database, timeouts=FAST)
    try:
        with ThreadedServer(create_app(config, engine)) as srv, ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: post_delivery(srv.url), range(4)))
    finally:
        engine.dispose()
    assert [(r.status_code, bool(r.headers.get("Retry-After"))) for r in answers] == [(503, True)] * 4


def test_an_exhausted_pool_is_a_503_with_retry_after_then_the_retry_is_stored(config, database_url, engine):
    contact_id = add_contact(engine, "ana@example.fr", {"news": "single_opt_in"})
    with Session(engine) as s:
        prefs = f"/prefs/{doi.prefs_token(config, s.get(Contact, contact_id))}"
    small = db.make_engine(database_url, timeouts=FAST, pool_size=2, max_overflow=0)
    try:
        with ThreadedServer(create_app(config, small)) as srv:
            held = [small.connect() for _ in range(2)]  # every pooled connection is busy
            try:
                hook = post_delivery(srv.url)
                ready = httpx.get(f"{srv.url}/readyz", timeout=CLIENT_PATIENCE_S)
                page = httpx.get(f"{srv.url}{prefs}", timeout=CLIENT_PATIENCE_S)
            finally:
                for conn in held:
                    conn.close()
            retried = post_delivery(srv.url)
    finally:
        small.dispose()
    for refused in (hook, ready, page):
        assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert retried.status_code == 200 and retried.json()["status"] == "stored"
