"""What the provider simulators share: an ASGI app served by uvicorn on a free loopback port in a
background thread, and the test's levers on a simulator (latency, injected failures and dropped
connections, the call log)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self

import uvicorn
from starlette.requests import Request
from starlette.responses import Response

# Callables (app -> app) put around every app a ThreadedServer starts, innermost first. The
# contract suite puts its check of the providers' published API descriptions here.
_app_wrappers: list[Callable[[Any], Any]] = []


@contextmanager
def wrapping_served_apps(wrapper: Callable[[Any], Any]) -> Iterator[None]:
    """While inside, every ThreadedServer started serves ``wrapper(app)`` instead of ``app``."""
    _app_wrappers.append(wrapper)
    try:
        yield
    finally:
        _app_wrappers.remove(wrapper)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ThreadedServer:
    """``with ThreadedServer(app) as srv: srv.url`` — started on enter, stopped on exit."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None):
        self.host = host
        self.port = port or free_port(host)
        for wrap in _app_wrappers:
            app = wrap(app)
        config = uvicorn.Config(
            app, host=host, port=self.port, log_level="warning", lifespan="off", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"sim-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class CallRecord:
    method: str
    path: str
    status: int | None = None  # Brevo: 0 when no answer was sent; Mailchimp: None
    query: str = ""
    emails: tuple[str, ...] = ()  # the members a batch call carried (Mailchimp)


class Simulator:
    """What every provider simulator shares: its server's lifecycle, the faults a test injects
    (``fail_next``, ``drop_next``), ``latency_s``, someone else's change at the moment a given
    call arrives (``on_call``), and the log of the API calls it received.

    A subclass is the ASGI application: it names its API's path prefix and which calls write.
    """

    api_prefix = ""  # "/v3": api_url is the server's URL with it
    write_paths = "/"  # the calls under this prefix that are not GETs count as writes

    def __init__(self, api_key: str):
        self.api_key = api_key
        self.latency_s = 0.0
        self.rate_limit_per_s: float | None = None
        self.calls: list[CallRecord] = []
        self._lock = threading.RLock()
        self._fail: list[tuple[int, bytes | None]] = []
        self._drop = 0
        self._on_call: list[tuple[str, str, Callable[[], Any]]] = []
        self._server: ThreadedServer | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._server = ThreadedServer(self).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        assert self._server is not None, "simulator not started"
        return f"{self._server.url}{self.api_prefix}"

    def run_forever(self, port: int) -> None:
        """Serve on 127.0.0.1:``port`` in the foreground until interrupted (``syncd simulate``)."""
        uvicorn.run(self, host="127.0.0.1", port=port, log_level="warning", lifespan="off")

    # --- the test's levers -----------------------------------------------------------------------

    @property
    def write_calls(self) -> int:
        with self._lock:
            return sum(1 for c in self.calls if c.method != "GET" and c.path.startswith(self.write_paths))

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def fail_next(self, n: int, status: int = 503, body: bytes | None = None) -> None:
        """Answer the next ``n`` API requests with ``status``: the provider's error body, or ``body``
        as given (b"": empty; marked ``x-sim-injected: raw``, since it is not an answer the API itself
        would give). Replaces any failures still pending: ``fail_next(0)`` clears them."""
        with self._lock:
            self._fail = [(status, body)] * n

    def drop_next(self, n: int) -> None:
        """Close the next ``n`` API requests' connections without answering; ``drop_next(0)`` clears."""
        with self._lock:
            self._drop = n

    def on_call(self, method: str, path: str, act: Callable[[], Any]) -> None:
        """Once: when the API call ``method path`` (its full path) next arrives, ``act()`` runs
        before the call is answered: someone else's change at the provider at that very moment
        (a member who unsubscribes while a sync writes)."""
        with self._lock:
            self._on_call.append((method.upper(), path, act))

    def _acts_on(self, method: str, path: str) -> None:
        """Runs the ``on_call`` acts waiting for this call."""
        with self._lock:
            due = [a for a in self._on_call if a[0] == method and a[1] == path]
            for a in due:
                self._on_call.remove(a)
        for _, _, act in due:
            act()

    def _take_fault(self) -> tuple[bool, tuple[int, bytes | None] | None]:
        """(drop this request?, the failure to answer it with, if any), consumed from the queues."""
        with self._lock:
            drop = self._drop > 0
            self._drop -= 1 if drop else 0
            fail = self._fail.pop(0) if (self._fail and not drop) else None
        return drop, fail


def raw_answer(status: int, body: bytes) -> Response:
    """An answer given as is, as a gateway in front of the API might: marked so that a check of
    the API's description knows this answer is not the API's."""
    return Response(body, status_code=status, headers={"x-sim-injected": "raw"})


async def drop_connection(receive: Any, send: Any) -> None:
    """Read the request, then close the TCP connection without answering, as a network failure
    looks to the client."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    cycle = getattr(send, "__self__", None)  # uvicorn's RequestResponseCycle
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("drop_next needs uvicorn's HTTP protocol")
    transport.abort()
    cycle.disconnected = True
    await asyncio.sleep(0.01)


async def read_json(request: Request) -> Any:
    """The request's JSON body ({} when empty), or None when it is not JSON."""
    raw = await request.body()
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return None
