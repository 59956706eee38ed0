"""Importing files: counts, rejects, merges, idempotence, consent, batches."""

from __future__ import annotations

import csv
import gc
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from syncd.contacts.batch import CreatedMeanwhile, Matched, _write_contacts_staged
from syncd.contacts.dedupe import new_contact
from syncd.contacts.importer import IMPORT_GC_THRESHOLD, ImportInterrupted, Options, import_file, import_rows
from syncd.contacts.qualify import Qualified
from syncd.contacts.rejects import Rejects
from syncd.contacts.tables import ImportFailed, RawRow, Table, map_header, parse_map
from syncd.db import Growth
from syncd.models import AuditLog, Contact, Source, utcnow

HEADER = "Civilité;Prénom;NOM;Courriel;Tél.;Société;N° SIRET;CP;Ville;Pays;Type;Tags"
MESSY = [
    HEADER,
    "M.;jean-françois;DE LA TOUR;JF.Delatour@Exemple.FR;06 12 34 56 78;La Tour € SA;732 829 320 00074;75011;Paris;France;client;vip",  # noqa: E501
    "Mme;Éloïse;marchand;eloise@exemple.fr;+33 (0)6 23 45 67 89;;;69002;Lyon;FR;prospect;",
    "M.;Jean-François;de la Tour;jf.delatour@exemple.fr;0033612345678;;;;;;;salon",
    "M.;Paul;Durand;paul.durand@;06 34 56 78 90;;;;;;prospect;",
    ";;;contact@societe.fr;01 23 45 67 89;Société X;123 456 789 00012;;;;fournisseur;",
    "Mme;Anne;Lefèvre;anne@exemple.fr;12 34;;;;;;client;",
    "M.;Luc;Martin;LUC@EXEMPLE.FR;07 56 78 90 12;;;;;;client;",
    "M.;Luc;Martin;luc@exemple.fr;07 81 92 03 14;;;;;;client;",
    "M.;Too;Many;too@exemple.fr;;;;;;;;;extra;cells",
    ";;;;;;;;;;;",
    "Mme;Zoé;Noël;;06 45 67 89 01;;;;;;prospect;",
]


def write_messy(path: Path, encoding: str) -> Path:
    path.write_bytes("\r\n".join(MESSY).encode(encoding) + b"\r\n")
    return path


@pytest.mark.parametrize("encoding", ["utf-8-sig", "cp1252", "utf-8"])
def test_messy_french_csv_imports_with_exact_counts_and_rejects(engine, tmp_path, encoding, count):
    path = write_messy(tmp_path / "contacts.csv", encoding)
    s = import_file(engine, path, Options(channel="salon"))
    assert (s.read, s.imported, s.merged, s.unchanged, s.rejected) == (10, 5, 2, 0, 3)
    assert (s.incomplete, s.conflicts, s.phones_dropped, s.siret_dropped) == (1, 1, 1, 1)

    with path.with_name("contacts.rejects.csv").open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    assert rows[0] == ["row", "reason", *HEADER.split(";")]
    assert [(r[0], r[1].split(":")[0]) for r in rows[1:]] == [
        ("5", "invalid email"),
        ("10", "expected 12 columns, found 14"),
        ("12", "no email address"),
    ]
    assert rows[1][2:] == MESSY[4].split(";")
    assert rows[3][3:5] == ["Zoé", "Noël"]

    with Session(engine) as session:
        jf = session.exec(select(Contact).where(Contact.email == "jf.delatour@exemple.fr")).one()
        assert (jf.first_name, jf.last_name, jf.phone, jf.siret) == (
            "Jean-François",
            "de La Tour",
            "+33612345678",
            "73282932000074",
        )
        assert jf.company == "La Tour € SA" and jf.tags == ["vip", "salon"] and jf.kind == "client"
        assert jf.country == "FR" and jf.postal_code == "75011"
        luc = session.exec(select(Contact).where(Contact.email == "luc@exemple.fr")).one()
        assert luc.phone == "+33756789012"
        vendor = session.exec(select(Contact).where(Contact.email == "contact@societe.fr")).one()
        assert vendor.kind == "vendor" and vendor.siret is None
        sources = session.exec(
            select(Source.row).where(Source.contact_id == jf.id).order_by(Source.row)
        ).all()
        assert sources == [2, 4]
    assert count("contact") == 5


def test_re_running_the_same_import_changes_nothing(engine, tmp_path, dump):
    path = write_messy(tmp_path / "contacts.csv", "cp1252")
    import_file(engine, path, Options(channel="salon"))
    before = dump()
    s = import_file(engine, path, Options(channel="salon"))
    assert (s.imported, s.merged, s.unchanged, s.rejected) == (0, 0, 7, 3)
    assert dump() == before


def test_small_batches_give_the_same_result(engine, tmp_path):
    path = write_messy(tmp_path / "contacts.csv", "utf-8")
    s = import_file(engine, path, Options(channel="salon", batch_size=2))
    assert (s.read, s.imported, s.merged, s.rejected, s.conflicts) == (10, 5, 2, 3, 1)


def test_merge_fills_empty_fields_keeps_existing_values_and_reports_the_conflict(engine, tmp_path):
    first = tmp_path / "a.csv"
    first.write_text("email;prénom;nom;société\nmarie@exemple.fr;Marie;Dupont;ACME\n", encoding="utf-8")
    second = tmp_path / "b.csv"
    second.write_text(
        "email;société;téléphone;tags\nMARIE@exemple.fr;Globex;06 12 34 56 78;vip\n", encoding="utf-8"
    )
    import_file(engine, first, Options(channel="site"))
    s = import_file(engine, second, Options(channel="fair"))
    assert (s.merged, s.conflicts) == (1, 1)
    assert "row 2: company kept 'ACME', file had 'Globex'" in s.notes
    with Session(engine) as session:
        marie = session.exec(select(Contact)).one()
        assert (marie.company, marie.phone, marie.tags, marie.version) == ("ACME", "+33612345678", ["vip"], 2)
        audit = session.exec(select(AuditLog).where(AuditLog.action == "import.conflict")).one()
        assert audit.contact_id == marie.id
        assert audit.detail["conflicts"] == [{"field": "company", "kept": "ACME", "offered": "Globex"}]
        assert audit.detail["file"] == "b.csv" and audit.detail["row"] == 2
        assert [s.channel for s in session.exec(select(Source).order_by(Source.id))] == ["site", "fair"]


def test_same_value_in_another_case_is_not_a_conflict(engine, tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("email;société\nm@exemple.fr;ACME\nM@exemple.fr;Acme\n", encoding="utf-8")
    assert import_file(engine, path, Options(channel="site")).conflicts == 0


def test_unknown_columns_go_to_attributes(engine, tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("email,Secteur d'activité,Civilité\nm@exemple.fr,Boulangerie,Mme\n", encoding="utf-8")
    import_file(engine, path, Options(channel="site"))
    with Session(engine) as session:
        assert session.exec(select(Contact)).one().attributes == {"Secteur d'activité": "Boulangerie"}


def test_header_mapping_understands_french_and_english_headers():
    assert map_header(
        [
            "E-mail",
            "PRENOM",
            "Nom de famille",
            "Portable",
            "Raison sociale",
            "Code Postal",
            "Pays",
            "Étiquettes",
            "type",
            "Civilité",
            "Other",
        ]
    ) == [
        "email",
        "first_name",
        "last_name",
        "phone",
        "company",
        "postal_code",
        "country",
        "tags",
        "kind",
        "ignore",
        "attributes.Other",
    ]


def test_map_option_overrides_headers(engine, tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(
        "Adresse électronique\tNom complet\tBoîte\nx@exemple.fr\tjean DUPONT\tACME\n", encoding="utf-8"
    )
    with pytest.raises(ImportFailed, match="no column holds email addresses"):
        import_file(engine, path, Options(channel="site"))
    mapping = parse_map("Adresse électronique=email, boite=company")
    s = import_file(engine, path, Options(channel="site", mapping=mapping))
    assert s.imported == 1
    with Session(engine) as session:
        c = session.exec(select(Contact)).one()
        assert (c.email, c.first_name, c.last_name, c.company) == ("x@exemple.fr", "Jean", "Dupont", "ACME")
    with pytest.raises(ValueError, match="unknown field"):
        parse_map("A=nope")


def test_xlsx_import(engine, tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["First name", "Last name", "Email", "Mobile", "Company", "SIRET", "Zip", "Country", "Kind"])
    ws.append(
        [
            "éloïse",
            "MARCHAND",
            "Eloise@Exemple.fr",
            "06 23 45 67 89",
            "ACME",
            73282932000074,
            1000,
            "France",
            "client",
        ]
    )
    ws.append(["Paul", "Durand", "paul.durand@", None, None, None, None, None, None])
    ws.append([None] * 9)
    ws.append(["Jean", "Bon", "jean@exemple.fr", 612345678, None, None, None, None, "prospect"])
    path = tmp_path / "contacts.xlsx"
    wb.save(path)
    s = import_file(engine, path, Options(channel="crm"))
    assert (s.read, s.imported, s.rejected) == (3, 2, 1)
    with path.with_name("contacts.rejects.csv").open(encoding="utf-8-sig") as f:
        assert next(iter(list(csv.reader(f, delimiter=";"))[1:]))[:2] == [
            "3",
            "invalid email: There must be something after the @-sign.",
        ]
    with Session(engine) as session:
        e = session.exec(select(Contact).where(Contact.email == "eloise@exemple.fr")).one()
        assert (e.first_name, e.last_name, e.phone, e.siret, e.postal_code) == (
            "Éloïse",
            "Marchand",
            "+33623456789",
            "73282932000074",
            "01000",
        )
        j = session.exec(select(Contact).where(Contact.email == "jean@exemple.fr")).one()
        assert j.phone == "+33612345678"


def test_undecodable_line_is_a_reject_not_a_crash(engine, tmp_path):
    path = tmp_path / "a.csv"
    lines = ["email;prénom".encode()] + [f"p{i}@exemple.fr;Éloïse".encode() for i in range(5)]
    lines.insert(3, "bad@exemple.fr;H\xe9l\xe8ne".encode("latin-1"))
    path.write_bytes(b"\n".join(lines) + b"\n")
    s = import_file(engine, path, Options(channel="site"))
    assert (s.imported, s.rejected) == (5, 1)
    with path.with_name("a.rejects.csv").open("rb") as f:
        rejects = f.read()
    assert b"4;not valid utf-8 text;bad@exemple.fr;H\xe9l\xe8ne" in rejects  # original bytes kept


def test_cp1252_file_is_detected(engine, tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes("email;prénom;nom\nh@exemple.fr;Hélène;Noël\n".encode("cp1252"))
    import_file(engine, path, Options(channel="site"))
    with Session(engine) as session:
        c = session.exec(select(Contact)).one()
        assert (c.first_name, c.last_name) == ("Hélène", "Noël")


def test_unreadable_file_fails_clearly(engine, tmp_path):
    with pytest.raises(ImportFailed, match="nope.csv"):
        import_file(engine, tmp_path / "nope.csv", Options(channel="site"))
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ImportFailed, match="empty"):
        import_file(engine, empty, Options(channel="site"))
    bad_xlsx = tmp_path / "bad.xlsx"
    bad_xlsx.write_bytes(b"not a zip")
    with pytest.raises(ImportFailed, match="bad.xlsx"):
        import_file(engine, bad_xlsx, Options(channel="site"))


def _rows_then_failure(n: int):
    for i in range(n):
        yield RawRow(i + 2, [f"p{i:05d}@exemple.fr", f"Nom{i}"])
    raise OSError("read error on the network share")


def test_a_failure_mid_import_keeps_earlier_batches_and_nothing_of_the_failing_one(engine, tmp_path, count):
    rejects = Rejects(tmp_path / "r.csv", ["email", "nom"], ";")
    with pytest.raises(ImportInterrupted) as info:
        import_rows(
            engine,
            "big.csv",
            ["email", "last_name"],
            _rows_then_failure(2500),
            Options(channel="site", batch_size=1000),
            rejects,
        )
    assert info.value.summary.imported == 2000
    assert count("contact") == 2000
    assert count("source") == 2000
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.max(Contact.__table__.c.email))).scalar_one()
            == "p01999@exemple.fr"
        )
    # Running it again once the file is readable imports the rest and nothing twice.
    rows = (RawRow(i + 2, [f"p{i:05d}@exemple.fr", f"Nom{i}"]) for i in range(2500))
    s = import_rows(engine, "big.csv", ["email", "last_name"], rows, Options(channel="site"), rejects)
    assert (s.imported, s.unchanged) == (500, 2000)
    assert count("source") == 2500


def test_erased_address_is_rejected_on_import(engine, tmp_path, count):
    from syncd.contacts.gdpr import forget_contact

    forget_contact(engine, "Gone@Exemple.fr")
    path = tmp_path / "a.csv"
    path.write_text("email;nom\ngone@exemple.fr;Parti\nstay@exemple.fr;Reste\n", encoding="utf-8")
    s = import_file(engine, path, Options(channel="purchased-file"))
    assert (s.imported, s.rejected) == (1, 1)
    assert "2;erased at the contact's request;gone@exemple.fr" in path.with_name("a.rejects.csv").read_text(
        "utf-8-sig"
    )
    assert count("contact", email="gone@exemple.fr") == 0


def test_no_consent_is_recorded_unless_the_importer_says_so(engine, tmp_path, count):
    path = write_messy(tmp_path / "contacts.csv", "utf-8")
    import_file(engine, path, Options(channel="purchased-file"))
    assert count("consent") == 0 and count("membership") == 0


def test_every_qualified_field_is_a_contact_column():
    from syncd.contacts.dedupe import new_contact
    from syncd.contacts.qualify import qualify

    row = new_contact(qualify({"email": "a@exemple.fr"}))
    assert set(row) <= set(Contact.__table__.columns.keys())


def _planner_rows(engine, table: str) -> float | None:
    """The row count PostgreSQL's planner believes of ``table``; None on SQLite (no statistics kept)."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT reltuples FROM pg_class WHERE oid = 'contact'::regclass"
        ).scalar_one()


def test_statistics_are_refreshed_once_the_import_has_doubled_a_table(engine, tmp_path, monkeypatch):
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE contact")  # the planner starts from the emptied table
    monkeypatch.setattr(Growth, "FLOOR", 3)
    path = tmp_path / "a.csv"
    path.write_text("email;nom\n" + "".join(f"p{i}@exemple.fr;Nom{i}\n" for i in range(6)), encoding="utf-8")
    s = import_file(engine, path, Options(channel="site", batch_size=2))
    assert s.imported == 6
    if engine.dialect.name == "postgresql":
        # Analysed after the second batch (4 rows >= the floor of 3), not after the third (2 more < 4).
        assert _planner_rows(engine, "contact") == 4
    else:
        with engine.connect() as conn:  # SQLite: never analysed, its planner needs no statistics
            assert (
                conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'").first()
                is None
            )


def test_a_new_address_another_writer_created_meanwhile_fails_the_batch(engine, count):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: nothing is created between the look-up and the insert")
    with Session(engine) as session:
        session.add(Contact(email="both@exemple.fr", first_name="Webhook"))
        session.commit()
    at = utcnow()
    emails = ("both@exemple.fr", "new@exemple.fr")
    created = {e: new_contact(Qualified(email=e, last_name="Fichier")) for e in emails}
    with Session(engine) as session, pytest.raises(CreatedMeanwhile, match="run the import again"):
        _write_contacts_staged(session, {}, Matched(created=created), at)
    assert count("contact") == 1
    assert count("contact", email="both@exemple.fr", first_name="Webhook") == 1


def test_a_batch_read_ahead_sees_what_the_batches_before_it_wrote(engine, tmp_path, monkeypatch, count):
    from syncd.contacts import importer

    # Every batch qualified and its contacts read before the first is written: the address each
    # batch shares with the ones before it was created, then changed, after it was read.
    monkeypatch.setattr(importer, "_read_ahead", lambda items: iter(list(items)))
    path = tmp_path / "a.csv"
    path.write_text(
        "email;prénom;nom;téléphone;société\n"
        "anne@exemple.fr;Anne;;;\n"
        "bob@exemple.fr;Bob;;;\n"
        "ANNE@exemple.fr;;Martin;;\n"
        "cy@exemple.fr;Cy;;;\n"
        "anne@exemple.fr;;;06 12 34 56 78;ACME\n",
        encoding="utf-8",
    )
    s = import_file(engine, path, Options(channel="site", batch_size=2))
    assert (s.imported, s.merged, s.rejected) == (3, 2, 0)
    with Session(engine) as session:
        anne = session.exec(select(Contact).where(Contact.email == "anne@exemple.fr")).one()
        assert (anne.first_name, anne.last_name, anne.phone, anne.company) == (
            "Anne",
            "Martin",
            "+33612345678",
            "ACME",
        )
        assert anne.version == 3  # created, then changed by each of the two later batches
        assert [r.row for r in session.exec(select(Source).where(Source.contact_id == anne.id))] == [2, 4, 6]
    assert count("contact") == 3

    again = import_file(engine, path, Options(channel="site", batch_size=2))  # nothing new: nothing written
    assert (again.imported, again.merged, again.unchanged) == (0, 0, 5)


def test_a_contact_another_writer_changes_after_the_batch_was_read_ahead_is_merged_as_it_is_then(
    engine, tmp_path, monkeypatch
):
    from syncd.contacts import importer

    with Session(engine) as session:
        session.add(Contact(email="anne@exemple.fr", first_name="Anne"))
        session.commit()

    def read_then_another_writer(items):
        batches = list(items)  # every batch qualified and its contacts read
        with Session(engine) as session:  # then a webhook, say, writes before the import does
            anne = session.exec(select(Contact).where(Contact.email == "anne@exemple.fr")).one()
            anne.company, anne.version = "Globex", anne.version + 1
            session.commit()
        return iter(batches)

    monkeypatch.setattr(importer, "_read_ahead", read_then_another_writer)
    path = tmp_path / "a.csv"
    path.write_text("email;nom;société\nanne@exemple.fr;Martin;ACME\n", encoding="utf-8")
    s = import_file(engine, path, Options(channel="site"))
    assert (s.merged, s.conflicts) == (1, 1)
    assert "row 2: company kept 'Globex', file had 'ACME'" in s.notes
    with Session(engine) as session:
        anne = session.exec(select(Contact).where(Contact.email == "anne@exemple.fr")).one()
        assert (anne.first_name, anne.last_name, anne.company) == ("Anne", "Martin", "Globex")
        assert anne.version == 3


def test_batches_of_the_default_size_grow_to_it_from_a_small_first_one_a_chosen_size_is_kept():
    from syncd.contacts.importer import _batches

    rows = [RawRow(line, [f"p{line}@exemple.fr"]) for line in range(2, 14)]
    grown = list(_batches(rows, 5, first=1))
    assert [len(b) for b in grown] == [1, 2, 4, 5]
    assert [r.line for b in grown for r in b] == [r.line for r in rows]  # every row once, in order
    assert [len(b) for b in _batches(rows, 5)] == [5, 5, 2]


def test_the_cycle_collector_is_paced_during_an_import_and_restored_after_it_even_on_failure(
    engine, tmp_path, monkeypatch
):
    before = gc.get_threshold()
    path = tmp_path / "a.csv"
    path.write_text("email;nom\n" + "".join(f"p{i}@exemple.fr;Nom{i}\n" for i in range(4)), encoding="utf-8")
    during: list[tuple[int, ...]] = []
    record = lambda *_: during.append(gc.get_threshold())  # noqa: E731
    s = import_file(engine, path, Options(channel="site", batch_size=2), progress=record)
    assert s.imported == 4
    paced = (max(IMPORT_GC_THRESHOLD, before[0]), *before[1:])
    assert during[:2] == [paced, paced]  # after each batch written
    assert gc.get_threshold() == before

    from syncd.contacts import importer

    def broken(*args, **kw):
        raise RuntimeError("the base went away")

    monkeypatch.setattr(importer, "_commit_batch", broken)
    with pytest.raises(ImportInterrupted):
        import_file(engine, path, Options(channel="site", batch_size=2))
    assert gc.get_threshold() == before


@pytest.mark.parametrize("batch_size", [2, 3])  # the last batch partial, then full
def test_progress_is_reported_up_to_the_end_of_the_file(engine, tmp_path, batch_size):
    path = tmp_path / "a.csv"
    path.write_text("email;nom\n" + "".join(f"p{i}@exemple.fr;Nom{i}\n" for i in range(3)), encoding="utf-8")
    seen: list[tuple[int, int]] = []
    s = import_file(
        engine, path, Options(channel="site", batch_size=batch_size), progress=lambda *a: seen.append(a)
    )
    assert s.imported == 3
    size = path.stat().st_size
    assert seen[-1] == (size, size)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_an_import_stopped_early_stops_reading_ahead(engine, tmp_path, count):
    def endless():
        n = 0
        while True:
            yield RawRow(n + 2, [f"p{n}@exemple.fr", f"Nom{n}"])
            n += 1

    def interrupt(done: int, total: int) -> None:
        raise RuntimeError("stopped by the caller")

    rejects = Rejects(tmp_path / "r.csv", ["email", "nom"], ";")
    table = Table(["email", "nom"], iter(()))
    with pytest.raises(ImportInterrupted, match="stopped by the caller"):
        options = Options(channel="site", batch_size=10)
        import_rows(
            engine, "endless.csv", ["email", "last_name"], endless(), options, rejects, table, interrupt
        )
    assert count("contact") == 10  # the first batch, written before the progress report failed
    assert not [t for t in threading.enumerate() if t.name == "import-read-ahead"]
