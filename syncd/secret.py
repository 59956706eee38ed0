"""The secrets syncd's operator chooses (webhook URL secrets, bearer and signing secrets, the key
that signs confirmation links): what makes one strong enough, and a fresh one.

A secret in a webhook URL is guessed by trying URLs, so it must carry enough randomness to make
that hopeless: at least 32 characters that look random. Provider API keys are the provider's
business and are not judged here.
"""

from __future__ import annotations

import re
import secrets
import zlib

MIN_LENGTH = 32
HOW_TO_MAKE_ONE = "make one with `syncd secret` (or `openssl rand -base64 32`)"

# Words people type when they make a secret up; six letters or more, so that a random secret
# (base64 or hex) contains one with a probability under one in a million.
_WORDS = (
    "password",
    "passwd",
    "secret",
    "change",
    "example",
    "sample",
    "default",
    "webhook",
    "qwerty",
    "azerty",
    "letmein",
    "123456",
    "abcdef",
)
_URL_SAFE = re.compile(r"^[A-Za-z0-9._~-]+$")


def weakness(value: str, *, in_url: bool = False) -> str | None:
    """Why ``value`` is too weak to be a secret, or None when it looks random enough."""
    if len(value) < MIN_LENGTH:
        n = len(value)
        return f"{n} character{'' if n == 1 else 's'}; a secret needs at least {MIN_LENGTH} random characters"
    lowered = value.lower()
    for word in _WORDS:
        if word in lowered:
            return f"it contains the word {word!r}; a secret needs {MIN_LENGTH} random characters"
    # Random text (base64 or hex) of this length uses many distinct characters and does not
    # compress; a repeated pattern or a run of one character does both.
    if len(set(value)) < 8 or len(zlib.compress(value.encode(), 9)) < 0.8 * len(value.encode()):
        return f"it repeats itself; a secret needs {MIN_LENGTH} random characters"
    if in_url and not _URL_SAFE.match(value):
        return "it is part of a URL: use letters, digits, '-', '_', '.' or '~' only"
    return None


def generate() -> str:
    """43 URL-safe random characters (256 bits), strong by the rule above."""
    while True:
        value = secrets.token_urlsafe(32)
        if weakness(value, in_url=True) is None:
            return value
