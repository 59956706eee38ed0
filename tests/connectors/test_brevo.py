"""Brevo connector against the Brevo simulator, through the official SDK over real HTTP."""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from simkit import BrevoSimulator

from connectors.brevo import BrevoConnector
from connectors.collector import BULK_GC_THRESHOLD
from connectors.contract import (
    AuthFailed,
    BlockRecord,
    EventKind,
    MemberPush,
    NotFound,
    PayloadError,
    RateLimited,
    RemoteStatus,
    Rename,
    Target,
    Transient,
)


@pytest.fixture
def sim():
    with BrevoSimulator(api_key="sim-key") as s:
        yield s


def connector(sim: BrevoSimulator, **kw) -> BrevoConnector:
    kw.setdefault("timeout", 5.0)
    return BrevoConnector(sim.api_key, sim.api_url, **kw)


def people(n: int, prefix: str = "p", **extra) -> list[dict]:
    return [{"email": f"{prefix}{i}@example.com", "first_name": f"F{i}", **extra} for i in range(n)]


# --- reading --------------------------------------------------------------------------------


def test_pull_pages_through_ten_thousand_members(sim):
    target = sim.create_target("big")
    sim.seed(target, people(10_000))
    conn = connector(sim)

    pages = list(conn.pull(target))

    emails = [m.email for p in pages for m in p.members]
    assert len(emails) == len(set(emails)) == 10_000
    assert all(len(p.members) <= 500 for p in pages)
    assert [p.cursor is not None for p in pages] == [False] * (len(pages) - 1) + [True]
    assert conn.stats.calls["GET /contacts/lists/{id}/contacts"] == 20


def test_changed_records_pages_through_the_account_from_a_time_whatever_the_list(sim):
    news, offers = sim.create_target("news"), sim.create_target("offers")
    before = datetime.now(UTC) - timedelta(days=1)
    sim.seed(news, people(1_500, "old", changed_at=before - timedelta(days=1)))
    sim.seed(news, people(1_200, "n"))
    sim.seed(offers, people(900, "o"))
    conn = connector(sim)

    pages = list(conn.changed_records(before.strftime("%Y-%m-%dT%H:%M:%S.000Z")))

    emails = [m.email for page in pages for m in page]
    assert sorted(emails) == sorted(
        [f"n{i}@example.com" for i in range(1_200)] + [f"o{i}@example.com" for i in range(900)]
    )
    assert all(len(page) <= 1_000 for page in pages)
    ids = {m.remote_id for page in pages for m in page}
    assert ids == {str(sim.contact(e)["id"]) for e in emails}
    assert conn.stats.calls["GET /contacts"] == 3


def test_pull_maps_status_fields_and_lower_cases(sim):
    target = sim.create_target("map")
    sim.seed(
        target,
        [
            {"email": "Ann@Example.com", "first_name": "Ann", "company": "ACME", "phone": "+33612345678"},
            {"email": "bob@example.com", "status": "unsubscribed"},
            {"email": "cy@example.com", "status": "blocked"},
        ],
    )
    members = {m.email: m for p in connector(sim).pull(target) for m in p.members}

    assert members["ann@example.com"].status is RemoteStatus.SUBSCRIBED
    assert members["ann@example.com"].fields == {
        "first_name": "Ann",
        "company": "ACME",
        "phone": "+33612345678",
    }
    assert members["bob@example.com"].status is RemoteStatus.UNSUBSCRIBED
    assert members["cy@example.com"].status is RemoteStatus.BLOCKED
    assert members == sim.members(target)


def test_pull_since_cursor_returns_only_changes(sim):
    target = sim.create_target("inc")
    old = datetime.now(UTC) - timedelta(days=2)
    sim.seed(target, people(30, changed_at=old))
    conn = connector(sim)
    cursor = list(conn.pull(target))[-1].cursor

    sim.unsubscribe("p3@example.com", target)
    changed = [m for p in conn.pull(target, cursor) for m in p.members]

    assert [(m.email, m.status) for m in changed] == [("p3@example.com", RemoteStatus.UNSUBSCRIBED)]


def test_pull_unknown_list_is_not_found(sim):
    with pytest.raises(NotFound):
        list(connector(sim).pull(Target("brevo", "999")))


def test_simulator_enforces_page_and_batch_caps(sim):
    import httpx

    target = sim.create_target("caps")
    h = {"api-key": sim.api_key}
    r = httpx.get(f"{sim.api_url}/contacts/lists/{target.list_id}/contacts?limit=501", headers=h)
    assert r.status_code == 400 and r.json()["code"] == "out_of_range"
    emails = [f"x{i}@example.com" for i in range(151)]
    r = httpx.post(
        f"{sim.api_url}/contacts/lists/{target.list_id}/contacts/add", json={"emails": emails}, headers=h
    )
    assert r.status_code == 400
    r = httpx.get(f"{sim.api_url}/contacts", headers={"api-key": "wrong"})
    assert r.status_code == 401 and r.json() == {"code": "unauthorized", "message": "Key not found"}


# --- writing --------------------------------------------------------------------------------


def test_upsert_creates_and_updates_and_reports_rejections(sim):
    target = sim.create_target("up")
    sim.seed(target, [{"email": "old@example.com", "first_name": "Old"}])
    conn = connector(sim)
    pushes = [MemberPush(f"new{i}@example.com", fields={"first_name": f"N{i}"}) for i in range(20)]
    pushes += [
        MemberPush("OLD@example.com", fields={"first_name": "Renamed", "company": "ACME"}),
        MemberPush("not-an-address"),  # refused before any call
        MemberPush("a..b@example.com"),  # refused by Brevo during the import
    ]

    result = conn.upsert(target, pushes)

    members = sim.members(target)
    assert sorted(result.done) == sorted([f"new{i}@example.com" for i in range(20)] + ["old@example.com"])
    assert {(r.email, r.code) for r in result.rejected} == {
        ("not-an-address", "invalid_email"),
        ("a..b@example.com", "import_rejected"),
    }
    assert members["old@example.com"].fields == {"first_name": "Renamed", "company": "ACME"}
    assert len(members) == 21
    assert result.calls == 1 == sim.write_calls  # one import


def test_small_upsert_goes_direct_and_reports_brevo_reason(sim):
    target = sim.create_target("small")
    conn = connector(sim)

    result = conn.upsert(target, [MemberPush("one@example.com"), MemberPush("x..y@example.com")])

    assert result.done == ["one@example.com"]
    assert [(r.email, r.code, r.reason) for r in result.rejected] == [
        ("x..y@example.com", "invalid_parameter", "Invalid email address")
    ]
    assert result.calls == 2


@pytest.mark.parametrize("n", [1, 10], ids=["direct", "import"])
def test_upsert_does_not_silently_unblock_a_blacklisted_contact(sim, n):
    target = sim.create_target("bl")
    sim.seed(target, [{"email": "blocked@example.com", "status": "blocked"}])
    pushes = [MemberPush("blocked@example.com", fields={"first_name": "B"})]
    pushes += [MemberPush(f"o{i}@example.com") for i in range(n - 1)]

    result = connector(sim).upsert(target, pushes)

    assert "blocked@example.com" in result.done
    assert sim.is_blocked("blocked@example.com")
    assert sim.members(target)["blocked@example.com"].status is RemoteStatus.BLOCKED


@pytest.mark.parametrize("n", [1, 10], ids=["direct", "import"])
def test_upsert_reports_the_blacklisted_contacts_its_read_back_shows(sim, n):
    target = sim.create_target("seen")
    sim.seed(target, [{"email": "ok@example.com"}])
    conn = connector(sim)
    conn.set_blocked("ok@example.com", True)  # blocked while on a list the push does not name
    pushes = [MemberPush("ok@example.com")] + [MemberPush(f"o{i}@example.com") for i in range(n - 1)]
    other = sim.create_target("other")

    result = conn.upsert(other, pushes)

    assert sorted(result.done) == sorted(p.email for p in pushes)
    assert [(m.email, m.status) for m in result.seen] == [("ok@example.com", RemoteStatus.BLOCKED)]


def test_the_read_back_paces_the_cycle_collector_and_puts_it_back_even_when_it_fails(sim):
    before = gc.get_threshold()
    target = sim.create_target("paced")
    pages = f"/v3/contacts/lists/{target.list_id}/contacts"
    during: list[tuple[int, ...]] = []
    sim.on_call("GET", pages, lambda: during.append(gc.get_threshold()))
    pushes = [MemberPush(f"g{i}@example.com") for i in range(1_200)]  # three pages

    assert len(connector(sim, concurrency=4).upsert(target, pushes).done) == 1_200
    assert during == [(max(BULK_GC_THRESHOLD, before[0]), *before[1:])]
    assert gc.get_threshold() == before

    # The first page answered, the next ones refused: the read-back raises, the pace is restored.
    sim.on_call("GET", pages, lambda: sim.fail_next(50, status=503))
    with pytest.raises(Transient):
        connector(sim, max_retries=1, max_retry_seconds=5).upsert(target, pushes)
    assert gc.get_threshold() == before
    sim.fail_next(0)


def test_block_record_reads_complaints_clicks_and_account_user_blocks_from_brevos_record(sim):
    target = sim.create_target("record")
    sim.seed(target, [{"email": f"{n}@example.com"} for n in ("click", "spam", "admin")])
    conn = connector(sim)
    list_id = int(target.list_id)
    before = datetime.now(UTC) - timedelta(seconds=1)

    sim.contact_unsubscribes("click@example.com", list_id)  # the contact's own click, by campaign
    sim.contact_complains("spam@example.com", list_id)
    conn.set_blocked("admin@example.com", True)

    click = conn.block_record("click@example.com")
    assert (click.complained_at, click.blocked_by_user_at) == (None, None)
    # The simulator names a click's campaign by the list it was sent to.
    assert [campaign for campaign, _ in click.clicks] == [str(list_id)] and click.clicks[0][1] >= before
    spam, admin = conn.block_record("spam@example.com"), conn.block_record("admin@example.com")
    assert spam.complained_at is not None and spam.complained_at >= before
    assert spam.blocked_by_user_at is None
    assert admin.blocked_by_user_at is not None and admin.blocked_by_user_at >= before
    assert admin.complained_at is None
    assert conn.block_record("nobody@example.com") == BlockRecord()


def test_rename_takes_a_second_record_under_the_former_address_off_when_the_persons_has_the_new_one(sim):
    """The record syncd knows by its id is already under the new address (an account user changed
    it) while a push under the former address created a second record on the list: that record
    answers "taken" (the writer takes it off the list), not "missing" (it would stay there)."""
    conn = connector(sim)
    news = sim.create_target("news")
    sim.seed(news, [{"email": "ana@example.com"}])
    known = str(sim.contact("ana@example.com")["id"])
    assert conn.rename(news, "ana@example.com", "ana.new@example.com", known).outcome is Rename.RENAMED
    assert conn.rename(news, "ana@example.com", "ana.new@example.com", known).outcome is Rename.MISSING

    sim.seed(news, [{"email": "ana@example.com"}])  # a second record, under the former address
    assert str(sim.contact("ana@example.com")["id"]) != known
    assert conn.rename(news, "ana@example.com", "ana.new@example.com", known).outcome is Rename.TAKEN
    assert sim.contact("ana.new@example.com")["id"] == int(known)  # neither record was changed
    assert sim.contact("ana@example.com") is not None


def test_set_blocked_sets_and_lifts_the_blacklist(sim):
    target = sim.create_target("sb")
    sim.seed(target, [{"email": "a@example.com"}])
    conn = connector(sim)
    conn.set_blocked("a@example.com", True)
    assert sim.is_blocked("a@example.com")
    conn.set_blocked("a@example.com", False)
    assert not sim.is_blocked("a@example.com")


def test_upsert_into_missing_list_is_not_found(sim):
    with pytest.raises(NotFound):
        connector(sim).upsert(Target("brevo", "999"), [MemberPush("a@example.com")])


def test_remove_takes_members_off_in_batches_without_unsubscribing(sim):
    target = sim.create_target("rm")
    other = sim.create_target("other")
    sim.seed(target, people(400))
    sim.seed(other, people(1))
    conn = connector(sim)

    result = conn.remove(target, [f"p{i}@example.com" for i in range(310)] + ["ghost@example.com"])

    assert result.calls == 3  # 311 emails, 150 a call
    assert len(sim.members(target)) == 90
    assert sim.members(other)["p0@example.com"].status is RemoteStatus.SUBSCRIBED
    assert not sim.is_blocked("p0@example.com")


# --- failures -------------------------------------------------------------------------------


def test_429_storm_waits_as_told_and_loses_or_doubles_nothing(sim):
    # 5 writes per 2 s window: the 10 removes overrun it unless each took over 300 ms, so the
    # storm happens on a slow or loaded machine too.
    sim.rate_limit_per_s = 2.5
    sim.rate_limit_window_s = 2.0
    target = sim.create_target("storm")
    sim.seed(target, people(2_000))
    conn = connector(sim, concurrency=4)

    pulled = [m.email for p in conn.pull(target) for m in p.members]
    removed = conn.remove(target, [f"p{i}@example.com" for i in range(1_500)])

    assert len(pulled) == len(set(pulled)) == 2_000
    assert conn.stats.rate_limited > 0 and conn.stats.retries >= conn.stats.rate_limited
    assert len(removed.done) == 1_500 and not removed.rejected
    assert len(sim.members(target)) == 500
    accepted = [c for c in sim.calls if c.path.endswith("/contacts/remove") and c.status == 201]
    assert len(accepted) == 10  # each batch applied exactly once
    assert any(c.status == 429 for c in sim.calls)


def test_429_until_budget_exhausted_raises_rate_limited(sim):
    sim.fail_reset_s = 0.01
    sim.fail_next(10, status=429)
    conn = connector(sim, max_retries=2)
    with pytest.raises(RateLimited) as err:
        list(conn.pull(sim.create_target("x")))
    assert err.value.wait_s == pytest.approx(0.01)
    assert conn.stats.rate_limited == 3


def test_a_list_page_refused_with_429_is_read_again_after_the_wait_brevo_gives(sim):
    sim.fail_reset_s = 0.01
    target = sim.create_target("paged")
    sim.seed(target, people(3))
    conn = connector(sim, max_retries=2)
    conn.presence(target)  # Brevo's time is known: the read's first call is its first page
    sim.fail_next(2, status=429)
    assert len(list(conn.pull(target))[0].members) == 3
    assert conn.stats.rate_limited == 2 and conn.stats.calls["GET /contacts/lists/{id}/contacts"] == 3

    sim.fail_next(10, status=429)
    with pytest.raises(RateLimited) as err:
        list(conn.pull(target))
    assert err.value.wait_s == pytest.approx(0.01)


def test_a_list_page_that_is_not_json_is_read_again_then_transient(sim):
    # A gateway in front of the API can answer 200 with a page of its own.
    target = sim.create_target("gateway")
    sim.seed(target, people(3))
    conn = connector(sim, max_retries=2, max_retry_seconds=10)
    conn.presence(target)
    sim.fail_next(1, status=200, body=b"<html>busy</html>")
    assert len(list(conn.pull(target))[0].members) == 3
    assert conn.stats.retries == 1

    sim.fail_next(10, status=200, body=b"[]")
    with pytest.raises(Transient, match="not a JSON object"):
        list(conn.pull(target))


def test_5xx_is_retried_then_succeeds(sim):
    target = sim.create_target("5xx")
    sim.seed(target, people(3))
    sim.fail_next(2, status=502)
    conn = connector(sim)
    assert len(list(conn.pull(target))[0].members) == 3
    assert conn.stats.retries == 2


def test_5xx_and_dropped_connections_are_bounded_then_transient(sim):
    target = sim.create_target("down")
    sim.fail_next(50, status=503)
    with pytest.raises(Transient) as err:
        list(connector(sim, max_retries=2).pull(target))
    assert err.value.status == 503

    sim.fail_next(0)
    sim.drop_next(50)
    conn = connector(sim, max_retries=2)
    with pytest.raises(Transient):
        conn.remove(target, ["a@example.com"])
    assert conn.stats.calls["POST /contacts/lists/{id}/contacts/remove"] == 3


def test_dropped_connection_is_retried_and_the_write_lands_once(sim):
    target = sim.create_target("drop")
    sim.seed(target, people(2))
    sim.drop_next(1)
    conn = connector(sim)
    result = conn.remove(target, ["p0@example.com"])
    assert result.done == ["p0@example.com"] and conn.stats.retries == 1
    assert list(sim.members(target)) == ["p1@example.com"]


def test_bad_key_is_auth_failed(sim):
    with pytest.raises(AuthFailed):
        list(BrevoConnector("wrong", sim.api_url).pull(sim.create_target("x")))


# --- transactional mail ---------------------------------------------------------------------


def test_send_email_lands_in_outbox_with_headers(sim):
    message_id = connector(sim).send_email(
        sender_email="news@example.fr",
        sender_name="Example",
        to_email="ann@example.com",
        to_name="Ann",
        subject="Confirm",
        html="<p>Confirm</p>",
        text="Confirm",
        headers={"List-Unsubscribe": "<https://lists.example.fr/u/abc>"},
    )
    mail = sim.outbox[-1]
    assert mail["messageId"] == message_id
    assert mail["to"] == [{"email": "ann@example.com", "name": "Ann"}]
    assert mail["headers"] == {"List-Unsubscribe": "<https://lists.example.fr/u/abc>"}
    assert (mail["subject"], mail["textContent"]) == ("Confirm", "Confirm")


# --- webhooks -------------------------------------------------------------------------------


def parse(conn: BrevoConnector, payload) -> list:
    return conn.parse_webhook(json.dumps(payload).encode(), "application/json", {})


BASE = {"email": "Ann@Example.com", "id": 7, "ts_event": 1_700_000_000, "date_event": "2023-11-14 23:13:20"}


@pytest.mark.parametrize(
    "name, kind",
    [
        ("hard_bounce", EventKind.BOUNCED_HARD),
        ("hard_bounced", EventKind.BOUNCED_HARD),
        ("soft_bounce", EventKind.BOUNCED_SOFT),
        ("soft_bounced", EventKind.BOUNCED_SOFT),
        ("spam", EventKind.COMPLAINED),
        ("complaint", EventKind.COMPLAINED),
        ("unsubscribe", EventKind.UNSUBSCRIBED_ALL),
        ("unsubscribed", EventKind.UNSUBSCRIBED_ALL),
        ("contact_updated", EventKind.PROFILE_UPDATED),
        ("contact_deleted", EventKind.DELETED),
        ("list_addition", EventKind.SUBSCRIBED),
    ],
)
def test_webhook_event_names_map_to_kinds(name, kind):
    [event] = parse(BrevoConnector("k"), {**BASE, "event": name})
    assert event.kind is kind
    assert event.email == "ann@example.com"
    assert event.occurred_at == datetime.fromtimestamp(1_700_000_000, UTC)


def test_webhook_unsubscribe_with_lists_gives_one_event_per_list():
    events = parse(BrevoConnector("k"), {**BASE, "event": "unsubscribed", "list_id": [12, 14]})
    assert [(e.kind, e.target) for e in events] == [
        (EventKind.UNSUBSCRIBED, "12"),
        (EventKind.UNSUBSCRIBED, "14"),
    ]
    assert len({e.dedupe_key for e in events}) == 2


def test_webhook_prefers_ts_epoch_and_keeps_dedupe_key_stable():
    conn = BrevoConnector("k")
    payload = {**BASE, "event": "spam", "ts_epoch": 1_700_000_000_250}
    [a] = parse(conn, payload)
    [b] = parse(conn, payload)
    assert a.occurred_at == datetime.fromtimestamp(1_700_000_000.25, UTC)
    assert a.dedupe_key == b.dedupe_key
    [c] = parse(conn, {**payload, "ts_epoch": 1_700_000_000_999})
    assert c.dedupe_key != a.dedupe_key


def test_webhook_array_body_and_ignored_events():
    events = parse(
        BrevoConnector("k"),
        [
            {**BASE, "event": "opened"},
            {**BASE, "event": "hard_bounce", "reason": "unknown user"},
            {**BASE, "event": "blocked"},
        ],
    )
    assert [(e.kind, e.reason) for e in events] == [(EventKind.BOUNCED_HARD, "unknown user")]


def test_webhook_own_write_is_flagged_by_api_key_name():
    conn = BrevoConnector("k", api_key_name="syncd")
    [own] = parse(conn, {**BASE, "event": "contact_updated", "api_key_name": "syncd"})
    [other] = parse(conn, {**BASE, "event": "list_addition", "api_key_name": "crm", "list_id": [3]})
    assert own.own_write and not other.own_write


def test_simulator_payloads_round_trip_for_every_kind(sim):
    target = sim.create_target("hooks")
    sim.seed(target, [{"email": "ann@example.com"}])
    conn = connector(sim)
    expect_target = {EventKind.UNSUBSCRIBED: target.list_id, EventKind.SUBSCRIBED: target.list_id}
    for kind in EventKind:
        extra = {"new_email": "new@example.com"} if kind is EventKind.EMAIL_CHANGED else {}
        if kind is EventKind.PROFILE_UPDATED:
            extra = {"fields": {"first_name": "Ann"}}
        with_target = target if kind in expect_target else None
        [event] = conn.parse_webhook(*sim.webhook_payload(kind, "ann@example.com", with_target, **extra), {})
        assert (event.kind, event.target) == (kind, expect_target.get(kind))
    [changed] = conn.parse_webhook(
        *sim.webhook_payload(EventKind.EMAIL_CHANGED, "ann@example.com", new_email="new@example.com"), {}
    )
    assert changed.new_email == "new@example.com"


@pytest.mark.parametrize(
    "body, field",
    [
        (b"not json", "JSON"),
        (json.dumps({"email": "a@example.com", "ts_event": 1}).encode(), "'event'"),
        (json.dumps({"event": "spam", "ts_event": 1}).encode(), "'email'"),
        (json.dumps({"event": "exploded", "email": "a@example.com", "ts_event": 1}).encode(), "'event'"),
        (json.dumps({"event": "spam", "email": "a@example.com"}).encode(), "'ts_event'"),
        (json.dumps([1]).encode(), "JSON object"),
    ],
)
def test_malformed_webhook_raises_payload_error_naming_the_field(body, field):
    with pytest.raises(PayloadError, match=field):
        BrevoConnector("k").parse_webhook(body, "application/json", {})


def test_upsert_waits_for_a_queued_import(sim):
    sim.import_delay_s = 0.3
    target = sim.create_target("queued")
    result = connector(sim).upsert(target, [MemberPush(f"q{i}@example.com") for i in range(5)])
    assert len(result.done) == 5 and not result.rejected
    assert sum(1 for c in sim.calls if c.path.startswith("/v3/processes/")) > 1


def test_concurrent_pull_yields_the_same_pages_in_order(sim):
    target = sim.create_target("conc")
    sim.seed(target, people(2_345))
    serial = [m.email for p in connector(sim).pull(target) for m in p.members]
    pages = list(connector(sim, concurrency=4).pull(target))
    assert [m.email for p in pages for m in p.members] == serial
    assert [p.cursor is not None for p in pages] == [False] * 4 + [True]


def test_import_bodies_are_csv_split_under_the_size_cap():
    import csv
    import io

    from connectors.brevo import imports as brevo_module
    from connectors.contract import MemberPush

    wanted = {
        f"m{i:06d}@example.fr": MemberPush(
            f"m{i:06d}@example.fr", fields={"first_name": 'Zoé; "Z"', "city": "Lyon"}
        )
        for i in range(300_000)
    }
    bodies = list(brevo_module.import_chunks(wanted))
    assert len(bodies) >= 2
    assert all(len(b.encode()) <= brevo_module.IMPORT_MAX_BYTES * 1.05 for b in bodies)
    rows = [r for b in bodies for r in csv.DictReader(io.StringIO(b), delimiter=";")]
    assert [r["EMAIL"] for r in rows] == list(wanted)
    assert rows[0]["FIRSTNAME"] == 'Zoé; "Z"' and rows[0]["CITY"] == "Lyon" and rows[0]["SMS"] == ""


_cells = st.text(alphabet=st.sampled_from('ab;"\n\r é'), max_size=6)


@given(
    header=st.lists(_cells, min_size=0, max_size=5),
    rows=st.lists(st.lists(_cells, max_size=7), max_size=6),
)
def test_the_simulators_import_reads_a_csv_body_as_a_dict_reader_does(header, rows):
    """The simulator zips well-formed rows with the header itself; short, long, blank and quoted
    rows must come out exactly as ``csv.DictReader`` (its former reader) gives them."""
    import csv
    import io

    from connectors.simulators.brevo.api import csv_rows

    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    writer.writerow(["EMAIL", *header])
    writer.writerows(rows)
    text = out.getvalue()

    def read(parse):
        try:
            return parse()
        except csv.Error as exc:  # e.g. a bare carriage return: both readers refuse the body
            return f"csv.Error: {exc}"

    expected = read(
        lambda: [
            {"email": r.pop("EMAIL", ""), "attributes": r}
            for r in csv.DictReader(io.StringIO(text), delimiter=";")
        ]
    )
    assert read(lambda: csv_rows(text)) == expected
