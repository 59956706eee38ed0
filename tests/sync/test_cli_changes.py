"""End to end: changes a marketer makes by hand (`syncd contacts subscribe|unsubscribe|set`) reach
both providers at the next `syncd sync` (the simulators, over HTTP), and `syncd status` /
`syncd history` tell what the runs did."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from simkit import BrevoSimulator, MailchimpSimulator
from sqlmodel import Session, select

from connectors.contract import RemoteStatus
from syncd.cli import main
from syncd.config import load_config
from syncd.db import session_scope
from syncd.models import AuditLog, Consent, Contact, Membership

CONFIRM_LINK = re.compile(r"https://lists\.example\.fr/confirm/([A-Za-z0-9_.-]+)")


@pytest.fixture
def world(tmp_path, engine, monkeypatch):
    """A newsletter and offers sharing one Brevo account and one Mailchimp audience (by tags), and
    a double-opt-in club on Brevo; confirmation mails through Brevo's transactional API."""
    from syncd.secret import generate as generate_secret

    with BrevoSimulator() as brevo, MailchimpSimulator() as mailchimp:
        news_b, offers_b, club_b = (brevo.create_target(n) for n in ("news", "offers", "club"))
        audience = mailchimp.create_target("audience")
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
  sender: {{email: news@example.fr}}
  public_url: https://lists.example.fr
lists:
  news:
    consent: single_opt_in
    schedule: every 15 minutes
    targets:
      - brevo: {{list_id: {news_b.list_id}}}
      - mailchimp: {{audience: "{audience.list_id}", tag: news}}
  offers:
    consent: single_opt_in
    targets:
      - brevo: {{list_id: {offers_b.list_id}}}
      - mailchimp: {{audience: "{audience.list_id}", tag: offers}}
  club:
    consent: double_opt_in
    segment: {{kind: [client]}}
    targets:
      - brevo: {{list_id: {club_b.list_id}}}
""",
            encoding="utf-8",
        )
        w = type("World", (), {})()
        w.config_path, w.config, w.engine = path, load_config(path), engine
        w.brevo, w.mailchimp = brevo, mailchimp
        w.news_b, w.offers_b, w.club_b = news_b, offers_b, club_b
        w.news_mc = type(audience)(audience.provider, audience.list_id, "news")
        w.offers_mc = type(audience)(audience.provider, audience.list_id, "offers")
        url = engine.url.render_as_string(hide_password=False)
        w.cli = lambda *args: CliRunner().invoke(main, ["--config", str(path), "--database", url, *args])
        yield w


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def add_contact(w, email, kind="client"):
    with session_scope(w.engine) as s:
        s.add(Contact(email=email, kind=kind, first_name="Ana"))


def subscribed(sim, target):
    return sorted(e for e, m in sim.members(target).items() if m.status == RemoteStatus.SUBSCRIBED)


def memberships(w, email):
    with Session(w.engine) as s:
        c = s.exec(select(Contact).where(Contact.email == email)).one()
        return {
            m.list_name: m.status for m in s.exec(select(Membership).where(Membership.contact_id == c.id))
        }


def test_an_unsubscribe_from_the_cli_reaches_both_providers_and_leaves_the_other_list(world):
    w = world
    add_contact(w, "ana@example.fr")
    add_contact(w, "bob@example.fr")
    for email in ("ana@example.fr", "bob@example.fr"):
        for name in ("news", "offers"):
            ok(w.cli("contacts", "subscribe", email, "--list", name, "--consent", "single_opt_in"))
    ok(w.cli("sync"))
    both = ["ana@example.fr", "bob@example.fr"]
    assert subscribed(w.brevo, w.news_b) == subscribed(w.mailchimp, w.news_mc) == both
    assert subscribed(w.brevo, w.offers_b) == subscribed(w.mailchimp, w.offers_mc) == both

    done = ok(w.cli("contacts", "unsubscribe", "ANA@example.fr", "--list", "news"))
    assert "unsubscribed from news; the other lists are unchanged" in done.output
    ok(w.cli("sync"))

    assert subscribed(w.brevo, w.news_b) == subscribed(w.mailchimp, w.news_mc) == ["bob@example.fr"]
    assert subscribed(w.brevo, w.offers_b) == subscribed(w.mailchimp, w.offers_mc) == both
    assert not w.brevo.is_blocked("ana@example.fr"), "a per-list unsubscribe blocks nothing account-wide"
    assert memberships(w, "ana@example.fr") == {"news": "unsubscribed", "offers": "subscribed"}
    with Session(w.engine) as s:
        opt_out = s.exec(select(Consent).where(Consent.action == "opt_out")).one()
    assert opt_out.list_name == "news" and opt_out.source.startswith("cli:")

    everything = ok(w.cli("contacts", "unsubscribe", "bob@example.fr", "--all"))
    assert "unsubscribed from everything" in everything.output
    ok(w.cli("sync"))
    assert subscribed(w.brevo, w.news_b) == subscribed(w.mailchimp, w.news_mc) == []
    assert subscribed(w.brevo, w.offers_b) == ["ana@example.fr"]


def test_status_and_history_after_a_sync(world):
    w = world
    add_contact(w, "ana@example.fr")
    ok(w.cli("contacts", "subscribe", "ana@example.fr", "--list", "news", "--consent", "single_opt_in"))
    before = json.loads(ok(w.cli("status", "--format", "json")).output)
    news = before["lists"][0]
    assert news["name"] == "news" and news["schedule"] == "every 15 minutes"
    assert [t["last_run"] for t in news["targets"]] == [None, None]
    assert news["next_run"]["state"] == "waiting_for_daemon" and news["next_run"]["at"] is None

    ok(w.cli("sync", "--list", "news"))

    data = json.loads(ok(w.cli("status", "--format", "json")).output)
    assert [(lst["name"], len(lst["targets"])) for lst in data["lists"]] == [
        ("news", 2),
        ("offers", 2),
        ("club", 1),
    ]  # every list of the config, each target with its last run (None: never synced)
    news = data["lists"][0]
    runs = {t["target"]: t["last_run"] for t in news["targets"]}
    assert set(runs) == {w.news_b.key, w.news_mc.key}
    for run in runs.values():
        assert run["outcome"] == "ok" and run["adds"] == 1 and run["removals"] == 0
        assert run["error"] is None and run["duration_s"] >= 0
    assert news["members"] == {"subscribed": 1} and news["open_flags"]["total"] == 0
    assert news["next_run"]["note"].startswith("when the daemon is up")
    assert news["next_run"]["at"] > runs[w.news_b.key]["started_at"]  # 15 minutes after the run
    assert data["daemon"]["up"] is False  # no daemon leads this base
    assert data["inbox"] == {
        "backlog": 0,
        "oldest_waiting_at": None,
        "dead_letters": 0,
        "oldest_dead_at": None,
        "by_state": {},
    }
    assert "ana@" not in json.dumps(data)

    table = ok(w.cli("status")).output
    assert "news (single opt in, every 15 minutes)" in table
    assert f"→ {w.news_b.key}: last run #" in table and "1 addition, 0 updates, 0 removals, 0 flags" in table
    assert "offers (single opt in, no schedule)" in table and "never synced" in table
    assert table.endswith("0 requests given up (syncd doi status)\ninbox: 0 waiting, 0 dead letters\n")
    assert news["auto_enrolled"] is False

    history = json.loads(ok(w.cli("history", "--format", "json")).output)
    assert [(h["list"], h["target"], h["adds"]) for h in history] == [
        ("news", w.news_mc.key, 1),
        ("news", w.news_b.key, 1),
    ]
    header, *lines = ok(w.cli("history")).output.splitlines()
    assert header.split() == [
        "ID", "LIST", "TARGET", "STARTED_AT", "DURATION", "OUTCOME", "ADDS", "UPDATES", "REMOVALS", "FLAGS",
        "ERROR",
    ]  # fmt: skip
    rows = [line.split() for line in lines]  # the duration is two words: "0.3 s"
    assert [(r[1], r[2], r[6:]) for r in rows] == [
        ("news", w.news_mc.key, ["ok", "1", "0", "0", "0", "-"]),
        ("news", w.news_b.key, ["ok", "1", "0", "0", "0", "-"]),
    ]
    csv_lines = ok(w.cli("history", "--list", "news", "--limit", "1", "--format", "csv")).output.splitlines()
    assert csv_lines[0].startswith("id,list,target,started_at,finished_at,duration_s,outcome")
    assert len(csv_lines) == 2 and f",news,{w.news_mc.key}," in csv_lines[1]
    assert "no sync run yet" in ok(w.cli("history", "--list", "offers")).output
    refused = w.cli("history", "--list", "nope")
    assert refused.exit_code == 2 and "unknown list 'nope'" in refused.output


def test_double_opt_in_from_the_cli_mails_the_link_and_the_contact_joins_once_confirmed(world):
    from syncd import doi

    w = world
    add_contact(w, "ana@example.fr")
    add_contact(w, "bob@example.fr")
    later = ok(
        w.cli(
            "contacts",
            "subscribe",
            "bob@example.fr",
            "--list",
            "club",
            "--consent",
            "double_opt_in",
            "--no-send",
        )
    )
    assert later.output == "club: pending; the daemon's double opt-in job mails the confirmation link\n"
    assert w.brevo.outbox == []
    result = ok(
        w.cli("contacts", "subscribe", "ana@example.fr", "--list", "club", "--consent", "double_opt_in")
    )
    assert result.output == "club: pending; confirmation link mailed\n"
    assert [m["to"][0]["email"] for m in w.brevo.outbox] == ["ana@example.fr"]
    ok(w.cli("sync", "--list", "club"))
    assert subscribed(w.brevo, w.club_b) == []
    pending = json.loads(ok(w.cli("status", "--format", "json")).output)
    assert pending["double_opt_in"]["pending"] == 2 and pending["lists"][2]["pending_double_opt_in"] == 2

    token = CONFIRM_LINK.search(w.brevo.outbox[0]["textContent"]).group(1)
    assert doi.confirm(w.engine, w.config, token, ip="198.51.100.7", user_agent="pytest").state == "confirmed"
    ok(w.cli("sync", "--list", "club"))
    assert subscribed(w.brevo, w.club_b) == ["ana@example.fr"]


def test_a_kind_set_from_the_cli_is_audited_and_reaches_the_segment(world):
    w = world
    add_contact(w, "ana@example.fr", kind="prospect")
    refused = w.cli("contacts", "subscribe", "ana@example.fr", "--list", "club", "--consent", "double_opt_in")
    assert (
        refused.exit_code == 1
        and "not in the segment of 'club' (kind is prospect, list wants client)" in (refused.output)
    )
    changed = ok(w.cli("contacts", "set", "ana@example.fr", "kind=Client", "phone=06 12 34 56 78"))
    assert (
        "kind: 'prospect' → 'client'" in changed.output and "phone: None → '+33612345678'" in changed.output
    )
    with Session(w.engine) as s:
        audit = s.exec(
            select(AuditLog).where(AuditLog.action == "contact.updated").order_by(AuditLog.id)
        ).all()
    assert [(a.detail["field"], a.detail["old"], a.detail["new"]) for a in audit] == [
        ("kind", "prospect", "client"),
        ("phone", None, "+33612345678"),
    ]
    assert all(a.actor.startswith("cli:") and len(a.actor) > 4 for a in audit)
    ok(w.cli("contacts", "subscribe", "ana@example.fr", "--list", "club", "--consent", "double_opt_in"))
    assert memberships(w, "ana@example.fr") == {"club": "pending"}


def test_a_name_corrected_by_import_update_reaches_both_providers_at_the_next_sync(world, tmp_path):
    w = world
    first = tmp_path / "fair.csv"
    first.write_text("email;prénom;type\nana@example.fr;Anna;client\n", encoding="utf-8")
    ok(w.cli("import", str(first), "--source", "fair", "--list", "news", "--consent", "single_opt_in"))
    ok(w.cli("sync", "--list", "news"))
    assert w.brevo.members(w.news_b)["ana@example.fr"].fields["first_name"] == "Anna"

    fixed = tmp_path / "crm.csv"
    fixed.write_text("email;prénom;type\nana@example.fr;Ana;client\n", encoding="utf-8")
    kept = ok(w.cli("import", str(fixed), "--source", "crm"))
    assert "first_name kept 'Anna', file had 'Ana'" in kept.output
    updated = ok(w.cli("import", str(fixed), "--source", "crm", "--update"))
    assert "first_name 'Anna' → 'Ana' (the file's value)" in updated.output
    ok(w.cli("sync", "--list", "news"))

    for sim, target in ((w.brevo, w.news_b), (w.mailchimp, w.news_mc)):
        member = sim.members(target)["ana@example.fr"]
        assert (member.status, member.fields["first_name"]) == (RemoteStatus.SUBSCRIBED, "Ana")
    assert subscribed(w.brevo, w.offers_b) == []  # the other list is left alone
