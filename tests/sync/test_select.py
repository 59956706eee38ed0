"""The plan's id selection: every contact that concerns a list on a target, each exactly once."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from sqlmodel import Session, SQLModel

from connectors.brevo.vocabulary import TRAITS
from syncd import db
from syncd.config import Config
from syncd.core.plan import Plan
from syncd.models import Contact, Membership, TargetState
from syncd.sync.select import Since, chunks, plans
from syncd.sync.state import ListTarget, record_ids, store_stamps

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
    assert selected(news, Since(SINCE), size) == sorted(touched)

    vendors = list_target(engine, "vendors")
    assert selected(vendors, None, size) == sorted(ids)
    # An auto-enrolled list concerns everyone: every change counts.
    changed = {cid for cid, p in ids.items() if p.touched or (p.lists and p.membership_touched)}
    assert selected(vendors, Since(SINCE), size) == sorted(changed)


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
    assert selected(suppliers, Since(SINCE), size) == sorted(concerned & changed)


@pytest.mark.parametrize("name", ["vendors", "suppliers"])
def test_an_auto_enrolled_full_plan_reads_its_ids_once_then_each_chunk_by_its_ids(engine, name):
    """Each chunk of a full plan is found by its ids, not by a condition the database would check
    against the whole list again for every chunk (with a million contacts, each such chunk read
    every vendor and every state of the target)."""
    base = [
        Person(False, (), False, "suppliers:brevo:4" if i % 3 else None, False, "vendor") for i in range(9)
    ]
    ids = seed(engine, base)
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        assert selected(list_target(engine, name), None, 2) == sorted(ids)
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    reads = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert len(reads) == 1 + 5  # the ids, then 5 chunks of at most 2
    assert all("EXISTS" not in s.upper() for s in reads[1:])


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


# --- incremental planning: the database skips exactly the contacts whose stamp holds -------------

LISTS = ("news", "other", "suppliers")
steps = st.one_of(
    st.tuples(st.just("edit"), st.integers(0, 4), st.integers(-90, 90)),
    st.tuples(
        st.just("join"),
        st.integers(0, 4),
        st.sampled_from(LISTS),
        st.sampled_from(["subscribed", "unsubscribed", "pending"]),
        st.integers(-90, 90),
    ),
    st.tuples(st.just("pull"), st.integers(0, 4), st.integers(-90, 90)),
    st.tuples(st.just("pull_elsewhere"), st.integers(0, 4), st.integers(-90, 90)),
    st.tuples(st.just("hold"), st.integers(0, 4)),
    st.tuples(
        st.just("plan"),
    ),
)


class History:
    """A small base and what has changed for each contact since its last stored plan on
    news/brevo:1 (``changed``), written as syncd writes it. Each write's time is the wall clock of
    some writer: up to 90 s off either way, so that a later write may carry an earlier time."""

    def __init__(self, engine, contacts: int):
        self.engine, self.news = engine, list_target(engine, "news")
        self.ids: list[int] = []
        self.members: dict[int, set[str]] = {}
        self.held: set[int] = set()
        self.changed: set[int] = set()
        self.writes = 0
        with engine.begin() as conn:
            for i in range(contacts):
                row = {"email": f"h{i}@example.fr", "tags": [], "attributes": {}, "touched_at": self.clock(0)}
                self.ids.append(
                    conn.execute(sa.insert(Contact.__table__).returning(Contact.id), row).scalar_one()
                )
                self.members[self.ids[-1]] = set()

    def clock(self, skew_s: int) -> datetime:
        self.writes += 1  # two writes never carry the very same time
        return SINCE + timedelta(seconds=skew_s, microseconds=self.writes)

    def apply(self, step: tuple) -> None:
        kind, cid = step[0], self.ids[step[1] % len(self.ids)] if len(step) > 1 else None
        contact, membership, state = Contact.__table__, Membership.__table__, TargetState.__table__
        with self.engine.begin() as conn:
            if kind == "edit":
                conn.execute(
                    contact.update()
                    .where(contact.c.id == cid)
                    .values(first_name=f"W{self.writes}", touched_at=self.clock(step[2]))
                )
                self.changed.add(cid)
            elif kind == "join":
                _, _, name, status, skew = step
                values = {"status": status, "touched_at": self.clock(skew)}
                if name in self.members[cid]:
                    mine = (membership.c.contact_id == cid) & (membership.c.list_name == name)
                    conn.execute(membership.update().where(mine).values(values))
                else:
                    row = {"contact_id": cid, "list_name": name, "since": BEFORE} | values
                    conn.execute(sa.insert(membership), row)
                    self.members[cid].add(name)
                self.changed.add(cid)
            elif kind == "pull" and cid in self.held:
                conn.execute(
                    state.update()
                    .where(*self.news.state_filter(), state.c.contact_id == cid)
                    .values(pulled_at=self.clock(step[2]), remote_status="subscribed")
                )
                self.changed.add(cid)
            elif kind == "pull_elsewhere":  # the same list on another target: no change here
                other = (state.c.contact_id == cid) & (state.c.target_key == "brevo:9")
                if (
                    conn.execute(sa.update(state).where(other).values(pulled_at=self.clock(step[2]))).rowcount
                    == 0
                ):
                    conn.execute(
                        sa.insert(state),
                        {
                            "contact_id": cid,
                            "list_name": "news",
                            "target_key": "brevo:9",
                            "pulled_at": BEFORE,
                        },
                    )
            elif kind == "hold" and cid not in self.held:
                conn.execute(
                    sa.insert(state), {"contact_id": cid, "list_name": "news", "target_key": "brevo:1"}
                )
                self.held.add(cid)
                self.changed.add(cid)

    def plan_and_store(self) -> None:
        """An incremental plan of everything touched since long ago, its stamps stored as a run
        stores them: it must plan exactly the contacts of the list that changed or are new to it."""
        concerned = {cid for cid in self.ids if "news" in self.members[cid] or cid in self.held}
        expected = sorted(concerned & (self.changed | (concerned - self.held)))
        planned, unchanged, stamps = [], 0, {}
        for chunk in plans(self.news, TRAITS, Since(BEFORE - timedelta(days=1))):
            planned += sorted(chunk.stamps)
            unchanged += chunk.unchanged
            stamps |= chunk.stamps
        assert planned == expected
        assert unchanged == len(concerned) - len(expected)
        store_stamps(self.news, {cid: s for cid, s in stamps.items() if cid in self.held})
        self.changed -= set(stamps)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contacts=st.integers(1, 5), history=st.lists(steps, max_size=25))
def test_an_incremental_plan_skips_exactly_the_contacts_unchanged_since_their_stored_plan(
    engine, contacts, history
):
    """Any change counts, whatever its time: the contact's record, a membership of any list
    (exclusivity), a read from the list's target; a read from another target does not."""
    seed(engine, [])
    h = History(engine, contacts)
    for step in [*history, ("plan",)]:
        if step[0] == "plan":
            h.plan_and_store()
        else:
            h.apply(step)
    h.plan_and_store()
    assert not h.changed & {cid for cid in h.ids if "news" in h.members[cid] or cid in h.held}


# --- PostgreSQL: the rows written by the transactions the previous plan could not see -----------

tx_steps = st.one_of(
    st.tuples(st.just("edit"), st.integers(0, 4)),
    st.tuples(st.just("join"), st.integers(0, 4), st.sampled_from(LISTS)),
    st.tuples(st.just("pull"), st.integers(0, 4)),
    st.tuples(st.just("pull_elsewhere"), st.integers(0, 4)),
    st.tuples(st.just("hold"), st.integers(0, 4)),
    st.tuples(st.just("open"), st.integers(0, 4)),
    st.tuples(st.just("commit")),
    st.tuples(st.just("plan")),
)


class Transactions:
    """A small base written as syncd writes it, one transaction a step, and at most one writer
    whose transaction stays open across plans. Every write carries a time long before the plans:
    on PostgreSQL, what selects a contact is its writer's transaction, never a time.

    ``written``: the contacts written by a committed transaction the last plan's snapshot did not
    see; ``stamped``: the held contacts a plan stored a stamp of; ``unstamped``: those written
    since their stamp on news/brevo:1 was stored."""

    LONG_AGO = SINCE - timedelta(days=30)

    def long_ago(self) -> datetime:
        """A write's time: a month before the plans, and never twice the same (a stamp tells two
        writes apart by their times)."""
        return self.LONG_AGO + timedelta(microseconds=next(self.clock))

    def __init__(self, engine, contacts: int):
        self.engine, self.news = engine, list_target(engine, "news")
        self.ids: list[int] = []
        self.members: dict[int, set[str]] = {}
        self.held: set[int] = set()
        self.unstamped: set[int] = set()
        self.stamped: set[int] = set()
        self.written: set[int] = set()
        self.open: tuple[sa.Connection, sa.Transaction, int] | None = None
        self.snapshot: str | None = None
        self.elsewhere, self.clock = itertools.count(10), itertools.count(1)
        with engine.begin() as conn:
            for i in range(contacts):
                row = {"email": f"t{i}@example.fr", "tags": [], "attributes": {}, "touched_at": self.LONG_AGO}
                cid = conn.execute(sa.insert(Contact.__table__).returning(Contact.id), row).scalar_one()
                self.ids.append(cid)
                self.members[cid] = set()
        self.snapshot = db.snapshot(engine)  # as if a first plan had read the base then

    def apply(self, step: tuple) -> None:
        kind = step[0]
        if kind == "plan":
            return self.plan_and_store()
        if kind == "commit":
            return self.commit()
        cid = self.ids[step[1] % len(self.ids)]
        if self.open is not None and self.open[2] == cid:
            return  # the open writer holds the contact's row
        contact, membership, state = Contact.__table__, Membership.__table__, TargetState.__table__
        if kind == "open":
            if self.open is None:
                conn = self.engine.connect()
                tx = conn.begin()
                edit = contact.update().where(contact.c.id == cid)
                conn.execute(edit.values(first_name="open", touched_at=self.long_ago()))
                self.open = (conn, tx, cid)
            return
        with self.engine.begin() as conn:
            if kind == "edit":
                edit = contact.update().where(contact.c.id == cid)
                conn.execute(edit.values(first_name="edit", touched_at=self.long_ago()))
            elif kind == "join" and step[2] not in self.members[cid]:
                row = {"contact_id": cid, "list_name": step[2], "status": "subscribed"}
                conn.execute(
                    sa.insert(membership), row | {"since": self.LONG_AGO, "touched_at": self.long_ago()}
                )
                self.members[cid].add(step[2])
            elif kind == "pull" and cid in self.held:
                mine = sa.and_(*self.news.state_filter(), state.c.contact_id == cid)
                conn.execute(state.update().where(mine).values(pulled_at=self.long_ago()))
            elif kind == "pull_elsewhere":  # the same list on another target: nothing for brevo:1
                conn.execute(
                    sa.insert(state),
                    {
                        "contact_id": cid,
                        "list_name": "news",
                        "target_key": f"brevo:{next(self.elsewhere)}",
                        "pulled_at": self.LONG_AGO,
                    },
                )
                return
            elif kind == "hold" and cid not in self.held:  # a push's state: no read, no write of the contact
                conn.execute(
                    sa.insert(state), {"contact_id": cid, "list_name": "news", "target_key": "brevo:1"}
                )
                self.held.add(cid)
                return
            else:
                return
        self.written.add(cid)
        self.unstamped.add(cid)

    def commit(self) -> None:
        if self.open is not None:
            conn, tx, cid = self.open
            tx.commit()
            conn.close()
            self.open = None
            self.written.add(cid)
            self.unstamped.add(cid)

    def plan_and_store(self) -> None:
        """A plan as a run makes it: its snapshot first, then the rows written since the previous
        plan's snapshot, less the contacts whose stamp holds; the stamps of the held stored."""
        concerned = {cid for cid in self.ids if "news" in self.members[cid] or cid in self.held}
        expected = sorted(concerned & self.written & (self.unstamped | (concerned - self.stamped)))
        snapshot = db.snapshot(self.engine)
        planned, stamps = [], {}
        for chunk in plans(self.news, TRAITS, Since(SINCE, self.snapshot)):
            planned += sorted(chunk.stamps)
            stamps |= chunk.stamps
        assert planned == expected
        store_stamps(self.news, {cid: s for cid, s in stamps.items() if cid in self.held})
        self.stamped |= {cid for cid in stamps if cid in self.held}
        self.unstamped -= {cid for cid in stamps if cid in self.held}
        self.snapshot, self.written = snapshot, set()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contacts=st.integers(1, 5), history=st.lists(tx_steps, max_size=25))
# A writer whose transaction was open across a plan, while a later one committed before that plan.
@example(
    contacts=2,
    history=[("join", 0, "news"), ("plan",), ("open", 0), ("edit", 1), ("plan",), ("commit",), ("plan",)],
)
@example(
    contacts=2, history=[("hold", 0), ("edit", 0), ("plan",), ("open", 0), ("join", 1, "other"), ("plan",)]
)
def test_on_postgresql_a_plan_selects_exactly_the_writes_its_previous_plan_could_not_see(
    engine, contacts, history
):
    """A write whose transaction was open while a plan read the base is planned by the next plan,
    however long it stayed open and whatever time it carries; a write the previous plan saw is
    not looked at again (a base imported before a first push costs the next run nothing)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite plans by time: one writer at a time")
    seed(engine, [])
    t = Transactions(engine, contacts)
    note(f"{contacts=} {history=}")
    try:
        for step in history:
            t.apply(step)
        t.commit()
        t.plan_and_store()
        t.plan_and_store()
        assert not t.unstamped & t.stamped, "a held contact changed and was never planned"
    finally:
        t.commit()


def test_on_postgresql_every_write_of_a_contact_or_membership_keeps_its_transaction(engine):
    """The ORM (which names every column), plain inserts (which leave it out) and updates: the
    database sets the writer's transaction whatever the path, so no write escapes the next plan."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite plans by time: one writer at a time")
    with Session(engine) as s:
        orm = Contact(email="orm@example.fr")
        s.add(orm)
        s.flush()
        s.add(Membership(contact_id=orm.id, list_name="news", status="subscribed"))
        s.commit()
        orm_id = orm.id
    contact, membership, state = Contact.__table__, Membership.__table__, TargetState.__table__
    with engine.begin() as conn:
        core = conn.execute(
            sa.insert(contact).returning(contact.c.id),
            {"email": "core@example.fr", "tags": [], "attributes": {}},
        ).scalar_one()
        conn.execute(sa.insert(membership), {"contact_id": core, "list_name": "news", "status": "subscribed"})
        pushed = {"contact_id": core, "list_name": "news", "target_key": "brevo:1"}  # never read
        conn.execute(sa.insert(state), pushed)
        read = {"contact_id": orm_id, "list_name": "news", "target_key": "brevo:1", "pulled_at": BEFORE}
        conn.execute(sa.insert(state), read)
        written = conn.exec_driver_sql("SELECT pg_current_xact_id()::text::bigint").scalar_one()
    with engine.connect() as conn:
        xids = dict(conn.execute(sa.select(contact.c.id, contact.c.touched_xid)).all())
        members = dict(conn.execute(sa.select(membership.c.contact_id, membership.c.touched_xid)).all())
        pulled = dict(conn.execute(sa.select(state.c.contact_id, state.c.pulled_xid)).all())
    assert (xids[core], members[core], pulled[orm_id]) == (written,) * 3
    assert xids[orm_id] is not None and members[orm_id] is not None
    assert pulled[core] is None  # a push's state was not read from the target

    with engine.begin() as conn:
        conn.execute(contact.update().where(contact.c.id == orm_id).values(first_name="New"))
        conn.execute(state.update().where(state.c.contact_id == core).values(remote_status="subscribed"))
        updated = conn.exec_driver_sql("SELECT pg_current_xact_id()::text::bigint").scalar_one()
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(contact.c.touched_xid).where(contact.c.id == orm_id)).scalar() == updated
        )
        # A push's update of the state does not make it read.
        assert conn.execute(sa.select(state.c.pulled_xid).where(state.c.contact_id == core)).scalar() is None


def test_on_postgresql_a_snapshot_of_another_server_or_ahead_of_this_one_is_not_used(engine):
    """A base restored from a dump into another cluster counts transactions afresh: a snapshot
    stored before the move would hide every later write from incremental plans. Such a snapshot
    is set aside, and the plan falls back to times (the run then stores a snapshot of this server)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("snapshots are PostgreSQL's")
    now = db.snapshot(engine)
    server, taken = now.split("/", 1)
    xmin, xmax, _ = taken.split(":")
    assert db.snapshot_here(engine, now) == now
    assert db.snapshot_here(engine, f"{int(server) + 1}/{taken}") is None
    assert db.snapshot_here(engine, f"{server}/{xmin}:{int(xmax) + 1_000_000}:") is None
    assert db.snapshot_here(engine, None) is None


def test_on_postgresql_a_server_that_will_not_tell_its_snapshot_plans_by_time(engine, monkeypatch):
    """A managed server may refuse ``pg_control_system()`` to syncd's role: the run goes on, and
    its plans select by time as on SQLite (a real refusal of the server: an unknown function)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("snapshots are PostgreSQL's")
    monkeypatch.setattr(db, "_SNAPSHOT_NOW", "SELECT syncd_no_such_function()::text")
    assert db.snapshot(engine) is None
    assert db.snapshot_here(engine, "1/10:20:") is None


@pytest.mark.parametrize("own_first", [True, False])
def test_a_records_id_is_the_one_its_own_target_holds_whatever_the_row_order(engine, own_first):
    """Two Brevo lists hold a contact under two records (a push under a former address crossed a
    change of address): the rename of the record ``other`` holds starts from ``other``'s own id,
    however the database happens to return the rows (it once took whichever came last)."""
    with Session(engine) as s:
        c = Contact(email="ana@example.fr")
        s.add(c)
        s.flush()
        rows = [("other", "brevo:2", "22"), ("news", "brevo:1", "11")]
        for list_name, key, remote_id in rows if own_first else rows[::-1]:
            s.add(TargetState(contact_id=c.id, list_name=list_name, target_key=key, remote_id=remote_id))
        s.commit()
        cid = c.id
    assert record_ids(list_target(engine, "other"), [cid]) == {cid: "22"}
    assert record_ids(list_target(engine, "news"), [cid]) == {cid: "11"}
