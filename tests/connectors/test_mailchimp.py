"""The Mailchimp connector through the official SDK, over real HTTP, against the simulator.

What the shared contract (test_contract.py) cannot say: Mailchimp's compliance state, tags as
static segments, archive versus tag removal, the connection limit, problem+json and empty-body
errors, and its form-encoded webhooks.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from simkit import MailchimpSimulator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from connectors.contract import (
    AuthFailed,
    Connector,
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
from connectors.mailchimp import MailchimpConnector
from connectors.mailchimp.vocabulary import problem_of as _problem
from connectors.mailchimp.webhooks import verify_signature
from connectors.simulators.harness import ThreadedServer

LONG_AGO = datetime(2024, 1, 15, 9, 30, tzinfo=UTC)


@pytest.fixture
def sim() -> Iterator[MailchimpSimulator]:
    with MailchimpSimulator() as s:
        yield s


@pytest.fixture
def mc(sim: MailchimpSimulator) -> Iterator[MailchimpConnector]:
    connector = MailchimpConnector(sim.api_key, sim.api_url, timeout=5, max_retries=4, backoff_base_s=0.01)
    yield connector
    connector.close()


def pushes(n: int, start: int = 0) -> list[MemberPush]:
    return [
        MemberPush(f"user{i}@example.fr", fields={"first_name": f"U{i}"}) for i in range(start, start + n)
    ]


def batch_posts(sim: MailchimpSimulator, target: Target, status: int = 200) -> list:
    return [
        c
        for c in sim.calls
        if c.method == "POST" and c.path == f"/3.0/lists/{target.list_id}" and c.status == status
    ]


# --- reading ---------------------------------------------------------------------------------


def test_connector_meets_the_protocol(mc: MailchimpConnector) -> None:
    assert isinstance(mc, Connector)
    assert mc.provider == "mailchimp"


def test_data_centre_comes_from_the_key_suffix() -> None:
    connector = MailchimpConnector("0123456789abcdef0123456789abcdef-us19")
    assert connector.client.api_client.host == "https://us19.api.mailchimp.com/3.0"


def test_pull_pages_through_ten_thousand_members(sim: MailchimpSimulator, mc: MailchimpConnector) -> None:
    target = sim.create_target("big")
    sim.seed(target, [{"email": f"m{i}@example.fr", "changed_at": LONG_AGO} for i in range(10_000)])

    pages = list(mc.pull(target))

    # Ten pages of members, then the archived members' listing (none here), which closes the read.
    assert [len(p.members) for p in pages] == [1000] * 10 + [0]
    assert {m.email for p in pages for m in p.members} == {f"m{i}@example.fr" for i in range(10_000)}
    assert [p.cursor is not None for p in pages] == [False] * 10 + [True]
    assert mc.stats.calls["get_list_members_info"] == 11


def test_a_change_between_two_pages_of_a_read_shows_on_the_next_page(
    sim: MailchimpSimulator, mc: MailchimpConnector
) -> None:
    """The simulator lists each page from the audience as it is when the page is asked for (the
    pages of one read share one listing only while no member changes)."""
    target = sim.create_target("paged")
    sim.seed(target, [{"email": f"m{i}@example.fr", "changed_at": LONG_AGO} for i in range(2_500)])
    pages = iter(mc.pull(target))
    first = next(pages)
    assert len(first.members) == 1000

    sim.member_action(target.list_id, "m1500@example.fr", "unsubscribe")
    sim.put_member(target.list_id, "late@example.fr", status="subscribed")
    rest = [m for p in pages for m in p.members]

    by_email = {m.email: m for m in rest}
    assert len(rest) == 1501  # the 1,500 left and the member added after the first page
    assert by_email["m1500@example.fr"].status is RemoteStatus.UNSUBSCRIBED
    assert "late@example.fr" in by_email


def test_pull_maps_status_fields_tags_and_opt_in_evidence(
    sim: MailchimpSimulator, mc: MailchimpConnector
) -> None:
    target = sim.create_target("a")
    sim.seed(
        target,
        [
            {
                "email": "Ana@Example.fr",
                "status": "unsubscribed",
                "first_name": "Ana",
                "last_name": "Lima",
                "phone": "+33612345678",
                "company": "ACME",
                "changed_at": LONG_AGO,
                "ip_signup": "192.0.2.1",
                "ip_opt": "192.0.2.2",
                "timestamp_opt": LONG_AGO,
                "tags": ["vip"],
            }
        ],
    )

    [member] = next(iter(mc.pull(target))).members

    assert member.email == "ana@example.fr"
    assert member.status is RemoteStatus.UNSUBSCRIBED
    assert member.fields == {
        "first_name": "Ana",
        "last_name": "Lima",
        "phone": "+33612345678",
        "company": "ACME",
    }
    assert member.tags == ("vip",)
    assert member.changed_at == LONG_AGO
    assert member.evidence == {
        "ip_signup": "192.0.2.1",
        "ip_opt": "192.0.2.2",
        "timestamp_opt": "2024-01-15T09:30:00+00:00",
    }
    # The member's own id (kept when the address changes), not the address's hash.
    assert member.remote_id == sim.member(target.list_id, "ana@example.fr").contact_id
    assert member.remote_id != hashlib.md5(b"ana@example.fr").hexdigest()


def test_pull_since_cursor_returns_only_changes_and_archivals(
    sim: MailchimpSimulator, mc: MailchimpConnector
) -> None:
    target = sim.create_target("a")
    sim.seed(target, [{"email": f"m{i}@example.fr", "changed_at": LONG_AGO} for i in range(50)])
    cursor = list(mc.pull(target))[-1].cursor

    sim.unsubscribe("m3@example.fr", target)
    mc.upsert(target, [MemberPush("m4@example.fr", fields={"company": "New Co"})])
    mc.remove(target, ["m5@example.fr"])
    changed = {m.email: m for p in mc.pull(target, since=cursor) for m in p.members}

    assert set(changed) == {"m3@example.fr", "m4@example.fr", "m5@example.fr"}
    assert changed["m3@example.fr"].status is RemoteStatus.UNSUBSCRIBED
    assert changed["m4@example.fr"].fields["company"] == "New Co"
    assert changed["m5@example.fr"].status is RemoteStatus.ARCHIVED


def test_pull_of_a_tag_target_skips_audience_members_without_the_tag(
    sim: MailchimpSimulator, mc: MailchimpConnector
) -> None:
    clients = sim.create_target("shared", tag="clients")
    sim.seed(clients, [{"email": "client@example.fr"}])
    sim.seed(Target("mailchimp", clients.list_id), [{"email": "other@example.fr"}])

    pages = list(mc.pull(clients))

    assert [m.email for p in pages for m in p.members] == ["client@example.fr"]
    assert set(sim.members(clients)) == {"client@example.fr"}
    # Beside the page, not on it: what a change of address of a member the tag shares needs.
    elsewhere = [m for p in pages for m in p.elsewhere]
    assert [m.email for m in elsewhere] == ["other@example.fr"] and elsewhere[0].remote_id


def test_pull_of_a_tag_target_reports_audience_wide_opt_outs_without_the_tag_as_not_on_it(
    sim: MailchimpSimulator, mc: MailchimpConnector
) -> None:
    clients = sim.create_target("shared", tag="clients")
    audience = Target("mailchimp", clients.list_id)
    sim.seed(clients, [{"email": "client@example.fr"}])
    sim.seed(
        audience,
        [
            {"email": "other@example.fr"},
            {"email": "left@example.fr", "status": "unsubscribed", "tags": ["news"]},
            {"email": "bounced@example.fr", "status": "cleaned"},
        ],
    )

    pulled = {m.email: m for p in mc.pull(clients) for m in p.members}

    assert set(pulled) == {"client@example.fr", "left@example.fr", "bounced@example.fr"}
    assert pulled["client@example.fr"].on_target
    assert pulled["left@example.fr"].status is RemoteStatus.UNSUBSCRIBED
    assert pulled["bounced@example.fr"].status is RemoteStatus.CLEANED
    assert not pulled["left@example.fr"].on_target and not pulled["bounced@example.fr"].on_target


# --- writing ---------------------------------------------------------------------------------


def test_upsert_sends_500_a_call_and_reports_each_rejected_member(
    sim: MailchimpSimulator, mc: MailchimpConnector
) -> None:
    target = sim.create_target("a")
    sim.seed(
        target,
        [
            {"email": "gone@example.fr", "status": "unsubscribed"},
            {"email": "bounced@example.fr", "status": "cleaned"},
        ],
    )
    members = [
        *pushes(1200),
        MemberPush("not-an-address"),
        MemberPush("gone@example.fr"),
        MemberPush("bounced@example.fr"),
    ]

    result = mc.upsert(target, members)

    assert result.calls == 3 == len(batch_posts(sim, target))
    assert len(result.done) == 1200
    codes = {r.email: r.code for r in result.rejected}
    assert codes == {
        "not-an-address": "invalid_email",
        "gone@example.fr": "compliance_state",
        "bounced@example.fr": "compliance_state",
    }
    assert all(r.reason for r in result.rejected)
    state = sim.members(target)
    assert len(state) == 1202 and state["user7@example.fr"].fields["first_name"] == "U7"


def test_unsubscribed_member_is_never_silently_resubscribed(
    sim: MailchimpSimulator, mc: MailchimpConnector
) -> None:
    target = sim.create_target("a")
    sim.seed(target, [{"email": "ana@example.fr"}])
    sim.unsubscribe("ana@example.fr", target)

    refused = mc.upsert(target, [MemberPush("ana@example.fr")])
    assert [r.code for r in refused.rejected] == ["compliance_state"]
    assert sim.members(target)["ana@example.fr"].status is RemoteStatus.UNSUBSCRIBED

    mc.remove(target, ["ana@example.fr"])  # archived: still not a way back
    assert mc.upsert(target, [MemberPush("ana@example.fr")]).rejected[0].code == "compliance_state"

    back = mc.upsert(target, [MemberPush("ana@example.fr", status=RemoteStatus.PENDING)])
    assert back.done == ["ana@example.fr"]
    assert sim.members(target)["ana@example.fr"].status is RemoteStatus.PENDING


def test_upsert_to_a_tag_target_tags_the_accepted_members_only(
    sim: MailchimpSimulator, mc: MailchimpConnector
) -> None:
    target = Target("mailchimp", sim.create_target("shared").list_id, "clients")
    sim.seed(Target("mailchimp", target.list_id), [{"email": "gone@example.fr", "status": "unsubscribed"}])

    result = mc.upsert(target, [*pushes(600), MemberPush("gone@example.fr")])

    assert len(result.done) == 600 and [r.email for r in result.rejected] == ["gone@example.fr"]
    # The compliance-state refusal comes back with the member as Mailchimp holds it.
    [gone] = result.rejected
    assert gone.code == "compliance_state" and gone.member.status == RemoteStatus.UNSUBSCRIBED
    assert set(sim.members(target)) == {f"user{i}@example.fr" for i in range(600)}
    # one segment look-up and creation, then per 500: one batch subscribe and one segment add;
    # one read of the refused member
    assert mc.stats.calls == {
        "list_segments": 1,
        "create_segment": 1,
        "batch_list_members": 2,
        "batch_segment_members": 2,
        "get_list_member": 1,
    }
    mc.upsert(target, pushes(1))
    assert mc.stats.calls["list_segments"] == 1  # the segment id is remembered


def test_removal_from_a_tag_target_removes_the_tag_only(
    sim: MailchimpSimulator, mc: MailchimpConnector
) -> None:
    clients = sim.create_target("shared", tag="clients")
    prospects = Target("mailchimp", clients.list_id, "prospects")
    sim.seed(clients, [{"email": "both@example.fr"}, {"email": "c@example.fr"}])
    sim.seed(prospects, [{"email": "both@example.fr", "tags": ["clients"]}])

    result = mc.remove(clients, ["both@example.fr", "c@example.fr", "stranger@example.fr"])

    assert sorted(result.done) == ["both@example.fr", "c@example.fr", "stranger@example.fr"]
    assert sim.members(clients) == {}
    assert sim.members(prospects)["both@example.fr"].status is RemoteStatus.SUBSCRIBED
    assert sim.member_status(clients, "c@example.fr") == "subscribed"  # still in the audience


def test_removal_without_a_tag_archives_and_never_unsubscribes(
    sim: MailchimpSimulator, mc: MailchimpConnector
) -> None:
    target = sim.create_target("a")
    sim.seed(target, [{"email": f"m{i}@example.fr"} for i in range(30)])

    result = mc.remove(target, [f"m{i}@example.fr" for i in range(20)] + ["stranger@example.fr"])

    assert len(result.done) == 21 and result.calls == 21
    assert {sim.member_status(target, f"m{i}@example.fr") for i in range(20)} == {"archived"}
    assert len(sim.members(target)) == 10
    assert not [c for c in sim.calls if c.method in ("PUT", "PATCH")]  # no status write at all


def test_rename_reaches_a_member_that_changed_address_at_mailchimp_by_its_contact_id(
    sim: MailchimpSimulator, mc: MailchimpConnector
) -> None:
    """The base learnt ana@ → ana.b@ elsewhere; meanwhile the member typed ana.m@ in Mailchimp's
    profile form (its webhook lost). Nothing is under ana@ any more: the rename goes by the
    member's ``contact_id`` (the member endpoints take it in place of the hash), so the person
    stays one member, with their status and tags, instead of getting a second one."""
    audience = Target("mailchimp", sim.create_target("shared").list_id)
    news = Target("mailchimp", audience.list_id, "news")
    assert mc.upsert(news, [MemberPush("ana@example.fr")]).done == ["ana@example.fr"]
    [read] = [m for page in mc.pull(news) for m in page.members]
    sim.member_action(audience.list_id, "ana@example.fr", "change-email", new_email="ana.m@example.fr")
    sim.unsubscribe("ana.m@example.fr", audience)

    assert mc.rename(news, "ana@example.fr", "ana.b@example.fr").outcome is Rename.MISSING  # no id known
    assert set(sim.members(audience)) == {"ana.m@example.fr"}
    renamed = mc.rename(news, "ana@example.fr", "ana.b@example.fr", read.remote_id)

    assert renamed.outcome is Rename.RENAMED
    member = sim.member(audience.list_id, "ana.b@example.fr")
    assert set(sim.members(audience)) == {"ana.b@example.fr"}
    assert (
        member.contact_id == read.remote_id
        and member.status == "unsubscribed"
        and set(member.tags) == {"news"}
    )
    assert mc.rename(news, "gone@example.fr", "ana.c@example.fr", "0" * 32).outcome is Rename.MISSING


def test_set_blocked_is_a_no_op_for_mailchimp(sim: MailchimpSimulator, mc: MailchimpConnector) -> None:
    mc.set_blocked("ana@example.fr", True)
    assert sim.calls == [] and sim.is_blocked("ana@example.fr") is False


def test_create_list_and_get_list(sim: MailchimpSimulator, mc: MailchimpConnector) -> None:
    target = mc.create_list("Newsletter")
    assert mc.get_list(target.list_id)["name"] == "Newsletter"


# --- limits, failures, errors -----------------------------------------------------------------


def test_connection_limit_storm_loses_and_duplicates_nobody(
    sim: MailchimpSimulator, mc: MailchimpConnector
) -> None:
    target = sim.create_target("a")
    sim.max_connections, sim.latency_s = 2, 0.03
    # The first calls wait until 4 are in flight: the storm happens however slow the machine is.
    sim.hold_until_concurrent(4)

    result = mc.upsert(target, pushes(5000))

    assert len(result.done) == 5000 and not result.rejected
    assert mc.stats.rate_limited > 0, "the storm never happened: the test proves nothing"
    accepted = Counter(e for c in batch_posts(sim, target) for e in c.emails)
    assert len(accepted) == 5000 and set(accepted.values()) == {1}
    assert len(batch_posts(sim, target)) == 10
    assert len(sim.members(target)) == 5000


def test_5xx_is_retried_then_succeeds(sim: MailchimpSimulator, mc: MailchimpConnector) -> None:
    target = sim.create_target("a")
    sim.fail_next(2, status=503)

    result = mc.upsert(target, pushes(3))

    assert len(result.done) == 3 and mc.stats.retries == 2
    assert [c.status for c in sim.calls] == [503, 503, 200]


def test_persistent_5xx_gives_up_after_bounded_retries(sim: MailchimpSimulator) -> None:
    mc = MailchimpConnector(sim.api_key, sim.api_url, max_retries=2, backoff_base_s=0.01)
    target = sim.create_target("a")
    sim.fail_next(10, status=500)

    with pytest.raises(Transient) as caught:
        mc.upsert(target, pushes(3))

    assert caught.value.status == 500 and len(sim.calls) == 3
    assert sim.members(target) == {}


def test_dropped_connections_are_retried_then_typed(sim: MailchimpSimulator) -> None:
    mc = MailchimpConnector(sim.api_key, sim.api_url, max_retries=2, backoff_base_s=0.01)
    target = sim.create_target("a")
    sim.drop_next(1)
    assert len(mc.upsert(target, pushes(2)).done) == 2

    sim.drop_next(5)
    with pytest.raises(Transient) as caught:
        list(mc.pull(target))
    assert caught.value.status is None and not isinstance(caught.value, RateLimited)


def test_time_budget_bounds_the_retries(sim: MailchimpSimulator) -> None:
    mc = MailchimpConnector(
        sim.api_key, sim.api_url, max_retries=50, max_retry_seconds=0.3, backoff_base_s=0.05
    )
    sim.max_connections = 0  # every request is over the limit

    started = datetime.now(UTC)
    with pytest.raises(RateLimited):
        mc.ping()
    assert (datetime.now(UTC) - started).total_seconds() < 1.0


def test_timeout_is_a_transient_error(sim: MailchimpSimulator) -> None:
    mc = MailchimpConnector(sim.api_key, sim.api_url, timeout=0.1, max_retries=1, backoff_base_s=0.01)
    sim.latency_s = 0.5
    with pytest.raises(Transient):
        mc.ping()


def test_bad_key_is_auth_failed_without_retry(sim: MailchimpSimulator) -> None:
    mc = MailchimpConnector("wrong-us1", sim.api_url, backoff_base_s=0.01)
    with pytest.raises(AuthFailed) as caught:
        mc.ping()
    assert caught.value.status == 401 and caught.value.body["title"] == "API Key Invalid"
    assert len(sim.calls) == 1


def test_unknown_audience_is_not_found_with_the_problem_details(mc: MailchimpConnector) -> None:
    with pytest.raises(NotFound) as caught:
        list(mc.pull(Target("mailchimp", "0000000000")))
    assert caught.value.body["title"] == "Resource Not Found"
    assert "Resource Not Found" in str(caught.value)


def test_error_with_an_empty_body_is_still_an_error(sim: MailchimpSimulator, mc: MailchimpConnector) -> None:
    target = sim.create_target("a")
    sim.fail_next(1, status=404, body=b"")
    with pytest.raises(NotFound):
        mc.get_list(target.list_id)

    sim.fail_next(1, status=502, body=b"")
    assert mc.get_list(target.list_id)["id"] == target.list_id  # retried like any 5xx


def test_problem_json_is_read_from_a_raw_string_or_a_dict() -> None:
    raw = '{"type": "t", "title": "Member Exists", "status": 400, "detail": "d", "instance": "i"}'
    assert _problem(raw)["title"] == "Member Exists"
    assert _problem({"title": "Member Exists"})["title"] == "Member Exists"
    assert _problem("<html>Bad gateway</html>") == {"detail": "<html>Bad gateway</html>"}
    assert _problem(None) == {}


# --- webhooks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "extra", "expected", "reason"),
    [
        (EventKind.SUBSCRIBED, {}, EventKind.SUBSCRIBED, None),
        (EventKind.UNSUBSCRIBED, {}, EventKind.UNSUBSCRIBED, "manual"),
        (EventKind.COMPLAINED, {}, EventKind.COMPLAINED, "abuse"),
        (EventKind.DELETED, {}, EventKind.DELETED, "manual"),
        (EventKind.BOUNCED_HARD, {}, EventKind.BOUNCED_HARD, "hard"),
        ("cleaned", {"reason": "abuse"}, EventKind.COMPLAINED, "abuse"),
        (
            EventKind.PROFILE_UPDATED,
            {"first_name": "Ana", "company": "ACME"},
            EventKind.PROFILE_UPDATED,
            None,
        ),
    ],
)
def test_every_webhook_type_is_normalised(
    sim: MailchimpSimulator, mc: MailchimpConnector, kind, extra, expected, reason
) -> None:
    target = sim.create_target("a")
    fired = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
    body, content_type = sim.webhook_payload(kind, "Ana@Example.fr", target, fired_at=fired, **extra)

    [event] = mc.parse_webhook(body, content_type)

    assert (event.kind, event.email, event.target, event.occurred_at) == (
        expected,
        "ana@example.fr",
        target.list_id,
        fired,
    )
    assert event.reason == reason
    assert event.kind is not EventKind.UNSUBSCRIBED_ALL
    if kind is EventKind.PROFILE_UPDATED:
        assert event.fields == {"first_name": "Ana", "company": "ACME"}


def test_email_change_webhook_names_old_and_new_address(
    sim: MailchimpSimulator, mc: MailchimpConnector
) -> None:
    body, ct = sim.webhook_payload(EventKind.EMAIL_CHANGED, "old@example.fr", new_email="New@Example.fr")
    [event] = mc.parse_webhook(body, ct)
    assert (event.kind, event.email, event.new_email) == (
        EventKind.EMAIL_CHANGED,
        "old@example.fr",
        "new@example.fr",
    )


def test_campaign_webhook_is_ignored(sim: MailchimpSimulator, mc: MailchimpConnector) -> None:
    assert mc.parse_webhook(*sim.webhook_payload("campaign", "x@example.fr")) == []


def test_dedupe_key_is_stable_for_a_redelivery_and_differs_between_events(
    sim: MailchimpSimulator, mc: MailchimpConnector
) -> None:
    fired = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    body, ct = sim.webhook_payload(EventKind.UNSUBSCRIBED, "a@example.fr", fired_at=fired)
    reordered = "&".join(reversed(body.decode().split("&"))).encode()
    other, _ = sim.webhook_payload(EventKind.UNSUBSCRIBED, "b@example.fr", fired_at=fired)
    key = mc.parse_webhook(body, ct)[0].dedupe_key
    assert mc.parse_webhook(reordered, ct)[0].dedupe_key == key
    assert mc.parse_webhook(other, ct)[0].dedupe_key != key


@pytest.mark.parametrize(
    ("body", "content_type", "names"),
    [
        (b'{"type": "subscribe"}', "application/json", "form-encoded"),
        (
            b"fired_at=2026-03-01+12%3A00%3A00&data%5Bemail%5D=a%40b.fr",
            "application/x-www-form-urlencoded",
            "'type'",
        ),
        (
            b"type=subscribe&fired_at=2026-03-01+12%3A00%3A00",
            "application/x-www-form-urlencoded",
            "data[email]",
        ),
        (
            b"type=upemail&fired_at=2026-03-01+12%3A00%3A00&data%5Bnew_email%5D=n%40b.fr",
            "application/x-www-form-urlencoded",
            "data[old_email]",
        ),
        (b"type=subscribe&data%5Bemail%5D=a%40b.fr", "application/x-www-form-urlencoded", "fired_at"),
        (b"\xff\xfe", "application/x-www-form-urlencoded", "not form data"),
        (
            b"type=mystery&fired_at=2026-03-01+12%3A00%3A00&data%5Bemail%5D=a%40b.fr",
            "application/x-www-form-urlencoded",
            "mystery",
        ),
    ],
)
def test_malformed_webhook_is_a_payload_error_naming_the_problem(
    mc: MailchimpConnector, body: bytes, content_type: str, names: str
) -> None:
    with pytest.raises(PayloadError, match=None) as caught:
        mc.parse_webhook(body, content_type)
    assert names in str(caught.value)


def test_signature_is_checked_on_raw_bytes_time_and_secret(sim: MailchimpSimulator) -> None:
    body, _ = sim.webhook_payload(EventKind.UNSUBSCRIBED, "a@example.fr")
    header = sim.sign(body, "s3cret", t=1_700_000_000)
    now = 1_700_000_100

    assert verify_signature(body, header, "s3cret", now=now)
    assert MailchimpConnector.verify_signature(body, header, "s3cret", now=now)
    assert not verify_signature(body + b"&x=1", header, "s3cret", now=now)
    assert not verify_signature(body, header, "other", now=now)
    assert not verify_signature(body, header, "s3cret", now=now + 400)
    assert not verify_signature(body, "v1=abc", "s3cret", now=now)
    assert not verify_signature(body, None, "s3cret", now=now)
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_fired_webhooks_and_the_url_check_reach_a_receiver(
    sim: MailchimpSimulator, mc: MailchimpConnector
) -> None:
    received = []

    async def hook(request: Request) -> PlainTextResponse:
        if request.method == "POST":
            body = await request.body()
            assert verify_signature(body, request.headers["x-mailchimp-signature"], "s3cret")
            received.append(
                (request.headers["user-agent"], mc.parse_webhook(body, request.headers["content-type"]))
            )
        return PlainTextResponse("ok")

    sim.webhook_secret = "s3cret"
    with ThreadedServer(Starlette(routes=[Route("/hooks/mailchimp", hook, methods=["GET", "POST"])])) as rx:
        url = f"{rx.url}/hooks/mailchimp"
        assert sim.check_webhook_url(url).status_code == 200
        assert sim.fire_webhook(url, EventKind.UNSUBSCRIBED, "a@example.fr").status_code == 200

    [(agent, [event])] = received
    assert agent == "MailChimp.com" and event.kind is EventKind.UNSUBSCRIBED
