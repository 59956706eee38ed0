"""The provider simulators in syncd's words, for tests.

The simulators (``connectors/simulators``) speak only their provider's API. These subclasses add
the helpers the tests are written with, in the connectors' vocabulary: ``create_target`` (a
``Target``), ``seed`` (members as syncd describes them), ``members`` (``RemoteMember``s, as a full
pull would report them), ``webhook_payload`` / ``fire_webhook`` (by ``EventKind``),
``unsubscribe``, ``is_blocked``. Each translates to the provider's words here, once, with the
connectors' own field tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from connectors.brevo.vocabulary import ATTRIBUTES
from connectors.contract import EventKind, RemoteMember, RemoteStatus, Target
from connectors.mailchimp.vocabulary import MERGE_FIELDS
from connectors.simulators.brevo import BrevoSimulator as _BrevoSimulator
from connectors.simulators.brevo import webhooks as brevo_webhooks
from connectors.simulators.brevo.state import parse_iso
from connectors.simulators.mailchimp import MailchimpSimulator as _MailchimpSimulator
from connectors.simulators.mailchimp import webhooks as mailchimp_webhooks
from connectors.simulators.mailchimp.state import Member, iso

# syncd kind -> the Brevo marketing webhook event name it arrives as.
BREVO_EVENTS = {
    EventKind.UNSUBSCRIBED: "unsubscribe",
    EventKind.UNSUBSCRIBED_ALL: "unsubscribe",
    EventKind.BOUNCED_HARD: "hard_bounce",
    EventKind.BOUNCED_SOFT: "soft_bounce",
    EventKind.COMPLAINED: "spam",
    EventKind.SUBSCRIBED: "list_addition",
    EventKind.PROFILE_UPDATED: "contact_updated",
    EventKind.EMAIL_CHANGED: "contact_updated",
    EventKind.DELETED: "contact_deleted",
}
# Mailchimp's webhook for each syncd kind: (type, data fields other than the type's defaults).
MAILCHIMP_WEBHOOKS: dict[Any, tuple[str, dict[str, str]]] = {
    EventKind.SUBSCRIBED: ("subscribe", {}),
    EventKind.UNSUBSCRIBED: ("unsubscribe", {}),
    EventKind.COMPLAINED: ("unsubscribe", {"reason": "abuse"}),
    EventKind.DELETED: ("unsubscribe", {"action": "delete"}),
    EventKind.BOUNCED_HARD: ("cleaned", {}),
    EventKind.PROFILE_UPDATED: ("profile", {}),
    EventKind.EMAIL_CHANGED: ("upemail", {}),
    "campaign": ("campaign", {}),
    "cleaned": ("cleaned", {}),
}


class _Webhooks:
    """``fire_webhook`` for a simulator whose ``webhook_payload`` takes a syncd kind."""

    def fire_webhook(
        self, url: str, kind: EventKind | str, email: str, target: Target | None = None, **extra: Any
    ) -> httpx.Response:
        """Post to ``url`` the webhook the provider sends for ``kind``, with its own headers."""
        body, content_type = self.webhook_payload(kind, email, target, **extra)  # type: ignore[attr-defined]
        return self.post_webhook(url, body, content_type)  # type: ignore[attr-defined]


class BrevoSimulator(_Webhooks, _BrevoSimulator):
    provider = "brevo"

    def create_target(self, name: str = "x", tag: str | None = None) -> Target:
        return Target(self.provider, str(self.create_list(name)))

    def seed(self, target: Target, members: list[dict[str, Any]]) -> None:
        list_id = int(target.list_id)
        for m in members:
            status = m.get("status", "subscribed")
            self.put_contact(
                m["email"],
                list_ids=[list_id],
                attributes={attr: m[name] for name, attr in ATTRIBUTES.items() if m.get(name)},
                email_blacklisted=status == "blocked",
                list_unsubscribed=[list_id] if status == "unsubscribed" else [],
                modified_at=m.get("changed_at"),
            )

    def members(self, target: Target) -> dict[str, RemoteMember]:
        list_id = int(target.list_id)
        out = {}
        for c in self.list_contacts(list_id):
            if c["emailBlacklisted"]:
                status = RemoteStatus.BLOCKED
            elif list_id in c["listUnsubscribed"]:
                status = RemoteStatus.UNSUBSCRIBED
            else:
                status = RemoteStatus.SUBSCRIBED
            attrs = c["attributes"]
            out[c["email"]] = RemoteMember(
                c["email"],
                status,
                {n: str(attrs[a]) for n, a in ATTRIBUTES.items() if attrs.get(a)},
                remote_id=str(c["id"]),
                changed_at=parse_iso(c["modifiedAt"]),
                unsubscribed_from=tuple(str(i) for i in c["listUnsubscribed"]),
            )
        return out

    def is_blocked(self, email: str) -> bool:
        c = self.contact(email)
        return bool(c and c["emailBlacklisted"])

    def unsubscribe(self, email: str, target: Target) -> None:
        """The contact blocked account-wide *and* the list recorded in listUnsubscribed, whatever
        the account's setting: a blocked contact whose per-list reason Brevo shows. A real click
        gives one or the other, by the account's setting: see ``contact_unsubscribes``.
        https://help.brevo.com/hc/en-us/articles/208802209"""
        self.put_contact(email, list_unsubscribed=[int(target.list_id)], email_blacklisted=True)

    def webhook_payload(
        self, kind: EventKind, email: str, target: Target | None = None, **extra: Any
    ) -> tuple[bytes, str]:
        at: datetime = extra.pop("occurred_at", None) or datetime.now(UTC)
        fields: dict[str, Any] = {}
        if kind in (
            EventKind.UNSUBSCRIBED,
            EventKind.BOUNCED_HARD,
            EventKind.BOUNCED_SOFT,
            EventKind.COMPLAINED,
        ):
            # The simulator's campaign statistics name a click's campaign by the list it went to.
            camp_id = extra.pop("camp_id", int(target.list_id) if target is not None else 1)
            fields.update(brevo_webhooks.campaign_fields(camp_id))
        if kind in (EventKind.UNSUBSCRIBED, EventKind.SUBSCRIBED) and target is not None:
            fields["list_id"] = [int(target.list_id)]
        if kind in (EventKind.BOUNCED_HARD, EventKind.BOUNCED_SOFT):
            fields["reason"] = extra.pop("reason", "mailbox does not exist")
        if kind in (EventKind.PROFILE_UPDATED, EventKind.EMAIL_CHANGED):
            given = extra.pop("fields", {})
            attrs = {ATTRIBUTES[k]: v for k, v in given.items() if k in ATTRIBUTES}
            if kind is EventKind.EMAIL_CHANGED:
                attrs["EMAIL"] = extra.pop("new_email")
            fields["attributes"] = attrs
        fields.update(extra)
        return super().webhook_payload(BREVO_EVENTS[kind], email, at, **fields)


class MailchimpSimulator(_Webhooks, _MailchimpSimulator):
    provider = "mailchimp"

    def create_target(self, name: str = "x", tag: str | None = None) -> Target:
        list_id = self.create_audience(name)
        if tag:
            self.create_tag(list_id, tag)
        return Target(self.provider, list_id, tag)

    def seed(self, target: Target, members: list[dict]) -> None:
        for spec in members:
            tags = set(spec.get("tags", ()))
            if target.tag:
                tags.add(target.tag)
            self.put_member(
                target.list_id,
                spec["email"],
                status=spec.get("status", "subscribed"),
                merge_fields={t: spec[k] for k, t in MERGE_FIELDS.items() if spec.get(k) is not None},
                tags=tags,
                last_changed=spec.get("changed_at"),
                ip_signup=spec.get("ip_signup", ""),
                timestamp_signup=spec.get("timestamp_signup"),
                ip_opt=spec.get("ip_opt", ""),
                timestamp_opt=spec.get("timestamp_opt"),
            )

    def members(self, target: Target) -> dict[str, RemoteMember]:
        """What the connector would report on a full pull: archived members are not listed."""
        return {
            m.email.lower(): _remote(m)
            for m in self.audience_members(target.list_id)
            if m.status != "archived" and (not target.tag or target.tag in m.tags)
        }

    def member_status(self, target: Target, email: str) -> str | None:
        """The raw Mailchimp status, archived included (None: unknown to the audience)."""
        m = self.member(target.list_id, email)
        return m.status if m else None

    def is_blocked(self, email: str) -> bool:
        return False  # Mailchimp has no account-wide block list

    def unsubscribe(self, email: str, target: Target) -> None:
        # https://mailchimp.com/help/unsubscribes/ : the link unsubscribes from this audience only
        self.member_action(target.list_id, email, "unsubscribe")

    def webhook_payload(
        self, kind: EventKind | str, email: str, target: Target | None = None, **extra: Any
    ) -> tuple[bytes, str]:
        if kind not in MAILCHIMP_WEBHOOKS:
            raise ValueError(
                f"Mailchimp sends no webhook for {kind!r} (no account-wide unsubscribe, no soft bounce)"
            )
        mc_type, data = MAILCHIMP_WEBHOOKS[kind]
        data = {**data, **{k: extra.pop(k) for k in ("action", "reason") if k in extra}}
        fired_at = extra.pop("fired_at", None)
        list_id = target.list_id if target else extra.pop("list_id", mailchimp_webhooks.SOME_LIST)
        merges = {MERGE_FIELDS[k]: extra.pop(k) for k in list(extra) if k in MERGE_FIELDS}
        body = mailchimp_webhooks.payload(mc_type, email, list_id, fired_at, merges, **data, **extra)
        return body, mailchimp_webhooks.CONTENT_TYPE


def _remote(m: Member) -> RemoteMember:
    evidence = {
        k: v
        for k, v in (
            ("ip_signup", m.ip_signup),
            ("timestamp_signup", iso(m.timestamp_signup)),
            ("ip_opt", m.ip_opt),
            ("timestamp_opt", iso(m.timestamp_opt)),
        )
        if v
    }
    return RemoteMember(
        email=m.email.lower(),
        status=RemoteStatus(m.status),
        fields={k: m.merge_fields[tag] for k, tag in MERGE_FIELDS.items() if m.merge_fields.get(tag)},
        tags=tuple(sorted(m.tags)),
        remote_id=m.id,
        changed_at=m.last_changed,
        evidence=evidence,
    )
