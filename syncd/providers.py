"""Connectors built from the config's ``providers`` section."""

from __future__ import annotations

from syncd.config import Config


def make_connector(config: Config, provider: str):  # -> connectors.contract.Connector
    """The connector for ``provider`` ("brevo" | "mailchimp"), or KeyError if not configured."""
    settings = getattr(config.providers, provider, None)
    if settings is None:
        raise KeyError(f"no 'providers.{provider}' section in the config")
    if provider == "brevo":
        from connectors.brevo import BrevoConnector

        return BrevoConnector(settings.api_key, settings.base_url, api_key_name=settings.api_key_name)
    from connectors.mailchimp import MailchimpConnector

    return MailchimpConnector(settings.api_key, settings.base_url)
