"""The daemon fuzzed from its own description (``GET /openapi.json``) with schemathesis, and with
Hypothesis-built deliveries in both providers' real shapes carrying hostile values.

The app runs on a real uvicorn server on loopback, over a real master base (SQLite, or PostgreSQL
with ``SYNCD_TEST_DATABASE_URL``). schemathesis generates requests from the served document, valid
and invalid (its positive and negative modes), with the real webhook secrets, bearer token and page
tokens in part of them so that they reach the handlers, and generated ones in the rest. Every
answer must:

- never be a 5xx;
- conform to the description: status code, content type, documented headers, body schema;
- leave the master base as it was when it refuses (a non-2xx answer): no inbox row, consent,
  membership, contact or confirmation token appears or goes; a 2xx delivery adds one inbox row
  (none for a duplicate);

and after the run every delivery answered 2xx must come to an end in the inbox (applied or ignored,
once every retry was due).

Budget: about ``SYNCD_FUZZ_EXAMPLES`` requests in all (default 300, seconds per database), from a fixed
seed (``SYNCD_FUZZ_SEED``); ``SYNCD_FUZZ_STRICT=1`` holds KNOWN_OPEN's inputs to every check too,
and ``SYNCD_FUZZ_FAILURES=FILE`` appends every failing request (not only the first 20) to FILE.
A long run by hand (prints the requests sent and the answers by status code)::

    SYNCD_FUZZ_EXAMPLES=5600 .venv/bin/pytest -n 0 -p no:cacheprovider -s tests/web/test_fuzz.py
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fuzzing import (
    AUTH,
    SECRETS,
    Outbox,
    Run,
    brevo_delivery,
    each_request_from_its_own_address,
    fuzz_config,
    mailchimp_delivery,
    seed,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from schemathesis import GenerationMode

from connectors.simulators.harness import ThreadedServer
from syncd import doi, inbox
from syncd.models import utcnow
from syncd.web import openapi
from syncd.web.app import create_app

BUDGET = int(os.environ.get("SYNCD_FUZZ_EXAMPLES", "300"))
SEED = int(os.environ.get("SYNCD_FUZZ_SEED", "15"))

# Classes of input (fuzzing.input_classes) that still fail in code this branch does not own
# (issue 15, defects 1 and 3). Such a request is sent and checked like any other, but its failure
# is counted, not raised. Empty this as the intake fixes land.
# Input classes whose failures are counted rather than failing the run, each with its reason: none
# is open (NUL, lone surrogates and deep JSON are refused with a 400 or cleaned and applied).
KNOWN_OPEN: dict[str, str] = {}
TOLERATED = () if os.environ.get("SYNCD_FUZZ_STRICT") == "1" else tuple(KNOWN_OPEN)

# Shares of the budget: the webhooks and the state-changing pages take most of it.
WEIGHTS = {
    ("/hooks/brevo/{secret}", "post"): 7,
    ("/hooks/mailchimp/{secret}", "post"): 5,
    ("/confirm/{token}", "post"): 2,
    ("/confirm/{token}/renew", "post"): 2,
    ("/unsubscribe/{token}", "post"): 2,
    ("/prefs/{token}", "post"): 3,
    "brevo payloads": 6,
    "mailchimp payloads": 5,
}
OPERATIONS = [(path, method) for path, item in openapi.document()["paths"].items() for method in item]
TOTALS: Counter[str] = Counter()


def examples_for(key: Any) -> int:
    total = sum(WEIGHTS.values()) + len(OPERATIONS) + 2 - len(WEIGHTS)
    return max(2, round(BUDGET * WEIGHTS.get(key, 1) / total))


def explore(strategy: st.SearchStrategy, examples: int, send: Any) -> None:
    """``examples`` draws from ``strategy``, each sent as it comes; no shrinking (nothing raises)."""

    @hypothesis_seed(SEED)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(drawn=strategy)
    def run(drawn: Any) -> None:
        send(drawn)

    run()


@pytest.fixture(scope="module", autouse=True)
def _print_totals() -> Iterator[None]:
    yield
    if TOTALS:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(TOTALS.items()))
        print(f"\nfuzz total (budget {BUDGET}, seed {SEED}): {sum(TOTALS.values())} requests; {codes}")


@pytest.fixture
def live(engine):
    config = fuzz_config()
    tokens = seed(engine, config)
    app = each_request_from_its_own_address(create_app(config, engine, send=Outbox()))
    with ThreadedServer(app) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        yield schema, Run(engine, server.url, TOLERATED), tokens, config


def finish(run: Run, label: str, config: Any) -> None:
    # Every retry made due in turn: an event waiting for a later delivery settles (inbox back-off).
    for attempt in range(inbox.MAX_ATTEMPTS):
        inbox.drain(run.engine, config, now=utcnow() + (attempt + 1) * inbox.BACKOFF_CAP)
    failures = run.failures + run.unapplied()
    TOTALS.update(run.statuses)
    print("\n" + run.report(label))
    if failures and os.environ.get("SYNCD_FUZZ_FAILURES"):
        with open(os.environ["SYNCD_FUZZ_FAILURES"], "a", encoding="utf-8") as out:
            out.writelines(f"[{label}] {failure}\n" for failure in failures)
    assert not failures, f"{len(failures)} failing requests:\n" + "\n".join(failures[:20])


def cases(op: Any, tokens: dict[str, list[str]], config: Any) -> st.SearchStrategy:
    """Valid and invalid cases; the real secrets and tokens in part of them, generated ones in the rest."""
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    options: list[st.SearchStrategy] = [op.as_strategy(mode) for mode in modes]
    provider = op.path.split("/")[2] if op.path.startswith("/hooks/") else None
    for mode in modes:
        if provider:
            secret = {"secret": SECRETS[provider]}
            options.append(op.as_strategy(mode, path_parameters=secret))
            headers = AUTH if provider == "brevo" else None
            options += [op.as_strategy(mode, path_parameters=secret, headers=headers)] * 2
        for prefix, real in tokens.items():
            if op.path.startswith(prefix):
                with_token = st.sampled_from(real).flatmap(
                    lambda t, m=mode: op.as_strategy(m, path_parameters={"token": t})
                )
                options += [with_token, with_token]
                if prefix == "/prefs/" and op.method.lower() == "post":
                    options.append(with_token.map(lambda case: with_csrf(case, config)))
    return st.one_of(options)


def with_csrf(case: Any, config: Any) -> Any:
    """A preference form carrying the page's valid CSRF value, so that saving is reached."""
    parts = doi.unsign(config, "prefs", case.path_parameters["token"])
    if isinstance(case.body, dict) and parts:
        case.body = {**case.body, "csrf": doi.sign(config, "csrf", parts[0], int(utcnow().timestamp()))}
    return case


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_generated_requests_get_described_answers_and_refusals_store_nothing(live, path, method):
    schema, run, tokens, config = live
    op = schema[path][method.upper()]
    explore(cases(op, tokens, config), examples_for((path, method)), run.send)
    finish(run, f"{method.upper()} {path}", config)


def test_brevo_deliveries_with_hostile_values_are_refused_or_stored_and_applied(live):
    schema, run, _, config = live
    op = schema["/hooks/brevo/{secret}"]["POST"]
    headers = {**AUTH, "Content-Type": "application/json"}
    explore(
        brevo_delivery(),
        examples_for("brevo payloads"),
        lambda body: run.post(op, {"secret": SECRETS["brevo"]}, body, headers),
    )
    finish(run, "Brevo payloads", config)


def test_mailchimp_deliveries_with_hostile_values_are_refused_or_stored_and_applied(live):
    schema, run, _, config = live
    op = schema["/hooks/mailchimp/{secret}"]["POST"]
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    explore(
        mailchimp_delivery(),
        examples_for("mailchimp payloads"),
        lambda body: run.post(op, {"secret": SECRETS["mailchimp"]}, body, headers),
    )
    finish(run, "Mailchimp payloads", config)
