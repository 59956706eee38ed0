"""Brevo's webhooks: who may post them, and the events a delivery carries.

https://developers.brevo.com/docs/marketing-webhooks ;
https://developers.brevo.com/docs/transactional-webhooks
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.brevo.vocabulary import FIELDS_BY_ATTRIBUTE, PROVIDER, parse_time
from connectors.contract import (
    Delivery,
    EventKind,
    PayloadError,
    ProviderEvent,
    Refusal,
)
from connectors.secrets import secret_matches
from connectors.text import clean_text, email_problem


class BrevoWebhookEndpoint:
    """Brevo sends ``Authorization: Bearer <token>`` when the webhook is created with one;
    required unless the config opts out (``webhook_auth: url_secret``).
    https://developers.brevo.com/docs/how-to-use-webhooks#securing-webhooks
    """

    methods = ("POST",)

    def __init__(self, token: str | None, mode: str = "bearer"):
        self.token = token
        self.required = bool(token) or mode == "bearer"

    @classmethod
    def from_settings(cls, settings: Any) -> BrevoWebhookEndpoint:
        """From the config's ``providers.brevo`` (``webhook_token``, ``webhook_auth``)."""
        return cls(settings.webhook_token, settings.webhook_auth)

    def authenticate(self, headers: Mapping[str, str]) -> Refusal | None:
        if not self.required:
            return None
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret_matches(token.strip(), self.token):
            return Refusal("token", 401, "Unauthorized", {"WWW-Authenticate": "Bearer"})
        return None

    def handshake(self, method: str) -> str | None:
        return None

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Refusal | None:
        return None

    def describe(self) -> tuple[str, str | None]:
        if self.token:
            return "URL secret + bearer token (Authorization: Bearer)", None
        if self.required:
            return "URL secret + bearer token, but no token is set: every delivery is refused (401)", (
                "providers.brevo.webhook_token is not set: set the webhook's bearer token in Brevo and "
                "here (or accept the weaker URL secret alone with webhook_auth: url_secret)"
            )
        return "URL secret only", (
            "Brevo webhooks are authenticated by the URL secret alone (webhook_auth: url_secret): "
            "anyone who learns the URL can post events; set a bearer token (webhook_token)"
        )


# Brevo webhook event name -> syncd event kind; None: a known event syncd does not act on.
# Names differ between the documentation and real traffic, hence the variants.
# https://developers.brevo.com/docs/marketing-webhooks
# https://developers.brevo.com/docs/transactional-webhooks
EVENT_KINDS: dict[str, EventKind | None] = {
    "unsubscribed": EventKind.UNSUBSCRIBED,
    "unsubscribe": EventKind.UNSUBSCRIBED,
    "hard_bounce": EventKind.BOUNCED_HARD,
    "hard_bounced": EventKind.BOUNCED_HARD,
    "hardbounce": EventKind.BOUNCED_HARD,
    "invalid_email": EventKind.BOUNCED_HARD,
    "soft_bounce": EventKind.BOUNCED_SOFT,
    "soft_bounced": EventKind.BOUNCED_SOFT,
    "softbounce": EventKind.BOUNCED_SOFT,
    "spam": EventKind.COMPLAINED,
    "complaint": EventKind.COMPLAINED,
    "list_addition": EventKind.SUBSCRIBED,
    "contact_updated": EventKind.PROFILE_UPDATED,
    "contact_deleted": EventKind.DELETED,
    # A send refused because the address is already blacklisted: the block was reported by the
    # unsubscribe/complaint/bounce that caused it, and syncd's base already holds it.
    "blocked": None,
    "delivered": None,
    "request": None,
    "sent": None,
    "deferred": None,
    "opened": None,
    "unique_opened": None,
    "first_opening": None,
    "click": None,
    "clicked": None,
}
LIST_EVENTS = {EventKind.UNSUBSCRIBED, EventKind.SUBSCRIBED}
OWN_WRITE_EVENTS = {"contact_updated", "list_addition"}


def event_time(item: Mapping[str, Any]) -> tuple[datetime, str]:
    # ts_epoch (ms) and ts_event (s) are UTC; date_event follows the account's time zone, so it is
    # only a last resort. https://developers.brevo.com/docs/marketing-webhooks
    for key, scale in (("ts_epoch", 1000.0), ("ts_event", 1.0), ("ts", 1.0)):
        raw = item.get(key)
        if raw not in (None, ""):
            try:
                return datetime.fromtimestamp(float(raw) / scale, UTC), str(raw)
            except (TypeError, ValueError, OverflowError, OSError) as exc:
                # OSError: the C library refuses some out-of-range times (EOVERFLOW) before Python does.
                raise PayloadError(f"Brevo webhook field '{key}' is not a timestamp: {raw!r}") from exc
    for key in ("date_event", "date"):
        if item.get(key):
            try:
                return parse_time(str(item[key]).replace(" ", "T")), str(item[key])  # type: ignore[return-value]
            except ValueError as exc:
                raise PayloadError(f"Brevo webhook field '{key}' is not a date: {item[key]!r}") from exc
    raise PayloadError("Brevo webhook has no 'ts_event' (nor ts_epoch, ts, date_event)", provider=PROVIDER)


def events_from_payload(item: Any, api_key_name: str | None) -> list[ProviderEvent]:
    if not isinstance(item, dict):
        raise PayloadError("Brevo webhook item is not a JSON object", provider=PROVIDER)
    name = item.get("event")
    if not isinstance(name, str) or not name:
        raise PayloadError("Brevo webhook has no 'event' field", provider=PROVIDER)
    if name.lower() not in EVENT_KINDS:
        raise PayloadError(f"Brevo webhook field 'event' has an unknown value: {name!r}", provider=PROVIDER)
    kind = EVENT_KINDS[name.lower()]
    email = item.get("email")
    problem = email_problem(email)
    if problem:
        raise PayloadError(f"Brevo webhook field 'email' {problem}", provider=PROVIDER)
    if kind is None:
        return []
    email = email.strip().lower()
    occurred_at, ts = event_time(item)
    ts = clean_text(ts)
    lists = item.get("list_id")
    if lists is None or lists == "":
        lists = []
    elif not isinstance(lists, list):
        lists = [lists]
    attrs = item.get("attributes") if isinstance(item.get("attributes"), dict) else {}
    new_email = None
    if kind is EventKind.PROFILE_UPDATED:
        changed = attrs.get("EMAIL")
        if changed not in (None, "") and email_problem(changed):
            raise PayloadError(
                f"Brevo webhook field 'attributes.EMAIL' {email_problem(changed)}", provider=PROVIDER
            )
        changed = str(changed or "").strip().lower()
        if changed and changed != email:
            kind, new_email = EventKind.EMAIL_CHANGED, changed
    own = bool(api_key_name) and name.lower() in OWN_WRITE_EVENTS and item.get("api_key_name") == api_key_name
    # Free text is cleaned before anything hashes or stores it (connectors/text.py says why).
    fields = {FIELDS_BY_ATTRIBUTE[k]: clean_text(v) for k, v in attrs.items() if k in FIELDS_BY_ATTRIBUTE}
    message_id = clean_text(item.get("message-id") or item.get("message_id") or "")
    reason = clean_text(item.get("reason") or "") or None
    campaign = clean_text(str(item["camp_id"])) if item.get("camp_id") not in (None, "") else None

    def one(target: str | None, as_kind: EventKind) -> ProviderEvent:
        raw = "|".join((PROVIDER, name.lower(), email, target or "", ts, message_id))
        return ProviderEvent(
            provider=PROVIDER,
            kind=as_kind,
            email=email,
            occurred_at=occurred_at,
            dedupe_key=hashlib.sha256(raw.encode()).hexdigest()[:32],
            target=target,
            reason=reason,
            new_email=new_email,
            fields=fields,
            own_write=own,
            campaign=campaign,
        )

    if kind in LIST_EVENTS:
        if lists:
            return [one(clean_text(list_id), kind) for list_id in lists]
        if kind is EventKind.UNSUBSCRIBED:
            # An unsubscribe naming no list is Brevo's account-wide one.
            return [one(None, EventKind.UNSUBSCRIBED_ALL)]
    return [one(None, kind)]


def parse_delivery(body: bytes, api_key_name: str | None) -> Delivery:
    """One delivery: a JSON object, or a batch (a JSON array) of them.

    A batch's bad item is left out with its reason, so that it never sinks the good ones;
    a delivery with nothing usable is refused whole. ``api_key_name``: syncd's own key, whose
    writes echo back as events to ignore.
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"Brevo webhook body is not JSON: {exc}", provider=PROVIDER) from exc
    except RecursionError as exc:
        raise PayloadError("Brevo webhook body is nested too deeply", provider=PROVIDER) from exc
    if not isinstance(payload, list):
        return Delivery(events_from_payload(payload, api_key_name))
    if not payload:
        raise PayloadError("Brevo webhook batch is empty", provider=PROVIDER)
    events: list[ProviderEvent] = []
    skipped: list[str] = []
    for index, item in enumerate(payload):
        try:
            events.extend(events_from_payload(item, api_key_name))
        except PayloadError as exc:
            skipped.append(f"item {index}: {exc}")
    if len(skipped) == len(payload):
        raise PayloadError("; ".join(skipped[:5]), provider=PROVIDER)
    return Delivery(events, skipped)


def storable_body(body: bytes) -> str:
    # A JSON text holds no raw control character (json.loads refuses one): stored as sent.
    return body.decode("utf-8")
