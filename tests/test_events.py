from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from connectors.contract import EventKind, ProviderEvent
from syncd.config import Config
from syncd.db import session_scope
from syncd.inbound.apply import apply_event
from syncd.inbound.evidence import record_provider_evidence
from syncd.inbound.reconcile import lists_for_target
from syncd.membership import join_list, leave_list
from syncd.models import AuditLog, Consent, Contact, Membership, Source, Tombstone

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)


def config(scope: str = "list") -> Config:
    return Config.model_validate(
        {
            "version": 1,
            "providers": {"brevo": {"api_key": "k"}, "mailchimp": {"api_key": "k"}},
            "unsubscribe": {"scope": scope},
            "lists": {
                "news": {"consent": "single_opt_in", "targets": [{"brevo": {"list_id": 12}}]},
                "offers": {"consent": "single_opt_in", "targets": [{"brevo": {"list_id": 13}}]},
                "clients": {
                    "consent": "double_opt_in",
                    "targets": [{"mailchimp": {"audience": "aud1", "tag": "clients"}}],
                },
                "prospects": {
                    "consent": "single_opt_in",
                    "targets": [{"mailchimp": {"audience": "aud1", "tag": "prospects"}}],
                },
                "events": {"consent": "single_opt_in", "targets": [{"mailchimp": {"audience": "aud2"}}]},
                "vendors": {
                    "consent": "legitimate_interest",
                    "segment": {"kind": ["vendor"]},
                    "auto_enroll": True,
                    "targets": [{"brevo": {"list_id": 14}}],
                },
            },
        }
    )


CFG = config()


def event(kind, at=T0, email="ana@example.fr", provider="brevo", target=None, **kw) -> ProviderEvent:
    return ProviderEvent(
        provider=provider,
        kind=kind,
        email=email,
        occurred_at=at,
        dedupe_key=f"{kind}{at}",
        target=target,
        **kw,
    )


def member_of(s: Session, *lists: str, at=T0 - timedelta(days=30), **fields) -> Contact:
    c = Contact(email=fields.pop("email", "ana@example.fr"), first_name="Ana", updated_at=at, **fields)
    s.add(c)
    s.flush()
    for name in lists:
        join_list(s, c, name, CFG.lists[name], consent="double_opt_in", source="form", at=at)
    return c


def statuses(s: Session, c: Contact) -> dict[str, str]:
    return {m.list_name: m.status for m in s.exec(select(Membership).where(Membership.contact_id == c.id))}


def test_mailchimp_audience_is_shared_by_all_its_tags():
    assert set(lists_for_target(CFG, "mailchimp", "aud1")) == {"clients", "prospects"}
    assert set(lists_for_target(CFG, "brevo", "12")) == {"news"}
    assert lists_for_target(CFG, "brevo", "99") == {} and lists_for_target(CFG, "brevo", None) == {}


def test_unsubscribe_from_one_brevo_list_keeps_the_others(engine):
    with session_scope(engine) as s:
        c = member_of(s, "news", "offers")
        assert apply_event(s, event(EventKind.UNSUBSCRIBED, target="12"), CFG) == "applied"
        assert statuses(s, c) == {"news": "unsubscribed", "offers": "subscribed"}
        assert c.global_opt_out is False


def test_mailchimp_unsubscribe_leaves_every_list_of_the_audience_and_only_them(engine):
    with session_scope(engine) as s:
        c = member_of(s, "clients", "prospects", "events")
        assert (
            apply_event(s, event(EventKind.UNSUBSCRIBED, provider="mailchimp", target="aud1"), CFG)
            == "applied"
        )
        assert statuses(s, c) == {
            "clients": "unsubscribed",
            "prospects": "unsubscribed",
            "events": "subscribed",
        }
        assert not c.global_opt_out


def test_global_scope_turns_an_unsubscribe_into_a_global_opt_out(engine):
    with session_scope(engine) as s:
        c = member_of(s, "news", "offers")
        assert apply_event(s, event(EventKind.UNSUBSCRIBED, target="12"), config("global")) == "applied"
        assert c.global_opt_out and statuses(s, c) == {"news": "unsubscribed", "offers": "unsubscribed"}


def test_unsubscribe_all_and_complaint_are_global(engine):
    with session_scope(engine) as s:
        c = member_of(s, "news", "offers")
        assert apply_event(s, event(EventKind.UNSUBSCRIBED_ALL), CFG) == "applied"
        assert c.global_opt_out and c.email_status == "valid"
        b = member_of(s, "news", email="bob@example.fr")
        assert apply_event(s, event(EventKind.COMPLAINED, email="bob@example.fr"), CFG) == "applied"
        assert b.global_opt_out and b.email_status == "complained"
        actions = {r.action for r in s.exec(select(Consent).where(Consent.contact_id == b.id))}
        assert "complaint" in actions


def test_hard_bounce_cleans_soft_bounce_only_notes(engine):
    with session_scope(engine) as s:
        c = member_of(s, "news")
        assert apply_event(s, event(EventKind.BOUNCED_SOFT), CFG) == "noted"
        assert statuses(s, c) == {"news": "subscribed"} and c.email_status == "valid"
        assert apply_event(s, event(EventKind.BOUNCED_HARD, at=T0 + timedelta(1)), CFG) == "applied"
        assert c.email_status == "bounced" and statuses(s, c) == {"news": "cleaned"}


def test_a_hard_bounce_applied_after_a_complaint_keeps_the_complaint(engine):
    # The bounce happened first (Mailchimp), its webhook came after the complaint's (Brevo).
    with session_scope(engine) as s:
        c = member_of(s, "news")
        assert apply_event(s, event(EventKind.COMPLAINED, at=T0 + timedelta(1)), CFG) == "applied"
        bounce = event(EventKind.BOUNCED_HARD, at=T0, provider="mailchimp", target="aud1")
        assert apply_event(s, bounce, CFG) == "applied"
        assert c.email_status == "complained" and c.global_opt_out


def test_a_deletion_at_the_provider_is_not_an_unsubscribe(engine):
    with session_scope(engine) as s:
        c = member_of(s, "clients")
        assert (
            apply_event(s, event(EventKind.DELETED, provider="mailchimp", target="aud1"), CFG)
            == "ignored:deleted"
        )
        assert statuses(s, c) == {"clients": "subscribed"} and not c.global_opt_out


def test_own_writes_and_unknown_targets_are_ignored(engine):
    with session_scope(engine) as s:
        c = member_of(s, "news")
        assert (
            apply_event(s, event(EventKind.UNSUBSCRIBED, target="12", own_write=True), CFG)
            == "ignored:own_write"
        )
        assert apply_event(s, event(EventKind.UNSUBSCRIBED, target="99"), CFG) == "ignored:no_list"
        assert apply_event(s, event(EventKind.UNSUBSCRIBED, email="nobody@example.fr", target="12"), CFG) == (
            "ignored:unknown_contact"
        )
        assert statuses(s, c) == {"news": "subscribed"}


def test_an_older_unsubscribe_never_overrides_a_newer_opt_in(engine):
    with session_scope(engine) as s:
        c = member_of(s, "news", at=T0 - timedelta(days=30))
        # delivered late: the contact left from the preference centre, then opted in again at T0
        leave_list(s, c, "news", reason="prefs", source="prefs", at=T0 - timedelta(hours=2))
        join_list(s, c, "news", CFG.lists["news"], consent="single_opt_in", source="form", at=T0)
        assert apply_event(
            s, event(EventKind.UNSUBSCRIBED, at=T0 - timedelta(hours=1), target="12"), CFG
        ) == ("ignored:older")
        assert statuses(s, c) == {"news": "subscribed"}


def test_out_of_order_unsubscribe_all_keeps_the_newer_opt_in(engine):
    with session_scope(engine) as s:
        c = member_of(s, "news", "offers", at=T0 - timedelta(days=30))
        leave_list(s, c, "news", reason="prefs", source="prefs", at=T0 - timedelta(hours=2))
        join_list(s, c, "news", CFG.lists["news"], consent="single_opt_in", source="form", at=T0)
        assert apply_event(s, event(EventKind.UNSUBSCRIBED_ALL, at=T0 - timedelta(hours=1)), CFG) == "applied"
        assert statuses(s, c) == {"news": "subscribed", "offers": "unsubscribed"}


def test_profile_updates_apply_by_event_time(engine):
    with session_scope(engine) as s:
        c = member_of(s, "news", at=T0)
        newer = event(EventKind.PROFILE_UPDATED, at=T0 + timedelta(hours=2), fields={"last_name": "Durand"})
        older = event(
            EventKind.PROFILE_UPDATED,
            at=T0 + timedelta(hours=1),
            fields={"last_name": "Martin", "phone": "0612345678"},
        )
        assert apply_event(s, newer, CFG) == "applied"
        assert apply_event(s, older, CFG) == "ignored:older"
        assert (c.last_name, c.phone) == ("Durand", None)
        same = event(
            EventKind.PROFILE_UPDATED, at=T0 + timedelta(hours=3), fields={"phone": "06 12 34 56 78"}
        )
        assert apply_event(s, same, CFG) == "applied" and c.phone == "+33612345678"
        assert s.exec(select(AuditLog).where(AuditLog.action == "contact.updated")).first().detail == {
            "fields": ["last_name"]
        }


def test_email_change_moves_the_contact_unless_the_address_is_taken(engine):
    with session_scope(engine) as s:
        c = member_of(s, "news")
        member_of(s, email="taken@example.fr")
        e = event(EventKind.EMAIL_CHANGED, new_email="taken@example.fr")
        assert apply_event(s, e, CFG) == "ignored:email_taken" and c.email == "ana@example.fr"
        e = event(EventKind.EMAIL_CHANGED, new_email="Ana.New@example.fr")
        assert apply_event(s, e, CFG) == "applied" and c.email == "ana.new@example.fr"


def test_provider_subscription_is_provenance_not_consent(engine):
    with session_scope(engine) as s:
        c = member_of(s)
        assert apply_event(s, event(EventKind.SUBSCRIBED, target="12"), CFG) == "applied"
        assert statuses(s, c) == {}
        assert [x.channel for x in s.exec(select(Source).where(Source.contact_id == c.id))] == [
            "provider:brevo:12"
        ]
        assert s.exec(select(Consent).where(Consent.contact_id == c.id)).all() == []
        # the same again records nothing new
        assert apply_event(s, event(EventKind.SUBSCRIBED, target="12", at=T0 + timedelta(1)), CFG) == (
            "ignored:no_change"
        )


def test_unknown_contact_subscribed_at_the_provider_is_created_without_consent(engine):
    with session_scope(engine) as s:
        e = event(EventKind.SUBSCRIBED, email="new@example.fr", target="12", fields={"first_name": "Néa"})
        assert apply_event(s, e, CFG) == "applied"
        c = s.exec(select(Contact).where(Contact.email == "new@example.fr")).one()
        assert c.first_name == "Néa" and statuses(s, c) == {}
        assert [x.channel for x in s.exec(select(Source).where(Source.contact_id == c.id))] == [
            "provider:brevo:12"
        ]


def test_legitimate_interest_list_takes_a_provider_subscription(engine):
    with session_scope(engine) as s:
        assert (
            apply_event(s, event(EventKind.SUBSCRIBED, email="v@example.fr", target="14"), CFG) == "applied"
        )
        c = s.exec(select(Contact).where(Contact.email == "v@example.fr")).one()
        assert statuses(s, c) == {"vendors": "subscribed"}


def test_an_erased_contact_is_not_recreated(engine):
    from syncd.db import email_hash

    with session_scope(engine) as s:
        s.add(Tombstone(email_hash=email_hash("gone@example.fr")))
        s.flush()
        assert apply_event(s, event(EventKind.SUBSCRIBED, email="gone@example.fr", target="12"), CFG) == (
            "ignored:forgotten"
        )
        assert s.exec(select(Contact)).all() == []


def test_unsubscribe_from_an_auto_enrolled_list_is_recorded(engine):
    with session_scope(engine) as s:
        c = member_of(s, kind="vendor")
        assert apply_event(s, event(EventKind.UNSUBSCRIBED, target="14"), CFG) == "applied"
        assert statuses(s, c) == {"vendors": "unsubscribed"}


def test_provider_evidence_is_recorded_once(engine):
    with session_scope(engine) as s:
        c = member_of(s, "clients")
        ev = {"ip_opt": "192.0.2.7", "timestamp_opt": "2023-02-01T10:00:00+00:00", "ip_signup": ""}
        row = record_provider_evidence(s, c, "clients", ev, "pull:mailchimp:aud1")
        assert row is not None and row.ip == "192.0.2.7" and row.at == datetime(2023, 2, 1, 10, tzinfo=UTC)
        s.flush()
        assert record_provider_evidence(s, c, "clients", ev, "pull:mailchimp:aud1") is None
        assert record_provider_evidence(s, c, "clients", {}, "pull") is None
        rows = s.exec(select(Consent).where(Consent.action == "provider_evidence")).all()
        assert len(rows) == 1 and rows[0].evidence == {
            "ip_opt": "192.0.2.7",
            "timestamp_opt": ev["timestamp_opt"],
        }


def test_reversed_delivery_converges_on_the_newest_event(engine):
    with session_scope(engine) as s:
        c = member_of(s, kind="vendor")
        unsubscribe = event(EventKind.UNSUBSCRIBED, at=T0 + timedelta(hours=1), target="14")
        addition = event(EventKind.SUBSCRIBED, at=T0, target="14")
        assert apply_event(s, unsubscribe, CFG) == "applied"
        apply_event(s, addition, CFG)  # older, delivered second
        assert statuses(s, c) == {"vendors": "unsubscribed"}
