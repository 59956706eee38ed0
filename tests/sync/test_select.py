"""The plan's id selection: every contact that concerns a list on a target, each exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import SQLModel

from connectors.brevo.vocabulary import TRAITS
from syncd.config import Config
from syncd.core.plan import Plan
from syncd.models import Contact, Membership, TargetState
from syncd.sync.select import chunks, plans
from syncd.sync.state import ListTarget

SINCE = datetime(2026, 6, 1, tzinfo=UTC)
BEFORE, AFTER = SINCE - timedelta(days=1), SINCE + timedelta(minutes=1)
CONFIG = Config.model_validate(
    {
        "version": 1,
        "providers": {"brevo": {"api_key": "k", "base_url": "http://127.0.0.1:9/v3"}},
        "lists": {
            "news": {"targets": [{"brevo": {"list_id": 1}}]},
            "other": {"targets": [{"brevo": {"list_id": 2}}]},
            "vendors": {"auto_enroll": True, "targets": [{"brevo": {"list_id": 3}}]},
            "suppliers": {
                "consent": "legitimate_interest",
                "auto_enroll": True,
                "segment": {"kind": ["vendor"], "email_status": ["valid"]},
                "targets": [{"brevo": {"list_id": 4}}],
            },
        },
    }
)


@dataclass(frozen=True)
class Person:
    """One contact of a random base, and where it stands towards the list ``news`` on brevo:1."""

    touched: bool  # its record changed after SINCE
    lists: tuple[str, ...]  # its memberships
    membership_touched: bool  # its memberships changed after SINCE
    state: str | None  # a TargetState: news on brevo:1, news elsewhere, or another list there
    pulled: bool  # that TargetState was read from the provider after SINCE
    kind: str | None = None
    email_status: str | None = "valid"


people = st.builds(
    Person,
    touched=st.booleans(),
    lists=st.sampled_from([(), ("news",), ("other",), ("news", "other"), ("suppliers",)]),
    membership_touched=st.booleans(),
    state=st.sampled_from([None, "news:brevo:1", "news:brevo:9", "other:brevo:1", "suppliers:brevo:4"]),
    pulled=st.booleans(),
    kind=st.sampled_from([None, "vendor", "client"]),
    email_status=st.sampled_from([None, "valid", "bounced"]),
)


def seed(engine, base: list[Person]) -> dict[int, Person]:
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())
        ids = {}
        for i, p in enumerate(base):
            row = {"email": f"p{i}@example.fr", "tags": [], "attributes": {}, "created_at": BEFORE}
            row |= {"kind": p.kind, "first_name": f"P{i}"}
            if p.email_status is not None:
                row["email_status"] = p.email_status
            row["updated_at"] = row["touched_at"] = AFTER if p.touched else BEFORE
            cid = conn.execute(sa.insert(Contact.__table__).returning(Contact.id), row).scalar_one()
            ids[cid] = p
            for name in p.lists:
                conn.execute(
                    sa.insert(Membership.__table__),
                    {
                        "contact_id": cid,
                        "list_name": name,
                        "status": "subscribed",
                        "since": BEFORE,
                        "touched_at": AFTER if p.membership_touched else BEFORE,
                    },
                )
            if p.state:
                list_name, target_key = p.state.split(":", 1)
                conn.execute(
                    sa.insert(TargetState.__table__),
                    {
                        "contact_id": cid,
                        "list_name": list_name,
                        "target_key": target_key,
                        "pulled_at": AFTER if p.pulled else BEFORE,
                    },
                )
    return ids


def list_target(engine, name: str) -> ListTarget:
    cfg = CONFIG.lists[name]
    return ListTarget(engine, CONFIG, name, cfg, cfg.targets[0].target)


def selected(lt: ListTarget, since, size: int, only=None) -> list[int]:
    """The ids of every chunk, in order, after checking each chunk's size."""
    out = []
    for rows in chunks(lt, since, only, size=size):
        assert 1 <= len(rows) <= size
        out.extend(r.id for r in rows)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.lists(people, max_size=30), size=st.integers(1, 7))
def test_each_contact_of_the_list_is_planned_exactly_once_across_chunks(engine, base, size):
    ids = seed(engine, base)
    news = list_target(engine, "news")

    full = {cid for cid, p in ids.items() if "news" in p.lists or p.state == "news:brevo:1"}
    assert selected(news, None, size) == sorted(full)

    # Incremental: the contacts the list or its target concerns (a membership of it, a state
    # there) that changed since, and nobody else.
    touched = {
        cid
        for cid, p in ids.items()
        if (p.touched or (p.lists and p.membership_touched) or (p.state == "news:brevo:1" and p.pulled))
        and ("news" in p.lists or p.state == "news:brevo:1")
    }
    assert selected(news, SINCE, size) == sorted(touched)

    vendors = list_target(engine, "vendors")
    assert selected(vendors, None, size) == sorted(ids)
    # An auto-enrolled list concerns everyone: every change counts.
    changed = {cid for cid, p in ids.items() if p.touched or (p.lists and p.membership_touched)}
    assert selected(vendors, SINCE, size) == sorted(changed)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.lists(people, max_size=30), size=st.integers(1, 7))
def test_an_auto_enrolled_segment_reads_only_whom_its_plan_concerns(engine, base, size):
    ids = seed(engine, base)
    suppliers = list_target(engine, "suppliers")

    # Its members, what its target holds, and the contacts SQL can tell are in its segment.
    concerned = {
        cid
        for cid, p in ids.items()
        if "suppliers" in p.lists
        or p.state == "suppliers:brevo:4"
        or (p.kind == "vendor" and p.email_status != "bounced")
    }
    assert selected(suppliers, None, size) == sorted(concerned)
    # The narrowing changes no plan: planning everyone by name asks exactly the same.
    everyone = [f"p{i}@example.fr" for i in range(len(base))]
    assert asked(suppliers, None) == asked(suppliers, None, only=everyone)
    changed = {
        cid
        for cid, p in ids.items()
        if p.touched or (p.lists and p.membership_touched) or (p.pulled and p.state == "suppliers:brevo:4")
    }
    assert selected(suppliers, SINCE, size) == sorted(concerned & changed)


def asked(lt: ListTarget, since, only=None) -> set[tuple[str, int]]:
    """Every (kind, contact id) the plan asks for, and the lifts."""
    out = set()
    for chunk in plans(lt, TRAITS, since, only):
        out |= {(kind, item.contact_id) for kind in Plan.KINDS for item in getattr(chunk.plan, kind)}
        out |= {("lift", cid) for cid, _ in chunk.lifts}
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.lists(people, min_size=1, max_size=20), size=st.integers(1, 5), data=st.data())
def test_a_replan_of_named_addresses_plans_each_of_them_once(engine, base, size, data):
    ids = seed(engine, base)
    email = {cid: f"p{i}@example.fr" for i, cid in enumerate(ids)}
    chosen = data.draw(st.lists(st.sampled_from(sorted(ids)), max_size=10))
    emails = [email[cid] for cid in chosen]
    assert selected(list_target(engine, "news"), None, size, only=emails) == sorted(set(chosen))


def test_the_planning_queries_have_their_indexes(engine):
    indexes = {
        table: {tuple(ix["column_names"]) for ix in sa.inspect(engine).get_indexes(table)}
        for table in ("membership", "targetstate")
    }
    assert ("list_name", "contact_id") in indexes["membership"]
    assert ("target_key", "list_name", "pulled_at") in indexes["targetstate"]
