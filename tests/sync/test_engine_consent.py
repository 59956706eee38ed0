"""End to end, `syncd sync` against both simulators: consent shown only by what a provider holds.

Each case is a path a real account takes: a pull that sees an unsubscribe no webhook reported, a
default Brevo account's account-wide block, a list switched to double opt-in, members added in a
provider's own UI.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from simkit import BrevoSimulator, MailchimpSimulator
from sqlmodel import Session, select

from connectors.brevo import BrevoConnector
from connectors.contract import EventKind, RemoteStatus, Target
from connectors.mailchimp import MailchimpConnector
from syncd import doi
from syncd.cli import main
from syncd.config import load_config
from syncd.db import session_scope
from syncd.inbound.apply import apply_event
from syncd.membership import join_list, leave_list
from syncd.models import Consent, Contact, Membership, TargetState
from syncd.providers import make_connector
from syncd.secret import generate as generate_secret
from syncd.sync.engine import sync_list


# One account per test: a Brevo contact (and its block) is account-wide, whatever the list.
@pytest.fixture
def brevo():
    with BrevoSimulator() as sim:
        yield sim


@pytest.fixture
def mailchimp():
    with MailchimpSimulator() as sim:
        yield sim


@pytest.fixture
def world(tmp_path, engine, brevo, mailchimp, monkeypatch):
    """Fresh provider lists, and three syncd lists on them: a newsletter and offers sharing one
    Mailchimp audience through tags, and an auto-enrolled vendors list with an audience of its own."""
    news_b, offers_b, vendors_b = (brevo.create_target(n) for n in ("news", "offers", "vendors"))
    audience, vendors_aud = mailchimp.create_target("audience"), mailchimp.create_target("vendors")
    monkeypatch.setenv("T_BREVO_KEY", brevo.api_key)
    monkeypatch.setenv("T_MC_KEY", mailchimp.api_key)
    monkeypatch.setenv("T_DOI_SECRET", generate_secret())
    path = tmp_path / "syncd.yaml"
    path.write_text(
        f"""
version: 1
providers:
  brevo: {{api_key: "${{T_BREVO_KEY}}", base_url: "{brevo.api_url}", api_key_name: syncd, settle_s: 0}}
  mailchimp: {{api_key: "${{T_MC_KEY}}", base_url: "{mailchimp.api_url}", settle_s: 0}}
double_opt_in:
  transport: brevo
  secret: "${{T_DOI_SECRET}}"
  sender: {{email: news@example.fr, name: Example}}
  public_url: https://lists.example.fr
lists:
  news:
    consent: single_opt_in
    targets:
      - brevo: {{list_id: {news_b.list_id}}}
      - mailchimp: {{audience: "{audience.list_id}", tag: news}}
  offers:
    consent: single_opt_in
    on_violation: remove
    targets:
      - brevo: {{list_id: {offers_b.list_id}}}
      - mailchimp: {{audience: "{audience.list_id}", tag: offers}}
  vendors:
    consent: legitimate_interest
    segment: {{kind: [vendor]}}
    auto_enroll: true
    targets:
      - brevo: {{list_id: {vendors_b.list_id}}}
      - mailchimp: {{audience: "{vendors_aud.list_id}"}}
""",
        encoding="utf-8",
    )
    w = type("World", (), {})()
    w.config_path, w.config = path, load_config(path)
    w.engine, w.brevo, w.mailchimp = engine, brevo, mailchimp
    w.news_b, w.offers_b, w.vendors_b, w.vendors_mc = news_b, offers_b, vendors_b, vendors_aud
    w.audience = audience
    w.news_mc = type(audience)(audience.provider, audience.list_id, "news")
    w.offers_mc = type(audience)(audience.provider, audience.list_id, "offers")
    return w


def add_contact(w, email, kind, lists=(), consent="single_opt_in"):
    with session_scope(w.engine) as s:
        c = Contact(email=email, kind=kind, first_name="Ana")
        s.add(c)
        s.flush()
        for name in lists:
            join_list(s, c, name, w.config.lists[name], consent=consent, source="form")
        return c.id


def run_cli(w, *args):
    url = w.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(main, ["--config", str(w.config_path), "--database", url, *args])
    assert result.exit_code == 0, result.output
    return result


def memberships(w, email):
    with Session(w.engine) as s:
        c = s.exec(select(Contact).where(Contact.email == email)).one()
        return {
            m.list_name: m.status for m in s.exec(select(Membership).where(Membership.contact_id == c.id))
        }


def ana_joined_news(w, at):
    """Ana, with an opt-in to news recorded at ``at``."""
    with session_scope(w.engine) as s:
        c = Contact(email="ana@example.fr", first_name="Ana")
        s.add(c)
        s.flush()
        join_list(s, c, "news", w.config.lists["news"], consent="single_opt_in", source="form", at=at)


def contact(w, email):
    with Session(w.engine) as s:
        return s.exec(select(Contact).where(Contact.email == email)).one()


def consents(w, email):
    with Session(w.engine) as s:
        c = s.exec(select(Contact).where(Contact.email == email)).one()
        return list(s.exec(select(Consent).where(Consent.contact_id == c.id).order_by(Consent.id)))


def subscribed(sim, target):
    return sorted(e for e, m in sim.members(target).items() if m.status == RemoteStatus.SUBSCRIBED)


def brevo_api(w):
    """The Brevo account as its owner reaches it (the UI and the API act alike), over HTTP."""
    return BrevoConnector(w.brevo.api_key, w.brevo.api_url)


def webhook_applied(w, provider, kind, email, target, **extra):
    """The provider's webhook for ``kind`` about ``email``, parsed by its connector and applied."""
    sim = w.brevo if provider == "brevo" else w.mailchimp
    connector = brevo_api(w) if provider == "brevo" else MailchimpConnector(sim.api_key, sim.api_url)
    body, ctype = sim.webhook_payload(kind, email, target, **extra)
    with session_scope(w.engine) as s:
        for event in connector.parse_webhook(body, ctype):
            assert apply_event(s, event, w.config) == "applied"


def assert_second_sync_writes_nothing(w, *args):
    w.brevo.reset_calls()
    w.mailchimp.reset_calls()
    again = run_cli(w, "sync", *args)
    assert (w.brevo.write_calls, w.mailchimp.write_calls) == (0, 0), again.output


# --- defect 1: an objection seen only by the pull ---------------------------------------------


def test_an_unsubscribe_seen_only_by_the_pull_on_an_auto_enrolled_list_is_an_opt_out_on_every_target(world):
    w = world
    add_contact(w, "vera@example.fr", "vendor")  # auto-enrolled: no membership row
    run_cli(w, "sync")
    assert subscribed(w.brevo, w.vendors_b) == ["vera@example.fr"]
    assert subscribed(w.mailchimp, w.vendors_mc) == ["vera@example.fr"]

    # Vera unsubscribes from a Mailchimp campaign; no webhook is registered.
    w.mailchimp.unsubscribe("vera@example.fr", w.vendors_mc)
    run_cli(w, "sync")

    # No reconfirmation asked of someone who just left (pending would make Mailchimp mail her).
    assert w.mailchimp.member_status(w.vendors_mc, "vera@example.fr") == "unsubscribed"
    # Her objection to the legitimate interest is recorded like any opt-out, for this list only...
    assert memberships(w, "vera@example.fr") == {"vendors": "unsubscribed"}
    assert [(c.list_name, c.action) for c in consents(w, "vera@example.fr")] == [("vendors", "opt_out")]
    assert contact(w, "vera@example.fr").global_opt_out is False
    # ...and honoured on every target of the list.
    assert "vera@example.fr" not in w.brevo.members(w.vendors_b)
    with Session(w.engine) as s:
        state = s.exec(select(TargetState).where(TargetState.target_key == w.vendors_mc.key)).one()
        assert state.remote_status == "unsubscribed" and state.remote_changed_at is not None
    assert_second_sync_writes_nothing(w)


# --- defect 2: Brevo's account-wide block ---------------------------------------------------------


def test_a_brevo_block_with_no_per_list_reason_is_kept_and_recorded_as_an_opt_out_from_everything(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news", "offers"])
    run_cli(w, "sync")
    # A default Brevo account: the contact unsubscribes (or is blocklisted in Brevo's UI); Brevo
    # blocks the address account-wide, lists no list in listUnsubscribed, and no webhook comes.
    brevo_api(w).set_blocked("ana@example.fr", True)

    result = run_cli(w, "sync")

    assert w.brevo.is_blocked("ana@example.fr"), "a person who left everything is mailed again"
    ana = contact(w, "ana@example.fr")
    assert ana.global_opt_out and "blocked account-wide" in ana.opt_out_reason
    assert set(memberships(w, "ana@example.fr").values()) == {"unsubscribed"}
    proof = [c for c in consents(w, "ana@example.fr") if c.action == "opt_out"]
    assert [c.list_name for c in proof] == [None]
    assert "no per-list unsubscribe on record" in proof[0].evidence["reason"]
    assert "applied" in result.output
    for sim, target in ((w.brevo, w.news_b), (w.brevo, w.offers_b), (w.mailchimp, w.news_mc)):
        assert "ana@example.fr" not in subscribed(sim, target)
    assert_second_sync_writes_nothing(w)
    assert w.brevo.is_blocked("ana@example.fr")


def test_a_brevo_block_on_a_contact_of_no_list_read_is_learnt_by_the_push_that_adds_her(world):
    w = world
    # Vera left everything in a campaign of a Brevo list syncd does not map: Brevo holds her address,
    # blocked account-wide, on no list that a sync reads; no webhook came.
    r = httpx.post(
        f"{w.brevo.api_url}/contacts",
        json={"email": "vera@example.fr", "emailBlacklisted": True},
        headers={"api-key": w.brevo.api_key},
        timeout=5,
    )
    assert r.status_code == 201, r.text
    add_contact(w, "vera@example.fr", "vendor")  # auto-enrolled on vendors

    run_cli(w, "sync", "--list", "vendors")

    # The push put her on the list, still blocked: the read that confirms the push shows the block,
    # which the master base cannot explain: her opt-out from everything, learnt in this run.
    vera = contact(w, "vera@example.fr")
    assert vera.global_opt_out and "blocked account-wide" in vera.opt_out_reason
    assert "vera@example.fr" not in w.brevo.members(w.vendors_b)
    assert "vera@example.fr" not in w.mailchimp.members(w.vendors_mc)
    assert w.brevo.is_blocked("vera@example.fr")
    assert_second_sync_writes_nothing(w, "--list", "vendors")


def test_a_block_on_an_address_that_bounced_is_still_recorded_as_an_opt_out_from_everything(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news"])
    run_cli(w, "sync", "--list", "news")
    w.mailchimp.seed(w.news_mc, [{"email": "ana@example.fr", "status": "cleaned"}])  # a hard bounce
    run_cli(w, "sync", "--list", "news")
    assert contact(w, "ana@example.fr").email_status == "bounced"
    # In Brevo's UI, an account user puts Ana back on the list and blocks her.
    w.brevo.seed(w.news_b, [{"email": "ana@example.fr", "status": "subscribed"}])
    brevo_api(w).set_blocked("ana@example.fr", True)

    run_cli(w, "sync", "--list", "news")

    ana = contact(w, "ana@example.fr")
    assert ana.email_status == "bounced"
    assert ana.global_opt_out and "blocked account-wide" in ana.opt_out_reason
    assert w.brevo.is_blocked("ana@example.fr")


def test_a_later_account_wide_block_is_not_lifted_for_an_old_per_list_unsubscribe(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news", "offers"])
    run_cli(w, "sync")
    w.brevo.unsubscribe("ana@example.fr", w.news_b)  # per-list: listUnsubscribed names news
    run_cli(w, "sync")
    assert memberships(w, "ana@example.fr") == {"news": "unsubscribed", "offers": "subscribed"}
    assert not w.brevo.is_blocked("ana@example.fr")  # repaired: that unsubscribe was for news only

    # Months later Ana is blocked account-wide, with no new per-list unsubscribe behind it.
    brevo_api(w).set_blocked("ana@example.fr", True)
    run_cli(w, "sync")

    assert w.brevo.is_blocked("ana@example.fr")
    assert contact(w, "ana@example.fr").global_opt_out
    assert memberships(w, "ana@example.fr") == {"news": "unsubscribed", "offers": "unsubscribed"}
    assert "ana@example.fr" not in subscribed(w.brevo, w.offers_b)


def test_an_unsubscribe_given_to_syncd_itself_does_not_explain_a_later_brevo_block(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news", "offers"])
    run_cli(w, "sync")
    with session_scope(w.engine) as s:  # Ana leaves news through syncd's own unsubscribe link
        ana = s.exec(select(Contact).where(Contact.email == "ana@example.fr")).one()
        leave_list(s, ana, "news", reason="unsubscribe link", source="web:unsubscribe")
    run_cli(w, "sync")
    assert not w.brevo.is_blocked("ana@example.fr") and subscribed(w.brevo, w.offers_b) == ["ana@example.fr"]

    # Later she blocks herself account-wide at Brevo: nothing at Brevo names a list.
    brevo_api(w).set_blocked("ana@example.fr", True)
    run_cli(w, "sync")

    assert w.brevo.is_blocked("ana@example.fr")
    assert contact(w, "ana@example.fr").global_opt_out
    assert "ana@example.fr" not in subscribed(w.brevo, w.offers_b)


def test_a_brevo_block_explained_by_a_per_list_unsubscribe_webhook_is_lifted_for_the_other_lists(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news", "offers"])
    run_cli(w, "sync")
    # A default account with its webhook registered: Ana's click blocks her, the webhook names the
    # list, listUnsubscribed stays empty.
    w.brevo.contact_unsubscribes("ana@example.fr", int(w.news_b.list_id))
    body, ctype = w.brevo.webhook_payload(EventKind.UNSUBSCRIBED, "ana@example.fr", w.news_b)
    with session_scope(w.engine) as s:
        for event in brevo_api(w).parse_webhook(body, ctype, {}):
            apply_event(s, event, w.config)

    run_cli(w, "sync")

    assert not w.brevo.is_blocked("ana@example.fr")
    assert memberships(w, "ana@example.fr") == {"news": "unsubscribed", "offers": "subscribed"}
    assert contact(w, "ana@example.fr").global_opt_out is False
    assert subscribed(w.brevo, w.offers_b) == ["ana@example.fr"]
    assert "ana@example.fr" not in w.brevo.members(w.news_b)
    assert_second_sync_writes_nothing(w)


def test_a_per_list_unsubscribe_read_from_another_brevo_list_explains_the_block(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news", "offers"])
    run_cli(w, "sync")
    w.brevo.unsubscribe("ana@example.fr", w.news_b)

    # The offers list is read first: Brevo reports Ana blocked there, listUnsubscribed naming news.
    run_cli(w, "sync", "--list", "offers")

    assert memberships(w, "ana@example.fr") == {"news": "unsubscribed", "offers": "subscribed"}
    assert contact(w, "ana@example.fr").global_opt_out is False
    assert not w.brevo.is_blocked("ana@example.fr")
    assert subscribed(w.brevo, w.offers_b) == ["ana@example.fr"]


def test_a_spam_complaint_whose_webhook_was_lost_is_read_from_brevos_record_before_a_lift(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news", "offers"])
    run_cli(w, "sync")
    # Ana marks a news campaign as spam (the webhook is lost), then unsubscribes from news: Brevo
    # shows her blocked with listUnsubscribed naming news, the per-list case.
    w.brevo.contact_complains("ana@example.fr", int(w.news_b.list_id))
    w.brevo.unsubscribe("ana@example.fr", w.news_b)

    run_cli(w, "sync")

    assert w.brevo.is_blocked("ana@example.fr"), "a person who complained is mailed again"
    ana = contact(w, "ana@example.fr")
    assert ana.email_status == "complained" and ana.global_opt_out
    assert "spam complaint" in ana.opt_out_reason
    for sim, target in ((w.brevo, w.offers_b), (w.mailchimp, w.offers_mc)):
        assert "ana@example.fr" not in subscribed(sim, target)
    assert_second_sync_writes_nothing(w)


def test_a_later_unsubscribe_click_whose_webhook_was_lost_is_read_from_brevos_record_before_a_lift(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news", "offers"])
    run_cli(w, "sync")
    # Ana leaves news (Brevo shows her blocked, listUnsubscribed naming news: the per-list case),
    # then clicks the unsubscribe link of an offers campaign (a default account: another block,
    # naming no list); neither webhook arrives. A read dates the news opt-out by the record's last
    # change, the click's time: only Brevo's record of her clicks tells the later one.
    w.brevo.unsubscribe("ana@example.fr", w.news_b)
    w.brevo.contact_unsubscribes("ana@example.fr", int(w.offers_b.list_id))

    run_cli(w, "sync")

    assert w.brevo.is_blocked("ana@example.fr"), "a person who unsubscribed is mailed again"
    ana = contact(w, "ana@example.fr")
    assert ana.global_opt_out and "unsubscribe click" in ana.opt_out_reason
    for sim, target in ((w.brevo, w.offers_b), (w.mailchimp, w.offers_mc)):
        assert "ana@example.fr" not in subscribed(sim, target)
    assert_second_sync_writes_nothing(w)


@pytest.mark.parametrize("behind", ["a spam complaint", "an account user's block"])
def test_a_list_synced_before_the_one_left_reads_brevos_record_before_it_lifts_the_block(world, behind):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news", "offers"])
    run_cli(w, "sync")
    if behind == "a spam complaint":
        w.brevo.contact_complains("ana@example.fr", int(w.news_b.list_id))  # its webhook lost
    else:
        brevo_api(w).set_blocked("ana@example.fr", True)
    w.brevo.unsubscribe("ana@example.fr", w.news_b)

    # offers, where she is still a member, is synced first (its own schedule, or alone): its read
    # shows the block with a per-list reason (news); the lift waits on Brevo's record.
    run_cli(w, "sync", "--list", "offers")

    assert w.brevo.is_blocked("ana@example.fr"), f"a block with {behind} behind it was lifted"
    assert contact(w, "ana@example.fr").global_opt_out
    assert "ana@example.fr" not in subscribed(w.brevo, w.offers_b)
    assert "ana@example.fr" not in subscribed(w.mailchimp, w.offers_mc)
    run_cli(w, "sync")  # news then takes her off too
    assert w.brevo.is_blocked("ana@example.fr")
    assert "ana@example.fr" not in subscribed(w.mailchimp, w.news_mc)
    assert_second_sync_writes_nothing(w)


def test_a_block_set_by_an_account_user_is_not_lifted_for_a_later_per_list_unsubscribe(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news", "offers"])
    run_cli(w, "sync")
    brevo_api(w).set_blocked("ana@example.fr", True)  # blocked in Brevo's UI; no sync saw it yet
    w.brevo.unsubscribe("ana@example.fr", w.news_b)

    run_cli(w, "sync")

    assert w.brevo.is_blocked("ana@example.fr")
    ana = contact(w, "ana@example.fr")
    assert ana.global_opt_out and "account user" in ana.opt_out_reason
    assert set(memberships(w, "ana@example.fr").values()) == {"unsubscribed"}
    assert "ana@example.fr" not in subscribed(w.brevo, w.offers_b)
    assert_second_sync_writes_nothing(w)


# --- defect 4: a list switched to double opt-in ---------------------------------------------------

CONFIRM_LINK = re.compile(r"/confirm/([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)")


def test_a_list_switched_to_double_opt_in_asks_unproven_members_to_confirm_and_holds_them_off(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news"])
    add_contact(w, "bob@example.fr", "client", ["news"])
    add_contact(w, "carl@example.fr", "client", ["news"], consent="double_opt_in")  # a confirmation
    run_cli(w, "sync")
    everyone = ["ana@example.fr", "bob@example.fr", "carl@example.fr"]
    assert subscribed(w.brevo, w.news_b) == subscribed(w.mailchimp, w.news_mc) == everyone

    w.config_path.write_text(
        w.config_path.read_text().replace(
            "news:\n    consent: single_opt_in", "news:\n    consent: double_opt_in"
        )
    )
    w.brevo.reset_calls()
    w.mailchimp.reset_calls()
    dry = run_cli(w, "sync", "--dry-run", "--list", "news", "--show-emails")
    assert "2 members without a double opt-in confirmation for this list" in dry.output
    assert dry.output.count("2 removals, 2 reconfirmations") == 2, dry.output  # each target
    assert "reconfirm: ana@example.fr — double opt-in now required" in dry.output
    assert (w.brevo.write_calls, w.mailchimp.write_calls, len(w.brevo.outbox)) == (0, 0, 0)
    assert memberships(w, "ana@example.fr") == {"news": "subscribed"}

    result = run_cli(w, "sync", "--list", "news")

    assert "confirmation mails sent: 2" in result.output
    assert [memberships(w, e)["news"] for e in everyone] == ["pending", "pending", "subscribed"]
    assert sorted(m["to"][0]["email"] for m in w.brevo.outbox) == everyone[:2]
    assert subscribed(w.brevo, w.news_b) == subscribed(w.mailchimp, w.news_mc) == ["carl@example.fr"]
    assert w.mailchimp.member_status(w.audience, "ana@example.fr") == "subscribed", (
        "untagged, not unsubscribed"
    )
    assert_second_sync_writes_nothing(w)
    assert len(w.brevo.outbox) == 2

    # Ana confirms from her mail: the proof is recorded and the next sync puts her back.
    mail = next(m for m in w.brevo.outbox if m["to"][0]["email"] == "ana@example.fr")
    token = CONFIRM_LINK.search(mail["textContent"]).group(1)
    assert doi.confirm(w.engine, w.config, token, ip="198.51.100.7", user_agent="pytest").state == "confirmed"
    run_cli(w, "sync")
    assert (
        subscribed(w.brevo, w.news_b)
        == subscribed(w.mailchimp, w.news_mc)
        == ["ana@example.fr", "carl@example.fr"]
    )


def test_a_sync_that_cannot_mail_the_confirmations_says_why_and_fails(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news"])
    run_cli(w, "sync")
    text = w.config_path.read_text().replace('  secret: "${T_DOI_SECRET}"\n', "")
    w.config_path.write_text(
        text.replace("news:\n    consent: single_opt_in", "news:\n    consent: double_opt_in")
    )

    url = w.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(main, ["--config", str(w.config_path), "--database", url, "sync"])

    assert result.exit_code == 1
    assert "confirmation mails not sent: set 'double_opt_in.secret'" in result.output
    assert memberships(w, "ana@example.fr") == {"news": "pending"}  # the daemon mails her once fixed
    assert subscribed(w.brevo, w.news_b) == [] and w.brevo.outbox == []


def test_a_member_another_run_imports_at_the_same_moment_is_found_not_added_twice(world):
    w = world
    # Added in Mailchimp's UI to the audience news and offers share, with news's tag; a run of
    # offers (the same audience) imports her while news's run reads her too.
    w.mailchimp.seed(w.news_mc, [{"email": "mc-ui@example.fr"}])
    raced = []

    def other_run_imports_her_first(conn, cursor, statement, parameters, context, executemany):
        if raced or not statement.lstrip().upper().startswith("INSERT INTO CONTACT "):
            return
        if "mc-ui@example.fr" not in repr(parameters):
            return
        raced.append(statement)
        with Session(w.engine) as other:
            other.add(Contact(email="mc-ui@example.fr", first_name="Mia"))
            other.commit()

    sa.event.listen(w.engine, "before_cursor_execute", other_run_imports_her_first)
    try:
        connectors = {p: make_connector(w.config, p) for p in ("brevo", "mailchimp")}
        report = sync_list(w.engine, w.config, "news", connectors)
    finally:
        sa.event.remove(w.engine, "before_cursor_execute", other_run_imports_her_first)

    assert raced, "the run never imported her"
    assert report.ok, report
    assert emails_in_base(w) == ["mc-ui@example.fr"]
    assert memberships(w, "mc-ui@example.fr") == {}  # on the provider's word alone: no membership
    flags = run_cli(w, "flags", "--format", "csv").output
    assert "news,unknown_remote,mc-ui@example.fr" in flags


# --- defect 5: members added at the provider -------------------------------------------------------


def test_members_added_at_the_provider_are_removed_under_on_violation_remove_and_flagged_under_flag(world):
    w = world
    add_contact(w, "known@example.fr", "client")  # in the base, never joined offers
    # Added in the providers' own UIs: offers says on_violation: remove, news keeps the default flag.
    w.brevo.seed(w.offers_b, [{"email": "ui@example.fr"}, {"email": "known@example.fr"}])
    w.mailchimp.seed(w.offers_mc, [{"email": "mc-ui@example.fr"}])
    w.brevo.seed(w.news_b, [{"email": "kept@example.fr"}])

    result = run_cli(w, "sync", "--show-emails")

    assert subscribed(w.brevo, w.offers_b) == [] and subscribed(w.mailchimp, w.offers_mc) == []
    assert "removal: ui@example.fr — on the provider's list, not a member in the master base" in result.output
    # A removal, never an unsubscribe: the audience still has the member, only the tag went.
    assert w.mailchimp.member_status(w.audience, "mc-ui@example.fr") == "subscribed"
    assert memberships(w, "ui@example.fr") == {} and memberships(w, "known@example.fr") == {}
    assert subscribed(w.brevo, w.news_b) == ["kept@example.fr"]
    flags = run_cli(w, "flags", "--format", "csv").output
    assert "news,unknown_remote,kept@example.fr" in flags
    assert "ui@example.fr" not in flags
    assert_second_sync_writes_nothing(w)


# --- a Mailchimp refusal that shows an opt-out syncd had missed ---------------------------------


def _unsubscribed_outside_the_tag(w, email, changed_at):
    """In the audience, unsubscribed without the news tag, then archived: no read of the audience
    shows them (archived members are not listed), only Mailchimp's refusal does."""
    w.mailchimp.seed(w.audience, [{"email": email, "status": "unsubscribed", "changed_at": changed_at}])
    MailchimpConnector(w.mailchimp.api_key, w.mailchimp.api_url).remove(
        Target("mailchimp", w.audience.list_id), [email]
    )


def test_a_hard_bounce_outside_the_tag_is_seen_by_the_read_before_any_target_is_written(world):
    """Mailchimp's clean is per audience: a member cleaned while carrying only another list's tag
    has bounced for this list too. The read of the tag's target shows it, so no target of the list
    (the Brevo one is written first) gets the address, and a second run has nothing to do."""
    w = world
    now = datetime.now(UTC)
    add_contact(w, "ana@example.fr", "client", ["news"])
    w.mailchimp.seed(
        w.audience,
        [{"email": "ana@example.fr", "status": "cleaned", "tags": ["offers"], "changed_at": now}],
    )

    run_cli(w, "sync", "--list", "news")

    assert contact(w, "ana@example.fr").email_status == "bounced"
    assert "ana@example.fr" not in w.brevo.members(w.news_b)
    assert w.mailchimp.member_status(w.audience, "ana@example.fr") == "cleaned"
    assert_second_sync_writes_nothing(w, "--list", "news")


def test_an_unsubscribe_outside_the_tag_closes_the_list_at_the_first_read(world):
    w = world
    now = datetime.now(UTC)
    ana_joined_news(w, at=now - timedelta(days=2))
    w.mailchimp.seed(
        w.audience,
        [{"email": "ana@example.fr", "status": "unsubscribed", "changed_at": now - timedelta(days=1)}],
    )

    first = run_cli(w, "sync", "--list", "news")

    assert "compliance state" not in first.output
    assert memberships(w, "ana@example.fr")["news"] == "unsubscribed"
    assert "ana@example.fr" not in w.brevo.members(w.news_b)
    assert "news" not in w.mailchimp.members(w.audience)["ana@example.fr"].tags
    assert_second_sync_writes_nothing(w, "--list", "news")


def test_an_audience_unsubscribe_read_through_another_lists_tag_closes_the_lists_she_is_in(world):
    """A Mailchimp unsubscribe is per audience. Read while syncing news, whose member Ana is not,
    it still closes offers (same audience), where she waited for nothing but that read."""
    w = world
    now = datetime.now(UTC)
    add_contact(w, "ana@example.fr", "client", ["offers"])
    run_cli(w, "sync", "--list", "offers")
    w.mailchimp.unsubscribe("ana@example.fr", w.audience)  # no webhook registered

    run_cli(w, "sync", "--list", "news")

    # Rule 3: an opt-out of every list sharing the audience, as its webhook would have recorded.
    assert memberships(w, "ana@example.fr") == {"offers": "unsubscribed", "news": "unsubscribed"}
    opt_outs = [c for c in consents(w, "ana@example.fr") if c.action == "opt_out"]
    assert sorted(c.list_name for c in opt_outs) == ["news", "offers"]
    assert all(c.at >= now - timedelta(seconds=5) for c in opt_outs)
    run_cli(w, "sync", "--list", "offers")
    assert "ana@example.fr" not in w.brevo.members(w.offers_b)


def test_a_hard_bounce_read_at_the_provider_is_recorded_for_a_contact_in_no_list(world):
    """Cleaned is a fact about the address: recorded whoever the contact is, so that no list that
    admits her later (an auto-enrolled segment) pushes an address that bounced."""
    w = world
    add_contact(w, "vera@example.fr", "client")  # in no list
    w.mailchimp.seed(w.news_mc, [{"email": "vera@example.fr", "status": "cleaned"}])

    run_cli(w, "sync", "--list", "news")

    assert contact(w, "vera@example.fr").email_status == "bounced"
    assert_second_sync_writes_nothing(w, "--list", "news")


def test_a_compliance_state_refusal_records_the_missed_opt_out_and_the_run_takes_her_off_every_target(world):
    w = world
    now = datetime.now(UTC)
    ana_joined_news(w, at=now - timedelta(days=2))
    _unsubscribed_outside_the_tag(w, "ana@example.fr", now - timedelta(days=1))

    first = run_cli(w, "sync", "--list", "news")
    assert "compliance state" in first.output
    # Mailchimp's refusal is its word that Ana left the audience after her opt-in: the audience's
    # lists record the opt-out, and the Brevo list she had just been added to lets her go in the
    # same run, so that a second run has nothing to do.
    assert memberships(w, "ana@example.fr")["news"] == "unsubscribed"
    opt_outs = {c.list_name: c.source for c in consents(w, "ana@example.fr") if c.action == "opt_out"}
    assert opt_outs == {"news": "webhook:mailchimp", "offers": "webhook:mailchimp"}
    assert subscribed(w.brevo, w.news_b) == [] and subscribed(w.mailchimp, w.news_mc) == []
    assert_second_sync_writes_nothing(w, "--list", "news")


def test_an_unsubscribe_outside_the_tag_older_than_the_opt_in_asks_mailchimp_for_a_reconfirmation(world):
    w = world
    now = datetime.now(UTC)
    w.mailchimp.seed(
        w.audience,
        [{"email": "ana@example.fr", "status": "unsubscribed", "changed_at": now - timedelta(days=2)}],
    )
    add_contact(w, "ana@example.fr", "client", ["news"])  # her opt-in is newer than her unsubscribe

    run_cli(w, "sync", "--list", "news")

    assert memberships(w, "ana@example.fr")["news"] == "subscribed"
    # The way back from Mailchimp's compliance state is its own confirmation mail (pending), asked
    # at once: the read showed her state, no refusal was needed to learn it.
    assert w.mailchimp.member_status(w.audience, "ana@example.fr") == "pending"
    assert_second_sync_writes_nothing(w)


# --- a change of address at one provider (Build: email change at either provider) -----------------


def mailchimp_renames(w, old, new):
    """The member changes address in Mailchimp's profile form (same member, same contact_id)."""
    w.mailchimp.member_action(w.audience.list_id, old, "change-email", new_email=new)


def emails_in_base(w):
    with Session(w.engine) as s:
        return sorted(s.exec(select(Contact.email)))


def test_a_change_of_address_at_mailchimp_without_its_webhook_follows_the_person_to_every_target(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news"])
    run_cli(w, "sync", "--list", "news")
    run_cli(w, "sync", "--list", "news")  # the read after the push learns Mailchimp's id of the member
    mailchimp_renames(w, "ana@example.fr", "ana.new@example.fr")  # no webhook registered

    run_cli(w, "sync", "--list", "news")

    # One person, one record everywhere: the base follows the member's id, and Brevo's contact is
    # renamed rather than a second one added beside it.
    assert emails_in_base(w) == ["ana.new@example.fr"]
    assert subscribed(w.mailchimp, w.news_mc) == ["ana.new@example.fr"]
    assert subscribed(w.brevo, w.news_b) == ["ana.new@example.fr"]
    assert w.brevo.contact("ana@example.fr") is None
    assert_second_sync_writes_nothing(w, "--list", "news")

    # She then leaves the audience under her new address: no address of hers stays on news.
    w.mailchimp.unsubscribe("ana.new@example.fr", w.news_mc)
    run_cli(w, "sync", "--list", "news")
    assert memberships(w, "ana.new@example.fr")["news"] == "unsubscribed"
    assert subscribed(w.brevo, w.news_b) == []


def test_an_unsubscribe_after_a_change_of_address_not_yet_carried_to_brevo_takes_the_former_one_off(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news", "offers"])
    run_cli(w, "sync")
    # Mailchimp reports the new address (webhook applied); Brevo still holds the former one.
    mailchimp_renames(w, "ana@example.fr", "ana.new@example.fr")
    webhook_applied(
        w, "mailchimp", EventKind.EMAIL_CHANGED, "ana@example.fr", w.audience, new_email="ana.new@example.fr"
    )
    # Before any push renames it at Brevo, she leaves news through syncd.
    with session_scope(w.engine) as s:
        leave_list(s, contact(w, "ana.new@example.fr"), "news", reason="form", source="form")

    run_cli(w, "sync")

    assert subscribed(w.brevo, w.news_b) == [], "the former address is still on the list she left"
    assert subscribed(w.brevo, w.offers_b) == ["ana.new@example.fr"]
    assert w.brevo.contact("ana@example.fr") is None
    assert subscribed(w.mailchimp, w.offers_mc) == ["ana.new@example.fr"]
    assert_second_sync_writes_nothing(w)


def test_a_change_of_address_in_brevo_is_read_from_the_list_and_carried_to_mailchimp(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news"])
    run_cli(w, "sync", "--list", "news")
    run_cli(w, "sync", "--list", "news")  # the read after the push learns Brevo's id of the contact
    # Changed in Brevo's UI (the API acts alike); no webhook.
    r = httpx.put(
        f"{w.brevo.api_url}/contacts/ana@example.fr",
        json={"attributes": {"EMAIL": "ana.new@example.fr"}},
        headers={"api-key": w.brevo.api_key},
    )
    assert r.status_code == 204, r.text

    run_cli(w, "sync", "--list", "news")

    assert emails_in_base(w) == ["ana.new@example.fr"]
    assert subscribed(w.mailchimp, w.news_mc) == ["ana.new@example.fr"]
    assert w.mailchimp.member_status(w.news_mc, "ana@example.fr") is None, "renamed, not duplicated"
    assert_second_sync_writes_nothing(w, "--list", "news")


def brevo_user_renames(w, old, new):
    """An account user changes the contact's address in Brevo's UI (same contact id); no webhook."""
    r = httpx.put(
        f"{w.brevo.api_url}/contacts/{old}",
        json={"attributes": {"EMAIL": new}},
        headers={"api-key": w.brevo.api_key},
    )
    assert r.status_code == 204, r.text


def mailchimp_renames_with_webhook(w, old, new):
    mailchimp_renames(w, old, new)
    body, ctype = w.mailchimp.webhook_payload(EventKind.EMAIL_CHANGED, old, w.audience, new_email=new)
    with session_scope(w.engine) as s:
        for event in MailchimpConnector(w.mailchimp.api_key, w.mailchimp.api_url).parse_webhook(body, ctype):
            assert apply_event(s, event, w.config) == "applied"


def two_changes_of_address(w):
    """Ana, on news and offers in the base, pushed to news only; then two changes of address
    before syncd hears of the first: one in Brevo's UI (no webhook), then Mailchimp's (its webhook
    applied). Returns her Brevo record's id."""
    ana_known_on_news_joins_offers(w)
    record = w.brevo.contact("ana@example.fr")["id"]
    brevo_user_renames(w, "ana@example.fr", "ana.b@example.fr")
    mailchimp_renames_with_webhook(w, "ana@example.fr", "ana.new@example.fr")
    return record


def test_a_list_new_to_the_contact_renames_the_brevo_record_another_list_holds_by_its_id(world):
    w = world
    record = two_changes_of_address(w)

    # offers holds nothing of hers yet: it renames the record news holds under her former address,
    # found by its id, under whatever address Brevo has now (news's own read would have shown it).
    run_cli(w, "sync", "--list", "offers")

    assert w.brevo.contact("ana.b@example.fr") is None, "the record keeps an address the base left"
    assert w.brevo.contact("ana.new@example.fr")["id"] == record, "a second record beside hers"
    assert subscribed(w.brevo, w.news_b) == ["ana.new@example.fr"]
    run_cli(w, "sync")
    assert subscribed(w.brevo, w.offers_b) == ["ana.new@example.fr"]
    assert w.brevo.contact("ana.new@example.fr")["id"] == record
    assert_second_sync_writes_nothing(w)


def test_a_blocked_brevo_record_another_list_holds_is_not_renamed_and_its_block_is_learnt(world):
    w = world
    record = two_changes_of_address(w)
    # She clicks unsubscribe in a default Brevo account's campaign: a block naming no list. Its
    # webhook has not arrived.
    w.brevo.contact_unsubscribes("ana.b@example.fr", int(w.news_b.list_id))

    run_cli(w, "sync", "--list", "offers")

    # Renaming would lift the block (Brevo does on a change of address), and a second record
    # under her new address would be mailed: neither. The block is hers, an opt-out from everything.
    assert w.brevo.contact("ana.new@example.fr") is None, "a second record beside the blocked one"
    kept = w.brevo.contact("ana.b@example.fr")
    assert kept["id"] == record and kept["emailBlacklisted"]
    assert contact(w, "ana.new@example.fr").global_opt_out
    run_cli(w, "sync")
    assert w.brevo.contact("ana.new@example.fr") is None
    assert subscribed(w.brevo, w.offers_b) == [] and subscribed(w.mailchimp, w.offers_mc) == []
    assert subscribed(w.mailchimp, w.news_mc) == []
    assert_second_sync_writes_nothing(w)


def test_a_change_of_address_onto_an_erased_one_read_from_the_list_renames_nothing(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news"])
    run_cli(w, "sync", "--list", "news")
    run_cli(w, "sync", "--list", "news")
    run_cli(w, "contacts", "forget", "gone@example.fr", "--yes", "--local-only")
    mailchimp_renames(w, "ana@example.fr", "gone@example.fr")

    run_cli(w, "sync", "--list", "news")

    assert emails_in_base(w) == ["ana@example.fr"]
    assert "gone@example.fr" not in w.mailchimp.members(w.news_mc)  # taken off, as any erased member
    assert "gone@example.fr" not in w.brevo.members(w.news_b)


def test_erasing_a_contact_also_erases_the_former_address_a_provider_still_holds(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news"])
    run_cli(w, "sync", "--list", "news")
    mailchimp_renames(w, "ana@example.fr", "ana.new@example.fr")
    body, ctype = w.mailchimp.webhook_payload(
        EventKind.EMAIL_CHANGED, "ana@example.fr", w.audience, new_email="ana.new@example.fr"
    )
    with session_scope(w.engine) as s:
        for event in MailchimpConnector(w.mailchimp.api_key, w.mailchimp.api_url).parse_webhook(body, ctype):
            apply_event(s, event, w.config)

    run_cli(w, "contacts", "forget", "ana.new@example.fr", "--yes")

    assert w.brevo.contact("ana@example.fr") is None and w.brevo.contact("ana.new@example.fr") is None
    assert w.mailchimp.member_status(w.news_mc, "ana.new@example.fr") is None
    assert emails_in_base(w) == []
    # Both addresses are blocked from coming back.
    path = w.config_path.parent / "again.csv"
    path.write_text("email;first_name\nana@example.fr;Ana\nana.new@example.fr;Ana\n", encoding="utf-8")
    run_cli(w, "import", str(path), "--source", "form")
    assert emails_in_base(w) == []


def test_a_change_of_address_mailchimp_refuses_takes_the_former_address_off_and_the_run_goes_on(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news"])
    run_cli(w, "sync", "--list", "news")
    run_cli(w, "sync", "--list", "news")
    # The new address was deleted for good in this Mailchimp audience: Mailchimp refuses it back.
    w.mailchimp.seed(w.news_mc, [{"email": "ana.new@example.fr", "status": "subscribed"}])
    mc = MailchimpConnector(w.mailchimp.api_key, w.mailchimp.api_url)
    assert mc.erase(w.news_mc, "ana.new@example.fr")
    r = httpx.put(
        f"{w.brevo.api_url}/contacts/ana@example.fr",
        json={"attributes": {"EMAIL": "ana.new@example.fr"}},
        headers={"api-key": w.brevo.api_key},
    )
    assert r.status_code == 204, r.text

    result = run_cli(w, "sync", "--list", "news")

    assert emails_in_base(w) == ["ana.new@example.fr"]
    assert subscribed(w.brevo, w.news_b) == ["ana.new@example.fr"]
    # Neither address is on the Mailchimp target: the former one was taken off, the new one refused.
    assert subscribed(w.mailchimp, w.news_mc) == []
    assert "rejected by the provider: a***@example.fr" in result.output
    assert "permanently deleted" in result.output


def test_a_late_webhook_naming_a_former_address_reaches_the_contact(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news"])
    run_cli(w, "sync", "--list", "news")
    run_cli(w, "sync", "--list", "news")
    # Ana complains about a campaign, then changes address; both webhooks are late.
    w.mailchimp.member_action(w.audience.list_id, "ana@example.fr", "unsubscribe", reason="abuse")
    complaint, ctype = w.mailchimp.webhook_payload(EventKind.COMPLAINED, "ana@example.fr", w.audience)
    mailchimp_renames(w, "ana@example.fr", "ana.new@example.fr")
    run_cli(w, "sync", "--list", "news")  # the read applies the change of address first
    assert emails_in_base(w) == ["ana.new@example.fr"]

    with session_scope(w.engine) as s:
        for event in MailchimpConnector(w.mailchimp.api_key, w.mailchimp.api_url).parse_webhook(
            complaint, ctype
        ):
            assert apply_event(s, event, w.config) == "applied"

    ana = contact(w, "ana.new@example.fr")
    assert ana.email_status == "complained" and ana.global_opt_out
    run_cli(w, "sync")
    assert subscribed(w.brevo, w.news_b) == [] and subscribed(w.mailchimp, w.news_mc) == []


def mailchimp_refuses_one_run(w, list_name):
    """A run of the list whose Mailchimp target fails at once (its first call refused, not retried):
    only Brevo is written."""
    w.mailchimp.fail_next(1, status=400)
    url = w.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(
        main, ["--config", str(w.config_path), "--database", url, "sync", "--list", list_name]
    )
    assert result.exit_code != 0 and "mailchimp" in result.output, result.output


def test_an_unsubscribe_under_a_former_address_at_a_provider_never_read_before_is_the_persons(world):
    w = world
    # Ana is on the vendors audience before syncd knows her (added in Mailchimp's UI), then in
    # the base; she leaves the audience, and its webhook is lost.
    w.mailchimp.seed(w.vendors_mc, [{"email": "ana@example.fr", "status": "subscribed"}])
    add_contact(w, "ana@example.fr", "vendor")
    w.mailchimp.unsubscribe("ana@example.fr", w.vendors_mc)
    # The first run of vendors reaches Brevo only: Mailchimp refuses it, never read.
    mailchimp_refuses_one_run(w, "vendors")
    assert subscribed(w.brevo, w.vendors_b) == ["ana@example.fr"]
    # Brevo's user changes her address; the base follows it at the next run's read.
    brevo_user_renames(w, "ana@example.fr", "ana.new@example.fr")

    run_cli(w, "sync", "--list", "vendors")

    # The member who left under her former address is Ana: her objection closes vendors, on
    # every target; she is not added to the audience again under her new address.
    assert emails_in_base(w) == ["ana.new@example.fr"]
    assert memberships(w, "ana.new@example.fr")["vendors"] == "unsubscribed"
    assert subscribed(w.mailchimp, w.vendors_mc) == []
    assert w.mailchimp.member_status(w.vendors_mc, "ana.new@example.fr") is None
    assert subscribed(w.brevo, w.vendors_b) == []
    assert_second_sync_writes_nothing(w, "--list", "vendors")


def test_a_member_under_an_address_another_contact_holds_now_is_that_contacts_not_its_former_owners(world):
    w = world
    add_contact(w, "ana@example.fr", "vendor")
    webhook_applied(
        w, "brevo", EventKind.EMAIL_CHANGED, "ana@example.fr", w.vendors_b, new_email="ana.new@example.fr"
    )
    # The address Ana left is given to someone else, who is in the base under it, and who left the
    # vendors audience (seen by no run yet).
    add_contact(w, "ana@example.fr", "vendor")
    w.mailchimp.seed(w.vendors_mc, [{"email": "ana@example.fr", "status": "subscribed"}])
    w.mailchimp.unsubscribe("ana@example.fr", w.vendors_mc)

    run_cli(w, "sync", "--list", "vendors")

    # The objection is the new holder's; Ana (auto-enrolled, no membership row) stays on vendors.
    assert memberships(w, "ana@example.fr")["vendors"] == "unsubscribed"
    assert "vendors" not in memberships(w, "ana.new@example.fr")
    assert subscribed(w.mailchimp, w.vendors_mc) == ["ana.new@example.fr"]
    assert subscribed(w.brevo, w.vendors_b) == ["ana.new@example.fr"]


def test_a_change_of_address_applied_while_the_contact_is_pushed_is_carried_to_the_member_pushed(world):
    w = world
    add_contact(w, "ana@example.fr", "vendor")
    # The vendors list's first run reaches Brevo only (Mailchimp refuses it): Brevo holds Ana.
    mailchimp_refuses_one_run(w, "vendors")
    assert subscribed(w.brevo, w.vendors_b) == ["ana@example.fr"]

    def renamed_in_brevo_meanwhile():
        # While the audience takes the push of her planned address, an account user changes it
        # in Brevo and its webhook is applied (another list's run could follow it as well).
        brevo_user_renames(w, "ana@example.fr", "ana.new@example.fr")
        webhook_applied(
            w, "brevo", EventKind.EMAIL_CHANGED, "ana@example.fr", w.vendors_b, new_email="ana.new@example.fr"
        )

    w.mailchimp.on_call("POST", f"/3.0/lists/{w.vendors_mc.list_id}", renamed_in_brevo_meanwhile)
    run_cli(w, "sync", "--list", "vendors")

    # The member pushed under her former address is hers: renamed in the same run, not read back
    # as a second contact beside her.
    assert emails_in_base(w) == ["ana.new@example.fr"]
    assert subscribed(w.mailchimp, w.vendors_mc) == ["ana.new@example.fr"]
    assert w.mailchimp.member_status(w.vendors_mc, "ana@example.fr") is None
    assert subscribed(w.brevo, w.vendors_b) == ["ana.new@example.fr"]
    assert_second_sync_writes_nothing(w, "--list", "vendors")


def test_a_brevo_record_created_under_an_address_left_during_the_push_leaves_the_list(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["news"])
    run_cli(w, "sync", "--list", "news")
    run_cli(w, "sync", "--list", "news")  # the read after the push learns Brevo's id of her record
    with session_scope(w.engine) as s:
        join_list(
            s,
            contact(w, "ana@example.fr"),
            "offers",
            w.config.lists["offers"],
            consent="single_opt_in",
            source="form",
        )

    def renamed_in_brevo_meanwhile():
        # While Brevo takes the push to offers under her planned address, an account user changes
        # it (the UI, inside the simulator) and the webhook is applied: the push creates a second
        # record under the former address.
        account = w.brevo.account
        with account.lock:
            account.update(
                account.find("ana@example.fr"),
                {"attributes": {"EMAIL": "ana.new@example.fr"}},
                datetime.now(UTC),
            )
        webhook_applied(
            w, "brevo", EventKind.EMAIL_CHANGED, "ana@example.fr", w.news_b, new_email="ana.new@example.fr"
        )

    w.brevo.on_call("POST", "/v3/contacts", renamed_in_brevo_meanwhile)
    run_cli(w, "sync", "--list", "offers")

    # The record under her former address leaves offers in the same run; her own record is there.
    assert emails_in_base(w) == ["ana.new@example.fr"]
    assert subscribed(w.brevo, w.offers_b) == ["ana.new@example.fr"]
    assert subscribed(w.brevo, w.news_b) == ["ana.new@example.fr"]
    assert subscribed(w.mailchimp, w.offers_mc) == ["ana.new@example.fr"]
    run_cli(w, "sync")  # news carries the change of address to its Mailchimp tag
    assert subscribed(w.mailchimp, w.news_mc) == ["ana.new@example.fr"]
    assert emails_in_base(w) == ["ana.new@example.fr"]
    assert_second_sync_writes_nothing(w)


def ana_known_on_news_joins_offers(w):
    """Ana, on news and offers in the base, pushed to news only and read back there (syncd knows
    her Brevo record's and Mailchimp member's ids); offers holds nothing of hers yet."""
    add_contact(w, "ana@example.fr", "client", ["news", "offers"])
    run_cli(w, "sync", "--list", "news")
    run_cli(w, "sync", "--list", "news")  # the read after the push learns the providers' ids


def test_a_change_of_address_at_mailchimp_is_followed_by_a_tag_the_member_is_not_on_yet(world):
    w = world
    ana_known_on_news_joins_offers(w)
    mailchimp_renames(w, "ana@example.fr", "ana.new@example.fr")  # no webhook registered

    # offers holds nothing of hers yet, and its tag is not on her member: its read of the audience
    # still shows her member under the new address, which the base follows before offers pushes.
    # Pushed under the former address, the audience (no longer holding it) would subscribe it
    # as a new member.
    run_cli(w, "sync", "--list", "offers")

    assert w.mailchimp.member_status(w.audience, "ana@example.fr") is None, "her former address re-added"
    assert emails_in_base(w) == ["ana.new@example.fr"]
    assert subscribed(w.mailchimp, w.offers_mc) == ["ana.new@example.fr"]
    run_cli(w, "sync")
    assert emails_in_base(w) == ["ana.new@example.fr"]
    assert subscribed(w.mailchimp, w.news_mc) == ["ana.new@example.fr"]
    assert w.brevo.contact("ana@example.fr") is None
    assert subscribed(w.brevo, w.offers_b) == ["ana.new@example.fr"]
    assert_second_sync_writes_nothing(w)


def test_a_change_of_address_at_mailchimp_is_followed_even_once_the_member_was_archived(world):
    w = world
    ana_known_on_news_joins_offers(w)
    mailchimp_renames(w, "ana@example.fr", "ana.new@example.fr")  # no webhook registered
    # Then an account user archives her: a full read of the audience does not list her.
    MailchimpConnector(w.mailchimp.api_key, w.mailchimp.api_url).remove(w.audience, ["ana.new@example.fr"])

    # offers has never read the audience: its first read is a full one, archived members apart.
    run_cli(w, "sync", "--list", "offers")

    assert w.mailchimp.member_status(w.audience, "ana@example.fr") is None, "her former address re-added"
    assert emails_in_base(w) == ["ana.new@example.fr"]
    run_cli(w, "sync")
    assert emails_in_base(w) == ["ana.new@example.fr"]
    assert w.mailchimp.member_status(w.audience, "ana@example.fr") is None


def test_a_change_of_address_in_brevo_is_followed_by_a_list_the_contact_is_not_on_yet(world):
    w = world
    ana_known_on_news_joins_offers(w)
    record = w.brevo.contact("ana@example.fr")["id"]
    brevo_user_renames(w, "ana@example.fr", "ana.b@example.fr")

    run_cli(w, "sync", "--list", "offers")
    run_cli(w, "sync")

    assert w.brevo.contact("ana@example.fr") is None, "her former address re-added"
    assert len(emails_in_base(w)) == 1
    assert w.brevo.contact(emails_in_base(w)[0])["id"] == record
    assert_second_sync_writes_nothing(w)
