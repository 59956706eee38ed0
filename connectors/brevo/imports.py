"""Brevo's contact import: the CSV bodies of ``POST /contacts/import`` and the wait for its process.

Above ``DIRECT_MAX`` members an upsert is one import per 8 MB (tens of thousands of contacts);
``BrevoConnector.upsert`` says why.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import sib_api_v3_sdk as sib

from connectors.brevo.vocabulary import ATTRIBUTES, PROVIDER
from connectors.contract import (
    MemberPush,
    Transient,
)

# https://developers.brevo.com/reference/importcontacts : body up to 10 MB, "a safe limit of around 8 MB"
IMPORT_MAX_BYTES = 8_000_000
# At or below this many members, one synchronous POST /contacts each costs no more calls than an
# import (1 write + at least 1 process poll + 1 verification read), and answers per member at once.
DIRECT_MAX = 3
IMPORT_TIMEOUT_S = 900.0


def import_chunks(wanted: Mapping[str, MemberPush]) -> Iterator[str]:
    """CSV bodies for ``POST /contacts/import`` (``;``-separated, attribute names as headers),
    each under IMPORT_MAX_BYTES. An empty cell leaves Brevo's value alone (emptyContactsAttributes
    false). https://developers.brevo.com/docs/import-your-contacts-to-brevo"""
    header = ["EMAIL", *ATTRIBUTES.values()]
    names = tuple(ATTRIBUTES)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    writer.writerow(header)
    start, rows = out.tell(), 0
    for email, m in wanted.items():
        mark = out.tell()
        # csv writes a missing field (None) as an empty cell.
        writer.writerow((email, *map(m.fields.get, names)))
        if rows and out.tell() > IMPORT_MAX_BYTES:
            text = out.getvalue()
            yield text[:mark]
            out = io.StringIO()
            writer = csv.writer(out, delimiter=";", lineterminator="\n")
            writer.writerow(header)
            out.write(text[mark:])
            rows = 0
        rows += 1
    if out.tell() > start:
        yield out.getvalue()


def import_requests(list_id: int, wanted: Mapping[str, MemberPush]) -> Iterator[sib.RequestContactImport]:
    """One import per CSV chunk, into ``list_id``, updating contacts that exist."""
    for csv_body in import_chunks(wanted):
        yield sib.RequestContactImport(
            # A CSV body, not jsonBody: one string the SDK sends as it is, where a JSON body is
            # deep-copied by the SDK's serialiser (tens of MB for 50,000 contacts).
            file_body=csv_body,
            list_ids=[list_id],
            update_existing_contacts=True,
            # Empty values leave Brevo's data alone rather than erase it.
            empty_contacts_attributes=False,
            # Only ever adds a blacklist; never sent as an unblock. Blacklisted contacts
            # stay blacklisted through an import:
            # https://help.brevo.com/hc/en-us/articles/209499265
            email_blacklist=False,
        )


def wait_for_process(process_id: int, get_process: Callable[[], Any]) -> None:
    """Poll an import's process until Brevo says it completed (Transient after IMPORT_TIMEOUT_S).

    https://developers.brevo.com/reference/getprocess : queued -> in_process -> completed
    """
    deadline = time.monotonic() + IMPORT_TIMEOUT_S
    pause = 0.05
    while True:
        proc = get_process()
        if proc.status == "completed":
            return
        if time.monotonic() > deadline:
            raise Transient(f"import process {process_id} still {proc.status}", provider=PROVIDER)
        time.sleep(pause)
        pause = min(pause * 2, 5.0)
