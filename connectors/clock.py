"""The provider's clock, as its answers tell it: what a read's cursor is taken from, never the
local clock (which may be minutes off the provider's).

Every HTTP answer carries the provider's time in its ``Date`` header (RFC 9110 §6.6.1: an origin
server with a clock sends it). It has a one-second resolution and servers cache it for up to a
second, so a header is a *lower bound* of the provider's time when the answer left, at most
``DATE_LAG`` behind it. The local monotonic clock then measures the time elapsed since (a duration,
not a date: the local clock's offset never enters), so ``now()`` is a lower bound of the
provider's time now.

A read's cursor is ``now()`` taken before the read's first request, minus the connector's margin
(the provider's own lag between a change and the reads that show it, and the skew between its
servers): every change stamped at or before the cursor was visible to that read.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

# How far behind the provider's time a Date header can be: its one-second resolution, and servers
# (uvicorn, nginx) refreshing it once a second.
DATE_LAG = timedelta(seconds=2)


class ProviderClock:
    """The provider's time from the Date headers of its answers, and when syncd last wrote there."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset: float | None = None  # provider epoch seconds minus local monotonic seconds
        self._last_write: float | None = None  # local monotonic time of the last write's answer

    def saw(self, date_header: str | None) -> None:
        """An answer's ``Date`` header (ignored when missing or unreadable)."""
        if not date_header:
            return
        try:
            at = parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            return
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        offset = at.timestamp() - time.monotonic()
        with self._lock:
            # The answer that tells the latest time gives the tightest lower bound.
            if self._offset is None or offset > self._offset:
                self._offset = offset

    def now(self) -> datetime | None:
        """A lower bound of the provider's time now; None before any answer told it."""
        with self._lock:
            offset = self._offset
        if offset is None:
            return None
        return datetime.fromtimestamp(offset + time.monotonic(), UTC)

    def wrote(self) -> None:
        """syncd's write has been answered (its change is stamped before the answer's Date)."""
        with self._lock:
            self._last_write = time.monotonic()

    def settle(self, seconds: float) -> None:
        """Wait until ``seconds`` have passed since syncd's last write: a read that starts then
        takes a cursor past that write (``seconds`` >= margin + DATE_LAG), so the next read does
        not return it."""
        with self._lock:
            last = self._last_write
        if last is None or seconds <= 0:
            return
        wait = last + seconds - time.monotonic()
        if wait > 0:
            time.sleep(wait)
