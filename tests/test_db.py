from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from syncd import db
from syncd.models import Contact, Membership


def test_migrations_reach_head(engine):
    assert db.current_revision(engine) == db.head_revision()


def test_every_table_of_the_model_exists(engine):
    names = set(sa.inspect(engine).get_table_names())
    assert {
        "contact",
        "source",
        "consent",
        "membership",
        "targetstate",
        "flag",
        "inboxevent",
        "syncrun",
        "auditlog",
        "tombstone",
        "synccursor",
    } <= names


def test_datetimes_come_back_aware_utc(engine):
    with db.session_scope(engine) as s:
        s.add(Contact(email="a@example.fr", opt_out_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC)))
    with Session(engine) as s:
        c = s.exec(select(Contact)).one()
        assert c.opt_out_at == datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
        assert c.created_at.tzinfo is not None


def test_email_is_unique(engine):
    with db.session_scope(engine) as s:
        s.add(Contact(email="a@example.fr"))
    with pytest.raises(sa.exc.IntegrityError), db.session_scope(engine) as s:
        s.add(Contact(email="a@example.fr"))


def test_a_failed_transaction_leaves_nothing_half_written(engine):
    with pytest.raises(RuntimeError), db.session_scope(engine) as s:
        c = Contact(email="b@example.fr")
        s.add(c)
        s.flush()
        s.add(Membership(contact_id=c.id, list_name="news", status="subscribed"))
        raise RuntimeError("crash mid-batch")
    with Session(engine) as s:
        assert s.exec(select(Contact)).all() == []
        assert s.exec(select(Membership)).all() == []


def test_deleting_a_contact_cascades_to_its_memberships(engine):
    with db.session_scope(engine) as s:
        c = Contact(email="c@example.fr")
        s.add(c)
        s.flush()
        s.add(Membership(contact_id=c.id, list_name="news", status="subscribed"))
    with db.session_scope(engine) as s:
        s.delete(s.exec(select(Contact)).one())
    with Session(engine) as s:
        assert s.exec(select(Membership)).all() == []


def test_naive_datetimes_are_refused(engine):
    with pytest.raises(sa.exc.StatementError), db.session_scope(engine) as s:
        s.add(Contact(email="d@example.fr", opt_out_at=datetime(2026, 1, 1)))
        s.flush()
