"""The opt-in proof a provider holds (Mailchimp's signup and opt-in IP and time), kept beside the
consent history as ``provider_evidence``: proof to show, not consent by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from sqlmodel import Session, select

from syncd.models import Consent, ConsentAction, Contact


def record_provider_evidence(
    session: Session, contact: Contact, list_name: str | None, evidence: Mapping[str, str], source: str
) -> Consent | None:
    """Keep the opt-in proof a provider holds (Mailchimp's ip_signup, timestamp_signup, ip_opt,
    timestamp_opt) as a ``provider_evidence`` Consent row. Not consent by itself: proof to show.

    Returns the new row, or None when the evidence is empty or the same was already recorded.
    """
    kept = {k: str(v) for k, v in evidence.items() if v not in (None, "")}
    if not kept:
        return None
    assert contact.id is not None
    rows = session.exec(
        select(Consent).where(
            Consent.contact_id == contact.id,
            Consent.action == ConsentAction.PROVIDER_EVIDENCE,
        )
    ).all()
    if any(r.list_name == list_name and dict(r.evidence or {}) == kept for r in rows):
        return None
    at = _parse_time(kept.get("timestamp_opt")) or _parse_time(kept.get("timestamp_signup"))
    row = Consent(
        contact_id=contact.id,
        list_name=list_name,
        action=ConsentAction.PROVIDER_EVIDENCE,
        ip=(kept.get("ip_opt") or kept.get("ip_signup") or None),
        source=source[:200],
        evidence=kept,
    )
    if at is not None:
        row.at = at
    session.add(row)
    return row


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
