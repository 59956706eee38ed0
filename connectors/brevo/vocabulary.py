"""Brevo's vocabulary in syncd's terms: contact attributes, contact states, error bodies, times.

Everything Brevo-specific lives in this package; the rest of syncd sees ``RemoteMember``,
``ProviderEvent`` and the error types of ``connectors.contract``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sib_api_v3_sdk.rest import ApiException

from connectors.contract import (
    ConnectorError,
    ProviderTraits,
    RemoteMember,
    RemoteStatus,
    error_for_status,
)

PROVIDER = "brevo"

# syncd field -> Brevo contact attribute. FIRSTNAME, LASTNAME and SMS exist in every account; the
# others must be created once in the account (Contacts > Settings > Contact attributes).
# https://developers.brevo.com/docs/synchronise-contact-lists
ATTRIBUTES = {
    "first_name": "FIRSTNAME",
    "last_name": "LASTNAME",
    "phone": "SMS",
    "company": "COMPANY",
    "city": "CITY",
    "country": "COUNTRY",
}
FIELDS_BY_ATTRIBUTE = {attr: name for name, attr in ATTRIBUTES.items()}

# Brevo refuses addresses it cannot parse; checked locally so a bad row never costs a call.
EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# An unsubscribe blacklists the contact for the whole account (emailBlacklisted), and a contact who
# unsubscribed from a list stays in it, the list named in listUnsubscribed.
# https://help.brevo.com/hc/en-us/articles/208802209 ; https://developers.brevo.com/docs/blocklisted-contacts
TRAITS = ProviderTraits(
    blocks_account_wide=True,
    keeps_unsubscribed_on_list=True,
    erases_account_wide=True,
    one_record_per_account=True,
    upsert_reads_back=True,
)


def error_fields(body: Any) -> tuple[str | None, str]:
    """``code`` and ``message`` of Brevo's error body (``errorModel`` in the OpenAPI file)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return None, body
    if isinstance(body, dict):
        return body.get("code"), str(body.get("message", ""))
    return None, ""


def error_from_api(exc: ApiException, endpoint: str) -> ConnectorError:
    status = exc.status or 0
    code, message = error_fields(exc.body)
    wait = 1.0
    if status == 429:
        # https://developers.brevo.com/docs/api-limits : wait x-sib-ratelimit-reset seconds
        try:
            wait = max(0.0, float((exc.headers or {}).get("x-sib-ratelimit-reset")))
        except (TypeError, ValueError):
            wait = 1.0
    text = f"{endpoint}: {status} {code or exc.reason}: {message}"
    return error_for_status(status, text, provider=PROVIDER, body=exc.body, wait_s=wait)


def member_from_contact(c: Mapping[str, Any], list_id: int) -> RemoteMember:
    # https://developers.brevo.com/docs/blocklisted-contacts : emailBlacklisted is account-wide;
    # listUnsubscribed names the lists the contact unsubscribed from.
    # The per-list unsubscribe is the signal syncd acts on: it wins over the account-wide block
    # that Brevo sets with it, which syncd lifts for the contact's other lists.
    left = c.get("listUnsubscribed") or []
    if list_id in left:
        status = RemoteStatus.UNSUBSCRIBED
    elif c.get("emailBlacklisted"):
        status = RemoteStatus.BLOCKED
    else:
        status = RemoteStatus.SUBSCRIBED
    attrs = c.get("attributes") or {}
    fields = {name: str(attrs[attr]) for attr, name in FIELDS_BY_ATTRIBUTE.items() if attrs.get(attr)}
    return RemoteMember(
        email=str(c["email"]).lower(),
        status=status,
        fields=fields,
        remote_id=str(c["id"]) if c.get("id") is not None else None,
        changed_at=parse_time(c.get("modifiedAt")),
        unsubscribed_from=tuple(str(i) for i in left),
    )


def attributes_of(fields: Mapping[str, str]) -> dict[str, str]:
    return {ATTRIBUTES[k]: v for k, v in fields.items() if k in ATTRIBUTES and v is not None}


def format_cursor(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def latest(values: Iterable[Any]) -> datetime | None:
    """The latest of Brevo's event times (``None`` for none)."""
    return max((t for t in map(parse_time, values) if t is not None), default=None)


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
