"""Console users: ``syncd users`` end to end on the real master base, the role table, passwords."""

from __future__ import annotations

import getpass
import itertools
import json
import threading

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner
from sqlmodel import Session, select

from syncd import users
from syncd.cli import main
from syncd.db import session_scope
from syncd.models import AuditLog, ConsoleUser, Contact

PASSWORD = "correct horse battery staple"
ME = f"cli:{getpass.getuser()}"


@pytest.fixture
def cli(engine):
    """``cli(*args, stdin=...)``: the ``syncd`` command on the test's master base."""
    url = engine.url.render_as_string(hide_password=False)

    def run(*args: str, stdin: str | None = None):
        return CliRunner().invoke(main, ["--database", url, "--log-level", "debug", *args], input=stdin)

    return run


def add(cli, email: str, role: str, password: str = PASSWORD):
    return cli("users", "add", email, "--role", role, "--password-stdin", stdin=f"{password}\n")


def stored(engine) -> tuple[list[tuple], list[tuple]]:
    """Every user and every audit entry, to show that a refused request changed nothing."""
    with Session(engine) as session:
        people = session.exec(select(ConsoleUser).order_by(ConsoleUser.id)).all()
        audit = session.exec(select(AuditLog).order_by(AuditLog.id)).all()
        return (
            [(u.id, u.email, u.role, u.password_hash, u.disabled) for u in people],
            [(a.id, a.actor, a.action, a.detail) for a in audit],
        )


def user(engine, email: str) -> ConsoleUser | None:
    with Session(engine) as session:
        return session.exec(select(ConsoleUser).where(ConsoleUser.email == email)).first()


def audit(engine) -> list[tuple[str, str, dict]]:
    with Session(engine) as session:
        return [(a.actor, a.action, a.detail) for a in session.exec(select(AuditLog).order_by(AuditLog.id))]


# --- the command line ----------------------------------------------------------------------------


def test_a_user_is_added_with_a_lower_cased_address_an_argon2id_hash_and_an_audit_entry(cli, engine):
    result = add(cli, "  Ana.Martin@Exemple.FR ", "admin")
    assert result.exit_code == 0, result.output
    assert result.stdout == "added ana.martin@exemple.fr (admin)\n"

    ana = user(engine, "ana.martin@exemple.fr")
    assert ana is not None and ana.role == "admin" and not ana.disabled
    assert ana.password_hash.startswith("$argon2id$")
    assert PasswordHasher().verify(ana.password_hash, PASSWORD)
    assert ana.failed_logins == 0 and ana.locked_until is None and ana.last_login_at is None
    assert audit(engine) == [(ME, "user.added", {"user": "ana.martin@exemple.fr", "role": "admin"})]


def test_the_password_is_asked_twice_without_being_shown(cli, engine):
    result = cli("users", "add", "ana@exemple.fr", "--role", "standard", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert users.verify_password(engine, "ana@exemple.fr", PASSWORD) is not None


def test_two_different_passwords_at_the_prompt_add_nobody(cli, engine):
    result = cli("users", "add", "ana@exemple.fr", "--role", "standard", stdin="first-password\nsecond-one\n")
    assert result.exit_code == 1  # asked again, then aborted at the end of the input
    assert "do not match" in result.output and "Traceback" not in result.output
    assert "first-password" not in result.output and "second-one" not in result.output
    assert stored(engine) == ([], [])


def test_users_are_listed_as_a_table_and_as_json_without_their_hash(cli, engine):
    assert add(cli, "zoe@exemple.fr", "read-only").exit_code == 0
    assert add(cli, "ana@exemple.fr", "admin").exit_code == 0

    table = cli("users", "list")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["EMAIL", "ROLE", "CREATED", "LAST", "LOGIN", "STATUS"]
    assert lines[1].split()[:2] == ["ana@exemple.fr", "admin"] and lines[1].split()[-2:] == [
        "never",
        "active",
    ]
    assert lines[2].split()[:2] == ["zoe@exemple.fr", "read-only"]

    listed = cli("users", "list", "--format", "json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["email"], r["role"], r["status"], r["last_login_at"]) for r in rows] == [
        ("ana@exemple.fr", "admin", "active", None),
        ("zoe@exemple.fr", "read-only", "active", None),
    ]
    assert "argon2" not in table.output + listed.output


def test_an_empty_list_says_how_to_add_a_user(cli):
    result = cli("users", "list")
    assert result.exit_code == 0 and "syncd users add" in result.stdout
    assert json.loads(cli("users", "list", "--format", "json").stdout) == []


def test_a_role_change_is_audited_from_the_old_role_to_the_new(cli, engine):
    add(cli, "ana@exemple.fr", "admin")
    add(cli, "paul@exemple.fr", "read-only")

    result = cli("users", "set-role", "PAUL@exemple.fr", "standard")
    assert result.exit_code == 0, result.output
    assert result.stdout == "paul@exemple.fr: read-only → standard\n"
    assert user(engine, "paul@exemple.fr").role == "standard"
    assert audit(engine)[-1] == (
        ME,
        "user.role_changed",
        {"user": "paul@exemple.fr", "old": "read-only", "new": "standard"},
    )

    before = stored(engine)
    same = cli("users", "set-role", "paul@exemple.fr", "standard")
    assert same.exit_code == 0 and "already standard" in same.stdout
    assert stored(engine) == before  # nothing changed, nothing audited


def test_a_user_is_removed_and_the_removal_audited(cli, engine):
    add(cli, "ana@exemple.fr", "admin")
    add(cli, "paul@exemple.fr", "admin")

    result = cli("users", "remove", "paul@exemple.fr")
    assert result.exit_code == 0, result.output
    assert result.stdout == "removed paul@exemple.fr (admin)\n"
    assert user(engine, "paul@exemple.fr") is None
    assert audit(engine)[-1] == (ME, "user.removed", {"user": "paul@exemple.fr", "role": "admin"})


def test_the_password_and_its_hash_are_in_no_output_log_or_audit_entry(cli, engine):
    secret = "Sésame-ouvre-toi-42"
    results = [
        add(cli, "ana@exemple.fr", "admin", secret),
        add(cli, "paul@exemple.fr", "standard", secret),
        cli("users", "list"),
        cli("users", "list", "--format", "json"),
        cli("users", "set-role", "paul@exemple.fr", "admin"),
        cli("users", "remove", "paul@exemple.fr"),
        add(cli, "ana@exemple.fr", "admin", secret),  # refused: a duplicate
    ]
    assert all(r.exit_code in (0, 1) for r in results)
    assert '"event": "user.added"' in results[0].stderr  # the log is there, and in the output checked
    hashes = [user(engine, "ana@exemple.fr").password_hash]
    everything = "".join(r.output for r in results) + json.dumps(audit(engine))
    for text in (secret, *hashes, "$argon2"):
        assert text not in everything


# --- refusals: one clear line on stderr, no traceback, nothing changed ---------------------------


def adding(email: str, role: str) -> list[str]:
    return ["add", email, "--role", role, "--password-stdin"]


@pytest.mark.parametrize(
    ("args", "stdin", "status", "message"),
    [
        (
            adding("not-an-address", "admin"),
            PASSWORD,
            2,
            "not a valid address",
        ),
        (adding("ana@", "admin"), PASSWORD, 2, "not a valid address"),
        (
            adding("new@exemple.fr", "boss"),
            PASSWORD,
            2,
            "'boss' is not one of",
        ),
        (["add", "new@exemple.fr", "--password-stdin"], PASSWORD, 2, "Missing option '--role'"),
        (adding("new@exemple.fr", "admin"), "", 2, "the password is empty"),
        (adding("new@exemple.fr", "admin"), "short", 2, "too short"),
        (adding("ANA@exemple.fr", "standard"), PASSWORD, 1, "already exists"),
        (["set-role", "nobody@exemple.fr", "admin"], None, 1, "no user nobody@exemple.fr"),
        (["set-role", "ana@exemple.fr", "boss"], None, 2, "'boss' is not one of"),
        (["set-role", "ana@exemple.fr", "standard"], None, 1, "ana@exemple.fr is the last admin"),
        (["remove", "nobody@exemple.fr"], None, 1, "no user nobody@exemple.fr"),
        (["remove", "ana@exemple.fr"], None, 1, "ana@exemple.fr is the last admin"),
    ],
)
def test_a_request_that_cannot_be_carried_out_is_one_line_and_changes_nothing(
    cli, engine, args, stdin, status, message
):
    add(cli, "ana@exemple.fr", "admin")
    add(cli, "paul@exemple.fr", "standard")
    before = stored(engine)

    result = cli("users", *args, stdin=None if stdin is None else f"{stdin}\n")
    assert result.exit_code == status, result.output
    assert message in result.stderr and result.stdout == ""
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert stored(engine) == before


def test_a_disabled_admin_does_not_count_as_the_admin_who_stays(cli, engine):
    add(cli, "ana@exemple.fr", "admin")
    add(cli, "paul@exemple.fr", "admin")
    with session_scope(engine) as session:
        paul = session.exec(select(ConsoleUser).where(ConsoleUser.email == "paul@exemple.fr")).one()
        paul.disabled = True
    before = stored(engine)

    result = cli("users", "remove", "ana@exemple.fr")
    assert result.exit_code == 1 and "last admin" in result.stderr
    assert stored(engine) == before
    assert cli("users", "remove", "paul@exemple.fr").exit_code == 0  # a disabled admin may go


def test_without_any_admin_other_users_may_still_be_removed_or_changed(cli, engine):
    add(cli, "paul@exemple.fr", "standard")
    add(cli, "zoe@exemple.fr", "standard")
    assert cli("users", "set-role", "zoe@exemple.fr", "read-only").exit_code == 0
    assert cli("users", "remove", "paul@exemple.fr").exit_code == 0
    assert [u.email for u in users.list_users(engine)] == ["zoe@exemple.fr"]


@pytest.mark.parametrize("change", ["remove", "demote"])
def test_two_admins_taken_out_at_the_same_moment_leave_one(engine, change):
    for email in ("ana@exemple.fr", "paul@exemple.fr"):
        users.create_user(engine, email, "admin", PASSWORD, actor="test")
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def take_out(email: str) -> None:
        start.wait()
        try:
            if change == "remove":
                users.remove_user(engine, email, actor="test")
            else:
                users.set_role(engine, email, "standard", actor="test")
            outcomes[email] = "done"
        except users.LastAdmin:
            outcomes[email] = "refused"

    threads = [threading.Thread(target=take_out, args=(e,)) for e in ("ana@exemple.fr", "paul@exemple.fr")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes.values()) == ["done", "refused"]
    assert [u.role for u in users.list_users(engine) if u.role == "admin"] == ["admin"]


# --- passwords -----------------------------------------------------------------------------------


def test_verify_password_gives_the_user_for_the_right_password_only(engine):
    users.create_user(engine, "ana@exemple.fr", "standard", PASSWORD, actor="test")

    found = users.verify_password(engine, " ANA@exemple.fr", PASSWORD)
    assert found is not None and found.email == "ana@exemple.fr" and found.role == "standard"
    assert users.verify_password(engine, "ana@exemple.fr", PASSWORD.upper()) is None
    assert users.verify_password(engine, "ana@exemple.fr", "") is None
    assert users.verify_password(engine, "nobody@exemple.fr", PASSWORD) is None
    assert users.verify_password(engine, "not an address", PASSWORD) is None


def test_a_disabled_user_is_not_let_in_even_with_the_right_password(engine):
    users.create_user(engine, "ana@exemple.fr", "admin", PASSWORD, actor="test")
    with session_scope(engine) as session:
        ana = session.exec(select(ConsoleUser)).one()
        ana.disabled = True
    assert users.verify_password(engine, "ana@exemple.fr", PASSWORD) is None


def test_a_hash_made_with_weaker_parameters_is_replaced_when_the_password_is_right(engine):
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    with session_scope(engine) as session:
        session.add(ConsoleUser(email="ana@exemple.fr", role="admin", password_hash=weak))

    assert users.verify_password(engine, "ana@exemple.fr", "wrong password") is None
    assert user(engine, "ana@exemple.fr").password_hash == weak  # a wrong password rehashes nothing

    assert users.verify_password(engine, "ana@exemple.fr", PASSWORD) is not None
    renewed = user(engine, "ana@exemple.fr").password_hash
    assert renewed != weak and not PasswordHasher().check_needs_rehash(renewed)
    assert PasswordHasher().verify(renewed, PASSWORD)


def test_a_stored_hash_that_is_not_argon2_lets_nobody_in(engine):
    with session_scope(engine) as session:
        session.add(ConsoleUser(email="ana@exemple.fr", role="admin", password_hash="plain-text"))
    assert users.verify_password(engine, "ana@exemple.fr", "plain-text") is None


# --- who may do what -----------------------------------------------------------------------------

# Written out by hand from the rules, not derived from ``users.ACTIONS``.
ALLOWED = {
    "view": {"read-only", "standard", "admin"},
    "contact.edit": {"standard", "admin"},
    "contact.note": {"standard", "admin"},
    "membership.change": {"standard", "admin"},
    "flag.resolve": {"standard", "admin"},
    "contact.erase": {"admin"},
    "export.bulk": {"admin"},
    "user.manage": {"admin"},
}


def test_every_action_of_the_table_is_checked_here():
    assert set(users.ACTIONS) == set(ALLOWED)
    assert users.ROLES == ("read-only", "standard", "admin")


@pytest.mark.parametrize(("role", "action"), list(itertools.product(users.ROLES, sorted(ALLOWED))))
def test_each_role_may_do_exactly_what_the_rules_say(role, action):
    assert users.authorise(role, action) is (role in ALLOWED[action])


def test_an_unknown_role_may_do_nothing_and_an_unknown_action_is_a_bug():
    assert not any(users.authorise("superuser", action) for action in ALLOWED)
    assert not users.authorise("", "view")
    with pytest.raises(users.UnknownAction):
        users.authorise("admin", "contact.delete")


# --- who made a change from the command line -----------------------------------------------------


def test_the_cli_actor_is_the_os_user_or_unknown(monkeypatch):
    monkeypatch.setattr(getpass, "getuser", lambda: "marie")
    assert users.cli_actor() == "cli:marie"

    def no_login_name() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_login_name)
    assert users.cli_actor() == "cli:unknown"


def test_an_erasure_from_the_cli_names_the_os_user(cli, engine, monkeypatch):
    monkeypatch.setattr(getpass, "getuser", lambda: "marie")
    with session_scope(engine) as session:
        session.add(Contact(email="gone@exemple.fr"))

    result = cli("contacts", "forget", "gone@exemple.fr", "--yes", "--local-only")
    assert result.exit_code == 0, result.output
    assert [(actor, action) for actor, action, _ in audit(engine)] == [("cli:marie", "contact.forgotten")]
