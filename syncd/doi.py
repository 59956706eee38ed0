"""Double opt-in: signed links, confirmation mails, reminders, expiry, and the consent proof.

A contact joining a ``consent: double_opt_in`` list is ``pending`` (``membership.join_list``).
``send_pending`` mails each pending request a single-use link to ``/confirm/{token}``; only the
token's SHA-256 is stored (``DoiToken``), so a copy of the base cannot confirm anyone. The link
opens a page with a button: confirming takes a POST, because mail scanners pre-fetch every GET in
a message, and a GET that confirmed would let them consent on the contact's behalf.

``remind`` mails a second link once ``remind_after`` has passed; ``expire`` closes requests not
confirmed within ``expires_after``: the membership goes to ``unsubscribed`` with reason
"doi expired" (never pushed, since it was never confirmed; a new request starts afresh).

Every mail carries RFC 8058 one-click unsubscribe headers and a link to the preference centre.
"""

from __future__ import annotations

import base64
import email.policy
import hashlib
import hmac
import json
import re
import secrets
import smtplib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncd.config import Config
from syncd.contacts.qualify import clean_line
from syncd.db import email_hash
from syncd.log import get_logger
from syncd.membership import join_list, leave_list, membership
from syncd.metrics import DOI_CONFIRMED, DOI_EXPIRED, DOI_SENT
from syncd.models import (
    Consent,
    ConsentAction,
    Contact,
    DoiToken,
    EmailStatus,
    Membership,
    MembershipStatus,
    utcnow,
)
from syncd.netaddr import parse_ip
from syncd.providers import Connectors

log = get_logger(__name__)

TEMPLATES = Path(__file__).with_name("templates")
UNREACHABLE = (EmailStatus.BOUNCED, EmailStatus.COMPLAINED, EmailStatus.INVALID)
MAX_BACKOFF = timedelta(days=1)  # between two attempts at a confirmation mail


class DoiNotConfigured(Exception):
    """``double_opt_in.secret`` is missing: links cannot be signed."""


class Undeliverable(Exception):
    """The transport can never send to this address (a permanent refusal): no retry. The message
    says why, without the address."""


# --- signed links ------------------------------------------------------------------------------


def _key(config: Config) -> bytes:
    secret = config.double_opt_in.secret
    if not secret:
        raise DoiNotConfigured("set 'double_opt_in.secret' (from an environment variable) to sign links")
    return secret.encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _unb64(text: str) -> bytes:
    """Strict: the URL-safe alphabet, no padding, no junk, and only the one canonical spelling of
    the bytes (a link with characters appended, or with its last bits altered, does not verify)."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not canonical unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not canonical unpadded base64url")
    return data


def sign(config: Config, purpose: str, *parts: Any) -> str:
    """A URL-safe token carrying ``parts``, bound to ``purpose`` by an HMAC with the DOI secret."""
    payload = json.dumps([purpose, *parts], separators=(",", ":")).encode()
    mac = hmac.new(_key(config), payload, hashlib.sha256).digest()[:18]
    return f"{_b64(payload)}.{_b64(mac)}"


def unsign(config: Config, purpose: str, token: str) -> list[Any] | None:
    """The parts of a token signed for ``purpose``; None if forged, altered or for another use."""
    body, dot, mac = token.partition(".")
    if not dot:
        return None
    try:
        payload, given = _unb64(body), _unb64(mac)
        expected = hmac.new(_key(config), payload, hashlib.sha256).digest()[:18]
        if not hmac.compare_digest(expected, given):
            return None
        parts = json.loads(payload)
    except (ValueError, TypeError):
        return None
    if not isinstance(parts, list) or not parts or parts[0] != purpose:
        return None
    return parts[1:]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _bind(contact: Contact) -> str:
    # Binds a link to the address too, so that a reused contact id never opens someone else's page.
    return email_hash(contact.email)[:12]


def unsubscribe_token(config: Config, contact: Contact, list_name: str) -> str:
    return sign(config, "unsub", contact.id, list_name, _bind(contact))


def prefs_token(config: Config, contact: Contact) -> str:
    return sign(config, "prefs", contact.id, _bind(contact))


def contact_of(session: Session, contact_id: Any, bound: Any) -> Contact | None:
    contact = session.get(Contact, contact_id) if isinstance(contact_id, int) else None
    return contact if contact is not None and _bind(contact) == bound else None


def url(config: Config, path: str) -> str:
    return config.double_opt_in.public_url.rstrip("/") + path


# --- mails ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    to_email: str
    to_name: str | None
    subject: str
    html: str
    text: str
    headers: Mapping[str, str]
    wording: str


Send = Callable[[Mail], str]  # returns the message id


@lru_cache(maxsize=16)
def _environment(directory: str) -> Environment:
    return Environment(
        loader=FileSystemLoader(directory),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def _templates(config: Config, lang: str) -> tuple[Any, Any, str]:
    """HTML and text templates, and the wording version: template name @ hash of its source."""
    custom = config.double_opt_in.template
    if custom:
        path = Path(custom)
        env = _environment(str(path.parent.resolve()))
        html = env.get_template(path.name)
        text_name = path.with_suffix(".txt").name
        text = env.get_template(text_name) if (path.parent / text_name).exists() else None
    else:
        html = text = None
    shipped = _environment(str(TEMPLATES))
    html = html or shipped.get_template(f"confirm.{lang}.html")
    text = text or shipped.get_template(f"confirm.{lang}.txt")
    source = Path(html.filename).read_bytes() + Path(text.filename).read_bytes()
    return html, text, f"{Path(html.filename).name}@{hashlib.sha256(source).hexdigest()[:12]}"


def language_of(config: Config, contact: Contact) -> str:
    lang = str((contact.attributes or {}).get("language") or config.double_opt_in.language)[:2].lower()
    return lang if lang in ("fr", "en") else config.double_opt_in.language


def render_request(
    config: Config, contact: Contact, list_name: str, token: str, *, expires_at: datetime, reminder: bool
) -> Mail:
    lang = language_of(config, contact)
    html_t, text_t, wording = _templates(config, lang)
    unsubscribe_url = url(config, f"/unsubscribe/{unsubscribe_token(config, contact, list_name)}")
    lst = config.lists.get(list_name)
    variables = {
        "first_name": clean_line(contact.first_name) or "",
        "email": contact.email,
        "list_name": list_name,
        "list_description": (lst.description if lst else None) or list_name,
        "confirm_url": url(config, f"/confirm/{token}"),
        "unsubscribe_url": unsubscribe_url,
        "prefs_url": url(config, f"/prefs/{prefs_token(config, contact)}"),
        "expires_on": expires_at.date().isoformat(),
        "reminder": reminder,
        "sender_name": config.double_opt_in.sender.name or "",
    }
    html, text = html_t.make_module(variables), text_t.make_module(variables)
    subject = str(getattr(html, "subject", "") or getattr(text, "subject", "")).strip()
    headers = {
        # RFC 8058 one-click unsubscribe: the mail client POSTs "List-Unsubscribe=One-Click" to the URL.
        "List-Unsubscribe": f"<{unsubscribe_url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    return Mail(
        contact.email, _full_name(contact), subject or list_name, str(html), str(text), headers, wording
    )


def _full_name(contact: Contact) -> str | None:
    return clean_line(" ".join(p for p in (contact.first_name, contact.last_name) if p))


def _smtp_recipient(address: str) -> tuple[str, bool]:
    """The address as SMTP carries it: an internationalised domain in its ASCII (IDNA) form, and
    whether the local part still needs SMTPUTF8 (RFC 6531)."""
    try:
        info = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise Undeliverable(f"not a deliverable address: {exc}") from None
    if info.ascii_email:
        return info.ascii_email, False
    return info.normalized, True


def smtp_transport(config: Config) -> Send:
    smtp, sender = config.double_opt_in.smtp, config.double_opt_in.sender

    def send(mail: Mail) -> str:
        to_addr, needs_utf8 = _smtp_recipient(mail.to_email)
        # No folding below RFC 5322's 998: a folded List-Unsubscribe URL would be sent as
        # RFC 2047 encoded-words, which mail clients do not read as a URL.
        msg = EmailMessage(policy=email.policy.SMTP.clone(max_line_length=998, utf8=needs_utf8))
        msg["From"] = formataddr((sender.name or "", sender.email))
        local, _, domain = to_addr.rpartition("@")
        msg["To"] = Address(display_name=clean_line(mail.to_name) or "", username=local, domain=domain)
        msg["Subject"] = mail.subject
        msg["Message-ID"] = make_msgid(domain=sender.email.rpartition("@")[2] or None)
        for name, value in mail.headers.items():
            msg[name] = value
        msg.set_content(mail.text)
        msg.add_alternative(mail.html, subtype="html")
        with smtplib.SMTP(smtp.host, smtp.port, timeout=30) as client:
            if smtp.starttls:
                client.starttls()
            if smtp.username:
                client.login(smtp.username, smtp.password or "")
            client.ehlo_or_helo_if_needed()
            if needs_utf8 and not client.has_extn("smtputf8"):
                raise Undeliverable(
                    "the address has a non-ASCII local part and the SMTP server does not offer "
                    "SMTPUTF8 (RFC 6531): use a server that does, or the Brevo transport"
                )
            try:
                # With a non-ASCII address, smtplib sends SMTPUTF8 and the message as UTF-8.
                client.send_message(msg, to_addrs=[to_addr])
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                if 500 <= code < 600:  # permanent (RFC 5321 4.2.1); 4xx is worth another try
                    raise Undeliverable(f"the SMTP server refused the address: {code}") from None
                raise
        return str(msg["Message-ID"])

    return send


def brevo_transport(config: Config, connector: Any) -> Send:
    sender = config.double_opt_in.sender

    def send(mail: Mail) -> str:
        return connector.send_email(
            sender_email=sender.email,
            sender_name=sender.name or "",
            to_email=mail.to_email,
            to_name=mail.to_name,
            subject=mail.subject,
            html=mail.html,
            text=mail.text,
            headers=dict(mail.headers),
        )

    return send


def transport(config: Config, connectors: Mapping[str, Any] | None = None) -> Send:
    """The configured way out: Brevo's transactional API or SMTP (``double_opt_in.transport``)."""
    if config.double_opt_in.transport == "smtp":
        return smtp_transport(config)
    return brevo_transport(config, Connectors.of(config, connectors)["brevo"])


# --- sending, reminding, expiring -----------------------------------------------------------------


def _issue(
    session: Session,
    config: Config,
    contact: Contact,
    list_name: str,
    *,
    now: datetime,
    expires_at: datetime,
    reminder: bool,
) -> tuple[Mail, str]:
    token = sign(config, "confirm", secrets.token_urlsafe(18))
    mail = render_request(config, contact, list_name, token, expires_at=expires_at, reminder=reminder)
    assert contact.id is not None
    session.add(
        DoiToken(
            contact_id=contact.id,
            list_name=list_name,
            token_hash=token_hash(token),
            wording=mail.wording,
            created_at=now,
            expires_at=expires_at,
            reminded_at=now if reminder else None,
        )
    )
    session.add(
        Consent(
            contact_id=contact.id,
            list_name=list_name,
            action=ConsentAction.DOI_REQUESTED,
            at=now,
            source="doi:reminder" if reminder else "doi:request",
            wording=mail.wording,
            token_hash=token_hash(token),
        )
    )
    return mail, token_hash(token)


def _failed_sends(session: Session, contact_id: int, list_name: str, since: datetime) -> int:
    """Confirmation mails (reminders aside) that did not go out since the membership began."""
    return session.exec(
        select(sa.func.count()).where(
            DoiToken.contact_id == contact_id,
            DoiToken.list_name == list_name,
            DoiToken.created_at >= since,
            DoiToken.delivery != "sent",
            DoiToken.reminded_at.is_(None),  # type: ignore[union-attr]
        )
    ).one()


def _deliver(
    engine: Engine, config: Config, send: Send, mail: Mail, token_row_hash: str, kind: str, now: datetime
) -> bool:
    """Send a mail whose token is already committed; if sending fails, see ``_not_sent``."""
    try:
        send(mail)
    except Exception as exc:  # noqa: BLE001 — any transport failure: recorded, retried or given up
        _not_sent(engine, config, token_row_hash, kind, exc, now)
        return False
    DOI_SENT.labels(kind).inc()
    return True


def _failure_reason(exc: Exception) -> str:
    """What went wrong, without the address (smtplib puts it in some of its messages)."""
    if isinstance(exc, Undeliverable):
        return str(exc)
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        code, text = next(iter(exc.recipients.values()))
        return f"SMTPRecipientsRefused: {code} {text.decode(errors='replace')}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__}: {exc.smtp_code} {exc.smtp_error.decode(errors='replace')}"
    return f"{type(exc).__name__}: {exc}"


def _not_sent(engine: Engine, config: Config, hashed: str, kind: str, exc: Exception, now: datetime) -> None:
    """The link's mail did not go out: its request proof goes, its token row stays as the record of
    the attempt. The request is mailed again (with a new link) after a back-off that doubles, until
    ``double_opt_in.retries.attempts`` failures or a permanent refusal: then it is dead, which
    ``syncd doi status`` lists and the membership's reason says. A failed reminder is not sent
    again: the first link still works."""
    retries = config.double_opt_in.retries
    permanent = isinstance(exc, Undeliverable)
    reason = _failure_reason(exc)
    with Session(engine) as session:
        session.execute(sa.delete(Consent).where(Consent.token_hash == hashed))
        row = session.exec(select(DoiToken).where(DoiToken.token_hash == hashed)).first()
        if row is None:
            session.commit()
            return
        current = membership(session, row.contact_id, row.list_name)
        since = current.since if current is not None else row.created_at
        attempt = 1 + _failed_sends(session, row.contact_id, row.list_name, since)
        row.error = reason[:500]
        if permanent or (kind != "reminder" and attempt >= retries.attempts):
            row.delivery = "dead"
            if current is not None and current.status == MembershipStatus.PENDING:
                current.reason = f"confirmation undeliverable: {reason}"[:200]
                session.add(current)
        else:
            row.delivery = "failed"
            if kind != "reminder":
                row.retry_at = now + min(retries.first_after * 2 ** min(attempt - 1, 20), MAX_BACKOFF)
        session.add(row)
        session.commit()
        fields = {"kind": kind, "contact_id": row.contact_id, "list": row.list_name, "attempt": attempt}
        if row.delivery == "dead":
            log.error("doi.undeliverable", **fields, reason=reason[:300])
        else:
            log.warning("doi.send_failed", **fields, retry_at=row.retry_at, error=reason[:300])


def _doi_lists(config: Config) -> list[str]:
    return [name for name, lst in config.lists.items() if lst.consent == "double_opt_in"]


def send_pending(
    engine: Engine,
    config: Config,
    send: Send,
    *,
    now: datetime | None = None,
    limit: int = 1000,
    lists: Collection[str] | None = None,
) -> int:
    """Mail a confirmation link to each pending request that has none yet (of ``lists`` only, when
    given). Returns mails sent."""
    names = [n for n in _doi_lists(config) if lists is None or n in lists]
    if not names:
        return 0
    now = now or utcnow()
    # A link mailed (or given up) since the request, or a failed one whose back-off is not over.
    newer_token = (
        select(DoiToken.id)
        .where(DoiToken.contact_id == Membership.contact_id, DoiToken.list_name == Membership.list_name)
        .where(DoiToken.created_at >= Membership.since)
        .where(sa.or_(DoiToken.delivery != "failed", DoiToken.retry_at > now))
    )
    with Session(engine) as session:
        todo = session.exec(
            select(Membership.contact_id, Membership.list_name)
            .join(Contact, Contact.id == Membership.contact_id)
            .where(Membership.status == MembershipStatus.PENDING, Membership.list_name.in_(names))  # type: ignore[attr-defined]
            .where(Contact.email_status.not_in(UNREACHABLE))  # type: ignore[attr-defined]
            .where(~newer_token.exists())
            .order_by(Membership.id)
            .limit(limit)
        ).all()
    sent = 0
    for contact_id, list_name in todo:
        with Session(engine, expire_on_commit=False) as session:
            contact = session.get(Contact, contact_id)
            assert contact is not None
            mail, hashed = _issue(
                session,
                config,
                contact,
                list_name,
                now=now,
                expires_at=now + config.double_opt_in.expires_after,
                reminder=False,
            )
            session.commit()
        sent += _deliver(engine, config, send, mail, hashed, "confirmation", now)
    return sent


def remind(
    engine: Engine, config: Config, send: Send, *, now: datetime | None = None, limit: int = 1000
) -> int:
    """Mail one reminder, with a fresh link, to requests unconfirmed after ``remind_after``."""
    now = now or utcnow()
    with Session(engine) as session:
        due = session.exec(
            select(DoiToken.id)
            .join(
                Membership,
                sa.and_(
                    Membership.contact_id == DoiToken.contact_id, Membership.list_name == DoiToken.list_name
                ),
            )
            .where(Membership.status == MembershipStatus.PENDING)
            .where(DoiToken.used_at.is_(None), DoiToken.reminded_at.is_(None))  # type: ignore[union-attr]
            .where(DoiToken.delivery == "sent")
            .where(DoiToken.expires_at > now, DoiToken.created_at <= now - config.double_opt_in.remind_after)
            .order_by(DoiToken.id)
            .limit(limit)
        ).all()
    sent = 0
    for token_id in due:
        with Session(engine, expire_on_commit=False) as session:
            original = session.get(DoiToken, token_id)
            contact = session.get(Contact, original.contact_id) if original else None
            if original is None or contact is None or contact.email_status in UNREACHABLE:
                continue
            original.reminded_at = now
            session.add(original)
            # The reminder's link lives as long as the first one: a reminder never extends a request.
            mail, hashed = _issue(
                session,
                config,
                contact,
                original.list_name,
                now=now,
                expires_at=original.expires_at,
                reminder=True,
            )
            session.commit()
        sent += _deliver(engine, config, send, mail, hashed, "reminder", now)
    return sent


def expire(engine: Engine, config: Config, *, now: datetime | None = None) -> int:
    """Close requests whose every link has expired unused: unsubscribed, reason "doi expired"."""
    now = now or utcnow()
    live = select(DoiToken.id).where(
        DoiToken.contact_id == Membership.contact_id,
        DoiToken.list_name == Membership.list_name,
        DoiToken.used_at.is_(None),
        DoiToken.expires_at > now,  # type: ignore[union-attr]
        DoiToken.delivery == "sent",
    )
    lapsed = select(DoiToken.id).where(
        DoiToken.contact_id == Membership.contact_id,
        DoiToken.list_name == Membership.list_name,
        DoiToken.created_at >= Membership.since,
        DoiToken.expires_at <= now,
        DoiToken.delivery == "sent",  # a request whose mails never went out is not "expired"
    )
    with Session(engine) as session:
        rows = session.exec(
            select(Membership.contact_id, Membership.list_name).where(
                Membership.status == MembershipStatus.PENDING, lapsed.exists(), ~live.exists()
            )
        ).all()
    for contact_id, list_name in rows:
        with Session(engine) as session:
            contact = session.get(Contact, contact_id)
            current = membership(session, contact_id, list_name)
            if contact is None or current is None or current.status != MembershipStatus.PENDING:
                continue
            leave_list(session, contact, list_name, reason="doi expired", source="doi:expiry", at=now)
            session.commit()
        DOI_EXPIRED.inc()
    return len(rows)


# --- confirming ------------------------------------------------------------------------------------


@dataclass
class Request:
    """What a confirmation link points at, and where the request stands."""

    state: (
        str  # invalid | ready | confirmed | already | expired | withdrawn (renewal: sent | failed | limited)
    )
    list_name: str | None = None
    contact: Contact | None = None
    token: DoiToken | None = None
    retry_at: datetime | None = None  # limited: when a new link may be asked for


def look_up(session: Session, config: Config, token: str, *, now: datetime, lock: bool = False) -> Request:
    if unsign(config, "confirm", token) is None:
        return Request("invalid")
    query = select(DoiToken).where(DoiToken.token_hash == token_hash(token))
    if lock:
        query = query.with_for_update()
    row = session.exec(query).first()
    contact = session.get(Contact, row.contact_id) if row else None
    if row is None or contact is None or row.delivery != "sent":
        return Request("invalid")
    current = membership(session, row.contact_id, row.list_name)
    found = Request("ready", row.list_name, contact, row)
    if row.used_at is not None or (current is not None and current.status == MembershipStatus.SUBSCRIBED):
        found.state = "already"
    elif row.expires_at <= now:
        found.state = "expired"
    elif current is None or current.status != MembershipStatus.PENDING or contact.email_status in UNREACHABLE:
        found.state = "withdrawn"
    return found


def confirm(
    engine: Engine,
    config: Config,
    token: str,
    *,
    ip: str | None,
    user_agent: str | None,
    now: datetime | None = None,
) -> Request:
    """Confirm a request: the proof (time, IP, user agent, wording, token hash) goes in the ledger.

    ``ip`` is kept only if it parses as an address (a proxy's header is not trusted to be one)."""
    now = now or utcnow()
    address = parse_ip(ip)
    with Session(engine, expire_on_commit=False) as session:
        found = look_up(session, config, token, now=now, lock=True)
        if found.state != "ready":
            return found
        row, contact = found.token, found.contact
        assert row is not None and contact is not None and row.id is not None
        # Single use even under a race: only the request that flips used_at from NULL goes on.
        flipped = session.exec(  # type: ignore[call-overload]
            sa.update(DoiToken).where(DoiToken.id == row.id, DoiToken.used_at.is_(None)).values(used_at=now)  # type: ignore[union-attr]
        )
        if flipped.rowcount != 1:
            session.rollback()
            found.state = "already"
            return found
        evidence = {
            "token_hash": row.token_hash,
            "wording": row.wording,
            "requested_at": row.created_at.isoformat(),
        }
        join_list(
            session,
            contact,
            row.list_name,
            config.list(row.list_name),
            consent="double_opt_in",
            source="doi:confirm",
            at=now,
            ip=str(address) if address else None,
            user_agent=(user_agent or "")[:500] or None,
            evidence=evidence,
        )
        for proof in session.new:
            if isinstance(proof, Consent) and proof.action == ConsentAction.DOI_CONFIRMED:
                proof.token_hash, proof.wording = row.token_hash, row.wording
        session.commit()
    DOI_CONFIRMED.inc()
    found.state = "confirmed"
    return found


def renew(engine: Engine, config: Config, token: str, send: Send, *, now: datetime | None = None) -> Request:
    """The contact asks, from an expired link, for a new one: a new request, mailed at once, unless
    the address already got ``double_opt_in.renewals.max`` links within ``renewals.per``
    (state ``limited``, with ``retry_at``)."""
    now = now or utcnow()
    limit = config.double_opt_in.renewals
    with Session(engine, expire_on_commit=False) as session:
        found = look_up(session, config, token, now=now)
        if found.state != "expired":
            return found
        contact, list_name = found.contact, found.list_name
        assert contact is not None and list_name is not None
        if contact.email_status in UNREACHABLE or list_name not in config.lists:
            return Request("withdrawn", list_name, contact)
        # Renewals of one address wait for each other here (a row lock on PostgreSQL, the write
        # lock on SQLite), so that the count below is never read twice before either inserts.
        session.execute(sa.update(Contact).where(Contact.id == contact.id).values(id=Contact.id))
        recent = session.exec(
            select(DoiToken.created_at)
            .where(DoiToken.contact_id == contact.id, DoiToken.created_at > now - limit.per)
            .order_by(DoiToken.created_at)
        ).all()
        if len(recent) >= limit.max:
            session.rollback()
            retry_at = recent[len(recent) - limit.max] + limit.per
            log.info("doi.renewal_limited", contact_id=contact.id, recent=len(recent), retry_at=retry_at)
            return Request("limited", list_name, contact, retry_at=retry_at)
        join_list(
            session,
            contact,
            list_name,
            config.list(list_name),
            consent="single_opt_in",
            source="doi:new-link",
            at=now,
        )
        mail, hashed = _issue(
            session,
            config,
            contact,
            list_name,
            now=now,
            expires_at=now + config.double_opt_in.expires_after,
            reminder=False,
        )
        session.commit()
    sent = _deliver(engine, config, send, mail, hashed, "confirmation", now)
    return Request("sent" if sent else "failed", list_name, contact)


# --- requests whose mail could not be sent -----------------------------------------------------------


@dataclass(frozen=True)
class DeadRequest:
    token_id: int
    contact_id: int
    email: str
    list_name: str
    attempts: int
    last_at: datetime
    error: str


def delivery_counts(engine: Engine) -> dict[str, int]:
    """Links per delivery state (sent · failed · dead)."""
    with Session(engine) as session:
        rows = session.exec(select(DoiToken.delivery, sa.func.count()).group_by(DoiToken.delivery)).all()
    return {state: n for state, n in rows}


def dead_requests(engine: Engine) -> list[DeadRequest]:
    """Pending requests syncd gave up mailing, with the last error and the attempts made."""
    with Session(engine) as session:
        rows = session.exec(
            select(DoiToken, Contact.email, Membership.since)
            .join(Contact, Contact.id == DoiToken.contact_id)
            .join(
                Membership,
                sa.and_(
                    Membership.contact_id == DoiToken.contact_id, Membership.list_name == DoiToken.list_name
                ),
            )
            .where(DoiToken.delivery == "dead", Membership.status == MembershipStatus.PENDING)
            .where(DoiToken.created_at >= Membership.since)
            .order_by(DoiToken.id)
        ).all()
        out = []
        for row, address, since in rows:
            attempts = _failed_sends(session, row.contact_id, row.list_name, since)
            assert row.id is not None
            out.append(
                DeadRequest(
                    row.id, row.contact_id, address, row.list_name, attempts, row.created_at, row.error or ""
                )
            )
    return out


def requeue(engine: Engine, token_ids: list[int] | None = None, *, now: datetime | None = None) -> int:
    """Give dead requests (all, or those of the given links) one more attempt at the next run."""
    now = now or utcnow()
    dead = [d for d in dead_requests(engine) if token_ids is None or d.token_id in token_ids]
    with Session(engine) as session:
        for d in dead:
            session.execute(
                sa.update(DoiToken).where(DoiToken.id == d.token_id).values(delivery="failed", retry_at=now)
            )
            current = membership(session, d.contact_id, d.list_name)
            if current is not None:
                current.reason = "confirmation requeued"
                session.add(current)
        session.commit()
    for d in dead:
        log.info("doi.requeued", contact_id=d.contact_id, list=d.list_name)
    return len(dead)
