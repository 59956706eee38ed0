"""GDPR access and erasure."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from connectors.contract import EventKind
from syncd.config import ListConfig
from syncd.contacts.gdpr import export_contact, forget_contact
from syncd.contacts.importer import Options, import_file
from syncd.db import email_hash
from syncd.membership import join_list
from syncd.models import AuditLog, Contact, Flag, InboxEvent, TargetState, Tombstone

AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _seed(engine, tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(
        "email;prénom;nom;société\nMarie@Exemple.fr;Marie;Dupont;ACME\nmarie@exemple.fr;;;Globex\n"
        "paul@exemple.fr;Paul;Durand;\n",
        encoding="utf-8",
    )
    import_file(engine, path, Options(channel="salon"))
    with Session(engine) as session:
        marie = session.exec(select(Contact).where(Contact.email == "marie@exemple.fr")).one()
        join_list(
            session,
            marie,
            "newsletter",
            ListConfig(consent="single_opt_in"),
            consent="single_opt_in",
            source="form",
            at=AT,
            ip="192.0.2.1",
        )
        session.add(
            TargetState(contact_id=marie.id, list_name="newsletter", target_key="brevo:1", remote_id="42")
        )
        session.add(Flag(contact_id=marie.id, list_name="newsletter", rule="wrong_list"))
        session.add(
            Flag(email_hash=email_hash("marie@exemple.fr"), list_name="vendors", rule="unknown_remote")
        )
        session.add(
            InboxEvent(
                provider="mailchimp",
                dedupe_key="k1",
                content_type="application/x-www-form-urlencoded",
                payload="type=unsubscribe&data%5Bemail%5D=marie%40exemple.fr",
                status="done",
            )
        )
        session.add(
            InboxEvent(
                provider="brevo",
                dedupe_key="k2",
                content_type="application/json",
                payload='{"event": "unsubscribe", "email": "paul@exemple.fr"}',
            )
        )
        session.commit()
        return marie.id


def test_export_holds_everything_about_the_contact(engine, tmp_path):
    _seed(engine, tmp_path)
    data = export_contact(engine, " MARIE@exemple.fr ")
    assert data["contact"]["email"] == "marie@exemple.fr" and data["contact"]["company"] == "ACME"
    assert [(s["channel"], s["detail"], s["row"]) for s in data["sources"]] == [
        ("salon", "a.csv", 2),
        ("salon", "a.csv", 3),
    ]
    assert [(c["action"], c["list_name"], c["ip"]) for c in data["consents"]] == [
        ("opt_in", "newsletter", "192.0.2.1")
    ]
    assert [(m["list_name"], m["status"]) for m in data["memberships"]] == [("newsletter", "subscribed")]
    assert data["target_states"][0]["remote_id"] == "42"
    assert data["flags"][0]["rule"] == "wrong_list"
    conflict = next(a for a in data["audit_log"] if a["action"] == "import.conflict")
    assert conflict["detail"]["conflicts"][0]["offered"] == "Globex"
    assert data["consents"][0]["at"] == "2026-03-01T09:00:00+00:00"
    assert export_contact(engine, "nobody@exemple.fr") is None


def test_forget_deletes_everything_scrubs_traces_and_keeps_a_tombstone(engine, tmp_path, count):
    marie_id = _seed(engine, tmp_path)
    result = forget_contact(engine, "Marie@Exemple.fr")
    assert result.found
    for table in ("source", "consent", "membership", "targetstate", "flag"):
        assert count(table, contact_id=marie_id) == 0, table
    assert count("flag") == 0  # the flag on her address hash went too
    assert count("contact") == 1 and count("source") == 1  # Paul is untouched
    with Session(engine) as session:
        assert session.get(Tombstone, email_hash("marie@exemple.fr")) is not None
        for entry in session.exec(select(AuditLog).where(AuditLog.contact_id == marie_id)):
            assert "marie" not in str(entry.detail).lower() and "Globex" not in str(entry.detail)
        events = {e.dedupe_key: e for e in session.exec(select(InboxEvent))}
        assert "marie" not in events["k1"].payload
        assert "paul@exemple.fr" in events["k2"].payload


def test_forgotten_contact_is_never_re_imported_and_its_consent_does_not_come_back(engine, tmp_path, count):
    _seed(engine, tmp_path)
    forget_contact(engine, "marie@exemple.fr")
    path = tmp_path / "again.csv"
    path.write_text("email;prénom\nMARIE@exemple.fr;Marie\n", encoding="utf-8")
    s = import_file(engine, path, Options(channel="purchased-file"))
    assert (s.imported, s.rejected) == (0, 1)
    assert count("contact", email="marie@exemple.fr") == 0
    assert count("consent") == 0


def test_forgetting_an_unknown_address_still_blocks_it(engine, count):
    result = forget_contact(engine, "stranger@exemple.fr")
    assert not result.found
    assert count("tombstone") == 1
    forget_contact(engine, "stranger@exemple.fr")
    assert count("tombstone") == 1


@pytest.mark.parametrize("provider", ["brevo", "mailchimp"])
def test_email_change_onto_an_erased_address_is_refused_and_never_pushed(live, provider, tmp_path):
    w = live
    ana, gone = f"ana.{provider}@exemple.fr", f"gone.{provider}@exemple.fr"
    crm = tmp_path / "crm.csv"
    crm.write_text(f"email;type\n{ana};client\n{gone};client\n", encoding="utf-8")
    imported = w.cli("import", str(crm), "--source", "crm", "--list", "clients", "--consent", "single_opt_in")
    assert imported.exit_code == 0, imported.output
    assert w.cli("sync").exit_code == 0
    forgotten = w.cli("contacts", "forget", gone, "--yes")
    assert forgotten.exit_code == 0, forgotten.output

    # Ana types the erased address as her new one at the provider: the provider renames her member.
    sim, hook, target = (
        (w.brevo, w.brevo_hook, w.clients_b)
        if provider == "brevo"
        else (w.mailchimp, w.mailchimp_hook, w.clients_mc)
    )
    sim.seed(target, [{"email": gone, "status": "subscribed"}])
    fired = sim.fire_webhook(hook, EventKind.EMAIL_CHANGED, ana, target, new_email=gone)
    assert fired.status_code == 200, fired.text
    drained = w.cli("inbox", "drain")
    assert drained.exit_code == 0 and "1 done" in drained.output, drained.output
    synced = w.cli("sync")
    assert synced.exit_code == 0, synced.output

    for held, on in w.targets:
        assert gone not in held.members(on), on
    with Session(w.engine) as session:
        assert session.exec(select(Contact).where(Contact.email == gone)).first() is None
        contact = session.exec(select(Contact).where(Contact.email == ana)).one()
        refused = session.exec(
            select(AuditLog).where(AuditLog.action == "contact.email_change_refused")
        ).one()
        assert refused.contact_id == contact.id and "@" not in json.dumps(refused.detail)


def _inbox(engine) -> list[InboxEvent]:
    with Session(engine) as session:
        return list(session.exec(select(InboxEvent).order_by(InboxEvent.id)))


def _post(w, url: str, body: bytes, content_type: str) -> dict:
    answer = w.post(url, body, content_type)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _import_clients(w, tmp_path, *emails: str) -> None:
    crm = tmp_path / "clients.csv"
    crm.write_text("email;type\n" + "".join(f"{e};client\n" for e in emails), encoding="utf-8")
    result = w.cli("import", str(crm), "--source", "crm", "--list", "clients", "--consent", "single_opt_in")
    assert result.exit_code == 0, result.output


def test_forget_scrubs_every_stored_body_naming_the_address_whatever_its_encoding(live, tmp_path):
    w = live
    ana, paul = "ana@exemple.fr", "paul@exemple.fr"
    _import_clients(w, tmp_path, ana, paul)
    news = w.clients_b
    # Applied deliveries naming Ana: Mailchimp form-encoded (%40, other case), Brevo JSON with its
    # "@" written as a JSON escape, and a Brevo "delivered" event syncd does not act on.
    mc_body, mc_type = w.mailchimp.webhook_payload(
        EventKind.PROFILE_UPDATED, "Ana@EXEMPLE.fr", w.clients_mc, first_name="Ana"
    )
    brevo_body, json_type = w.brevo.webhook_payload(EventKind.PROFILE_UPDATED, ana, fields={"city": "Lyon"})
    delivered = json.dumps({"event": "delivered", "email": ana, "ts_event": 1767225600}).encode()
    for body, kind in (
        (mc_body, mc_type),
        (brevo_body.replace(b"@", b"\\u0040"), json_type),
        (delivered, json_type),
    ):
        _post(w, w.mailchimp_hook if kind == mc_type else w.brevo_hook, body, kind)
    assert w.cli("inbox", "drain").exit_code == 0
    # Still to apply: Paul's own unsubscribe, and a Brevo batch carrying Ana's and Paul's events.
    pauls, _ = w.brevo.webhook_payload(EventKind.UNSUBSCRIBED, paul, news)
    batch = b"[" + w.brevo.webhook_payload(EventKind.BOUNCED_SOFT, ana, news)[0] + b","
    batch += w.brevo.webhook_payload(EventKind.PROFILE_UPDATED, paul, fields={"city": "Nantes"})[0] + b"]"
    _post(w, w.brevo_hook, pauls, json_type)
    _post(w, w.brevo_hook, batch, json_type)
    stored = len(_inbox(w.engine))

    forgotten = w.cli("contacts", "forget", "ANA@exemple.fr", "--yes", "--local-only")
    assert forgotten.exit_code == 0, forgotten.output
    assert "webhook inbox: 3 stored deliveries scrubbed" in forgotten.output
    assert "1 still to apply" in forgotten.output
    drained = w.cli("inbox", "drain")
    assert "2 done" in drained.output, drained.output

    # The delivery held for Paul's event was blanked as the drain applied it: nothing left to purge.
    rows = _inbox(w.engine)
    for row in rows:
        assert "ana" not in row.payload.lower(), row.payload
    purged = w.cli("inbox", "purge")
    assert purged.exit_code == 0 and "0 naming an erased address" in purged.output, purged.output

    rows = _inbox(w.engine)
    assert len(rows) == stored  # the rows stay: a redelivery is still recognised
    for row in rows:
        assert "ana" not in row.payload.lower(), row.payload
    assert [r.status for r in rows] == ["done", "done", "ignored", "done", "done"]
    assert "paul" in rows[3].payload  # Paul's own delivery is his: kept for the retention
    with Session(w.engine) as session:
        kept = session.exec(select(Contact).where(Contact.email == paul)).one()
        assert kept.city == "Nantes"  # his event in the batch was applied before the body went
    assert _post(w, w.mailchimp_hook, mc_body, mc_type)["status"] == "duplicate"
    assert _post(w, w.brevo_hook, batch, json_type)["status"] == "duplicate"


def test_a_delivery_naming_an_erased_address_is_never_stored_raw(live, tmp_path):
    w = live
    ana, gone = "ana@exemple.fr", "gone@exemple.fr"
    _import_clients(w, tmp_path, ana, gone)
    assert w.cli("contacts", "forget", gone, "--yes", "--local-only").exit_code == 0

    # Gone subscribes again at Mailchimp and is seen by Brevo: nothing of it can be applied.
    again, content_type = w.mailchimp.webhook_payload(EventKind.SUBSCRIBED, gone, w.clients_mc)
    assert _post(w, w.mailchimp_hook, again, content_type)["status"] == "ignored"
    profile = w.brevo.fire_webhook(w.brevo_hook, EventKind.PROFILE_UPDATED, gone, fields={"city": "Lyon"})
    assert profile.json()["status"] == "ignored", profile.text
    # Ana takes the erased address as her new one: applied (refused, audited), and blanked as it is
    # applied, without waiting for the daemon's purge.
    changed = w.mailchimp.fire_webhook(
        w.mailchimp_hook, EventKind.EMAIL_CHANGED, ana, w.clients_mc, new_email=gone
    )
    assert changed.json()["status"] == "stored", changed.text
    assert w.cli("inbox", "drain").exit_code == 0
    for row in _inbox(w.engine):
        assert "gone" not in row.payload.lower(), row.payload
        assert row.status in ("ignored", "done") and row.purged_at is not None
    assert w.cli("inbox", "purge").exit_code == 0
    assert _post(w, w.mailchimp_hook, again, content_type)["status"] == "duplicate"
    with Session(w.engine) as session:
        assert session.exec(select(Contact).where(Contact.email == gone)).first() is None
        assert session.exec(select(Contact).where(Contact.email == ana)).one()


def test_a_request_naming_a_former_address_points_to_the_contact_instead_of_answering_nothing(live, tmp_path):
    """Ana changed her address at Mailchimp; she asks under the one she remembers. "No such contact"
    would tell the team nothing is held while her record is: the answer names the address her
    contact has now, and nothing is erased or disclosed on the former address's word alone (it may
    belong to someone else by now)."""
    w = live
    ana, new = "ana@exemple.fr", "ana.new@exemple.fr"
    _import_clients(w, tmp_path, ana)
    assert w.cli("sync").exit_code == 0
    fired = w.mailchimp.fire_webhook(
        w.mailchimp_hook, EventKind.EMAIL_CHANGED, ana, w.clients_mc, new_email=new
    )
    assert fired.status_code == 200, fired.text
    assert w.cli("inbox", "drain").exit_code == 0
    with Session(w.engine) as session:
        assert session.exec(select(Contact.email)).all() == [new]

    exported = w.cli("contacts", "export", ana)
    assert exported.exit_code == 1
    assert f"former address of the contact now at {new}" in exported.output, exported.output
    assert f"syncd contacts export {new}" in exported.output

    forgotten = w.cli("contacts", "forget", ana, "--yes", "--local-only")
    assert forgotten.exit_code == 1, forgotten.output
    assert f"former address of the contact now at {new}" in forgotten.output, forgotten.output
    assert f"syncd contacts forget {new}" in forgotten.output
    with Session(w.engine) as session:
        assert session.exec(select(Contact.email)).all() == [new]  # not erased on that word alone
        assert session.get(Tombstone, email_hash(ana)) is not None  # the former address is blocked

    assert w.cli("contacts", "forget", new, "--yes", "--local-only").exit_code == 0
    with Session(w.engine) as session:
        assert session.exec(select(Contact)).all() == []
