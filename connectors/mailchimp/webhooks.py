"""Mailchimp's webhooks: who may post them, and the events a delivery carries.

https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import structlog

from connectors.contract import (
    Delivery,
    EventKind,
    PayloadError,
    ProviderEvent,
    Refusal,
)
from connectors.mailchimp.vocabulary import FIELD_OF_MERGE, PROVIDER
from connectors.text import clean_text, email_problem

log = structlog.get_logger(__name__)


class MailchimpWebhookEndpoint:
    """Mailchimp checks the URL with a GET when the webhook is saved, and wants a 200; a signed
    webhook carries ``X-Mailchimp-Signature`` (checked when ``signing_secret`` is set).
    https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/
    """

    methods = ("GET", "POST")

    def __init__(self, signing_secret: str | None):
        self.signing_secret = signing_secret

    @classmethod
    def from_settings(cls, settings: Any) -> MailchimpWebhookEndpoint:
        """From the config's ``providers.mailchimp`` (``signing_secret``)."""
        return cls(settings.signing_secret)

    def authenticate(self, headers: Mapping[str, str]) -> Refusal | None:
        return None

    def handshake(self, method: str) -> str | None:
        return "OK" if method == "GET" else None

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Refusal | None:
        if self.signing_secret and not verify_signature(
            body, headers.get("x-mailchimp-signature"), self.signing_secret
        ):
            return Refusal("signature", 401, "Bad signature")
        return None

    def describe(self) -> tuple[str, str | None]:
        if self.signing_secret:
            return "URL secret + signature (X-Mailchimp-Signature, HMAC-SHA256, 300 s)", None
        return "URL secret only", (
            "Mailchimp webhooks are authenticated by the URL secret alone: set "
            "providers.mailchimp.signing_secret once the webhook is signed"
        )


# Mailchimp's webhook vocabulary -> syncd's events: (type, qualifier). The qualifier is
# data[reason] for "cleaned", and for "unsubscribe" "abuse" (a spam complaint) or data[action].
# https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/#webhook-events
WEBHOOK_EVENTS: dict[tuple[str, str], EventKind | None] = {
    ("subscribe", ""): EventKind.SUBSCRIBED,
    ("unsubscribe", "unsub"): EventKind.UNSUBSCRIBED,  # this audience only, never "all"
    ("unsubscribe", "delete"): EventKind.DELETED,  # an admin deleted the contact: no opt-out
    ("unsubscribe", "abuse"): EventKind.COMPLAINED,
    ("profile", ""): EventKind.PROFILE_UPDATED,
    ("upemail", ""): EventKind.EMAIL_CHANGED,
    ("cleaned", "hard"): EventKind.BOUNCED_HARD,
    ("cleaned", "abuse"): EventKind.COMPLAINED,
    ("campaign", ""): None,  # a campaign was sent: nothing for the master base
}


def parse_delivery(body: bytes, content_type: str) -> Delivery:
    """One Mailchimp delivery (form-encoded, ``data[...]`` keys) as normalised events.

    https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/
    """
    form = _form(body, content_type)
    for key in ("data[email]", "data[old_email]", "data[new_email]"):
        problem = email_problem(form[key]) if form.get(key) else None
        if problem:
            raise PayloadError(f"Mailchimp webhook '{key}' {problem}", provider=PROVIDER, body=body)
    # Free text is cleaned before anything hashes or stores it (connectors/text.py says why).
    form = {clean_text(k): clean_text(v) for k, v in form.items()}
    return Delivery(_events(form, body))


def storable_body(body: bytes) -> str:
    # A raw NUL byte and "%00" decode to the same form field; only the latter can be stored
    # in a PostgreSQL text column.
    return body.decode("utf-8").replace("\x00", "%00")


def _events(form: Mapping[str, str], body: bytes) -> list[ProviderEvent]:
    kind_name = form.get("type")
    if not kind_name:
        raise PayloadError("Mailchimp webhook without 'type'", provider=PROVIDER, body=body)
    qualifier = _qualifier(kind_name, form)
    if (kind_name, qualifier) not in WEBHOOK_EVENTS:
        raise PayloadError(
            f"unknown Mailchimp webhook: type={kind_name!r} qualifier={qualifier!r}",
            provider=PROVIDER,
            body=body,
        )
    kind = WEBHOOK_EVENTS[(kind_name, qualifier)]
    if kind is None:
        return []
    email_key = "data[old_email]" if kind is EventKind.EMAIL_CHANGED else "data[email]"
    email = form.get(email_key, "").strip().lower()
    if not email:
        raise PayloadError(
            f"Mailchimp {kind_name} webhook without '{email_key}'", provider=PROVIDER, body=body
        )
    new_email = form.get("data[new_email]", "").strip().lower() or None
    if kind is EventKind.EMAIL_CHANGED and not new_email:
        raise PayloadError(
            "Mailchimp upemail webhook without 'data[new_email]'", provider=PROVIDER, body=body
        )
    fields = {
        FIELD_OF_MERGE[k[13:-1]]: v
        for k, v in form.items()
        if k.startswith("data[merges][") and k[13:-1] in FIELD_OF_MERGE
    }
    return [
        ProviderEvent(
            provider=PROVIDER,
            kind=kind,
            email=email,
            occurred_at=_fired_at(form.get("fired_at"), body),
            dedupe_key=_dedupe_key(form),
            target=form.get("data[list_id]") or None,
            reason=form.get("data[reason]") or form.get("data[action]") or None,
            new_email=new_email,
            fields=fields,
        )
    ]


def verify_signature(
    body: bytes, header: str | None, secret: str, tolerance_s: float = 300, now: float | None = None
) -> bool:
    """Check ``X-Mailchimp-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``.

    On the raw bytes, in constant time, within ``tolerance_s`` of ``now``.
    https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/
    """
    if not header or not secret:
        return False
    parts = [p.strip().partition("=") for p in header.split(",")]
    stamps = [v for k, _, v in parts if k == "t"]
    signatures = [v for k, _, v in parts if k == "v1"]
    if len(stamps) != 1 or not signatures or not stamps[0].isdigit():
        return False
    now = time.time() if now is None else now
    if abs(now - int(stamps[0])) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), stamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in signatures)


def _form(body: bytes, content_type: str) -> dict[str, str]:
    if "application/x-www-form-urlencoded" not in (content_type or "").lower():
        raise PayloadError(
            f"Mailchimp webhooks are form-encoded, got {content_type!r}", provider=PROVIDER, body=body
        )
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(
            f"Mailchimp webhook body is not form data: {exc}", provider=PROVIDER, body=body
        ) from exc
    return dict(pairs)


def _qualifier(kind_name: str, form: Mapping[str, str]) -> str:
    if kind_name == "unsubscribe":
        return "abuse" if form.get("data[reason]") == "abuse" else form.get("data[action]") or "unsub"
    if kind_name == "cleaned":
        return form.get("data[reason]") or "hard"
    return ""


def _fired_at(value: str | None, body: bytes) -> datetime:
    # fired_at is "YYYY-MM-DD HH:MM:SS" in UTC.
    try:
        return datetime.strptime(value or "", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError as exc:
        raise PayloadError(
            f"Mailchimp webhook 'fired_at' is not 'YYYY-MM-DD HH:MM:SS': {value!r}",
            provider=PROVIDER,
            body=body,
        ) from exc


def _dedupe_key(form: Mapping[str, str]) -> str:
    """Stable across redeliveries and field order: a hash of the sorted raw fields."""
    canonical = json.dumps(sorted(form.items()), ensure_ascii=False, separators=(",", ":"))
    return f"{PROVIDER}:{hashlib.sha256(canonical.encode()).hexdigest()}"
