"""Provider events flowing back into the master base (DESIGN §1, §4 rules 2, 3, 6; LESSONS 3, 9).

``reconcile`` is pure: from one normalised ``ProviderEvent`` and what the master base knows, it
decides a list of small ``Change`` values; ``lists_for_target`` names the syncd lists an event
concerns. ``syncd.inbound.apply`` is the shell that loads the facts and applies the changes.

Order: an event older than the state it would change is ignored, so deliveries in any order
converge on the state the newest event describes. The times compared are the membership's
``since`` (per-list unsubscribes), the newest active membership (global opt-outs) and the
contact's ``updated_at`` (profile updates).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from connectors.contract import MEMBER_FIELDS, EventKind, ProviderEvent, Target
from syncd.config import Config, ListConfig
from syncd.contacts.countries import normalise_country
from syncd.contacts.phones import normalise_phone
from syncd.contacts.text import clean_line
from syncd.core.segments import ACTIVE, ContactFacts


@dataclass(frozen=True)
class MembershipFacts:
    status: str
    since: datetime | None = None


# --- changes: what reconcile decides ----------------------------------------------------------


@dataclass(frozen=True)
class LeaveList:
    list_name: str


@dataclass(frozen=True)
class OptOutAll:
    complaint: bool = False


@dataclass(frozen=True)
class Bounced:
    pass


@dataclass(frozen=True)
class UpdateFields:
    fields: Mapping[str, str]


@dataclass(frozen=True)
class ChangeEmail:
    new_email: str


@dataclass(frozen=True)
class JoinList:
    """A provider-side subscription to a legitimate-interest list (no consent needed, none recorded)."""

    list_name: str


@dataclass(frozen=True)
class RecordSource:
    """Provenance only: a provider-side subscription is not consent in the master base."""

    channel: str


@dataclass(frozen=True)
class CreateContact:
    """An address the master base does not know, created with its provenance and no consent."""

    channel: str
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Note:
    """An audit line, no state change (a soft bounce)."""

    action: str
    reason: str | None = None


@dataclass(frozen=True)
class Ignore:
    code: str  # the outcome word after "ignored:"
    reason: str


Change = (
    LeaveList
    | OptOutAll
    | Bounced
    | UpdateFields
    | ChangeEmail
    | JoinList
    | RecordSource
    | CreateContact
    | Note
    | Ignore
)


# --- the pure decision ------------------------------------------------------------------------


def provider_channel(provider: str, target: str | None) -> str:
    """Source channel of contacts a provider brought: ``provider:<target key>``."""
    return f"provider:{Target(provider, target or '').key}"


def reconcile(
    event: ProviderEvent,
    facts: ContactFacts | None,
    memberships: Mapping[str, MembershipFacts],
    lists: Mapping[str, ListConfig],
    scope: Literal["list", "global"] | str = "list",
    *,
    new_email_owner: int | None = None,
    new_email_erased: bool = False,
    region: str = "FR",
) -> list[Change]:
    """What one provider event changes in the master base.

    ``facts``: the contact with the event's address (None: unknown). ``memberships``: its
    memberships by list name. ``lists``: the syncd lists whose targets the event names (see
    ``lists_for_target``). ``scope``: ``config.unsubscribe.scope``. ``new_email_owner``: for
    EMAIL_CHANGED, the id of the contact that already has the new address, if any.
    ``new_email_erased``: for EMAIL_CHANGED, whether the new address was erased (tombstoned).
    """
    if event.own_write:
        return [Ignore("own_write", "the echo of syncd's own write")]
    kind = event.kind
    if kind is EventKind.DELETED:
        # Deleting a contact at the provider is not an unsubscribe (LESSONS 3).
        return [Ignore("deleted", "deleted at the provider: no consent change")]
    if facts is None:
        if kind is EventKind.SUBSCRIBED and lists:
            channel = provider_channel(event.provider, event.target)
            joins = [JoinList(n) for n, cfg in lists.items() if cfg.consent == "legitimate_interest"]
            return [CreateContact(channel, _profile(event, None, region)), *joins]
        return [Ignore("unknown_contact", "no contact with this address")]
    if kind is EventKind.BOUNCED_SOFT:
        return [Note("contact.soft_bounce")]
    if kind is EventKind.BOUNCED_HARD:
        if facts.email_status == "bounced":
            return [Ignore("no_change", "already bounced")]
        return [Bounced()]
    if kind is EventKind.COMPLAINED:
        if facts.email_status == "complained":
            return [Ignore("no_change", "already complained")]
        return [OptOutAll(complaint=True)]
    if kind is EventKind.UNSUBSCRIBED_ALL or (kind is EventKind.UNSUBSCRIBED and scope == "global"):
        return _opt_out_all(event, facts, memberships)
    if kind is EventKind.UNSUBSCRIBED:
        return _leave(event, memberships, lists)
    if kind is EventKind.SUBSCRIBED:
        return _subscribed(event, facts, memberships, lists)
    if kind is EventKind.PROFILE_UPDATED:
        if facts.updated_at is not None and event.occurred_at < facts.updated_at:
            return [Ignore("older", "the contact changed after this profile update")]
        fields = _profile(event, facts, region)
        return [UpdateFields(fields)] if fields else [Ignore("no_change", "same profile")]
    if kind is EventKind.EMAIL_CHANGED:
        new = (event.new_email or "").strip().lower()
        if not new or new == facts.email:
            return [Ignore("no_change", "no new address")]
        if new_email_erased:
            # An erased address never comes back, not even as someone else's new one (LESSONS 8):
            # the contact keeps its address; the provider's member under the erased one is taken
            # off the target by the next sync, as any erased member is.
            return [Note("contact.email_change_refused", "the new address was erased at its owner's request")]
        if new_email_owner is not None and new_email_owner != facts.id:
            return [Ignore("email_taken", "the new address is already another contact")]
        return [ChangeEmail(new)]
    return [Ignore("unknown_kind", f"unhandled event kind {kind}")]


def _leave(
    event: ProviderEvent, memberships: Mapping[str, MembershipFacts], lists: Mapping[str, Any]
) -> list[Change]:
    """A per-list unsubscribe: exactly the mapped lists (rule 2), all of an audience's (rule 3)."""
    if not lists:
        return [Ignore("no_list", f"no syncd list on {event.provider} target {event.target}")]
    out: list[Change] = []
    for name in lists:
        m = memberships.get(name)
        if m is not None and m.status == "unsubscribed":
            out.append(Ignore("no_change", f"already unsubscribed from {name}"))
        elif m is not None and m.since is not None and _before(event.occurred_at, m.since):
            out.append(Ignore("older", f"{name} changed after this unsubscribe"))
        else:
            out.append(LeaveList(name))
    return out


# Providers stamp events to the second while syncd keeps microseconds: an opt-out stamped in the
# same second as the opt-in it would close cannot be ordered, and is then honoured.
SAME_SECOND = timedelta(seconds=1)


def _before(event_at: datetime, state_since: datetime) -> bool:
    """Whether an opt-out clearly happened before the state it would change."""
    return event_at < state_since - SAME_SECOND


def _opt_out_all(
    event: ProviderEvent, facts: ContactFacts, memberships: Mapping[str, MembershipFacts]
) -> list[Change]:
    if facts.global_opt_out:
        return [Ignore("no_change", "already opted out of everything")]
    active = {n: m for n, m in memberships.items() if m.status in ACTIVE}
    newer = {n for n, m in active.items() if m.since is not None and _before(event.occurred_at, m.since)}
    if not newer:
        return [OptOutAll(complaint=False)]
    # A newer opt-in survives an older "unsubscribe from all": only what predates the event closes,
    # as if the events had arrived in order.
    older = [LeaveList(n) for n in active if n not in newer]
    return older or [Ignore("older", "every membership is newer than this opt-out")]


def _subscribed(
    event: ProviderEvent,
    facts: ContactFacts,
    memberships: Mapping[str, MembershipFacts],
    lists: Mapping[str, Any],
) -> list[Change]:
    if not lists:
        return [Ignore("no_list", f"no syncd list on {event.provider} target {event.target}")]
    out: list[Change] = [RecordSource(provider_channel(event.provider, event.target))]
    for name, cfg in lists.items():
        # A provider-side subscription is consent only where none is needed; someone who left
        # comes back only with a new opt-in recorded here (rule 6).
        if cfg.consent == "legitimate_interest" and name not in memberships and not facts.global_opt_out:
            out.append(JoinList(name))
    return out


def _profile(event: ProviderEvent, facts: ContactFacts | None, region: str) -> dict[str, str]:
    out = {}
    for name, raw in event.fields.items():
        if name not in MEMBER_FIELDS or raw is None:
            continue
        value = _clean(name, str(raw), region)
        if value and (facts is None or getattr(facts, name) != value):
            out[name] = value
    return out


def _clean(name: str, value: str, region: str) -> str | None:
    """A provider's field as the import would keep it; None drops it (a bad phone or country)."""
    value = value.strip()
    if not value:
        return None  # an empty provider field never erases the master base
    try:
        if name == "phone":
            return normalise_phone(value, region)
        if name == "country":
            return normalise_country(value)
    except ValueError:
        return None
    return clean_line(value)


def lists_for_target(config: Config, provider: str, remote_id: str | None) -> dict[str, ListConfig]:
    """The syncd lists an event on ``(provider, remote_id)`` concerns.

    A Brevo list id maps to the lists targeting it; a Mailchimp audience to *every* list sharing
    it, whatever its tag, since Mailchimp's unsubscribe is per audience (DESIGN §4 rule 3).
    """
    if not remote_id:
        return {}
    out = {}
    for name, cfg in config.lists.items():
        for t in cfg.targets:
            target = t.target
            if target.provider == provider and target.list_id == str(remote_id):
                out[name] = cfg
                break
    return out
