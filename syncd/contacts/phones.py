"""Phone numbers in E.164: parsed with phonenumbers, read as national numbers of the contact's
country (else the default region). Results are cached per (text, region).
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

import phonenumbers


def normalise_phone(raw: str, region: str) -> str:
    """E.164, or ``ValueError`` when the number cannot be a real one."""
    return _fast_e164(raw, region) or _parse_phone(raw, region)


@lru_cache(maxsize=65536)
def _parse_phone(raw: str, region: str) -> str:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise ValueError("unparseable phone") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("invalid phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# The common shapes of a number of the default region's own country ("06 12 34 56 78",
# "+33 (0)6 12 34 56 78", "0033 6…") are checked here against phonenumbers' own metadata for that
# region, which is what is_valid_number does, at a tenth of the cost. Anything else, or anything
# this path would call invalid, goes through phonenumbers.parse.
_PHONE_NOISE = re.compile(r"[\s.\-/()\u00a0]")


def _fast_e164(raw: str, region: str) -> str | None:
    check = _region_check(region)
    if check is None:
        return None
    cc, descs = check
    text = raw.replace("(0)", "")
    digits = _PHONE_NOISE.sub("", text)
    if digits.startswith("+" + cc):
        nsn = digits[len(cc) + 1 :]
    elif digits.startswith("00" + cc):
        nsn = digits[len(cc) + 2 :]
    elif digits.startswith("0") and not digits.startswith("00"):
        nsn = digits[1:]
    else:
        return None
    if not nsn.isdigit() or not nsn.isascii() or nsn.startswith("0"):
        return None
    size = len(nsn)
    (general_lengths, general), *types = descs
    if (general_lengths and size not in general_lengths) or not general.fullmatch(nsn):
        return None
    for lengths, pattern in types:
        if (not lengths or size in lengths) and pattern.fullmatch(nsn):
            return f"+{cc}{nsn}"
    return None


@cache
def _region_check(region: str) -> tuple[str, list[tuple[frozenset[int], re.Pattern[str]]]] | None:
    """The country code and number-type patterns of ``region``, when its numbers are simple to strip."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if meta is None or meta.national_prefix != "0" or meta.national_prefix_for_parsing not in (None, "0"):
        return None
    cc = meta.country_code
    if len(phonenumbers.region_codes_for_country_code(cc)) != 1 or meta.national_prefix_transform_rule:
        return None
    if meta.general_desc is None or not meta.general_desc.national_number_pattern:
        return None
    descs = []
    # general_desc first (it is the gate); then the common types first: any type that matches
    # gives the same E.164 form, so the order only changes how soon the loop stops.
    for name in (
        "general_desc",
        "mobile",
        "fixed_line",
        "voip",
        "toll_free",
        "shared_cost",
        "premium_rate",
        "personal_number",
        "pager",
        "uan",
        "voicemail",
    ):
        desc = getattr(meta, name)
        if desc is not None and desc.national_number_pattern:
            descs.append((frozenset(desc.possible_length or ()), re.compile(desc.national_number_pattern)))
    return str(cc), descs
