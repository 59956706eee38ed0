"""Merging a qualified record into the contact already known for its address. Pure.

The rule: an empty field is filled, tags are unioned, an attribute key missing is added; a field
that already holds a different value keeps it, and the offered value is returned as a
``Conflict`` so the caller reports it (summary and AuditLog) — a value is never lost silently.
With ``import --update`` (``overwrite``) the file's value wins instead, and the value it replaced
is reported the same way.
Values that differ only by case, accents or spacing ("ACME" / "Acme") are the same value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from syncd.contacts.qualify import Qualified
from syncd.contacts.text import fold

MERGED_FIELDS = (
    "first_name",
    "last_name",
    "phone",
    "company",
    "siret",
    "kind",
    "stage",
    "country",
    "region",
    "city",
    "postal_code",
)


@dataclass(frozen=True)
class Conflict:
    field: str
    kept: Any
    offered: Any

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "kept": self.kept, "offered": self.offered}


def new_contact(q: Qualified) -> dict[str, Any]:
    """The column values of a contact created from ``q``."""
    row = dict(q.__dict__)  # every field of Qualified is a column, but its warnings
    del row["issues"]
    row["tags"], row["attributes"] = list(q.tags), dict(q.attributes)
    return row


def merge(current: dict[str, Any], incoming: Qualified) -> tuple[dict[str, Any], list[Conflict]]:
    """The changes to apply to ``current`` (column → new value) and the conflicts to report."""
    changes: dict[str, Any] = {}
    conflicts: list[Conflict] = []
    for name in MERGED_FIELDS:
        offered = getattr(incoming, name)
        if offered is None:
            continue
        kept = current.get(name)
        if kept is None or kept == "":
            changes[name] = offered
        elif kept != offered and not _same(kept, offered):
            conflicts.append(Conflict(name, kept, offered))
    tags = list(current.get("tags") or [])
    added = [t for t in incoming.tags if t not in tags]
    if added:
        changes["tags"] = tags + added
    attributes = dict(current.get("attributes") or {})
    attr_changed = False
    for key, offered in incoming.attributes.items():
        if key not in attributes or attributes[key] in (None, ""):
            attributes[key] = offered
            attr_changed = True
        elif attributes[key] != offered and not _same(attributes[key], offered):
            conflicts.append(Conflict(f"attributes.{key}", attributes[key], offered))
    if attr_changed:
        changes["attributes"] = attributes
    return changes, conflicts


def overwrite(current: dict[str, Any], incoming: Qualified) -> tuple[dict[str, Any], list[Conflict]]:
    """``import --update``: the file's values win. As ``merge``, but a field (or attribute) already
    holding another value takes the file's; returns the changes and the values replaced
    (``Conflict.kept`` the old value, ``offered`` the new one), for the audit trail. Tags are
    still unioned: a file never removes a tag."""
    changes, replaced = merge(current, incoming)
    for c in replaced:
        if c.field.startswith("attributes."):
            attributes = changes.setdefault("attributes", dict(current.get("attributes") or {}))
            attributes[c.field.partition(".")[2]] = c.offered
        else:
            changes[c.field] = c.offered
    return changes, replaced


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return fold(a) == fold(b)
    return bool(a == b)
