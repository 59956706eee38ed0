"""The Brevo simulator: ``state`` (the account and Brevo's rules), ``api`` (the HTTP API v3),
``webhooks`` (what Brevo posts), ``simulator`` (the ASGI app, its faults and admin API)."""

from connectors.simulators.brevo.simulator import BrevoSimulator, serve

__all__ = ["BrevoSimulator", "serve"]
