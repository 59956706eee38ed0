"""Prometheus metrics of the daemon, on their own registry (served at ``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

WEBHOOK_RECEIVED = Counter(
    "syncd_webhook_events_received", "Webhook deliveries stored in the inbox", ["provider"], registry=REGISTRY
)
WEBHOOK_REJECTED = Counter(
    "syncd_webhook_deliveries_rejected",
    "Webhook deliveries refused (bad secret, malformed, too large, database down)",
    ["provider", "reason"],
    registry=REGISTRY,
)
WEBHOOK_PROCESSED = Counter(
    "syncd_webhook_events_processed",
    "Provider events applied to the master base, by outcome",
    ["provider", "outcome"],
    registry=REGISTRY,
)
WEBHOOK_FAILED = Counter(
    "syncd_webhook_events_failed",
    "Inbox rows whose processing failed (retried, or dead)",
    ["provider"],
    registry=REGISTRY,
)
SYNC_RUNS = Counter("syncd_sync_runs", "Sync runs, by list and status", ["list", "status"], registry=REGISTRY)
SYNC_DURATION = Histogram(
    "syncd_sync_duration_seconds",
    "Duration of a sync run",
    ["list"],
    registry=REGISTRY,
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
API_CALLS = Counter("syncd_api_calls", "Calls made to a provider's API", ["provider"], registry=REGISTRY)
API_RATE_LIMITED = Counter(
    "syncd_api_rate_limited", "Provider answers 429 (rate limited)", ["provider"], registry=REGISTRY
)
DOI_SENT = Counter("syncd_doi_sent", "Double opt-in mails sent, by kind", ["kind"], registry=REGISTRY)
DOI_CONFIRMED = Counter("syncd_doi_confirmed", "Double opt-in requests confirmed", registry=REGISTRY)
DOI_EXPIRED = Counter("syncd_doi_expired", "Double opt-in requests expired unconfirmed", registry=REGISTRY)


def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus' text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
