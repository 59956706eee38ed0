"""Text from a webhook, made safe to store before anything else reads it.

A provider's free-text field can carry what no database column takes: a NUL (PostgreSQL refuses
it in ``text`` and ``json``), other control characters (a CR/LF in a name ends up in a mail
header), or a lone surrogate from a JSON escape like ``\\ud800`` (not encodable as UTF-8, on any
database). Free text is cleaned; an address is never cleaned into another address: one that holds
such characters is refused with its reason.
"""

from __future__ import annotations

import unicodedata
from typing import Any

MAX_EMAIL_LENGTH = 254  # RFC 5321's path limit, less the angle brackets


def clean_text(value: Any) -> str:
    """``value`` as text without control characters (whitespace ones become a space) and with
    each lone surrogate replaced by U+FFFD."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cs":
            out.append("\ufffd")
        elif category == "Cc":
            if ch in "\t\n\r\x0b\x0c":
                out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def email_problem(value: Any) -> str | None:
    """Why ``value`` cannot be an email address as given, or None when it can be one.

    Deliberately shallow (the master base validates addresses fully where it creates contacts):
    it refuses only what no address holds, so that nothing a provider sends is silently altered.
    """
    if not isinstance(value, str):
        return "is not text"
    text = value.strip()
    if not text:
        return "is empty"
    if len(text) > MAX_EMAIL_LENGTH:
        return f"is longer than {MAX_EMAIL_LENGTH} characters"
    # A printable text holds no control character nor surrogate, and of the white space only
    # U+0020: most addresses are cleared by that test alone, without a look at each character.
    printable = text.isprintable() and " " not in text
    if not printable and any(unicodedata.category(ch) in ("Cc", "Cs") or ch.isspace() for ch in text):
        return "holds a control character, a space or an unpaired surrogate"
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        return "is not of the form local@domain"
    return None
