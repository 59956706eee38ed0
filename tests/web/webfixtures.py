"""Helpers of the web tests: a config naming both providers and three lists, and contacts in it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import Session

from syncd.config import Config, ListConfig
from syncd.membership import join_list
from syncd.models import Contact, utcnow

BREVO_SECRET = "brevo-hook-secret"
BREVO_TOKEN = "brevo-bearer-token"
BREVO_AUTH = {"Authorization": f"Bearer {BREVO_TOKEN}"}
MAILCHIMP_SECRET = "mailchimp-hook-secret"
AUDIENCE = "a1b2c3d4e5"


def make_config(**overrides: Any) -> Config:
    data: dict[str, Any] = {
        "version": 1,
        "providers": {
            "brevo": {
                "api_key": "sim-key",
                "base_url": "http://127.0.0.1:9/v3",
                "webhook_secret": BREVO_SECRET,
                "webhook_token": BREVO_TOKEN,
            },
            "mailchimp": {
                "api_key": "sim-key-us1",
                "base_url": "http://127.0.0.1:9/3.0",
                "webhook_secret": MAILCHIMP_SECRET,
            },
        },
        "double_opt_in": {"secret": "doi-signing-secret", "public_url": "http://127.0.0.1:9"},
        "lists": {
            "news": {
                "title": "Newsletter",
                "description": "Internal: the monthly send, owner Marc",
                "consent": "single_opt_in",
                "targets": [{"brevo": {"list_id": 12}}],
            },
            "offers": {
                "title": "Offers",
                "consent": "single_opt_in",
                "targets": [{"brevo": {"list_id": 13}}],
            },
            "club": {
                "title": "Club",
                "consent": "double_opt_in",
                "targets": [{"mailchimp": {"audience": AUDIENCE, "tag": "club"}}],
            },
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = _merge(data[key], value)
        else:
            data[key] = value
    return Config.model_validate(data)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def add_contact(engine, email: str, lists: dict[str, str] | None = None, **fields: Any) -> int:
    """A contact with memberships joined an hour ago (``{"news": "single_opt_in"}``)."""
    an_hour_ago = utcnow() - timedelta(hours=1)
    with Session(engine) as s:
        c = Contact(email=email, updated_at=an_hour_ago, **fields)
        s.add(c)
        s.flush()
        config = make_config()
        for name, consent in (lists or {}).items():
            cfg = config.lists.get(name) or ListConfig(consent="single_opt_in")
            join_list(s, c, name, cfg, consent=consent, source="test", at=an_hour_ago)
        s.commit()
        return c.id
