"""The account set-up both connectors read and write (a list's or audience's presence, its tag,
syncd's webhooks), through the official SDKs against the simulators, checked against the
providers' published API descriptions like the rest of the suite; the simulators' own set-up
hooks (a list or audience created with the id a config names) and the Brevo outbox pages."""

from __future__ import annotations

import httpx
import pytest
from simkit import BrevoSimulator, MailchimpSimulator

from connectors.brevo import BrevoConnector
from connectors.contract import AuthFailed, Connector, Fatal, NotFound, Target, TargetPresence
from connectors.mailchimp import MailchimpConnector

HOOK = "https://lists.example.fr/hooks/{provider}/s3cr3t-Xq8vLk2pR7mN4tY9wZ1aB6cD0eF5gH3j"


@pytest.fixture
def brevo():
    with BrevoSimulator(api_key="sim-key") as s:
        yield s


@pytest.fixture
def mailchimp():
    with MailchimpSimulator(api_key="sim-key-us1") as s:
        yield s


def brevo_connector(sim: BrevoSimulator, key: str | None = None) -> BrevoConnector:
    return BrevoConnector(key or sim.api_key, sim.api_url, timeout=5, max_retries=0)


def mailchimp_connector(sim: MailchimpSimulator, key: str | None = None) -> MailchimpConnector:
    return MailchimpConnector(key or sim.api_key, sim.api_url, timeout=5, max_retries=0)


# --- the simulators take the ids a config names ------------------------------------------------


def test_brevo_simulator_creates_a_list_with_a_given_id_and_never_reuses_it(brevo):
    assert brevo.create_list("newsletter", list_id=12) == 12
    assert brevo.create_list("next") == 2
    assert brevo.create_list("after", list_id=3) == 3
    assert brevo.create_list("skips the taken id") == 4
    with pytest.raises(ValueError, match="list id 12 is taken"):
        brevo.create_list("again", list_id=12)
    with pytest.raises(ValueError, match="positive integer"):
        brevo.create_list("zero", list_id=0)
    lists = BrevoConnector(brevo.api_key, brevo.api_url, timeout=5)
    assert lists.presence(Target("brevo", "12")) == TargetPresence(True, "newsletter")


def test_mailchimp_simulator_creates_an_audience_with_a_given_id(mailchimp):
    assert mailchimp.create_audience("Clients", list_id="a1b2c3d4e5") == "a1b2c3d4e5"
    with pytest.raises(ValueError, match="is taken"):
        mailchimp.create_audience("Clients", list_id="a1b2c3d4e5")
    with pytest.raises(ValueError, match="letters and digits"):
        mailchimp.create_audience("Bad", list_id="a/b")
    found = mailchimp_connector(mailchimp).presence(Target("mailchimp", "a1b2c3d4e5"))
    assert found == TargetPresence(True, "Clients")


# --- presence: list, audience, tag ------------------------------------------------------------


def test_brevo_presence_says_whether_the_list_exists(brevo):
    brevo.create_list("news", list_id=7)
    conn = brevo_connector(brevo)
    assert conn.presence(Target("brevo", "7")).list_found
    assert conn.presence(Target("brevo", "8")) == TargetPresence(list_found=False)


def test_mailchimp_presence_says_whether_the_audience_and_the_tag_exist(mailchimp):
    mailchimp.create_audience("Clients", list_id="aud1")
    mailchimp.create_tag("aud1", "vip")
    conn = mailchimp_connector(mailchimp)
    assert conn.presence(Target("mailchimp", "aud1", "vip")) == TargetPresence(True, "Clients", True)
    assert conn.presence(Target("mailchimp", "aud1", "gold")).tag_found is False
    assert conn.presence(Target("mailchimp", "aud1")).tag_found is None
    assert conn.presence(Target("mailchimp", "nope", "vip")) == TargetPresence(False, None, False)


def test_a_refused_key_is_an_error_not_a_missing_list(brevo, mailchimp):
    brevo.create_list("news", list_id=7)
    with pytest.raises(AuthFailed):
        brevo_connector(brevo, "wrong").presence(Target("brevo", "7"))
    with pytest.raises(AuthFailed):
        mailchimp_connector(mailchimp, "wrong-us1").presence(Target("mailchimp", "x"))


# --- webhooks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["brevo", "mailchimp"])
def test_a_registered_webhook_is_listed_with_the_events_syncd_reads(provider, brevo, mailchimp):
    if provider == "brevo":
        brevo.create_list("news", list_id=7)
        conn: Connector = brevo_connector(brevo)
        target = Target("brevo", "7")
    else:
        mailchimp.create_audience("Clients", list_id="aud1")
        conn = mailchimp_connector(mailchimp)
        target = Target("mailchimp", "aud1")
    url = HOOK.format(provider=provider)
    assert conn.webhooks(target) == []

    made = conn.register_webhook(target, url, token="t0ken-Lk2pR7mN4tY9wZ1aB6cD0eF5gH3jXq8v")

    listed = conn.webhooks(target)
    assert [(w.id, w.url) for w in listed] == [(made.id, url)]
    assert set(listed[0].events) == set(conn.webhook_events)


def test_brevo_webhook_is_a_marketing_one_with_the_bearer_token(brevo):
    conn = brevo_connector(brevo)
    conn.register_webhook(Target("brevo", "7"), HOOK.format(provider="brevo"), token="tok")
    (hook,) = brevo.account.webhooks.values()
    assert hook["type"] == "marketing"
    assert hook["auth"] == {"type": "bearer", "token": "tok"}
    # a transactional webhook is not one syncd reads: not listed
    r = httpx.post(
        f"{brevo.api_url}/webhooks",
        json={"url": "https://elsewhere.example/hook", "events": ["opened"]},
        headers={"api-key": brevo.api_key},
    )
    assert r.status_code == 201
    assert [w.url for w in conn.webhooks(Target("brevo", "7"))] == [HOOK.format(provider="brevo")]


def test_mailchimp_webhook_skips_syncd_s_own_api_writes(mailchimp):
    mailchimp.create_audience("Clients", list_id="aud1")
    mailchimp_connector(mailchimp).register_webhook(Target("mailchimp", "aud1"), HOOK)
    (hook,) = mailchimp.account.audiences["aud1"].webhooks.values()
    assert hook["sources"] == {"user": True, "admin": True, "api": False}
    assert hook["events"]["campaign"] is False


def test_mailchimp_refuses_a_second_webhook_with_the_same_url(mailchimp):
    mailchimp.create_audience("Clients", list_id="aud1")
    conn = mailchimp_connector(mailchimp)
    conn.register_webhook(Target("mailchimp", "aud1"), HOOK)
    with pytest.raises(Fatal, match="already exists"):
        conn.register_webhook(Target("mailchimp", "aud1"), HOOK)
    assert len(conn.webhooks(Target("mailchimp", "aud1"))) == 1


def test_webhook_calls_against_a_missing_audience_name_it(mailchimp):
    with pytest.raises(NotFound, match="audience ghost1"):
        mailchimp_connector(mailchimp).webhooks(Target("mailchimp", "ghost1"))


@pytest.mark.parametrize(
    "body",
    [
        {"url": "not a url", "events": ["spam"]},
        {"url": "https://x.example/h", "events": []},
        {"url": "https://x.example/h", "events": ["nonsense"]},
    ],
)
def test_brevo_simulator_refuses_a_bad_webhook(brevo, body):
    r = httpx.post(f"{brevo.api_url}/webhooks", json=body, headers={"api-key": brevo.api_key})
    assert r.status_code == 400 and r.json()["code"] in ("invalid_parameter", "missing_parameter")


def test_webhooks_can_be_deleted_on_both_simulators(brevo, mailchimp):
    made = brevo_connector(brevo).register_webhook(Target("brevo", "1"), HOOK)
    gone = httpx.delete(f"{brevo.api_url}/webhooks/{made.id}", headers={"api-key": brevo.api_key})
    again = httpx.delete(f"{brevo.api_url}/webhooks/{made.id}", headers={"api-key": brevo.api_key})
    assert (gone.status_code, again.status_code) == (204, 404)
    assert not brevo.account.webhooks

    mailchimp.create_audience("Clients", list_id="aud1")
    made = mailchimp_connector(mailchimp).register_webhook(Target("mailchimp", "aud1"), HOOK)
    auth = ("anyone", mailchimp.api_key)
    gone = httpx.delete(f"{mailchimp.api_url}/lists/aud1/webhooks/{made.id}", auth=auth)
    again = httpx.delete(f"{mailchimp.api_url}/lists/aud1/webhooks/{made.id}", auth=auth)
    assert (gone.status_code, again.status_code) == (204, 404)


# --- a 404 names the real id ----------------------------------------------------------------------


def test_a_missing_brevo_list_is_named_in_the_error(brevo):
    with pytest.raises(NotFound) as caught:
        list(brevo_connector(brevo).pull(Target("brevo", "99")))
    # A new connector's first read asks the list itself first (the provider's clock).
    assert "GET /contacts/lists/99: 404" in str(caught.value)
    assert "List ID does not exist" in str(caught.value)
    assert "{id}" not in str(caught.value)


# --- the Brevo outbox ------------------------------------------------------------------------------


def send_confirmation(sim: BrevoSimulator) -> None:
    BrevoConnector(sim.api_key, sim.api_url, timeout=5).send_email(
        sender_email="news@example.fr",
        sender_name="News",
        to_email="ana@example.fr",
        to_name=None,
        subject="Confirm <your> subscription",
        html=f'<p>Click <a href="{CONFIRM.replace("&", "&amp;")}">here</a></p>',
        text=f"Confirm: {CONFIRM}",
        headers={},
    )


CONFIRM = "http://127.0.0.1:8080/confirm/abc.def?x=1&y=2"


def test_the_outbox_json_lists_the_mails_with_their_links_without_the_key(brevo):
    assert httpx.get(f"{brevo._server.url}/_sim/outbox.json").json() == {"mails": []}
    send_confirmation(brevo)
    (mail,) = httpx.get(f"{brevo._server.url}/_sim/outbox.json").json()["mails"]
    assert mail["to"] == [{"email": "ana@example.fr"}]
    assert mail["subject"] == "Confirm <your> subscription"
    assert mail["links"] == [CONFIRM]
    assert mail["messageId"].endswith("@smtp-relay.mailin.fr>")


def test_the_outbox_page_shows_the_link_escaped(brevo):
    empty = httpx.get(f"{brevo._server.url}/_sim/outbox")
    assert empty.status_code == 200 and "No mail sent yet" in empty.text
    send_confirmation(brevo)
    page = httpx.get(f"{brevo._server.url}/_sim/outbox")
    assert page.headers["content-type"].startswith("text/html")
    assert "Confirm &lt;your&gt; subscription" in page.text
    assert 'href="http://127.0.0.1:8080/confirm/abc.def?x=1&amp;y=2"' in page.text
    # the rest of the admin API still needs the key
    assert httpx.get(f"{brevo._server.url}/_sim/account").status_code == 401
