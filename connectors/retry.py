"""Retry with back-off for connector calls, generic over providers.

A connector translates its SDK's failures into ``connectors.contract`` errors inside ``call``; this
module retries the retriable ones (``Transient``, and ``RateLimited`` for as long as the server
says), bounded by a count and a total time, then re-raises the last typed error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from connectors.contract import RateLimited, Transient

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    max_seconds: float = 120.0  # total budget, waits included
    base_s: float = 0.5
    cap_s: float = 30.0

    def backoff_s(self, attempt: int) -> float:
        """Exponential back-off with full jitter, for errors that do not say how long to wait."""
        return random.uniform(0, min(self.cap_s, self.base_s * 2**attempt))


def call_with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[Transient, float, int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    started = clock()
    attempt = 0
    while True:
        try:
            return call()
        except Transient as exc:
            wait = exc.wait_s if isinstance(exc, RateLimited) else policy.backoff_s(attempt)
            if attempt >= policy.max_retries or clock() - started + wait > policy.max_seconds:
                raise
            if on_retry is not None:
                on_retry(exc, wait, attempt)
            sleep(wait)
            attempt += 1
