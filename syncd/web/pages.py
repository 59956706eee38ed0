"""The contact's pages: ``/confirm`` (double opt-in), ``/unsubscribe`` (one list, RFC 8058 one-click)
and ``/prefs`` (the preference centre). Plain HTML forms: no JavaScript, French and English.

Every state change takes a POST: mail scanners and link previewers fetch GETs on their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from syncd import doi
from syncd.config import Config
from syncd.log import get_logger
from syncd.membership import leave_list, membership, opt_out_everywhere
from syncd.models import Contact, Membership, MembershipStatus, utcnow
from syncd.web.headers import content_security_policy, style_hashes
from syncd.web.wording import TEXT, pick_language

log = get_logger(__name__)

CSRF_MAX_AGE_S = 24 * 3600
STATE_PAGES = {  # confirmation state -> (title key, message key, HTTP status)
    "ready": ("confirm.title", "confirm.ready", 200),
    "confirmed": ("confirm.done.title", "confirm.done", 200),
    "already": ("confirm.already.title", "confirm.already", 200),
    "expired": ("confirm.expired.title", "confirm.expired", 410),
    "withdrawn": ("confirm.withdrawn.title", "confirm.withdrawn", 410),
    "invalid": ("invalid.title", "invalid", 400),
    "sent": ("confirm.renewed.title", "confirm.renewed", 200),
    "failed": ("confirm.renewed.title", "confirm.renew_failed", 503),
    "limited": ("confirm.limited.title", "confirm.limited", 429),
}


class Pages:
    def __init__(self, config: Config, engine: Engine, env: Any, send: Callable[[], doi.Send]):
        self.config, self.engine, self.env = config, engine, env
        self._send = send  # built on first use: the mail transport is only needed to renew a link

    @property
    def content_security_policy(self) -> str:
        """The pages' CSP: their one inline style block, by hash; no script at all."""
        source, _, _ = self.env.loader.get_source(self.env, "page_base.html")
        return content_security_policy(style_hashes(source))

    # --- rendering -------------------------------------------------------------------------------

    def _lang(self, request: Request, form: Any = None) -> str:
        asked = (form or {}).get("lang") or request.query_params.get("lang")
        return pick_language(
            asked, request.headers.get("accept-language"), self.config.double_opt_in.language
        )

    def _page(self, name: str, lang: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(lang=lang, t=TEXT[lang], **context)
        return HTMLResponse(
            html,
            status_code=status,
            headers={"Cache-Control": "no-store"},  # security headers: syncd.web.headers
        )

    def _message(self, lang: str, title_key: str, message: str, status: int, **context: Any) -> HTMLResponse:
        for key in ("form_action", "form_button", "prefs_url"):
            context.setdefault(key, None)
        return self._page(
            "page_message.html", lang, status, title=TEXT[lang][title_key], message=message, **context
        )

    def _invalid(self, lang: str) -> HTMLResponse:
        return self._message(lang, "invalid.title", TEXT[lang]["invalid"], 400)

    def _label(self, list_name: str | None) -> str:
        return self.config.list_title(list_name) if list_name else ""

    def _prefs_url(self, contact: Contact | None, lang: str) -> str | None:
        return f"/prefs/{doi.prefs_token(self.config, contact)}?lang={lang}" if contact else None

    # --- /confirm ----------------------------------------------------------------------------------

    def _confirm_page(self, request: Request, lang: str, found: doi.Request) -> HTMLResponse:
        title_key, message_key, status = STATE_PAGES[found.state]
        when = f"{found.retry_at:%Y-%m-%d %H:%M} UTC" if found.retry_at else ""
        text = TEXT[lang][message_key].format(
            list=self._label(found.list_name),
            email=found.contact.email if found.contact else "",
            when=when,
        )
        token = request.path_params["token"]
        action = button = None
        if found.state == "ready":
            action, button = f"/confirm/{token}", TEXT[lang]["confirm.button"]
        elif found.state == "expired":
            action, button = f"/confirm/{token}/renew", TEXT[lang]["confirm.renew"]
        prefs = self._prefs_url(found.contact, lang) if found.state in ("confirmed", "already") else None
        page = self._message(
            lang, title_key, text, status, form_action=action, form_button=button, prefs_url=prefs
        )
        if found.retry_at is not None:
            page.headers["Retry-After"] = str(max(1, int((found.retry_at - utcnow()).total_seconds())))
        return page

    async def confirm_get(self, request: Request) -> Response:
        lang = self._lang(request)
        token = request.path_params["token"]

        def look() -> doi.Request:
            with Session(self.engine) as session:
                return doi.look_up(session, self.config, token, now=utcnow())

        return self._confirm_page(request, lang, await run_in_threadpool(look))

    async def confirm_post(self, request: Request) -> Response:
        form = await request.form()
        lang = self._lang(request, form)
        ip = request.client.host if request.client else None
        found = await run_in_threadpool(
            doi.confirm,
            self.engine,
            self.config,
            request.path_params["token"],
            ip=ip,
            user_agent=request.headers.get("user-agent"),
        )
        return self._confirm_page(request, lang, found)

    async def confirm_renew(self, request: Request) -> Response:
        form = await request.form()
        lang = self._lang(request, form)
        token = request.path_params["token"]
        found = await run_in_threadpool(lambda: doi.renew(self.engine, self.config, token, self._send()))
        return self._confirm_page(request, lang, found)

    # --- /unsubscribe (one list) ---------------------------------------------------------------------

    def _unsub_target(self, session: Session, token: str) -> tuple[Contact, str] | None:
        parts = doi.unsign(self.config, "unsub", token)
        if not parts or len(parts) != 3:
            return None
        contact = doi.contact_of(session, parts[0], parts[2])
        return (contact, parts[1]) if contact else None

    async def unsubscribe_get(self, request: Request) -> Response:
        lang = self._lang(request)
        token = request.path_params["token"]

        def look() -> tuple[Contact, str] | None:
            with Session(self.engine) as session:
                return self._unsub_target(session, token)

        found = await run_in_threadpool(look)
        if found is None:
            return self._invalid(lang)
        contact, list_name = found
        text = TEXT[lang]["unsub.ask"].format(list=self._label(list_name), email=contact.email)
        return self._message(
            lang,
            "unsub.title",
            text,
            200,
            form_action=f"/unsubscribe/{token}",
            form_button=TEXT[lang]["unsub.button"],
            prefs_url=self._prefs_url(contact, lang),
        )

    async def unsubscribe_post(self, request: Request) -> Response:
        """RFC 8058 one-click (body ``List-Unsubscribe=One-Click``) and the page's button alike."""
        form = await request.form()
        lang = self._lang(request, form)
        token = request.path_params["token"]

        def leave() -> tuple[Contact, str] | None:
            with Session(self.engine, expire_on_commit=False) as session:
                found = self._unsub_target(session, token)
                if found is not None:
                    leave_list(
                        session, found[0], found[1], reason="unsubscribe link", source="web:unsubscribe"
                    )
                    session.commit()
                return found

        found = await run_in_threadpool(leave)
        if found is None:
            return self._invalid(lang)
        contact, list_name = found
        text = TEXT[lang]["unsub.done"].format(list=self._label(list_name))
        return self._message(lang, "unsub.done.title", text, 200, prefs_url=self._prefs_url(contact, lang))

    # --- /prefs --------------------------------------------------------------------------------------

    def _prefs_contact(self, session: Session, token: str) -> Contact | None:
        parts = doi.unsign(self.config, "prefs", token)
        return doi.contact_of(session, parts[0], parts[1]) if parts and len(parts) == 2 else None

    def _csrf(self, contact: Contact) -> str:
        return doi.sign(self.config, "csrf", contact.id, int(time.time()))

    def _csrf_ok(self, contact: Contact, value: str) -> bool:
        parts = doi.unsign(self.config, "csrf", value)
        return (
            bool(parts)
            and len(parts) == 2
            and parts[0] == contact.id
            and isinstance(parts[1], int)
            and 0 <= time.time() - parts[1] <= CSRF_MAX_AGE_S
        )

    def _prefs_page(
        self,
        request: Request,
        lang: str,
        contact: Contact,
        rows: list[Membership],
        notice: str | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        lists = [
            {
                "name": m.list_name,
                "label": self._label(m.list_name),
                "pending": m.status == MembershipStatus.PENDING,
            }
            for m in rows
        ]
        return self._page(
            "page_prefs.html",
            lang,
            status,
            title=TEXT[lang]["prefs.title"],
            intro=TEXT[lang]["prefs.intro"].format(email=contact.email),
            lists=lists,
            csrf=self._csrf(contact),
            notice=notice,
            form_action=f"/prefs/{request.path_params['token']}",
        )

    @staticmethod
    def _active(session: Session, contact: Contact) -> list[Membership]:
        return list(
            session.exec(
                select(Membership)
                .where(Membership.contact_id == contact.id)
                .where(
                    sa.or_(
                        Membership.status == MembershipStatus.SUBSCRIBED,
                        Membership.status == MembershipStatus.PENDING,
                    )
                )
                .order_by(Membership.list_name)
            ).all()
        )

    async def prefs_get(self, request: Request) -> Response:
        lang = self._lang(request)

        def look() -> tuple[Contact, list[Membership]] | None:
            with Session(self.engine, expire_on_commit=False) as session:
                contact = self._prefs_contact(session, request.path_params["token"])
                return (contact, self._active(session, contact)) if contact else None

        found = await run_in_threadpool(look)
        if found is None:
            return self._invalid(lang)
        return self._prefs_page(request, lang, *found)

    async def prefs_post(self, request: Request) -> Response:
        form = await request.form()
        lang = self._lang(request, form)
        keep, shown = set(form.getlist("keep")), set(form.getlist("shown"))
        everything = form.get("all") == "1"

        def save() -> tuple[str, Contact, list[Membership]] | None:
            with Session(self.engine, expire_on_commit=False) as session:
                contact = self._prefs_contact(session, request.path_params["token"])
                if contact is None:
                    return None
                if not self._csrf_ok(contact, str(form.get("csrf") or "")):
                    return "stale", contact, self._active(session, contact)
                if everything:
                    opt_out_everywhere(
                        session, contact, reason="preference centre: everything", source="web:prefs"
                    )
                else:
                    # Only lists the page showed and the contact unticked: a list joined since the
                    # page was loaded is not touched (it was not on the form).
                    for list_name in sorted(shown - keep):
                        if membership(session, contact.id, list_name) is not None:  # type: ignore[arg-type]
                            leave_list(
                                session, contact, list_name, reason="preference centre", source="web:prefs"
                            )
                session.commit()
                return "saved", contact, self._active(session, contact)

        result = await run_in_threadpool(save)
        if result is None:
            return self._invalid(lang)
        outcome, contact, rows = result
        if outcome == "stale":
            return self._prefs_page(request, lang, contact, rows, TEXT[lang]["prefs.stale"], 400)
        return self._prefs_page(request, lang, contact, rows, TEXT[lang]["prefs.saved"])
