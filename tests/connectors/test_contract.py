"""The connector contract, run against every provider: the official SDK, over HTTP, against its simulator.

Provider-specific behaviour lives in test_brevo.py and test_mailchimp.py; this file says only what
every connector must do, in the master base's terms.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from simkit import BrevoSimulator, MailchimpSimulator

from connectors.brevo import BrevoConnector
from connectors.contract import (
    AuthFailed,
    Connector,
    EventKind,
    MemberPush,
    PayloadError,
    RemoteStatus,
    Target,
    Transient,
)
from connectors.mailchimp import MailchimpConnector

PROVIDERS = {
    "brevo": (BrevoSimulator, BrevoConnector),
    "mailchimp": (MailchimpSimulator, MailchimpConnector),
}


@pytest.fixture(scope="module", params=sorted(PROVIDERS))
def sim(request):
    simulator_cls, _ = PROVIDERS[request.param]
    with simulator_cls() as simulator:
        yield simulator


@pytest.fixture
def fresh(sim):
    """A clean simulator between tests: no faults, no latency, no rate limit, no call log."""
    sim.latency_s = 0
    sim.rate_limit_per_s = None
    sim.reset_calls()
    yield sim
    sim.latency_s = 0
    sim.rate_limit_per_s = None


def connect(sim, **kw) -> Connector:
    _, connector_cls = PROVIDERS[sim.provider]
    kw.setdefault("timeout", 5)
    return connector_cls(sim.api_key, sim.api_url, **kw)


def emails(n: int, prefix: str = "m") -> list[str]:
    return [f"{prefix}{i:05d}@example.fr" for i in range(n)]


def test_the_connector_meets_the_protocol(fresh):
    conn = connect(fresh)
    assert isinstance(conn, Connector)
    assert conn.provider == fresh.provider


def test_pull_pages_through_every_member(fresh):
    target = fresh.create_target("paging")
    fresh.seed(target, [{"email": e, "status": "subscribed", "first_name": "Ana"} for e in emails(2500)])
    pages = list(connect(fresh).pull(target))
    got = [m.email for p in pages for m in p.members]
    assert sorted(got) == emails(2500)
    assert len(set(got)) == 2500, "a member was read twice"
    assert len(pages) >= 3, "the provider's page cap was not used"
    assert pages[-1].cursor and all(p.cursor is None for p in pages[:-1])
    assert all(
        m.status == RemoteStatus.SUBSCRIBED and m.fields.get("first_name") == "Ana"
        for p in pages
        for m in p.members
    )


def test_pull_since_a_cursor_returns_only_changes(fresh):
    target = fresh.create_target("cursor")
    old = datetime.now(UTC) - timedelta(days=2)
    fresh.seed(target, [{"email": e, "status": "subscribed", "changed_at": old} for e in emails(30, "old")])
    conn = connect(fresh)
    cursor = list(conn.pull(target))[-1].cursor
    time.sleep(1.1)  # providers keep second resolution
    conn.upsert(target, [MemberPush("new1@example.fr", fields={"first_name": "Léa"})])
    changed = [m.email for p in conn.pull(target, since=cursor) for m in p.members]
    assert changed == ["new1@example.fr"]


def test_upsert_creates_updates_and_reports_rejected_members(fresh):
    target = fresh.create_target("upsert")
    fresh.seed(target, [{"email": "known@example.fr", "status": "subscribed", "first_name": "Old"}])
    conn = connect(fresh)
    pushes = [MemberPush(e, fields={"first_name": "New"}) for e in emails(620, "u")]
    pushes += [
        MemberPush("known@example.fr", fields={"first_name": "Renamed"}),
        MemberPush("not-an-address", fields={}),
    ]
    result = conn.upsert(target, pushes)
    assert [r.email for r in result.rejected] == ["not-an-address"]
    assert result.rejected[0].reason
    assert sorted(result.done) == sorted(emails(620, "u") + ["known@example.fr"])
    state = fresh.members(target)
    assert state["known@example.fr"].fields["first_name"] == "Renamed"
    assert all(state[e].status == RemoteStatus.SUBSCRIBED for e in emails(620, "u"))
    assert result.calls == fresh.write_calls


def test_remove_takes_members_off_the_target_without_unsubscribing(fresh):
    target = fresh.create_target("remove")
    fresh.seed(target, [{"email": e, "status": "subscribed"} for e in emails(200, "r")])
    result = connect(fresh).remove(target, emails(160, "r"))
    assert sorted(result.done) == emails(160, "r")
    state = fresh.members(target)
    assert (
        sorted(e for e, m in state.items() if m.status == RemoteStatus.SUBSCRIBED) == emails(200, "r")[160:]
    )
    assert not any(fresh.is_blocked(e) for e in emails(200, "r"))


def test_a_rate_limit_storm_is_waited_out_with_nothing_lost_or_sent_twice(fresh):
    target = fresh.create_target("storm")
    fresh.rate_limit_per_s = 4
    if fresh.provider == "brevo":
        # Brevo's push is a handful of calls (one import, its confirming reads): a window of 10 s
        # that allows 3 makes the storm certain however slow the machine is.
        fresh.rate_limit_per_s, fresh.rate_limit_window_s = 0.3, 10
    pushes = [MemberPush(e) for e in emails(1600, "s")]
    conn = connect(fresh, max_retries=20, max_retry_seconds=60)
    result = conn.upsert(target, pushes)
    assert sorted(result.done) == emails(1600, "s") and result.rejected == []
    assert sorted(fresh.members(target)) == emails(1600, "s")
    limited = [c for c in fresh.calls if c.status == 429]
    assert limited, "the storm never happened: the test proves nothing"
    # ``WriteResult.calls`` counts every write attempt, refused ones included: nothing is hidden.
    assert result.calls == fresh.write_calls


def test_server_errors_are_retried_a_bounded_number_of_times(fresh):
    target = fresh.create_target("5xx")
    conn = connect(fresh, max_retries=3, max_retry_seconds=10)
    fresh.fail_next(2, status=503)
    assert conn.upsert(target, [MemberPush("ok@example.fr")]).done == ["ok@example.fr"]
    fresh.fail_next(50, status=503)
    with pytest.raises(Transient):
        conn.upsert(target, [MemberPush("late@example.fr")])
    fresh.fail_next(0)


def test_dropped_connections_are_retried_then_raised(fresh):
    target = fresh.create_target("drops")
    conn = connect(fresh, max_retries=3, max_retry_seconds=10)
    fresh.drop_next(1)
    assert conn.upsert(target, [MemberPush("drop@example.fr")]).done == ["drop@example.fr"]
    fresh.drop_next(50)
    with pytest.raises(Transient):
        list(conn.pull(target))
    fresh.drop_next(0)


def test_a_bad_api_key_is_auth_failed(fresh):
    _, connector_cls = PROVIDERS[fresh.provider]
    target = fresh.create_target("auth")
    bad = connector_cls("wrong-key-us1", fresh.api_url, timeout=5)
    with pytest.raises(AuthFailed):
        list(bad.pull(target))


@pytest.mark.parametrize(
    "kind", [EventKind.UNSUBSCRIBED, EventKind.BOUNCED_HARD, EventKind.COMPLAINED, EventKind.PROFILE_UPDATED]
)
def test_webhook_payloads_parse_into_normalised_events(fresh, kind):
    target = fresh.create_target("hooks")
    body, content_type = fresh.webhook_payload(kind, "Ana@Example.fr", target)
    events = connect(fresh).parse_webhook(body, content_type, {})
    assert [e.kind for e in events] == [kind]
    event = events[0]
    assert event.email == "ana@example.fr"
    assert event.provider == fresh.provider
    assert event.occurred_at.tzinfo is not None
    assert event.dedupe_key
    if kind == EventKind.UNSUBSCRIBED:
        assert event.target == target.list_id


def test_the_same_delivery_has_the_same_dedupe_key(fresh):
    target = fresh.create_target("dedupe")
    body, content_type = fresh.webhook_payload(EventKind.UNSUBSCRIBED, "a@example.fr", target)
    conn = connect(fresh)
    first = conn.parse_webhook(body, content_type, {})
    again = conn.parse_webhook(body, content_type, {})
    assert [e.dedupe_key for e in first] == [e.dedupe_key for e in again]


@pytest.mark.parametrize("body", [b"", b"\xff\xfe garbage", b"{not json", b"type=&fired_at="])
def test_a_malformed_webhook_is_a_payload_error(fresh, body):
    _, content_type = fresh.webhook_payload(
        EventKind.UNSUBSCRIBED, "a@example.fr", Target(fresh.provider, "1")
    )
    with pytest.raises(PayloadError) as info:
        connect(fresh).parse_webhook(body, content_type, {})
    assert str(info.value)


def test_erase_deletes_the_member_for_good(fresh):
    target = fresh.create_target("erase")
    fresh.seed(
        target,
        [
            {"email": "gone@example.fr", "status": "subscribed"},
            {"email": "kept@example.fr", "status": "subscribed"},
        ],
    )
    conn = connect(fresh)
    assert conn.erase(target, "Gone@Example.fr") is True
    assert sorted(fresh.members(target)) == ["kept@example.fr"]
    assert conn.erase(target, "never@example.fr") is False


def _profile_body(sim, email: str, first_name: str) -> tuple[bytes, str]:
    fields = {"fields": {"first_name": first_name}} if sim.provider == "brevo" else {"first_name": first_name}
    return sim.webhook_payload(EventKind.PROFILE_UPDATED, email, sim.create_target("clean"), **fields)


def test_free_text_of_a_webhook_is_cleaned_of_control_characters(fresh):
    body, content_type = _profile_body(fresh, "ana@example.fr", "A\x00na\tB\x1b")
    [event] = connect(fresh).parse_webhook(body, content_type, {})
    assert event.fields["first_name"] == "Ana B"


def test_an_address_holding_a_control_character_is_refused_with_the_reason(fresh):
    body, content_type = _profile_body(fresh, "ana\x00@example.fr", "Ana")
    with pytest.raises(PayloadError, match="control character"):
        connect(fresh).parse_webhook(body, content_type, {})


def test_the_storable_body_holds_no_nul_and_parses_to_the_same_events(fresh):
    body, content_type = _profile_body(fresh, "ana@example.fr", "A\x00na")
    body = body.replace(b"%00", b"\x00")  # a raw NUL byte where the format allows one
    conn = connect(fresh)
    stored = conn.storable_body(body)
    assert "\x00" not in stored
    assert conn.parse_webhook(stored.encode(), content_type, {}) == conn.parse_webhook(body, content_type, {})
