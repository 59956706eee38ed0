"""Every contact out, as CSV or JSON (``syncd contacts export --all``), a chunk at a time: a base of
a million contacts is written in the memory of a thousand.

Each contact comes with its list memberships (list → status). Keyset pagination on the contact
id: each chunk is one query for the contacts and one for their memberships, whatever the base's
size.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from syncd.models import Consent, Contact, Membership

CHUNK = 1000
FIELDS = (
    "id",
    "email",
    "email_status",
    "first_name",
    "last_name",
    "phone",
    "company",
    "siret",
    "kind",
    "stage",
    "tags",
    "country",
    "region",
    "city",
    "postal_code",
    "attributes",
    "global_opt_out",
    "opt_out_at",
    "created_at",
    "updated_at",
)
CONTACT = Contact.__table__  # type: ignore[attr-defined]
MEMBERSHIP = Membership.__table__  # type: ignore[attr-defined]
CONSENT = Consent.__table__  # type: ignore[attr-defined]
CONSENT_FIELDS = (
    "id", "email", "list_name", "action", "at", "ip", "user_agent", "source", "wording", "evidence",
)  # fmt: skip


def contacts(engine: Engine, chunk: int = CHUNK) -> Iterator[dict[str, Any]]:
    """Every contact, in id order, with ``lists``: {list name: membership status}."""
    last = 0
    columns = [CONTACT.c[f] for f in FIELDS]
    while True:
        with engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(*columns).where(CONTACT.c.id > last).order_by(CONTACT.c.id).limit(chunk)
                )
                .mappings()
                .all()
            )
            if not rows:
                return
            ids = [r["id"] for r in rows]
            lists: dict[int, dict[str, str]] = {i: {} for i in ids}
            held = sa.select(MEMBERSHIP.c.contact_id, MEMBERSHIP.c.list_name, MEMBERSHIP.c.status).where(
                MEMBERSHIP.c.contact_id.in_(ids)
            )
            for cid, list_name, status in conn.execute(held.order_by(MEMBERSHIP.c.list_name)):
                lists[cid][list_name] = status
        for r in rows:
            yield {**{f: _plain(r[f]) for f in FIELDS}, "lists": lists[r["id"]]}
        last = ids[-1]


def write_json(rows: Iterator[dict[str, Any]], out: TextIO) -> int:
    """A JSON array, one contact a line, written as it is read. Returns how many."""
    n = 0
    out.write("[")
    for row in rows:
        out.write(("\n" if n == 0 else ",\n") + json.dumps(row, ensure_ascii=False))
        n += 1
    out.write("\n]\n" if n else "]\n")
    return n


def write_csv(rows: Iterator[dict[str, Any]], out: TextIO) -> int:
    """CSV with a header: tags joined by ``|``, attributes as JSON, lists as ``name:status|…``."""
    writer = csv.DictWriter(out, fieldnames=[*FIELDS, "lists"], lineterminator="\n")
    writer.writeheader()
    n = 0
    for row in rows:
        row["tags"] = "|".join(row["tags"] or [])
        row["attributes"] = (
            json.dumps(row["attributes"] or {}, ensure_ascii=False) if row["attributes"] else ""
        )
        row["lists"] = "|".join(f"{name}:{status}" for name, status in row["lists"].items())
        writer.writerow(row)
        n += 1
    return n


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def consents(engine: Engine, chunk: int = CHUNK) -> Iterator[dict[str, Any]]:
    """The consent ledger, every proof in id order with its contact's address: keyset pages, as
    ``contacts`` reads contacts. ``evidence`` as JSON text."""
    last = 0
    columns = [CONSENT.c[f] for f in CONSENT_FIELDS if f != "email"]
    query = sa.select(*columns, CONTACT.c.email).join(CONTACT, CONTACT.c.id == CONSENT.c.contact_id)
    while True:
        with engine.connect() as conn:
            rows = (
                conn.execute(query.where(CONSENT.c.id > last).order_by(CONSENT.c.id).limit(chunk))
                .mappings()
                .all()
            )
        if not rows:
            return
        for r in rows:
            row = {f: _plain(r[f]) for f in CONSENT_FIELDS}
            row["evidence"] = json.dumps(row["evidence"] or {}, ensure_ascii=False, sort_keys=True)
            yield row
        last = rows[-1]["id"]
