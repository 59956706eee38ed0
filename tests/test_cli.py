"""The command line's shared behaviour: `syncd secret`, one clear line for a database it cannot use."""

from __future__ import annotations

from click.testing import CliRunner

from syncd.cli import main
from syncd.secret import weakness


def test_syncd_secret_prints_a_fresh_strong_secret():
    first, second = (CliRunner().invoke(main, ["secret"]) for _ in range(2))
    assert first.exit_code == second.exit_code == 0
    assert first.output != second.output
    assert weakness(first.output.strip(), in_url=True) is None


def test_syncd_secret_with_names_prints_lines_for_a_secrets_file():
    result = CliRunner().invoke(main, ["secret", "BREVO_WEBHOOK_SECRET", "SYNCD_SECRET"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split("=", 1) for line in result.output.splitlines())
    assert set(lines) == {"BREVO_WEBHOOK_SECRET", "SYNCD_SECRET"}
    assert all(weakness(v, in_url=True) is None for v in lines.values())


def test_syncd_secret_refuses_a_name_that_is_no_variable():
    result = CliRunner().invoke(main, ["secret", "not a name"])
    assert result.exit_code == 2 and "not an environment variable name" in result.output
