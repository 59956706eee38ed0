"""``syncd users add|list|set-role|remove``: the team console's users and their roles."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from syncd import users
from syncd.app import App
from syncd.models import ConsoleUser, utcnow


@click.group("users")
def users_group() -> None:
    """The people who may use the team console, and their roles.

    read-only sees everything and changes nothing; standard also edits contacts, adds notes,
    subscribes or unsubscribes a contact from a list and resolves flags; admin also erases
    contacts, exports in bulk and manages users.
    """


def _refusals(command: Callable[..., None]) -> Callable[..., None]:
    """A request that cannot be carried out is one line on stderr: exit 2 when the request is
    malformed, 1 when the users held refuse it (a duplicate, an unknown user, the last admin)."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except users.UserError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2 if exc.usage else 1)

    return run


@users_group.command("add")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(users.ROLES), help="What the user may do.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input, not a prompt.")
@click.pass_obj
@_refusals
def add(app: App, email: str, role: str, password_stdin: bool) -> None:
    """Add a user. The password is asked twice without being shown (or read from stdin)."""
    users.check_new_user(app.engine, email, role)
    password = _read_password(password_stdin)
    user = users.create_user(app.engine, email, role, password, actor=users.cli_actor())
    click.echo(f"added {user.email} ({user.role})")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # One line: the trailing newline of `echo` or a file is not part of the password.
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)


@users_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
def list_cmd(app: App, fmt: str) -> None:
    """List the users, their roles and when they last signed in."""
    rows = [_row(u) for u in users.list_users(app.engine)]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no users: add one with `syncd users add EMAIL --role admin`")
        return
    width = max(len(r["email"]) for r in rows)
    click.echo(f"{'EMAIL':<{width}}  {'ROLE':<9}  {'CREATED':<20}  {'LAST LOGIN':<20}  STATUS")
    for r in rows:
        click.echo(
            f"{r['email']:<{width}}  {r['role']:<9}  {_when(r['created_at']):<20}  "
            f"{_when(r['last_login_at']) or 'never':<20}  {r['status']}"
        )


def _row(user: ConsoleUser) -> dict[str, Any]:
    """What is shown of a user: never the password's hash."""
    return {
        "email": user.email,
        "role": user.role,
        "created_at": user.created_at.isoformat(),
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
        "status": _status(user),
    }


def _status(user: ConsoleUser) -> str:
    if user.disabled:
        return "disabled"
    if user.locked_until and user.locked_until > utcnow():
        return f"locked until {_when(user.locked_until.isoformat())}"
    return "active"


def _when(iso: str | None) -> str:
    return iso[:19].replace("T", " ") + "Z" if iso else ""


@users_group.command("set-role")
@click.argument("email")
@click.argument("role", type=click.Choice(users.ROLES))
@click.pass_obj
@_refusals
def set_role(app: App, email: str, role: str) -> None:
    """Change a user's role (the last admin cannot be demoted)."""
    change = users.set_role(app.engine, email, role, actor=users.cli_actor())
    if change.old == change.new:
        click.echo(f"{change.email} is already {change.new}")
    else:
        click.echo(f"{change.email}: {change.old} → {change.new}")


@users_group.command("remove")
@click.argument("email")
@click.pass_obj
@_refusals
def remove(app: App, email: str) -> None:
    """Remove a user (the last admin cannot be removed)."""
    user = users.remove_user(app.engine, email, actor=users.cli_actor())
    click.echo(f"removed {user.email} ({user.role})")
