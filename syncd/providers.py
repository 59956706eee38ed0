"""The one registry of providers: what each provider name stands for (its connector, its webhook
endpoint and that endpoint's description), built from the config's ``providers`` section.

Nothing else in syncd builds a connector: a process makes one ``Connectors`` and hands it to the
web app, the inbox and the jobs, so that each provider has one connector (one pool, one set of
API counters) however many parts use it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from connectors.brevo import TRAITS as BREVO_TRAITS
from connectors.brevo import BrevoConnector
from connectors.brevo import openapi as brevo_openapi
from connectors.brevo.webhooks import BrevoWebhookEndpoint
from connectors.contract import Connector, ProviderTraits, WebhookEndpoint
from connectors.mailchimp import TRAITS as MAILCHIMP_TRAITS
from connectors.mailchimp import MailchimpConnector
from connectors.mailchimp import openapi as mailchimp_openapi
from connectors.mailchimp.webhooks import MailchimpWebhookEndpoint
from syncd.config import Config


@dataclass(frozen=True)
class Provider:
    """How to build a provider's parts from its config section."""

    connector: Callable[[Any], Connector]
    traits: ProviderTraits
    webhooks: type[WebhookEndpoint]  # built by its ``from_settings``
    openapi: ModuleType  # its webhook endpoint described: OPERATIONS, SECURITY_SCHEMES


PROVIDERS: dict[str, Provider] = {
    "brevo": Provider(
        connector=lambda s: BrevoConnector(
            s.api_key,
            s.base_url,
            api_key_name=s.api_key_name,
            concurrency=s.concurrency,
            cursor_margin_s=s.cursor_margin_s,
            settle_s=s.settle_s,
        ),
        traits=BREVO_TRAITS,
        webhooks=BrevoWebhookEndpoint,
        openapi=brevo_openapi,
    ),
    "mailchimp": Provider(
        connector=lambda s: MailchimpConnector(
            s.api_key,
            s.base_url,
            concurrency=s.concurrency,
            cursor_margin_s=s.cursor_margin_s,
            settle_s=s.settle_s,
        ),
        traits=MAILCHIMP_TRAITS,
        webhooks=MailchimpWebhookEndpoint,
        openapi=mailchimp_openapi,
    ),
}


def sharing_record(config: Config, provider: str, list_id: str | None) -> set[str]:
    """The keys of the config's targets that hold the same provider record of a contact as the
    remote list ``list_id``: every target of a provider with one record per account (Brevo), the
    targets on that audience otherwise (Mailchimp tags). A change of address made at the provider
    renamed the contact on all of them at once."""
    whole = PROVIDERS[provider].traits.one_record_per_account
    return {
        t.target.key
        for lst in config.lists.values()
        for t in lst.targets
        if t.target.provider == provider and (whole or t.target.list_id == str(list_id))
    }


def settings_of(config: Config, provider: str) -> Any | None:
    """The config section of ``provider``, or None when the config has none."""
    return getattr(config.providers, provider, None) if provider in PROVIDERS else None


def configured(config: Config) -> list[str]:
    """The providers the config has a section for, in the registry's order."""
    return [p for p in PROVIDERS if settings_of(config, p) is not None]


def _settings(config: Config, provider: str) -> Any:
    settings = settings_of(config, provider)
    if settings is None:
        raise KeyError(f"no 'providers.{provider}' section in the config")
    return settings


def make_connector(config: Config, provider: str) -> Connector:
    """A new connector for ``provider``, or KeyError if not configured. A process keeps its
    connectors in one ``Connectors``: call this only for a connector of one's own."""
    return PROVIDERS[provider].connector(_settings(config, provider))


def webhook_endpoint(config: Config, provider: str) -> WebhookEndpoint:
    """How ``provider``'s webhook deliveries are authenticated, or KeyError if not configured."""
    return PROVIDERS[provider].webhooks.from_settings(_settings(config, provider))


class Connectors(Mapping[str, Connector]):
    """Each configured provider's connector, built on first use and shared from then on.

    ``given``: connectors made elsewhere (a demo's, a test's), used instead of building them.
    """

    def __init__(self, config: Config, given: Mapping[str, Connector] | None = None):
        self.config = config
        self._made: dict[str, Connector] = dict(given or {})
        self._lock = threading.Lock()

    @classmethod
    def of(cls, config: Config, connectors: Mapping[str, Connector] | None) -> Connectors:
        """``connectors`` when it already is the registry, else a registry over them."""
        return connectors if isinstance(connectors, Connectors) else cls(config, connectors)

    def __getitem__(self, provider: str) -> Connector:
        with self._lock:
            if provider not in self._made:
                self._made[provider] = make_connector(self.config, provider)
            return self._made[provider]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*configured(self.config), *self._made]))

    def __len__(self) -> int:
        return sum(1 for _ in self)
