"""Run an ASGI app with uvicorn on a free loopback port, in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

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
