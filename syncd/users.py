"""Console users: who may use the team console, with which role, and who made a change.

A user is an address, a role and an argon2id hash of a password (never the password itself).
Every change to users is written to the audit log in the same transaction, naming the actor.
``authorise`` holds the one table of what each role may do: the console asks it, never the role.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from functools import cache

import sqlalchemy as sa
import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session, select

from syncd.contacts.qualify import InvalidEmail, normalise_email
from syncd.db import session_scope
from syncd.models import AuditLog, ConsoleUser, Role, utcnow

log = structlog.get_logger(__name__)

ROLES: tuple[str, ...] = tuple(r.value for r in Role)
# The least privileged first: a role may do what every role before it may do.
_RANK = {Role.READ_ONLY: 0, Role.STANDARD: 1, Role.ADMIN: 2}

# What each action of the console needs, at the least. An action missing here is a programming
# error (``authorise`` raises), not a silent refusal nor a silent grant.
ACTIONS: dict[str, Role] = {
    "view": Role.READ_ONLY,  # contacts, lists, flags, runs, the audit log
    "contact.edit": Role.STANDARD,  # fields, tags, kind
    "contact.note": Role.STANDARD,
    "membership.change": Role.STANDARD,  # subscribe or unsubscribe a contact from a list
    "flag.resolve": Role.STANDARD,
    "contact.erase": Role.ADMIN,  # GDPR erasure
    "export.bulk": Role.ADMIN,  # the consent ledger and contact data in bulk
    "user.manage": Role.ADMIN,
}

# NIST SP 800-63B's floor for a password a person chooses.
MIN_PASSWORD_LENGTH = 8


class UserError(Exception):
    """A request about users that cannot be carried out; nothing was changed."""

    usage = False  # True: the request itself is malformed (the CLI's exit status 2)


class InvalidRequest(UserError):
    """A malformed address, an unknown role, a password too short."""

    usage = True


class UserExists(UserError):
    pass


class NoSuchUser(UserError):
    pass


class LastAdmin(UserError):
    pass


class UnknownAction(ValueError):
    pass


@dataclass(frozen=True)
class RoleChange:
    email: str
    old: str
    new: str


def authorise(role: str, action: str) -> bool:
    """Whether a user with ``role`` may do ``action``. An unknown role may do nothing."""
    try:
        needed = ACTIONS[action]
    except KeyError:
        raise UnknownAction(f"unknown console action {action!r}") from None
    try:
        held = Role(role)
    except ValueError:
        return False
    return _RANK[held] >= _RANK[needed]


def cli_actor() -> str:
    """Who made a change from the command line, for the audit log: ``cli:<os user>``."""
    try:
        name = getpass.getuser()
    except Exception:  # no login name in the environment nor the password database
        name = ""
    return f"cli:{name or 'unknown'}"[:100]


def create_user(engine: Engine, email: str, role: str, password: str, *, actor: str) -> ConsoleUser:
    """Add a user. The address is validated and lower-cased; only the password's hash is kept."""
    address, role = _valid_email(email), _valid_role(role)
    _check_password(password)
    password_hash = _hasher().hash(password)
    try:
        with session_scope(engine) as session:
            if _find(session, address) is not None:
                raise UserExists(f"a user {address} already exists")
            user = ConsoleUser(email=address, role=role, password_hash=password_hash)
            session.add(user)
            session.flush()
            _audit(session, actor, "user.added", user=address, role=role)
    except sa.exc.IntegrityError:  # added at the same moment by someone else
        raise UserExists(f"a user {address} already exists") from None
    log.info("user.added", user_id=user.id, role=role)
    return user


def check_new_user(engine: Engine, email: str, role: str) -> str:
    """The address a new user would have, or the reason they cannot be added: lets the command
    line refuse before it asks for a password."""
    address = _valid_email(email)
    _valid_role(role)
    with Session(engine) as session:
        if _find(session, address) is not None:
            raise UserExists(f"a user {address} already exists")
    return address


def list_users(engine: Engine) -> list[ConsoleUser]:
    with Session(engine) as session:
        return list(session.exec(select(ConsoleUser).order_by(ConsoleUser.email)))


def set_role(engine: Engine, email: str, role: str, *, actor: str) -> RoleChange:
    """Change a user's role. The last admin cannot be demoted: nobody could manage users after."""
    role = _valid_role(role)
    with session_scope(engine) as session:
        user = _require(session, email)
        old = user.role
        if old == role:
            return RoleChange(user.email, old, role)
        if old == Role.ADMIN:
            _lock_admins(session)
        user.role = role
        session.add(user)
        if old == Role.ADMIN:
            _require_an_admin(session, user)
        _audit(session, actor, "user.role_changed", user=user.email, old=old, new=role)
        change = RoleChange(user.email, old, role)
    log.info("user.role_changed", user_id=user.id, old=old, new=role)
    return change


def remove_user(engine: Engine, email: str, *, actor: str) -> ConsoleUser:
    """Remove a user. The last admin cannot be removed: nobody could manage users after."""
    with session_scope(engine) as session:
        user = _require(session, email)
        if user.role == Role.ADMIN:
            _lock_admins(session)
        session.delete(user)
        if user.role == Role.ADMIN:
            _require_an_admin(session, user)
        _audit(session, actor, "user.removed", user=user.email, role=user.role)
    log.info("user.removed", user_id=user.id, role=user.role)
    return user


def verify_password(engine: Engine, email: str, password: str) -> ConsoleUser | None:
    """The user, when ``password`` is theirs and they are not disabled; None otherwise.

    An unknown address costs the same hash as a known one, so the time taken does not tell which
    addresses are users. A hash made with weaker parameters than today's is replaced on success.
    """
    with session_scope(engine) as session:
        user = _find(session, _lookup_key(email))
        if user is None or user.disabled:
            _matches(_dummy_hash(), password)
            return None
        if not _matches(user.password_hash, password):
            return None
        if _hasher().check_needs_rehash(user.password_hash):
            user.password_hash = _hasher().hash(password)
            session.add(user)
            log.info("user.password_rehashed", user_id=user.id)
        return user


# --- helpers ------------------------------------------------------------------------------------


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id with the library's current (RFC 9106) parameters


@cache
def _dummy_hash() -> str:
    return _hasher().hash("not a user's password")


def _matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _valid_email(raw: str) -> str:
    try:
        return normalise_email(raw)
    except InvalidEmail as exc:
        reason = str(exc).removeprefix("invalid email: ")
        raise InvalidRequest(f"{raw.strip()!r} is not a valid address: {reason}") from None


def _valid_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidRequest(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    return role


def _check_password(password: str) -> None:
    if not password:
        raise InvalidRequest("the password is empty")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(f"the password is too short: at least {MIN_PASSWORD_LENGTH} characters")


def _lookup_key(raw: str) -> str:
    """The key an address has among users (a malformed one is still trimmed and lower-cased)."""
    try:
        return normalise_email(raw)
    except InvalidEmail:
        return raw.strip().lower()


def _find(session: Session, address: str) -> ConsoleUser | None:
    return session.exec(select(ConsoleUser).where(ConsoleUser.email == address)).first()


def _require(session: Session, email: str) -> ConsoleUser:
    user = _find(session, _lookup_key(email))
    if user is None:
        raise NoSuchUser(f"no user {_lookup_key(email)}")
    return user


def _lock_admins(session: Session) -> None:
    """PostgreSQL: lock the admins' rows, so that two admins removed or demoted at the same
    moment are checked one after the other (each transaction alone would still see the other)."""
    session.exec(select(ConsoleUser.id).where(ConsoleUser.role == Role.ADMIN).with_for_update()).all()


def _require_an_admin(session: Session, leaving: ConsoleUser) -> None:
    """Refuse the change that takes ``leaving`` out of the admins when it leaves no enabled admin.
    Checked after the change is written: on SQLite the write holds the database's one write lock,
    so no other change can slip between. A user changed meanwhile by someone else is no more."""
    try:
        session.flush()
    except StaleDataError:
        raise NoSuchUser(f"no user {leaving.email}") from None
    left = session.exec(
        select(sa.func.count())
        .select_from(ConsoleUser)
        .where(ConsoleUser.role == Role.ADMIN, ConsoleUser.disabled == sa.false())
    ).one()
    if not left:
        raise LastAdmin(f"{leaving.email} is the last admin: make another user admin first")


def _audit(session: Session, actor: str, action: str, **detail: str) -> None:
    session.add(AuditLog(at=utcnow(), actor=actor, action=action, detail=detail))
