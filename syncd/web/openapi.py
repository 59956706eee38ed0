"""The daemon's API as an OpenAPI 3.0 document, served at ``GET /openapi.json``.

Written by hand, as data: every route of ``syncd/web/app.py``, what it accepts, and every answer it
gives (status, content type, body where it has a shape). The test suite fuzzes the live app from
this document (tests/web/test_fuzz.py), so an answer that is not described here fails the build.
The providers' vocabularies (Brevo event names, Mailchimp event types and merge tags) are read from
the connectors, so the document never drifts from what the parsers accept.
"""

from __future__ import annotations

from typing import Any

from connectors.brevo.vocabulary import ATTRIBUTES as BREVO_ATTRIBUTES
from connectors.brevo.webhooks import EVENT_KINDS as BREVO_EVENTS
from connectors.mailchimp.vocabulary import MERGE_FIELDS as MAILCHIMP_MERGES
from connectors.mailchimp.webhooks import WEBHOOK_EVENTS as MAILCHIMP_EVENTS
from syncd.web.hooks import MAX_BODY_BYTES

VERSION = "0.1.0"

TOKEN = {
    "name": "token",
    "in": "path",
    "required": True,
    "description": "The signed token of the link syncd mailed: URL-safe base64, a dot, URL-safe base64.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$"},
}
SECRET = {
    "name": "secret",
    "in": "path",
    "required": True,
    "description": (
        "The provider's `webhook_secret` from the config. A wrong one answers 404, as an unknown URL "
        "would. The secret is part of the URL: a proxy's access log holds it."
    ),
    "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
}
LANG = {
    "name": "lang",
    "in": "query",
    "required": False,
    "description": "Language of the page; default: the browser's Accept-Language, then the config's.",
    "schema": {"type": "string", "enum": ["fr", "en"]},
}
PAGE_HEADERS = {
    "Cache-Control": {"description": "`no-store`", "schema": {"type": "string", "enum": ["no-store"]}},
    "Referrer-Policy": {"description": "`no-referrer`", "schema": {"type": "string"}},
    "X-Frame-Options": {"description": "`DENY`", "schema": {"type": "string", "enum": ["DENY"]}},
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}


def _text(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _html(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": PAGE_HEADERS,
        "content": {"text/html": {"schema": {"type": "string"}}},
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _form(schema: dict[str, Any], encoding: dict[str, Any] | None = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if encoding:
        media["encoding"] = encoding
    return {"required": False, "content": {"application/x-www-form-urlencoded": media}}


# --- webhooks ------------------------------------------------------------------------------------

ACKNOWLEDGED = _json(
    "Stored in the inbox before this answer (`stored`), kept with nothing to apply (`ignored`: an "
    "event syncd does not act on, or the echo of syncd's own write), or a redelivery (`duplicate`). "
    "The provider does not send it again.",
    {
        "type": "object",
        "required": ["status", "events"],
        "properties": {
            "status": {"type": "string", "enum": ["stored", "ignored", "duplicate"]},
            "events": {"type": "integer", "minimum": 0, "description": "Events syncd read in it"},
        },
    },
)
HOOK_ANSWERS = {
    "400": _text("The delivery is malformed; the body says why. Nothing is stored."),
    "404": _text("Wrong secret, or the provider is not configured. Nothing is stored."),
    "413": _text(f"The body is over {MAX_BODY_BYTES:,} bytes. Nothing is stored."),
    "429": _text(
        "Too many authentication failures from this address: every webhook request from it is "
        "refused until `Retry-After`.",
        RETRY_AFTER,
    ),
    "503": _text("The master base cannot be reached: nothing is stored, the provider retries.", RETRY_AFTER),
}

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
        "event": {"type": "string", "enum": sorted(BREVO_EVENTS)},
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
            "properties": {name: {"type": "string"} for name in [*BREVO_ATTRIBUTES.values(), "EMAIL"]},
        },
    },
}

_mailchimp_types = sorted({name for name, _ in MAILCHIMP_EVENTS})
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
    **{f"data[merges][{tag}]": {"type": "string"} for tag in MAILCHIMP_MERGES.values()},
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

WEBHOOKS: dict[str, Any] = {
    "/hooks/brevo/{secret}": {
        "post": {
            "operationId": "brevoWebhook",
            "tags": ["webhooks"],
            "summary": "Brevo marketing webhook: one event, or a batch of them",
            "description": (
                "Authenticated by the secret in the URL and, when `providers.brevo.webhook_token` is "
                "set, by `Authorization: Bearer <token>` (set the same token on the Brevo webhook)."
            ),
            "parameters": [SECRET],
            "security": [{}, {"brevoToken": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [BREVO_EVENT, {"type": "array", "minItems": 1, "items": BREVO_EVENT}]
                        }
                    }
                },
            },
            "responses": {
                "200": ACKNOWLEDGED,
                **HOOK_ANSWERS,
                "401": _text(
                    "The bearer token is missing or wrong. Nothing is stored.",
                    {"WWW-Authenticate": {"schema": {"type": "string", "enum": ["Bearer"]}}},
                ),
            },
        }
    },
    "/hooks/mailchimp/{secret}": {
        "get": {
            "operationId": "mailchimpWebhookCheck",
            "tags": ["webhooks"],
            "summary": "Mailchimp's check of the URL when the webhook is saved",
            "parameters": [SECRET],
            "responses": {
                "200": _text("`OK`"),
                "404": HOOK_ANSWERS["404"],
                "429": HOOK_ANSWERS["429"],
            },
        },
        "post": {
            "operationId": "mailchimpWebhook",
            "tags": ["webhooks"],
            "summary": "Mailchimp audience webhook",
            "description": (
                "Authenticated by the secret in the URL and, when `providers.mailchimp.signing_secret` is "
                'set, by `X-Mailchimp-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">` '
                "(5 minutes of tolerance). Register the webhook without the source *by the API*: those "
                "are syncd's own writes."
            ),
            "parameters": [
                SECRET,
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
                "200": ACKNOWLEDGED,
                **HOOK_ANSWERS,
                "401": _text("`X-Mailchimp-Signature` is missing or wrong. Nothing is stored."),
            },
        },
    },
}

# --- the contact's pages -------------------------------------------------------------------------

INVALID = _html("The link is forged, altered, for another page, or its contact is gone. Nothing changes.")
CONFIRM_PAGE = {
    "200": _html("The request: ready to confirm (a button), confirmed, or confirmed already."),
    "400": INVALID,
    "410": _html("Expired (the page offers a new link) or withdrawn (the contact left or bounced)."),
}
LANG_FORM = {"type": "object", "properties": {"lang": LANG["schema"]}}

PAGES: dict[str, Any] = {
    "/confirm/{token}": {
        "get": {
            "operationId": "confirmationPage",
            "tags": ["pages"],
            "summary": "Double opt-in: the page of a confirmation link (changes nothing)",
            "parameters": [TOKEN, LANG],
            "responses": CONFIRM_PAGE,
        },
        "post": {
            "operationId": "confirm",
            "tags": ["pages"],
            "summary": "Double opt-in: confirm; the proof (time, IP, user agent, wording) is recorded",
            "parameters": [TOKEN, LANG],
            "requestBody": _form(LANG_FORM),
            "responses": CONFIRM_PAGE,
        },
    },
    "/confirm/{token}/renew": {
        "post": {
            "operationId": "renewConfirmation",
            "tags": ["pages"],
            "summary": "Double opt-in: mail a new link in place of an expired one",
            "parameters": [TOKEN, LANG],
            "requestBody": _form(LANG_FORM),
            "responses": {
                **CONFIRM_PAGE,
                "200": _html("A new link was mailed; or the link is still valid, or confirmed already."),
                "410": _html("Withdrawn: the contact left the list or cannot receive mail."),
                "429": {
                    **_html(
                        "Enough links were mailed to this address lately (`double_opt_in.renewals`): "
                        "no mail goes out; the page says when to ask again."
                    ),
                    "headers": {**PAGE_HEADERS, **RETRY_AFTER},
                },
                "503": _html("The new link could not be mailed; the page asks to try again later."),
            },
        }
    },
    "/unsubscribe/{token}": {
        "get": {
            "operationId": "unsubscribePage",
            "tags": ["pages"],
            "summary": "One list's unsubscribe page: asks to confirm (changes nothing)",
            "parameters": [TOKEN, LANG],
            "responses": {
                "200": _html("The question, with a button and a link to the preferences"),
                "400": INVALID,
            },
        },
        "post": {
            "operationId": "unsubscribe",
            "tags": ["pages"],
            "summary": "Leave the one list of the link (the page's button, or RFC 8058 one-click)",
            "parameters": [TOKEN, LANG],
            "requestBody": _form(
                {
                    "type": "object",
                    "properties": {
                        "List-Unsubscribe": {"type": "string", "enum": ["One-Click"]},
                        "lang": LANG["schema"],
                    },
                }
            ),
            "responses": {
                "200": _html("Done: the contact left that list, and only that one"),
                "400": INVALID,
            },
        },
    },
    "/prefs/{token}": {
        "get": {
            "operationId": "preferencesPage",
            "tags": ["pages"],
            "summary": "The preference centre: the lists the contact is in",
            "parameters": [TOKEN, LANG],
            "responses": {"200": _html("The lists, each with a tick box"), "400": INVALID},
        },
        "post": {
            "operationId": "savePreferences",
            "tags": ["pages"],
            "summary": "Leave the lists shown and unticked, or everything (`all=1`)",
            "parameters": [TOKEN, LANG],
            "requestBody": _form(
                {
                    "type": "object",
                    "properties": {
                        "csrf": {"type": "string", "description": "From the page; valid 24 hours"},
                        "shown": {"type": "array", "items": {"type": "string"}, "description": "Lists shown"},
                        "keep": {"type": "array", "items": {"type": "string"}, "description": "Lists ticked"},
                        "all": {
                            "type": "string",
                            "enum": ["1"],
                            "description": "Unsubscribe from everything",
                        },
                        "lang": LANG["schema"],
                    },
                },
                {"shown": {"style": "form", "explode": True}, "keep": {"style": "form", "explode": True}},
            ),
            "responses": {
                "200": _html("Saved; the page shows the lists that remain"),
                "400": _html(
                    "A forged link (nothing changes), or a missing or stale `csrf`: the page is shown "
                    "again to be sent anew, nothing changed."
                ),
            },
        },
    },
}

# --- health, metrics, this document --------------------------------------------------------------

STATUS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "operationId": "health",
            "tags": ["status"],
            "summary": "The process answers (liveness)",
            "responses": {"200": _text("`ok`")},
        }
    },
    "/readyz": {
        "get": {
            "operationId": "readiness",
            "tags": ["status"],
            "summary": "The master base answers (readiness)",
            "responses": {
                "200": _json(
                    "Ready",
                    {"type": "object", "required": ["status"], "properties": {"status": {"enum": ["ready"]}}},
                ),
                "503": _json(
                    "The master base cannot be reached",
                    {
                        "type": "object",
                        "required": ["status", "database"],
                        "properties": {"status": {"enum": ["unavailable"]}, "database": {"type": "string"}},
                    },
                ),
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "tags": ["status"],
            "summary": "Prometheus metrics (text exposition format 0.0.4)",
            "responses": {
                "200": _text("Webhooks received/processed/failed, sync runs, provider calls, mails")
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "tags": ["status"],
            "summary": "This document",
            "responses": {"200": _json("OpenAPI 3.0", {"type": "object", "required": ["openapi", "paths"]})},
        }
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "syncd daemon",
        "version": VERSION,
        "description": (
            "What `syncd run` serves: the providers' webhooks (stored in the inbox before the 2xx, "
            "applied by the inbox job), the contact's pages (double opt-in confirmation, one-list "
            "unsubscribe, preference centre: plain HTML forms, every change a POST), health and metrics."
        ),
    },
    "tags": [
        {"name": "webhooks", "description": "Deliveries from Brevo and Mailchimp"},
        {"name": "pages", "description": "The pages the contact reaches from syncd's mails"},
        {"name": "status", "description": "For the operator and the orchestrator"},
    ],
    "paths": {**WEBHOOKS, **PAGES, **STATUS},
    "components": {
        "securitySchemes": {
            "brevoToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "`providers.brevo.webhook_token`, set on the Brevo webhook too",
            }
        }
    },
}


def document() -> dict[str, Any]:
    """The description (the same object each time: do not mutate it)."""
    return DOCUMENT
