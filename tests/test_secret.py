"""What counts as a strong secret, and the fresh ones syncd makes."""

from __future__ import annotations

import base64
import random

import pytest

from syncd.secret import MIN_LENGTH, generate, weakness


def test_generated_secrets_are_strong_url_safe_and_never_repeat():
    made = [generate() for _ in range(200)]
    assert len(set(made)) == len(made)
    assert all(len(s) >= MIN_LENGTH and weakness(s, in_url=True) is None for s in made)


@pytest.mark.parametrize("seed", range(5))
def test_random_secrets_made_by_common_tools_are_accepted(seed):
    rng = random.Random(seed)
    for _ in range(2000):
        raw = rng.randbytes(32)
        assert weakness(raw[:16].hex()) is None  # openssl rand -hex 16
        assert weakness(base64.b64encode(raw).decode()) is None  # openssl rand -base64 32
        assert weakness(base64.urlsafe_b64encode(raw).decode().rstrip("="), in_url=True) is None


@pytest.mark.parametrize(
    "made_up",
    [
        "",
        "s3cret",
        "x" * 32,
        "0123456789" * 4,
        "abababababababababababababababab",
        "my-webhook-secret-for-the-brevo-lists",
        "CorrectHorsePasswordStapleBatteryHorse",
        "demo-only-secret-change-me-demo-only-secret",
    ],
)
def test_made_up_secrets_are_refused_with_a_reason(made_up):
    assert weakness(made_up)
