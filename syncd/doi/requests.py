"""Confirmation requests: mailing each pending request its link, one reminder, and expiry.

A contact joining a ``consent: double_opt_in`` list is ``pending`` (``membership.join_list``).
``send_pending`` mails each pending request a single-use link to ``/confirm/{token}``; only the
token's SHA-256 is stored (``DoiToken``), so a copy of the base cannot confirm anyone.

``remind`` mails a second link once ``remind_after`` has passed; ``expire`` closes requests not
confirmed within ``expires_after``: the membership goes to ``unsubscribed`` with reason
"doi expired" (never pushed, since it was never confirmed; a new request starts afresh).
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncd.config import Config
from syncd.doi.delivery import deliver
from syncd.doi.links import sign, token_hash
from syncd.doi.mail import Mail, Send, render_request
from syncd.membership import leave_list, membership
from syncd.metrics import DOI_EXPIRED
from syncd.models import (
    Consent,
    ConsentAction,
    Contact,
    DoiToken,
    EmailStatus,
    Membership,
    MembershipStatus,
    utcnow,
)

UNREACHABLE = (EmailStatus.BOUNCED, EmailStatus.COMPLAINED, EmailStatus.INVALID)


def send_link(
    engine: Engine,
    session: Session,
    config: Config,
    send: Send,
    contact: Contact,
    list_name: str,
    *,
    now: datetime,
    reminder: bool = False,
    expires_at: datetime | None = None,
) -> bool:
    """Issue a new link for the request (valid ``expires_after``, unless ``expires_at`` says),
    commit it with the rest of ``session``'s work, then mail it. Returns whether the mail went out
    (a failure is recorded, and retried or given up: see ``deliver``)."""
    expires_at = expires_at or now + config.double_opt_in.expires_after
    mail, hashed = _issue(
        session, config, contact, list_name, now=now, expires_at=expires_at, reminder=reminder
    )
    session.commit()
    return deliver(engine, config, send, mail, hashed, "reminder" if reminder else "confirmation", now)


def _issue(
    session: Session,
    config: Config,
    contact: Contact,
    list_name: str,
    *,
    now: datetime,
    expires_at: datetime,
    reminder: bool,
) -> tuple[Mail, str]:
    token = sign(config, "confirm", secrets.token_urlsafe(18))
    mail = render_request(config, contact, list_name, token, expires_at=expires_at, reminder=reminder)
    assert contact.id is not None
    session.add(
        DoiToken(
            contact_id=contact.id,
            list_name=list_name,
            token_hash=token_hash(token),
            wording=mail.wording,
            created_at=now,
            expires_at=expires_at,
            reminded_at=now if reminder else None,
        )
    )
    session.add(
        Consent(
            contact_id=contact.id,
            list_name=list_name,
            action=ConsentAction.DOI_REQUESTED,
            at=now,
            source="doi:reminder" if reminder else "doi:request",
            wording=mail.wording,
            token_hash=token_hash(token),
        )
    )
    return mail, token_hash(token)


def _doi_lists(config: Config) -> list[str]:
    return [name for name, lst in config.lists.items() if lst.consent == "double_opt_in"]


def send_pending(
    engine: Engine,
    config: Config,
    send: Send,
    *,
    now: datetime | None = None,
    limit: int = 1000,
    lists: Collection[str] | None = None,
) -> int:
    """Mail a confirmation link to each pending request that has none yet (of ``lists`` only, when
    given). Returns mails sent."""
    names = [n for n in _doi_lists(config) if lists is None or n in lists]
    if not names:
        return 0
    now = now or utcnow()
    # A link mailed (or given up) since the request, or a failed one whose back-off is not over.
    newer_token = (
        select(DoiToken.id)
        .where(DoiToken.contact_id == Membership.contact_id, DoiToken.list_name == Membership.list_name)
        .where(DoiToken.created_at >= Membership.since)
        .where(sa.or_(DoiToken.delivery != "failed", DoiToken.retry_at > now))
    )
    with Session(engine) as session:
        todo = session.exec(
            select(Membership.contact_id, Membership.list_name)
            .join(Contact, Contact.id == Membership.contact_id)
            .where(Membership.status == MembershipStatus.PENDING, Membership.list_name.in_(names))  # type: ignore[attr-defined]
            .where(Contact.email_status.not_in(UNREACHABLE))  # type: ignore[attr-defined]
            .where(~newer_token.exists())
            .order_by(Membership.id)
            .limit(limit)
        ).all()
    sent = 0
    for contact_id, list_name in todo:
        with Session(engine, expire_on_commit=False) as session:
            contact = session.get(Contact, contact_id)
            assert contact is not None
            sent += send_link(engine, session, config, send, contact, list_name, now=now)
    return sent


def remind(
    engine: Engine, config: Config, send: Send, *, now: datetime | None = None, limit: int = 1000
) -> int:
    """Mail one reminder, with a fresh link, to requests unconfirmed after ``remind_after``."""
    now = now or utcnow()
    with Session(engine) as session:
        due = session.exec(
            select(DoiToken.id)
            .join(
                Membership,
                sa.and_(
                    Membership.contact_id == DoiToken.contact_id, Membership.list_name == DoiToken.list_name
                ),
            )
            .where(Membership.status == MembershipStatus.PENDING)
            .where(DoiToken.used_at.is_(None), DoiToken.reminded_at.is_(None))  # type: ignore[union-attr]
            .where(DoiToken.delivery == "sent")
            .where(DoiToken.expires_at > now, DoiToken.created_at <= now - config.double_opt_in.remind_after)
            .order_by(DoiToken.id)
            .limit(limit)
        ).all()
    sent = 0
    for token_id in due:
        with Session(engine, expire_on_commit=False) as session:
            original = session.get(DoiToken, token_id)
            contact = session.get(Contact, original.contact_id) if original else None
            if original is None or contact is None or contact.email_status in UNREACHABLE:
                continue
            original.reminded_at = now
            session.add(original)
            # The reminder's link lives as long as the first one: a reminder never extends a request.
            sent += send_link(
                engine,
                session,
                config,
                send,
                contact,
                original.list_name,
                now=now,
                expires_at=original.expires_at,
                reminder=True,
            )
    return sent


def expire(engine: Engine, config: Config, *, now: datetime | None = None) -> int:
    """Close requests whose every link has expired unused: unsubscribed, reason "doi expired"."""
    now = now or utcnow()
    live = select(DoiToken.id).where(
        DoiToken.contact_id == Membership.contact_id,
        DoiToken.list_name == Membership.list_name,
        DoiToken.used_at.is_(None),
        DoiToken.expires_at > now,  # type: ignore[union-attr]
        DoiToken.delivery == "sent",
    )
    lapsed = select(DoiToken.id).where(
        DoiToken.contact_id == Membership.contact_id,
        DoiToken.list_name == Membership.list_name,
        DoiToken.created_at >= Membership.since,
        DoiToken.expires_at <= now,
        DoiToken.delivery == "sent",  # a request whose mails never went out is not "expired"
    )
    with Session(engine) as session:
        rows = session.exec(
            select(Membership.contact_id, Membership.list_name).where(
                Membership.status == MembershipStatus.PENDING, lapsed.exists(), ~live.exists()
            )
        ).all()
    for contact_id, list_name in rows:
        with Session(engine) as session:
            contact = session.get(Contact, contact_id)
            current = membership(session, contact_id, list_name)
            if contact is None or current is None or current.status != MembershipStatus.PENDING:
                continue
            leave_list(session, contact, list_name, reason="doi expired", source="doi:expiry", at=now)
            session.commit()
        DOI_EXPIRED.inc()
    return len(rows)
