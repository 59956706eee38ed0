from datetime import UTC, datetime, timedelta

from connectors.brevo import TRAITS as BREVO_TRAITS
from connectors.contract import RemoteStatus, Target
from syncd.config import ListConfig, Segment
from syncd.core.plan import (
    NO_TRAITS,
    Desired,
    Skip,
    SyncedState,
    block_explained,
    desired_member,
    lifts_block,
    plan_target,
    push_hash,
    state_after,
)
from syncd.core.segments import ContactFacts, eligibility

T0 = datetime(2024, 5, 1, tzinfo=UTC)
BREVO = Target("brevo", "12")
NEWS = ListConfig(consent="single_opt_in", segment=Segment(kind=["client"]))
DOI = ListConfig(consent="double_opt_in")
VENDORS = ListConfig(consent="legitimate_interest", segment=Segment(kind=["vendor"]), auto_enroll=True)
LISTS = {"news": NEWS, "doi": DOI, "vendors": VENDORS}


def person(**kw) -> ContactFacts:
    return ContactFacts(email=kw.pop("email", "ana@example.fr"), id=1, first_name="Ana", **kw)


def wanted(list_name, facts, status, memberships=None, since=None, proven=True):
    cfg = LISTS[list_name]
    memberships = {list_name: status} if status else (memberships or {})
    elig = eligibility(list_name, cfg, facts, memberships, LISTS)
    return desired_member(list_name, cfg, facts, status, elig, since=since, proven=proven)


def test_a_subscribed_member_is_pushed_with_its_fields():
    d = wanted("news", person(kind="client", city="Rennes"), "subscribed")
    assert isinstance(d, Desired)
    assert d.push().fields == {"first_name": "Ana", "city": "Rennes"}
    plan = plan_target(BREVO, NEWS, [(1, d, None)])
    assert [i.email for i in plan.adds] == ["ana@example.fr"] and plan.writes == 1
    assert plan.adds[0].hash == push_hash(plan.adds[0].push)


def test_consent_reasons_keep_a_contact_off():
    cases = [
        (person(kind="client"), "unsubscribed", "unsubscribed from this list"),
        (person(kind="client", global_opt_out=True), "subscribed", "opted out of everything"),
        (person(kind="client", email_status="bounced"), "subscribed", "bounced"),
        (person(kind="client", email_status="complained"), "subscribed", "complained"),
        (person(kind="client"), "cleaned", "cleaned from this list"),
        (person(kind="client"), None, "not a member"),
    ]
    for facts, status, why in cases:
        d = wanted("news", facts, status)
        assert isinstance(d, Skip) and d.consent and why in d.reason


def test_double_opt_in_not_confirmed_is_not_pushed():
    d = wanted("doi", person(), "pending")
    assert isinstance(d, Skip) and d.reason == "double opt-in not confirmed"


def test_first_sync_never_subscribes_a_consent_list_from_the_segment_alone():
    auto_news = ListConfig(consent="single_opt_in", segment=Segment(kind=["client"]), auto_enroll=True)
    facts = person(kind="client")
    d = desired_member(
        "news", auto_news, facts, None, eligibility("news", auto_news, facts, {}, {"news": auto_news})
    )
    assert isinstance(d, Skip) and d.consent


def test_auto_enrolled_list_takes_segment_matches_without_a_row():
    d = wanted("vendors", person(kind="vendor"), None)
    assert isinstance(d, Desired) and d.reason == "auto-enrolled (segment match)"
    assert isinstance(wanted("vendors", person(kind="vendor"), "unsubscribed"), Skip)
    out = wanted("vendors", person(kind="client"), None)
    assert isinstance(out, Skip) and not out.consent


def test_nothing_changed_gives_an_empty_plan():
    d = wanted("news", person(kind="client"), "subscribed")
    synced = SyncedState(pushed_hash=d.hash, remote_status=RemoteStatus.SUBSCRIBED)
    assert not plan_target(BREVO, NEWS, [(1, d, synced)])


def test_a_changed_field_is_an_update():
    before = wanted("news", person(kind="client"), "subscribed")
    after = wanted("news", person(kind="client", company="Acme"), "subscribed")
    plan = plan_target(BREVO, NEWS, [(1, after, SyncedState(before.hash, RemoteStatus.SUBSCRIBED))])
    assert len(plan.updates) == 1 and plan.updates[0].push.fields["company"] == "Acme"


def test_an_unsubscribe_removes_whatever_on_violation_says():
    d = wanted("news", person(kind="client"), "unsubscribed")
    plan = plan_target(BREVO, NEWS, [(1, d, SyncedState("h", RemoteStatus.SUBSCRIBED))])
    assert [i.reason for i in plan.removals] == ["unsubscribed from this list"] and not plan.flags


def test_a_segment_violation_is_flagged_or_removed_by_config():
    d = wanted("news", person(kind="vendor"), "subscribed")
    assert isinstance(d, Skip) and not d.consent
    synced = SyncedState("h", RemoteStatus.SUBSCRIBED)
    flagged = plan_target(BREVO, NEWS, [(1, d, synced)])
    assert not flagged and len(flagged.flags) == 1 and "kind is vendor" in flagged.flags[0].reason
    removing = NEWS.model_copy(update={"on_violation": "remove"})
    assert len(plan_target(BREVO, removing, [(1, d, synced)]).removals) == 1


def test_a_contact_never_pushed_and_not_wanted_gives_nothing():
    d = wanted("news", person(kind="client"), "unsubscribed")
    plan = plan_target(BREVO, NEWS, [(1, d, None)])
    assert set(plan.counts().values()) == {0}


def test_remote_unsubscribed_comes_back_only_as_pending():
    d = wanted("news", person(kind="client"), "subscribed", since=T0 + timedelta(days=2))
    synced = SyncedState("old", RemoteStatus.UNSUBSCRIBED, remote_changed_at=T0)
    plan = plan_target(Target("mailchimp", "aud"), NEWS, [(1, d, synced)])
    assert len(plan.updates) == 1 and plan.updates[0].push.status == RemoteStatus.PENDING
    # once pushed, the pending member is left alone; once confirmed at the provider too
    after = state_after(plan.updates[0], "updates", synced)
    assert not plan_target(Target("mailchimp", "aud"), NEWS, [(1, d, after)])
    confirmed = SyncedState(after.pushed_hash, RemoteStatus.SUBSCRIBED)
    assert not plan_target(Target("mailchimp", "aud"), NEWS, [(1, d, confirmed)])


def test_remote_unsubscribe_newer_than_the_opt_in_is_not_fought():
    d = wanted("news", person(kind="client"), "subscribed", since=T0)
    synced = SyncedState("h", RemoteStatus.UNSUBSCRIBED, remote_changed_at=T0 + timedelta(hours=1))
    plan = plan_target(Target("mailchimp", "aud"), NEWS, [(1, d, synced)])
    assert not plan and len(plan.flags) == 1


def test_brevo_blacklist_with_a_per_list_reason_is_repaired_under_list_scope():
    d = wanted("news", person(kind="client"), "subscribed")
    synced = SyncedState(d.hash, RemoteStatus.BLOCKED)
    plan = plan_target(BREVO, NEWS, [(1, d, synced)], scope="list", traits=BREVO_TRAITS, explained_blocks={1})
    assert len(plan.unblocks) == 1 and not plan.adds and not plan.updates and not plan.removals
    after = state_after(plan.unblocks[0], "unblocks", synced)
    assert not plan_target(BREVO, NEWS, [(1, d, after)], traits=BREVO_TRAITS, explained_blocks={1})


def test_brevo_blacklist_of_the_list_left_is_a_removal():
    d = wanted("news", person(kind="client"), "unsubscribed")
    plan = plan_target(BREVO, NEWS, [(1, d, SyncedState("h", RemoteStatus.BLOCKED))])
    assert len(plan.removals) == 1 and not plan.unblocks


def test_global_scope_lifts_a_block_only_for_a_newer_opt_in():
    old = wanted("news", person(kind="client"), "subscribed", since=T0)
    new = wanted("news", person(kind="client"), "subscribed", since=T0 + timedelta(days=1))
    synced = SyncedState(old.hash, RemoteStatus.BLOCKED, remote_changed_at=T0 + timedelta(hours=1))
    assert len(plan_target(BREVO, NEWS, [(1, old, synced)], scope="global").flags) == 1
    assert len(plan_target(BREVO, NEWS, [(1, new, synced)], scope="global").unblocks) == 1


def test_unsubscribed_at_mailchimp_is_left_there_but_taken_off_a_brevo_list():
    d = wanted("news", person(kind="client"), "unsubscribed")
    gone = SyncedState("h", RemoteStatus.UNSUBSCRIBED)
    assert not plan_target(Target("mailchimp", "aud"), NEWS, [(1, d, gone)])
    assert len(plan_target(BREVO, NEWS, [(1, d, gone)], traits=BREVO_TRAITS).removals) == 1


def test_archived_member_still_wanted_is_pushed_again():
    d = wanted("news", person(kind="client"), "subscribed")
    plan = plan_target(Target("mailchimp", "aud"), NEWS, [(1, d, SyncedState(d.hash, RemoteStatus.ARCHIVED))])
    assert len(plan.updates) == 1
    assert not plan_target(BREVO, NEWS, [(1, d, state_after(plan.updates[0], "updates"))])


def test_plan_is_computed_chunk_by_chunk():
    def members():
        for i in range(3000):
            facts = person(email=f"c{i}@example.fr", kind="client")
            yield i, wanted("news", facts, "subscribed"), None

    it = members()
    total = plan_target(BREVO, NEWS, [next(it) for _ in range(1000)])
    total.extend(plan_target(BREVO, NEWS, it))
    assert total.counts()["adds"] == 3000


def test_an_auto_enrolment_is_never_a_newer_opt_in_than_a_provider_unsubscribe():
    d = wanted("vendors", person(kind="vendor"), None)
    assert isinstance(d, Desired) and d.since is None
    mailchimp = Target("mailchimp", "aud")
    for changed_at in (T0, None):
        gone = SyncedState(d.hash, RemoteStatus.UNSUBSCRIBED, remote_changed_at=changed_at)
        plan = plan_target(mailchimp, VENDORS, [(1, d, gone)])
        assert not plan and len(plan.flags) == 1, "a reconfirmation would mail someone who left"


def test_the_provider_time_of_a_status_is_read_from_target_state():
    row = type("Row", (), {"pushed_hash": "h", "remote_status": "unsubscribed", "remote_changed_at": T0})()
    assert SyncedState.of(row) == SyncedState("h", RemoteStatus.UNSUBSCRIBED, T0)


def test_a_brevo_block_without_a_per_list_reason_is_never_lifted():
    d = wanted("news", person(kind="client"), "subscribed", since=T0)
    synced = SyncedState(d.hash, RemoteStatus.BLOCKED, remote_changed_at=T0 + timedelta(hours=1))
    plan = plan_target(BREVO, NEWS, [(1, d, synced)], scope="list", traits=BREVO_TRAITS)
    assert not plan.unblocks and not plan.writes and len(plan.flags) == 1
    unknown_time = SyncedState(d.hash, RemoteStatus.BLOCKED)
    assert not plan_target(BREVO, NEWS, [(1, d, unknown_time)], traits=BREVO_TRAITS).unblocks


def test_a_per_list_opt_out_explains_a_block_until_syncd_lifts_one():
    assert block_explained(T0, None)
    assert block_explained(T0 + timedelta(days=1), T0)  # a new unsubscribe after the last lift
    assert not block_explained(T0, T0 + timedelta(minutes=1))  # already answered by a lift
    assert not block_explained(None, None)


def test_the_block_of_a_contact_who_left_one_list_is_lifted_only_with_its_reason():
    facts = person(kind="client")
    d = wanted("news", facts, "unsubscribed")
    kw = {"scope": "list", "traits": BREVO_TRAITS}
    for remote in (RemoteStatus.UNSUBSCRIBED, RemoteStatus.BLOCKED):
        assert lifts_block(facts, d, SyncedState("h", remote), explained=True, **kw)
        assert not lifts_block(facts, d, SyncedState("h", remote), explained=False, **kw)
    everywhere = person(kind="client", global_opt_out=True)
    out = wanted("news", everywhere, "unsubscribed")
    assert not lifts_block(everywhere, out, SyncedState("h", RemoteStatus.BLOCKED), explained=True, **kw)
    gone = SyncedState("h", RemoteStatus.UNSUBSCRIBED)
    assert not lifts_block(facts, d, gone, explained=True, scope="global", traits=BREVO_TRAITS)
    assert not lifts_block(facts, d, gone, explained=True, scope="list", traits=NO_TRAITS)


def test_an_unproven_double_opt_in_member_is_asked_to_confirm_and_taken_off_meanwhile():
    d = wanted("doi", person(), "subscribed", proven=False)
    assert isinstance(d, Skip) and d.consent and d.reconfirm
    on_target = plan_target(BREVO, DOI, [(1, d, SyncedState("h", RemoteStatus.SUBSCRIBED))])
    assert len(on_target.reconfirms) == 1 and len(on_target.removals) == 1
    assert on_target.writes == 1  # asking to confirm writes the base, not the provider
    off_target = plan_target(BREVO, DOI, [(1, d, None)])
    assert len(off_target.reconfirms) == 1 and not off_target.writes
    # an opt-out comes first: nobody who left is mailed a confirmation
    left = wanted("doi", person(global_opt_out=True), "subscribed", proven=False)
    assert isinstance(left, Skip) and not left.reconfirm


def test_a_member_added_at_the_provider_is_removed_or_flagged_as_the_list_says():
    d = wanted("news", person(kind="client"), None)
    assert isinstance(d, Skip) and d.not_member
    added_there = SyncedState(None, RemoteStatus.SUBSCRIBED)
    flagged = plan_target(BREVO, NEWS, [(1, d, added_there)])
    assert not flagged.writes and "kept (on_violation: flag)" in flagged.flags[0].reason
    removing = NEWS.model_copy(update={"on_violation": "remove"})
    removed = plan_target(BREVO, removing, [(1, d, added_there)])
    assert [i.reason for i in removed.removals] == [
        "on the provider's list, not a member in the master base (on_violation: remove)"
    ]
    # once pushed by syncd, a contact who is no member any more is removed whatever the list says
    assert len(plan_target(BREVO, NEWS, [(1, d, SyncedState("h", RemoteStatus.SUBSCRIBED))]).removals) == 1
