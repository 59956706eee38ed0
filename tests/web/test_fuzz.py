"""The daemon fuzzed from its own description (``GET /openapi.json``) with schemathesis.

The app runs on a real uvicorn server on loopback, over a real master base (SQLite, or PostgreSQL
with ``SYNCD_TEST_DATABASE_URL``). Requests are generated from the served document, valid and
invalid (schemathesis' positive and negative modes), with the real webhook secrets, bearer token
and page tokens in part of them so that they reach the handlers, and with generated ones in the
rest. Each answer must:

- never be a 5xx;
- conform to the description: status code, content type, documented headers, body schema;
- leave the master base as it was when it refuses (a non-2xx answer): no inbox row, consent,
  membership, contact or confirmation token appears or disappears;

and after the run every stored delivery must apply (the inbox job finds no row it cannot apply).

Budget: ``SYNCD_FUZZ_EXAMPLES`` generated requests in all (default 400, a few seconds), with a fixed
seed (``SYNCD_FUZZ_SEED``). A long run by hand::

    SYNCD_FUZZ_EXAMPLES=5000 .venv/bin/pytest -p no:cacheprovider -s tests/web/test_fuzz.py

prints the requests sent and the answers by status code.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlmodel import Session, select
from webfixtures import add_contact, make_config

from connectors.simulators.server import ThreadedServer
from syncd import doi, inbox
from syncd.membership import join_list
from syncd.models import Consent, Contact, DoiToken, InboxEvent, Membership, utcnow
from syncd.web import openapi
from syncd.web.app import create_app

BUDGET = int(os.environ.get("SYNCD_FUZZ_EXAMPLES", "400"))
SEED = int(os.environ.get("SYNCD_FUZZ_SEED", "15"))

# Classes of input that still fail in code outside this test's reach (issue 15). A request of such a
# class is sent and checked like any other, but its failure is counted, not raised. Empty this as the
# fixes land: the run then holds those inputs to every check.
KNOWN_OPEN: dict[str, str] = {
    "nul": "a NUL in a delivery's text: PostgreSQL refuses it (503 at intake, or stored and never applied)",
    "surrogate": "a lone surrogate (JSON \\ud800) in a delivery: 500 at intake or never applied",
    "deep-json": "JSON nested deeper than the parser's recursion limit: 500 at intake",
}

SECRETS = {  # long and random-looking, as `syncd check` asks of real ones
    "brevo": "bR3v0-5ecret-Qm9xT2p4c1ZkN2hKZ3lXcUxlRjhh",
    "brevo_token": "bR3v0-t0ken-Nlh1eWdGb0lUaXJ3eDJZc2tQMzdQ",
    "mailchimp": "mA1lch1mp-5ecret-b3hKd1V6RE1xYk5aMGVnTGk",
    "doi": "d0i-s1gning-5ecret-U0tqYjJ5S3pXVlBhUm9Oem",
}
AUTH = {"Authorization": f"Bearer {SECRETS['brevo_token']}"}
WATCHED = (InboxEvent, Consent, Membership, Contact, DoiToken)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Share of the budget per operation: the webhooks and the state-changing pages take most of it.
WEIGHTS = {
    ("/hooks/brevo/{secret}", "post"): 8,
    ("/hooks/mailchimp/{secret}", "post"): 6,
    ("/hooks/mailchimp/{secret}", "get"): 1,
    ("/confirm/{token}", "get"): 1,
    ("/confirm/{token}", "post"): 2,
    ("/confirm/{token}/renew", "post"): 2,
    ("/unsubscribe/{token}", "get"): 1,
    ("/unsubscribe/{token}", "post"): 2,
    ("/prefs/{token}", "get"): 1,
    ("/prefs/{token}", "post"): 3,
}
OPERATIONS = [(path, method) for path, item in openapi.document()["paths"].items() for method in item]


def fuzz_config():
    return make_config(
        providers={
            "brevo": {"webhook_secret": SECRETS["brevo"], "webhook_token": SECRETS["brevo_token"]},
            "mailchimp": {"webhook_secret": SECRETS["mailchimp"]},
        },
        double_opt_in={"secret": SECRETS["doi"], "public_url": "http://syncd.test"},
    )


class Outbox(list):
    def __call__(self, mail: doi.Mail) -> str:
        self.append(mail)
        return f"<{len(self)}@fuzz>"


def each_request_from_its_own_address(app: Any) -> Any:
    """Every request from its own client address, as from many hosts: the per-address throttles
    would otherwise answer 429 to the whole run after the first wrong secrets."""
    numbers = itertools.count(1)

    async def wrapped(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            n = next(numbers)
            scope = {**scope, "client": (f"2001:db8::{n >> 16:x}:{n & 0xFFFF:x}", 40000)}
        await app(scope, receive, send)

    return wrapped


# --- the master base's state ----------------------------------------------------------------------


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            m.__name__: conn.execute(sa.select(sa.func.count()).select_from(m.__table__)).scalar_one()
            for m in WATCHED
        }


def seed_pages(engine, config) -> dict[str, list[str]]:
    """Contacts with real links: a confirmation ready, one expired, preference and unsubscribe links."""
    ana = add_contact(engine, "ana@example.fr", {"news": "single_opt_in", "offers": "single_opt_in"})
    nine_days_ago = utcnow() - timedelta(days=9)
    expired, ready = Outbox(), Outbox()
    for email, at, outbox in (
        ("bob@example.fr", nine_days_ago, expired),
        ("chloe@example.fr", utcnow(), ready),
    ):
        with Session(engine) as s:
            contact = Contact(email=email, first_name="Fuzz")
            s.add(contact)
            s.flush()
            join_list(s, contact, "club", config.list("club"), consent="single_opt_in", source="form", at=at)
            s.commit()
        doi.send_pending(engine, config, outbox, now=at + timedelta(seconds=1))
    assert len(expired) == len(ready) == 1
    with Session(engine) as s:
        contact = s.get(Contact, ana)
        prefs = doi.prefs_token(config, contact)
        unsub = doi.unsubscribe_token(config, contact, "news")
    confirm = [mail_token(m) for m in (*ready, *expired)]
    return {"/confirm/": confirm, "/unsubscribe/": [unsub], "/prefs/": [prefs]}


def mail_token(mail: doi.Mail) -> str:
    return mail.text.split("http://syncd.test/confirm/", 1)[1].split()[0]


# --- classes of input ---------------------------------------------------------------------------------


def input_classes(body: bytes | str | None) -> set[str]:
    """The KNOWN_OPEN classes a request body belongs to."""
    if not body:
        return set()
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    found = set()
    if b"\x00" in raw or b"\\u0000" in raw or b"%00" in raw:
        found.add("nul")
    if (
        b"\xed\xa0" in raw
        or b"\xed\xb0" in raw
        or any(f"\\u{p}".encode() in raw.lower() for p in ("d8", "d9", "da", "db", "dc", "dd", "de", "df"))
    ):
        found.add("surrogate")
    if raw.count(b"[") + raw.count(b"{") > 500:
        found.add("deep-json")
    return found


# --- the run ---------------------------------------------------------------------------------------


class Run:
    """Sends cases to the live app, checks each answer, keeps the tallies and the failures."""

    def __init__(self, engine, base_url: str):
        self.engine, self.base_url = engine, base_url
        self.session = requests.Session()
        self.statuses: Counter[str] = Counter()
        self.unsendable = 0
        self.known: Counter[str] = Counter()
        self.failures: list[str] = []

    def send(self, case: schemathesis.Case) -> requests.Response | None:
        before = counts(self.engine)
        try:
            response = case.call(base_url=self.base_url, session=self.session, timeout=30)
        except (requests.exceptions.InvalidHeader, ValueError, UnicodeError):
            self.unsendable += 1  # the HTTP client refuses to send it (a NUL or newline in a header)
            return None
        classes = input_classes(response.request.body) & set(KNOWN_OPEN)
        self.statuses[str(response.status_code)] += 1
        problems = []
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as exc:
            problems.append("; ".join(sorted({f.title for f in exc.exceptions})))
        after = counts(self.engine)
        if not 200 <= response.status_code < 300 and after != before:
            problems.append(f"refused with {response.status_code}, yet the base changed: {before} -> {after}")
        if (
            200 <= response.status_code < 300
            and case.operation.path.startswith("/hooks/")
            and case.method == "POST"
        ):
            outcome = response.json()["status"]
            added = after["InboxEvent"] - before["InboxEvent"]
            if added != (0 if outcome == "duplicate" else 1):
                problems.append(f"answered {outcome!r} with {added} inbox rows added")
        if problems:
            self.record(problems, case, response, classes)
        return response

    def record(self, problems: list[str], case: Any, response: Any, classes: set[str]) -> None:
        if classes:
            self.known.update(classes)
            return
        body = response.request.body
        shown = (body if isinstance(body, str) else (body or b"").decode("utf-8", "backslashreplace"))[:300]
        self.failures.append(
            f"{case.method} {response.request.path_url[:120]} -> {response.status_code} "
            f"{response.headers.get('content-type')}: {' | '.join(problems)}\n"
            f"    body: {shown!r}\n    answer: {response.text[:200]!r}"
        )

    def explore(self, strategy: st.SearchStrategy, examples: int) -> None:
        @seed(SEED)
        @settings(
            max_examples=examples,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: schemathesis.Case) -> None:
            self.send(case)

        run()

    def unapplied(self) -> list[str]:
        """Deliveries answered 2xx that the inbox job cannot apply."""
        out = []
        with Session(self.engine) as s:
            for row in s.exec(select(InboxEvent).where(InboxEvent.error.is_not(None))).all():  # type: ignore[union-attr]
                if input_classes(row.payload) & set(KNOWN_OPEN):
                    self.known["unapplied"] += 1
                    continue
                out.append(
                    f"inbox row {row.id} ({row.provider}): {row.error}\n    payload: {row.payload[:300]!r}"
                )
        return out

    def report(self, label: str) -> str:
        sent = sum(self.statuses.values())
        by_status = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        known = ", ".join(f"{k}: {n}" for k, n in sorted(self.known.items())) or "none"
        return (
            f"fuzz {label}: {sent} requests ({by_status}); not sendable {self.unsendable}; "
            f"known open {known}; failures {len(self.failures)}"
        )


TOTALS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _print_totals() -> Iterator[None]:
    yield
    if TOTALS:
        sent = sum(v for k, v in TOTALS.items() if k.isdigit())
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(TOTALS.items()) if k.isdigit())
        print(f"\nfuzz total (budget {BUDGET}, seed {SEED}): {sent} requests; by status {codes}")


@pytest.fixture
def live(engine):
    config = fuzz_config()
    tokens = seed_pages(engine, config)
    app = each_request_from_its_own_address(create_app(config, engine, send=Outbox()))
    with ThreadedServer(app) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        yield schema, Run(engine, server.url), tokens, config


def strategies_for(op: Any, path: str, tokens: dict[str, list[str]], config: Any) -> st.SearchStrategy:
    """Valid and invalid cases; the real secrets and tokens in part of them, generated ones in the rest."""
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    options: list[st.SearchStrategy] = [op.as_strategy(mode) for mode in modes]
    provider = path.split("/")[2] if path.startswith("/hooks/") else None
    if provider:
        secret = {"secret": SECRETS[provider]}
        for mode in modes:
            options.append(op.as_strategy(mode, path_parameters=secret))
            if provider == "brevo":
                options += [op.as_strategy(mode, path_parameters=secret, headers=AUTH)] * 2
            else:
                options.append(op.as_strategy(mode, path_parameters=secret))
    for prefix, real in tokens.items():
        if path.startswith(prefix):
            for mode in modes:
                real_token = st.sampled_from(real).flatmap(
                    lambda t, m=mode: op.as_strategy(m, path_parameters={"token": t})
                )
                options += [real_token, real_token]
                if prefix == "/prefs/" and op.method.lower() == "post":
                    options.append(real_token.map(with_csrf(config)))
    return st.one_of(options)


def with_csrf(config: Any) -> Callable[[Any], Any]:
    """A preference form carrying the page's valid CSRF value, so that saving is reached."""

    def add(case: Any) -> Any:
        parts = doi.unsign(config, "prefs", case.path_parameters["token"])
        if isinstance(case.body, dict) and parts:
            case.body = {**case.body, "csrf": doi.sign(config, "csrf", parts[0], int(utcnow().timestamp()))}
        return case

    return add


def examples_for(path: str, method: str) -> int:
    total = sum(WEIGHTS.values()) + (len(OPERATIONS) - len(WEIGHTS))
    return max(2, round(BUDGET * WEIGHTS.get((path, method), 1) / total))


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_no_answer_is_a_5xx_or_undescribed_and_refusals_store_nothing(live, path, method):
    schema, run, tokens, config = live
    op = schema[path][method.upper()]
    run.explore(strategies_for(op, path, tokens, config), examples_for(path, method))
    inbox.drain(run.engine, config)
    failures = run.failures + run.unapplied()
    TOTALS.update(run.statuses)
    print("\n" + run.report(f"{method.upper()} {path}"))
    assert not failures, f"{len(failures)} failing requests:\n" + "\n".join(failures[:20])


# --- the description itself ----------------------------------------------------------------------


def test_the_description_is_valid_openapi_and_served(client):
    served = client.get("/openapi.json")
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    validate(served.json())
    assert served.json() == json.loads(json.dumps(openapi.document()))


def test_every_route_is_described_with_its_methods(client):
    routes = {
        (route.path, method.lower())
        for route in client.app.routes
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert routes == set(OPERATIONS)
