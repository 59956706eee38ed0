"""Mailchimp: the connector (``client``) and its vocabulary, tags (static segments) and webhooks."""

from connectors.mailchimp.client import MailchimpConnector
from connectors.mailchimp.vocabulary import TRAITS

__all__ = ["TRAITS", "MailchimpConnector"]
