"""Every request and answer at a simulator's HTTP boundary, checked against the provider's published
API description (the excerpts in ``specs/``) with openapi-core.

``Conformance.wrap(app)`` is an ASGI wrapper around a simulator. It keeps a copy of each request
and answer and checks the pair on a worker thread, beside the traffic: the check adds no delay
to an answer (timing-sensitive tests such as a rate-limit storm still see the storm).
``settle()`` waits for the checks in flight. Each mismatch is kept in ``mismatches``; the contract
suite's conftest settles after each test and fails the test during which a mismatch happened.

Rules, beyond openapi-core's own checks:
- An official SDK's request (the connectors') must conform. A request that does not conform may
  come only from a test's own HTTP client, on purpose, and the simulator must refuse it with a 4xx.
- An operation that declares no request body gets no body (openapi-core ignores one).
- ``/_sim/...`` is the simulators' own admin API, outside the providers' descriptions: not checked.
- An answer the simulator was told to give raw (``fail_next(..., body=...)``, marked with the
  ``x-sim-injected`` header) imitates a gateway, not the API: counted, not checked.
- The descriptions' own faults are repaired in memory, each by one function of ``QUIRKS`` with
  its reason (also listed in specs/README.md). Nothing else is excused.
"""

from __future__ import annotations

import copy
import json
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.paths.finders import APICallPathFinder
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPECS = Path(__file__).parent / "specs"
DESCRIPTIONS = {"brevo": "brevo-v3.excerpt.json", "mailchimp": "mailchimp-3.0.55.excerpt.json"}
# The User-Agent each official SDK sends (sib_api_v3_sdk/api_client.py, mailchimp_marketing/api_client.py).
SDK_AGENTS = ("sendinblue_clientAPI/", "Swagger-Codegen/")
ADMIN_PREFIX = "/_sim/"
INJECTED_HEADER = "x-sim-injected"


# --- the descriptions' quirks, repaired in memory (each one written down in specs/README.md) ------


def brevo_list_batch_branches_overlap(spec: dict) -> None:
    """``POST /contacts/lists/{listId}/contacts/add`` and ``.../remove`` take "emails OR ids OR
    extIds (OR all)" as a ``oneOf`` whose branches require nothing, so every object matches all of
    them and no body can satisfy the ``oneOf``. Each branch is made to require its own key."""
    schemas = spec["components"]["schemas"]
    for name, schema in schemas.items():
        if name.startswith(("addContactToListBy", "removeContactFromListBy")):
            schema["required"] = list(schema["properties"])


def brevo_empty_id_or_email_lists_match_both_branches(spec: dict) -> None:
    """``postContactInfo`` (the answer of a list add/remove) gives ``success`` and ``failure`` as a
    ``oneOf`` of an array of emails and an array of ids: an empty array (nothing failed) is both,
    so no such answer can satisfy the ``oneOf``. Either branch is accepted."""
    contacts = spec["components"]["schemas"]["postContactInfo"]["properties"]["contacts"]
    for name in ("success", "failure"):
        contacts["properties"][name]["anyOf"] = contacts["properties"][name].pop("oneOf")


def brevo_error_statuses_undeclared(spec: dict) -> None:
    """Brevo answers 401 (bad key), 429 (rate limit, with ``x-sib-ratelimit-*`` headers) and 5xx on
    every endpoint (https://developers.brevo.com/docs/limit-headers), with the ``errorModel`` body;
    the description declares 429 on two operations and 401/5xx on none. They are declared on every
    operation. ``errorModel.code`` is a closed list with no code for a rate limit or a server
    error, although the description itself puts ``errorModel`` on its 429s: for 429 and 5xx the
    code is any string."""
    strict = {"application/json": {"schema": {"$ref": "#/components/schemas/errorModel"}}}
    open_model = copy.deepcopy(spec["components"]["schemas"]["errorModel"])
    open_model["properties"]["code"].pop("enum")
    spec["components"]["schemas"]["errorModelOpenCode"] = open_model
    open_code = {"application/json": {"schema": {"$ref": "#/components/schemas/errorModelOpenCode"}}}
    for item in spec["paths"].values():
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            responses.setdefault("401", {"description": "", "content": strict})
            responses["429"] = {"description": "", "content": open_code}
            responses.setdefault("5XX", {"description": "", "content": open_code})


def mailchimp_defaults_of_the_wrong_type(spec: dict) -> None:
    """A list's ``notify_on_subscribe`` and ``notify_on_unsubscribe`` are ``type: string`` (the
    address to notify; empty for none) with ``default: false``: the description fails the
    OpenAPI schema, so no validator loads it as it is. The default (which validation does not
    use) becomes ``""``."""

    def repair(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "string" and node.get("default") is False:
                node["default"] = ""
            for value in node.values():
                repair(value)
        elif isinstance(node, list):
            for value in node:
                repair(value)

    repair(spec)


QUIRKS: dict[str, list[Callable[[dict], None]]] = {
    "brevo": [
        brevo_list_batch_branches_overlap,
        brevo_empty_id_or_email_lists_match_both_branches,
        brevo_error_statuses_undeclared,
    ],
    "mailchimp": [mailchimp_defaults_of_the_wrong_type],
}


def no_payload_for_an_empty_content_map(spec: dict) -> None:
    """Not a fault of the descriptions: a Response with ``content: {}`` declares no payload
    (OpenAPI 3.0, Response Object), but openapi-core reads any ``content`` key as "a body is
    required" and reports a 204's empty body as MissingData. The empty map is dropped."""
    for item in spec["paths"].values():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for response in operation["responses"].values():
                if response.get("content") == {}:
                    del response["content"]


# How openapi-core reads what the descriptions say, adjusted where it departs from OpenAPI 3.0.
VALIDATOR_ADJUSTMENTS: list[Callable[[dict], None]] = [no_payload_for_an_empty_content_map]


# --- openapi-core's request and response protocols over raw ASGI data -----------------------------


@dataclass
class WireRequest:
    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    body: bytes | None
    content_type: str


@dataclass
class WireResponse:
    status_code: int
    headers: Headers
    data: bytes | None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def _headers(raw: list[tuple[bytes, bytes]]) -> Headers:
    return Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw])


# --- one provider's description ------------------------------------------------------------------


class Description:
    def __init__(self, provider: str):
        self.provider = provider
        spec = json.loads((SPECS / DESCRIPTIONS[provider]).read_text())
        for repair in QUIRKS[provider] + VALIDATOR_ADJUSTMENTS:
            repair(spec)
        self.spec = spec
        server = urlsplit(spec["servers"][0]["url"])
        self.host_url = f"{server.scheme}://{server.netloc}"
        # openapi-core parses application/json only; Mailchimp's errors are application/problem+json.
        config = Config(extra_media_type_deserializers={"application/problem+json": json.loads})
        self.openapi = OpenAPI.from_dict(spec, config=config)
        self._lock = threading.Lock()

    @cached_property
    def _finder(self) -> APICallPathFinder:
        return APICallPathFinder(self.openapi.spec)

    def request(self, scope: dict, body: bytes) -> WireRequest:
        headers = _headers(scope["headers"])
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        return WireRequest(
            host_url=self.host_url,
            path=scope["path"],
            method=scope["method"].lower(),
            parameters=RequestParameters(
                query=ImmutableMultiDict(query), header=headers, cookie=ImmutableMultiDict()
            ),
            body=body,
            content_type=headers.get("content-type", "application/octet-stream").lower(),
        )

    def request_problems(self, request: WireRequest) -> list[str]:
        with self._lock:
            problems = [_describe(e) for e in self.openapi.iter_request_errors(request)]
            if not problems and request.body and request.body.strip():
                operation = self._operation(request)
                if operation is not None and "requestBody" not in operation:
                    problems.append(f"a body ({request.body[:40]!r}) on an operation that takes none")
        return problems

    def response_problems(self, request: WireRequest, response: WireResponse) -> list[str]:
        with self._lock:
            return [_describe(e) for e in self.openapi.iter_response_errors(request, response)]

    def operation_labels(self) -> set[str]:
        return {
            f"{method.upper()} {path}"
            for path, item in self.spec["paths"].items()
            for method in item
            if method != "parameters"
        }

    def knows(self, request: WireRequest) -> bool:
        return self._operation(request) is not None

    def _operation(self, request: WireRequest) -> Any:
        try:
            found = self._finder.find(request.method, request.host_url + request.path)
        except PathError:
            return None
        return found.operation


def _describe(exc: BaseException) -> str:
    """The error and what caused it, down to each schema error with where it is in the body."""
    parts = [f"{type(exc).__name__}: {str(exc)[:200]}"]
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        for schema_error in getattr(e, "schema_errors", None) or ():
            where = "/".join(str(p) for p in schema_error.absolute_path) or "(body)"
            parts.append(f"at {where}: {schema_error.message[:300]}")
        if e.__cause__ is not None:
            parts.append(f"{type(e.__cause__).__name__}: {str(e.__cause__)[:200]}")
            todo.append(e.__cause__)
    return "; ".join(parts)


# --- the ASGI wrapper and its tally --------------------------------------------------------------


@dataclass
class Tally:
    requests: int = 0  # requests validated
    responses: int = 0  # answers validated
    refused_probes: int = 0  # a test's own non-conforming request, refused by the simulator with a 4xx
    dropped: int = 0  # connection closed without an answer (fault injection)
    injected_raw: int = 0  # raw answers the simulator was told to give (fault injection)
    admin: int = 0  # /_sim/ admin calls, outside the description


@dataclass
class Exchange:
    """One request to a simulator, checked on arrival; its answer is judged by ``Conformance``."""

    description: Description
    request: WireRequest
    label: str
    from_sdk: bool
    problems: list[str]

    @classmethod
    def arriving(cls, description: Description, scope: dict, body: bytes) -> Exchange:
        request = description.request(scope, body)
        agent = request.parameters.header.get("user-agent", "")
        return cls(
            description=description,
            request=request,
            label=f"{description.provider} {scope['method']} {scope['path']}",
            from_sdk=agent.startswith(SDK_AGENTS),
            problems=description.request_problems(request),
        )

    def verdict(self, status: int | None, headers: Headers, data: bytes) -> tuple[list[str], bool, bool]:
        """(mismatches, whether this was a refused test probe, whether the answer was checked)."""
        found = []
        refused_probe = (
            bool(self.problems) and not self.from_sdk and status is not None and 400 <= status < 500
        )
        if self.problems and not refused_probe:
            who = "an official SDK sent" if self.from_sdk else f"the simulator accepted ({status})"
            found.append(f"{self.label}: {who} a request that does not conform: {self.problems}")
        checked = status is not None and INJECTED_HEADER not in headers
        if checked and not (refused_probe and not self.description.knows(self.request)):
            answer = WireResponse(status, headers, data)  # type: ignore[arg-type]
            problems = self.description.response_problems(self.request, answer)
            if problems:
                found.append(
                    f"{self.label}: answer {status} does not conform: {problems}; body {data[:300]!r}"
                )
        return found, refused_probe, checked


@dataclass
class Conformance:
    descriptions: dict[str, Description] = field(default_factory=dict)
    tallies: dict[str, Tally] = field(default_factory=dict)
    operations: Counter = field(default_factory=Counter)  # (provider, "METHOD /path") answers checked
    mismatches: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # One worker: checks are CPU-bound, and one thread competes least with the traffic.
    _worker: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "conformance"))
    _pending: list[Future] = field(default_factory=list)

    def description(self, provider: str) -> Description:
        with self._lock:
            if provider not in self.descriptions:
                self.descriptions[provider] = Description(provider)
                self.tallies[provider] = Tally()
            return self.descriptions[provider]

    def wrap(self, app: Any) -> Any:
        """The app with every exchange checked, if it is a provider simulator; else the app as is."""
        provider = getattr(app, "provider", None)
        if provider not in DESCRIPTIONS:
            return app
        description = self.description(provider)

        async def checked(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await app(scope, receive, send)
            if scope["path"].startswith(ADMIN_PREFIX):
                with self._lock:
                    self.tallies[provider].admin += 1
                return await app(scope, receive, send)
            await self._exchange(description, app, scope, receive, send)

        checked.provider = provider  # type: ignore[attr-defined]
        return checked

    async def _exchange(
        self, description: Description, app: Any, scope: dict, receive: Any, send: Any
    ) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        start: dict | None = None
        chunks: list[bytes] = []

        async def hold(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body":
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            assert start is not None
            data = b"".join(chunks)
            await send(start)
            await send({"type": "http.response.body", "body": data, "more_body": False})
            self._check(description, scope, body, start["status"], _headers(start.get("headers", [])), data)

        # The simulators close a connection through the server's own object (send.__self__).
        hold.__self__ = getattr(send, "__self__", None)  # type: ignore[attr-defined]
        await app(scope, replay, hold)
        if start is None:  # no answer: the simulator dropped the connection on purpose
            self._check(description, scope, body, None, Headers(), b"")

    def _check(
        self,
        description: Description,
        scope: dict,
        body: bytes,
        status: int | None,
        headers: Headers,
        data: bytes,
    ) -> None:
        scope = {k: scope[k] for k in ("method", "path", "query_string", "headers") if k in scope}

        def check() -> None:
            try:
                self._record(Exchange.arriving(description, scope, body), status, headers, data)
            except Exception as exc:  # a fault of the check itself must fail the test too
                with self._lock:
                    self.mismatches.append(f"{description.provider} {scope['path']}: check failed: {exc!r}")

        with self._lock:
            self._pending.append(self._worker.submit(check))

    def settle(self) -> None:
        """Wait until every exchange seen so far is checked."""
        with self._lock:
            pending, self._pending = self._pending, []
        wait(pending)

    def _record(self, exchange: Exchange, status: int | None, headers: Headers, data: bytes) -> None:
        found, refused_probe, checked = exchange.verdict(status, headers, data)
        provider = exchange.description.provider
        with self._lock:
            tally = self.tallies[provider]
            tally.requests += 1
            tally.refused_probes += refused_probe
            tally.dropped += status is None
            tally.injected_raw += status is not None and not checked
            if checked:
                tally.responses += 1
                self.operations[(provider, _operation_label(exchange.description, exchange.request))] += 1
            self.mismatches.extend(found)

    def take(self, since: int) -> list[str]:
        """The mismatches recorded from index ``since`` on, removed (a test that provokes them)."""
        self.settle()
        with self._lock:
            found, self.mismatches[since:] = self.mismatches[since:], []
            return found

    def summary(self) -> list[str]:
        self.settle()
        lines = []
        for provider, t in sorted(self.tallies.items()):
            exercised = {op for p, op in self.operations if p == provider}
            declared = self.descriptions[provider].operation_labels()
            lines.append(
                f"{provider}: {t.requests} requests and {t.responses} answers validated, over "
                f"{len(exercised & declared)} of the excerpt's {len(declared)} operations; "
                f"{t.refused_probes} non-conforming test probes refused with a 4xx; "
                f"{t.dropped} dropped connections and {t.injected_raw} raw injected answers "
                f"(request validated, no answer to check); {t.admin} /_sim/ admin calls (not checked)"
            )
            if declared - exercised:
                lines.append(
                    f"  {provider} operations not exercised: {', '.join(sorted(declared - exercised))}"
                )
        return lines


def _operation_label(description: Description, request: WireRequest) -> str:
    try:
        found = description._finder.find(request.method, request.host_url + request.path)
    except PathError:
        return f"{request.method.upper()} (not in the description)"
    return f"{request.method.upper()} {found.path_result.pattern}"
