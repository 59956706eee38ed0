"""Mailchimp's webhook endpoint in the daemon's OpenAPI document: the URL check, what a delivery
looks like, and how it is authenticated. The web layer adds what every provider's endpoint shares
(the URL secret, the answers of the inbox); event types and merge tags are read from the parser's
tables.
"""

from __future__ import annotations

from typing import Any

from connectors.mailchimp.vocabulary import MERGE_FIELDS
from connectors.mailchimp.webhooks import WEBHOOK_EVENTS

_mailchimp_types = sorted({name for name, _ in WEBHOOK_EVENTS})
_mailchimp_fields: dict[str, Any] = {
    "type": {"type": "string", "enum": _mailchimp_types},
    "fired_at": {
        "type": "string",
        "pattern": (
            "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]) ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$"
        ),
        "description": "`YYYY-MM-DD HH:MM:SS`, UTC",
    },
    "data[id]": {"type": "string"},
    "data[list_id]": {"type": "string", "description": "The audience"},
    "data[email]": {"type": "string", "format": "email"},
    "data[email_type]": {"type": "string"},
    "data[ip_opt]": {"type": "string"},
    "data[ip_signup]": {"type": "string"},
    "data[action]": {"type": "string", "enum": ["unsub", "delete"], "description": "`unsubscribe` only"},
    "data[reason]": {
        "type": "string",
        "description": "`unsubscribe`: `manual` or `abuse` (a complaint); `cleaned`: `hard` or `abuse`",
    },
    "data[old_email]": {"type": "string", "format": "email", "description": "`upemail` only"},
    "data[new_email]": {"type": "string", "format": "email", "description": "`upemail` only"},
    "data[new_id]": {"type": "string"},
    "data[campaign_id]": {"type": "string"},
    "data[subject]": {"type": "string"},
    "data[status]": {"type": "string"},
    "data[merges][EMAIL]": {"type": "string"},
    **{f"data[merges][{tag}]": {"type": "string"} for tag in MERGE_FIELDS.values()},
}
# The fields each type always carries: the address it is about (``upemail``: the old and new ones).
_mailchimp_needs = {name: ["data[email]"] for name in _mailchimp_types}
_mailchimp_needs.update(upemail=["data[old_email]", "data[new_email]"], campaign=[])
MAILCHIMP_EVENT = {
    "type": "object",
    "description": (
        "One Mailchimp audience webhook, form-encoded with `data[...]` keys, "
        "https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/. "
        "`campaign` deliveries are kept as `ignored`."
    ),
    "required": ["type", "fired_at"],
    "properties": _mailchimp_fields,
    "oneOf": [
        {"properties": {"type": {"enum": [name]}}, **({"required": needs} if needs else {})}
        for name, needs in sorted(_mailchimp_needs.items())
    ],
}

# The endpoint's operations, less what the web layer adds to every provider's (``tags``, the URL
# secret parameter, the shared answers); each of its own answers is plain text: (description, headers).
OPERATIONS: dict[str, Any] = {
    "get": {
        "operationId": "mailchimpWebhookCheck",
        "summary": "Mailchimp's check of the URL when the webhook is saved",
        "responses": {"200": ("`OK`", None)},
    },
    "post": {
        "operationId": "mailchimpWebhook",
        "summary": "Mailchimp audience webhook",
        "description": (
            "Authenticated by the secret in the URL and, when `providers.mailchimp.signing_secret` is "
            'set, by `X-Mailchimp-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">` '
            "(5 minutes of tolerance). Register the webhook without the source *by the API*: those "
            "are syncd's own writes."
        ),
        "parameters": [
            {
                "name": "X-Mailchimp-Signature",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "Checked only when `signing_secret` is set",
            },
        ],
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": MAILCHIMP_EVENT}},
        },
        "responses": {
            "401": ("`X-Mailchimp-Signature` is missing or wrong. Nothing is stored.", None),
        },
    },
}
SECURITY_SCHEMES: dict[str, Any] = {}
