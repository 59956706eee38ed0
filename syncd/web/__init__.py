"""The daemon's web side: webhooks, double opt-in pages, preference centre, health and metrics."""
