"""The cursor of a target after a run: the provider's time, past syncd's own writes, never past a
change someone else made. Both simulators over HTTP, the official SDKs, the real connectors."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from simkit import BrevoSimulator, MailchimpSimulator
from sqlmodel import Session, select

from connectors.brevo import BrevoConnector
from connectors.contract import Target
from connectors.mailchimp import MailchimpConnector
from syncd.config import load_config
from syncd.db import session_scope
from syncd.membership import join_list
from syncd.models import Contact, Membership, SyncCursor
from syncd.sync.engine import sync_list

# The Date header is up to 2 s behind the provider's time: a read that waits this long after
# syncd's last write (with no margin) takes a cursor past it.
SETTLE_S = 2.5


@pytest.fixture(scope="module")
def brevo():
    with BrevoSimulator() as sim:
        yield sim


@pytest.fixture(scope="module")
def mailchimp():
    with MailchimpSimulator() as sim:
        yield sim


@pytest.fixture
def world(tmp_path, engine, brevo, mailchimp, monkeypatch):
    """One list on a Brevo list and on two tags of one Mailchimp audience."""
    news_b = brevo.create_target("news")
    audience = mailchimp.create_target("audience")
    monkeypatch.setenv("T_BREVO_KEY", brevo.api_key)
    monkeypatch.setenv("T_MC_KEY", mailchimp.api_key)
    path = tmp_path / "syncd.yaml"
    path.write_text(
        f"""
version: 1
providers:
  brevo: {{api_key: "${{T_BREVO_KEY}}", base_url: "{brevo.api_url}"}}
  mailchimp: {{api_key: "${{T_MC_KEY}}", base_url: "{mailchimp.api_url}"}}
lists:
  news:
    consent: single_opt_in
    targets:
      - brevo: {{list_id: {news_b.list_id}}}
      - mailchimp: {{audience: "{audience.list_id}", tag: fr}}
      - mailchimp: {{audience: "{audience.list_id}", tag: be}}
  club:
    consent: single_opt_in
    targets:
      - mailchimp: {{audience: "{audience.list_id}", tag: club}}
""",
        encoding="utf-8",
    )
    w = type("World", (), {})()
    w.config = load_config(path)
    w.engine, w.brevo, w.mailchimp = engine, brevo, mailchimp
    w.news_b, w.audience = news_b, audience
    w.fr = Target("mailchimp", audience.list_id, "fr")
    w.be = Target("mailchimp", audience.list_id, "be")
    w.connectors = {
        "brevo": BrevoConnector(brevo.api_key, brevo.api_url, cursor_margin_s=0, settle_s=SETTLE_S),
        "mailchimp": MailchimpConnector(
            mailchimp.api_key, mailchimp.api_url, cursor_margin_s=0, settle_s=SETTLE_S
        ),
    }
    return w


def join(w, emails: list[str], list_name: str = "news") -> None:
    with session_scope(w.engine) as s:
        for email in emails:
            c = Contact(email=email, kind="client")
            s.add(c)
            s.flush()
            join_list(s, c, list_name, w.config.lists[list_name], consent="single_opt_in", source="form")


def run(w, list_name: str = "news"):
    report = sync_list(w.engine, w.config, list_name, w.connectors)
    assert report.ok, [t.failed for t in report.targets]
    return {t.target: t for t in report.targets}


def member_reads(w) -> list[str]:
    """The reads of the list's members each simulator answered (one request per page)."""
    brevo = [c.path for c in w.brevo.calls if c.path == f"/v3/contacts/lists/{w.news_b.list_id}/contacts"]
    mailchimp = [c.path for c in w.mailchimp.calls if c.path == f"/3.0/lists/{w.audience.list_id}/members"]
    return brevo + mailchimp


def statuses(w, email: str) -> dict[str, str]:
    with Session(w.engine) as s:
        c = s.exec(select(Contact).where(Contact.email == email)).one()
        return {
            m.list_name: m.status for m in s.exec(select(Membership).where(Membership.contact_id == c.id))
        }


def test_the_run_after_a_first_push_reads_none_of_syncds_writes(world):
    w = world
    emails = [f"p{i}@example.fr" for i in range(40)]
    join(w, emails)

    first = run(w)
    assert all(sorted(w.mailchimp.members(t)) == sorted(emails) for t in (w.fr, w.be))
    assert sorted(w.brevo.members(w.news_b)) == sorted(emails)
    # The read after the writes saw them (and nothing else changed meanwhile).
    assert {k: r.read_after_writes for k, r in first.items()} == {
        w.news_b.key: 40,
        w.fr.key: 40,
        w.be.key: 40,
    }

    w.brevo.reset_calls()
    w.mailchimp.reset_calls()
    second = run(w)

    assert {k: r.pulled for k, r in second.items()} == {w.news_b.key: 0, w.fr.key: 0, w.be.key: 0}
    assert all(r.write_calls == 0 and r.read_after_writes == 0 for r in second.values())
    # One read of the Brevo list, one of the audience for both tags (its members, then its archived).
    assert len(member_reads(w)) == 3


def test_two_tags_of_one_audience_cost_one_read(world):
    w = world
    w.mailchimp.seed(w.fr, [{"email": f"fr{i}@example.fr"} for i in range(1500)])
    w.mailchimp.seed(w.be, [{"email": f"be{i}@example.fr"} for i in range(700)])
    w.mailchimp.reset_calls()

    reports = run(w)

    # 2,200 members: three pages of 1,000 and the archived members' listing, read once for both tags.
    reads = [c for c in w.mailchimp.calls if c.path == f"/3.0/lists/{w.audience.list_id}/members"]
    assert len(reads) == 4
    assert reports[w.fr.key].pulled == 1500
    assert reports[w.be.key].pulled == 700


def test_an_unsubscribe_while_syncd_writes_is_seen(world):
    """Someone unsubscribes between the run's read and its writes: their change is stamped before
    syncd's writes, so a cursor taken from those writes would skip it."""
    w = world
    join(w, ["ana@example.fr", "bob@example.fr"])
    run(w)
    join(w, [f"new{i}@example.fr" for i in range(10)])
    audience = w.audience.list_id
    # At the first write of the next run, Ana clicks the unsubscribe link of a Brevo campaign
    # (a default account: blocked account-wide) and Bob the one of a Mailchimp campaign.
    w.brevo.on_call(
        "POST",
        "/v3/contacts/import",
        lambda: w.brevo.contact_unsubscribes("ana@example.fr", int(w.news_b.list_id)),
    )
    w.mailchimp.on_call(
        "POST",
        f"/3.0/lists/{audience}",
        lambda: w.mailchimp.member_action(audience, "bob@example.fr", "unsubscribe"),
    )

    run(w)
    bob = w.mailchimp.member(audience, "bob@example.fr")
    new = [w.mailchimp.member(audience, f"new{i}@example.fr") for i in range(10)]
    assert bob.status == "unsubscribed"
    assert all(bob.last_changed < m.last_changed for m in new), "the unsubscribe came before syncd's writes"
    assert w.brevo.is_blocked("ana@example.fr")
    run(w)

    assert statuses(w, "ana@example.fr")["news"] == "unsubscribed"
    assert statuses(w, "bob@example.fr")["news"] == "unsubscribed"
    # Both are off every target of the list: Ana untagged in the audience, Bob unsubscribed from it
    # (Mailchimp keeps him, unsubscribed), both taken off the Brevo list.
    assert all("ana@example.fr" not in w.mailchimp.members(t) for t in (w.fr, w.be))
    assert all(w.mailchimp.members(t)["bob@example.fr"].status == "unsubscribed" for t in (w.fr, w.be))
    assert not {"ana@example.fr", "bob@example.fr"} & set(w.brevo.members(w.news_b))


def test_a_change_shown_later_than_the_margin_is_read_by_the_days_full_plan(world):
    """A provider that shows a change in its filtered reads only after the cursor passed its time
    stamp: the incremental reads never return it, the day's full plan reads the list whole."""
    w = world
    join(w, ["cleo@example.fr", "dan@example.fr"])
    joined = datetime.now(UTC)
    run(w)
    # Cleo unsubscribed from the Brevo list while the run wrote (after she joined, before the
    # cursor it stored), but the change shows in the list's reads only now.
    w.brevo.seed(
        w.news_b,
        [
            {
                "email": "cleo@example.fr",
                "status": "unsubscribed",
                "changed_at": joined + timedelta(milliseconds=1),
            }
        ],
    )

    assert run(w)[w.news_b.key].pulled == 0
    assert statuses(w, "cleo@example.fr")["news"] == "subscribed"

    with session_scope(w.engine) as s:  # a day later
        for row in s.exec(select(SyncCursor)):
            row.full_plan_at -= timedelta(hours=25)
            s.add(row)
    reports = run(w)

    assert reports[w.news_b.key].pulled == 2 and not reports[w.news_b.key].incremental
    assert statuses(w, "cleo@example.fr")["news"] == "unsubscribed"
    assert all("cleo@example.fr" not in w.mailchimp.members(t) for t in (w.fr, w.be))


def test_a_list_writes_its_brevo_list_after_its_mailchimp_tags(world):
    """Brevo's upsert waits for the writes to settle and reads the list back before it returns:
    written last, it lets Mailchimp's writes settle meanwhile, and the read of the audience after
    the writes starts without a wait of its own (one settle_s wait a list, not one a provider)."""
    w = world
    join(w, ["ana@example.fr", "bob@example.fr"])
    audience = w.audience.list_id
    before_brevo: list[int] = []
    w.brevo.on_call(
        "POST",
        "/v3/contacts",  # its first write (two members: one call each, no import)
        lambda: before_brevo.append(
            sum(c.method == "POST" and c.path == f"/3.0/lists/{audience}" for c in w.mailchimp.calls)
        ),
    )

    reports = run(w)

    assert all(r.applied.get("adds") == 2 for r in reports.values())
    # The audience's batch writes (one a tag) had all been answered when Brevo's first write came.
    assert before_brevo == [2]


def test_a_list_does_not_read_again_what_another_list_wrote_in_its_audience(world):
    """Two lists on tags of one audience: the second list's read after its writes showed the first
    list's tags nothing, so the first list's cursor passes those writes too (its next run reads
    none of them). Without that, every run after another list's large push read it all again."""
    w = world
    join(w, ["ana@example.fr", "bob@example.fr"])
    run(w)
    # A run that writes nothing: its cursor is seconds past Ana's and Bob's change times (a change
    # in the cursor's own second counts as one the cursor may not cover).
    time.sleep(2)
    run(w)
    join(w, [f"club{i:04d}@example.fr" for i in range(1500)], "club")
    run(w, "club")  # 1,500 members written to the audience after news' last read
    w.brevo.reset_calls()
    w.mailchimp.reset_calls()

    again = run(w)

    assert all(r.pulled == 0 and r.write_calls == 0 for r in again.values())
    # One page of the Brevo list, one of the audience's members and one of its archived: none of
    # the club's 1,500 (two pages of 1,000) read again.
    assert len(member_reads(w)) == 3


def test_a_change_to_a_list_member_while_another_list_writes_keeps_that_list_cursor(world):
    """The other list's read showed the first list's target a member changed since its cursor
    (Bob, tagged fr, edits his first name while the club is written): that list's cursor stays,
    and its next run reads the change, which the club's run left alone."""
    w = world
    join(w, ["ana@example.fr", "bob@example.fr"])
    run(w)
    join(w, [f"club{i}@example.fr" for i in range(10)], "club")
    audience = w.audience.list_id
    w.mailchimp.on_call(
        "POST",
        f"/3.0/lists/{audience}",
        lambda: w.mailchimp.put_member(
            audience, "bob@example.fr", merge_fields={"FNAME": "Robert"}, tags=["fr"]
        ),
    )
    run(w, "club")

    again = run(w)

    # Bob's change reached news' own read: the club's run did not move news' cursor past it.
    assert (again[w.fr.key].pulled, again[w.be.key].pulled) == (1, 0)
