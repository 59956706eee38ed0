"""Comparing a secret a request carries with the expected one, in constant time."""

from __future__ import annotations

import hmac


def secret_matches(given: str, expected: str | None) -> bool:
    """True when ``expected`` is set and ``given`` equals it (no timing hint of how much matched)."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())  # type: ignore[union-attr]
