"""Mailchimp's vocabulary in syncd's terms: merge fields, member states, batch refusals, errors.

Everything Mailchimp-specific lives in this package. A ``Target`` is an audience, optionally
narrowed by a tag (several syncd lists can share one audience through tags).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from connectors.contract import (
    AuthFailed,
    MemberPush,
    ProviderTraits,
    Rejected,
    RemoteMember,
    RemoteStatus,
    Target,
)

PROVIDER = "mailchimp"

BATCH_SUBSCRIBE_MAX = (
    500  # https://mailchimp.com/developer/marketing/api/lists/batch-subscribe-or-unsubscribe/
)
SEGMENT_BATCH_MAX = (
    500  # https://mailchimp.com/developer/marketing/api/list-segments/batch-add-or-remove-members/
)
PAGE_MAX = 1000  # https://mailchimp.com/developer/marketing/docs/methods-parameters/#pagination

# The one table between master-base field names and Mailchimp merge tags. FNAME, LNAME, PHONE
# are default merge fields; COMPANY, CITY and COUNTRY must exist in the audience as text fields.
# https://mailchimp.com/developer/marketing/docs/merge-fields/
MERGE_FIELDS = {
    "first_name": "FNAME",
    "last_name": "LNAME",
    "phone": "PHONE",
    "company": "COMPANY",
    "city": "CITY",
    "country": "COUNTRY",
}
FIELD_OF_MERGE = {tag: name for name, tag in MERGE_FIELDS.items()}

# Only what syncd uses. https://mailchimp.com/developer/marketing/docs/methods-parameters/#partial-responses
MEMBER_QUERY_FIELDS = [
    "total_items",
    *(
        f"members.{f}"
        for f in (
            "id",
            "contact_id",
            "email_address",
            "status",
            "merge_fields",
            "tags",
            "last_changed",
            "ip_signup",
            "timestamp_signup",
            "ip_opt",
            "timestamp_opt",
        )
    ),
]
EVIDENCE = ("ip_signup", "timestamp_signup", "ip_opt", "timestamp_opt")
# Statuses that hold for the whole audience, whatever the member's tags.
# https://mailchimp.com/help/about-compliance-state/
AUDIENCE_WIDE = (RemoteStatus.UNSUBSCRIBED, RemoteStatus.CLEANED)

# Per-member batch errors in syncd's words (Rejected.code); the provider's text stays in reason.
# https://mailchimp.com/help/about-compliance-state/ and https://mailchimp.com/developer/marketing/docs/errors/
REJECTION_CODES = (
    ("compliance state", "compliance_state"),
    ("looks fake or invalid", "invalid_email"),
    ("permanently deleted", "forgotten"),
    ("already a list member", "exists"),
)


# No account-wide block; an unsubscribed member is off the audience's mailings where it stands.
# https://mailchimp.com/help/unsubscribes/
TRAITS = ProviderTraits()


def subscriber_hash(email: str) -> str:
    # https://mailchimp.com/developer/marketing/docs/methods-parameters/#path-parameters : MD5 of lower-case
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def host_for(api_key: str) -> str:
    # https://mailchimp.com/developer/marketing/docs/fundamentals/#api-structure : the key ends in "-<dc>"
    _, _, dc = api_key.rpartition("-")
    if not dc or not dc.isalnum():
        raise AuthFailed("Mailchimp API key has no data-centre suffix (like '-us19')", provider=PROVIDER)
    return f"https://{dc}.api.mailchimp.com/3.0"


def problem_of(text: Any) -> dict:
    """The problem+json body, whether the SDK parsed it (a dict) or not (a raw string)."""
    if isinstance(text, dict):
        return text
    if isinstance(text, bytes | str) and text:
        try:
            parsed = json.loads(text)
        except ValueError:
            return {"detail": str(text)[:200]}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def member_body(m: MemberPush) -> dict:
    body: dict[str, Any] = {"email_address": m.email.strip().lower(), "status": m.status.value}
    merges = {MERGE_FIELDS[k]: v for k, v in m.fields.items() if k in MERGE_FIELDS and v is not None}
    if merges:
        body["merge_fields"] = merges
    return body


def rejected_of(email: str, error: Mapping[str, Any]) -> Rejected:
    text = str(error.get("error") or error.get("field_message") or "rejected")
    code = next((c for needle, c in REJECTION_CODES if needle in text.lower()), None)
    return Rejected(email, text, code or error.get("error_code"))


def seen_by(target: Target, member: RemoteMember) -> RemoteMember | None:
    """What a read of ``target`` reports of an audience member (None: nothing). Without the
    target's tag, only an audience-wide opt-out, marked as not on the target."""
    if not target.tag or target.tag in member.tags:
        return member
    if member.status in AUDIENCE_WIDE:
        return replace(member, on_target=False)
    return None


def remote_member(row: Mapping[str, Any]) -> RemoteMember:
    merges = row.get("merge_fields") or {}
    return RemoteMember(
        email=str(row["email_address"]).strip().lower(),
        status=RemoteStatus(row["status"]),
        fields={
            name: str(merges[tag]) for name, tag in MERGE_FIELDS.items() if merges.get(tag) not in (None, "")
        },
        tags=tuple(t["name"] for t in row.get("tags") or ()),
        # The member's own id, kept when the address changes (``id`` is the address's hash).
        remote_id=row.get("contact_id") or row.get("id"),
        changed_at=parse_iso(row.get("last_changed")),
        evidence={k: str(row[k]) for k in EVIDENCE if row.get(k)},
    )


def parse_iso(value: Any) -> datetime | None:
    if not value:
        return None
    ts = datetime.fromisoformat(str(value))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def iso_time(ts: datetime) -> str:
    return ts.astimezone(UTC).replace(microsecond=0).isoformat()
