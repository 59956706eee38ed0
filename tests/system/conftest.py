"""Hypothesis profiles of the system tests (registered here so that ``--hypothesis-profile`` finds them)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]

# The budget of the normal test run: a few seconds to ~30 s on SQLite.
settings.register_profile(
    "consent-model",
    max_examples=10,
    stateful_step_count=30,
    deadline=None,
    # The suite's fixed budget explores the same sequences on every run, so that CI is reproducible;
    # the long run by hand (consent-long, SYNCD_MODEL_EXAMPLES) explores new ones each time.
    derandomize=True,
    suppress_health_check=_SLOW_OK,
    database=None,
)
# A long run by hand: pytest tests/system --hypothesis-profile=consent-long
settings.register_profile(
    "consent-long",
    max_examples=700,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=_SLOW_OK,
    database=None,
)
