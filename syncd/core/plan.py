"""The plan of one sync: what a target should hold, minus what it was last seen holding (pure).

The engine, per chunk of contacts (a thousand or so; nothing here needs the whole base):

    facts = ContactFacts.of(contact)
    elig = eligibility(list_name, list_cfg, facts, memberships, config.lists)
    wanted = desired_member(list_name, list_cfg, facts, memberships.get(list_name), elig, since=...)
    plan = plan_target(target, list_cfg, [(contact_id, wanted, synced_state), ...], scope=...)
    ... apply plan.adds + plan.updates (upsert item.push), plan.removals (remove item.email),
        plan.unblocks (set_blocked(email, False)), record plan.flags ...
    ... then store state_after(item) in TargetState for every item the provider accepted.

Rules enforced here (DESIGN §4): 1 — no contact is ever pushed as subscribed when the master base
says unsubscribed, opted out, bounced, complained or DOI unconfirmed (or, on a double-opt-in list,
holds no proof: ``reconfirms``); 3 — an account-wide block is lifted (``unblocks``) for the lists
the contact still belongs to under scope "list", only when the master base holds the per-list
opt-out that explains it (LESSONS 11); 4 — a member already in the state we want gives no item;
6 — a member unsubscribed or cleaned at the provider only comes back as PENDING (the provider's
reconfirmation), and only for an opt-in newer than the provider's change, never silently
subscribed. Provider differences come from the connector's ``ProviderTraits``, never from its name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from connectors.contract import MEMBER_FIELDS, MemberPush, ProviderTraits, RemoteStatus, Target
from syncd.config import ListConfig
from syncd.core.segments import Eligibility, auto_enrolled, consent_blockers, left_list

GONE_REMOTELY = (RemoteStatus.UNSUBSCRIBED, RemoteStatus.CLEANED)
NOT_ON_TARGET = (RemoteStatus.ARCHIVED, RemoteStatus.TRANSACTIONAL)
NO_TRAITS = ProviderTraits()


def push_hash(push: MemberPush) -> str:
    """A stable hash of exactly what is sent: email, status and fields."""
    doc = {"email": push.email, "status": str(push.status), "fields": dict(sorted(push.fields.items()))}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class Desired:
    """The member a target should hold for one contact.

    ``status`` is SUBSCRIBED; ``plan_target`` turns it into PENDING where the provider needs the
    contact's reconfirmation. ``since`` is when the master base last recorded the membership
    (the opt-in, or None for an auto-enrolment without a row): compared with the provider's
    last change to tell a newer opt-in from a provider-side unsubscribe not yet reconciled.
    """

    email: str
    fields: Mapping[str, str] = field(default_factory=dict)
    status: RemoteStatus = RemoteStatus.SUBSCRIBED
    reason: str = "subscribed"
    since: datetime | None = None

    def push(self, status: RemoteStatus | None = None) -> MemberPush:
        return MemberPush(email=self.email, status=status or self.status, fields=dict(self.fields))

    @property
    def hash(self) -> str:
        return push_hash(self.push())


@dataclass(frozen=True)
class Skip:
    """Why a contact should not be on a target. ``consent``: the reason is a withdrawal of consent
    or a dead address (always removed); otherwise a segment or exclusivity rule (``on_violation``).

    ``not_member``: the only reason is that the master base has no membership for the list; a
    member the provider holds that syncd never pushed was added at the provider, a list rule
    violation (``on_violation``). ``reconfirm``: a subscribed member of a double-opt-in list with
    no proof: the membership goes back to pending and a confirmation is mailed.
    """

    email: str
    reason: str
    consent: bool = True
    not_member: bool = False
    reconfirm: bool = False


@dataclass(frozen=True)
class SyncedState:
    """What TargetState says: the hash last pushed, and the member's status as last pulled."""

    pushed_hash: str | None = None
    remote_status: RemoteStatus | str | None = None
    # The provider's own time of its last change to the member (RemoteMember.changed_at), when the
    # engine has just pulled it; None when unknown (then the master base's state is taken as newer).
    remote_changed_at: datetime | None = None
    # The address the target still holds the member under, when the master base renamed it since.
    remote_email: str | None = None

    @classmethod
    def of(cls, row: Any) -> SyncedState | None:
        """From a ``TargetState`` row (or None)."""
        if row is None:
            return None
        status = RemoteStatus(row.remote_status) if row.remote_status else None
        return cls(
            pushed_hash=row.pushed_hash,
            remote_status=status,
            remote_changed_at=getattr(row, "remote_changed_at", None),
            remote_email=getattr(row, "remote_email", None),
        )


@dataclass(frozen=True)
class PlanItem:
    contact_id: int
    email: str
    reason: str
    push: MemberPush | None = None  # adds and updates: what to upsert
    hash: str | None = None  # push_hash(push): store it as TargetState.pushed_hash once accepted


@dataclass
class Plan:
    target: Target
    adds: list[PlanItem] = field(default_factory=list)
    updates: list[PlanItem] = field(default_factory=list)
    removals: list[PlanItem] = field(default_factory=list)
    unblocks: list[PlanItem] = field(default_factory=list)
    flags: list[PlanItem] = field(default_factory=list)
    # Master-base writes, not provider ones: memberships back to pending, a confirmation to mail.
    reconfirms: list[PlanItem] = field(default_factory=list)

    KINDS = ("adds", "updates", "removals", "unblocks", "flags", "reconfirms")

    @property
    def writes(self) -> int:
        """Provider writes the plan asks for. Zero on a second run with no change (rule 4)."""
        return len(self.adds) + len(self.updates) + len(self.removals) + len(self.unblocks)

    def __bool__(self) -> bool:
        return self.writes > 0

    def extend(self, other: Plan) -> Plan:
        """Merge another chunk's plan into this one (for counts and dry-run samples)."""
        for name in self.KINDS:
            getattr(self, name).extend(getattr(other, name))
        return self

    def counts(self) -> dict[str, int]:
        return {n: len(getattr(self, n)) for n in self.KINDS}


def member_fields(contact: Any) -> dict[str, str]:
    """The MEMBER_FIELDS the contact has (empty values are not sent)."""
    out = {}
    for name in MEMBER_FIELDS:
        value = getattr(contact, name, None)
        if value not in (None, ""):
            out[name] = str(value)
    return out


def desired_member(
    list_name: str,
    list_cfg: ListConfig,
    contact: Any,
    membership_status: str | None,
    eligibility: Eligibility,
    *,
    since: datetime | None = None,
    proven: bool = True,
) -> Desired | Skip:
    """What the list's targets should hold for ``contact``, or why nothing (rule 1).

    ``membership_status`` is the contact's Membership.status for this list (None: no row);
    ``since`` that membership's ``since``; ``proven`` False when the list needs double opt-in and
    the subscription has no proof (``segments.lacks_proof``). Consent reasons come first, so a
    contact both out of segment and opted out is removed whatever ``on_violation`` says. Without
    a row, only a legitimate-interest list with auto_enroll takes the contact
    (``eligibility.must``): a first sync never subscribes anyone to a consent list on the
    strength of a segment (LESSONS 4).
    """
    email = contact.email
    blockers = [*consent_blockers(contact), *left_list(membership_status)]
    if membership_status == "pending":
        blockers.append("double opt-in not confirmed")
    if membership_status is None and not eligibility.must and not blockers:
        if auto_enrolled(list_cfg):
            return Skip(email, "; ".join(eligibility.reasons), consent=False)
        return Skip(email, "not a member", consent=True, not_member=True)
    if blockers:
        return Skip(email, "; ".join(blockers), consent=True)
    if not proven:
        return Skip(
            email,
            "double opt-in now required, no confirmation on record: asked to confirm",
            consent=True,
            reconfirm=True,
        )
    if not eligibility.may:
        return Skip(email, "; ".join(eligibility.reasons), consent=False)
    reason = "auto-enrolled (segment match)" if membership_status is None else f"member of {list_name}"
    return Desired(email=email, fields=member_fields(contact), reason=reason, since=since)


def plan_target(
    target: Target,
    list_cfg: ListConfig,
    members: Iterable[tuple[int, Desired | Skip, SyncedState | None]],
    *,
    scope: str = "list",
    traits: ProviderTraits = NO_TRAITS,
    explained_blocks: Collection[int] = frozenset(),
) -> Plan:
    """The writes that bring ``target`` in line with the master base, for one chunk of contacts.

    ``members`` yields ``(contact_id, desired_member(...), SyncedState.of(target_state_row))``.
    A ``Desired`` whose target already holds it gives nothing (rule 4). A ``Skip`` on a member the
    target holds is removed when the reason is consent, else removed or flagged by
    ``list_cfg.on_violation``. ``scope`` is ``config.unsubscribe.scope``; ``traits`` the target's
    connector's; ``explained_blocks`` the contacts whose account-wide block the master base
    explains by a per-list opt-out (``block_explained``).
    """
    plan = Plan(target)
    for contact_id, wanted, synced in members:
        if isinstance(wanted, Skip):
            _plan_absent(plan, traits, list_cfg, contact_id, wanted, synced)
        else:
            _plan_present(plan, contact_id, wanted, synced, scope, contact_id in explained_blocks)
    return plan


def block_explained(opted_out_at: datetime | None, lifted_at: datetime | None) -> bool:
    """Whether an account-wide block has a per-list reason in the master base (LESSONS 11).

    ``opted_out_at``: the latest list-scoped opt-out of the contact from a list with a target at
    that provider; ``lifted_at``: when syncd last lifted a block of the contact there. A block is
    explained by an opt-out that syncd has not already answered with a lift; anything else (a
    default Brevo account's unsubscribe, a block set in the provider's UI) is the contact's opt-out
    from everything, recorded as such and never lifted.
    """
    return opted_out_at is not None and (lifted_at is None or opted_out_at > lifted_at)


def lifts_block(
    contact: Any,
    wanted: Desired | Skip,
    synced: SyncedState | None,
    *,
    scope: str,
    traits: ProviderTraits,
    explained: bool,
) -> bool:
    """Whether a contact taken off (or kept off) this list keeps its account-wide block (False) or
    gets it lifted (True): under scope "list", when a per-list opt-out explains the block and the
    contact opted out of nothing else, so that its other lists and transactional mail go on
    (rule 3). A member still wanted is lifted through ``Plan.unblocks`` instead."""
    return (
        traits.blocks_account_wide
        and scope == "list"
        and explained
        and isinstance(wanted, Skip)
        and synced is not None
        and synced.remote_status in (RemoteStatus.UNSUBSCRIBED, RemoteStatus.BLOCKED)
        and not consent_blockers(contact)
    )


def _on_target(traits: ProviderTraits, synced: SyncedState | None) -> bool:
    """Whether the member is still on the target's list. A Mailchimp member unsubscribed or
    cleaned is left as the provider keeps it (archiving would drop Mailchimp's own record of the
    opt-out); a Brevo one, blocked or list-unsubscribed, is taken off the Brevo list (rule 3)."""
    if synced is None:
        return False
    if synced.remote_status in (RemoteStatus.SUBSCRIBED, RemoteStatus.PENDING, RemoteStatus.BLOCKED):
        return True
    if traits.keeps_unsubscribed_on_list and synced.remote_status == RemoteStatus.UNSUBSCRIBED:
        return True
    return synced.pushed_hash is not None and synced.remote_status is None


def _plan_absent(
    plan: Plan,
    traits: ProviderTraits,
    list_cfg: ListConfig,
    contact_id: int,
    skip: Skip,
    synced: SyncedState | None,
) -> None:
    if skip.reconfirm:
        plan.reconfirms.append(PlanItem(contact_id, skip.email, skip.reason))
    if not _on_target(traits, synced):
        return
    assert synced is not None
    if skip.not_member and synced.pushed_hash is None:
        # Added at the provider (its UI, an import there), never through syncd: a rule violation,
        # taken off the target (never unsubscribed) or kept and reported, as the list says.
        why = "on the provider's list, not a member in the master base"
        if list_cfg.on_violation == "remove":
            plan.removals.append(PlanItem(contact_id, skip.email, f"{why} (on_violation: remove)"))
        else:
            plan.flags.append(PlanItem(contact_id, skip.email, f"kept (on_violation: flag): {why}"))
    elif skip.consent or list_cfg.on_violation == "remove":
        plan.removals.append(PlanItem(contact_id, skip.email, skip.reason))
    else:
        plan.flags.append(PlanItem(contact_id, skip.email, f"kept (on_violation: flag): {skip.reason}"))


def _plan_present(
    plan: Plan, contact_id: int, wanted: Desired, synced: SyncedState | None, scope: str, explained: bool
) -> None:
    if synced is None:
        push = wanted.push()
        plan.adds.append(PlanItem(contact_id, wanted.email, wanted.reason, push, push_hash(push)))
        return
    remote = synced.remote_status
    # Only a recorded opt-in is ever newer than a provider-side change: an auto-enrolment (no row,
    # ``since`` None) is no opt-in at all. An unknown provider time counts as older.
    newer_opt_in = wanted.since is not None and (
        synced.remote_changed_at is None or wanted.since > synced.remote_changed_at
    )
    status = RemoteStatus.SUBSCRIBED
    reason = wanted.reason
    if remote in GONE_REMOTELY or remote == RemoteStatus.PENDING:
        if remote in GONE_REMOTELY and not newer_opt_in:
            # The provider's unsubscribe is newer than the master base's opt-in (or there is no
            # opt-in): its event is on its way, or was just recorded; pushing would fight it and
            # mail a reconfirmation to someone who left (LESSONS 2).
            plan.flags.append(
                PlanItem(contact_id, wanted.email, f"{remote} at the provider, no newer opt-in here")
            )
            return
        # Mailchimp refuses to resubscribe an unsubscribed or cleaned member: PENDING sends its
        # own confirmation (https://mailchimp.com/developer/marketing/docs/fundamentals/#status).
        status = RemoteStatus.PENDING
        if remote in GONE_REMOTELY:
            reason = f"newer opt-in; {remote} at the provider: reconfirmation requested"
    elif remote == RemoteStatus.BLOCKED:
        if scope == "list" and explained:
            why = "blocked account-wide for a per-list unsubscribe; still a member of this list"
        elif newer_opt_in and synced.remote_changed_at is not None:
            why = "blocked account-wide at the provider before a newer opt-in here"
        else:
            plan.flags.append(
                PlanItem(
                    contact_id,
                    wanted.email,
                    "blocked account-wide at the provider, no per-list reason or newer opt-in here",
                )
            )
            return
        plan.unblocks.append(PlanItem(contact_id, wanted.email, why))
    push = wanted.push(status)
    digest = push_hash(push)
    pending_digest = push_hash(wanted.push(RemoteStatus.PENDING))
    in_sync = synced.pushed_hash == digest or (
        # we asked for reconfirmation and the contact gave it at the provider
        remote == RemoteStatus.SUBSCRIBED and synced.pushed_hash == pending_digest
    )
    if in_sync and remote not in NOT_ON_TARGET:
        return
    item = PlanItem(contact_id, wanted.email, reason, push, digest)
    if synced.pushed_hash is None and remote in (None, *NOT_ON_TARGET):
        plan.adds.append(item)
    elif in_sync:
        plan.updates.append(replace(item, reason=f"{reason}; {remote} at the provider"))
    else:
        plan.updates.append(replace(item, reason=f"{reason}; changed since the last push"))


def state_after(item: PlanItem, kind: str, before: SyncedState | None = None) -> SyncedState | None:
    """The TargetState an accepted item leaves (``kind``: adds, updates, removals, unblocks).

    None means: delete the TargetState row (the member is off the target).
    """
    before = before or SyncedState()
    if kind == "removals":
        return None
    if kind == "unblocks":
        return replace(before, remote_status=RemoteStatus.SUBSCRIBED)
    if kind in ("adds", "updates"):
        assert item.push is not None
        return SyncedState(
            pushed_hash=item.hash, remote_status=item.push.status, remote_changed_at=before.remote_changed_at
        )
    return before
