"""Qualification: one raw record in, a clean contact (with warnings) or a rejection out. Pure functions.

Rules, in short (the tests in ``tests/contacts/test_qualify.py`` spell each one out):

- email: trimmed, checked by email-validator (DNS only when ``check_deliverability``), then
  lower-cased whole. No valid email → rejected.
- names: trimmed; a word typed all upper- or all lower-case is re-cased, a word typed in mixed case
  ("McDonald", "DeVito") is kept as the person wrote it. Each hyphen part is capitalised
  (Jean-François); "Mc" takes a capital after it (MCDONALD → McDonald); "o'brien" → O'Brien.
  The particles de, du, des, van, von, der, den, da, di, del, della, dos, das, zu are lower-case
  unless they are the last word ("DE LA TOUR" → "de La Tour": the article La/Le is part of the
  name and keeps its capital, as in Jean de La Fontaine); an elided d' is always lower-case
  (d'Artagnan). No name at all → kept, reported "incomplete".
- phone: E.164 with phonenumbers, the contact's country (else the default region) for national
  numbers. Unparseable or invalid → dropped, with a warning. Results are cached per (text, region).
- SIRET (14 digits) / SIREN (9): spaces, dots and dashes removed, checked with python-stdnum.
  Invalid → dropped with a warning. A valid SIREN goes to ``attributes["siren"]``.
- country: ISO 3166 alpha-2 from a code or a French/English name; unknown → dropped, warning.
- tags: split on , ; |, trimmed, lower-cased, de-duplicated. kind: mapped from common words
  (fournisseur → vendor, …) and checked against the configured kinds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError, validate_email
from stdnum.fr import siren as stdnum_siren
from stdnum.fr import siret as stdnum_siret

from syncd.config import DEFAULT_KINDS
from syncd.contacts.countries import normalise_country
from syncd.contacts.phones import normalise_phone
from syncd.contacts.text import clean_line, fold

INCOMPLETE = "incomplete: no first or last name"


@dataclass(frozen=True)
class Rules:
    default_region: str = "FR"
    check_deliverability: bool = False
    kinds: tuple[str, ...] = tuple(DEFAULT_KINDS)
    default_kind: str | None = None


@dataclass
class Qualified:
    email: str
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    company: str | None = None
    siret: str | None = None
    kind: str | None = None
    stage: str | None = None
    tags: list[str] = field(default_factory=list)
    country: str | None = None
    region: str | None = None
    city: str | None = None
    postal_code: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)

    @property
    def incomplete(self) -> bool:
        return not (self.first_name or self.last_name)


@dataclass(frozen=True)
class Rejected:
    reason: str


# --- email ------------------------------------------------------------------------------------

# The common case (an ASCII dot-atom local part) is checked here and only the domain goes through
# email-validator, once per domain: a million-row import sees a few thousand domains.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE = re.compile(rf"^({_ATOM}(?:\.{_ATOM})*)@([A-Za-z0-9.-]+)$")


class InvalidEmail(ValueError):
    pass


def normalise_email(raw: str | None, *, check_deliverability: bool = False) -> str:
    """The address as the master base keys it, or ``InvalidEmail`` saying why."""
    text = (raw or "").strip()
    if not text:
        raise InvalidEmail("no email address")
    m = _SIMPLE.match(text)
    if m and len(m.group(1)) <= 64 and len(text) <= 254:
        return f"{m.group(1)}@{_domain(m.group(2).lower(), check_deliverability)}".lower()
    return _full_check(text, check_deliverability)


@lru_cache(maxsize=65536)
def _domain(domain: str, check_deliverability: bool) -> str:
    return _full_check(f"a@{domain}", check_deliverability).partition("@")[2]


@lru_cache(maxsize=65536)
def _full_check(text: str, check_deliverability: bool) -> str:
    try:
        info = validate_email(text, check_deliverability=check_deliverability)
    except EmailNotValidError as exc:
        raise InvalidEmail(f"invalid email: {exc}") from None
    return info.normalized.lower()


# --- names ------------------------------------------------------------------------------------

_PARTICLES = {"de", "du", "des", "van", "von", "der", "den", "da", "di", "del", "della", "dos", "das", "zu"}
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'"})


@lru_cache(maxsize=65536)
def normalise_name(raw: str | None) -> str | None:
    text = clean_line((raw or "").translate(_APOSTROPHES))
    if not text:
        return None
    words = text.split(" ")
    out = []
    for i, word in enumerate(words):
        last = i == len(words) - 1
        if not last and word.lower() in _PARTICLES:
            out.append(word.lower())
        elif word.lower().startswith("d'") and len(word) > 2:
            out.append("d'" + _case_word(word[2:]))
        else:
            out.append(_case_word(word))
    return " ".join(out)


def _case_word(word: str) -> str:
    if word != word.upper() and word != word.lower():
        return word  # typed in mixed case on purpose: McDonald, DeVito
    return "-".join(_case_part(p) for p in word.split("-"))


def _case_part(part: str) -> str:
    if "'" in part:
        head, _, rest = part.partition("'")
        if head.lower() == "d":
            return "d'" + _case_part(rest)
        return _capital(head) + "'" + _case_part(rest)
    low = part.lower()
    if low.startswith("mc") and len(low) > 2:
        return "Mc" + _capital(low[2:])
    return _capital(low)


def _capital(part: str) -> str:
    return part[:1].upper() + part[1:].lower()


# --- company numbers, kinds, tags ------------------------------------------------------------

_NUMBER_NOISE = re.compile(r"[\s.\-\u00a0]")


@lru_cache(maxsize=65536)
def normalise_siret(raw: str) -> tuple[str | None, str | None]:
    """(siret, siren) from a SIRET or a SIREN with any spacing; ``ValueError`` when invalid."""
    digits = _NUMBER_NOISE.sub("", raw)
    if len(digits) == 14 and stdnum_siret.is_valid(digits):
        return digits, None
    if len(digits) == 9 and stdnum_siren.is_valid(digits):
        return None, digits
    raise ValueError("invalid SIRET/SIREN")


_KIND_WORDS = {
    "client": "client",
    "clients": "client",
    "customer": "client",
    "cliente": "client",
    "prospect": "prospect",
    "prospects": "prospect",
    "lead": "prospect",
    "fournisseur": "vendor",
    "fournisseurs": "vendor",
    "vendor": "vendor",
    "supplier": "vendor",
    "partenaire": "partner",
    "partner": "partner",
    "salarie": "employee",
    "employe": "employee",
    "employee": "employee",
    "autre": "other",
    "other": "other",
}


def normalise_kind(raw: str, kinds: tuple[str, ...]) -> str:
    folded = fold(raw)
    kind = _KIND_WORDS.get(folded, folded)
    if kind not in kinds:
        raise ValueError(f"unknown kind (expected one of {', '.join(kinds)})")
    return kind


_TAG_SPLIT = re.compile(r"[,;|]")


def normalise_tags(raw: str) -> list[str]:
    return list(_tags(raw))


@lru_cache(maxsize=65536)
def _tags(raw: str) -> tuple[str, ...]:
    tags: list[str] = []
    for tag in _TAG_SPLIT.split(raw):
        tag = " ".join(tag.split()).lower()
        if tag and tag not in tags:
            tags.append(tag)
    return tuple(tags)


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    if value.__class__ is str:
        if "  " not in value and value.isprintable() and value == value.strip():
            return value or None  # already clean: the common case, without a split and a join
        return " ".join(value.split()) or None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a spreadsheet cell holding 75001 or 612345678
    text = " ".join(str(value).split())
    return text or None


# --- one record ---------------------------------------------------------------------------------


def qualify(record: dict[str, Any], rules: Rules = Rules()) -> Qualified | Rejected:
    """Qualify one record keyed by field names (email, first_name, …, attributes)."""
    r = {k: c for k, v in record.items() if k != "attributes" and (c := _clean(v)) is not None}
    try:
        email = normalise_email(r.get("email"), check_deliverability=rules.check_deliverability)
    except InvalidEmail as exc:
        return Rejected(str(exc))
    q = Qualified(email=email, attributes=dict(record.get("attributes") or {}))
    first, last, full = r.get("first_name"), r.get("last_name"), r.get("full_name")
    if full and not (first or last):
        first, _, last = full.rpartition(" ") if " " in full else ("", "", full)
    q.first_name, q.last_name = normalise_name(first), normalise_name(last)
    if q.incomplete:
        q.issues.append(INCOMPLETE)
    q.company, q.city, q.region = r.get("company"), r.get("city"), r.get("region")
    if stage := r.get("stage"):
        q.stage = stage.lower()
    if country := r.get("country"):
        try:
            q.country = normalise_country(country)
        except ValueError:
            q.issues.append(f"country dropped: unknown country {country!r}")
    if postal := r.get("postal_code"):
        if (q.country or rules.default_region) == "FR" and postal.isdigit() and len(postal) == 4:
            postal = "0" + postal  # a spreadsheet ate the leading zero of 01000
        q.postal_code = postal
    if phone := r.get("phone"):
        try:
            q.phone = normalise_phone(phone, q.country or rules.default_region)
        except ValueError as exc:
            q.issues.append(f"phone dropped: {exc}")
    for key in ("siret", "siren"):
        if number := r.get(key):
            try:
                siret, siren = normalise_siret(number)
            except ValueError:
                q.issues.append(f"{key.upper()} dropped: invalid {key.upper()}")
                continue
            q.siret = q.siret or siret
            if siren:
                q.attributes["siren"] = siren
    if tags := r.get("tags"):
        q.tags = normalise_tags(tags)
    if kind := r.get("kind"):
        try:
            q.kind = normalise_kind(kind, rules.kinds)
        except ValueError as exc:
            q.issues.append(f"kind dropped: {exc}")
    q.kind = q.kind or rules.default_kind
    return q
