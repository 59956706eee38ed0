"""Display text as the master base keeps it (one clean line) and as it compares it (folded)."""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Any

# Controls (CR, LF, TAB, NUL…), line and paragraph separators, lone surrogates.
_BREAKING = frozenset(("Cc", "Zl", "Zp", "Cs"))


def clean_line(raw: Any, max_length: int = 200) -> str | None:
    """One line of display text (a name, a company, a city): control characters, line breaks and
    lone surrogates become spaces, runs of spaces one; at most ``max_length`` characters; None when
    nothing is left. Every entry that stores such a field calls it (import, provider webhooks and
    reads), and so does the mail writer: a CR/LF in a name would split a mail header."""
    if raw is None:
        return None
    text = str(raw)
    if not text.isprintable():
        text = "".join(" " if unicodedata.category(ch) in _BREAKING else ch for ch in text)
    return " ".join(text.split())[:max_length].strip() or None


@lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """Lower-case, no accents, letters and digits only: how headers and names are compared."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isalnum() and not unicodedata.combining(c)).lower()
