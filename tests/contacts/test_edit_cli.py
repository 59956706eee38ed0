"""Changes by hand through the real CLI: `syncd contacts set|subscribe|unsubscribe`, `syncd import
--update`, `syncd contacts export --all`; and each bad input as one clear line, no traceback."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlmodel import Session, select

from syncd.contacts.importer import Options, import_file
from syncd.models import AuditLog, Consent, Contact

CRM = (
    "email;prénom;type;téléphone\nana@exemple.fr;Ana;fournisseur;06 12 34 56 78\nbob@exemple.fr;Bob;client;\n"
)


@pytest.fixture
def base(engine, tmp_path):
    path = tmp_path / "crm.csv"
    path.write_text(CRM, encoding="utf-8")
    import_file(engine, path, Options(channel="crm"))
    return path


def contact(engine, email):
    with Session(engine) as s:
        return s.exec(select(Contact).where(Contact.email == email)).one()


def audit(engine, action):
    with Session(engine) as s:
        return list(s.exec(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))


def no_traceback(result):
    assert "Traceback" not in result.output and not isinstance(result.exception, AssertionError | TypeError)
    return result


def test_set_checks_values_as_an_import_does_and_audits_each_change(syncd, engine, base):
    result = syncd(
        "contacts",
        "set",
        "Ana@Exemple.fr",
        "kind=client",
        "phone=+44 20 7946 0958",
        "country=royaume-uni",
        "stage=Warm",
        "first_name=anne-marie",
        "city=",
        "--tag",
        "+VIP",
        "--tag",
        "+salon 2024",
    )
    assert result.exit_code == 0, result.output
    ana = contact(engine, "ana@exemple.fr")
    assert (ana.kind, ana.phone, ana.country, ana.stage, ana.first_name) == (
        "client",
        "+442079460958",
        "GB",
        "warm",
        "Anne-Marie",
    )
    assert ana.tags == ["vip", "salon 2024"] and ana.version == 2
    changes = [
        (a.detail["field"], a.detail["old"], a.detail["new"]) for a in audit(engine, "contact.updated")
    ]
    assert ("kind", "vendor", "client") in changes and ("phone", "+33612345678", "+442079460958") in changes
    assert ("tags", [], ["vip", "salon 2024"]) in changes and len(changes) == 6  # city was empty already
    assert all(a.actor.startswith("cli:") for a in audit(engine, "contact.updated"))

    removed = syncd("contacts", "set", "ana@exemple.fr", "--tag=-vip", "company=")
    assert removed.exit_code == 0 and "tags: ['vip', 'salon 2024'] → ['salon 2024']" in removed.output
    again = syncd("contacts", "set", "ana@exemple.fr", "kind=client")
    assert again.exit_code == 0 and "nothing to change" in again.output
    assert len(audit(engine, "contact.updated")) == 7


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["kind=martian"], 2, "kind='martian': unknown kind (expected one of client, prospect"),
        (["phone=12"], 2, "phone='12': invalid phone"),
        (["siret=123"], 2, "siret='123': invalid SIRET"),
        (["country=atlantis"], 2, "country='atlantis': unknown country"),
        (["stage=asleep"], 2, "stage='asleep': unknown stage; expected one of suspect"),
        (["favourite=blue"], 2, "favourite: unknown field; expected one of first_name"),
        (["email=x@exemple.fr"], 2, "email: the address is the contact's key"),
        (["kindclient"], 2, "'kindclient': expected FIELD=VALUE"),
        (["--tag", "vip"], 2, "--tag 'vip': expected +TAG to add it or -TAG to remove it"),
    ],
)
def test_set_refuses_a_bad_input_with_one_line_and_changes_nothing(syncd, engine, base, args, code, message):
    result = no_traceback(syncd("contacts", "set", "ana@exemple.fr", "company=Globex", *args))
    assert result.exit_code == code, result.output
    assert message in result.output
    assert contact(engine, "ana@exemple.fr").company is None and audit(engine, "contact.updated") == []


def test_set_without_a_change_is_a_usage_error(syncd, base):
    result = no_traceback(syncd("contacts", "set", "ana@exemple.fr"))
    assert result.exit_code == 2 and "nothing to change: give FIELD=VALUE pairs or --tag" in result.output


def test_an_unknown_or_erased_address_is_one_line_and_exit_1(syncd, base):
    for command in (
        ["set", "zoe@exemple.fr", "kind=client"],
        ["subscribe", "zoe@exemple.fr", "--list", "newsletter", "--consent", "single_opt_in"],
        ["unsubscribe", "zoe@exemple.fr", "--all"],
    ):
        result = no_traceback(syncd("contacts", *command))
        assert result.exit_code == 1 and "error: no contact with the address zoe@exemple.fr" in result.output
    assert syncd("contacts", "forget", "bob@exemple.fr", "--yes", "--local-only").exit_code == 0
    erased = no_traceback(syncd("contacts", "set", "bob@exemple.fr", "kind=client"))
    assert erased.exit_code == 1 and "erased at the contact's request" in erased.output


def test_subscribe_and_unsubscribe_through_the_consent_ledger(syncd, engine, base, count):
    joined = syncd(
        "contacts", "subscribe", "bob@exemple.fr", "--list", "newsletter", "--consent", "single_opt_in",
        "--evidence", "asked at the fair, 2026-11-30",
    )  # fmt: skip
    assert joined.exit_code == 0 and "newsletter: subscribed" in joined.output
    with Session(engine) as s:
        proof = s.exec(select(Consent).where(Consent.action == "opt_in")).one()
    assert proof.list_name == "newsletter" and proof.source.startswith("cli:")
    assert proof.evidence["evidence"] == "asked at the fair, 2026-11-30"

    doi = syncd(
        "contacts", "subscribe", "bob@exemple.fr", "--list", "clients-doi", "--consent", "double_opt_in"
    )
    # The test config signs no link (no double_opt_in.secret): the daemon's job mails it later.
    assert doi.exit_code == 0 and "clients-doi: pending; the daemon's double opt-in job" in doi.output

    left = syncd("contacts", "unsubscribe", "bob@exemple.fr", "--list", "newsletter")
    assert left.exit_code == 0 and count("membership", list_name="clients-doi", status="pending") == 1
    assert count("membership", list_name="newsletter", status="unsubscribed") == 1
    back = no_traceback(
        syncd("contacts", "subscribe", "bob@exemple.fr", "--list", "newsletter", "--consent", "single_opt_in")
    )
    assert back.exit_code == 1 and "left 'newsletter': only a new opt-in brings them back" in back.output

    everything = syncd("contacts", "unsubscribe", "bob@exemple.fr", "--all")
    assert everything.exit_code == 0 and contact(engine, "bob@exemple.fr").global_opt_out
    assert count("membership", list_name="clients-doi", status="unsubscribed") == 1
    assert "already unsubscribed" in syncd("contacts", "unsubscribe", "bob@exemple.fr", "--all").output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["ana@exemple.fr", "--list", "vendors", "--consent", "single_opt_in"], 1, None),
        (
            ["bob@exemple.fr", "--list", "vendors", "--consent", "single_opt_in"],
            1,
            "not in the segment of 'vendors'",
        ),
        (["bob@exemple.fr", "--list", "newsletter", "--consent", "double_opt_in"], 1, "not double opt-in"),
        (["bob@exemple.fr", "--list", "nope", "--consent", "single_opt_in"], 2, "unknown list 'nope'"),
        (
            ["bob@exemple.fr", "--list", "newsletter", "--consent", "maybe"],
            2,
            "Invalid value for '--consent'",
        ),
        (["bob@exemple.fr", "--consent", "single_opt_in"], 2, "Missing option '--list'"),
    ],
)
def test_subscribe_refusals(syncd, engine, base, count, args, code, message):
    if message is None:  # a complained address stays off every list
        with Session(engine) as s:
            ana = s.exec(select(Contact).where(Contact.email == "ana@exemple.fr")).one()
            ana.email_status = "complained"
            s.add(ana)
            s.commit()
        message = "the address is complained: it is kept off every list"
    result = no_traceback(syncd("contacts", "subscribe", *args))
    assert result.exit_code == code, result.output
    assert message in result.output
    assert count("membership") == 0 and count("consent") == 0


def test_unsubscribe_usage_errors(syncd, base):
    for args, message in (
        ([], "give --list L to leave one list, or --all"),
        (["--list", "newsletter", "--all"], "give --list L to leave one list, or --all"),
        (["--list", "nope"], "unknown list 'nope'"),
    ):
        result = no_traceback(syncd("contacts", "unsubscribe", "bob@exemple.fr", *args))
        assert result.exit_code == 2 and message in result.output


def test_import_update_lets_the_files_values_win_and_audits_each_one(syncd, engine, base, tmp_path):
    newer = tmp_path / "crm-2.csv"
    newer.write_text(
        "email;prénom;type;téléphone;ville\n"
        "ana@exemple.fr;Ana;client;06 99 99 99 99;Lyon\n"
        "bob@exemple.fr;Robert;client;;\n",
        encoding="utf-8",
    )
    kept = syncd("import", str(newer), "--source", "crm")
    assert "kind kept 'vendor', file had 'client'" in kept.output
    assert contact(engine, "ana@exemple.fr").kind == "vendor"

    updated = syncd("import", str(newer), "--source", "crm", "--update")
    assert updated.exit_code == 0, updated.output
    assert f"  {'updated (file won)':<24}{3:>9}" in updated.output
    assert "kind 'vendor' → 'client' (the file's value)" in updated.output
    ana, bob = contact(engine, "ana@exemple.fr"), contact(engine, "bob@exemple.fr")
    assert (ana.kind, ana.phone, ana.city, bob.first_name) == ("client", "+33699999999", "Lyon", "Robert")
    rows = audit(engine, "import.updated")
    assert [r.detail["changes"] for r in rows] == [
        [
            {"field": "phone", "old": "+33612345678", "new": "+33699999999"},
            {"field": "kind", "old": "vendor", "new": "client"},
        ],
        [{"field": "first_name", "old": "Bob", "new": "Robert"}],
    ]
    assert all(r.actor == "import" and r.detail["file"] == "crm-2.csv" for r in rows)

    again = syncd("import", str(newer), "--source", "crm", "--update")
    assert f"  {'unchanged':<24}{2:>9}" in again.output and len(audit(engine, "import.updated")) == 2


def test_export_all_streams_every_contact_with_its_lists(syncd, engine, base, tmp_path):
    assert syncd(
        "contacts", "subscribe", "bob@exemple.fr", "--list", "newsletter", "--consent", "single_opt_in"
    ).exit_code == 0  # fmt: skip
    rows = json.loads(syncd("contacts", "export", "--all").output)
    assert [r["email"] for r in rows] == ["ana@exemple.fr", "bob@exemple.fr"]
    assert rows[0]["phone"] == "+33612345678" and rows[1]["lists"] == {"newsletter": "subscribed"}

    table = list(csv.DictReader(io.StringIO(syncd("contacts", "export", "--all", "--format", "csv").output)))
    assert [(r["email"], r["kind"], r["lists"]) for r in table] == [
        ("ana@exemple.fr", "vendor", ""),
        ("bob@exemple.fr", "client", "newsletter:subscribed"),
    ]
    out = tmp_path / "all.csv"
    written = syncd("contacts", "export", "--all", "--format", "csv", "--output", str(out))
    assert written.exit_code == 0 and "2 contacts written" in written.output
    assert out.read_text("utf-8").splitlines()[0].startswith("id,email,email_status")

    for args, message in (
        ([], "give one EMAIL, or --all"),
        (["ana@exemple.fr", "--all"], "give one EMAIL, or --all"),
        (["ana@exemple.fr", "--format", "csv"], "--format csv goes with --all"),
    ):
        result = no_traceback(syncd("contacts", "export", *args))
        assert result.exit_code == 2 and message in result.output


def test_export_all_of_an_empty_base_is_an_empty_array(syncd):
    assert json.loads(syncd("contacts", "export", "--all").output) == []


def test_export_all_reads_the_base_a_chunk_at_a_time(engine, base):
    from syncd.contacts import export

    assert [r["email"] for r in export.contacts(engine, chunk=1)] == ["ana@exemple.fr", "bob@exemple.fr"]
