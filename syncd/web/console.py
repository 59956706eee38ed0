"""The team console under ``/console``: sign-in, the lists, the wrong-list flags, contacts (search,
record, timeline, notes, changes by hand, list joins and departures, erasure) and bulk exports.

Server-rendered pages, French and English, no JavaScript. Who may do what is ``users.authorise``'s
one table: every route names its action and asks it, and a refusal is a 403 before anything is read
from the form or written. Every change goes through the same functions as the command line
(``contacts.edit``, ``membership``, ``hygiene.resolve``, ``gdpr.forget_contact``), audited with the
actor ``console:<user's address>``.

Sessions live in this process's memory (``Sessions``): a random id in an ``HttpOnly``,
``SameSite=Lax`` cookie (``Secure`` over HTTPS, a trusted proxy's ``X-Forwarded-Proto`` included),
a CSRF token per session checked in constant time on every POST. Signing out forgets the session
at once; a restart signs everyone out. Sign-in attempts are limited per account (in the base:
``ConsoleUser.failed_logins``/``locked_until``) and per client address (in this process's memory,
enough for the one daemon process that serves the web app).

Every sign-in is audited, about no contact (so on no timeline): ``console.sign_in`` by
``console:<user>``, and each refusal ``console.sign_in_failed`` by ``console:anonymous`` with its
reason (an unknown account, a wrong password, a disabled or locked account, a held-back client
address) and the client address. The address typed is kept only when it is a user's; what was typed
otherwise, and any password, never. A held-back address is audited once per window (its refusals
cost nothing to send, so one row each would let anyone fill the audit trail); every refusal also
counts against the client address, a locked account's included.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from syncd import hygiene, notes, timeline
from syncd import status as state
from syncd.config import Config
from syncd.contacts import edit
from syncd.contacts.export import CONSENT_FIELDS, consents, contacts
from syncd.contacts.export import FIELDS as CONTACT_FIELDS
from syncd.contacts.gdpr import find_contact, forget_contact, lookup_email
from syncd.contacts.qualify import normalise_tags
from syncd.core.violations import RULES
from syncd.db import session_scope
from syncd.log import get_logger
from syncd.membership import ConsentRequired, leave_list
from syncd.models import AuditLog, ConsoleUser, Contact, Flag, Membership, utcnow
from syncd.users import authorise, verify_password
from syncd.web.headers import content_security_policy, style_hashes
from syncd.web.wording import CONSOLE_TEXT, pick_language

log = get_logger(__name__)

PREFIX = "/console"
LOGIN = f"{PREFIX}/login"
SESSION_COOKIE = "syncd_console"
LOGIN_COOKIE = "syncd_console_login"  # the sign-in form's CSRF token, before any session
NO_STORE = {"Cache-Control": "no-store"}
MAX_FAILURES = 5  # wrong passwords in a row before an account is locked ...
LOCK_FOR = timedelta(minutes=15)  # ... for this long
IP_FAILURES = 20  # failed sign-ins from one address ...
IP_WINDOW_S = 15 * 60  # ... within this window, then that address waits
SEARCH_LIMIT = 50
SEARCH_FIELDS = ("email", "name", "company", "tag")
NOTICES = ("saved", "noted", "subscribed", "unsubscribed", "resolved", "forgotten")
SIGN_IN = "console.sign_in"  # AuditLog actions
SIGN_IN_FAILED = "console.sign_in_failed"
ANONYMOUS = "console:anonymous"  # the actor of a refused sign-in: nobody was signed in
# Why a sign-in was refused (``console.sign_in_failed``'s ``reason``).
UNKNOWN_ACCOUNT, WRONG_PASSWORD, DISABLED_ACCOUNT = "unknown_account", "wrong_password", "disabled_account"
LOCKED_ACCOUNT, ADDRESS_HELD_BACK = "locked_account", "address_held_back"


# --- sessions and sign-in limits --------------------------------------------------------------------


@dataclass
class ConsoleSession:
    user_id: int
    csrf: str
    opened: float
    seen: float


class Sessions:
    """Signed-in sessions by the SHA-256 of their cookie value (the value itself is not kept)."""

    IDLE_S = 2 * 3600
    ABSOLUTE_S = 12 * 3600

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock, self._lock = clock, threading.Lock()
        self._by_key: dict[str, ConsoleSession] = {}

    @staticmethod
    def _key(sid: str) -> str:
        return hashlib.sha256(sid.encode()).hexdigest()

    def open(self, user_id: int) -> str:
        sid, now = secrets.token_urlsafe(32), self._clock()
        with self._lock:
            self._forget_expired(now)
            self._by_key[self._key(sid)] = ConsoleSession(user_id, secrets.token_urlsafe(32), now, now)
        return sid

    def get(self, sid: str | None) -> ConsoleSession | None:
        if not sid:
            return None
        now = self._clock()
        with self._lock:
            found = self._by_key.get(self._key(sid))
            if found is None:
                return None
            if now - found.seen > self.IDLE_S or now - found.opened > self.ABSOLUTE_S:
                del self._by_key[self._key(sid)]
                return None
            found.seen = now
            return found

    def close(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._by_key.pop(self._key(sid), None)

    def _forget_expired(self, now: float) -> None:
        gone = [
            k
            for k, s in self._by_key.items()
            if now - s.seen > self.IDLE_S or now - s.opened > self.ABSOLUTE_S
        ]
        for k in gone:
            del self._by_key[k]


class AddressLimit:
    """Failed sign-ins per client address in a sliding window (this process's memory)."""

    def __init__(self, limit: int = IP_FAILURES, window_s: float = IP_WINDOW_S, clock=time.monotonic):
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._reported: dict[str, float] = {}  # when a held-back address was last audited
        self._lock = threading.Lock()

    def _recent(self, ip: str, now: float) -> deque[float]:
        times = self._failures.setdefault(ip, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def blocked(self, ip: str) -> bool:
        with self._lock:
            return len(self._recent(ip, self._clock())) >= self.limit

    def failed(self, ip: str) -> None:
        with self._lock:
            now = self._clock()
            self._recent(ip, now).append(now)

    def first_refusal(self, ip: str) -> bool:
        """Whether this refusal of a held-back address is its first within the window (the one
        the audit trail records)."""
        with self._lock:
            now = self._clock()
            last = self._reported.get(ip)
            if last is not None and now - last <= self.window_s:
                return False
            for gone in [a for a, at in self._reported.items() if now - at > self.window_s]:
                del self._reported[gone]
            self._reported[ip] = now
            return True


@dataclass(frozen=True)
class Who:
    """The signed-in user of a request, read from the base on every request (role, disabled)."""

    id: int
    email: str
    role: str
    csrf: str
    lang: str

    @property
    def actor(self) -> str:
        return f"console:{self.email}"[:100]

    def may(self, action: str) -> bool:
        return authorise(self.role, action)


def _same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


# --- the console ---------------------------------------------------------------------------------


class Console:
    def __init__(self, config: Config, engine: Engine, env: Any, sessions: Sessions | None = None):
        self.config, self.engine, self.env = config, engine, env
        self.sessions = sessions or Sessions()
        self.addresses = AddressLimit()
        source, _, _ = env.loader.get_source(env, "console_base.html")
        self.csp = content_security_policy(style_hashes(source))

    def routes(self) -> list[Route]:
        c = f"{PREFIX}/contacts/{{email}}"
        return [
            Route(PREFIX, self.lists, methods=["GET"]),
            Route(LOGIN, self.login_form, methods=["GET"]),
            Route(LOGIN, self.login, methods=["POST"]),
            Route(f"{PREFIX}/logout", self.logout, methods=["POST"]),
            Route(f"{PREFIX}/lists", self.lists, methods=["GET"]),
            Route(f"{PREFIX}/flags", self.flags, methods=["GET"]),
            Route(f"{PREFIX}/flags/{{flag_id}}/resolve", self.resolve_flag, methods=["POST"]),
            Route(f"{PREFIX}/contacts", self.search, methods=["GET"]),
            Route(c, self.contact, methods=["GET"]),
            Route(f"{c}/note", self.note, methods=["POST"]),
            Route(f"{c}/edit", self.edit, methods=["POST"]),
            Route(f"{c}/subscribe", self.subscribe, methods=["POST"]),
            Route(f"{c}/unsubscribe", self.unsubscribe, methods=["POST"]),
            Route(f"{c}/forget", self.forget_form, methods=["GET"]),
            Route(f"{c}/forget", self.forget, methods=["POST"]),
            Route(f"{PREFIX}/export/consent.csv", self.export_consent, methods=["GET"]),
            Route(f"{PREFIX}/export/contacts.csv", self.export_contacts, methods=["GET"]),
        ]

    # --- plumbing ---------------------------------------------------------------------------------

    def _lang(self, request: Request) -> str:
        return pick_language(
            request.query_params.get("lang"),
            request.headers.get("accept-language"),
            self.config.double_opt_in.language,
        )

    def _page(
        self, name: str, lang: str, status: int = 200, who: Who | None = None, **context: Any
    ) -> Response:
        t = CONSOLE_TEXT[lang]
        context.setdefault("title", t[f"title.{name}"])
        context.setdefault("notice", None)
        context.setdefault("error", None)
        html = self.env.get_template(f"console_{name}.html").render(
            lang=lang, t=t, who=who, prefix=PREFIX, **context
        )
        return HTMLResponse(
            html, status_code=status, headers={**NO_STORE, "Content-Security-Policy": self.csp}
        )

    def _forbidden(self, who: Who) -> Response:
        return self._page("message", who.lang, 403, who, message=CONSOLE_TEXT[who.lang]["forbidden"])

    @staticmethod
    def _secure(request: Request) -> bool:
        return request.url.scheme == "https"  # the trusted proxy's word: syncd.web.proxies

    def _cookie(self, response: Response, request: Request, name: str, value: str) -> None:
        response.set_cookie(
            name, value, path=PREFIX, httponly=True, samesite="lax", secure=self._secure(request)
        )

    @staticmethod
    def _to_login() -> Response:
        return RedirectResponse(LOGIN, status_code=303, headers=NO_STORE)

    def _user(self, session: ConsoleSession) -> ConsoleUser | None:
        with Session(self.engine) as s:
            user = s.get(ConsoleUser, session.user_id)
            return None if user is None or user.disabled else user

    async def _who(self, request: Request, action: str, form: Any = None) -> Who | Response:
        """The signed-in user allowed ``action``, or the answer: 303 to sign in, 403 for a POST
        without this session's CSRF token or an action the role may not do."""
        sid = request.cookies.get(SESSION_COOKIE)
        session = self.sessions.get(sid)
        user = await run_in_threadpool(self._user, session) if session else None
        if session is None or user is None:
            self.sessions.close(sid)
            return self._to_login()
        who = Who(user.id, user.email, user.role, session.csrf, self._lang(request))  # type: ignore[arg-type]
        if form is not None and not _same(str(form.get("csrf_token") or ""), session.csrf):
            log.warning("console.csrf_refused", user_id=user.id, path=request.url.path)
            return self._page("message", who.lang, 403, who, message=CONSOLE_TEXT[who.lang]["csrf"])
        if not who.may(action):
            log.warning("console.forbidden", user_id=user.id, action=action)
            return self._forbidden(who)
        return who

    async def _post(self, request: Request, action: str) -> tuple[Who, Any] | Response:
        form = await request.form()
        who = await self._who(request, action, form)
        return who if isinstance(who, Response) else (who, form)

    @staticmethod
    def _contact_url(email: str, **query: str) -> str:
        url = f"{PREFIX}/contacts/{quote(email, safe='@')}"
        return f"{url}?{urlencode(query)}" if query else url

    def _notice(self, request: Request, lang: str) -> str | None:
        key = request.query_params.get("done")
        return CONSOLE_TEXT[lang][f"done.{key}"] if key in NOTICES else None

    # --- sign-in ---------------------------------------------------------------------------------

    def _login_page(self, request: Request, status: int = 200, error: str | None = None) -> Response:
        lang = self._lang(request)
        token = secrets.token_urlsafe(32)
        page = self._page("login", lang, status, csrf=token, error=error)
        self._cookie(page, request, LOGIN_COOKIE, token)
        return page

    async def login_form(self, request: Request) -> Response:
        if self.sessions.get(request.cookies.get(SESSION_COOKIE)) is not None:
            return RedirectResponse(f"{PREFIX}/lists", status_code=303, headers=NO_STORE)
        return self._login_page(request)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        t = CONSOLE_TEXT[self._lang(request)]
        if not _same(str(form.get("csrf_token") or ""), request.cookies.get(LOGIN_COOKIE, "")):
            return self._login_page(request, 403, t["login.stale"])
        ip = (request.client.host if request.client else "unknown")[:64]
        email, password = str(form.get("email") or ""), str(form.get("password") or "")
        if self.addresses.blocked(ip):
            log.warning("console.login_throttled", by="address")
            if self.addresses.first_refusal(ip):
                await run_in_threadpool(self._held_back, email, ip)
            return self._login_page(request, 429, t["login.throttled"])
        outcome, user_id = await run_in_threadpool(self._check, email, password, ip)
        if outcome != "ok":
            self.addresses.failed(ip)
            log.info("console.login_refused", outcome=outcome)
            key = "login.throttled" if outcome == "locked" else "login.wrong"
            return self._login_page(request, 429 if outcome == "locked" else 401, t[key])
        self.sessions.close(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse(f"{PREFIX}/lists", status_code=303, headers=NO_STORE)
        self._cookie(response, request, SESSION_COOKIE, self.sessions.open(user_id))  # type: ignore[arg-type]
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
        log.info("console.login", user_id=user_id)
        return response

    def _held_back(self, email: str, ip: str) -> None:
        with self.engine.begin() as conn:
            row = conn.execute(_account(email)).first()
            _audit_sign_in(conn, ADDRESS_HELD_BACK, row.email if row else None, ip)

    def _check(self, email: str, password: str, ip: str) -> tuple[str, int | None]:
        """``ok`` (and the user's id), ``wrong`` or ``locked``, audited. A locked account is not
        even checked; the fifth wrong password in a row locks it for ``LOCK_FOR``."""
        now = utcnow()
        table = ConsoleUser.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            row = conn.execute(_account(email)).first()
        known = row.email if row is not None else None
        if row is not None and row.locked_until is not None and _aware(row.locked_until) > now:
            with self.engine.begin() as conn:
                _audit_sign_in(conn, LOCKED_ACCOUNT, known, ip, now)
            return "locked", None
        user = verify_password(self.engine, email, password) if password else None
        with self.engine.begin() as conn:
            if user is not None:
                conn.execute(
                    sa.update(table)
                    .where(table.c.id == user.id)
                    .values(failed_logins=0, locked_until=None, last_login_at=now)
                )
                _audit_sign_in(conn, None, user.email, ip, now)
                return "ok", user.id
            if row is None:
                _audit_sign_in(conn, UNKNOWN_ACCOUNT, None, ip, now)
            else:
                _audit_sign_in(conn, DISABLED_ACCOUNT if row.disabled else WRONG_PASSWORD, known, ip, now)
                failures = table.c.failed_logins + 1
                conn.execute(
                    sa.update(table)
                    .where(table.c.id == row.id)
                    .values(
                        failed_logins=sa.case((failures >= MAX_FAILURES, 0), else_=failures),
                        locked_until=sa.case(
                            (failures >= MAX_FAILURES, now + LOCK_FOR), else_=table.c.locked_until
                        ),
                    )
                )
        return "wrong", None

    async def logout(self, request: Request) -> Response:
        found = await self._post(request, "view")
        if isinstance(found, Response):
            return found
        self.sessions.close(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse(LOGIN, status_code=303, headers=NO_STORE)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    # --- lists and flags ---------------------------------------------------------------------------

    async def lists(self, request: Request) -> Response:
        who = await self._who(request, "view")
        if isinstance(who, Response):
            return who
        data = await run_in_threadpool(state.status, self.engine, self.config)
        return self._page("lists", who.lang, who=who, data=data)

    def _open_flags(self, list_name: str | None, rule: str | None) -> list[dict[str, Any]]:
        with Session(self.engine) as s:
            query = (
                select(Flag, Contact.email, Membership.status)
                .join(Contact, Contact.id == Flag.contact_id, isouter=True)
                .join(
                    Membership,
                    sa.and_(Membership.contact_id == Flag.contact_id, Membership.list_name == Flag.list_name),
                    isouter=True,
                )
                .where(Flag.resolved_at.is_(None))
            )
            if list_name:
                query = query.where(Flag.list_name == list_name)
            if rule:
                query = query.where(Flag.rule == rule)
            rows = s.exec(query.order_by(Flag.list_name, Flag.rule, Flag.id)).all()
        return [
            {
                "id": f.id,
                "list": f.list_name,
                "rule": f.rule,
                "email": email,
                "target": f.target_key,
                "detail": f.detail,
                "detected_at": f"{f.detected_at:%Y-%m-%d %H:%M}",
                "removable": hygiene.removable(f, held),
            }
            for f, email, held in rows
        ]

    async def flags(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        who = await self._who(request, "view")
        if isinstance(who, Response):
            return who
        list_name = request.query_params.get("list") or None
        rule = request.query_params.get("rule") or None
        rows = await run_in_threadpool(self._open_flags, list_name, rule)
        return self._page(
            "flags",
            who.lang,
            status,
            who,
            flags=rows,
            lists=list(self.config.lists),
            rules=list(RULES),
            chosen_list=list_name,
            chosen_rule=rule,
            notice=self._notice(request, who.lang),
            error=error,
        )

    async def resolve_flag(self, request: Request) -> Response:
        found = await self._post(request, "flag.resolve")
        if isinstance(found, Response):
            return found
        who, form = found
        raw = request.path_params["flag_id"]
        if not raw.isdigit() or len(raw) > 18:
            return self._page("message", who.lang, 404, who, message=CONSOLE_TEXT[who.lang]["flag.unknown"])
        flag_id = int(raw)
        try:
            await run_in_threadpool(
                hygiene.resolve, self.engine, flag_id, str(form.get("how") or ""), actor=who.actor
            )
        except hygiene.CannotResolve as exc:
            return await self.flags(request, error=str(exc), status=409)
        log.info("console.flag_resolved", user_id=who.id, flag_id=flag_id)
        return RedirectResponse(f"{PREFIX}/flags?done=resolved", status_code=303)

    # --- contacts ----------------------------------------------------------------------------------

    def _search(self, q: str, field: str) -> list[Contact]:
        needle = q.strip().lower()
        c = Contact.__table__.c  # type: ignore[attr-defined]
        if field == "tag":
            tags = normalise_tags(q)
            if not tags:
                return []
            where: Any = sa.cast(c.tags, sa.Text).contains(f'"{tags[0]}"', autoescape=True)
        elif field == "name":
            where = sa.or_(
                sa.func.lower(c.first_name).contains(needle, autoescape=True),
                sa.func.lower(c.last_name).contains(needle, autoescape=True),
            )
        elif field == "company":
            where = sa.func.lower(c.company).contains(needle, autoescape=True)
        else:
            where = c.email.contains(needle, autoescape=True)
        with Session(self.engine) as s:
            return list(s.exec(select(Contact).where(where).order_by(Contact.email).limit(SEARCH_LIMIT)))

    async def search(self, request: Request) -> Response:
        who = await self._who(request, "view")
        if isinstance(who, Response):
            return who
        q = request.query_params.get("q", "")[:320]
        field = request.query_params.get("field", "email")
        field = field if field in SEARCH_FIELDS else "email"
        found = await run_in_threadpool(self._search, q, field) if q.strip() else None
        rows = [{"email": c.email, "url": self._contact_url(c.email), "name": _name(c), "company": c.company,
                 "kind": c.kind, "tags": c.tags or []} for c in found or []]  # fmt: skip
        return self._page(
            "contacts",
            who.lang,
            who=who,
            q=q,
            field=field,
            fields=SEARCH_FIELDS,
            rows=rows,
            searched=found is not None,
        )

    def _record(self, email: str, lang: str) -> dict[str, Any] | None:
        with Session(self.engine) as s:
            contact = find_contact(s, email)
            if contact is None:
                return None
            held = edit.memberships_of(s, contact)
            flags = s.exec(
                select(Flag)
                .where(Flag.contact_id == contact.id, Flag.resolved_at.is_(None))
                .order_by(Flag.id)
            ).all()
            entries = timeline.timeline(s, contact.email, lang)
        return {
            "contact": contact,
            "fields": {f: getattr(contact, f) or "" for f in edit.EDITABLE},
            "memberships": [
                {"name": n, "title": self.config.list_title(n), "status": held.get(n)}
                for n in self.config.lists
            ],
            "flags": [{"list": f.list_name, "rule": f.rule, "detail": f.detail} for f in flags],
            "timeline": entries,
        }

    async def contact(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        who = await self._who(request, "view")
        if isinstance(who, Response):
            return who
        return await self._contact_page(request, who, error, status)

    async def _contact_page(
        self, request: Request, who: Who, error: str | None = None, status: int = 200
    ) -> Response:
        email = request.path_params["email"]
        record = await run_in_threadpool(self._record, email, who.lang)
        if record is None:
            return self._page(
                "message", who.lang, 404, who, message=CONSOLE_TEXT[who.lang]["contact.unknown"]
            )
        return self._page(
            "contact",
            who.lang,
            status,
            who,
            title=record["contact"].email,
            url=self._contact_url(record["contact"].email),
            kinds=list(self.config.kinds),
            stages=list(self.config.stages),
            note_channels=notes.CHANNELS,
            notice=self._notice(request, who.lang),
            error=error,
            **record,
        )

    async def _change(
        self, request: Request, action: str, change: Callable[[Who, Any, Session, Contact], str]
    ) -> Response:
        """A POST on one contact: ``change`` runs in one transaction and returns the notice's key;
        a change the rules refuse becomes the page again with the reason (400), nothing written."""
        found = await self._post(request, action)
        if isinstance(found, Response):
            return found
        who, form = found

        def run() -> str | None:
            with session_scope(self.engine) as s:
                contact = find_contact(s, request.path_params["email"])
                if contact is None:
                    return None
                return change(who, form, s, contact)

        try:
            done = await run_in_threadpool(run)
        except (edit.InvalidChange, edit.Refused, ConsentRequired) as exc:
            return await self._contact_page(request, who, str(exc), 400)
        if done is None:
            return self._page(
                "message", who.lang, 404, who, message=CONSOLE_TEXT[who.lang]["contact.unknown"]
            )
        log.info("console.contact_changed", user_id=who.id, action=action)
        return RedirectResponse(
            self._contact_url(lookup_email(request.path_params["email"]), done=done), status_code=303
        )

    async def note(self, request: Request) -> Response:
        """A note about the contact (``notes.add_note``: its own transaction and audit line)."""
        found = await self._post(request, "contact.note")
        if isinstance(found, Response):
            return found
        who, form = found
        email = request.path_params["email"]
        channel, summary = str(form.get("channel") or ""), str(form.get("summary") or "")
        try:
            await run_in_threadpool(notes.add_note, self.engine, email, channel, summary, who.actor)
        except notes.InvalidNote as exc:
            return await self._contact_page(request, who, str(exc), 400)
        except notes.UnknownContact:
            return self._page(
                "message", who.lang, 404, who, message=CONSOLE_TEXT[who.lang]["contact.unknown"]
            )
        log.info("console.contact_changed", user_id=who.id, action="contact.note")
        return RedirectResponse(self._contact_url(lookup_email(email), done="noted"), status_code=303)

    async def edit(self, request: Request) -> Response:
        def apply(who: Who, form: Any, s: Session, contact: Contact) -> str:
            asked = {f: str(form.get(f) or "").strip() for f in edit.EDITABLE if f in form}
            assignments = {f: v for f, v in asked.items() if v != (getattr(contact, f) or "")}
            values = edit.qualified_values(contact, assignments, self.config)
            tags = (
                normalise_tags(str(form.get("tags_add") or "")),
                normalise_tags(str(form.get("tags_remove") or "")),
            )
            edit.apply_changes(s, contact, values, tags, actor=who.actor)
            return "saved"

        return await self._change(request, "contact.edit", apply)

    def _list_name(self, who: Who, form: Any) -> str:
        name = str(form.get("list") or "")
        if name not in self.config.lists:
            raise edit.InvalidChange(CONSOLE_TEXT[who.lang]["list.unknown"])
        return name

    async def subscribe(self, request: Request) -> Response:
        def join(who: Who, form: Any, s: Session, contact: Contact) -> str:
            name = self._list_name(who, form)
            evidence = str(form.get("evidence") or "").strip()[:500] or None
            if evidence is None and self.config.list(name).consent != "legitimate_interest":
                raise edit.Refused(CONSOLE_TEXT[who.lang]["subscribe.evidence"])
            edit.subscribe(
                s, self.config, contact, name, consent="single_opt_in", evidence=evidence, source=who.actor
            )
            return "subscribed"

        return await self._change(request, "membership.change", join)

    async def unsubscribe(self, request: Request) -> Response:
        def leave(who: Who, form: Any, s: Session, contact: Contact) -> str:
            name = self._list_name(who, form)
            reason = str(form.get("reason") or "").strip() or "unsubscribed by the team"
            leave_list(s, contact, name, reason=reason[:200], source=who.actor)
            return "unsubscribed"

        return await self._change(request, "membership.change", leave)

    async def forget_form(self, request: Request) -> Response:
        who = await self._who(request, "contact.erase")
        if isinstance(who, Response):
            return who
        email = lookup_email(request.path_params["email"])
        return self._page("forget", who.lang, who=who, email=email, url=self._contact_url(email))

    async def forget(self, request: Request) -> Response:
        found = await self._post(request, "contact.erase")
        if isinstance(found, Response):
            return found
        who, form = found
        email = lookup_email(request.path_params["email"])
        if lookup_email(str(form.get("confirm") or "")) != email:
            page = self._page(
                "forget", who.lang, 400, who, email=email, url=self._contact_url(email),
                error=CONSOLE_TEXT[who.lang]["forget.mismatch"],
            )  # fmt: skip
            return page
        await run_in_threadpool(lambda: forget_contact(self.engine, email, actor=who.actor))
        log.info("console.contact_forgotten", user_id=who.id)
        return self._page("message", who.lang, 200, who, message=CONSOLE_TEXT[who.lang]["done.forgotten"])

    # --- exports -----------------------------------------------------------------------------------

    async def _export(
        self, request: Request, name: str, header: list[str], rows: Callable[[], Iterator[dict]]
    ) -> Response:
        who = await self._who(request, "export.bulk")
        if isinstance(who, Response):
            return who
        log.info("console.export", user_id=who.id, export=name)
        return StreamingResponse(
            _csv(header, rows()),
            media_type="text/csv; charset=utf-8",
            headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'},
        )

    async def export_consent(self, request: Request) -> Response:
        return await self._export(request, "consent.csv", list(CONSENT_FIELDS), lambda: consents(self.engine))

    async def export_contacts(self, request: Request) -> Response:
        def rows() -> Iterator[dict]:
            for row in contacts(self.engine):
                row["tags"] = "|".join(row["tags"] or [])
                row["attributes"] = "" if not row["attributes"] else _json(row["attributes"])
                row["lists"] = "|".join(f"{n}:{s}" for n, s in row["lists"].items())
                yield row

        return await self._export(request, "contacts.csv", [*CONTACT_FIELDS, "lists"], rows)


def _account(email: str) -> Any:
    """The console user an address typed at sign-in names (the query)."""
    table = ConsoleUser.__table__  # type: ignore[attr-defined]
    return sa.select(table.c.id, table.c.email, table.c.locked_until, table.c.disabled).where(
        table.c.email == lookup_email(email)
    )


def _audit_sign_in(conn: Any, reason: str | None, user: str | None, ip: str, at: Any = None) -> None:
    """One sign-in in the audit trail, about no contact: ``reason`` None for a success. ``user``
    is a console user's own address, never what was typed for an unknown one."""
    detail: dict[str, str] = {} if reason is None else {"reason": reason}
    if user is not None:
        detail["user"] = user
    detail["ip"] = ip
    action, actor = (SIGN_IN, f"console:{user}"[:100]) if reason is None else (SIGN_IN_FAILED, ANONYMOUS)
    conn.execute(
        sa.insert(AuditLog.__table__).values(  # type: ignore[attr-defined]
            at=at or utcnow(), actor=actor, action=action, contact_id=None, detail=detail
        )
    )


def _csv(header: list[str], rows: Iterator[dict]) -> Iterator[str]:
    """CSV a chunk of rows at a time: the export is written as it is read (the sync generator runs
    in Starlette's thread pool)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for n, row in enumerate(rows, 1):
        writer.writerow(row)
        if n % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _name(c: Contact) -> str:
    return " ".join(p for p in (c.first_name, c.last_name) if p)


def _aware(value: Any) -> Any:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
