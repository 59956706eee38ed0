"""Security headers on what the daemon serves: every response is ``nosniff``; every HTML page gets a
Content-Security-Policy that allows its own inline style and nothing else (no script, no frame,
forms posted to the same origin only) and tells the browser to send no referrer (the page's URL
holds the contact's token).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from typing import Any

from starlette.datastructures import MutableHeaders

_STYLE = re.compile(r"<style>(.*?)</style>", re.S)


def style_hashes(html: str) -> list[str]:
    """CSP source expressions for each inline ``<style>`` block of a static template."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() + "'"
        for block in _STYLE.findall(html)
    ]


def content_security_policy(styles: Iterable[str]) -> str:
    style = " ".join(styles) or "'none'"
    return "; ".join(
        (
            "default-src 'none'",
            f"style-src {style}",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        )
    )


class SecurityHeaders:
    """Pure ASGI middleware: adds the headers as the response starts, whatever route answered."""

    def __init__(self, app: Any, *, csp: str):
        self.app, self.csp = app, csp

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", self.csp)
                    headers.setdefault("Referrer-Policy", "no-referrer")
                    headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, send_with_headers)
