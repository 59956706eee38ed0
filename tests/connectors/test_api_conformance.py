"""The simulators and the connectors' requests against the providers' published API descriptions.

Every test of this suite is checked (conftest.py); the tests here show that the check bites
(a simulator answer or an SDK request outside the description is reported) and protect the
gaps it found.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import mailchimp_marketing
import pytest
import sib_api_v3_sdk as sib
from simkit import BrevoSimulator, MailchimpSimulator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connectors.brevo import BrevoConnector
from connectors.mailchimp import MailchimpConnector
from connectors.simulators.harness import wrapping_served_apps
from connectors.simulators.mailchimp import subscriber_hash


def mailchimp_auth(sim: MailchimpSimulator) -> tuple[str, str]:
    return ("anyone", sim.api_key)


def brevo_sdk(sim: BrevoSimulator) -> sib.ContactsApi:
    cfg = sib.Configuration()
    cfg.host = sim.api_url
    cfg.api_key["api-key"] = sim.api_key
    return sib.ContactsApi(sib.ApiClient(cfg))


@pytest.fixture
def bodies() -> Iterator[list[tuple[str, str, bytes]]]:
    """(method, path, body) of every request the simulators started in the test receive."""
    seen: list[tuple[str, str, bytes]] = []

    def capture(app: Any) -> Any:
        async def recorded(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await app(scope, receive, send)
            body, more = b"", True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            seen.append((scope["method"], scope["path"], body))
            sent = False

            async def replay() -> dict:
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await app(scope, replay, send)

        recorded.provider = getattr(app, "provider", None)  # type: ignore[attr-defined]
        return recorded

    with wrapping_served_apps(capture):
        yield seen


# --- the check bites --------------------------------------------------------------------------


class MailchimpSimulatorWithEmptyTimestamps(MailchimpSimulator):
    """The simulator as it was: unknown opt-in times answered as ""."""

    def _member_json(self, a: Any, m: Any, brief: bool = False) -> dict:
        body = super()._member_json(a, m, brief)
        if not brief:
            body.setdefault("timestamp_signup", "")
            body.setdefault("timestamp_opt", "")
        return body


def test_an_answer_with_an_empty_date_time_is_reported(conformance) -> None:
    before = len(conformance.mismatches)
    with MailchimpSimulatorWithEmptyTimestamps() as sim:
        target = sim.create_target("old")
        sim.seed(target, [{"email": "ana@example.fr"}])
        list(MailchimpConnector(sim.api_key, sim.api_url, timeout=5).pull(target))
    found = conformance.take(before)
    assert found and all("GET /3.0/lists/" in f for f in found)
    assert "'' is not a 'date-time'" in found[0]


class BrevoSimulatorWithoutListIds(BrevoSimulator):
    async def get_contact(self, request: Request) -> Response:
        answer = await super().get_contact(request)
        body = httpx.Response(200, content=answer.body).json()
        body.pop("listIds", None)
        return JSONResponse(body, status_code=answer.status_code)


def test_an_answer_missing_a_required_field_is_reported(conformance) -> None:
    before = len(conformance.mismatches)
    with BrevoSimulatorWithoutListIds() as sim:
        sim.seed(sim.create_target("l"), [{"email": "ana@example.fr"}])
        r = httpx.get(f"{sim.api_url}/contacts/ana@example.fr", headers={"api-key": sim.api_key})
        assert r.status_code == 200
    found = conformance.take(before)
    assert len(found) == 1 and "'listIds' is a required property" in found[0]


def test_a_body_the_description_does_not_take_is_reported_and_the_connector_sends_none(
    conformance, bodies
) -> None:
    with MailchimpSimulator() as sim:
        target = sim.create_target("erase")
        sim.seed(target, [{"email": "gone@example.fr"}, {"email": "also@example.fr"}])
        assert MailchimpConnector(sim.api_key, sim.api_url, timeout=5).erase(target, "gone@example.fr")
        assert bodies[-1][1].endswith("/actions/delete-permanent") and bodies[-1][2] == b""
        before = len(conformance.mismatches)
        # The SDK's own client sends json.dumps(None) for an action without a body.
        stock = mailchimp_marketing.Client()
        stock.set_config({"api_key": sim.api_key, "server": "us1", "timeout": 5})
        stock.api_client.host = sim.api_url
        stock.lists.delete_list_member_permanent(target.list_id, subscriber_hash("also@example.fr"))
        assert bodies[-1][2] == b"null"
    found = conformance.take(before)
    assert len(found) == 1 and "an official SDK sent a request that does not conform" in found[0]
    assert "a body (b'null') on an operation that takes none" in found[0]


def test_every_checked_exchange_is_counted_per_provider(conformance) -> None:
    with MailchimpSimulator() as mc, BrevoSimulator() as brevo:
        conformance.settle()
        counts = {p: (t.requests, t.responses) for p, t in conformance.tallies.items()}
        for sim, connector in ((mc, MailchimpConnector), (brevo, BrevoConnector)):
            target = sim.create_target("count")
            sim.seed(target, [{"email": "ana@example.fr"}])
            list(connector(sim.api_key, sim.api_url, timeout=5).pull(target))
    conformance.settle()
    # A new connector's first read asks the provider's time first (its cursor), then reads a page
    # (Mailchimp: then the audience's archived members, listed apart).
    for provider, exchanges in (("mailchimp", 3), ("brevo", 2)):
        requests, responses = counts.get(provider, (0, 0))
        assert conformance.tallies[provider].requests == requests + exchanges
        assert conformance.tallies[provider].responses == responses + exchanges


# --- gaps the check found ----------------------------------------------------------------------


def test_a_mailchimp_member_without_opt_in_times_is_served_without_them() -> None:
    with MailchimpSimulator() as sim:
        target = sim.create_target("times")
        r = httpx.post(
            f"{sim.api_url}/lists/{target.list_id}/members",
            json={"email_address": "ana@example.fr", "status": "transactional"},
            auth=mailchimp_auth(sim),
        )
        assert r.status_code == 200
        assert "timestamp_signup" not in r.json() and "timestamp_opt" not in r.json()
        sim.seed(target, [{"email": "bob@example.fr"}])
        bob = httpx.get(
            f"{sim.api_url}/lists/{target.list_id}/members/{subscriber_hash('bob@example.fr')}",
            auth=mailchimp_auth(sim),
        ).json()
    assert "timestamp_signup" not in bob
    assert datetime.fromisoformat(bob["timestamp_opt"]).tzinfo is not None


def test_brevo_lists_the_account_s_lists_in_pages_through_the_sdk() -> None:
    with BrevoSimulator() as sim:
        targets = [sim.create_target(f"list {i}") for i in range(2)]
        targets.append(BrevoConnector(sim.api_key, sim.api_url, timeout=5).create_list("list 2"))
        sim.seed(targets[0], [{"email": "ana@example.fr"}, {"email": "bob@example.fr", "status": "blocked"}])
        api = brevo_sdk(sim)
        first = api.get_lists(limit=2, offset=0, sort="asc")
        rest = api.get_lists(limit=2, offset=2, sort="asc")
        newest = api.get_lists(limit=1)
        too_many = httpx.get(f"{sim.api_url}/contacts/lists?limit=51", headers={"api-key": sim.api_key})
    assert first.count == rest.count == 3
    assert [x["id"] for x in first.lists + rest.lists] == [int(t.list_id) for t in targets]
    assert first.lists[0]["name"] == "list 0" and first.lists[0]["folderId"] == 1
    assert (first.lists[0]["totalSubscribers"], first.lists[0]["totalBlacklisted"]) == (1, 1)
    assert [x["id"] for x in newest.lists] == [int(targets[-1].list_id)]
    assert too_many.status_code == 400 and too_many.json()["code"] == "out_of_range"


@pytest.mark.parametrize(
    "path", ["/contacts?sort=sideways", "/contacts/lists?sort=up", "/contacts/lists/{list}/contacts?sort=x"]
)
def test_brevo_refuses_a_sort_order_the_description_does_not_have(path: str) -> None:
    with BrevoSimulator() as sim:
        target = sim.create_target("sorted")
        r = httpx.get(sim.api_url + path.format(list=target.list_id), headers={"api-key": sim.api_key})
    assert r.status_code == 400 and r.json()["code"] == "invalid_parameter"
