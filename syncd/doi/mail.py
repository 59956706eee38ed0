"""The confirmation mail: its templates and wording version, its headers, and the transports
that send it (SMTP, or Brevo's transactional API).

Every mail carries RFC 8058 one-click unsubscribe headers and a link to the preference centre.
"""

from __future__ import annotations

import email.policy
import hashlib
import smtplib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from functools import lru_cache
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from syncd.config import Config
from syncd.contacts.text import clean_line
from syncd.doi.links import prefs_token, unsubscribe_token, url
from syncd.models import Contact
from syncd.providers import Connectors

TEMPLATES = Path(__file__).parent.parent / "templates"


class Undeliverable(Exception):
    """The transport can never send to this address (a permanent refusal): no retry. The message
    says why, without the address."""


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
    title = config.list_title(list_name)
    variables = {
        "first_name": clean_line(contact.first_name) or "",
        "email": contact.email,
        "list_name": list_name,
        "list_title": title,
        "list_description": title,  # its name in templates written before lists had a title
        "confirm_url": url(config, f"/confirm/{token}"),
        "unsubscribe_url": unsubscribe_url,
        "prefs_url": url(config, f"/prefs/{prefs_token(config, contact)}"),
        "expires_on": expires_at.date().isoformat(),
        "reminder": reminder,
        "sender_name": config.double_opt_in.sender.name or "",
    }
    html, text = html_t.make_module(variables), text_t.make_module(variables)
    subject = _subject(html, text)
    headers = {
        # RFC 8058 one-click unsubscribe: the mail client POSTs "List-Unsubscribe=One-Click" to the URL.
        "List-Unsubscribe": f"<{unsubscribe_url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    return Mail(
        contact.email, _full_name(contact), subject or list_name, str(html), str(text), headers, wording
    )


def _subject(html: Any, text: Any) -> str:
    """The subject a template sets, as plain text: an autoescaped template's is HTML-escaped."""
    subject = getattr(html, "subject", "") or getattr(text, "subject", "")
    return (subject.unescape() if isinstance(subject, Markup) else str(subject)).strip()


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
        # Date and Message-ID are the sender's to set (RFC 5322 3.6); a relay that adds them
        # late, or not at all, makes the mail look like spam.
        msg["Date"] = formatdate(localtime=True)
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
    """Brevo's transactional API. Its ``headers`` are for custom headers only ("not the standard
    headers"): Brevo sets Date and Message-ID itself and returns the Message-ID as ``messageId``."""
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
