"""The daemon's API as an OpenAPI 3.0 document, served at ``GET /openapi.json``.

Written by hand, as data: every route of ``syncd/web/app.py``, what it accepts, and every answer it
gives (status, content type, body where it has a shape). The test suite fuzzes the live app from
this document (tests/web/test_fuzz.py), so an answer that is not described here fails the build.
Each provider's webhook endpoint is described by its connector package (``connectors/*/openapi.py``),
from the parser's own tables, so the document never drifts from what the parsers accept.
"""

from __future__ import annotations

from typing import Any

from syncd.providers import PROVIDERS
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


def _webhook(operations: dict[str, Any]) -> dict[str, Any]:
    """A provider's path item: its operations, with what every provider's endpoint shares. A GET
    is the provider's check of the URL; a POST, a delivery."""
    item: dict[str, Any] = {}
    for method, operation in operations.items():
        shared = (
            {"200": ACKNOWLEDGED, **HOOK_ANSWERS}
            if method == "post"
            else {"404": HOOK_ANSWERS["404"], "429": HOOK_ANSWERS["429"]}
        )
        item[method] = {
            **operation,
            "tags": ["webhooks"],
            "parameters": [SECRET, *operation.get("parameters", [])],
            "responses": {**shared, **{code: _text(*text) for code, text in operation["responses"].items()}},
        }
    return item


WEBHOOKS: dict[str, Any] = {
    f"/hooks/{name}/{{secret}}": _webhook(provider.openapi.OPERATIONS) for name, provider in PROVIDERS.items()
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

NEXT_RUN_STATES = ("no_target", "no_schedule", "scheduled", "due", "waiting_for_daemon")
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
_TIME = {"type": "string", "format": "date-time", "nullable": True}
_RUN = {
    "type": "object",
    "nullable": True,
    "required": ["id", "list", "target", "started_at", "finished_at", "duration_s", "outcome", "error"],
    "properties": {
        "id": {"type": "integer"},
        "list": {"type": "string"},
        "target": {"type": "string", "nullable": True},
        "started_at": _TIME,
        "finished_at": _TIME,
        "duration_s": {"type": "number", "nullable": True},
        "outcome": {"type": "string", "enum": ["running", "ok", "failed", "interrupted"]},
        **{k: {"type": "integer"} for k in ("pulled", "adds", "updates", "removals", "flags")},
        "error": {"type": "string", "nullable": True, "description": "First line; addresses and keys masked"},
    },
}
STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["generated_at", "daemon", "lists", "double_opt_in", "inbox"],
    "properties": {
        "generated_at": _TIME,
        "daemon": {
            "type": "object",
            "required": ["up"],
            "properties": {
                "up": {"type": "boolean", "nullable": True, "description": "A daemon holds the leader's lock"}
            },
        },
        "lists": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "consent", "next_run", "targets", "open_flags", "pending_double_opt_in"],
                "properties": {
                    "name": {"type": "string"},
                    "title": {"type": "string", "description": "The list's public title (its name if none)"},
                    "consent": {"type": "string"},
                    "schedule": {"type": "string", "nullable": True},
                    "next_run": {
                        "type": "object",
                        "required": ["at", "state", "note"],
                        "properties": {
                            "at": _TIME,
                            "state": {
                                "type": "string",
                                "enum": [
                                    "no_target",
                                    "no_schedule",
                                    "scheduled",
                                    "due",
                                    "waiting_for_daemon",
                                ],
                            },
                            "note": {"type": "string"},
                        },
                    },
                    "targets": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["target", "last_run"],
                            "properties": {"target": {"type": "string"}, "last_run": _RUN},
                        },
                    },
                    "auto_enrolled": {"type": "boolean"},
                    "members": _COUNTS,
                    "pending_double_opt_in": {"type": "integer", "minimum": 0},
                    "open_flags": {
                        "type": "object",
                        "required": ["total", "by_rule"],
                        "properties": {"total": {"type": "integer", "minimum": 0}, "by_rule": _COUNTS},
                    },
                },
            },
        },
        "double_opt_in": {
            "type": "object",
            "required": ["pending", "links", "dead_requests"],
            "properties": {
                "pending": {"type": "integer", "minimum": 0},
                "links": _COUNTS,
                "dead_requests": {"type": "integer", "minimum": 0},
            },
        },
        "inbox": {
            "type": "object",
            "required": ["backlog", "dead_letters"],
            "properties": {
                "backlog": {"type": "integer", "minimum": 0},
                "oldest_waiting_at": _TIME,
                "dead_letters": {"type": "integer", "minimum": 0},
                "oldest_dead_at": _TIME,
                "by_state": _COUNTS,
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
    "/status": {
        "get": {
            "operationId": "status",
            "tags": ["status"],
            "summary": "Where the lists stand (as `syncd status --format json`): counts, no address",
            "responses": {
                "200": _json(
                    "Each list's last and next run, open flags, pending double opt-ins; the inbox",
                    {"$ref": "#/components/schemas/Status"},
                )
            },
        }
    },
    "/": {
        "get": {
            "operationId": "statusPage",
            "tags": ["status"],
            "summary": "The same status as a read-only page (French or English)",
            "parameters": [LANG],
            "responses": {"200": _html("The page")},
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

# --- the team console (syncd/web/console.py) ------------------------------------------------------

_SIGN_IN = {
    "description": "Not signed in (or the session ended): to the sign-in page",
    "headers": {"Location": {"description": "`/console/login`", "schema": {"type": "string"}}},
}
_REFUSED = _html("A POST without this session's `csrf_token`, or an action the user's role may not do")
EMAIL = {
    "name": "email",
    "in": "path",
    "required": True,
    "description": "The contact's address",
    "schema": {"type": "string", "pattern": "^[^/]+$"},
}
CSRF_FIELD = {"csrf_token": {"type": "string", "description": "The session's token, from any console page"}}


def _console_get(operation: str, summary: str, ok: dict[str, Any], *extra: str, **params: Any) -> dict:
    responses: dict[str, Any] = {"200": ok, "303": _SIGN_IN}
    for code in extra:
        responses[code] = _REFUSED if code == "403" else _html("Unknown contact")
    return {
        "get": {
            "operationId": operation,
            "tags": ["console"],
            "summary": summary,
            "parameters": [LANG, *params.get("parameters", [])],
            "responses": responses,
        }
    }


def _console_post(operation: str, summary: str, fields: dict[str, Any], path: list[Any]) -> dict:
    return {
        "post": {
            "operationId": operation,
            "tags": ["console"],
            "summary": summary,
            "parameters": [LANG, *path],
            "requestBody": _form({"type": "object", "properties": {**CSRF_FIELD, **fields}}),
            "responses": {
                "200": _html("Done (erasure: the confirmation page)"),
                "303": {"description": "Done: to the page that shows it, or not signed in: to sign in"},
                "400": _html("Refused by the rules (the reason is shown); nothing changed"),
                "403": _REFUSED,
                "404": _html("Unknown contact or flag"),
                "409": _html("The flag is no longer open, or cannot be resolved that way; nothing changed"),
            },
        }
    }


_TEXT = {"type": "string"}
_FLAG_ID = {"name": "flag_id", "in": "path", "required": True, "schema": {"type": "string"}}
_QUERY = [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in ("q", "field")]
_FILTERS = [
    {"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in ("list", "rule")
]
_CSV = {
    "description": "CSV, streamed",
    "headers": PAGE_HEADERS | {"Content-Disposition": {"schema": {"type": "string"}}},
    "content": {"text/csv": {"schema": {"type": "string"}}},
}
_CONTACT = "/console/contacts/{email}"
CONSOLE: dict[str, Any] = {
    "/console/login": {
        "get": {
            "operationId": "consoleSignInPage",
            "tags": ["console"],
            "summary": "The sign-in form (sets the form's CSRF cookie)",
            "parameters": [LANG],
            "responses": {"200": _html("The form"), "303": {"description": "Already signed in"}},
        },
        "post": {
            "operationId": "consoleSignIn",
            "tags": ["console"],
            "summary": "Sign in; limited per account (5 failures: 15 min) and per address",
            "parameters": [LANG],
            "requestBody": _form(
                {"type": "object", "properties": {**CSRF_FIELD, "email": _TEXT, "password": _TEXT}}
            ),
            "responses": {
                "303": {"description": "Signed in: to the lists"},
                "401": _html("Wrong address or password"),
                "403": _html("The form's CSRF token is missing or stale"),
                "429": _html("Too many attempts for this account or from this address"),
            },
        },
    },
    "/console/logout": _console_post("consoleSignOut", "Sign out", {}, []),
    "/console": _console_get("consoleHome", "The lists page", _html("The lists")),
    "/console/lists": _console_get("consoleLists", "Runs, members, flags, confirmations", _html("The lists")),
    "/console/flags": _console_get(
        "consoleFlags", "Open flags, filtered by list and rule", _html("The flags"), parameters=_FILTERS
    ),
    "/console/flags/{flag_id}/resolve": _console_post(
        "consoleResolveFlag",
        "Take off the list or accept",
        {"how": {"enum": ["remove", "accept"]}},
        [_FLAG_ID],
    ),
    "/console/contacts": _console_get(
        "consoleSearch", "Search contacts", _html("Results"), parameters=_QUERY
    ),
    _CONTACT: _console_get(
        "consoleContact", "A contact's record and timeline", _html("The record"), "404", parameters=[EMAIL]
    ),
    f"{_CONTACT}/note": _console_post(
        "consoleNote", "Add a note", {"channel": _TEXT, "summary": _TEXT}, [EMAIL]
    ),
    f"{_CONTACT}/edit": _console_post(
        "consoleEdit", "Edit fields and tags", {"tags_add": _TEXT, "tags_remove": _TEXT}, [EMAIL]
    ),
    f"{_CONTACT}/subscribe": _console_post(
        "consoleSubscribe", "Subscribe to a list", {"list": _TEXT, "evidence": _TEXT}, [EMAIL]
    ),
    f"{_CONTACT}/unsubscribe": _console_post(
        "consoleUnsubscribe", "Unsubscribe from a list", {"list": _TEXT, "reason": _TEXT}, [EMAIL]
    ),
    f"{_CONTACT}/forget": {
        **_console_get(
            "consoleForgetPage", "Confirm an erasure", _html("The form"), "403", parameters=[EMAIL]
        ),
        **_console_post("consoleForget", "Erase the contact (GDPR)", {"confirm": _TEXT}, [EMAIL]),
    },
    "/console/export/consent.csv": _console_get("consoleExportConsent", "The consent ledger", _CSV, "403"),
    "/console/export/contacts.csv": _console_get("consoleExportContacts", "Every contact", _CSV, "403"),
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
        {"name": "webhooks", "description": "Deliveries from the email providers"},
        {"name": "pages", "description": "The pages the contact reaches from syncd's mails"},
        {"name": "status", "description": "For the operator and the orchestrator"},
        {"name": "console", "description": "The team console: signed-in users, by role"},
    ],
    "paths": {**WEBHOOKS, **PAGES, **STATUS, **CONSOLE},
    "components": {
        "schemas": {"Status": STATUS_SCHEMA},
        "securitySchemes": {
            name: scheme
            for provider in PROVIDERS.values()
            for name, scheme in provider.openapi.SECURITY_SCHEMES.items()
        },
    },
}


def document() -> dict[str, Any]:
    """The description (the same object each time: do not mutate it)."""
    return DOCUMENT
