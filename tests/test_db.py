import threading
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


def test_the_engine_bounds_connect_statement_and_pool_waits(database_url):
    engine = db.make_engine(database_url, timeouts=db.Timeouts(connect=3, statement=7, pool_checkout=4))
    try:
        assert engine.pool.timeout() == 4
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "7s"
                params = conn.connection.dbapi_connection.info.get_parameters()
                assert (params["connect_timeout"], params["tcp_user_timeout"]) == ("3", "3000")
            else:
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 7000
    finally:
        engine.dispose()


def test_a_statement_past_the_statement_timeout_is_cancelled(database_url, engine):
    quick = db.make_engine(database_url, timeouts=db.Timeouts(statement=1))
    try:
        if quick.dialect.name == "postgresql":
            with pytest.raises(sa.exc.OperationalError, match="statement timeout"), quick.connect() as conn:
                conn.exec_driver_sql("SELECT pg_sleep(5)")
        else:  # SQLite: a writer waits for another writer's lock no longer than the timeout
            with engine.begin() as holder:
                holder.exec_driver_sql("DELETE FROM auditlog")  # takes the write lock
                with pytest.raises(sa.exc.OperationalError, match="locked"), quick.begin() as conn:
                    conn.exec_driver_sql("DELETE FROM auditlog")
    finally:
        quick.dispose()


def test_a_connection_string_in_libpq_or_heroku_form_is_postgresql_through_psycopg():
    for url in ("postgres://syncd@db.internal/syncd", "postgresql://syncd@db.internal/syncd"):
        engine = db.make_engine(url)
        assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")


@pytest.mark.parametrize("url", ["nosuch://x/y", "mysql://u:hunter2-pw@h/db", "not a url"])
def test_a_database_url_syncd_cannot_use_is_refused_with_the_forms_it_takes(url):
    with pytest.raises(db.DatabaseURLError) as info:
        db.make_engine(url)
    assert "sqlite:///path/to/syncd.db or postgresql+psycopg://" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_a_deadlock_postgresql_breaks_and_a_duplicate_key_are_races_lost_anything_else_is_not(engine):
    with db.session_scope(engine) as s:
        s.add_all([Contact(email="a@example.fr"), Contact(email="b@example.fr")])
    with pytest.raises(sa.exc.IntegrityError) as duplicate:
        with db.session_scope(engine) as s:
            s.add(Contact(email="a@example.fr"))
    assert db.lost_a_race(duplicate.value)
    with pytest.raises(sa.exc.DBAPIError) as other:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT * FROM no_such_table_here"))
    assert not db.lost_a_race(other.value)
    if engine.dialect.name != "postgresql":
        return  # SQLite locks the whole file: no deadlock between transactions
    # Two transactions lock the same two rows in opposite orders: PostgreSQL ends one of them.
    with Session(engine) as s:
        ids = [c.id for c in s.exec(select(Contact).order_by(Contact.id))]
    first_locked, second_locked = threading.Barrier(2), []
    errors: list[BaseException] = []

    def lock(order: list[int]) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE contact SET city = 'x' WHERE id = :id"), {"id": order[0]})
                first_locked.wait(timeout=10)
                conn.execute(sa.text("UPDATE contact SET city = 'y' WHERE id = :id"), {"id": order[1]})
                second_locked.append(order)
        except sa.exc.DBAPIError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=lock, args=(order,)) for order in (ids, ids[::-1])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(errors) == 1 and len(second_locked) == 1, (errors, second_locked)
    assert db.lost_a_race(errors[0])
