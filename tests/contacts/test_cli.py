"""The marketer's commands, through the real CLI against the test base."""

from __future__ import annotations

import json

from sqlmodel import Session, select

from syncd.contacts.importer import Options, import_file
from syncd.models import Contact, Membership

MESSY = (
    "Prénom;Nom;E-mail;Téléphone;Société;type\n"
    "Marie;Dupont;Marie.Dupont@Exemple.fr;06 12 34 56 78;ACME;client\n"
    "marie;DUPONT;marie.dupont@exemple.fr;;Globex;client\n"
    "Paul;Durand;paul.durand@;06 34 56 78 90;;prospect\n"
    "Jean;Bon;jean@exemple.fr;;;\n"
)


def test_import_prints_a_summary_and_succeeds_with_rejects(syncd, tmp_path, count):
    path = tmp_path / "contacts.csv"
    path.write_text(MESSY, encoding="utf-8")
    result = syncd("import", str(path), "--source", "salon", "--kind", "prospect")
    assert result.exit_code == 0, result.output
    out = result.output
    for label, value in (
        ("read", 4),
        ("imported (new)", 2),
        ("merged", 1),
        ("rejected", 1),
        ("conflicts (value kept)", 1),
    ):
        assert f"  {label:<24}{value:>9}" in out
    assert "importing" not in out  # no progress bar when piped
    (first,) = tmp_path.glob("contacts.rejects-*.csv")
    assert out.endswith(f"rows not imported: {first}\n")
    assert count("contact", email="jean@exemple.fr", kind="prospect") == 1

    again = syncd("import", str(path), "--source", "salon", "--kind", "prospect")
    assert f"  {'unchanged':<24}{3:>9}" in again.output
    # Each run has its own rejects file: the second does not overwrite the first's.
    (second,) = set(tmp_path.glob("contacts.rejects-*.csv")) - {first}
    assert again.output.endswith(f"rows not imported: {second}\n")
    assert first.read_text("utf-8-sig") == second.read_text("utf-8-sig")


def test_import_of_a_missing_file_fails_naming_it(syncd, tmp_path):
    result = syncd("import", str(tmp_path / "absent.csv"), "--source", "salon")
    assert result.exit_code == 1
    assert "absent.csv" in result.output


def test_import_rejects_path_option(syncd, tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(MESSY, encoding="utf-8")
    result = syncd("import", str(path), "--source", "salon", "--rejects", str(tmp_path / "bad.csv"))
    assert result.exit_code == 0 and (tmp_path / "bad.csv").exists()


def test_map_option(syncd, tmp_path, count):
    path = tmp_path / "c.csv"
    path.write_text("Adresse;Boîte\nx@exemple.fr;ACME\n", encoding="utf-8")
    assert syncd("import", str(path), "--source", "crm").exit_code == 1
    result = syncd("import", str(path), "--source", "crm", "--map", "Adresse=email,Boîte=company")
    assert result.exit_code == 0, result.output
    assert count("contact", company="ACME") == 1
    assert syncd("import", str(path), "--source", "crm", "--map", "Adresse=courriel").exit_code == 2


def test_single_opt_in_import_records_consent_and_list_membership(syncd, tmp_path, count):
    path = tmp_path / "form.csv"
    path.write_text("email;prénom\na@exemple.fr;Anne\nb@exemple.fr;Bruno\nA@exemple.fr;\n", encoding="utf-8")
    result = syncd(
        "import", str(path), "--source", "site-form", "--list", "newsletter", "--consent", "single_opt_in"
    )
    assert result.exit_code == 0, result.output
    assert count("consent", action="opt_in", list_name="newsletter", source="import:site-form:form.csv") == 2
    assert count("membership", list_name="newsletter", status="subscribed") == 2
    before = count("auditlog")
    again = syncd(
        "import", str(path), "--source", "site-form", "--list", "newsletter", "--consent", "single_opt_in"
    )
    assert f"  {'unchanged':<24}{3:>9}" in again.output
    assert count("consent") == 2 and count("auditlog") == before


def test_double_opt_in_list_gets_pending_members_from_a_single_opt_in_file(syncd, tmp_path, count):
    path = tmp_path / "form.csv"
    path.write_text("email;type\na@exemple.fr;client\n", encoding="utf-8")
    result = syncd(
        "import", str(path), "--source", "site", "--list", "clients-doi", "--consent", "single_opt_in"
    )
    assert result.exit_code == 0, result.output
    assert count("membership", status="pending") == 1


def test_purchased_file_cannot_join_a_consent_list_and_records_no_consent(syncd, tmp_path, count):
    path = tmp_path / "bought.csv"
    path.write_text("email;type\nv@fournisseur.fr;fournisseur\n", encoding="utf-8")
    refused = syncd("import", str(path), "--source", "purchased-file", "--list", "newsletter")
    assert refused.exit_code == 2 and "needs single opt in" in refused.output
    assert count("contact") == 0
    ok = syncd("import", str(path), "--source", "purchased-file", "--list", "vendors", "--consent", "none")
    assert ok.exit_code == 0, ok.output
    assert count("membership", list_name="vendors", status="subscribed") == 1 and count("consent") == 0
    assert syncd("import", str(path), "--source", "x", "--consent", "single_opt_in").exit_code == 2


def test_show_export_and_forget(syncd, engine, tmp_path, count):
    path = tmp_path / "contacts.csv"
    path.write_text(MESSY, encoding="utf-8")
    import_file(engine, path, Options(channel="salon"))

    shown = syncd("contacts", "show", "MARIE.DUPONT@exemple.fr")
    assert shown.exit_code == 0, shown.output
    assert "Marie Dupont <marie.dupont@exemple.fr>" in shown.output and "sources: 2" in shown.output
    assert "salon  contacts.csv row 2" in shown.output

    exported = syncd("contacts", "export", "marie.dupont@exemple.fr")
    data = json.loads(exported.output)
    assert data["contact"]["phone"] == "+33612345678" and len(data["sources"]) == 2
    out = tmp_path / "marie.json"
    assert syncd("contacts", "export", "marie.dupont@exemple.fr", "--output", str(out)).exit_code == 0
    assert json.loads(out.read_text("utf-8"))["contact"]["company"] == "ACME"

    aborted = syncd("contacts", "forget", "marie.dupont@exemple.fr", input="n\n")
    assert aborted.exit_code == 1 and count("contact", email="marie.dupont@exemple.fr") == 1
    forgot = syncd("contacts", "forget", "marie.dupont@exemple.fr", "--yes")
    assert forgot.exit_code == 0 and "erased" in forgot.output
    assert count("contact", email="marie.dupont@exemple.fr") == 0 and count("source") == 1

    assert "erased at the contact's request" in syncd("contacts", "show", "marie.dupont@exemple.fr").output
    assert syncd("contacts", "export", "marie.dupont@exemple.fr").exit_code == 1
    reimport = syncd("import", str(path), "--source", "salon")
    assert f"  {'rejected':<24}{3:>9}" in reimport.output
    assert count("contact", email="marie.dupont@exemple.fr") == 0


def test_logs_carry_no_address_in_clear(syncd, tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_text(MESSY, encoding="utf-8")
    result = syncd("--log-level", "debug", "import", str(path), "--source", "salon")
    assert "import.finished" in result.stderr
    assert "@exemple.fr" not in result.stderr


def test_sample_file_imports(syncd):
    from pathlib import Path

    sample = Path(__file__).parents[2] / "config" / "samples" / "contacts.csv"
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "contacts.csv"
        shutil.copy(sample, copy)
        result = syncd("import", str(copy), "--source", "demo")
    assert result.exit_code == 0, result.output
    assert f"  {'imported (new)':<24}{34:>9}" in result.output
    assert f"  {'rejected':<24}{3:>9}" in result.output


def test_import_into_a_list_joins_only_the_contacts_its_segment_admits(live, tmp_path):
    w = live
    crm = tmp_path / "crm-export.csv"
    crm.write_text(
        "email;prénom;type\n"
        "claire@boulangerie.fr;Claire;client\n"
        "hugo@garage.fr;Hugo;client\n"
        "vera@fournisseur.fr;Vera;vendor\n"
        "victor@fournisseur.fr;Victor;vendor\n"
        "paula@prospect.fr;Paula;prospect\n",
        encoding="utf-8",
    )
    result = w.cli("import", str(crm), "--source", "crm", "--list", "clients", "--consent", "single_opt_in")
    assert result.exit_code == 0, result.output
    assert f"  {'imported (new)':<24}{5:>9}" in result.output
    assert f"  {'not added to the list':<24}{3:>9}" in result.output
    assert "     2  not in segment (kind is vendor, list wants client)" in result.output
    assert "     1  not in segment (kind is prospect, list wants client)" in result.output

    synced = w.cli("sync")
    assert synced.exit_code == 0, synced.output
    clients = ["claire@boulangerie.fr", "hugo@garage.fr"]
    assert sorted(w.brevo.members(w.clients_b)) == clients
    assert sorted(w.mailchimp.members(w.clients_mc)) == clients
    assert sorted(w.brevo.members(w.vendors_b)) == ["vera@fournisseur.fr", "victor@fournisseur.fr"]
    with Session(w.engine) as session:
        rows = session.exec(select(Membership.list_name, Contact.email).join(Contact)).all()
        assert sorted(rows) == [("clients", e) for e in clients]


def test_show_of_an_unknown_contact_is_an_error_on_stderr(syncd):
    for command in ("show", "export"):
        result = syncd("contacts", command, "nobody@exemple.fr")
        assert result.exit_code == 1 and result.stdout == ""
        assert result.stderr == "error: no such contact\n"


def test_show_as_json(syncd, engine, tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_text(MESSY, encoding="utf-8")
    import_file(engine, path, Options(channel="salon"))
    result = syncd("contacts", "show", "marie.dupont@exemple.fr", "--format", "json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["contact"]["email"] == "marie.dupont@exemple.fr" and len(record["sources"]) == 2


def test_ctrl_c_during_an_import_says_what_was_committed_and_a_rerun_completes_it(
    syncd, tmp_path, count, monkeypatch
):
    from syncd.contacts import importer

    path = tmp_path / "people.csv"
    path.write_text(
        "email;prénom\n" + "".join(f"p{i}@exemple.fr;P{i}\n" for i in range(5)) + "bad@;X\n", encoding="utf-8"
    )
    commit = importer._commit_batch
    calls = []

    def ctrl_c_at_the_third_batch(*args, **kw):
        calls.append(1)
        if len(calls) == 3:  # the operator's Ctrl-C, arriving while the third batch is written
            raise KeyboardInterrupt
        return commit(*args, **kw)

    monkeypatch.setattr(importer, "_commit_batch", ctrl_c_at_the_third_batch)
    result = syncd("import", str(path), "--source", "fair", "--batch-size", "2")
    assert result.exit_code == 130, result.output
    assert f"  {'imported (new)':<24}{4:>9}" in result.stdout
    assert result.stderr == (
        "interrupted: committed the rows up to line 5 (4 rows read), nothing of the batch in "
        "progress; run the same command again to import the rest (rows already imported are "
        "recognised, not duplicated)\n"
    )
    assert count("contact") == 4
    assert not list(tmp_path.glob("*.rejects-*.csv"))  # the bad row was in no committed batch

    monkeypatch.setattr(importer, "_commit_batch", commit)
    again = syncd("import", str(path), "--source", "fair", "--batch-size", "2")
    assert again.exit_code == 0, again.output
    assert f"  {'unchanged':<24}{4:>9}" in again.stdout and f"  {'imported (new)':<24}{1:>9}" in again.stdout
    assert count("contact") == 5 and count("source") == 5
