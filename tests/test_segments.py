from syncd.config import ListConfig, Segment, TagRule
from syncd.core.segments import ContactFacts, eligibility, matches, segment_mismatch
from syncd.models import Contact

NEWSLETTER_CLIENTS = ListConfig(consent="double_opt_in", segment=Segment(kind=["client"]))
VENDORS = ListConfig(
    consent="legitimate_interest",
    segment=Segment(kind=["vendor"]),
    auto_enroll=True,
    exclusive_with=["newsletter-clients"],
)
LISTS = {"newsletter-clients": NEWSLETTER_CLIENTS, "vendors": VENDORS}


def person(**kw) -> ContactFacts:
    return ContactFacts(email=kw.pop("email", "ana@example.fr"), id=kw.pop("id", 1), **kw)


def test_no_segment_means_everyone():
    assert matches(None, person())
    assert matches(Segment(), person(kind="client"))


def test_kind_and_stage():
    seg = Segment(kind=["client", "partner"], stage=["hot"])
    assert matches(seg, person(kind="client", stage="hot"))
    assert not matches(seg, person(kind="vendor", stage="hot"))
    assert not matches(seg, person(kind="client", stage="cold"))
    assert (
        segment_mismatch(Segment(kind=["vendor"]), person(kind="client"))
        == "kind is client, list wants vendor"
    )


def test_tags_any_all_none():
    assert matches(Segment(tags=TagRule(any=["vip", "fair"])), person(tags=("fair",)))
    assert not matches(Segment(tags=TagRule(any=["vip"])), person(tags=("fair",)))
    assert matches(Segment(tags=TagRule(all=["vip", "fair"])), person(tags=("fair", "vip", "x")))
    assert not matches(Segment(tags=TagRule(all=["vip", "fair"])), person(tags=("fair",)))
    assert not matches(Segment(tags=TagRule(none=["competitor"])), person(tags=("competitor",)))
    assert matches(Segment(tags=TagRule(none=["competitor"])), person(tags=()))


def test_places_compare_case_insensitively():
    seg = Segment(country=["fr"], region=["Bretagne"], city=["rennes"])
    assert matches(seg, person(country="FR", region="bretagne", city="Rennes"))
    assert not matches(seg, person(country="FR", region="bretagne", city=None))
    assert not matches(Segment(country=["BE"]), person(country="FR"))


def test_email_status_and_attributes():
    assert matches(Segment(email_status=["valid"]), person(email_status="valid"))
    assert not matches(Segment(email_status=["valid"]), person(email_status="unknown"))
    seg = Segment(attributes={"sector": ["Bakery", "butcher"]})
    assert matches(seg, person(attributes={"sector": "bakery"}))
    assert matches(seg, person(attributes={"sector": ["florist", "Butcher"]}))
    assert not matches(seg, person(attributes={"sector": "florist"}))
    assert not matches(seg, person(attributes={}))


def test_not_is_recursive():
    seg = Segment.model_validate({"kind": ["client"], "not": {"country": ["BE"], "not": {"city": ["Liège"]}}})
    assert matches(seg, person(kind="client", country="FR"))
    assert not matches(seg, person(kind="client", country="BE", city="Namur"))
    assert matches(seg, person(kind="client", country="BE", city="liège"))


def test_facts_of_a_contact_row():
    row = Contact(id=3, email="bob@example.fr", kind="vendor", tags=["a"], attributes={"x": 1})
    facts = ContactFacts.of(row)
    assert (facts.id, facts.kind, facts.tags, facts.attributes) == (3, "vendor", ("a",), {"x": 1})
    assert ContactFacts.of(facts) is facts


def test_auto_enrolled_when_segment_matches_a_legitimate_interest_list():
    e = eligibility("vendors", VENDORS, person(kind="vendor"), {}, LISTS)
    assert e.may and e.must and e.reasons == ()


def test_consent_list_is_never_must():
    auto_consent = ListConfig(consent="single_opt_in", auto_enroll=True, segment=Segment(kind=["client"]))
    e = eligibility("news", auto_consent, person(kind="client"), {}, {"news": auto_consent})
    assert e.may and not e.must


def test_out_of_segment_says_why():
    e = eligibility("vendors", VENDORS, person(kind="client"), {}, LISTS)
    assert not e.may and not e.must
    assert e.reasons == ("not in segment (kind is client, list wants vendor)",)


def test_exclusive_list_yields_to_the_other():
    facts = person(kind="vendor")
    e = eligibility("vendors", VENDORS, facts, {"newsletter-clients": "subscribed"}, LISTS)
    assert not e.may and e.reasons == ("exclusive with newsletter-clients",)
    # one-way: the other list does not yield back
    clients = eligibility(
        "newsletter-clients", NEWSLETTER_CLIENTS, person(kind="client"), {"vendors": "x"}, LISTS
    )
    assert clients.may
    # a former member of the other list does not block
    assert eligibility("vendors", VENDORS, facts, {"newsletter-clients": "unsubscribed"}, LISTS).may


def test_bounced_complained_and_opted_out_are_never_eligible():
    for facts, why in (
        (person(kind="vendor", email_status="bounced"), "bounced"),
        (person(kind="vendor", email_status="complained"), "complained"),
        (person(kind="vendor", global_opt_out=True), "opted out of everything"),
    ):
        e = eligibility("vendors", VENDORS, facts, {}, LISTS)
        assert not e.may and not e.must and why in e.reasons


def test_leaving_an_auto_enrolled_list_is_final():
    e = eligibility("vendors", VENDORS, person(kind="vendor"), {"vendors": "unsubscribed"}, LISTS)
    assert not e.may and not e.must and e.reasons == ("unsubscribed from this list",)


def test_a_double_opt_in_subscription_is_proven_only_by_a_confirmation_since_it_began():
    from datetime import UTC, datetime, timedelta

    from syncd.core.segments import lacks_proof

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    doi, single = NEWSLETTER_CLIENTS, ListConfig(consent="single_opt_in")
    assert lacks_proof(doi, "subscribed", t0, None)  # a single opt-in, an import: no confirmation
    assert not lacks_proof(doi, "subscribed", t0, t0)  # the confirmation that subscribed it
    assert not lacks_proof(doi, "subscribed", t0, t0 + timedelta(days=3))
    # confirmed once, then left and re-joined without confirming again
    assert lacks_proof(doi, "subscribed", t0, t0 - timedelta(days=30))
    # only subscribed members of double-opt-in lists are asked
    assert not lacks_proof(doi, "pending", t0, None)
    assert not lacks_proof(doi, "unsubscribed", t0, None)
    assert not lacks_proof(single, "subscribed", t0, None)
