"""Signed links: the confirmation, unsubscribe and preference-centre tokens.

A token carries its parts and its purpose under an HMAC with ``double_opt_in.secret``; a link
also binds the contact's address when it was made, so that a reused contact id never opens someone
else's page. A link made before a change of address still opens the contact's page: the former
address is one of theirs (``FormerAddress``), and the mail that carries the link is still theirs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any

from sqlmodel import Session, select

from syncd.config import Config
from syncd.db import email_hash
from syncd.models import Contact, FormerAddress


class DoiNotConfigured(Exception):
    """``double_opt_in.secret`` is missing: links cannot be signed."""


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


BIND_LEN = 12


def _bind(contact: Contact) -> str:
    # Binds a link to the address too, so that a reused contact id never opens someone else's page.
    return email_hash(contact.email)[:BIND_LEN]


def unsubscribe_token(config: Config, contact: Contact, list_name: str) -> str:
    return sign(config, "unsub", contact.id, list_name, _bind(contact))


def prefs_token(config: Config, contact: Contact) -> str:
    return sign(config, "prefs", contact.id, _bind(contact))


def contact_of(session: Session, contact_id: Any, bound: Any) -> Contact | None:
    """The contact a link was made for: its id, bound to its address then (now or a former one)."""
    contact = session.get(Contact, contact_id) if isinstance(contact_id, int) else None
    if contact is None or not isinstance(bound, str) or len(bound) != BIND_LEN:
        return None
    if _bind(contact) == bound:
        return contact
    former = session.exec(select(FormerAddress.email_hash).where(FormerAddress.contact_id == contact.id))
    return contact if any(h.startswith(bound) for h in former) else None


def url(config: Config, path: str) -> str:
    return config.double_opt_in.public_url.rstrip("/") + path
