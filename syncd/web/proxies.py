"""The client's address behind trusted reverse proxies (``server.trusted_proxies``).

Pure ASGI middleware: it replaces the connection's peer in the request scope with the client's
address (``syncd.netaddr.client_address``), so that every route reads one parsed, bounded address
from ``request.client``. The daemon turns uvicorn's own proxy-header handling off: this is the
only place that reads ``X-Forwarded-For``. It also believes a trusted proxy's
``X-Forwarded-Proto: https`` (the scope's scheme becomes ``https``), so that the console's session
cookie is ``Secure`` behind a proxy that ends TLS.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from syncd.netaddr import IPNetwork, client_address, is_trusted, parse_ip


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
            if self._forwarded_https(peer[0] if peer else None, scope.get("headers", ())):
                scope["scheme"] = "wss" if scope["type"] == "websocket" else "https"
        await self.app(scope, receive, send)

    def _forwarded_https(self, peer: str | None, headers: Any) -> bool:
        """A trusted proxy says the client spoke HTTPS to it (the last ``X-Forwarded-Proto`` value).
        The peer is parsed only when the header is there: most requests pay nothing."""
        if not self.trusted:
            return False
        proto = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-proto"]
        if not proto or proto[-1].split(",")[-1].strip().lower() != "https":
            return False
        ip = parse_ip(peer)
        return ip is not None and is_trusted(ip, self.trusted)
