"""Countries as ISO 3166 alpha-2 codes, from a code or a common French or English name."""

from __future__ import annotations

import phonenumbers

from syncd.contacts.text import fold

_COUNTRY_NAMES = {
    "france": "FR",
    "republiquefrancaise": "FR",
    "belgique": "BE",
    "belgium": "BE",
    "suisse": "CH",
    "switzerland": "CH",
    "luxembourg": "LU",
    "monaco": "MC",
    "allemagne": "DE",
    "germany": "DE",
    "espagne": "ES",
    "spain": "ES",
    "italie": "IT",
    "italy": "IT",
    "portugal": "PT",
    "paysbas": "NL",
    "netherlands": "NL",
    "hollande": "NL",
    "royaumeuni": "GB",
    "unitedkingdom": "GB",
    "angleterre": "GB",
    "uk": "GB",
    "irlande": "IE",
    "ireland": "IE",
    "autriche": "AT",
    "austria": "AT",
    "pologne": "PL",
    "poland": "PL",
    "etatsunis": "US",
    "usa": "US",
    "unitedstates": "US",
    "canada": "CA",
    "maroc": "MA",
    "morocco": "MA",
    "tunisie": "TN",
    "tunisia": "TN",
    "algerie": "DZ",
    "algeria": "DZ",
    "senegal": "SN",
    "cotedivoire": "CI",
    "ivorycoast": "CI",
    "suede": "SE",
    "sweden": "SE",
    "danemark": "DK",
    "denmark": "DK",
    "norvege": "NO",
    "norway": "NO",
    "grece": "GR",
    "greece": "GR",
}


def normalise_country(raw: str) -> str:
    """ISO 3166 alpha-2 from a code (any case) or a common French/English name."""
    text = raw.strip()
    if len(text) == 2 and text.isalpha() and text.upper() in phonenumbers.SUPPORTED_REGIONS:
        return text.upper()
    code = _COUNTRY_NAMES.get(fold(text))
    if code is None:
        raise ValueError("unknown country")
    return code
