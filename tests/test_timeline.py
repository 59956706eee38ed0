"""A contact's timeline and the team's notes: the story of one contact told from what the base keeps
(import, double opt-in, a provider's unsubscribe webhook, a note, an edit by hand), `syncd contacts
note` and `show --timeline` through the real CLI, and notes erased and exported with the contact."""

from __future__ import annotations

import json
import re
import string
import time
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from simkit import BrevoSimulator
from sqlmodel import Session, select

from connectors.brevo import BrevoConnector
from connectors.contract import EventKind
from syncd import doi
from syncd.cli import main
from syncd.config import Config
from syncd.contacts import edit, gdpr
from syncd.contacts.importer import Options, import_file
from syncd.db import session_scope
from syncd.inbound.apply import apply_event
from syncd.models import (
    AuditLog,
    Consent,
    Contact,
    Membership,
    Note,
    NoteChannel,
    Source,
    TargetState,
    utcnow,
)
from syncd.notes import InvalidNote, UnknownContact, add_note
from syncd.timeline import KINDS, Many, Message, TimelineEntry, describe, timeline
from syncd.web.wording import LANGUAGES, TIMELINE_TEXT

CONSOLE = "console:marie@example.fr"


class Outbox(list):
    """A double opt-in transport that keeps the mails (``syncd.doi.Send``)."""

    def __call__(self, mail: doi.Mail) -> str:
        self.append(mail)
        return f"<{len(self)}@test>"


@pytest.fixture
def brevo():
    with BrevoSimulator() as sim:
        yield sim


@pytest.fixture
def world(brevo):
    """A double-opt-in list and a newsletter, each on a Brevo list of the simulator."""
    club, news = brevo.create_target("club"), brevo.create_target("news")
    config = Config.model_validate(
        {
            "version": 1,
            "providers": {"brevo": {"api_key": brevo.api_key, "base_url": brevo.api_url}},
            "double_opt_in": {
                "secret": "doi-signing-secret",
                "public_url": "http://syncd.test",
                "sender": {"email": "news@example.fr", "name": "Example"},
            },
            "lists": {
                "club": {"consent": "double_opt_in", "targets": [{"brevo": {"list_id": int(club.list_id)}}]},
                "news": {"consent": "single_opt_in", "targets": [{"brevo": {"list_id": int(news.list_id)}}]},
            },
        }
    )
    return config, club


def past(moment: datetime) -> None:
    """Wait until the clock has passed ``moment``, so that what comes next is later than it."""
    while utcnow() <= moment:
        time.sleep(0.001)


def test_a_story_in_order_import_doi_unsubscribe_webhook_note_and_edit(engine, tmp_path, brevo, world):
    config, club = world
    csv = tmp_path / "salon-2026.csv"
    csv.write_text("email;prénom\nana@example.fr;Ana\n", encoding="utf-8")
    options = Options(
        channel="fair",
        list_name="club",
        list_cfg=config.list("club"),
        all_lists=config.lists,
        consent="single_opt_in",
    )
    assert import_file(engine, csv, options).imported == 1

    # Double opt-in: the request mailed, the link followed.
    outbox = Outbox()
    assert doi.send_pending(engine, config, outbox) == 1
    token = re.search(r"/confirm/([A-Za-z0-9_.\-]+)", outbox[0].text).group(1)
    assert doi.confirm(engine, config, token, ip="198.51.100.7", user_agent="pytest").state == "confirmed"

    # Brevo reports that she left the club's list (ts_epoch is in milliseconds: the next one).
    now = utcnow()
    at = now.replace(microsecond=now.microsecond // 1000 * 1000) + timedelta(milliseconds=1)
    body, ctype = brevo.webhook_payload(EventKind.UNSUBSCRIBED, "ana@example.fr", club, occurred_at=at)
    with session_scope(engine) as s:
        for event in BrevoConnector(brevo.api_key, brevo.api_url).parse_webhook(body, ctype, {}):
            assert apply_event(s, event, config) == "applied"
    past(at)

    add_note(engine, "ana@example.fr", "phone", "Called back: wants the spring catalogue by post.", CONSOLE)

    with Session(engine) as s:
        contact = s.exec(select(Contact).where(Contact.email == "ana@example.fr")).one()
        values = edit.qualified_values(contact, edit.parse_assignments(["company=Globex"]), config)
        edit.apply_changes(s, contact, values, edit.parse_tags(()), actor="cli:marc")
        s.commit()

    entries = timeline(engine, "ana@example.fr")

    assert [e.kind for e in entries] == [
        "source",  # the import
        "consent",  # its opt-in
        "membership",  # pending on the double-opt-in list
        "consent",  # confirmation request mailed
        "consent",  # confirmed
        "membership",  # joined
        "consent",  # the consent withdrawn for the club
        "provider_event",  # as Brevo reported it
        "note",
        "change",
    ]
    assert [e.at for e in entries] == sorted(e.at for e in entries)
    source, opt_in, pending, requested, confirmed, joined, withdrawn, reported, note, change = entries
    assert source.summary == "imported from salon-2026.csv (channel fair, row 2)"
    assert source.detail == {"channel": "fair", "detail": "salon-2026.csv", "row": 2}
    assert (opt_in.actor, pending.summary) == (
        "import:fair:salon-2026.csv",
        "waiting for a double opt-in confirmation on club",
    )
    assert requested.summary.startswith("double opt-in confirmation request mailed for list club (wording ")
    assert confirmed.summary.startswith("confirmed the double opt-in for list club from 198.51.100.7")
    assert confirmed.detail["ip"] == "198.51.100.7" and confirmed.detail["user_agent"] == "pytest"
    assert confirmed.detail["token_hash"] and confirmed.detail["wording"] == requested.detail["wording"]
    assert (joined.summary, joined.actor) == ("joined club", "doi:confirm")
    assert withdrawn.summary == "withdrew consent for list club"
    assert withdrawn.actor == reported.actor == "webhook:brevo"
    assert reported.summary == "Brevo: unsubscribed from club"
    assert reported.at == withdrawn.at == at
    assert (note.summary, note.actor) == (
        "phone note: Called back: wants the spring catalogue by post.",
        CONSOLE,
    )
    assert note.detail == {"channel": "phone", "text": "Called back: wants the spring catalogue by post."}
    assert (change.summary, change.actor) == ("company: (empty) → Globex", "cli:marc")
    assert all(isinstance(e, TimelineEntry) and e.kind in KINDS for e in entries)
    # The same story in French: the same entries, each summary from the French table.
    french = timeline(engine, "ana@example.fr", "fr")
    assert [(e.at, e.kind, e.actor, e.detail, e.message) for e in french] == [
        (e.at, e.kind, e.actor, e.detail, e.message) for e in entries
    ]
    wording = confirmed.detail["wording"]
    assert [e.summary for e in french] == [
        "importé(e) depuis salon-2026.csv (canal fair, ligne 2)",
        "consentement donné pour la liste club",
        "en attente de la confirmation du double opt-in pour la liste club",
        f"demande de confirmation (double opt-in) envoyée pour la liste club (texte {wording})",
        f"double opt-in confirmé pour la liste club depuis 198.51.100.7 (texte {wording})",
        "a rejoint la liste club",
        "consentement retiré pour la liste club",
        "désinscrit(e) de la liste club (signalé par Brevo)",
        "note (téléphone)\u00a0: Called back: wants the spring catalogue by post.",
        "company\u00a0: (vide) → Globex",
    ]
    # The same answer from a caller's session; none for an address the base does not hold.
    with Session(engine) as s:
        assert timeline(s, "ANA@example.fr ") == entries
        assert timeline(s, "zoe@example.fr") is None


def test_pushes_show_per_target(engine):
    with session_scope(engine) as s:
        c = Contact(email="bob@example.fr")
        s.add(c)
        s.flush()
        s.add(
            TargetState(contact_id=c.id, list_name="news", target_key="brevo:12", remote_status="subscribed")
        )
        s.add(
            TargetState(
                contact_id=c.id,
                list_name="news",
                target_key="mailchimp:abc",
                remote_status="subscribed",
                pushed_at=utcnow(),
            )
        )
    [push] = timeline(engine, "bob@example.fr")
    assert (push.kind, push.summary, push.actor) == (
        "push",
        "pushed to mailchimp:abc (list news), subscribed there",
        "sync:news",
    )


# Every audit action the code writes, with the kind and words it gets (``grep -rn action= syncd``).
AUDIT_LINES = [
        ("list.subscribed", "import:fair:a.csv", {"list_name": "news"}, "membership", "joined news"),
        ("list.pending", "sync:club", {"list_name": "club", "reason": "double opt-in now required"},
         "membership", "waiting for a double opt-in confirmation on club: double opt-in now required"),
        ("list.unsubscribed", "web:unsubscribe", {"list_name": "news", "reason": "unsubscribe link"},
         "membership", "left news: unsubscribe link"),
        ("contact.opted_out", "web:prefs", {"reason": "preference centre: everything", "complaint": False},
         "membership", "unsubscribed from everything: preference centre: everything"),
        ("contact.bounced", "cli:marc", {}, "membership", "address bounced: off every list"),
        ("list.unsubscribed", "webhook:mailchimp", {"list_name": "news", "reason": "unsubscribed"},
         "provider_event", "Mailchimp: unsubscribed from news"),
        ("list.subscribed", "webhook:brevo", {"list_name": "vendors"}, "provider_event",
         "Brevo: subscribed to vendors"),
        ("contact.opted_out", "webhook:brevo", {"reason": "complained", "complaint": True},
         "provider_event", "Brevo: spam complaint, off every list"),
        ("contact.bounced", "webhook:brevo", {}, "provider_event", "Brevo: hard bounce, off every list"),
        ("contact.soft_bounce", "webhook:brevo", {"target": "12", "reason": "mailbox full"},
         "provider_event", "Brevo: soft bounce (the address is kept): mailbox full"),
        ("contact.updated", "webhook:mailchimp", {"fields": ["city", "first_name"]}, "provider_event",
         "Mailchimp: profile edited (city, first_name)"),
        ("contact.email_changed", "webhook:mailchimp", {"old": "ab12", "new": "cd34"}, "provider_event",
         "Mailchimp: address changed"),
        ("contact.email_change_refused", "webhook:mailchimp",
         {"reason": "the new address was erased at its owner's request"}, "provider_event",
         "Mailchimp: address change refused: the new address was erased at its owner's request"),
        ("contact.created", "webhook:brevo", {"channel": "provider:brevo:12"}, "provider_event",
         "Brevo: contact created from its webhook (channel provider:brevo:12)"),
        ("contact.updated", CONSOLE, {"field": "tags", "old": ["vip"], "new": []}, "change",
         "tags: vip → (empty)"),
        ("import.updated", "import", {"file": "crm.csv", "row": 3, "changes": [
            {"field": "kind", "old": "prospect", "new": "client"}]}, "change",
         "import of crm.csv row 3 changed kind: prospect → client"),
        ("import.conflict", "import", {"file": "crm.csv", "row": 4, "conflicts": [
            {"field": "company", "kept": "ACME", "offered": "Globex"}]}, "change",
         "import of crm.csv row 4 offered other values, the base kept its own: "
         "company kept ACME, file had Globex"),
        ("contact.imported_from_provider", "sync:news", {"target": "brevo:12"}, "change",
         "created from a member of brevo:12 the base did not hold"),
        ("contact.forgotten", "cli:marc", {}, "change", "erased at the contact's request"),
        ("contact.block_lifted", "sync:news", {"provider": "brevo", "target": "brevo:12"}, "push",
         "block lifted at Brevo (brevo:12): a new opt-in answers the earlier opt-outs"),
        ("contact.merged_somehow", "cli:marc", {}, "change", "contact merged somehow"),
]  # fmt: skip


@pytest.mark.parametrize("action, actor, detail, kind, summary", AUDIT_LINES)
def test_every_audit_action_reads_as_english(action, actor, detail, kind, summary):
    assert describe(action, actor, detail) == (kind, summary)


# --- French and English ----------------------------------------------------------------------------


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def literal_words(template: str) -> set[str]:
    """The words a template writes itself (its parameters left out)."""
    return words(" ".join(literal for literal, *_ in string.Formatter().parse(template)))


def words(text: str) -> set[str]:
    return set(re.findall(r"[^\W\d_]{3,}", text))


# The words French and English share (the same word, or a term French mail people use as is).
SHARED = {"base", "bounce", "confirmation", "contact", "double", "hard", "import", "note", "opt", "soft",
          "spam", "webhook"}  # fmt: skip


def test_the_french_and_english_tables_have_the_same_keys_and_parameters():
    fr, en = TIMELINE_TEXT["fr"], TIMELINE_TEXT["en"]
    assert set(TIMELINE_TEXT) == set(LANGUAGES)
    assert sorted(fr) == sorted(en)
    # The same parameters, but for an action nobody described yet: English makes words of its name
    # ("contact merged somehow"), French names it as recorded (both are given).
    assert {k for k in en if placeholders(fr[k]) != placeholders(en[k])} == {"change.other", "provider.other"}
    assert [k for k in en if fr[k] == en[k]] == []  # nothing left as it was in English
    french, english = (set().union(*map(literal_words, table.values())) for table in (fr, en))
    assert french & english <= SHARED, sorted(french & english - SHARED)


# Rows of every sort the timeline reads, written the way their modules write them, so that every
# summary (and every fragment of one) is used: ``timeline`` in both languages is checked against them.
def every_sort_of_row(s: Session, contact_id: int) -> None:
    at = utcnow()
    step = iter(range(1, 1000))

    def when() -> datetime:
        return at + timedelta(seconds=next(step))

    for channel, detail, row in [
        ("salon", "salon-2026.csv", 4),
        ("formulaire", None, None),
        ("provider:brevo:12", "webhook", None),
        ("provider:mailchimp:a1b2", None, None),
        ("provider:mailchimp:a1b2", "clients", None),
    ]:
        s.add(Source(contact_id=contact_id, channel=channel, detail=detail, row=row, at=when()))
    for action, list_name, source, extra in [
        ("opt_in", "club", "import:salon", {}),
        ("doi_requested", "club", "doi:request", {"wording": "v3"}),
        ("doi_requested", "club", "doi:reminder", {"wording": "v3"}),
        ("doi_confirmed", "club", "doi:confirm", {"wording": "v3", "ip": "198.51.100.7"}),
        ("opt_out", "club", "web:prefs", {"evidence": {"reason": "centre de préférences"}}),
        ("opt_out", "club", "webhook:brevo", {"evidence": {"reason": "unsubscribed: désabonnement"}}),
        ("complaint", None, "webhook:brevo", {"evidence": {"reason": "complained: plainte"}}),
        ("provider_evidence", "club", "sync:club", {"ip": "203.0.113.9"}),
        ("legacy_ledger", "club", "import", {}),
    ]:
        s.add(
            Consent(
                contact_id=contact_id, list_name=list_name, action=action, source=source, at=when(), **extra
            )
        )
    french_data = [  # what the code writes, with data in French (a reason is shown as recorded)
        ("list.subscribed", "import:salon", {"list_name": "club"}),
        ("list.subscribed", "import:salon", {}),
        ("list.pending", "sync:club", {"list_name": "club", "reason": "double opt-in exigé"}),
        ("list.unsubscribed", "web:unsubscribe", {"list_name": "club", "reason": "lien de désinscription"}),
        ("list.cleaned", "sync:club", {"list_name": "club", "reason": "adresse inconnue"}),
        ("contact.opted_out", "web:prefs", {"reason": "tout", "complaint": False}),
        ("contact.opted_out", "cli:marc", {"reason": "plainte", "complaint": True}),
        ("contact.bounced", "cli:marc", {}),
        ("contact.updated", "console:marie@example.fr", {"field": "tags", "old": ["vip"], "new": []}),
        ("contact.updated", "cli:marc", {"fields": ["ville", "prénom"]}),
        ("contact.updated", "cli:marc", {}),
        ("import.updated", "import", {"file": "crm.csv", "row": 3, "changes": [
            {"field": "kind", "old": "prospect", "new": "client"},
            {"field": "ville", "old": None, "new": "Lyon"},
        ]}),
        ("import.conflict", "import", {"conflicts": [
            {"field": "société", "kept": "ACME", "offered": "Globex"}]}),
        ("contact.imported_from_provider", "sync:club", {"target": "brevo:12"}),
        ("contact.imported_from_provider", "sync:club", {}),
        ("contact.created", "console:marie@example.fr", {"channel": "salon"}),
        ("contact.forgotten", "cli:marc", {}),
        ("contact.block_lifted", "sync:club", {"provider": "brevo", "target": "brevo:12"}),
        ("contact.block_lifted", "sync:club", {}),
        ("contact.fusionne", "cli:marc", {}),
        ("list.unsubscribed", "webhook:mailchimp", {"list_name": "club", "reason": "unsubscribed: abus"}),
        ("list.subscribed", "webhook:brevo", {"list_name": "club"}),
        ("list.pending", "webhook:mailchimp", {"list_name": "club"}),
        ("contact.opted_out", "webhook:brevo", {"reason": "complained", "complaint": True}),
        ("contact.opted_out", "webhook:mailchimp", {"reason": "désabonné de tout", "complaint": False}),
        ("contact.bounced", "webhook:brevo", {}),
        ("contact.soft_bounce", "webhook:brevo", {"target": "12", "reason": "boîte pleine"}),
        ("contact.updated", "webhook:mailchimp", {"fields": ["ville", "prénom"]}),
        ("contact.email_changed", "webhook:mailchimp", {"old": "ab12", "new": "cd34"}),
        ("contact.email_change_refused", "webhook:mailchimp", {"reason": "adresse effacée"}),
        ("contact.created", "webhook:brevo", {"channel": "provider:brevo:12"}),
        ("contact.fusionne", "webhook:brevo", {"reason": "fusion"}),
    ]  # fmt: skip
    for action, actor, detail in french_data:
        s.add(AuditLog(at=when(), actor=actor, action=action, contact_id=contact_id, detail=detail))
    for channel in NoteChannel:
        s.add(Note(contact_id=contact_id, channel=channel, summary="Rappelé.", author="cli:marc", at=when()))
    s.add(
        TargetState(
            contact_id=contact_id,
            list_name="club",
            target_key="brevo:12",
            remote_status="subscribed",
            pushed_at=when(),
        )
    )
    s.add(TargetState(contact_id=contact_id, list_name="club", target_key="mailchimp:a1b2",
                      pushed_at=when()))  # fmt: skip


def data_words(message: Message) -> set[str]:
    """The words of the data a message shows as recorded (a list's name, a reason, a status)."""
    found: set[str] = set()
    for value in message.params.values():
        for part in value.items if isinstance(value, Many) else (value,):
            if isinstance(part, Message):
                found |= data_words(part)
            else:
                found |= words(str(part))
    return found


def test_every_summary_reads_in_french_and_in_english_from_its_own_table(engine):
    with session_scope(engine) as s:
        contact = Contact(email="lea@example.fr")
        s.add(contact)
        s.flush()
        every_sort_of_row(s, contact.id)

    english = timeline(engine, "lea@example.fr", "en")
    french = timeline(engine, "lea@example.fr", "fr")

    used = {key for e in english for key in e.message.keys()}
    assert sorted(set(TIMELINE_TEXT["en"]) - used) == []  # every summary and fragment is used
    assert set(KINDS) == {e.kind for e in english}
    only_english = set().union(*map(literal_words, TIMELINE_TEXT["en"].values())) - SHARED
    assert {"joined", "from", "list", "every", "withdrew", "pushed", "there"} <= only_english
    for en, fr in zip(english, french, strict=True):
        assert (fr.at, fr.kind, fr.actor, fr.message) == (en.at, en.kind, en.actor, en.message)
        assert fr.summary == fr.message.render("fr") and en.summary == en.message.render("en")
        assert fr.summary != en.summary
        assert not (words(fr.summary) - data_words(fr.message)) & only_english, fr.summary
    # A few as the team reads them.
    summaries = {e.summary for e in french}
    assert "désinscrit(e) de la liste club (signalé par Mailchimp)\u00a0: abus" in summaries
    assert (
        "adresse en erreur définitive (hard bounce), retirée de toutes les listes (signalé par Brevo)"
        in summaries
    )
    assert "plainte pour spam, retiré(e) de toutes les listes (signalé par Brevo)" in summaries
    assert "adresse changée (signalé par Mailchimp)" in summaries
    assert "envoyé(e) à brevo:12 (liste club), statut subscribed chez le fournisseur" in summaries
    assert (
        "l’import de crm.csv ligne 3 a modifié kind\u00a0: prospect → client; ville\u00a0: (vide) → Lyon"
        in summaries
    )
    assert "action non décrite\u00a0: contact.fusionne" in summaries


def test_an_unknown_language_is_refused(engine, ana):
    with pytest.raises(ValueError, match="unknown language 'de'; expected one of fr, en"):
        timeline(engine, ana, "de")


def test_describe_in_french():
    assert describe("list.unsubscribed", "webhook:brevo", {"list_name": "newsletter"}, "fr") == (
        "provider_event",
        "désinscrit(e) de la liste newsletter (signalé par Brevo)",
    )


# --- notes -----------------------------------------------------------------------------------------


@pytest.fixture
def ana(engine, tmp_path):
    path = tmp_path / "crm.csv"
    path.write_text("email;prénom\nana@example.fr;Ana\nbob@example.fr;Bob\n", encoding="utf-8")
    import_file(engine, path, Options(channel="crm"))
    return "ana@example.fr"


@pytest.fixture
def syncd(engine, tmp_path):
    """Run ``syncd --database <test base> --config <a config> ARGS…``."""
    config = tmp_path / "syncd.yaml"
    config.write_text("version: 1\nlists:\n  news:\n    consent: single_opt_in\n", encoding="utf-8")
    url = engine.url.render_as_string(hide_password=False)
    return lambda *args: CliRunner().invoke(main, ["--database", url, "--config", str(config), *args])


def notes(engine):
    with Session(engine) as s:
        return list(s.exec(select(Note).order_by(Note.id)))


def audit_lines(engine, action):
    with Session(engine) as s:
        return list(s.exec(select(AuditLog).where(AuditLog.action == action)))


def test_a_note_is_kept_and_audited_without_its_text(engine, ana):
    note = add_note(
        engine, " ANA@example.fr", "Meeting", "  Met at the Lyon fair; a quote for 40 units.  ", CONSOLE
    )
    assert (note.channel, note.summary, note.author) == (
        "meeting",
        "Met at the Lyon fair; a quote for 40 units.",
        CONSOLE,
    )
    [kept] = notes(engine)
    assert kept.id == note.id and kept.contact_id == note.contact_id
    [line] = audit_lines(engine, "contact.note_added")
    assert (line.actor, line.detail, line.contact_id) == (CONSOLE, {"channel": "meeting"}, note.contact_id)
    assert "Lyon" not in json.dumps(line.detail)


@pytest.mark.parametrize(
    "channel, text, author, message",
    [
        ("fax", "hello", CONSOLE, "channel 'fax' is not one of phone, email, meeting, fair, other"),
        ("phone", "   ", CONSOLE, "the note's text is empty"),
        ("phone", "x" * 2001, CONSOLE, "the note's text has 2001 characters; at most 2000"),
        ("phone", "hello", "", "a note needs its author"),
    ],
)
def test_a_bad_note_is_refused_and_nothing_is_written(engine, ana, channel, text, author, message):
    with pytest.raises(InvalidNote, match=re.escape(message)):
        add_note(engine, ana, channel, text, author)
    assert notes(engine) == [] and audit_lines(engine, "contact.note_added") == []


def test_a_note_about_nobody_is_refused(engine, ana):
    with pytest.raises(UnknownContact, match="no contact with the address zoe@example.fr"):
        add_note(engine, "Zoe@example.fr", "phone", "hello", CONSOLE)
    gdpr.forget_contact(engine, "bob@example.fr")
    with pytest.raises(UnknownContact, match="erased at the contact's request"):
        add_note(engine, "bob@example.fr", "phone", "hello", CONSOLE)
    assert notes(engine) == []


def test_a_note_at_the_longest_is_kept_whole(engine, ana):
    add_note(engine, ana, "other", "é" * 2000, CONSOLE)
    assert notes(engine)[0].summary == "é" * 2000


def test_notes_are_exported_and_erased_with_the_contact(engine, ana):
    add_note(engine, ana, "email", "Asked for the price list.", CONSOLE)
    exported = gdpr.export_contact(engine, ana)
    [note] = exported["notes"]
    assert (note["channel"], note["summary"], note["author"]) == (
        "email",
        "Asked for the price list.",
        CONSOLE,
    )
    assert "contact_id" not in note

    result = gdpr.forget_contact(engine, ana)

    assert result.deleted["contactnote"] == 1
    assert notes(engine) == []
    assert all(line.detail == gdpr.SCRUBBED for line in audit_lines(engine, "contact.note_added"))
    assert timeline(engine, ana) is None


# --- the CLI -------------------------------------------------------------------------------------


def no_traceback(result):
    assert "Traceback" not in result.output and not isinstance(result.exception, AssertionError | TypeError)
    return result


def test_note_from_the_cli_then_the_timeline_as_a_table_and_as_json(syncd, engine, ana, monkeypatch):
    monkeypatch.setattr("syncd.cli.contacts.cli_actor", lambda: "cli:marc")
    added = syncd(
        "contacts", "note", "ana@example.fr", "--channel", "phone", "--text", "Wants a call in May."
    )
    assert added.exit_code == 0, added.output
    assert added.output == "note added to ana@example.fr\n"
    [note] = notes(engine)
    assert (note.channel, note.summary, note.author) == ("phone", "Wants a call in May.", "cli:marc")

    table = syncd("contacts", "show", "ana@example.fr", "--timeline")
    assert table.exit_code == 0, table.output
    header, source, noted = table.output.splitlines()
    assert header.split() == ["TIME", "(UTC)", "KIND", "SUMMARY", "BY"]
    assert "source" in source and "imported from crm.csv (channel crm, row 2)" in source
    assert source.rstrip().endswith("-")  # no actor recorded for a provenance
    assert "note" in noted and "phone note: Wants a call in May." in noted and noted.endswith("cli:marc")

    french = syncd("contacts", "show", "ana@example.fr", "--timeline", "--lang", "fr")
    assert french.exit_code == 0, french.output
    header, source, noted = french.output.splitlines()
    assert header.split() == ["TIME", "(UTC)", "KIND", "SUMMARY", "BY"]  # the columns stay as they are
    assert "importé(e) depuis crm.csv (canal crm, ligne 2)" in source
    assert "note (téléphone)\u00a0: Wants a call in May." in noted and noted.endswith("cli:marc")
    german = no_traceback(syncd("contacts", "show", "ana@example.fr", "--timeline", "--lang", "de"))
    assert german.exit_code == 2 and "'de' is not one of 'fr', 'en'" in german.output

    as_json = syncd("contacts", "show", "ana@example.fr", "--timeline", "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.output)
    assert [r["kind"] for r in rows] == ["source", "note"]
    assert rows[1]["actor"] == "cli:marc" and rows[1]["detail"] == {
        "channel": "phone",
        "text": "Wants a call in May.",
    }
    assert datetime.fromisoformat(rows[1]["at"]) == note.at


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--channel", "fax", "--text", "hi"], 2, "error: channel 'fax' is not one of phone, email"),
        (["--channel", "phone", "--text", " "], 2, "error: the note's text is empty"),
        (["--channel", "phone", "--text", "x" * 2001], 2, "error: the note's text has 2001 characters"),
        (["--channel", "phone"], 2, "Missing option '--text'"),
    ],
)
def test_a_bad_note_from_the_cli_is_one_line_and_writes_nothing(syncd, engine, ana, args, code, message):
    result = no_traceback(syncd("contacts", "note", "ana@example.fr", *args))
    assert result.exit_code == code, result.output
    assert message in result.output
    assert notes(engine) == [] and audit_lines(engine, "contact.note_added") == []


def test_a_note_or_a_timeline_of_nobody_is_one_line_and_exit_1(syncd, engine, ana):
    for command in (
        ["note", "zoe@example.fr", "--channel", "phone", "--text", "hi"],
        ["show", "zoe@example.fr", "--timeline"],
    ):
        result = no_traceback(syncd("contacts", *command))
        assert result.exit_code == 1, result.output
        assert result.output.strip() == "error: no contact with the address zoe@example.fr"
    assert syncd("contacts", "forget", "bob@example.fr", "--yes", "--local-only").exit_code == 0
    erased = no_traceback(syncd("contacts", "note", "bob@example.fr", "--channel", "phone", "--text", "hi"))
    assert (
        erased.exit_code == 1
        and erased.output.strip() == "error: this address was erased at the contact's request"
    )
    assert notes(engine) == []


def test_memberships_stay_as_they_were_after_a_note(engine, ana):
    """A note is a record of the team's, never a change of the contact or its lists."""
    with Session(engine) as s:
        before = s.exec(select(Contact).where(Contact.email == ana)).one().model_dump()
    add_note(engine, ana, "fair", "Stand B12.", CONSOLE)
    with Session(engine) as s:
        assert s.exec(select(Contact).where(Contact.email == ana)).one().model_dump() == before
        assert s.exec(select(Membership)).all() == []
