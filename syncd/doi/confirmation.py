"""Following a confirmation link: what it points at, accepting the confirmation with its proof,
and a new link asked for from an expired one.

The link opens a page with a button: confirming takes a POST, because mail scanners pre-fetch every
GET in a message, and a GET that confirmed would let them consent on the contact's behalf.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncd.config import Config
from syncd.doi.links import token_hash, unsign
from syncd.doi.mail import Send
from syncd.doi.requests import UNREACHABLE, send_link
from syncd.log import get_logger
from syncd.membership import join_list, membership
from syncd.metrics import DOI_CONFIRMED
from syncd.models import Consent, ConsentAction, Contact, DoiToken, MembershipStatus, utcnow
from syncd.netaddr import parse_ip

log = get_logger(__name__)


@dataclass
class Request:
    """What a confirmation link points at, and where the request stands."""

    state: (
        str  # invalid | ready | confirmed | already | expired | withdrawn (renewal: sent | failed | limited)
    )
    list_name: str | None = None
    contact: Contact | None = None
    token: DoiToken | None = None
    retry_at: datetime | None = None  # limited: when a new link may be asked for


def look_up(session: Session, config: Config, token: str, *, now: datetime, lock: bool = False) -> Request:
    if unsign(config, "confirm", token) is None:
        return Request("invalid")
    query = select(DoiToken).where(DoiToken.token_hash == token_hash(token))
    if lock:
        query = query.with_for_update()
    row = session.exec(query).first()
    contact = session.get(Contact, row.contact_id) if row else None
    if row is None or contact is None or row.delivery != "sent":
        return Request("invalid")
    current = membership(session, row.contact_id, row.list_name)
    found = Request("ready", row.list_name, contact, row)
    if row.used_at is not None or (current is not None and current.status == MembershipStatus.SUBSCRIBED):
        found.state = "already"
    elif row.expires_at <= now:
        found.state = "expired"
    elif current is None or current.status != MembershipStatus.PENDING or contact.email_status in UNREACHABLE:
        found.state = "withdrawn"
    return found


def confirm(
    engine: Engine,
    config: Config,
    token: str,
    *,
    ip: str | None,
    user_agent: str | None,
    now: datetime | None = None,
) -> Request:
    """Confirm a request: the proof (time, IP, user agent, wording, token hash) goes in the ledger.

    ``ip`` is kept only if it parses as an address (a proxy's header is not trusted to be one)."""
    now = now or utcnow()
    address = parse_ip(ip)
    with Session(engine, expire_on_commit=False) as session:
        found = look_up(session, config, token, now=now, lock=True)
        if found.state != "ready":
            return found
        row, contact = found.token, found.contact
        assert row is not None and contact is not None and row.id is not None
        # Single use even under a race: only the request that flips used_at from NULL goes on.
        flipped = session.exec(  # type: ignore[call-overload]
            sa.update(DoiToken).where(DoiToken.id == row.id, DoiToken.used_at.is_(None)).values(used_at=now)  # type: ignore[union-attr]
        )
        if flipped.rowcount != 1:
            session.rollback()
            found.state = "already"
            return found
        evidence = {
            "token_hash": row.token_hash,
            "wording": row.wording,
            "requested_at": row.created_at.isoformat(),
        }
        join_list(
            session,
            contact,
            row.list_name,
            config.list(row.list_name),
            consent="double_opt_in",
            source="doi:confirm",
            at=now,
            ip=str(address) if address else None,
            user_agent=(user_agent or "")[:500] or None,
            evidence=evidence,
        )
        for proof in session.new:
            if isinstance(proof, Consent) and proof.action == ConsentAction.DOI_CONFIRMED:
                proof.token_hash, proof.wording = row.token_hash, row.wording
        session.commit()
    DOI_CONFIRMED.inc()
    found.state = "confirmed"
    return found


def renew(engine: Engine, config: Config, token: str, send: Send, *, now: datetime | None = None) -> Request:
    """The contact asks, from an expired link, for a new one: a new request, mailed at once, unless
    the address already got ``double_opt_in.renewals.max`` links within ``renewals.per``
    (state ``limited``, with ``retry_at``)."""
    now = now or utcnow()
    limit = config.double_opt_in.renewals
    with Session(engine, expire_on_commit=False) as session:
        found = look_up(session, config, token, now=now)
        if found.state != "expired":
            return found
        contact, list_name = found.contact, found.list_name
        assert contact is not None and list_name is not None
        if contact.email_status in UNREACHABLE or list_name not in config.lists:
            return Request("withdrawn", list_name, contact)
        # Renewals of one address wait for each other here (a row lock on PostgreSQL, the write
        # lock on SQLite), so that the count below is never read twice before either inserts.
        session.execute(sa.update(Contact).where(Contact.id == contact.id).values(id=Contact.id))
        recent = session.exec(
            select(DoiToken.created_at)
            .where(DoiToken.contact_id == contact.id, DoiToken.created_at > now - limit.per)
            .order_by(DoiToken.created_at)
        ).all()
        if len(recent) >= limit.max:
            session.rollback()
            retry_at = recent[len(recent) - limit.max] + limit.per
            log.info("doi.renewal_limited", contact_id=contact.id, recent=len(recent), retry_at=retry_at)
            return Request("limited", list_name, contact, retry_at=retry_at)
        join_list(
            session,
            contact,
            list_name,
            config.list(list_name),
            consent="single_opt_in",
            source="doi:new-link",
            at=now,
        )
        sent = send_link(engine, session, config, send, contact, list_name, now=now)
    return Request("sent" if sent else "failed", list_name, contact)
