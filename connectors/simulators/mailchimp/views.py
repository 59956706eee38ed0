"""How the Mailchimp API renders an audience, a tag's segment and a member, and its partial
responses (``fields`` / ``exclude_fields``)."""

from __future__ import annotations

from typing import Any

from connectors.simulators.mailchimp.state import Audience, Member, iso


def list_json(a: Audience) -> dict:
    live = [m for m in a.members.values() if m.status != "archived"]
    return {
        "id": a.id,
        "web_id": abs(hash(a.id)) % 10**6,
        "name": a.name,
        "date_created": iso(a.created_at),
        "list_rating": 0,
        "email_type_option": False,
        "stats": {
            "member_count": sum(m.status == "subscribed" for m in live),
            "unsubscribe_count": sum(m.status == "unsubscribed" for m in live),
            "cleaned_count": sum(m.status == "cleaned" for m in live),
            "total_contacts": len(live),
        },
    }


def segment_json(a: Audience, seg_id: int) -> dict:
    name = a.segments[seg_id]
    return {
        "id": seg_id,
        "name": name,
        "type": "static",
        "list_id": a.id,
        "member_count": sum(name in m.tags for m in a.members.values() if m.status != "archived"),
        "created_at": iso(a.created_at),
        "updated_at": iso(a.created_at),
    }


def webhook_json(a: Audience, w: dict) -> dict:
    return {
        "id": w["id"],
        "url": w["url"],
        "events": dict(w["events"]),
        "sources": dict(w["sources"]),
        "list_id": a.id,
        "_links": [],
    }


def member_json(a: Audience, m: Member, brief: bool = False) -> dict:
    h = m.id
    if brief:
        return {"id": h, "email_address": m.email, "status": m.status}
    tags = [{"id": i, "name": n} for i, n in a.segments.items() if n in m.tags]
    body = {
        "id": h,
        "email_address": m.email,
        "unique_email_id": h[:10],
        "contact_id": m.contact_id,
        "email_type": "html",
        "status": m.status,
        "merge_fields": dict(m.merge_fields),
        "ip_signup": m.ip_signup,
        "timestamp_signup": iso(m.timestamp_signup),
        "ip_opt": m.ip_opt,
        "timestamp_opt": iso(m.timestamp_opt),
        "last_changed": iso(m.last_changed),
        "language": "",
        "vip": False,
        "list_id": a.id,
        "tags_count": len(tags),
        "tags": tags,
    }
    if m.unsubscribe_reason and m.status == "unsubscribed":
        body["unsubscribe_reason"] = m.unsubscribe_reason
    # The description types both timestamps as date-time: an unknown one is left out, not "".
    for name in ("timestamp_signup", "timestamp_opt"):
        if not body[name]:
            del body[name]
    return body


def select_fields(result: dict, fields: str | None, exclude: str | None) -> dict:
    """``fields`` / ``exclude_fields`` with dot notation into sub-objects and lists of objects.

    https://mailchimp.com/developer/marketing/docs/methods-parameters/#partial-responses
    """
    if fields:
        result = _keep(result, [f.strip().split(".") for f in fields.split(",") if f.strip()])
    if exclude:
        for path in (f.strip().split(".") for f in exclude.split(",") if f.strip()):
            _drop(result, path)
    return result


def _keep(obj: Any, paths: list[list[str]]) -> Any:
    if isinstance(obj, list):
        return [_keep(o, paths) for o in obj]
    if not isinstance(obj, dict) or any(not p for p in paths):
        return obj
    out = {}
    for key in obj:
        sub = [p[1:] for p in paths if p[0] == key]
        if sub:
            out[key] = obj[key] if any(not s for s in sub) else _keep(obj[key], sub)
    return out


def _drop(obj: Any, path: list[str]) -> None:
    if isinstance(obj, list):
        for o in obj:
            _drop(o, path)
    elif isinstance(obj, dict) and path[0] in obj:
        if len(path) == 1:
            del obj[path[0]]
        else:
            _drop(obj[path[0]], path[1:])
