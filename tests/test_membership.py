import pytest
from sqlmodel import Session, select

from syncd.config import ListConfig
from syncd.db import session_scope
from syncd.membership import ConsentRequired, join_list, leave_list, mark_bounced, opt_out_everywhere
from syncd.models import Consent, Contact, Membership

NEWS = ListConfig(consent="single_opt_in")
DOI = ListConfig(consent="double_opt_in")
VENDORS = ListConfig(consent="legitimate_interest")


def contact(s: Session, email="ana@example.fr") -> Contact:
    c = Contact(email=email, first_name="Ana")
    s.add(c)
    s.flush()
    return c


def statuses(s: Session, c: Contact) -> dict[str, str]:
    return {m.list_name: m.status for m in s.exec(select(Membership).where(Membership.contact_id == c.id))}


def test_single_opt_in_subscribes_and_records_proof(engine):
    with session_scope(engine) as s:
        c = contact(s)
        join_list(s, c, "news", NEWS, consent="single_opt_in", source="form", ip="192.0.2.1")
        assert statuses(s, c) == {"news": "subscribed"}
        proof = s.exec(select(Consent)).one()
        assert (proof.action, proof.list_name, proof.ip) == ("opt_in", "news", "192.0.2.1")


def test_double_opt_in_list_starts_pending(engine):
    with session_scope(engine) as s:
        c = contact(s)
        join_list(s, c, "doi", DOI, consent="single_opt_in", source="site")
        assert statuses(s, c) == {"doi": "pending"}
        join_list(s, c, "doi", DOI, consent="double_opt_in", source="confirm")
        assert statuses(s, c) == {"doi": "subscribed"}


def test_no_consent_is_refused_for_a_consent_list(engine):
    with session_scope(engine) as s:
        c = contact(s)
        with pytest.raises(ConsentRequired):
            join_list(s, c, "news", NEWS, consent="none", source="purchased-file")
        join_list(s, c, "vendors", VENDORS, consent="none", source="erp")
        assert statuses(s, c) == {"vendors": "subscribed"}


def test_unsubscribe_from_one_list_keeps_the_others(engine):
    with session_scope(engine) as s:
        c = contact(s)
        join_list(s, c, "news", NEWS, consent="single_opt_in", source="form")
        join_list(s, c, "offers", NEWS, consent="single_opt_in", source="form")
        leave_list(s, c, "news", reason="manual", source="webhook:brevo")
        assert statuses(s, c) == {"news": "unsubscribed", "offers": "subscribed"}
        assert c.global_opt_out is False


def test_leaving_is_final_until_a_new_opt_in(engine):
    with session_scope(engine) as s:
        c = contact(s)
        join_list(s, c, "vendors", VENDORS, consent="none", source="erp")
        leave_list(s, c, "vendors", reason="manual", source="prefs")
        with pytest.raises(ConsentRequired):
            join_list(s, c, "vendors", VENDORS, consent="none", source="erp")
        join_list(s, c, "vendors", VENDORS, consent="single_opt_in", source="form")
        assert statuses(s, c) == {"vendors": "subscribed"}


def test_global_opt_out_closes_every_list_and_a_new_opt_in_reopens_one(engine):
    with session_scope(engine) as s:
        c = contact(s)
        join_list(s, c, "news", NEWS, consent="single_opt_in", source="form")
        join_list(s, c, "offers", NEWS, consent="single_opt_in", source="form")
        opt_out_everywhere(s, c, reason="unsubscribe all", source="prefs")
        assert c.global_opt_out and statuses(s, c) == {"news": "unsubscribed", "offers": "unsubscribed"}
        join_list(s, c, "news", NEWS, consent="single_opt_in", source="form")
        assert not c.global_opt_out and statuses(s, c) == {"news": "subscribed", "offers": "unsubscribed"}


def test_a_complaint_is_never_lifted_by_an_opt_in(engine):
    with session_scope(engine) as s:
        c = contact(s)
        opt_out_everywhere(s, c, reason="spam", source="webhook:brevo", complaint=True)
        join_list(s, c, "news", NEWS, consent="single_opt_in", source="form")
        assert c.global_opt_out and c.email_status == "complained"


def test_a_hard_bounce_cleans_memberships(engine):
    with session_scope(engine) as s:
        c = contact(s)
        join_list(s, c, "news", NEWS, consent="single_opt_in", source="form")
        mark_bounced(s, c, source="webhook:mailchimp")
        assert c.email_status == "bounced" and statuses(s, c) == {"news": "cleaned"}
