"""Python's cycle collector paced for bulk work, shared by every part of syncd that does it.

At its default pace (a young pass every 700 new container objects, a full pass after 100 of them
under some conditions) the collector runs hundreds of times over work that holds tens of thousands
of short-lived records at once (an import's batch, a Brevo read-back's pages of contact JSON), and
each full pass also goes over everything already loaded. During such work, a young pass every
``BULK_GC_THRESHOLD`` new objects; the pace is the process's own, so one counter of users,
whichever module, sets it and puts it back.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

BULK_GC_THRESHOLD = 50_000
_lock = threading.Lock()
_users = 0
_saved: tuple[int, ...] = ()


@contextmanager
def paced_collector() -> Iterator[None]:
    """The collector at the bulk pace while at least one user runs, then as it was."""
    global _users, _saved
    with _lock:
        if _users == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(max(BULK_GC_THRESHOLD, _saved[0]), *_saved[1:])
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                gc.set_threshold(*_saved)
