"""The client's address behind trusted reverse proxies (``server.trusted_proxies``).

Pure ASGI middleware: it replaces the connection's peer in the request scope with the client's
address (``syncd.netaddr.client_address``), so that every route reads one parsed, bounded address
from ``request.client``. The daemon turns uvicorn's own proxy-header handling off: this is the
only place that reads ``X-Forwarded-For``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from syncd.netaddr import IPNetwork, client_address


class ClientAddress:
    def __init__(self, app: Any, *, trusted: Sequence[IPNetwork]):
        self.app, self.trusted = app, tuple(trusted)
        # A request without X-Forwarded-For is answered from its peer alone: the few peers a
        # server sees (a provider's senders, a proxy) are parsed once, not on every request.
        self._peer_only = functools.lru_cache(maxsize=1024)(
            lambda peer: client_address(peer, (), self.trusted)
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            peer = scope.get("client")
            forwarded = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for"]
            if forwarded:
                host = client_address(peer[0] if peer else None, forwarded, self.trusted)
            else:
                host = self._peer_only(peer[0] if peer else None)
            port = peer[1] if peer and host == peer[0] else 0
            scope = {**scope, "client": (host, port) if host else None}
        await self.app(scope, receive, send)
