"""The team console: sign-in, sessions, CSRF, sign-in limits, and for every POST route the roles
allowed (the change is made) and refused (403, the base unchanged), on the real app and base."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, SQLModel, select
from starlette.testclient import TestClient
from webfixtures import BREVO_SECRET, BREVO_TOKEN, make_config

from syncd import hygiene, timeline
from syncd.membership import join_list
from syncd.models import AuditLog, ConsoleUser, Contact, Flag, Membership, utcnow
from syncd.users import create_user
from syncd.web import console
from syncd.web.app import create_app

PASSWORD = "a long enough password"
ROLES = ("read-only", "standard", "admin")
USERS = {role: f"{role.replace('-', '')}@team.example" for role in ROLES}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SEGMENTED = {"news": {"segment": {"kind": ["client"]}}}


@pytest.fixture
def config():
    # news takes clients only: a vendor in it is a wrong-list flag.
    return make_config(lists=SEGMENTED)


@pytest.fixture
def users(engine):
    for role, email in USERS.items():
        create_user(engine, email, role, PASSWORD, actor="test")
    return USERS


@pytest.fixture
def app(engine, config):
    return create_app(config, engine)


def client_for(app, **kw) -> TestClient:
    return TestClient(app, follow_redirects=False, **kw)


def login_form(client: TestClient) -> str:
    page = client.get("/console/login")
    assert page.status_code == 200
    return CSRF.search(page.text).group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD):
    token = login_form(client)
    return client.post("/console/login", data={"email": email, "password": password, "csrf_token": token})


def signed_in(app, role: str) -> tuple[TestClient, str]:
    """A client signed in as ``role``, and its session's CSRF token."""
    client = client_for(app)
    r = sign_in(client, USERS[role])
    assert r.status_code == 303 and r.headers["location"] == "/console/lists"
    page = client.get("/console/lists")
    assert page.status_code == 200
    return client, CSRF.search(page.text).group(1)


def add_person(engine, config, email: str, kind: str, lists: tuple[str, ...] = ()) -> int:
    with Session(engine) as s:
        c = Contact(email=email, kind=kind)
        s.add(c)
        s.flush()
        for name in lists:
            join_list(s, c, name, config.list(name), consent="single_opt_in", source="test")
        s.commit()
        return c.id


def snapshot(engine) -> dict[str, list]:
    """Every row of every table but the users' (sign-ins write there): what a refusal must leave."""
    out = {}
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            if table.name != ConsoleUser.__tablename__:
                out[table.name] = sorted(map(tuple, conn.execute(sa.select(table))), key=repr)
    return out


def flag_for(engine, config, email="vera@example.fr") -> tuple[int, int]:
    """A vendor in the clients-only news list, flagged by the real scan: (contact id, flag id)."""
    cid = add_person(engine, config, email, "vendor", ("news",))
    hygiene.scan(engine, config, ["news"])
    with Session(engine) as s:
        flag = s.exec(select(Flag).where(Flag.contact_id == cid, Flag.resolved_at.is_(None))).one()
        return cid, flag.id


def audit_actions(engine, actor: str) -> list[str]:
    """What ``actor`` changed, their sign-ins aside."""
    with Session(engine) as s:
        query = select(AuditLog.action).where(AuditLog.actor == actor, AuditLog.action != console.SIGN_IN)
        return list(s.exec(query.order_by(AuditLog.id)))


# --- every POST route of the console: (name, allowed roles, set-up, path, form, check when done) ----


def _resolve(how):
    def setup(engine, config):
        _, flag_id = flag_for(engine, config)
        return f"/console/flags/{flag_id}/resolve", {"how": how}

    return setup


def _on_contact(action, form):
    def setup(engine, config):
        add_person(engine, config, "ana@example.fr", "client", ("news",))
        return f"/console/contacts/ana@example.fr/{action}", form

    return setup


def _membership(engine, email, list_name):
    with Session(engine) as s:
        return s.exec(
            select(Membership.status)
            .join(Contact, Contact.id == Membership.contact_id)
            .where(Contact.email == email, Membership.list_name == list_name)
        ).first()


def _contact(engine, email):
    with Session(engine) as s:
        return s.exec(select(Contact).where(Contact.email == email)).first()


def _check_removed(engine, role):
    assert _membership(engine, "vera@example.fr", "news") == "unsubscribed"
    assert audit_actions(engine, f"console:{USERS[role]}")[-1] == "flag.removed"


def _check_accepted(engine, role):
    with Session(engine) as s:
        assert s.exec(select(Flag).where(Flag.resolved_at.is_(None))).all() == []
    assert _membership(engine, "vera@example.fr", "news") == "subscribed"
    assert audit_actions(engine, f"console:{USERS[role]}") == ["flag.accepted"]


def _check_edited(engine, role):
    ana = _contact(engine, "ana@example.fr")
    assert (ana.company, ana.phone, ana.tags) == ("Acme", "+33612345678", ["vip"])
    assert audit_actions(engine, f"console:{USERS[role]}") == ["contact.updated"] * 3


def _check_subscribed(engine, role):
    assert _membership(engine, "ana@example.fr", "offers") == "subscribed"
    assert "list.subscribed" in audit_actions(engine, f"console:{USERS[role]}")


def _check_unsubscribed(engine, role):
    assert _membership(engine, "ana@example.fr", "news") == "unsubscribed"
    assert audit_actions(engine, f"console:{USERS[role]}") == ["list.unsubscribed"]


def _check_forgotten(engine, role):
    assert _contact(engine, "ana@example.fr") is None
    assert audit_actions(engine, f"console:{USERS[role]}") == ["contact.forgotten"]


POSTS = [
    ("resolve-remove", ("standard", "admin"), _resolve("remove"), _check_removed),
    ("resolve-accept", ("standard", "admin"), _resolve("accept"), _check_accepted),
    (
        "edit",
        ("standard", "admin"),
        _on_contact("edit", {"company": "Acme", "phone": "06 12 34 56 78", "tags_add": "VIP"}),
        _check_edited,
    ),
    (
        "subscribe",
        ("standard", "admin"),
        _on_contact("subscribe", {"list": "offers", "evidence": "signed up at the fair, 2026-11-02"}),
        _check_subscribed,
    ),
    (
        "unsubscribe",
        ("standard", "admin"),
        _on_contact("unsubscribe", {"list": "news", "reason": "asked on the phone"}),
        _check_unsubscribed,
    ),
    ("forget", ("admin",), _on_contact("forget", {"confirm": "ana@example.fr"}), _check_forgotten),
]


def _check_noted(engine, role):
    with Session(engine) as s:
        entries = timeline.timeline(s, "ana@example.fr")
    assert [(e.summary, e.actor) for e in entries if e.kind == "note"] == [
        ("phone note: called back about the fair", f"console:{USERS[role]}")
    ]
    assert audit_actions(engine, f"console:{USERS[role]}") == ["contact.note_added"]


POSTS.append(
    (
        "note",
        ("standard", "admin"),
        _on_contact("note", {"channel": "phone", "summary": "called back about the fair"}),
        _check_noted,
    )
)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "allowed", "setup", "check"), POSTS, ids=[p[0] for p in POSTS])
def test_each_post_is_done_for_the_roles_allowed_and_refused_with_nothing_changed_otherwise(
    app, engine, config, users, role, name, allowed, setup, check
):
    path, form = setup(engine, config)
    client, token = signed_in(app, role)
    before = snapshot(engine)
    r = client.post(path, data={**form, "csrf_token": token})
    if role in allowed:
        assert r.status_code in (200, 303), (r.status_code, r.text)
        check(engine, role)
    else:
        assert r.status_code == 403
        assert snapshot(engine) == before


@pytest.mark.parametrize(("name", "allowed", "setup", "check"), POSTS, ids=[p[0] for p in POSTS])
@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_a_post_without_this_sessions_csrf_token_is_refused_and_changes_nothing(
    app, engine, config, users, name, allowed, setup, check, token
):
    path, form = setup(engine, config)
    client, _ = signed_in(app, "admin")
    before = snapshot(engine)
    data = form if token is None else {**form, "csrf_token": token}
    assert client.post(path, data=data).status_code == 403
    assert snapshot(engine) == before


def test_another_sessions_csrf_token_is_refused(app, engine, config, users):
    path, form = _on_contact("unsubscribe", {"list": "news"})(engine, config)
    mine, _ = signed_in(app, "admin")
    _, theirs = signed_in(app, "standard")
    assert mine.post(path, data={**form, "csrf_token": theirs}).status_code == 403
    assert _membership(engine, "ana@example.fr", "news") == "subscribed"


def test_logout_needs_the_csrf_token_and_ends_the_session(app, users):
    client, token = signed_in(app, "standard")
    assert client.post("/console/logout", data={"csrf_token": "wrong"}).status_code == 403
    assert client.get("/console/lists").status_code == 200
    r = client.post("/console/logout", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert client.get("/console/lists").status_code == 303


def test_a_session_cookie_replayed_after_logout_is_refused(app, users):
    client, token = signed_in(app, "admin")
    stolen = client.cookies.get(console.SESSION_COOKIE)
    client.post("/console/logout", data={"csrf_token": token})
    replay = client_for(app, cookies={console.SESSION_COOKIE: stolen})
    assert replay.get("/console/lists").status_code == 303


def test_the_sign_in_form_needs_its_csrf_token(app, users):
    client = client_for(app)
    login_form(client)
    r = client.post("/console/login", data={"email": USERS["admin"], "password": PASSWORD, "csrf_token": "x"})
    assert r.status_code == 403 and console.SESSION_COOKIE not in r.cookies


GETS = [
    "/console",
    "/console/lists",
    "/console/flags",
    "/console/contacts",
    "/console/contacts?q=ana",
    "/console/contacts/ana@example.fr",
    "/console/contacts/ana@example.fr/forget",
    "/console/export/consent.csv",
    "/console/export/contacts.csv",
]


@pytest.mark.parametrize("path", GETS)
def test_signed_out_every_console_page_redirects_to_sign_in(app, engine, config, path):
    add_person(engine, config, "ana@example.fr", "client", ("news",))
    r = client_for(app).get(path)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"


def test_signed_out_a_post_redirects_to_sign_in_and_changes_nothing(app, engine, config):
    path, form = _on_contact("unsubscribe", {"list": "news"})(engine, config)
    before = snapshot(engine)
    r = client_for(app).post(path, data={**form, "csrf_token": "anything"})
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert snapshot(engine) == before


@pytest.mark.parametrize("role", ROLES)
def test_admin_only_pages_answer_403_to_the_other_roles(app, engine, config, users, role):
    add_person(engine, config, "ana@example.fr", "client", ("news",))
    client, _ = signed_in(app, role)
    for path in GETS[-3:]:
        assert client.get(path).status_code == (200 if role == "admin" else 403), path


def test_a_disabled_user_is_signed_out_at_the_next_request(app, engine, users):
    client, _ = signed_in(app, "standard")
    with engine.begin() as conn:
        conn.execute(sa.update(ConsoleUser.__table__).values(disabled=True))
    assert client.get("/console/lists").status_code == 303


# --- sign-in limits and the cookie ------------------------------------------------------------------


def test_five_wrong_passwords_lock_the_account_for_fifteen_minutes(app, engine, users):
    client = client_for(app)
    for _ in range(console.MAX_FAILURES):
        assert sign_in(client, USERS["standard"], "not the password").status_code == 401
    r = sign_in(client, USERS["standard"])  # the right password, too late
    assert r.status_code == 429 and console.SESSION_COOKIE not in r.cookies
    with Session(engine) as s:
        user = s.exec(select(ConsoleUser).where(ConsoleUser.email == USERS["standard"])).one()
        locked = user.locked_until.replace(tzinfo=None) - utcnow().replace(tzinfo=None)
        assert timedelta(minutes=14) < locked <= timedelta(minutes=15)
    assert sign_in(client_for(app), USERS["admin"]).status_code == 303  # other accounts unaffected
    with engine.begin() as conn:  # the lock has run out
        conn.execute(sa.update(ConsoleUser.__table__).values(locked_until=utcnow() - timedelta(seconds=1)))
    assert sign_in(client, USERS["standard"]).status_code == 303


def test_a_correct_password_resets_the_count_of_failures(app, engine, users):
    client = client_for(app)
    for _ in range(console.MAX_FAILURES - 1):
        sign_in(client, USERS["standard"], "not the password")
    assert sign_in(client, USERS["standard"]).status_code == 303
    with Session(engine) as s:
        user = s.exec(select(ConsoleUser).where(ConsoleUser.email == USERS["standard"])).one()
        assert (user.failed_logins, user.locked_until) == (0, None) and user.last_login_at is not None


def test_one_address_is_held_back_after_too_many_failures_whatever_the_accounts(app, users):
    attacker = client_for(app, client=("203.0.113.7", 4000))
    for n in range(console.IP_FAILURES):
        assert sign_in(attacker, f"guess{n}@team.example", "guess").status_code == 401
    assert sign_in(attacker, USERS["admin"]).status_code == 429
    assert sign_in(client_for(app, client=("198.51.100.1", 4000)), USERS["admin"]).status_code == 303


# --- sign-ins in the audit trail ---------------------------------------------------------------------


def sign_ins(engine) -> list[tuple[str, str, int | None, dict]]:
    with Session(engine) as s:
        rows = s.exec(
            select(AuditLog)
            .where(AuditLog.action.in_([console.SIGN_IN, console.SIGN_IN_FAILED]))
            .order_by(AuditLog.id)
        )
        return [(a.actor, a.action, a.contact_id, a.detail) for a in rows]


def everything_audited(engine) -> str:
    with Session(engine) as s:
        return json.dumps(
            [(a.actor, a.action, a.detail) for a in s.exec(select(AuditLog))], ensure_ascii=False
        )


def refused(reason: str, ip: str = "unknown", user: str | None = None):
    """A refusal as audited (the test client has no IP address: "unknown")."""
    detail = {"reason": reason, **({"user": user} if user else {}), "ip": ip}
    return ("console:anonymous", "console.sign_in_failed", None, detail)


def test_a_sign_in_is_audited_by_its_user_about_no_contact(app, engine, users):
    signed_in(app, "standard")
    assert sign_ins(engine) == [
        (
            f"console:{USERS['standard']}",
            "console.sign_in",
            None,
            {"user": USERS["standard"], "ip": "unknown"},
        )
    ]
    assert PASSWORD not in everything_audited(engine)


def test_a_sign_in_as_nobody_is_audited_without_what_was_typed(app, engine, users):
    typed = "Zoe.Secret-Name@Team.Example"
    assert sign_in(client_for(app), typed, "zoe's very own password").status_code == 401
    assert sign_in(client_for(app), "not even an address", "").status_code == 401
    assert sign_ins(engine) == [refused("unknown_account"), refused("unknown_account")]
    audited = everything_audited(engine).lower()
    assert "zoe" not in audited and "secret" not in audited and "not even" not in audited


def test_a_wrong_password_is_audited_with_the_users_address_never_the_password(app, engine, users):
    typed = f"  {USERS['standard'].upper()} "
    assert sign_in(client_for(app), typed, "my old password 1234").status_code == 401
    assert sign_ins(engine) == [refused("wrong_password", user=USERS["standard"])]
    assert "1234" not in everything_audited(engine)


def test_a_disabled_account_is_audited_as_such(app, engine, users):
    with engine.begin() as conn:
        conn.execute(
            sa.update(ConsoleUser.__table__).where(ConsoleUser.email == USERS["admin"]).values(disabled=True)
        )
    assert sign_in(client_for(app), USERS["admin"]).status_code == 401
    assert sign_ins(engine) == [refused("disabled_account", user=USERS["admin"])]
    assert PASSWORD not in everything_audited(engine)


def test_a_locked_account_is_audited_at_each_attempt(app, engine, users):
    client = client_for(app)
    for _ in range(console.MAX_FAILURES):
        sign_in(client, USERS["standard"], "not the password")
    assert sign_in(client, USERS["standard"]).status_code == 429  # the right password, too late
    assert sign_in(client, USERS["standard"], "another guess").status_code == 429
    assert (
        sign_ins(engine)
        == [refused("wrong_password", user=USERS["standard"])] * console.MAX_FAILURES
        + [refused("locked_account", user=USERS["standard"])] * 2
    )
    assert PASSWORD not in everything_audited(engine) and "another guess" not in everything_audited(engine)


def test_a_held_back_address_is_audited_once_per_window(app, engine, users):
    attacker = client_for(app, client=("203.0.113.7", 4000))
    for n in range(console.IP_FAILURES - 1):
        assert sign_in(attacker, f"guess{n}@team.example", "guess").status_code == 401
    assert sign_in(attacker, USERS["admin"], "guess").status_code == 401  # the last one let through
    for who in (USERS["admin"], "guess99@team.example", USERS["standard"]):
        assert sign_in(attacker, who, PASSWORD).status_code == 429
    ip = "203.0.113.7"
    assert sign_ins(engine) == [refused("unknown_account", ip)] * (console.IP_FAILURES - 1) + [
        refused("wrong_password", ip, USERS["admin"]),
        refused("address_held_back", ip, USERS["admin"]),  # the first refusal only: the others cost nothing
    ]
    assert PASSWORD not in everything_audited(engine) and "guess99" not in everything_audited(engine)


def test_a_held_back_address_is_audited_again_in_its_next_window():
    now = [0.0]
    limit = console.AddressLimit(limit=2, window_s=60, clock=lambda: now[0])
    assert [limit.first_refusal("203.0.113.7") for _ in range(3)] == [True, False, False]
    assert limit.first_refusal("198.51.100.1") is True  # another address, its own window
    now[0] = 61.0
    assert [limit.first_refusal("203.0.113.7") for _ in range(2)] == [True, False]


def test_a_lock_counts_against_the_address_too(app, users):
    client = client_for(app, client=("203.0.113.8", 4000))
    for _ in range(console.MAX_FAILURES):
        sign_in(client, USERS["standard"], "not the password")
    for _ in range(console.IP_FAILURES - console.MAX_FAILURES):
        assert sign_in(client, USERS["standard"]).status_code == 429  # locked
    assert sign_in(client, USERS["admin"]).status_code == 429  # held back: another account, same address
    assert sign_in(client_for(app, client=("198.51.100.2", 4000)), USERS["admin"]).status_code == 303


def test_sign_ins_are_on_no_contacts_timeline(app, engine, config, users):
    """A console user who is also a contact: their sign-ins are not things that happened to the contact."""
    add_person(engine, config, USERS["standard"], "client", ("news",))
    before = timeline.timeline(engine, USERS["standard"])
    sign_in(client_for(app), USERS["standard"], "not the password")
    client, _ = signed_in(app, "standard")
    assert [a for _, a, _, _ in sign_ins(engine)] == ["console.sign_in_failed", "console.sign_in"]
    assert timeline.timeline(engine, USERS["standard"]) == before
    page = client.get(f"/console/contacts/{USERS['standard']}?lang=en").text
    assert "sign in" not in page and "sign_in" not in page and "anonymous" not in page


def test_the_session_cookie_is_httponly_samesite_lax_and_secure_over_https(app, users):
    r = sign_in(client_for(app), USERS["admin"])
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/console" in cookie
    assert "secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    r = sign_in(client_for(app, base_url="https://testserver"), USERS["admin"])
    assert "secure" in r.headers["set-cookie"].lower()


@pytest.mark.parametrize(("trusted", "secure"), [(["127.0.0.1"], True), ([], False)])
def test_a_trusted_proxys_https_makes_the_cookie_secure(engine, users, trusted, secure):
    app = create_app(make_config(lists=SEGMENTED, server={"trusted_proxies": trusted}), engine)
    client = client_for(app, client=("127.0.0.1", 5000), headers={"X-Forwarded-Proto": "https"})
    r = client.get("/console/login")  # its cookie (the form's token) is set as the session's is
    assert r.status_code == 200
    assert ("secure" in r.headers["set-cookie"].lower()) is secure


# --- what the pages show and do -------------------------------------------------------------------


def test_lists_page_shows_runs_members_flags_and_pending_in_both_languages(app, engine, config, users):
    flag_for(engine, config)
    client, _ = signed_in(app, "read-only")
    en = client.get("/console/lists?lang=en").text
    assert "Newsletter (news)" in en and "subscribed 1" in en and "Open flags: 1" in en
    assert "never synced" in en and "Pending confirmations" in en
    fr = client.get("/console/lists", headers={"Accept-Language": "fr"}).text
    assert "Signalements ouverts\u00a0: 1" in fr and "jamais synchronisée" in fr


def test_no_page_shows_a_secret(app, engine, config, users):
    flag_for(engine, config)
    client, _ = signed_in(app, "admin")
    pages = ["/console/lists", "/console/flags", "/console/contacts/vera@example.fr", "/console/contacts?q=v"]
    for path in pages:
        text = client.get(path).text
        for secret in (BREVO_SECRET, BREVO_TOKEN, "sim-key", "doi-signing-secret"):
            assert secret not in text, (path, secret)


def test_flags_page_filters_by_list_and_rule_and_offers_resolution_to_standard_only(
    app, engine, config, users
):
    flag_for(engine, config)
    ro, _ = signed_in(app, "read-only")
    page = ro.get("/console/flags?list=news&rule=not_in_segment&lang=en").text
    assert "vera@example.fr" in page and "Take off the list" not in page
    assert "vera@example.fr" not in ro.get("/console/flags?list=offers").text
    assert "vera@example.fr" not in ro.get("/console/flags?rule=exclusive").text
    std, _ = signed_in(app, "standard")
    page = std.get("/console/flags?lang=en").text
    assert "Take off the list" in page and "Accept the exception" in page


def test_an_accepted_flag_is_not_raised_again_by_the_next_scan(app, engine, config, users):
    _, flag_id = flag_for(engine, config)
    client, token = signed_in(app, "standard")
    client.post(f"/console/flags/{flag_id}/resolve", data={"how": "accept", "csrf_token": token})
    hygiene.scan(engine, config, ["news"])
    with Session(engine) as s:
        assert s.exec(select(Flag).where(Flag.resolved_at.is_(None))).all() == []
    flag_for(engine, config, "walt@example.fr")  # another contact's flag still comes up


def test_resolving_a_flag_already_closed_says_so_and_changes_nothing(app, engine, config, users):
    _, flag_id = flag_for(engine, config)
    client, token = signed_in(app, "standard")
    client.post(f"/console/flags/{flag_id}/resolve", data={"how": "accept", "csrf_token": token})
    before = snapshot(engine)
    r = client.post(f"/console/flags/{flag_id}/resolve", data={"how": "remove", "csrf_token": token})
    assert r.status_code == 409 and snapshot(engine) == before


def test_contact_search_by_address_name_company_and_tag(app, engine, config, users):
    with Session(engine) as s:
        s.add(
            Contact(email="ana@example.fr", first_name="Ana", last_name="Lopez", company="Acme", tags=["vip"])
        )
        s.add(Contact(email="bob@example.fr", first_name="Bob", company="Other", tags=["salon"]))
        s.commit()
    client, _ = signed_in(app, "read-only")
    for field, q in (("email", "ANA@"), ("name", "lopez"), ("company", "acm"), ("tag", "VIP")):
        page = client.get("/console/contacts", params={"q": q, "field": field}).text
        assert "ana@example.fr" in page and "bob@example.fr" not in page, field
    assert "No contact found" in client.get("/console/contacts?q=zzz&lang=en").text


def test_an_edit_refused_by_qualification_names_the_field_and_changes_nothing(app, engine, config, users):
    path, _ = _on_contact("edit", {})(engine, config)
    client, token = signed_in(app, "standard")
    before = snapshot(engine)
    r = client.post(path, data={"phone": "not a phone", "csrf_token": token})
    assert r.status_code == 400 and "phone" in r.text
    assert snapshot(engine) == before


def test_subscribing_without_consent_evidence_is_refused(app, engine, config, users):
    path, _ = _on_contact("subscribe", {})(engine, config)
    client, token = signed_in(app, "standard")
    before = snapshot(engine)
    r = client.post(path + "?lang=en", data={"list": "offers", "csrf_token": token})
    assert r.status_code == 400 and "needs consent" in r.text
    assert snapshot(engine) == before


def test_erasure_needs_the_address_typed_again(app, engine, config, users):
    add_person(engine, config, "ana@example.fr", "client", ("news",))
    client, token = signed_in(app, "admin")
    form = client.get("/console/contacts/ana@example.fr/forget?lang=en")
    assert form.status_code == 200 and "cannot be undone" in form.text
    before = snapshot(engine)
    r = client.post(
        "/console/contacts/ana@example.fr/forget", data={"confirm": "bob@x.fr", "csrf_token": token}
    )
    assert r.status_code == 400 and snapshot(engine) == before


def test_exports_stream_the_consent_ledger_and_the_contacts(app, engine, config, users):
    add_person(engine, config, "ana@example.fr", "client", ("news",))
    client, _ = signed_in(app, "admin")
    r = client.get("/console/export/consent.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["email"], row["list_name"], row["action"]) for row in rows] == [
        ("ana@example.fr", "news", "opt_in")
    ]
    rows = list(csv.DictReader(io.StringIO(client.get("/console/export/contacts.csv").text)))
    assert [(row["email"], row["kind"], row["lists"]) for row in rows] == [
        ("ana@example.fr", "client", "news:subscribed")
    ]


def test_console_pages_carry_their_own_content_security_policy(app, users):
    client, _ = signed_in(app, "admin")
    r = client.get("/console/lists")
    csp = dict(d.strip().split(" ", 1) for d in r.headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'" and "script-src" not in csp
    assert csp["style-src"].startswith("'sha256-") and csp["form-action"] == "'self'"
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.browser
def test_real_browser_signs_in_and_resolves_a_flag(served, engine, config, users, browser_page):
    _, flag_id = flag_for(engine, config)
    page, messages = browser_page
    page.goto(served.url + "/console/flags")
    page.get_by_label("Email address").fill(USERS["standard"])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).inner_text() == "Lists"
    page.get_by_role("link", name="Flags", exact=True).click()
    page.get_by_role("button", name="Accept the exception: vera@example.fr, news").click()
    page.wait_for_load_state()
    assert page.get_by_role("status").inner_text() == "Flag resolved."
    assert [m for m in messages if "Content Security Policy" in m] == []
    with Session(engine) as s:
        assert s.get(Flag, flag_id).resolved_at is not None
    assert audit_actions(engine, f"console:{USERS['standard']}") == ["flag.accepted"]


def test_contact_page_shows_the_record_and_its_timeline(app, engine, config, users):
    path, _ = _on_contact("note", {})(engine, config)
    client, token = signed_in(app, "standard")
    client.post(path, data={"channel": "meeting", "summary": "met at the fair", "csrf_token": token})
    page = client.get("/console/contacts/ana@example.fr?lang=en&done=noted")
    assert page.status_code == 200 and "Note added." in page.text
    assert "joined news" in page.text and "meeting note: met at the fair" in page.text
    assert 'name="summary"' in page.text and "Erase this contact" not in page.text  # standard


def test_contact_page_tells_the_timeline_in_the_viewers_language(app, engine, config, users):
    path, _ = _on_contact("note", {})(engine, config)
    client, token = signed_in(app, "standard")
    client.post(path, data={"channel": "meeting", "summary": "vu au salon", "csrf_token": token})
    client.post(
        "/console/contacts/ana@example.fr/unsubscribe",
        data={"list": "news", "reason": "à sa demande", "csrf_token": token},
    )
    base = "/console/contacts/ana@example.fr"
    for french in (client.get(f"{base}?lang=fr"), client.get(base, headers={"accept-language": "fr-FR,fr"})):
        assert french.status_code == 200 and "Historique" in french.text
        assert "a rejoint la liste news" in french.text
        assert "note (rendez-vous)\u00a0: vu au salon" in french.text
        assert "a quitté la liste news\u00a0: à sa demande" in french.text
        assert "joined news" not in french.text and "meeting note" not in french.text
        assert "left news" not in french.text
    english = client.get(base, headers={"accept-language": "en-GB,fr;q=0.5"}).text
    assert "Timeline" in english and "joined news" in english and "left news: à sa demande" in english
    assert "meeting note: vu au salon" in english and "a rejoint" not in english


def test_an_empty_note_is_refused_with_the_reason(app, engine, config, users):
    path, _ = _on_contact("note", {})(engine, config)
    client, token = signed_in(app, "standard")
    before = snapshot(engine)
    r = client.post(path, data={"channel": "phone", "summary": "  ", "csrf_token": token})
    assert r.status_code == 400 and "empty" in r.text
    assert snapshot(engine) == before


def test_read_only_sees_no_form_that_changes_anything(app, engine, config, users):
    add_person(engine, config, "ana@example.fr", "client", ("news",))
    client, _ = signed_in(app, "read-only")
    page = client.get("/console/contacts/ana@example.fr").text
    assert re.findall(r'<form method="post" action="([^"]+)"', page) == ["/console/logout"]


@pytest.mark.parametrize("flag_id", ["999999", "abc", "1" * 40])
def test_resolving_a_flag_that_does_not_exist(app, engine, users, flag_id):
    client, token = signed_in(app, "standard")
    r = client.post(f"/console/flags/{flag_id}/resolve", data={"how": "accept", "csrf_token": token})
    assert r.status_code == (409 if flag_id == "999999" else 404)


# --- in a real browser, each role does what it may; what it may not answers 403 --------------------


def _browser_sign_in(page, served, role: str) -> None:
    page.goto(served.url + "/console/contacts/ana@example.fr?lang=en")
    page.get_by_label("Email address").fill(USERS[role])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def _refused_in_browser(page, served, engine, path: str, form: dict) -> None:
    """A POST the page offers no form for, sent with the browser's own session and CSRF token:
    403, and the base unchanged."""
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    before = snapshot(engine)
    answer = page.request.post(served.url + path, form={**form, "csrf_token": token}, max_redirects=0)
    assert answer.status == 403, answer.status
    assert snapshot(engine) == before


@pytest.mark.browser
@pytest.mark.parametrize("role", ROLES)
def test_real_browser_each_role_does_what_it_may_and_is_refused_the_rest(
    served, engine, config, users, browser_page, role
):
    add_person(engine, config, "ana@example.fr", "client", ("news",))
    page, messages = browser_page
    _browser_sign_in(page, served, role)
    page.goto(served.url + "/console/contacts/ana@example.fr?lang=en")
    assert page.get_by_role("heading", level=1).inner_text().startswith("ana@example.fr")
    note = {"channel": "phone", "summary": "called"}
    if role == "read-only":
        assert page.get_by_role("button", name="Add the note").count() == 0
        _refused_in_browser(page, served, engine, "/console/contacts/ana@example.fr/note", note)
    else:
        page.get_by_label("Note", exact=True).fill("Met at the fair: wants the catalogue.")
        page.get_by_role("button", name="Add the note").click()
        page.wait_for_load_state()
        assert page.get_by_role("status").inner_text() == "Note added."
        assert audit_actions(engine, f"console:{USERS[role]}") == ["contact.note_added"]
    if role != "admin":
        assert page.get_by_role("link", name="Erase this contact (GDPR)…").count() == 0
        _refused_in_browser(
            page, served, engine, "/console/contacts/ana@example.fr/forget", {"confirm": "ana@example.fr"}
        )
    else:
        page.get_by_role("link", name="Erase this contact (GDPR)…").click()
        page.get_by_label("Type the contact's address to confirm").fill("ana@example.fr")
        page.get_by_role("button", name="Erase for good").click()
        page.wait_for_load_state()
        assert "The contact was erased." in page.content()
        with Session(engine) as s:
            assert s.exec(select(Contact).where(Contact.email == "ana@example.fr")).first() is None
    assert [m for m in messages if "Content Security Policy" in m] == []


# --- a contact's story, as the console shows it ------------------------------------------------------


def test_the_contact_page_tells_import_confirmation_unsubscribe_note_and_console_edit_in_order(
    app, engine, config, users, tmp_path
):
    from connectors.mailchimp import MailchimpConnector
    from connectors.simulators.mailchimp import webhooks as mailchimp_webhooks
    from syncd import doi
    from syncd.contacts.importer import Options, import_file
    from syncd.db import session_scope
    from syncd.inbound.apply import apply_event

    file = tmp_path / "fair.csv"
    file.write_text("email;first_name;type\nana@example.fr;Ana;client\n", encoding="utf-8")
    options = Options(
        channel="fair",
        list_name="club",
        list_cfg=config.list("club"),
        all_lists=config.lists,
        consent="single_opt_in",
    )
    assert import_file(engine, file, options).imported == 1
    mails: list = []
    assert doi.send_pending(engine, config, lambda mail: mails.append(mail) or "<1@test>") == 1
    token = re.search(r"/confirm/([A-Za-z0-9_.\-]+)", mails[0].text).group(1)
    assert doi.confirm(engine, config, token, ip="198.51.100.7", user_agent="pytest").state == "confirmed"
    # Mailchimp reports that she left the club's audience (fired_at is to the second: the next one).
    fired = (utcnow() + timedelta(seconds=1)).replace(microsecond=0)
    body = mailchimp_webhooks.payload("unsubscribe", "ana@example.fr", "a1b2c3d4e5", fired)
    with session_scope(engine) as s:
        for event in MailchimpConnector("sim-key-us1", "http://127.0.0.1:9/3.0").parse_webhook(
            body, mailchimp_webhooks.CONTENT_TYPE
        ):
            assert apply_event(s, event, config) == "applied"
    while utcnow() <= fired:  # what the team does next is later than the provider's report
        time.sleep(0.01)
    client, csrf = signed_in(app, "standard")
    base = "/console/contacts/ana@example.fr"
    assert (
        client.post(
            f"{base}/note", data={"channel": "phone", "summary": "called", "csrf_token": csrf}
        ).status_code
        == 303
    )
    assert client.post(f"{base}/edit", data={"company": "Globex", "csrf_token": csrf}).status_code == 303

    entries = timeline.timeline(engine, "ana@example.fr")
    kinds = [e.kind for e in entries]
    story = [
        kinds.index("source"),
        kinds.index("membership"),
        *(i for i, e in enumerate(entries) if e.kind == "consent" and "confirmed" in e.summary),
        kinds.index("provider_event"),
        kinds.index("note"),
        kinds.index("change"),
    ]
    assert story == sorted(story), [(e.kind, e.summary) for e in entries]
    change = entries[kinds.index("change")]
    assert change.actor == f"console:{USERS['standard']}" and "Globex" in change.summary
    # The page shows them in that order, the edit with its user.
    page = client.get(f"{base}?lang=en").text
    shown = [
        page.index("imported from fair.csv"),
        page.index("confirmed the double opt-in for list club"),
        page.index("Mailchimp: unsubscribed"),
        page.index("phone note: called"),
        page.index("company: (empty) → Globex"),
    ]
    assert shown == sorted(shown)
    assert f"console:{USERS['standard']}" in page[shown[-1] - 400 : shown[-1] + 400]


@pytest.mark.browser
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "allowed", "setup", "check"), POSTS, ids=[p[0] for p in POSTS])
def test_in_a_real_browser_every_post_is_done_for_the_roles_allowed_and_refused_otherwise(
    served, engine, config, users, browser_page, role, name, allowed, setup, check
):
    """The same matrix, from a real browser's session: signed in through the form, each POST sent
    with the browser's cookies, first without the page's CSRF token (403, nothing changed), then
    with it (done for the roles allowed; 403 and nothing changed for the others)."""
    path, form = setup(engine, config)
    page, _ = browser_page
    page.goto(served.url + "/console/login?lang=en")
    page.get_by_label("Email address").fill(USERS[role])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).inner_text() == "Lists"
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    before = snapshot(engine)
    unsigned = page.request.post(served.url + path, form=form, max_redirects=0)
    assert unsigned.status == 403 and snapshot(engine) == before
    answer = page.request.post(served.url + path, form={**form, "csrf_token": token}, max_redirects=0)
    if role in allowed:
        assert answer.status in (200, 303), answer.status
        check(engine, role)
    else:
        assert answer.status == 403
        assert snapshot(engine) == before


@pytest.mark.browser
def test_in_a_real_browser_signed_out_every_console_page_leads_to_sign_in(
    served, engine, config, browser_page
):
    add_person(engine, config, "ana@example.fr", "client", ("news",))
    page, _ = browser_page
    for path in GETS:
        answer = page.request.get(served.url + path, max_redirects=0)
        assert answer.status == 303 and answer.headers["location"].startswith("/console/login"), path
        page.goto(served.url + path)
        assert page.url.split("?")[0] == served.url + "/console/login", path
        assert page.get_by_role("button", name="Sign in").count() == 1
