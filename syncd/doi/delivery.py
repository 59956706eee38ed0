"""What became of a confirmation mail: sent, failed (retried after a back-off) or dead (given up),
and the dead requests an operator can list and requeue (``syncd doi status|requeue``)."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncd.config import Config
from syncd.doi.mail import Mail, Send, Undeliverable
from syncd.log import get_logger
from syncd.membership import membership
from syncd.metrics import DOI_SENT
from syncd.models import Consent, Contact, DoiToken, Membership, MembershipStatus, utcnow

log = get_logger(__name__)

MAX_BACKOFF = timedelta(days=1)  # between two attempts at a confirmation mail


def _failed_sends(session: Session, contact_id: int, list_name: str, since: datetime) -> int:
    """Confirmation mails (reminders aside) that did not go out since the membership began."""
    return session.exec(
        select(sa.func.count()).where(
            DoiToken.contact_id == contact_id,
            DoiToken.list_name == list_name,
            DoiToken.created_at >= since,
            DoiToken.delivery != "sent",
            DoiToken.reminded_at.is_(None),  # type: ignore[union-attr]
        )
    ).one()


def deliver(
    engine: Engine, config: Config, send: Send, mail: Mail, token_row_hash: str, kind: str, now: datetime
) -> bool:
    """Send a mail whose token is already committed; if sending fails, see ``_not_sent``."""
    try:
        send(mail)
    except Exception as exc:  # noqa: BLE001 — any transport failure: recorded, retried or given up
        _not_sent(engine, config, token_row_hash, kind, exc, now)
        return False
    DOI_SENT.labels(kind).inc()
    return True


def _failure_reason(exc: Exception) -> str:
    """What went wrong, without the address (smtplib puts it in some of its messages)."""
    if isinstance(exc, Undeliverable):
        return str(exc)
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        code, text = next(iter(exc.recipients.values()))
        return f"SMTPRecipientsRefused: {code} {text.decode(errors='replace')}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__}: {exc.smtp_code} {exc.smtp_error.decode(errors='replace')}"
    return f"{type(exc).__name__}: {exc}"


def _not_sent(engine: Engine, config: Config, hashed: str, kind: str, exc: Exception, now: datetime) -> None:
    """The link's mail did not go out: its request proof goes, its token row stays as the record of
    the attempt. The request is mailed again (with a new link) after a back-off that doubles, until
    ``double_opt_in.retries.attempts`` failures or a permanent refusal: then it is dead, which
    ``syncd doi status`` lists and the membership's reason says. A failed reminder is not sent
    again: the first link still works."""
    retries = config.double_opt_in.retries
    permanent = isinstance(exc, Undeliverable)
    reason = _failure_reason(exc)
    with Session(engine) as session:
        session.execute(sa.delete(Consent).where(Consent.token_hash == hashed))
        row = session.exec(select(DoiToken).where(DoiToken.token_hash == hashed)).first()
        if row is None:
            session.commit()
            return
        current = membership(session, row.contact_id, row.list_name)
        since = current.since if current is not None else row.created_at
        attempt = 1 + _failed_sends(session, row.contact_id, row.list_name, since)
        row.error = reason[:500]
        if permanent or (kind != "reminder" and attempt >= retries.attempts):
            row.delivery = "dead"
            if current is not None and current.status == MembershipStatus.PENDING:
                current.reason = f"confirmation undeliverable: {reason}"[:200]
                session.add(current)
        else:
            row.delivery = "failed"
            if kind != "reminder":
                row.retry_at = now + min(retries.first_after * 2 ** min(attempt - 1, 20), MAX_BACKOFF)
        session.add(row)
        session.commit()
        fields = {"kind": kind, "contact_id": row.contact_id, "list": row.list_name, "attempt": attempt}
        if row.delivery == "dead":
            log.error("doi.undeliverable", **fields, reason=reason[:300])
        else:
            log.warning("doi.send_failed", **fields, retry_at=row.retry_at, error=reason[:300])


@dataclass(frozen=True)
class DeadRequest:
    token_id: int
    contact_id: int
    email: str
    list_name: str
    attempts: int
    last_at: datetime
    error: str


def delivery_counts(engine: Engine) -> dict[str, int]:
    """Links per delivery state (sent · failed · dead)."""
    with Session(engine) as session:
        rows = session.exec(select(DoiToken.delivery, sa.func.count()).group_by(DoiToken.delivery)).all()
    return {state: n for state, n in rows}


def dead_requests(engine: Engine) -> list[DeadRequest]:
    """Pending requests syncd gave up mailing, with the last error and the attempts made."""
    with Session(engine) as session:
        rows = session.exec(
            select(DoiToken, Contact.email, Membership.since)
            .join(Contact, Contact.id == DoiToken.contact_id)
            .join(
                Membership,
                sa.and_(
                    Membership.contact_id == DoiToken.contact_id, Membership.list_name == DoiToken.list_name
                ),
            )
            .where(DoiToken.delivery == "dead", Membership.status == MembershipStatus.PENDING)
            .where(DoiToken.created_at >= Membership.since)
            .order_by(DoiToken.id)
        ).all()
        out = []
        for row, address, since in rows:
            attempts = _failed_sends(session, row.contact_id, row.list_name, since)
            assert row.id is not None
            out.append(
                DeadRequest(
                    row.id, row.contact_id, address, row.list_name, attempts, row.created_at, row.error or ""
                )
            )
    return out


def requeue(engine: Engine, token_ids: list[int] | None = None, *, now: datetime | None = None) -> int:
    """Give dead requests (all, or those of the given links) one more attempt at the next run."""
    now = now or utcnow()
    dead = [d for d in dead_requests(engine) if token_ids is None or d.token_id in token_ids]
    with Session(engine) as session:
        for d in dead:
            session.execute(
                sa.update(DoiToken).where(DoiToken.id == d.token_id).values(delivery="failed", retry_at=now)
            )
            current = membership(session, d.contact_id, d.list_name)
            if current is not None:
                current.reason = "confirmation requeued"
                session.add(current)
        session.commit()
    for d in dead:
        log.info("doi.requeued", contact_id=d.contact_id, list=d.list_name)
    return len(dead)
