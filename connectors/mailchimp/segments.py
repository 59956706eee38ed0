"""Mailchimp tags as static segments: the id behind each tag, and batch edits of its members.

https://mailchimp.com/developer/marketing/api/list-segments/
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors.contract import (
    Rejected,
    Target,
    WriteResult,
)
from connectors.mailchimp.vocabulary import PAGE_MAX

Call = Callable[..., Any]


class TagSegments:
    """The static segment behind each tag of an audience, found (or created) once and remembered.

    ``call(endpoint, fn, *args, **kw)`` and ``write(endpoint, result, fn, *args, **kw)`` are the
    connector's counted, retried calls; ``lists`` is the SDK's lists API.
    """

    def __init__(self, lists: Any, call: Call, write: Call):
        self._lists, self._call, self._write = lists, call, write
        self._ids: dict[tuple[str, str], int] = {}

    def id_for(self, target: Target, *, create: bool) -> int | None:
        """The id of the static segment behind ``target.tag`` (None: none, and not ``create``)."""
        key = (target.list_id, target.tag or "")
        if key in self._ids:
            return self._ids[key]
        offset = 0
        while True:
            page = self._call(
                "list_segments",
                self._lists.list_segments,
                target.list_id,
                type="static",
                count=PAGE_MAX,
                offset=offset,
                fields=["segments.id", "segments.name", "total_items"],
            )
            segments = page.get("segments") or []
            found = [s["id"] for s in segments if s.get("name") == target.tag]
            if found:
                self._ids[key] = int(found[0])
                return self._ids[key]
            offset += len(segments)
            if not segments or offset >= int(page.get("total_items") or 0):
                break
        if not create:
            return None
        created = self._write(
            "create_segment",
            WriteResult(),
            self._lists.create_segment,
            target.list_id,
            {"name": target.tag, "static_segment": []},
        )
        self._ids[key] = int(created["id"])
        return self._ids[key]

    def batch(self, target: Target, segment_id: int, result: WriteResult, **change: list[str]) -> None:
        """Add (``members_to_add``) or remove (``members_to_remove``) up to SEGMENT_BATCH_MAX
        members in one call; an addition refused for an address not in the audience is rejected."""
        answer = (
            self._write(
                "batch_segment_members",
                result,
                self._lists.batch_segment_members,
                change,
                target.list_id,
                segment_id,
            )
            or {}
        )
        # Addresses not in the audience are ignored by Mailchimp: for a removal that is success;
        # for an addition it cannot happen (only members just accepted are tagged).
        if "members_to_add" in change:
            absent = {
                e.strip().lower()
                for err in answer.get("errors") or []
                for e in err.get("email_addresses", [])
            }
            result.rejected += [
                Rejected(e, "not in the audience, tag not added", "not_in_audience") for e in absent
            ]
            result.done = [e for e in result.done if e not in absent]
