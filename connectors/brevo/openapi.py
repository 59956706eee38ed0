"""Brevo's webhook endpoint in the daemon's OpenAPI document: what a delivery looks like, and how
it is authenticated. The web layer adds what every provider's endpoint shares (the URL secret,
the answers of the inbox); the event names and attributes are read from the parser's tables.
"""

from __future__ import annotations

from typing import Any

from connectors.brevo.vocabulary import ATTRIBUTES
from connectors.brevo.webhooks import EVENT_KINDS

_brevo_timestamp = {"type": "integer", "minimum": 0}
BREVO_EVENT = {
    "type": "object",
    "description": (
        "One Brevo marketing webhook event, https://developers.brevo.com/docs/marketing-webhooks. "
        "Event names are matched without case; syncd acts on unsubscribes, bounces, complaints, list "
        "additions, contact updates and deletions, and keeps the others (opens, clicks…) as `ignored`. "
        "The event's time is `ts_epoch` (ms, UTC), else `ts_event` or `ts` (s, UTC), else "
        "`date_event` (the account's time zone)."
    ),
    "required": ["event", "email"],
    "anyOf": [{"required": [key]} for key in ("ts_epoch", "ts_event", "ts", "date_event")],
    "properties": {
        "event": {"type": "string", "enum": sorted(EVENT_KINDS)},
        "email": {"type": "string", "format": "email"},
        "id": {"type": "integer"},
        "date_event": {"type": "string", "example": "2026-11-30 17:45:01"},
        "ts_event": _brevo_timestamp,
        "ts_epoch": _brevo_timestamp,
        "ts": _brevo_timestamp,
        "list_id": {
            "type": "array",
            "items": {"type": "integer"},
            "description": "Brevo lists concerned; an unsubscribe without one is account-wide",
        },
        "reason": {"type": "string"},
        "camp_id": {"type": "integer"},
        "tag": {"type": "string"},
        "sending_ip": {"type": "string"},
        "message-id": {"type": "string"},
        "api_key_name": {"type": "string", "description": "Compared with `api_key_name` to drop echoes"},
        "attributes": {
            "type": "object",
            "description": "Contact attributes of a `contact_updated`; a new `EMAIL` is an address change",
            "properties": {name: {"type": "string"} for name in [*ATTRIBUTES.values(), "EMAIL"]},
        },
    },
}

# The endpoint's operations, less what the web layer adds to every provider's (``tags``, the URL
# secret parameter, the shared answers); each of its own answers is plain text: (description, headers).
OPERATIONS: dict[str, Any] = {
    "post": {
        "operationId": "brevoWebhook",
        "summary": "Brevo marketing webhook: one event, or a batch of them",
        "description": (
            "Authenticated by the secret in the URL and, when `providers.brevo.webhook_token` is "
            "set, by `Authorization: Bearer <token>` (set the same token on the Brevo webhook)."
        ),
        "security": [{}, {"brevoToken": []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"oneOf": [BREVO_EVENT, {"type": "array", "minItems": 1, "items": BREVO_EVENT}]}
                }
            },
        },
        "responses": {
            "401": (
                "The bearer token is missing or wrong. Nothing is stored.",
                {"WWW-Authenticate": {"schema": {"type": "string", "enum": ["Bearer"]}}},
            ),
        },
    }
}
SECURITY_SCHEMES: dict[str, Any] = {
    "brevoToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "`providers.brevo.webhook_token`, set on the Brevo webhook too",
    }
}
