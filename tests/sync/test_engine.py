"""End to end: the `syncd sync` command against both simulators, through the official SDKs over HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from simkit import BrevoSimulator, MailchimpSimulator
from sqlmodel import Session, select

from connectors.brevo import BrevoConnector
from connectors.contract import EventKind, RemoteStatus
from connectors.mailchimp import MailchimpConnector
from syncd.cli import main
from syncd.config import load_config
from syncd.db import session_scope
from syncd.inbound.apply import apply_event
from syncd.membership import join_list
from syncd.models import Contact, Membership, SyncRun
from syncd.sync import state
from syncd.sync.engine import sync_list


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
    """Fresh provider lists and a config that maps three syncd lists onto them."""
    news_b, offers_b, vendors_b, events_b = (
        brevo.create_target(n) for n in ("news", "offers", "vendors", "events")
    )
    audience = mailchimp.create_target("audience")
    monkeypatch.setenv("T_BREVO_KEY", brevo.api_key)
    monkeypatch.setenv("T_MC_KEY", mailchimp.api_key)
    path = tmp_path / "syncd.yaml"
    path.write_text(
        f"""
version: 1
providers:
  brevo: {{api_key: "${{T_BREVO_KEY}}", base_url: "{brevo.api_url}", api_key_name: syncd, settle_s: 0}}
  mailchimp: {{api_key: "${{T_MC_KEY}}", base_url: "{mailchimp.api_url}", settle_s: 0}}
lists:
  newsletter-clients:
    consent: single_opt_in
    segment: {{kind: [client]}}
    targets:
      - brevo: {{list_id: {news_b.list_id}}}
      - mailchimp: {{audience: "{audience.list_id}", tag: clients}}
  offers:
    consent: single_opt_in
    targets:
      - brevo: {{list_id: {offers_b.list_id}}}
      - mailchimp: {{audience: "{audience.list_id}", tag: offers}}
  events:
    consent: single_opt_in
    targets: [{{brevo: {{list_id: {events_b.list_id}}}}}]
  vendors:
    consent: legitimate_interest
    segment: {{kind: [vendor]}}
    auto_enroll: true
    exclusive_with: [newsletter-clients]
    on_violation: flag
    targets: [{{brevo: {{list_id: {vendors_b.list_id}}}}}]
""",
        encoding="utf-8",
    )
    brevo.reset_calls()
    mailchimp.reset_calls()
    w = type("World", (), {})()
    w.config_path, w.config = path, load_config(path)
    w.engine, w.brevo, w.mailchimp = engine, brevo, mailchimp
    w.news_b, w.offers_b, w.vendors_b = news_b, offers_b, vendors_b
    w.clients_mc = type(audience)(audience.provider, audience.list_id, "clients")
    w.offers_mc = type(audience)(audience.provider, audience.list_id, "offers")
    w.events_b, w.audience = events_b, audience
    return w


def add_contact(w, email, kind, lists=(), first_name="Ana"):
    with session_scope(w.engine) as s:
        c = Contact(email=email, kind=kind, first_name=first_name)
        s.add(c)
        s.flush()
        for name in lists:
            join_list(s, c, name, w.config.lists[name], consent="single_opt_in", source="form")
        return c.id


def run_cli(w, *args):
    url = w.engine.url.render_as_string(hide_password=False)
    return CliRunner().invoke(main, ["--config", str(w.config_path), "--database", url, *args])


def memberships(w, email):
    with Session(w.engine) as s:
        c = s.exec(select(Contact).where(Contact.email == email)).one()
        return {
            m.list_name: m.status for m in s.exec(select(Membership).where(Membership.contact_id == c.id))
        }


def subscribed(sim, target):
    return sorted(e for e, m in sim.members(target).items() if m.status == RemoteStatus.SUBSCRIBED)


def test_initial_sync_pushes_only_members_with_consent_then_a_second_run_writes_nothing(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["newsletter-clients", "offers"])
    add_contact(w, "bob@example.fr", "client", ["newsletter-clients"])
    add_contact(w, "past.customer@example.fr", "client")  # no consent: never pushed (first-sync disaster)
    add_contact(w, "vera@example.fr", "vendor")  # auto-enrolled in vendors

    result = run_cli(w, "sync")
    assert result.exit_code == 0, result.output
    assert subscribed(w.brevo, w.news_b) == ["ana@example.fr", "bob@example.fr"]
    assert subscribed(w.mailchimp, w.clients_mc) == ["ana@example.fr", "bob@example.fr"]
    assert subscribed(w.brevo, w.offers_b) == ["ana@example.fr"]
    assert subscribed(w.brevo, w.vendors_b) == ["vera@example.fr"]
    assert w.brevo.members(w.news_b)["ana@example.fr"].fields["first_name"] == "Ana"

    w.brevo.reset_calls()
    w.mailchimp.reset_calls()
    again = run_cli(w, "sync")
    assert again.exit_code == 0, again.output
    assert (w.brevo.write_calls, w.mailchimp.write_calls) == (0, 0)
    assert "nothing to change" in again.output
    with Session(w.engine) as s:
        assert all(r.status == "ok" for r in s.exec(select(SyncRun)))


def test_dry_run_after_a_yaml_edit_shows_who_would_be_added_and_removed(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["newsletter-clients"])
    add_contact(w, "vera@example.fr", "vendor")
    assert run_cli(w, "sync").exit_code == 0
    # The marketer widens the vendors segment to partners and drops the vendors from it.
    text = w.config_path.read_text().replace("segment: {kind: [vendor]}", "segment: {kind: [partner]}")
    text = text.replace("on_violation: flag", "on_violation: remove")
    w.config_path.write_text(text)
    add_contact(w, "paul@example.fr", "partner")
    w.brevo.reset_calls()
    result = run_cli(w, "sync", "--dry-run", "--list", "vendors", "--show-emails")
    assert result.exit_code == 0, result.output
    assert "1 addition, 1 removal" in result.output and "paul@example.fr — auto-enrolled" in result.output
    assert "removal: vera@example.fr — not in segment (kind is vendor" in result.output
    assert w.brevo.write_calls == 0
    assert subscribed(w.brevo, w.vendors_b) == ["vera@example.fr"]


def test_unsubscribe_from_one_brevo_list_keeps_the_others_and_lifts_the_blacklist(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["newsletter-clients", "offers"])
    assert run_cli(w, "sync").exit_code == 0
    # Ana clicks Brevo's unsubscribe link in a newsletter: Brevo blacklists her account-wide.
    w.brevo.unsubscribe("ana@example.fr", w.news_b)
    assert w.brevo.is_blocked("ana@example.fr")

    result = run_cli(w, "sync")
    assert result.exit_code == 0, result.output
    assert memberships(w, "ana@example.fr") == {"newsletter-clients": "unsubscribed", "offers": "subscribed"}
    assert not w.brevo.is_blocked("ana@example.fr"), "transactional mail and other lists cut off"
    assert subscribed(w.brevo, w.offers_b) == ["ana@example.fr"]
    assert subscribed(w.mailchimp, w.offers_mc) == ["ana@example.fr"], "Mailchimp side of the other list"
    assert "ana@example.fr" not in subscribed(w.brevo, w.news_b)
    assert "ana@example.fr" not in subscribed(w.mailchimp, w.clients_mc)
    with Session(w.engine) as s:
        assert s.exec(select(Contact)).one().global_opt_out is False


def test_a_mailchimp_unsubscribe_leaves_the_lists_of_that_audience_only(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["newsletter-clients", "offers", "events"])
    assert run_cli(w, "sync").exit_code == 0
    # Ana unsubscribes in a Mailchimp campaign: Mailchimp's unsubscribe is per audience.
    w.mailchimp.unsubscribe("ana@example.fr", w.clients_mc)

    result = run_cli(w, "sync")
    assert result.exit_code == 0, result.output
    # Both syncd lists on that audience are left (DESIGN rule 3); the Brevo-only list is kept.
    assert memberships(w, "ana@example.fr") == {
        "newsletter-clients": "unsubscribed",
        "offers": "unsubscribed",
        "events": "subscribed",
    }
    assert subscribed(w.brevo, w.events_b) == ["ana@example.fr"]
    assert not w.brevo.is_blocked("ana@example.fr")
    assert "ana@example.fr" not in subscribed(w.brevo, w.news_b)
    assert "ana@example.fr" not in subscribed(w.brevo, w.offers_b)
    with Session(w.engine) as s:
        assert s.exec(select(Contact)).one().global_opt_out is False


def test_leaving_the_only_brevo_list_keeps_transactional_mail(world):
    w = world
    add_contact(w, "bob@example.fr", "client", ["newsletter-clients"])
    assert run_cli(w, "sync").exit_code == 0
    w.brevo.unsubscribe("bob@example.fr", w.news_b)
    assert run_cli(w, "sync").exit_code == 0
    assert memberships(w, "bob@example.fr") == {"newsletter-clients": "unsubscribed"}
    assert not w.brevo.is_blocked("bob@example.fr")
    assert "bob@example.fr" not in w.brevo.members(w.news_b)
    w.brevo.reset_calls()
    assert run_cli(w, "sync").exit_code == 0
    assert w.brevo.write_calls == 0


def test_a_spam_complaint_is_global(world):
    w = world
    add_contact(w, "ana@example.fr", "client", ["newsletter-clients", "offers"])
    assert run_cli(w, "sync").exit_code == 0
    body, ctype = w.mailchimp.webhook_payload(EventKind.COMPLAINED, "ana@example.fr", w.clients_mc)
    events = MailchimpConnector(w.mailchimp.api_key, w.mailchimp.api_url).parse_webhook(body, ctype, {})
    with session_scope(w.engine) as s:
        for event in events:
            apply_event(s, event, w.config)

    result = run_cli(w, "sync")
    assert result.exit_code == 0, result.output
    assert set(memberships(w, "ana@example.fr").values()) == {"unsubscribed"}
    assert subscribed(w.brevo, w.news_b) == subscribed(w.brevo, w.offers_b) == []
    assert subscribed(w.mailchimp, w.clients_mc) == []
    with Session(w.engine) as s:
        assert s.exec(select(Contact)).one().global_opt_out is True


def test_a_client_in_the_vendors_list_is_flagged_then_removed_when_configured(world):
    w = world
    add_contact(w, "claire@example.fr", "client", ["newsletter-clients"])
    w.brevo.seed(w.vendors_b, [{"email": "claire@example.fr", "status": "subscribed"}])
    assert run_cli(w, "sync").exit_code == 0
    flags = run_cli(w, "flags", "--format", "csv")
    assert "vendors,not_in_segment,claire@example.fr" in flags.output
    assert "claire@example.fr" in subscribed(w.brevo, w.vendors_b)

    w.config_path.write_text(w.config_path.read_text().replace("on_violation: flag", "on_violation: remove"))
    assert run_cli(w, "sync").exit_code == 0
    assert "claire@example.fr" not in subscribed(w.brevo, w.vendors_b)
    assert "no open flags" in run_cli(w, "flags", "--list", "vendors").output


def test_a_run_cut_off_by_an_outage_converges_on_the_next_run(world):
    w = world
    for i in range(1200):
        add_contact(w, f"c{i:04d}@example.fr", "client", ["newsletter-clients"])
    mc = MailchimpConnector(
        w.mailchimp.api_key, w.mailchimp.api_url, concurrency=1, max_retries=1, max_retry_seconds=1
    )
    mc.preferred_batch = 500  # the engine hands the connector 1,000 then 200 members
    connectors = {"brevo": BrevoConnector(w.brevo.api_key, w.brevo.api_url), "mailchimp": mc}

    def outage_after_first_mailchimp_batch(step, n):
        if "mailchimp" in step and "writing" in step:
            w.mailchimp.fail_next(10_000, status=503)  # Mailchimp goes down, for real, over HTTP

    first = sync_list(
        w.engine, w.config, "newsletter-clients", connectors, progress=outage_after_first_mailchimp_batch
    )
    w.mailchimp.fail_next(0)
    assert not first.ok
    assert "Transient" in next(t for t in first.targets if t.target.startswith("mailchimp")).failed
    partial = subscribed(w.mailchimp, w.clients_mc)
    assert len(partial) == 1000

    w.mailchimp.reset_calls()
    second = sync_list(w.engine, w.config, "newsletter-clients", connectors)
    assert second.ok, second
    assert len(subscribed(w.mailchimp, w.clients_mc)) == 1200
    assert len(subscribed(w.brevo, w.news_b)) == 1200
    mc_report = next(t for t in second.targets if t.target.startswith("mailchimp"))
    # Only what the outage left undone is sent again: 200 members, 1 batch (+ its tag call).
    assert mc_report.applied == {"adds": 200}
    assert mc_report.write_calls == 2


def test_an_erased_contact_is_never_brought_back_by_a_sync(world):
    from syncd.contacts.gdpr import forget_contact

    w = world
    add_contact(w, "gone@example.fr", "client", ["newsletter-clients"])
    assert run_cli(w, "sync").exit_code == 0
    forget_contact(w.engine, "gone@example.fr")
    w.brevo.seed(w.offers_b, [{"email": "gone@example.fr", "status": "subscribed"}])

    assert run_cli(w, "sync").exit_code == 0
    with Session(w.engine) as s:
        assert s.exec(select(Contact).where(Contact.email == "gone@example.fr")).first() is None
    assert "gone@example.fr" not in subscribed(w.brevo, w.offers_b)
    assert "gone@example.fr" not in subscribed(w.brevo, w.news_b)


def test_later_runs_plan_only_what_changed_and_still_see_every_change(world):
    w = world
    for i in range(30):
        add_contact(w, f"p{i:02d}@example.fr", "client", ["newsletter-clients"])
    first = sync_list(w.engine, w.config, "newsletter-clients", _connectors(w))
    assert first.ok and not any(t.incremental for t in first.targets)

    with session_scope(w.engine) as s:
        c = s.exec(select(Contact).where(Contact.email == "p07@example.fr")).one()
        c.first_name = "Renamed"
    second = sync_list(w.engine, w.config, "newsletter-clients", _connectors(w))
    assert second.ok and all(t.incremental for t in second.targets)
    assert all(t.planned.get("updates") == 1 for t in second.targets)
    assert w.brevo.members(w.news_b)["p07@example.fr"].fields["first_name"] == "Renamed"
    assert w.mailchimp.members(w.clients_mc)["p07@example.fr"].fields["first_name"] == "Renamed"

    # A change of the list rules plans everyone again.
    edited = load_config_text(
        w,
        w.config_path.read_text().replace(
            "consent: single_opt_in\n    segment: {kind: [client]}",
            "consent: single_opt_in\n    segment: {kind: [client, partner]}",
        ),
    )
    third = sync_list(w.engine, edited, "newsletter-clients", _connectors(w))
    assert third.ok and not any(t.incremental for t in third.targets)


def test_the_run_right_after_a_push_plans_none_of_what_it_pushed(world):
    w = world
    for i in range(30):
        add_contact(w, f"p{i:02d}@example.fr", "client", ["newsletter-clients"])
    first = sync_list(w.engine, w.config, "newsletter-clients", _connectors(w))
    assert first.ok and all(t.applied.get("adds") == 30 for t in first.targets)

    # The contacts were written just before the first run. SQLite: they are in the next run's
    # window (its margin), and each was planned and stored by it since: skipped by their stamps.
    # PostgreSQL: the first run's snapshot saw them, so the next run does not even look at them.
    second = sync_list(w.engine, w.config, "newsletter-clients", _connectors(w))

    assert second.ok and all(t.incremental for t in second.targets)
    looked_at = 0 if w.engine.dialect.name == "postgresql" else 30
    assert [(t.unchanged, t.contacts_planned) for t in second.targets] == [(looked_at, 0), (looked_at, 0)]
    assert all(sum(t.planned.values()) == 0 and t.write_calls == 0 for t in second.targets)


def test_a_write_committed_after_a_plan_with_an_older_time_is_still_planned(world):
    """A transaction open while a plan read the base commits a change stamped before the plan
    started: the next incremental plan still plans it (stamps are compared, never ordered)."""
    w = world
    for i in range(5):
        add_contact(w, f"p{i}@example.fr", "client", ["newsletter-clients"])
    first = sync_list(w.engine, w.config, "newsletter-clients", _connectors(w))
    assert first.ok
    with Session(w.engine) as s:
        started = s.exec(select(SyncRun.started_at).order_by(SyncRun.id)).first()
    contact = Contact.__table__
    with w.engine.begin() as conn:
        conn.execute(
            contact.update()
            .where(contact.c.email == "p3@example.fr")
            .values(first_name="Late", touched_at=started - timedelta(seconds=30))
        )

    second = sync_list(w.engine, w.config, "newsletter-clients", _connectors(w))

    assert second.ok and all(t.incremental for t in second.targets)
    looked_at = 0 if w.engine.dialect.name == "postgresql" else 4  # as in the test above
    assert [(t.unchanged, t.contacts_planned, t.planned.get("updates")) for t in second.targets] == [
        (looked_at, 1, 1)
    ] * 2
    assert w.brevo.members(w.news_b)["p3@example.fr"].fields["first_name"] == "Late"
    assert w.mailchimp.members(w.clients_mc)["p3@example.fr"].fields["first_name"] == "Late"


def _connectors(w):
    return {
        "brevo": BrevoConnector(w.brevo.api_key, w.brevo.api_url),
        "mailchimp": MailchimpConnector(w.mailchimp.api_key, w.mailchimp.api_url),
    }


def load_config_text(w, text):
    path = w.config_path.with_name("edited.yaml")
    path.write_text(text)
    return load_config(path)


def test_an_import_that_fills_a_field_is_pushed_by_the_next_incremental_run(world, tmp_path):
    from syncd.contacts.importer import Options, import_file

    w = world
    add_contact(w, "ana@example.fr", "client", ["newsletter-clients"])
    assert sync_list(w.engine, w.config, "newsletter-clients", _connectors(w)).ok
    csv = tmp_path / "fair.csv"
    csv.write_text("email;société\nana@example.fr;Atelier Ana\n", encoding="utf-8")
    import_file(w.engine, csv, Options(channel="fair"))

    report = sync_list(w.engine, w.config, "newsletter-clients", _connectors(w))
    assert report.ok and all(t.incremental for t in report.targets)
    assert w.brevo.members(w.news_b)["ana@example.fr"].fields["company"] == "Atelier Ana"


def test_forget_erases_the_contact_at_every_provider_too(world):
    w = world
    add_contact(w, "gone@example.fr", "client", ["newsletter-clients", "offers"])
    assert run_cli(w, "sync").exit_code == 0
    result = run_cli(w, "contacts", "forget", "gone@example.fr", "--yes")
    assert result.exit_code == 0, result.output
    assert "brevo: deleted" in result.output
    assert f"mailchimp:{w.clients_mc.list_id}: deleted" in result.output
    assert "gone@example.fr" not in w.brevo.members(w.news_b)
    assert "gone@example.fr" not in w.brevo.members(w.offers_b)
    assert "gone@example.fr" not in w.mailchimp.members(w.clients_mc)


def _planner_rows(engine, table: str) -> float:
    with engine.connect() as conn:
        return conn.exec_driver_sql(
            f"SELECT reltuples FROM pg_class WHERE oid = '{table}'::regclass"
        ).scalar_one()


def test_a_first_sync_refreshes_the_statistics_of_the_target_states_it_fills(world, monkeypatch):
    """PostgreSQL sizes a table by its last ANALYZE: a first sync fills the target states from
    empty, and must not wait on autovacuum (off, or not run yet) for the planner to know it."""
    w = world
    if w.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's planner takes the unique key for these look-ups without statistics")
    with w.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE targetstate")  # the planner starts from the emptied table
    monkeypatch.setattr(state, "STATES_FLOOR", 3)
    for i in range(4):
        add_contact(w, f"member{i}@example.fr", "client", ["events"])
    assert _planner_rows(w.engine, "targetstate") <= 0
    report = sync_list(
        w.engine, w.config, "events", {"brevo": BrevoConnector(w.brevo.api_key, w.brevo.api_url)}
    )
    assert report.ok and report.targets[0].applied.get("adds") == 4
    assert _planner_rows(w.engine, "targetstate") == 4
    # A new target in a table already sized: its states count, not the table's (the statistics
    # know no row of it), so three more states on a new target refresh them.
    for i in range(3):
        add_contact(w, f"offer{i}@example.fr", "client", ["offers"])
    connectors = {
        "brevo": BrevoConnector(w.brevo.api_key, w.brevo.api_url),
        "mailchimp": MailchimpConnector(w.mailchimp.api_key, w.mailchimp.api_url),
    }
    assert sync_list(w.engine, w.config, "offers", connectors).ok
    assert _planner_rows(w.engine, "targetstate") == 4 + 3 + 3
