"""The Mailchimp simulator: ``state`` (the account and Mailchimp's rules), ``views`` (how the API
renders them), ``api`` (the Marketing API 3.0), ``webhooks`` (what Mailchimp posts), ``simulator``
(the ASGI app, its faults and admin API)."""

from connectors.simulators.mailchimp.simulator import MailchimpSimulator, serve
from connectors.simulators.mailchimp.state import subscriber_hash

__all__ = ["MailchimpSimulator", "serve", "subscriber_hash"]
