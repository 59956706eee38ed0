"""Notes the team keeps about a contact: a call, a meeting at a fair, a mail exchanged.

A note is personal data written by people, so it lives beside the contact (``Note``), is exported
and erased with it (``syncd.contacts.gdpr``), and never enters the audit trail or the logs: the
trail records that a note was added, by whom and on which channel, not what it says.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from syncd.contacts import gdpr
from syncd.db import session_scope
from syncd.log import get_logger
from syncd.models import NOTE_MAX_CHARS, AuditLog, Contact, Note, NoteChannel, utcnow

log = get_logger(__name__)

CHANNELS = tuple(c.value for c in NoteChannel)
NOTE_ADDED = "contact.note_added"  # AuditLog action


class InvalidNote(ValueError):
    """A note that cannot be kept as given (unknown channel, empty or too long text, no author)."""


class UnknownContact(LookupError):
    """No contact holds the address (never known, or erased at the contact's request)."""


def add_note(
    engine: Engine, email: str, channel: str, summary: str, author: str, *, at: datetime | None = None
) -> Note:
    """Keep a note about the contact of ``email``, audited as ``contact.note_added`` (channel only).

    Raises ``InvalidNote`` before anything is read or written when the input is wrong, and
    ``UnknownContact`` when no contact holds the address. ``at`` is when the exchange happened
    (now by default)."""
    channel, text, author = _valid(channel, summary, author)
    with session_scope(engine) as session:
        contact = _contact(session, email)
        note = Note(contact_id=contact.id, at=at or utcnow(), channel=channel, summary=text, author=author)
        session.add(note)
        session.add(
            AuditLog(
                at=note.at,
                actor=author,
                action=NOTE_ADDED,
                contact_id=contact.id,
                detail={"channel": channel},
            )
        )
    log.info("contact.note_added", contact_id=note.contact_id, channel=channel, actor=author)
    return note


def _valid(channel: str, summary: str, author: str) -> tuple[str, str, str]:
    name = (channel or "").strip().lower()
    if name not in CHANNELS:
        raise InvalidNote(f"channel {channel!r} is not one of {', '.join(CHANNELS)}")
    text = (summary or "").strip()
    if not text:
        raise InvalidNote("the note's text is empty: say what was said or agreed")
    if len(text) > NOTE_MAX_CHARS:
        raise InvalidNote(f"the note's text has {len(text)} characters; at most {NOTE_MAX_CHARS}")
    who = (author or "").strip()
    if not who or len(who) > 100:
        raise InvalidNote("a note needs its author (at most 100 characters), e.g. cli:<user>")
    return name, text, who


def _contact(session: Session, email: str) -> Contact:
    contact = gdpr.find_contact(session, email)
    if contact is None:
        if gdpr.is_forgotten(session, email):
            raise UnknownContact("this address was erased at the contact's request")
        raise UnknownContact(f"no contact with the address {gdpr.lookup_email(email)}")
    return contact
