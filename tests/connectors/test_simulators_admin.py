"""Provider-side actions over the simulators' HTTP API: a user or a test sets an account up the way
a real one is, with the real API where the provider has one and ``/_sim`` where it has none."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import mailchimp_marketing
import pytest
import sib_api_v3_sdk as sib
from mailchimp_marketing.api_client import ApiClientError
from simkit import BrevoSimulator, MailchimpSimulator

from connectors.brevo import BrevoConnector
from connectors.contract import RemoteStatus, Target
from connectors.mailchimp import MailchimpConnector
from connectors.simulators.mailchimp import subscriber_hash


def pulled(connector, target: Target) -> dict[str, RemoteStatus]:
    return {m.email: m.status for page in connector.pull(target) for m in page.members}


# --- Brevo ------------------------------------------------------------------------------------


@pytest.fixture
def brevo() -> Iterator[tuple[BrevoSimulator, httpx.Client, Target, Target]]:
    with BrevoSimulator() as sim, httpx.Client(headers={"api-key": sim.api_key}) as http:
        news, offers = sim.create_target("news"), sim.create_target("offers")
        for target in (news, offers):
            sim.seed(target, [{"email": "ana@example.fr"}, {"email": "bob@example.fr"}])
        yield sim, http, news, offers


def brevo_admin(sim: BrevoSimulator) -> str:
    return sim.api_url.removesuffix("/v3") + "/_sim"


def click_unsubscribe(sim: BrevoSimulator, http: httpx.Client, email: str, target: Target) -> httpx.Response:
    return http.post(f"{brevo_admin(sim)}/contacts/{email}/unsubscribe", json={"listId": int(target.list_id)})


def test_on_a_default_brevo_account_an_unsubscribe_click_blocks_the_address(brevo) -> None:
    sim, http, news, offers = brevo
    assert http.get(f"{brevo_admin(sim)}/account").json() == {"perListUnsubscription": False}
    r = click_unsubscribe(sim, http, "ana@example.fr", news)
    assert r.status_code == 200
    assert r.json()["emailBlacklisted"] is True and r.json()["listUnsubscribed"] == []
    conn = BrevoConnector(sim.api_key, sim.api_url, timeout=5)
    assert pulled(conn, news)["ana@example.fr"] == RemoteStatus.BLOCKED
    assert pulled(conn, offers)["ana@example.fr"] == RemoteStatus.BLOCKED
    assert pulled(conn, news)["bob@example.fr"] == RemoteStatus.SUBSCRIBED


def test_with_per_list_unsubscription_a_click_leaves_only_that_list(brevo) -> None:
    sim, http, news, offers = brevo
    r = http.put(f"{brevo_admin(sim)}/account", json={"perListUnsubscription": True})
    assert r.json() == {"perListUnsubscription": True} and sim.per_list_unsubscription
    r = click_unsubscribe(sim, http, "ana@example.fr", news)
    assert r.json()["emailBlacklisted"] is False and r.json()["listUnsubscribed"] == [int(news.list_id)]
    conn = BrevoConnector(sim.api_key, sim.api_url, timeout=5)
    assert pulled(conn, news)["ana@example.fr"] == RemoteStatus.UNSUBSCRIBED
    assert pulled(conn, offers)["ana@example.fr"] == RemoteStatus.SUBSCRIBED
    assert not sim.is_blocked("ana@example.fr")


def test_the_account_wide_block_is_set_and_lifted_with_the_real_api(brevo) -> None:
    sim, _, news, _ = brevo
    cfg = sib.Configuration()
    cfg.host, cfg.api_key["api-key"] = sim.api_url, sim.api_key
    api = sib.ContactsApi(sib.ApiClient(cfg))
    api.update_contact("bob@example.fr", sib.UpdateContact(email_blacklisted=True))
    assert api.get_contact_info("bob@example.fr").email_blacklisted is True
    conn = BrevoConnector(sim.api_key, sim.api_url, timeout=5)
    assert pulled(conn, news)["bob@example.fr"] == RemoteStatus.BLOCKED
    api.update_contact("bob@example.fr", sib.UpdateContact(email_blacklisted=False))
    assert pulled(conn, news)["bob@example.fr"] == RemoteStatus.SUBSCRIBED


def test_the_brevo_admin_api_checks_its_key_and_its_input(brevo) -> None:
    sim, http, news, _ = brevo
    admin = brevo_admin(sim)
    assert httpx.get(f"{admin}/account", headers={"api-key": "wrong"}).status_code == 401
    assert http.put(f"{admin}/account", json={"perListUnsubscription": "yes"}).status_code == 400
    assert http.post(f"{admin}/contacts/ana@example.fr/unsubscribe", json={}).status_code == 400
    assert http.post(f"{admin}/contacts/ana@example.fr/unsubscribe", json={"listId": 999}).status_code == 404
    assert http.post(f"{admin}/contacts/nobody@example.fr/unsubscribe", json={"listId": 2}).status_code == 404
    assert sim.calls == [], "admin calls are not API calls"


def test_the_unsubscribe_test_hook_still_blocks_and_records_the_list(brevo) -> None:
    sim, _, news, offers = brevo
    sim.unsubscribe("ana@example.fr", news)
    contact = httpx.get(f"{sim.api_url}/contacts/ana@example.fr", headers={"api-key": sim.api_key}).json()
    assert contact["emailBlacklisted"] is True and contact["listUnsubscribed"] == [int(news.list_id)]


# --- Mailchimp --------------------------------------------------------------------------------


@pytest.fixture
def mailchimp() -> Iterator[tuple[MailchimpSimulator, httpx.Client, Target]]:
    with MailchimpSimulator() as sim, httpx.Client(auth=("anyone", sim.api_key)) as http:
        target = sim.create_target("audience")
        sim.seed(target, [{"email": "ana@example.fr"}, {"email": "bob@example.fr"}])
        yield sim, http, target


def act(sim: MailchimpSimulator, http: httpx.Client, target: Target, who: str, action: str, **body):
    base = sim.api_url.removesuffix("/3.0")
    return http.post(f"{base}/_sim/lists/{target.list_id}/members/{who}/{action}", json=body or None)


def test_a_mailchimp_member_unsubscribes_and_signs_up_again(mailchimp) -> None:
    sim, http, target = mailchimp
    conn = MailchimpConnector(sim.api_key, sim.api_url, timeout=5)
    assert act(sim, http, target, "ana@example.fr", "unsubscribe").json()["status"] == "unsubscribed"
    assert pulled(conn, target) == {
        "ana@example.fr": RemoteStatus.UNSUBSCRIBED,
        "bob@example.fr": RemoteStatus.SUBSCRIBED,
    }
    before = sim.members(target)["ana@example.fr"].evidence["timestamp_opt"]
    again = act(sim, http, target, subscriber_hash("ana@example.fr"), "resubscribe", ip="198.51.100.7").json()
    assert again["status"] == "subscribed" and again["ip_opt"] == "198.51.100.7"
    assert again["timestamp_opt"] >= before
    assert pulled(conn, target)["ana@example.fr"] == RemoteStatus.SUBSCRIBED


def test_a_spam_complaint_is_an_unsubscribe_with_its_reason(mailchimp) -> None:
    sim, http, target = mailchimp
    answer = act(sim, http, target, "bob@example.fr", "unsubscribe", reason="abuse").json()
    assert (answer["status"], answer["unsubscribe_reason"]) == ("unsubscribed", "abuse")


def test_a_mailchimp_member_is_cleaned_after_a_hard_bounce(mailchimp) -> None:
    sim, http, target = mailchimp
    assert act(sim, http, target, "bob@example.fr", "clean").json()["status"] == "cleaned"
    conn = MailchimpConnector(sim.api_key, sim.api_url, timeout=5)
    assert pulled(conn, target)["bob@example.fr"] == RemoteStatus.CLEANED


def test_a_mailchimp_member_changes_their_address(mailchimp) -> None:
    sim, http, target = mailchimp
    new = "ana.new@example.fr"
    answer = act(sim, http, target, "ana@example.fr", "change-email", new_email=new).json()
    assert (answer["email_address"], answer["id"]) == (new, subscriber_hash(new))
    old = http.get(f"{sim.api_url}/lists/{target.list_id}/members/{subscriber_hash('ana@example.fr')}")
    assert old.status_code == 404
    assert sorted(sim.members(target)) == ["ana.new@example.fr", "bob@example.fr"]
    taken = act(sim, http, target, "ana.new@example.fr", "change-email", new_email="bob@example.fr")
    assert taken.status_code == 400


def test_the_mailchimp_admin_api_checks_its_key_and_its_input(mailchimp) -> None:
    sim, http, target = mailchimp
    base = sim.api_url.removesuffix("/3.0")
    bad_key = httpx.post(
        f"{base}/_sim/lists/{target.list_id}/members/ana@example.fr/clean", auth=("anyone", "wrong")
    )
    assert bad_key.status_code == 401
    assert act(sim, http, target, "ana@example.fr", "explode").status_code == 400
    assert act(sim, http, target, "nobody@example.fr", "clean").status_code == 404
    not_an_address = act(sim, http, target, "ana@example.fr", "change-email", new_email="not an address")
    assert not_an_address.status_code == 400
    assert sim.calls == [], "admin calls are not API calls"


def test_the_real_api_changes_a_member_s_status_too(mailchimp) -> None:
    sim, _, target = mailchimp
    sdk = mailchimp_marketing.Client()
    sdk.set_config({"api_key": sim.api_key, "server": "us1", "timeout": 5})
    sdk.api_client.host = sim.api_url
    lists, ana = sdk.lists, subscriber_hash("ana@example.fr")
    patched = lists.update_list_member(target.list_id, ana, {"status": "unsubscribed"})
    assert patched["status"] == "unsubscribed"

    def put(status: str) -> dict:
        body = {"email_address": "ana@example.fr", "status_if_new": status, "status": status}
        return lists.set_list_member(target.list_id, ana, body)

    with pytest.raises(ApiClientError) as refused:
        put("subscribed")
    assert "Member In Compliance State" in str(refused.value.text)
    assert put("pending")["status"] == "pending"
    assert lists.get_list_member(target.list_id, ana)["status"] == "pending"
    added = lists.add_list_member(target.list_id, {"email_address": "cy@example.fr", "status": "subscribed"})
    assert added["status"] == "subscribed"
    assert lists.tag_search(target.list_id)["total_items"] == 0
