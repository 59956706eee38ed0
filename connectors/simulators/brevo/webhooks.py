"""Brevo's marketing webhooks, as Brevo posts them.

https://developers.brevo.com/docs/marketing-webhooks
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx

CONTENT_TYPE = "application/json"
# The campaign events (unsubscribe, hard_bounce, soft_bounce, spam) name the campaign they came from.
SENDING_IP = "185.41.28.109"


def campaign_fields(camp_id: int = 1) -> dict[str, Any]:
    return {"camp_id": camp_id, "tag": "", "sending_ip": SENDING_IP}


def payload(event: str, email: str, contact_id: int, at: datetime | None = None, **fields: Any) -> bytes:
    """The body of one ``event`` ("unsubscribe", "hard_bounce", "list_addition", ...) about
    ``email``: the fields every event carries, then ``fields`` in their order."""
    at = at or datetime.now(UTC)
    body: dict[str, Any] = {
        "event": event,
        "email": email,
        "id": contact_id,
        "date_event": at.strftime("%Y-%m-%d %H:%M:%S"),  # account time zone in real traffic
        "ts_event": int(at.timestamp()),
        "ts_epoch": int(at.timestamp() * 1000),
    }
    body.update(fields)
    return json.dumps(body).encode()


def post(url: str, body: bytes, content_type: str = CONTENT_TYPE, token: str | None = None) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if token:
        # The webhook's bearer token, as Brevo sends it when the webhook has one.
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(url, content=body, headers=headers, timeout=10)
