"""Double opt-in: signed links, confirmation mails, reminders, expiry, and the consent proof.

``links`` signs and checks the tokens (confirmation, unsubscribe, preference centre); ``mail``
renders a confirmation mail and sends it (SMTP or Brevo); ``requests`` issues links to pending
requests, reminds and expires them; ``delivery`` records what became of each mail (retries, dead
requests); ``confirmation`` accepts a confirmation with its proof, or renews an expired link.
"""

from syncd.doi.confirmation import Request, confirm, look_up, renew
from syncd.doi.delivery import DeadRequest, dead_requests, delivery_counts, requeue
from syncd.doi.links import (
    DoiNotConfigured,
    contact_of,
    prefs_token,
    sign,
    token_hash,
    unsign,
    unsubscribe_token,
    url,
)
from syncd.doi.mail import (
    TEMPLATES,
    Mail,
    Send,
    Undeliverable,
    brevo_transport,
    transport,
)
from syncd.doi.requests import expire, remind, send_pending

__all__ = [
    "TEMPLATES",
    "DeadRequest",
    "DoiNotConfigured",
    "Mail",
    "Request",
    "Send",
    "Undeliverable",
    "brevo_transport",
    "confirm",
    "contact_of",
    "dead_requests",
    "delivery_counts",
    "expire",
    "look_up",
    "prefs_token",
    "remind",
    "renew",
    "requeue",
    "send_pending",
    "sign",
    "token_hash",
    "transport",
    "unsign",
    "unsubscribe_token",
    "url",
]
