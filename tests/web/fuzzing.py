"""Machinery of the fuzz tests (test_fuzz.py): the app's config and seeded links, the checks applied
to every answer, and Hypothesis strategies for both providers' real webhook shapes."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests
import sqlalchemy as sa
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlmodel import Session, select
from webfixtures import AUDIENCE, add_contact, make_config

from connectors.brevo.vocabulary import ATTRIBUTES as BREVO_ATTRIBUTES
from connectors.brevo.webhooks import EVENT_KINDS as BREVO_EVENTS
from connectors.mailchimp.vocabulary import MERGE_FIELDS
from syncd import doi
from syncd.membership import join_list
from syncd.models import Consent, Contact, DoiToken, InboxEvent, Membership, utcnow

SECRETS = {  # long and random-looking, as `syncd check` asks of real ones
    "brevo": "bR3v0-5ecret-Qm9xT2p4c1ZkN2hKZ3lXcUxlRjhh",
    "brevo_token": "bR3v0-t0ken-Nlh1eWdGb0lUaXJ3eDJZc2tQMzdQ",
    "mailchimp": "mA1lch1mp-5ecret-b3hKd1V6RE1xYk5aMGVnTGk",
    "doi": "d0i-s1gning-5ecret-U0tqYjJ5S3pXVlBhUm9Oem",
}
AUTH = {"Authorization": f"Bearer {SECRETS['brevo_token']}"}
PEOPLE = ["ana@example.fr", "bob@example.fr", "chloe@example.fr", "dan@example.fr"]
WATCHED = (InboxEvent, Consent, Membership, Contact, DoiToken)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def fuzz_config():
    return make_config(
        providers={
            "brevo": {"webhook_secret": SECRETS["brevo"], "webhook_token": SECRETS["brevo_token"]},
            "mailchimp": {"webhook_secret": SECRETS["mailchimp"]},
        },
        double_opt_in={"secret": SECRETS["doi"], "public_url": "http://syncd.test"},
    )


class Outbox(list):
    """The mail transport of the pages' renewals: keeps the mails."""

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


# --- the master base --------------------------------------------------------------------------------


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            m.__name__: conn.execute(sa.select(sa.func.count()).select_from(m.__table__)).scalar_one()
            for m in WATCHED
        }


def seed(engine, config) -> dict[str, list[str]]:
    """The people the webhooks name, in every list, and real links: a confirmation ready, one
    expired, a preference and an unsubscribe link. Returns the tokens by page."""
    lists = {"news": "single_opt_in", "offers": "single_opt_in", "club": "double_opt_in"}
    ids = [add_contact(engine, email, lists, first_name="Fuzz") for email in PEOPLE[:2]]
    nine_days_ago = utcnow() - timedelta(days=9)
    expired, ready = Outbox(), Outbox()
    for email, at, outbox in ((PEOPLE[2], nine_days_ago, expired), (PEOPLE[3], utcnow(), ready)):
        with Session(engine) as s:
            contact = Contact(email=email, first_name="Fuzz")
            s.add(contact)
            s.flush()
            for name in lists:
                join_list(s, contact, name, config.list(name), consent="single_opt_in", source="form", at=at)
            s.commit()
        doi.send_pending(engine, config, outbox, now=at + timedelta(seconds=1))
    with Session(engine) as s:
        contact = s.get(Contact, ids[0])
        prefs = doi.prefs_token(config, contact)
        unsub = doi.unsubscribe_token(config, contact, "news")
    confirm = [mail_token(m) for m in (*ready, *expired)]
    return {"/confirm/": confirm, "/unsubscribe/": [unsub], "/prefs/": [prefs]}


def mail_token(mail: doi.Mail) -> str:
    return mail.text.split("http://syncd.test/confirm/", 1)[1].split()[0]


def input_classes(body: bytes | str | None) -> set[str]:
    """The kinds of hostile text a request body holds (the names KNOWN_OPEN uses)."""
    if not body:
        return set()
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    found = set()
    if b"\x00" in raw or b"\\u0000" in raw or b"%00" in raw:
        found.add("nul")
    lowered = raw.lower()
    if (
        b"\xed\xa0" in raw
        or b"\xed\xb0" in raw
        or any(f"\\u{p}".encode() in lowered for p in "d8 d9 da db dc dd de df".split())
    ):
        found.add("surrogate")
    if raw.count(b"[") + raw.count(b"{") > 500:
        found.add("deep-json")
    return found


# --- sending and checking ----------------------------------------------------------------------------


class Run:
    """Sends requests to the live app and checks each answer; keeps the tallies and the failures.

    ``known``: classes of input (see ``input_classes``) whose failures are counted, not failed."""

    def __init__(self, engine, base_url: str, known: Collection[str]):
        self.engine, self.base_url, self.known_classes = engine, base_url, set(known)
        self.session = requests.Session()
        self.statuses: Counter[str] = Counter()
        self.unsendable = 0
        self.known: Counter[str] = Counter()
        self.failures: list[str] = []

    def send(self, case: Any) -> None:
        """A schemathesis case, as generated."""
        before = counts(self.engine)
        try:
            response = case.call(base_url=self.base_url, session=self.session, timeout=30)
        except requests.exceptions.ConnectionError as exc:
            self.no_answer(exc.request)
            return
        except (requests.exceptions.InvalidHeader, ValueError, UnicodeError):
            self.unsendable += 1  # the HTTP client refuses to send it (a NUL or newline in a header)
            return
        self.check(case, response, before)

    def post(self, operation: Any, path_parameters: dict, body: bytes, headers: dict[str, str]) -> None:
        """A body built byte by byte (the provider payload strategies), checked as a case of ``operation``."""
        case = operation.Case(path_parameters=path_parameters)
        before = counts(self.engine)
        url = self.base_url + operation.path.format(**path_parameters)
        try:
            response = self.session.post(url, data=body, headers=headers, timeout=30)
        except requests.exceptions.ConnectionError as exc:
            self.no_answer(exc.request)
            return
        self.check(case, response, before)

    def no_answer(self, request: Any) -> None:
        """The server dropped the connection without an answer: as bad as a 5xx."""
        self.statuses["no answer"] += 1
        body = getattr(request, "body", None)
        if not self.tolerated(body):
            shown = body if isinstance(body, str) else (body or b"").decode("utf-8", "backslashreplace")
            where = f"{getattr(request, 'method', '?')} {getattr(request, 'path_url', '?')[:100]}"
            self.failures.append(f"{where} -> connection closed without an answer\n    body: {shown[:300]!r}")

    def check(self, case: Any, response: requests.Response, before: dict[str, int]) -> None:
        self.statuses[str(response.status_code)] += 1
        problems = []
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as exc:
            problems.append("; ".join(sorted({f.title for f in exc.exceptions})))
        after = counts(self.engine)
        ok = 200 <= response.status_code < 300
        if not ok and after != before:
            problems.append(f"refused with {response.status_code}, yet the base changed: {before} -> {after}")
        if ok and case.operation.path.startswith("/hooks/") and case.method == "POST":
            outcome = response.json()["status"]
            added = after["InboxEvent"] - before["InboxEvent"]
            if added != (0 if outcome == "duplicate" else 1):
                problems.append(f"answered {outcome!r} with {added} inbox rows added")
        if problems:
            self.record(problems, response)

    def tolerated(self, body: Any) -> bool:
        classes = input_classes(body) & self.known_classes
        self.known.update(classes)
        return bool(classes)

    def record(self, problems: list[str], response: requests.Response) -> None:
        body = response.request.body
        if self.tolerated(body):
            return
        shown = body if isinstance(body, str) else (body or b"").decode("utf-8", "backslashreplace")
        self.failures.append(
            f"{response.request.method} {response.request.path_url[:100]} -> {response.status_code} "
            f"{response.headers.get('content-type')}: {' | '.join(problems)}\n"
            f"    body: {shown[:300]!r}\n    answer: {response.text[:200]!r}"
        )

    def unapplied(self) -> list[str]:
        """Deliveries answered 2xx that the inbox job did not bring to an end (applied or ignored)
        once every retry was due: a row still new, or dead."""
        out = []
        with Session(self.engine) as s:
            for row in s.exec(select(InboxEvent).where(InboxEvent.status.in_(("new", "dead")))).all():  # type: ignore[attr-defined]
                classes = input_classes(row.payload) & self.known_classes
                if classes:
                    self.known.update(f"{c} (unapplied)" for c in classes)
                    continue
                out.append(
                    f"inbox row {row.id} ({row.provider}) not applied: {row.error}\n"
                    f"    payload: {row.payload[:300]!r}"
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


# --- the providers' payloads, with hostile values -------------------------------------------------

SPECIMENS = [
    "",
    " ",
    "\x00",
    "Ana\x00",
    "\ud800",
    "Jos\udce9",
    "\u202egnp.exe",
    "Ana\r\nBcc: x",
    "ﬃ",
    "ǅ",
    "😀",
]


def hostile_text() -> st.SearchStrategy[str]:
    """Free text: any text (NUL, lone surrogates and control characters included) and known
    troublemakers. Very long values come from ``huge_text``, once per delivery at most."""
    return st.one_of(
        st.text(max_size=30),
        st.text(max_size=30),
        st.text(st.characters(codec=None), max_size=12),
        st.sampled_from(SPECIMENS),
    )


def huge_text() -> st.SearchStrategy[str]:
    return st.integers(min_value=1_000, max_value=200_000).map(lambda n: "é" * n)


def mostly(values: st.SearchStrategy, junk: st.SearchStrategy | None = None) -> st.SearchStrategy:
    """A real value nine times in ten, else junk (by default: a value of any JSON type)."""
    if junk is None:
        junk = st.one_of(hostile_text(), st.integers(), st.floats(), st.none(), st.just([]), st.just({}))
    return st.sampled_from(range(10)).flatmap(lambda i: junk if i == 0 else values)


def brevo_event() -> st.SearchStrategy[dict]:
    """One event of https://developers.brevo.com/docs/marketing-webhooks, as the simulator sends it."""
    stamp = st.integers(min_value=1_500_000_000, max_value=2_000_000_000)
    return st.fixed_dictionaries(
        {
            "event": mostly(st.sampled_from(sorted(BREVO_EVENTS))),
            "email": mostly(st.sampled_from(PEOPLE)),
            "ts_epoch": mostly(stamp.map(lambda s: s * 1000)),
        },
        optional={
            "id": mostly(st.integers(min_value=1, max_value=10**6)),
            "ts_event": mostly(stamp),
            "date_event": stamp.map(lambda s: datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%d %H:%M:%S")),
            "list_id": mostly(st.lists(st.sampled_from([12, 13, 99]), max_size=3)),
            "reason": hostile_text(),
            "message-id": hostile_text(),
            "tag": hostile_text(),
            "camp_id": st.integers(min_value=1, max_value=99),
            "attributes": mostly(
                st.fixed_dictionaries(
                    {},
                    optional={
                        **{name: hostile_text() for name in BREVO_ATTRIBUTES.values()},
                        "EMAIL": mostly(st.sampled_from(PEOPLE)),
                    },
                )
            ),
        },
    )


def brevo_delivery() -> st.SearchStrategy[bytes]:
    """A Brevo body: one event or a batch, JSON-escaped or raw UTF-8, or nested beyond reason."""
    events = st.one_of(brevo_event(), st.lists(brevo_event(), min_size=1, max_size=4))

    def encode(value: Any, ascii_only: bool) -> bytes:
        return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")

    deep = st.tuples(st.sampled_from(PEOPLE), st.integers(min_value=100, max_value=5_000)).map(
        lambda p: (
            f'{{"event":"contact_updated","email":"{p[0]}","ts_epoch":1700000000000,'
            f'"attributes":{{"FIRSTNAME":{"[" * p[1]}{"]" * p[1]}}}}}'
        ).encode()
    )
    huge = st.builds(lambda e, t: {**e, "attributes": {"FIRSTNAME": t}}, brevo_event(), huge_text())
    return st.one_of(
        *[st.builds(encode, events, st.booleans())] * 8, st.builds(encode, huge, st.booleans()), deep
    )


def mailchimp_delivery() -> st.SearchStrategy[bytes]:
    """A form body of https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/,
    percent-encoded as Mailchimp sends it, or with raw bytes."""
    email = mostly(st.sampled_from(PEOPLE), hostile_text())
    by_type = {  # the fields each type always has
        "subscribe": {"data[email]": email},
        "unsubscribe": {
            "data[email]": email,
            "data[action]": mostly(st.sampled_from(["unsub", "delete"]), hostile_text()),
            "data[reason]": mostly(st.sampled_from(["manual", "abuse"]), hostile_text()),
        },
        "profile": {"data[email]": email},
        "upemail": {"data[old_email]": email, "data[new_email]": mostly(st.emails(), hostile_text())},
        "cleaned": {"data[email]": email, "data[reason]": mostly(st.sampled_from(["hard", "abuse"]))},
        "campaign": {"data[subject]": hostile_text()},
    }
    fired_at = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(
        lambda d: d.strftime("%Y-%m-%d %H:%M:%S")
    )
    optional = {
        "data[list_id]": mostly(st.just(AUDIENCE), hostile_text()),
        "data[id]": hostile_text(),
        "data[ip_opt]": hostile_text(),
        **{f"data[merges][{tag}]": hostile_text() for tag in MERGE_FIELDS.values()},
    }
    forms = st.sampled_from(sorted(by_type)).flatmap(
        lambda name: st.fixed_dictionaries(
            {
                "type": mostly(st.just(name), hostile_text()),
                "fired_at": mostly(fired_at, hostile_text()),
                **by_type[name],
            },
            optional=optional,
        )
    )
    huge = st.builds(lambda f, t: {**f, "data[merges][FNAME]": t}, forms, huge_text())
    return st.builds(form_encode, mostly(forms, huge), mostly(st.just(True), st.just(False)))


def form_encode(fields: dict[str, Any], percent: bool) -> bytes:
    def one(value: Any) -> bytes:
        raw = str(value).encode("utf-8", "surrogatepass")
        return quote(raw, safe="").encode() if percent else raw.replace(b"&", b"%26").replace(b"=", b"%3D")

    return b"&".join(one(k) + b"=" + one(v) for k, v in fields.items())
