"""Brevo's vocabulary in syncd's terms: contact attributes, contact states, error bodies, times.

Everything Brevo-specific lives in this package; the rest of syncd sees ``RemoteMember``,
``ProviderEvent`` and the error types of ``connectors.contract``.
"""

from __future__ import annotations

import functools
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
    Transient,
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


def json_object(raw: bytes | str, where: str) -> dict[str, Any]:
    """A 2xx answer's JSON object; an answer cut short or not JSON is ``Transient`` (asked again)."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise Transient(f"{where}: the answer is not JSON ({exc})", provider=PROVIDER) from exc
    if not isinstance(body, dict):
        raise Transient(f"{where}: the answer is not a JSON object", provider=PROVIDER)
    return body


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


def status_of(c: Mapping[str, Any], list_id: int) -> RemoteStatus:
    """A contact's state on ``list_id``, from its JSON (``GET /contacts/lists/{id}/contacts``)."""
    # https://developers.brevo.com/docs/blocklisted-contacts : emailBlacklisted is account-wide;
    # listUnsubscribed names the lists the contact unsubscribed from.
    # The per-list unsubscribe is the signal syncd acts on: it wins over the account-wide block
    # that Brevo sets with it, which syncd lifts for the contact's other lists.
    left = c.get("listUnsubscribed")
    if left and list_id in left:
        return RemoteStatus.UNSUBSCRIBED
    if c.get("emailBlacklisted"):
        return RemoteStatus.BLOCKED
    return RemoteStatus.SUBSCRIBED


def member_from_contact(c: Mapping[str, Any], list_id: int) -> RemoteMember:
    # Run once per contact read (tens of thousands a read): the attributes a contact holds are
    # walked, not the whole vocabulary, and its time parsed through the cache.
    attrs = c.get("attributes") or {}
    contact_id = c.get("id")
    return RemoteMember(
        email=str(c["email"]).lower(),
        status=status_of(c, list_id),
        fields={FIELDS_BY_ATTRIBUTE[a]: str(v) for a, v in attrs.items() if v and a in FIELDS_BY_ATTRIBUTE},
        remote_id=None if contact_id is None else str(contact_id),
        changed_at=parse_time(c.get("modifiedAt")),
        unsubscribed_from=tuple(map(str, c.get("listUnsubscribed") or ())),
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
    return _parsed_time(str(value))


@functools.lru_cache(maxsize=4096)
def _parsed_time(text: str) -> datetime:
    """Cached: the contacts of one import, read back together, share their modifiedAt."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
