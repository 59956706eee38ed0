"""The daemon's OpenAPI description: valid, served at /openapi.json, and naming every route."""

from __future__ import annotations

import json

from openapi_spec_validator import validate

from syncd.web import openapi


def test_the_description_is_valid_openapi_and_served_as_json(client):
    served = client.get("/openapi.json")
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    validate(served.json())
    assert served.json() == json.loads(json.dumps(openapi.document()))


def test_every_route_of_the_app_is_described_with_its_methods(client):
    routes = {
        (route.path, method.lower())
        for route in client.app.routes
        for method in route.methods or ()
        if method != "HEAD"
    }
    described = {(path, method) for path, item in openapi.document()["paths"].items() for method in item}
    assert routes == described


def test_the_webhook_vocabularies_are_the_connectors(client):
    paths = openapi.document()["paths"]
    brevo = paths["/hooks/brevo/{secret}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(brevo["oneOf"][0]["properties"]["event"]["enum"]) >= {"unsubscribed", "hard_bounce", "spam"}
    mailchimp = paths["/hooks/mailchimp/{secret}"]["post"]["requestBody"]["content"]
    form = mailchimp["application/x-www-form-urlencoded"]["schema"]
    assert set(form["properties"]["type"]["enum"]) == {
        "subscribe",
        "unsubscribe",
        "profile",
        "upemail",
        "cleaned",
        "campaign",
    }
