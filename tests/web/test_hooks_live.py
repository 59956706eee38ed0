"""Providers' real payloads, fired by the simulators at the app on a real server, then drained."""

from __future__ import annotations

import httpx
import pytest
from simkit import BrevoSimulator, MailchimpSimulator
from sqlmodel import Session, select
from webfixtures import AUDIENCE, BREVO_SECRET, BREVO_TOKEN, MAILCHIMP_SECRET, add_contact

from connectors.contract import EventKind, Target
from syncd.inbox import drain
from syncd.models import Consent, Contact, InboxEvent, Membership

NEWS = Target("brevo", "12")
CLUB = Target("mailchimp", AUDIENCE)


@pytest.fixture
def brevo(served):
    sim = BrevoSimulator()
    sim.webhook_token = BREVO_TOKEN
    return sim, f"{served.url}/hooks/brevo/{BREVO_SECRET}"


@pytest.fixture
def mailchimp(served):
    return MailchimpSimulator(), f"{served.url}/hooks/mailchimp/{MAILCHIMP_SECRET}"


def state(engine, contact_id: int) -> tuple[Contact, dict[str, str]]:
    with Session(engine) as s:
        c = s.get(Contact, contact_id)
        rows = s.exec(select(Membership).where(Membership.contact_id == contact_id)).all()
        return c, {m.list_name: m.status for m in rows}


def fire_and_drain(engine, config, sim, url, *args, **kw) -> None:
    r = sim.fire_webhook(url, *args, **kw)
    assert r.status_code == 200, r.text
    assert drain(engine, config)["done"] == 1


def test_brevo_unsubscribe_from_one_list_keeps_the_others(engine, config, brevo):
    cid = add_contact(engine, "ana@example.fr", {"news": "single_opt_in", "offers": "single_opt_in"})
    fire_and_drain(engine, config, *brevo, EventKind.UNSUBSCRIBED, "ana@example.fr", NEWS)
    contact, lists = state(engine, cid)
    assert lists == {"news": "unsubscribed", "offers": "subscribed"}
    assert contact.global_opt_out is False


def test_brevo_unsubscribe_from_all(engine, config, brevo):
    cid = add_contact(engine, "ana@example.fr", {"news": "single_opt_in", "offers": "single_opt_in"})
    fire_and_drain(engine, config, *brevo, EventKind.UNSUBSCRIBED_ALL, "ana@example.fr")
    contact, lists = state(engine, cid)
    assert lists == {"news": "unsubscribed", "offers": "unsubscribed"}
    assert contact.global_opt_out is True


@pytest.mark.parametrize("provider", ["brevo", "mailchimp"])
def test_hard_bounce_cleans_the_address(engine, config, provider, request):
    cid = add_contact(engine, "ana@example.fr", {"news": "single_opt_in"})
    sim, url = request.getfixturevalue(provider)
    fire_and_drain(
        engine,
        config,
        sim,
        url,
        EventKind.BOUNCED_HARD,
        "ana@example.fr",
        NEWS if provider == "brevo" else CLUB,
    )
    contact, lists = state(engine, cid)
    assert contact.email_status == "bounced"
    assert lists == {"news": "cleaned"}


@pytest.mark.parametrize("provider", ["brevo", "mailchimp"])
def test_spam_complaint_opts_out_everywhere(engine, config, provider, request):
    cid = add_contact(engine, "ana@example.fr", {"news": "single_opt_in", "offers": "single_opt_in"})
    sim, url = request.getfixturevalue(provider)
    fire_and_drain(
        engine,
        config,
        sim,
        url,
        EventKind.COMPLAINED,
        "ana@example.fr",
        NEWS if provider == "brevo" else CLUB,
    )
    contact, lists = state(engine, cid)
    assert (contact.email_status, contact.global_opt_out) == ("complained", True)
    assert set(lists.values()) == {"unsubscribed"}


def test_mailchimp_unsubscribe_leaves_only_the_audience_lists(engine, config, mailchimp):
    cid = add_contact(engine, "ana@example.fr", {"club": "double_opt_in", "news": "single_opt_in"})
    fire_and_drain(engine, config, *mailchimp, EventKind.UNSUBSCRIBED, "ana@example.fr", CLUB)
    contact, lists = state(engine, cid)
    assert lists == {"club": "unsubscribed", "news": "subscribed"}
    assert contact.global_opt_out is False


def test_mailchimp_profile_update(engine, config, mailchimp):
    cid = add_contact(engine, "ana@example.fr", {"club": "double_opt_in"}, first_name="Ana")
    fire_and_drain(
        engine, config, *mailchimp, EventKind.PROFILE_UPDATED, "ana@example.fr", CLUB, first_name="Anaïs"
    )
    assert state(engine, cid)[0].first_name == "Anaïs"


def test_brevo_profile_update(engine, config, brevo):
    cid = add_contact(engine, "ana@example.fr", {"news": "single_opt_in"}, first_name="Ana")
    fire_and_drain(
        engine, config, *brevo, EventKind.PROFILE_UPDATED, "ana@example.fr", fields={"first_name": "Anaïs"}
    )
    assert state(engine, cid)[0].first_name == "Anaïs"


@pytest.mark.parametrize("provider", ["brevo", "mailchimp"])
def test_email_change(engine, config, provider, request):
    cid = add_contact(engine, "ana@example.fr", {"news": "single_opt_in"})
    sim, url = request.getfixturevalue(provider)
    fire_and_drain(
        engine,
        config,
        sim,
        url,
        EventKind.EMAIL_CHANGED,
        "ana@example.fr",
        NEWS if provider == "brevo" else CLUB,
        new_email="ana.new@example.fr",
    )
    contact, lists = state(engine, cid)
    assert contact.email == "ana.new@example.fr"
    assert lists == {"news": "subscribed"}


def test_mailchimp_url_check(mailchimp, served):
    sim, url = mailchimp
    assert sim.check_webhook_url(url).status_code == 200
    assert sim.check_webhook_url(f"{served.url}/hooks/mailchimp/guess").status_code == 404


def test_wrong_secret_is_404_and_nothing_is_stored(engine, brevo, served):
    sim, _ = brevo
    r = sim.fire_webhook(f"{served.url}/hooks/brevo/guess", EventKind.UNSUBSCRIBED, "ana@example.fr", NEWS)
    assert r.status_code == 404
    with Session(engine) as s:
        assert s.exec(select(InboxEvent)).all() == []


def test_duplicate_delivery_has_one_effect(engine, config, mailchimp):
    cid = add_contact(engine, "ana@example.fr", {"club": "double_opt_in", "news": "single_opt_in"})
    sim, url = mailchimp
    body, content_type = sim.webhook_payload(EventKind.UNSUBSCRIBED, "ana@example.fr", CLUB)
    answers = [
        httpx.post(url, content=body, headers={"Content-Type": content_type}).status_code for _ in range(3)
    ]
    assert answers == [200, 200, 200]
    assert drain(engine, config)["done"] == 1
    with Session(engine) as s:
        opt_outs = s.exec(select(Consent).where(Consent.contact_id == cid, Consent.action == "opt_out")).all()
        assert [c.list_name for c in opt_outs] == ["club"]
