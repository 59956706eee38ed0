"""The preference centre: leaving one list keeps the others; "everything" is the only global opt-out."""

from __future__ import annotations

import re

import pytest
from sqlmodel import Session, select
from webfixtures import add_contact

from syncd import doi
from syncd.models import Consent, Contact, Membership


def prefs_path(engine, config, contact_id: int) -> str:
    with Session(engine) as s:
        return f"/prefs/{doi.prefs_token(config, s.get(Contact, contact_id))}"


def statuses(engine, contact_id: int) -> dict[str, str]:
    with Session(engine) as s:
        rows = s.exec(select(Membership).where(Membership.contact_id == contact_id)).all()
        return {m.list_name: m.status for m in rows}


def form_fields(html: str) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html):
        fields.setdefault(name, []).append(value)
    fields["keep"] = re.findall(r'name="keep" value="([^"]*)"', html)
    return fields


@pytest.fixture
def ana(engine):
    return add_contact(
        engine,
        "ana@example.fr",
        {"news": "single_opt_in", "offers": "single_opt_in", "club": "single_opt_in"},
    )


def test_page_lists_memberships_accessibly_in_french_by_default(client, engine, config, ana):
    html = client.get(prefs_path(engine, config, ana)).text
    assert '<html lang="fr">' in html and "<fieldset>" in html and "<legend>" in html
    assert re.search(
        r'<label for="list-1"><input type="checkbox" id="list-1" name="keep" value="club" checked> '
        r"Club \(en attente de confirmation\)</label>",
        html,
    )
    assert "Newsletter" in html and "Offers" in html and "Me désinscrire de tout" in html
    assert "Internal" not in html  # a list's public title, never its description
    assert "<script" not in html


@pytest.mark.parametrize(
    ("query", "headers"), [("?lang=en", {}), ("", {"Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"})]
)
def test_page_speaks_english_when_asked(client, engine, config, ana, query, headers):
    html = client.get(prefs_path(engine, config, ana) + query, headers=headers).text
    assert '<html lang="en">' in html and "Unsubscribe me from everything" in html


def test_leaving_one_list_keeps_the_others(client, engine, config, ana):
    path = prefs_path(engine, config, ana)
    fields = form_fields(client.get(path).text)
    fields["keep"] = ["club", "news"]  # "offers" unticked
    r = client.post(path, data=fields)
    assert r.status_code == 200 and "Vos choix sont enregistrés" in r.text
    assert statuses(engine, ana) == {"news": "subscribed", "offers": "unsubscribed", "club": "pending"}
    with Session(engine) as s:
        assert s.get(Contact, ana).global_opt_out is False
        [proof] = s.exec(select(Consent).where(Consent.action == "opt_out")).all()
        assert (proof.list_name, proof.source) == ("offers", "web:prefs")


def test_unsubscribe_from_everything(client, engine, config, ana):
    path = prefs_path(engine, config, ana)
    fields = form_fields(client.get(path).text)
    r = client.post(path, data={**fields, "all": "1"})
    assert r.status_code == 200
    assert set(statuses(engine, ana).values()) == {"unsubscribed"}
    with Session(engine) as s:
        assert s.get(Contact, ana).global_opt_out is True


def test_a_list_joined_after_the_page_was_loaded_is_not_touched(client, engine, config, ana):
    path = prefs_path(engine, config, ana)
    fields = form_fields(client.get(path).text)
    fields["shown"] = ["news", "offers"]  # the page did not show "club"
    fields["keep"] = ["news", "offers"]
    client.post(path, data=fields)
    assert statuses(engine, ana)["club"] == "pending"


@pytest.mark.parametrize("csrf", [None, "forged.token", "from-another-contact"])
def test_form_without_a_valid_csrf_token_changes_nothing(client, engine, config, ana, csrf):
    other = add_contact(engine, "bob@example.fr", {"news": "single_opt_in"})
    path = prefs_path(engine, config, ana)
    fields = form_fields(client.get(path).text)
    if csrf == "from-another-contact":
        fields["csrf"] = form_fields(client.get(prefs_path(engine, config, other)).text)["csrf"]
    elif csrf is None:
        del fields["csrf"]
    else:
        fields["csrf"] = [csrf]
    r = client.post(path, data={**fields, "all": "1"})
    assert r.status_code == 400 and "expiré" in r.text
    assert statuses(engine, ana)["news"] == "subscribed"


def test_forged_prefs_link_is_400(client, engine, config, ana):
    path = prefs_path(engine, config, ana)
    assert client.get(path[:-3] + "xyz").status_code == 400
    assert (
        client.get(
            f"/prefs/{doi.unsubscribe_token(config, Contact(id=ana, email='ana@example.fr'), 'news')}"
        ).status_code
        == 400
    )


@pytest.mark.browser
def test_real_browser_leaves_one_list_and_keeps_the_others(served, engine, config, ana, browser_page):
    page, console = browser_page
    page.goto(served.url + prefs_path(engine, config, ana))
    assert page.get_attribute("html", "lang") == "en"
    offers = page.get_by_label("Offers")
    assert offers.is_checked()
    offers.uncheck()
    page.get_by_role("button", name="Save my choices").click()
    page.wait_for_load_state()
    assert page.get_by_role("status").inner_text() == "Your choices are saved."
    assert page.get_by_label("Newsletter").is_checked()
    assert page.get_by_label("Offers").count() == 0  # no longer a list the contact is in
    # The page's own style applies under its Content-Security-Policy, and nothing was refused.
    assert page.locator("main").bounding_box()["width"] <= 40 * 16
    assert [m for m in console if "Content Security Policy" in m] == []
    assert statuses(engine, ana) == {"news": "subscribed", "offers": "unsubscribed", "club": "pending"}
