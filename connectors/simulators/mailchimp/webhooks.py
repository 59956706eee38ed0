"""Mailchimp's audience webhooks, as Mailchimp posts them: form-encoded, ``data[...]`` keys.

https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from connectors.simulators.mailchimp.state import now, subscriber_hash

CONTENT_TYPE = "application/x-www-form-urlencoded"
USER_AGENT = "MailChimp.com"
SOME_LIST = "a1b2c3d4e5"  # the list id a payload names when not told one
# https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/#webhook-events
TYPES = ("subscribe", "unsubscribe", "profile", "upemail", "cleaned", "campaign")
# What an event's data says when not told otherwise: an unsubscribe is the member's own
# ("unsub", not "delete"; "manual", not "abuse"), a cleaned address bounced hard.
DEFAULT_DATA = {"unsubscribe": {"action": "unsub", "reason": "manual"}, "cleaned": {"reason": "hard"}}


def payload(
    type: str,
    email: str,
    list_id: str = SOME_LIST,
    fired_at: datetime | None = None,
    merges: dict[str, str] | None = None,
    **extra: Any,
) -> bytes:
    """The body of one webhook of ``type`` about ``email``; ``extra`` fills or adds ``data[...]``
    fields (``action``, ``reason``, ``new_email``, ``campaign_id``, ``ip_opt``, ``subject``...)."""
    if type not in TYPES:
        raise ValueError(f"Mailchimp sends no webhook of type {type!r}")
    data = dict(DEFAULT_DATA.get(type, {}))
    for key in ("action", "reason"):
        if key in extra:
            data[key] = extra.pop(key)
    fired = fired_at or now()
    merges = {"EMAIL": email, **(merges or {})}
    pairs: list[tuple[str, str]] = [("type", type), ("fired_at", fired.strftime("%Y-%m-%d %H:%M:%S"))]
    if type == "upemail":
        new_email = extra.pop("new_email")
        pairs += [
            ("data[list_id]", list_id),
            ("data[new_id]", subscriber_hash(new_email)),
            ("data[new_email]", new_email),
            ("data[old_email]", email),
        ]
    elif type == "cleaned":
        pairs += [
            ("data[list_id]", list_id),
            ("data[campaign_id]", extra.pop("campaign_id", "4fjk2ma9xd")),
            ("data[reason]", data.get("reason", "hard")),
            ("data[email]", email),
        ]
    elif type == "campaign":
        pairs += [
            ("data[id]", "5aa2102003"),
            ("data[subject]", extra.pop("subject", "Campaign")),
            ("data[status]", "sent"),
            ("data[reason]", ""),
            ("data[list_id]", list_id),
        ]
    else:
        pairs += [(f"data[{k}]", v) for k, v in data.items()]
        pairs += [
            ("data[id]", subscriber_hash(email)[:10]),
            ("data[list_id]", list_id),
            ("data[email]", email),
            ("data[email_type]", "html"),
        ]
        pairs += [(f"data[merges][{k}]", v) for k, v in merges.items()]
        pairs += [("data[ip_opt]", extra.pop("ip_opt", "10.20.10.30"))]
        if type == "subscribe":
            pairs += [("data[ip_signup]", extra.pop("ip_signup", "10.20.10.30"))]
        if type == "unsubscribe":
            pairs += [("data[campaign_id]", extra.pop("campaign_id", "cb398d21d2"))]
    pairs += [(f"data[{k}]", str(v)) for k, v in extra.items()]
    return urlencode(pairs).encode()


def sign(body: bytes, secret: str, t: int | None = None) -> str:
    """The ``X-Mailchimp-Signature`` value: ``t=<unix time>,v1=<HMAC-SHA256 of "t." + body>``."""
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def post(
    url: str, body: bytes, content_type: str = CONTENT_TYPE, secret: str | None = None
) -> httpx.Response:
    headers = {"Content-Type": content_type, "User-Agent": USER_AGENT}
    if secret:
        headers["X-Mailchimp-Signature"] = sign(body, secret)
    return httpx.post(url, content=body, headers=headers, timeout=10)


def check_url(url: str) -> httpx.Response:
    # A GET validates the URL: https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/
    return httpx.get(url, headers={"User-Agent": USER_AGENT}, timeout=10)
