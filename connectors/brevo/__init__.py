"""Brevo: the connector (``client``) and its vocabulary, contact import, webhooks and mail."""

from connectors.brevo.client import BrevoConnector
from connectors.brevo.vocabulary import TRAITS

__all__ = ["TRAITS", "BrevoConnector"]
