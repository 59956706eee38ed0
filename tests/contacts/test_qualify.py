"""Qualification rules, one by one."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from syncd.contacts.countries import normalise_country
from syncd.contacts.phones import _fast_e164, _parse_phone, normalise_phone
from syncd.contacts.qualify import (
    INCOMPLETE,
    InvalidEmail,
    Qualified,
    Rejected,
    Rules,
    normalise_email,
    normalise_name,
    normalise_siret,
    normalise_tags,
    qualify,
)


def test_email_is_trimmed_validated_and_lower_cased_whole():
    assert normalise_email("  Jean.Dupont@Exemple.FR ") == "jean.dupont@exemple.fr"
    assert normalise_email("Élodie.Noël@Exemple.fr") == "élodie.noël@exemple.fr"


@pytest.mark.parametrize(
    "raw", ["", "   ", "paul.durand@", "sophie.exemple.fr", "jean@@exemple.fr", "a@b", "a b@c.fr"]
)
def test_invalid_email_is_refused_with_a_reason(raw):
    with pytest.raises(InvalidEmail):
        normalise_email(raw)


def test_fast_email_path_agrees_with_email_validator():
    from email_validator import EmailNotValidError, validate_email

    samples = [
        "A.b+tag@Sub.Example.COM",
        "x@exemple.fr",
        "o'brien@exemple.ie",
        "a..b@exemple.fr",
        "-x@exemple.fr",
        "x@-exemple.fr",
        "x@exemple..fr",
        "x@exemple.f",
        "x@localhost",
    ]
    for raw in samples:
        try:
            expected = validate_email(raw, check_deliverability=False).normalized.lower()
        except EmailNotValidError:
            expected = None
        try:
            got = normalise_email(raw)
        except InvalidEmail:
            got = None
        assert got == expected, raw


def test_contact_without_valid_email_is_rejected():
    result = qualify({"email": "paul.durand@", "first_name": "Paul"})
    assert isinstance(result, Rejected) and result.reason.startswith("invalid email")
    assert qualify({"first_name": "Paul"}) == Rejected("no email address")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("jean-françois", "Jean-François"),
        ("DE LA TOUR", "de La Tour"),
        ("de la tour", "de La Tour"),
        ("LE GOFF", "Le Goff"),
        ("DU BELLAY", "du Bellay"),
        ("van der berg", "van der Berg"),
        ("d'ARTAGNAN", "d'Artagnan"),
        ("o'brien", "O'Brien"),
        ("O’BRIEN", "O'Brien"),
        ("mcdonald", "McDonald"),
        ("McDonald", "McDonald"),
        ("DeVito", "DeVito"),
        ("éloïse", "Éloïse"),
        ("  marie   claire ", "Marie Claire"),
        ("DE", "De"),
    ],
)
def test_names_are_cased_sensibly(raw, expected):
    assert normalise_name(raw) == expected


def test_contact_without_any_name_is_kept_but_incomplete():
    q = qualify({"email": "contact@societe.fr"})
    assert isinstance(q, Qualified) and q.incomplete and INCOMPLETE in q.issues


def test_full_name_column_is_split_when_no_first_and_last_name():
    q = qualify({"email": "a@exemple.fr", "full_name": "jean DUPONT"})
    assert (q.first_name, q.last_name) == ("Jean", "Dupont")


@pytest.mark.parametrize(
    "raw",
    [
        "06 12 34 56 78",
        "+33 (0)6 12 34 56 78",
        "0033612345678",
        "06.12.34.56.78",
        "+33612345678",
        "06-12-34-56-78",
        "(06) 12 34 56 78",
    ],
)
def test_french_phone_formats_give_e164(raw):
    assert normalise_phone(raw, "FR") == "+33612345678"


def test_foreign_number_and_the_contacts_country_are_used():
    assert normalise_phone("+32 470 12 34 56", "FR") == "+32470123456"
    assert (
        qualify({"email": "a@exemple.be", "phone": "0470 12 34 56", "country": "Belgique"}).phone
        == "+32470123456"
    )


def test_unparseable_phone_is_dropped_and_reported_not_rejected():
    q = qualify({"email": "a@exemple.fr", "first_name": "Anne", "phone": "12 34"})
    assert isinstance(q, Qualified) and q.phone is None
    assert any(i.startswith("phone dropped") for i in q.issues)


def test_fast_phone_path_agrees_with_phonenumbers():
    rnd = random.Random(42)
    shapes = [
        "0{a} {b}",
        "+{cc} {a} {b}",
        "+{cc} (0){a} {b}",
        "00{cc}{a}{b}",
        "0{a}.{b}",
        "{a}{b}",
        "+{cc}0{a}{b}",
    ]
    handled = 0
    for region in ("FR", "BE", "DE", "CH", "NL", "GB", "IT", "US"):
        cc = str(phonenumbers.country_code_for_region(region))
        for _ in range(1500):
            digits = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(6, 12)))
            raw = rnd.choice(shapes).format(a=digits[0], b=digits[1:], cc=cc)
            fast = _fast_e164(raw, region)
            if fast is None:
                continue
            handled += 1
            assert fast == _parse_phone(raw, region), (region, raw)
    assert handled > 1000


def test_siret_and_siren_are_checked_with_spaces_removed():
    assert normalise_siret("732 829 320 00074") == ("73282932000074", None)
    assert normalise_siret("732.829.320") == (None, "732829320")
    with pytest.raises(ValueError):
        normalise_siret("123 456 789 00012")


def test_invalid_siret_is_dropped_and_reported_and_siren_goes_to_attributes():
    q = qualify({"email": "a@exemple.fr", "first_name": "A", "siret": "123 456 789 00012"})
    assert q.siret is None and "SIRET dropped: invalid SIRET" in q.issues
    q = qualify({"email": "a@exemple.fr", "first_name": "A", "siren": "732 829 320"})
    assert q.attributes["siren"] == "732829320"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("France", "FR"),
        ("FR", "FR"),
        ("fr", "FR"),
        ("Belgique", "BE"),
        ("Royaume-Uni", "GB"),
        ("  suisse ", "CH"),
        ("États-Unis", "US"),
    ],
)
def test_country_to_iso2(raw, code):
    assert normalise_country(raw) == code


def test_unknown_country_is_dropped_and_reported():
    q = qualify({"email": "a@exemple.fr", "first_name": "A", "country": "Atlantide"})
    assert q.country is None and any(i.startswith("country dropped") for i in q.issues)


def test_postal_code_is_kept_and_a_lost_leading_zero_restored_in_france():
    assert qualify({"email": "a@exemple.fr", "postal_code": "75011"}).postal_code == "75011"
    assert qualify({"email": "a@exemple.fr", "postal_code": 1000.0}).postal_code == "01000"
    assert qualify({"email": "a@exemple.be", "country": "BE", "postal_code": "1000"}).postal_code == "1000"


def test_tags_and_kind():
    assert normalise_tags("VIP, salon-2024;vip | Newsletter") == ["vip", "salon-2024", "newsletter"]
    assert qualify({"email": "a@exemple.fr", "kind": "Fournisseur"}).kind == "vendor"
    assert qualify({"email": "a@exemple.fr"}, Rules(default_kind="prospect")).kind == "prospect"
    q = qualify({"email": "a@exemple.fr", "kind": "martien"})
    assert q.kind is None and any(i.startswith("kind dropped") for i in q.issues)


def test_cells_with_odd_spacing_are_collapsed_and_clean_ones_kept():
    from syncd.contacts.qualify import qualify

    q = qualify(
        {
            "email": " ana@example.fr ",
            "first_name": "Ana\u00a0 Maria",
            "last_name": "Lopez\tGarcia",
            "city": "Saint-Étienne",
        }
    )
    assert (q.email, q.first_name, q.last_name, q.city) == (
        "ana@example.fr",
        "Ana Maria",
        "Lopez Garcia",
        "Saint-Étienne",
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ana", "Ana"),
        ("Ana\r\nBcc: x@evil.example", "Ana Bcc: x@evil.example"),
        ("  Jean\u2028Luc\x00 ", "Jean Luc"),
        ("Zo\x07é\tMartin", "Zo é Martin"),
        ("\ud800Léa", "Léa"),  # a lone surrogate
        ("\r\n\x00", None),
        (None, None),
        ("x" * 300, "x" * 200),
    ],
)
def test_clean_line_leaves_one_printable_line(raw, expected):
    from syncd.contacts.text import clean_line

    assert clean_line(raw) == expected


def test_a_name_with_control_characters_is_qualified_clean():
    q = qualify({"email": "ana@example.fr", "first_name": "ana\x07\r\nmarie", "last_name": "DURAND\x00"})
    assert (q.first_name, q.last_name) == ("Ana Marie", "Durand")
