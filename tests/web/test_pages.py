"""What every contact page answers besides its content: security headers, no redirect built from
the client's Host header."""

from __future__ import annotations

import httpx
import pytest
from sqlmodel import Session, select
from webfixtures import add_contact

from syncd import doi
from syncd.models import Contact, Membership


def contact_links(engine, config, contact_id: int) -> list[str]:
    with Session(engine) as s:
        contact = s.get(Contact, contact_id)
        return [
            f"/prefs/{doi.prefs_token(config, contact)}",
            f"/unsubscribe/{doi.unsubscribe_token(config, contact, 'news')}",
            "/confirm/never.issued",
            "/prefs/forged.token",
        ]


def test_every_html_page_carries_a_content_security_policy_and_nosniff(client, engine, config):
    ana = add_contact(engine, "ana@example.fr", {"news": "single_opt_in"})
    for path in contact_links(engine, config, ana):
        for r in (client.get(path), client.post(path, data={"lang": "en"})):
            assert r.headers["content-type"].startswith("text/html"), path
            csp = dict(d.strip().split(" ", 1) for d in r.headers["content-security-policy"].split(";"))
            assert csp["default-src"] == "'none'" and "script-src" not in csp
            assert csp["frame-ancestors"] == "'none'" and csp["form-action"] == "'self'"
            assert csp["style-src"].startswith("'sha256-")
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert r.headers["cache-control"] == "no-store"


def test_other_responses_are_nosniff_too(client):
    for path in ("/healthz", "/readyz", "/metrics", "/nowhere"):
        assert client.get(path).headers["x-content-type-options"] == "nosniff", path


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1"])
def test_a_trailing_slash_never_redirects_to_the_host_header(served, engine, config, host):
    ana = add_contact(engine, "ana@example.fr", {"news": "single_opt_in"})
    for path in contact_links(engine, config, ana)[:2]:
        r = httpx.get(served.url + path + "/", headers={"Host": host}, follow_redirects=False)
        assert "location" not in r.headers and not r.is_redirect, (path, r.headers.get("location"))
        assert r.status_code == 404


@pytest.mark.browser
def test_real_browser_confirms_a_subscription_under_the_policy(served, engine, config, browser_page):
    ana = add_contact(engine, "ana@example.fr", {"club": "single_opt_in"})
    mails: list[doi.Mail] = []
    doi.send_pending(engine, config, lambda mail: mails.append(mail) or "<1@test>")
    path = "/confirm/" + mails[0].text.split("/confirm/", 1)[1].split()[0]
    page, console = browser_page
    page.goto(served.url + path)
    page.get_by_role("button", name="I confirm my subscription").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading").inner_text() == "Subscription confirmed"
    assert page.locator("main").bounding_box()["width"] <= 40 * 16  # its style applied
    assert [m for m in console if "Content Security Policy" in m] == []
    with Session(engine) as s:
        assert s.exec(select(Membership.status).where(Membership.contact_id == ana)).all() == ["subscribed"]
