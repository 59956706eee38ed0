"""The plan stamp: what a plan of a contact on a target read of it, as one SQL expression.

Incremental planning (``select``) stores each contact's stamp with its state on the target once
the plan's outcome is stored, and skips the contact while the stamp it has now is the one stored.
The database computes and compares stamps: a contact skipped is never read.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from syncd.db import sorted_concat, utc_text
from syncd.models import Membership


def stamp(touched_at: Any, pulled_at: Any, memberships: Any) -> Any:
    """What a plan of the contact on a target depends on, as an SQL expression over the rows
    incremental planning watches: the contact's record (its ``touched_at``), each of its
    memberships (any list: exclusivity, ``memberships``' text) and the last change pulled from the
    target (its ``pulled_at``). Every write of a contact or a membership moves its ``touched_at``;
    a pull that changes the member moves ``pulled_at``. Equal stamps mean the plan would read the
    same rows: compared for equality, never ordered, so a write whose transaction was open while a
    plan read the base changes the stamp whatever the clocks said. The database computes it, so
    that an incremental plan skips the unchanged without reading them."""
    everything = _text(touched_at) + _BAR + _text(pulled_at) + _BAR + sa.func.coalesce(memberships, "")
    return sa.func.md5(everything, type_=sa.String)


_BAR = sa.literal_column("'|'", sa.String)


def _text(when: Any) -> Any:
    return sa.func.coalesce(utc_text(when), sa.literal_column("''", sa.String))


def _each(m: Any) -> Any:
    """One membership's part of a ``stamp``."""
    return m.c.list_name + _BAR + m.c.status + _BAR + _text(m.c.since) + _BAR + _text(m.c.touched_at)


def memberships_of(contact_id: Any) -> Any:
    """The text of all the memberships of one contact, for ``stamp``: found by the contact's id
    whatever statistics the database has."""
    m = Membership.__table__.alias("stamped")
    return (
        sa.select(sorted_concat(_each(m)))
        .where(m.c.contact_id == contact_id)
        .correlate_except(m)
        .scalar_subquery()
    )


def memberships_among(ids: Any) -> Any:
    """``contact_id`` and the ``text`` of all its memberships, of each contact whose id ``ids``
    (a query) returns, for ``stamp``: grouped once for them all, since a lookup per contact would
    cost as much as the plan when a hundred thousand are selected."""
    m = Membership.__table__.alias("stamped")
    return (
        sa.select(m.c.contact_id, sorted_concat(_each(m)).label("text"))
        .where(m.c.contact_id.in_(ids))
        .group_by(m.c.contact_id)
        .subquery("memberships_text")
    )
