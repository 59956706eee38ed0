"""The rules of DESIGN §4 as properties of the pure core (segments, plan, reconcile).

Rule 5 (webhooks stored before the 2xx, duplicates without effect) belongs to the inbox's tests.
"""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.brevo import TRAITS as BREVO
from connectors.contract import EventKind, ProviderEvent, RemoteStatus, Target
from syncd.config import Config, ListConfig, Segment
from syncd.core.plan import Desired, Skip, SyncedState, desired_member, plan_target, state_after
from syncd.core.segments import ContactFacts, eligibility
from syncd.inbound.reconcile import (
    Ignore,
    JoinList,
    LeaveList,
    MembershipFacts,
    OptOutAll,
    lists_for_target,
    reconcile,
)

PROPERTY = settings(max_examples=200, deadline=None)
T0 = datetime(2024, 5, 1, tzinfo=UTC)
KINDS = ["client", "vendor", "prospect"]
LIST_NAMES = ["a", "b", "c"]
STATUSES = [None, "pending", "subscribed", "unsubscribed", "cleaned"]
LIKELY_STATUSES = [None, None, "pending", "subscribed", "subscribed", "subscribed", "unsubscribed", "cleaned"]

times = st.one_of(st.none(), st.integers(-5, 5).map(lambda h: T0 + timedelta(hours=h)))

list_configs = st.builds(
    ListConfig,
    consent=st.sampled_from(["double_opt_in", "single_opt_in", "legitimate_interest"]),
    segment=st.one_of(
        st.none(), st.builds(Segment, kind=st.lists(st.sampled_from(KINDS), min_size=1, unique=True))
    ),
    auto_enroll=st.booleans(),
    on_violation=st.sampled_from(["flag", "remove"]),
    exclusive_with=st.lists(st.sampled_from(LIST_NAMES), max_size=1),
)

contacts = st.builds(
    ContactFacts,
    email=st.just("ana@example.fr"),
    id=st.just(1),
    email_status=st.sampled_from(["valid", "valid", "valid", "unknown", "bounced", "complained", "invalid"]),
    kind=st.sampled_from(KINDS),
    first_name=st.sampled_from([None, "Ana", "Zoé"]),
    company=st.sampled_from([None, "Acme"]),
    global_opt_out=st.sampled_from([False, False, False, True]),
    updated_at=times,
)

synced_states = st.one_of(
    st.none(),
    st.builds(
        SyncedState,
        pushed_hash=st.sampled_from([None, "stale"]),
        remote_status=st.one_of(st.none(), st.sampled_from(list(RemoteStatus))),
        remote_changed_at=times,
    ),
)


@st.composite
def situations(draw):
    """All lists, a contact, its memberships, and one list's state on one target."""
    lists = {n: draw(list_configs) for n in LIST_NAMES}
    facts = draw(contacts)
    memberships = {n: s for n in LIST_NAMES if (s := draw(st.sampled_from(LIKELY_STATUSES))) is not None}
    name = draw(st.sampled_from(LIST_NAMES))
    if draw(st.booleans()):  # half the time a consenting member, so that pushes are well explored
        facts = ContactFacts(**{**facts.__dict__, "email_status": "valid", "global_opt_out": False})
        memberships[name] = "subscribed"
    since = draw(times)
    elig = eligibility(name, lists[name], facts, memberships, lists)
    wanted = desired_member(name, lists[name], facts, memberships.get(name), elig, since=since)
    synced = draw(synced_states)
    if synced is not None and isinstance(wanted, Desired) and draw(st.booleans()):
        synced = SyncedState(wanted.hash, synced.remote_status, synced.remote_changed_at)  # already pushed
    return lists, facts, memberships, name, wanted, synced, draw(st.sampled_from(["list", "global"]))


def consent_blocked(facts, list_cfg, status) -> bool:
    return (
        facts.email_status in ("bounced", "complained", "invalid")
        or facts.global_opt_out
        or status in ("unsubscribed", "cleaned", "pending")
        or (status is None and not (list_cfg.auto_enroll and list_cfg.consent == "legitimate_interest"))
    )


def pushes(plan):
    return [i.push for i in plan.adds + plan.updates]


# --- rule 1 -------------------------------------------------------------------------------------


@PROPERTY
@given(situations())
def test_rule1_never_pushed_subscribed_without_consent(s):
    lists, facts, memberships, name, wanted, synced, scope = s
    plan = plan_target(Target("brevo", "1"), lists[name], [(1, wanted, synced)], scope=scope, traits=BREVO)
    if consent_blocked(facts, lists[name], memberships.get(name)):
        assert isinstance(wanted, Skip) and wanted.consent
        assert pushes(plan) == [] and plan.unblocks == []
        still_mailed = synced is not None and synced.remote_status in ("subscribed", "pending", "blocked")
        # Someone the provider holds that syncd never pushed nor has as a member was added at the
        # provider: a rule violation, kept and reported only where the list says on_violation: flag.
        added_there = wanted.not_member and synced is not None and synced.pushed_hash is None
        if still_mailed and added_there and lists[name].on_violation == "flag":
            assert plan.removals == [] and len(plan.flags) == 1
        elif still_mailed:
            assert len(plan.removals) == 1


# --- rule 2 -------------------------------------------------------------------------------------


@st.composite
def unsubscribes(draw, kinds=(EventKind.UNSUBSCRIBED,)):
    return ProviderEvent(
        provider="brevo",
        kind=draw(st.sampled_from(kinds)),
        email="ana@example.fr",
        occurred_at=T0 + timedelta(hours=draw(st.integers(-5, 5))),
        dedupe_key="k",
        target="1",
    )


memberships_with_time = st.dictionaries(
    st.sampled_from(LIST_NAMES),
    st.builds(MembershipFacts, status=st.sampled_from(STATUSES[1:]), since=times),
)


@PROPERTY
@given(unsubscribes(), contacts, memberships_with_time, st.sampled_from(LIST_NAMES), list_configs)
def test_rule2_a_list_unsubscribe_changes_one_list_and_never_the_global_opt_out(event, facts, ms, name, cfg):
    facts = ContactFacts(**{**facts.__dict__, "global_opt_out": False})
    changes = reconcile(event, facts, ms, {name: cfg}, "list")
    assert not any(isinstance(c, OptOutAll) for c in changes)
    left = {c.list_name for c in changes if isinstance(c, LeaveList)}
    assert left <= {name}
    m = ms.get(name)
    if m is None or (m.status != "unsubscribed" and (m.since is None or m.since <= event.occurred_at)):
        assert left == {name}
    else:
        assert left == set()  # already out, or a newer state: an older event never overrides it


@PROPERTY
@given(unsubscribes((EventKind.UNSUBSCRIBED_ALL, EventKind.COMPLAINED)), contacts, memberships_with_time)
def test_rule2_only_unsubscribe_all_or_a_complaint_opts_out_globally(event, facts, ms):
    changes = reconcile(event, facts, ms, {}, "list")
    for c in changes:
        assert isinstance(c, OptOutAll | LeaveList | Ignore)


# --- rule 3 -------------------------------------------------------------------------------------


@PROPERTY
@given(situations(), st.booleans(), times)
def test_rule3_brevo_blacklist_under_list_scope_is_lifted_only_for_a_per_list_reason(s, explained, at):
    lists, facts, memberships, name, wanted, synced, _ = s
    blocked = SyncedState(synced.pushed_hash if synced else None, RemoteStatus.BLOCKED, at)
    plan = plan_target(
        Target("brevo", "1"),
        lists[name],
        [(1, wanted, blocked)],
        scope="list",
        traits=BREVO,
        explained_blocks={1} if explained else set(),
    )
    newer_opt_in = isinstance(wanted, Desired) and None not in (wanted.since, at) and wanted.since > at
    if isinstance(wanted, Desired) and (explained or newer_opt_in):
        assert len(plan.unblocks) == 1 and plan.removals == []
    else:
        # An account-wide block with no per-list opt-out behind it is an opt-out from everything
        # (LESSONS 11): never lifted, whatever the master base still says of this list.
        assert plan.unblocks == []


audiences = st.sampled_from(["aud1", "aud2", "aud3"])


@PROPERTY
@given(
    st.dictionaries(
        st.sampled_from(["l1", "l2", "l3", "l4"]), st.tuples(audiences, st.sampled_from([None, "t1"]))
    ),
    audiences,
    memberships_with_time,
)
def test_rule3_mailchimp_audience_unsubscribe_reaches_exactly_its_lists(mapping, audience, ms):
    cfg = Config.model_validate(
        {
            "version": 1,
            "providers": {"mailchimp": {"api_key": "k"}},
            "lists": {
                n: {"targets": [{"mailchimp": {"audience": a, "tag": t}}]} for n, (a, t) in mapping.items()
            },
        }
    )
    sharing = {n for n, (a, _) in mapping.items() if a == audience}
    lists = lists_for_target(cfg, "mailchimp", audience)
    assert set(lists) == sharing
    ms = {n: MembershipFacts("subscribed", None) for n in mapping}
    event = ProviderEvent("mailchimp", EventKind.UNSUBSCRIBED, "ana@example.fr", T0, "k", target=audience)
    changes = reconcile(event, ContactFacts(email="ana@example.fr", id=1), ms, lists, "list")
    assert {c.list_name for c in changes if isinstance(c, LeaveList)} == sharing


# --- rule 4 -------------------------------------------------------------------------------------


@PROPERTY
@given(
    st.lists(situations(), min_size=1, max_size=8),
    st.sampled_from([Target("mailchimp", "aud"), Target("brevo", "1")]),
)
def test_rule4_planning_again_after_applying_the_plan_writes_nothing(many, target):
    lists, _, _, name, _, _, scope = many[0]
    members = [(i, s[4], s[5]) for i, s in enumerate(many)]
    cfg = lists[name]
    plan = plan_target(target, cfg, members, scope=scope)
    state = {i: synced for i, _, synced in members}
    for kind in ("adds", "updates", "removals", "unblocks"):
        for item in getattr(plan, kind):
            state[item.contact_id] = state_after(item, kind, state[item.contact_id])
    again = plan_target(
        Target("mailchimp", "aud"), cfg, [(i, w, state[i]) for i, w, _ in members], scope=scope
    )
    assert again.writes == 0, again


# --- rule 6 -------------------------------------------------------------------------------------


@PROPERTY
@given(situations(), st.sampled_from([RemoteStatus.UNSUBSCRIBED, RemoteStatus.CLEANED]), times)
def test_rule6_never_resubscribed_at_the_provider_without_a_newer_opt_in(s, remote, changed_at):
    lists, _, _, name, wanted, synced, scope = s
    gone = SyncedState(synced.pushed_hash if synced else "h", remote, changed_at)
    plan = plan_target(Target("mailchimp", "aud"), lists[name], [(1, wanted, gone)], scope=scope)
    for push in pushes(plan):
        assert push.status == RemoteStatus.PENDING
        assert isinstance(wanted, Desired)
        assert changed_at is None or (wanted.since is not None and wanted.since > changed_at)


@PROPERTY
@given(unsubscribes((EventKind.SUBSCRIBED,)), contacts, memberships_with_time, list_configs)
def test_rule6_a_provider_subscription_is_consent_only_where_none_is_needed(event, facts, ms, cfg):
    changes = reconcile(event, facts, ms, {"a": cfg}, "list")
    joins = [c for c in changes if isinstance(c, JoinList)]
    if joins:
        assert cfg.consent == "legitimate_interest" and "a" not in ms and not facts.global_opt_out
