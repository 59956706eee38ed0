from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from connectors.mailchimp.connections import MAX_CONNECTIONS
from syncd.cli import main
from syncd.config import ConfigError, load_config
from syncd.config.model import BREVO_DEFAULT_CONCURRENCY, MAILCHIMP_MAX_CONCURRENCY
from syncd.providers import Connectors, make_connector
from syncd.secret import generate as generate_secret

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "syncd.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


@pytest.fixture
def demo_environment(monkeypatch):
    """What `syncd demo` sets before it reads config/demo.yaml: the simulators' keys, fresh secrets."""
    for var in ("BREVO_WEBHOOK_SECRET", "BREVO_WEBHOOK_TOKEN", "MAILCHIMP_WEBHOOK_SECRET", "SYNCD_SECRET"):
        monkeypatch.setenv(var, generate_secret())
    monkeypatch.setenv("BREVO_API_KEY", "sim-brevo-key")
    monkeypatch.setenv("MAILCHIMP_API_KEY", "sim-mailchimp-key-us1")


def test_the_shipped_demo_config_loads(demo_environment):
    cfg = load_config(ROOT / "config" / "demo.yaml")
    assert set(cfg.lists) == {"newsletter-clients", "events", "prospects", "vendors"}
    assert cfg.lists["vendors"].auto_enroll is True
    assert cfg.lists["newsletter-clients"].schedule.every == timedelta(minutes=15)


def test_the_commented_example_loads_once_its_secrets_are_set(monkeypatch):
    for var in ("BREVO_API_KEY", "MAILCHIMP_API_KEY"):
        monkeypatch.setenv(var, "x")
    for var in ("BREVO_WEBHOOK_SECRET", "BREVO_WEBHOOK_TOKEN", "MAILCHIMP_WEBHOOK_SECRET", "SYNCD_SECRET"):
        monkeypatch.setenv(var, generate_secret())
    cfg = load_config(ROOT / "config" / "example.yaml")
    assert cfg.lists["newsletter-clients"].targets[1].target.key == "mailchimp:a1b2c3d4e5:clients"


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "version: 1\nlists:\n  news: [\n")
    err = error_of(path)
    assert err.file == str(path) and err.line == 4
    assert str(err).startswith(f"{path}:4: not valid YAML")


def test_a_typo_in_a_key_is_an_error_with_its_line(tmp_path):
    path = write(tmp_path, "version: 1\nlists:\n  news:\n    consnet: double_opt_in\n")
    err = error_of(path)
    assert (err.line, err.key) == (4, "lists.news.consnet")
    assert "unknown key" in err.message


def test_a_bad_value_says_what_was_expected(tmp_path):
    path = write(tmp_path, "version: 1\nlists:\n  news:\n    consent: dobule\n")
    err = error_of(path)
    assert (err.line, err.key) == (4, "lists.news.consent")
    assert "double_opt_in" in err.message and "dobule" in err.message


def test_environment_substitution_with_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("BREVO_KEY", "k-123")
    monkeypatch.delenv("SYNCD_PORT", raising=False)
    path = write(
        tmp_path,
        "version: 1\nserver: {port: '${SYNCD_PORT:-9090}'}\nproviders:\n  brevo: {api_key: '${BREVO_KEY}'}\n",
    )
    cfg = load_config(path)
    assert cfg.server.port == 9090
    assert cfg.providers.brevo.api_key == "k-123"


def test_a_missing_environment_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_KEY", raising=False)
    err = error_of(write(tmp_path, "version: 1\nproviders:\n  brevo:\n    api_key: ${NOPE_KEY}\n"))
    assert err.line == 4 and "NOPE_KEY is not set" in err.message


def test_a_secret_written_in_clear_is_refused(tmp_path):
    err = error_of(write(tmp_path, "version: 1\nproviders:\n  mailchimp:\n    api_key: abc-us1\n"))
    assert err.key == "providers.mailchimp.api_key" and "environment" in err.message


def test_a_target_names_exactly_one_provider(tmp_path, monkeypatch):
    monkeypatch.setenv("K", "x")
    err = error_of(
        write(
            tmp_path,
            "version: 1\nproviders: {brevo: {api_key: '${K}'}}\nlists:\n  a:\n    targets:\n      - {}\n",
        )
    )
    assert err.key == "lists.a.targets[0]" and err.line == 6


def test_a_target_needs_its_provider_section(tmp_path):
    err = error_of(write(tmp_path, "version: 1\nlists:\n  a:\n    targets: [{mailchimp: {audience: x}}]\n"))
    assert "providers.mailchimp" in err.message


def test_unknown_segment_values_and_exclusive_lists(tmp_path):
    err = error_of(write(tmp_path, "version: 1\nlists:\n  a:\n    segment:\n      not: {kind: clent}\n"))
    assert (err.key, err.line) == ("lists.a.segment.not.kind", 5)
    err = error_of(write(tmp_path, "version: 1\nlists:\n  a:\n    exclusive_with: [b]\n"))
    assert err.key == "lists.a.exclusive_with" and "'b'" in err.message


def test_schedules_and_durations(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            "version: 1\ndouble_opt_in: {expires_after: 3d}\nlists:\n"
            "  a: {schedule: {cron: '*/5 * * * *'}}\n  b: {schedule: every hour}\n",
        )
    )
    assert cfg.lists["a"].schedule.cron == "*/5 * * * *"
    assert cfg.lists["b"].schedule.every == timedelta(hours=1)
    assert cfg.double_opt_in.expires_after == timedelta(days=3)
    err = error_of(write(tmp_path, "version: 1\nlists:\n  a: {schedule: sometimes}\n"))
    assert err.key == "lists.a.schedule" and "every N minutes" in err.message


def test_duplicate_keys_are_refused(tmp_path):
    err = error_of(write(tmp_path, "version: 1\nlists:\n  a: {}\n  a: {}\n"))
    assert (err.line, err.key) == (4, "lists.a")


def test_check_prints_a_summary(tmp_path, demo_environment):
    result = CliRunner().invoke(main, ["check", "--config", str(ROOT / "config" / "demo.yaml")])
    assert result.exit_code == 0, result.output
    assert "lists: 4" in result.output
    assert "vendors: consent legitimate_interest auto-enrol, on violation remove → brevo:3" in result.output


def test_check_reports_a_bad_file_with_exit_status_2(tmp_path):
    path = write(tmp_path, "version: 1\nlists:\n  news:\n    consnet: x\n")
    result = CliRunner().invoke(main, ["check", "--config", str(path)])
    assert result.exit_code == 2
    assert f"{path}:4: lists.news.consnet: unknown key" in result.output


BREVO_WITH_HOOK = "version: 1\nproviders:\n  brevo:\n    api_key: ${{K}}\n    webhook_secret: {value}\n"


def test_a_secret_with_a_default_written_in_the_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("K", "key")
    monkeypatch.setenv("HOOK", generate_secret())  # even when the variable is set
    text = BREVO_WITH_HOOK.format(value="${HOOK:-" + generate_secret() + "}")
    err = error_of(write(tmp_path, text))
    assert (err.line, err.key) == (5, "providers.brevo.webhook_secret")
    assert "default" in err.message and "${HOOK}" in err.message


def test_an_empty_default_leaves_an_optional_secret_unset(tmp_path, monkeypatch):
    monkeypatch.setenv("K", "key")
    monkeypatch.delenv("HOOK", raising=False)
    cfg = load_config(write(tmp_path, BREVO_WITH_HOOK.format(value="${HOOK:-}")))
    assert not cfg.providers.brevo.webhook_secret


@pytest.mark.parametrize(
    "section, key",
    [
        ("providers: {brevo: {api_key: '${K}', webhook_secret: '${S}'}}", "providers.brevo.webhook_secret"),
        ("providers: {brevo: {api_key: '${K}', webhook_token: '${S}'}}", "providers.brevo.webhook_token"),
        (
            "providers: {mailchimp: {api_key: '${K}', signing_secret: '${S}'}}",
            "providers.mailchimp.signing_secret",
        ),
        ("double_opt_in: {secret: '${S}'}", "double_opt_in.secret"),
    ],
)
@pytest.mark.parametrize(
    "weak",
    ["x", "a" * 40, "change-me-change-me-change-me-change-me", "Brevo-Webhook-Secret-For-Our-Lists-2026"],
)
def test_a_weak_chosen_secret_is_refused_with_how_to_make_one(tmp_path, monkeypatch, section, key, weak):
    monkeypatch.setenv("K", "key")
    monkeypatch.setenv("S", weak)
    path = write(tmp_path, f"version: 1\n{section}\n")
    err = error_of(path)
    assert (err.line, err.key) == (2, key)
    assert "S is too weak" in err.message and "syncd secret" in err.message
    assert weak not in str(err)


def test_check_refuses_a_one_character_webhook_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("K", "key")
    monkeypatch.setenv("HOOK", "x")
    path = write(tmp_path, BREVO_WITH_HOOK.format(value="${HOOK}"))
    result = CliRunner().invoke(main, ["check", "--config", str(path)])
    assert result.exit_code == 2
    assert f"{path}:5: providers.brevo.webhook_secret: HOOK is too weak" in result.output


def test_a_webhook_secret_must_be_usable_in_a_url(tmp_path, monkeypatch):
    monkeypatch.setenv("K", "key")
    monkeypatch.setenv("HOOK", generate_secret()[:20] + "/?#" + generate_secret()[:20])
    err = error_of(write(tmp_path, BREVO_WITH_HOOK.format(value="${HOOK}")))
    assert err.key == "providers.brevo.webhook_secret" and "URL" in err.message


def _check_output(tmp_path, monkeypatch, brevo_extra: str, mailchimp_extra: str) -> str:
    for var in ("T_KEY", "T_HOOK", "T_TOKEN", "T_SIGN"):
        monkeypatch.setenv(var, f"{var}-k7Qm2xVb9Lp4Rt8Wz3Nc6Hy1Df5Gs0Ja")
    path = write(
        tmp_path,
        "version: 1\nproviders:\n"
        f"  brevo: {{api_key: '${{T_KEY}}', webhook_secret: '${{T_HOOK}}'{brevo_extra}}}\n"
        f"  mailchimp: {{api_key: '${{T_KEY}}', webhook_secret: '${{T_HOOK}}'{mailchimp_extra}}}\n",
    )
    result = CliRunner().invoke(main, ["check", "--config", str(path)])
    assert result.exit_code == 0, result.output
    return result.output


def test_check_says_how_each_webhook_endpoint_authenticates_and_warns_on_the_weaker(tmp_path, monkeypatch):
    weak = _check_output(tmp_path, monkeypatch, "", "")
    assert "webhook authentication for brevo: URL secret + bearer token, but no token is set" in weak
    assert "warning: providers.brevo.webhook_token is not set" in weak
    assert "webhook authentication for mailchimp: URL secret only" in weak
    assert "warning: Mailchimp webhooks are authenticated by the URL secret alone" in weak

    opted_out = _check_output(tmp_path, monkeypatch, ", webhook_auth: url_secret", "")
    assert "webhook authentication for brevo: URL secret only" in opted_out
    assert "warning: Brevo webhooks are authenticated by the URL secret alone" in opted_out

    strong = _check_output(
        tmp_path, monkeypatch, ", webhook_token: '${T_TOKEN}'", ", signing_secret: '${T_SIGN}'"
    )
    assert "webhook authentication for brevo: URL secret + bearer token (Authorization: Bearer)" in strong
    assert "webhook authentication for mailchimp: URL secret + signature" in strong
    assert "URL secret alone" not in strong and "webhook_token is not set" not in strong


def test_a_list_title_is_what_contacts_read_and_defaults_to_the_name():
    from syncd.config import Config

    cfg = Config.model_validate(
        {"version": 1, "lists": {"news": {"title": "Our newsletter", "description": "team note"}, "club": {}}}
    )
    assert cfg.list_title("news") == "Our newsletter" and cfg.list_title("club") == "club"


def test_an_audience_id_of_digits_only_is_read_as_text(tmp_path, monkeypatch):
    """Mailchimp audience ids are hex: one of digits only is a number to YAML, an id to syncd."""
    path = write(
        tmp_path,
        """
version: 1
providers: {mailchimp: {api_key: "${T_KEY}"}}
lists:
  news:
    targets: [{mailchimp: {audience: 1772420684, tag: news}}]
""",
    )
    monkeypatch.setenv("T_KEY", "k-us1")
    assert load_config(path).lists["news"].targets[0].target.list_id == "1772420684"


PROVIDER_SECTIONS = (
    "version: 1\nproviders:\n  brevo:\n    api_key: ${{K}}\n{brevo}"
    "  mailchimp:\n    api_key: ${{K}}\n{mailchimp}"
)


def test_each_connector_gets_its_configured_concurrency(tmp_path, monkeypatch):
    monkeypatch.setenv("K", "key-us1")
    cfg = load_config(
        write(
            tmp_path,
            PROVIDER_SECTIONS.format(brevo="    concurrency: 7\n", mailchimp="    concurrency: 3\n"),
        )
    )
    assert make_connector(cfg, "brevo").concurrency == 7
    assert Connectors(cfg)["mailchimp"].concurrency == 3  # the registry the daemon and the demo use


def test_without_a_concurrency_each_connector_gets_its_providers_default(tmp_path, monkeypatch):
    monkeypatch.setenv("K", "key-us1")
    cfg = load_config(write(tmp_path, PROVIDER_SECTIONS.format(brevo="", mailchimp="")))
    assert make_connector(cfg, "brevo").concurrency == BREVO_DEFAULT_CONCURRENCY == 4
    assert make_connector(cfg, "mailchimp").concurrency == MAILCHIMP_MAX_CONCURRENCY


def test_mailchimps_limit_is_the_connectors():
    assert MAILCHIMP_MAX_CONCURRENCY == MAX_CONNECTIONS


@pytest.mark.parametrize(
    ("provider", "value", "limit"),
    [
        ("brevo", "0", 60),
        ("brevo", "-2", 60),
        ("brevo", "61", 60),
        ("brevo", "yes", 60),
        ("mailchimp", "0", 10),
        ("mailchimp", "11", 10),
        ("mailchimp", "many", 10),
    ],
)
def test_a_bad_concurrency_is_a_config_error_naming_the_field(tmp_path, monkeypatch, provider, value, limit):
    monkeypatch.setenv("K", "key-us1")
    sections = {"brevo": "", "mailchimp": "", provider: f"    concurrency: {value}\n"}
    path = write(tmp_path, PROVIDER_SECTIONS.format(**sections))
    err = error_of(path)
    line = 5 if provider == "brevo" else 7
    assert (err.key, err.line) == (f"providers.{provider}.concurrency", line)
    assert f"expected a whole number from 1 to {limit}" in err.message


def test_check_reports_a_bad_concurrency_with_exit_status_2(tmp_path, monkeypatch):
    monkeypatch.setenv("K", "key-us1")
    path = write(tmp_path, PROVIDER_SECTIONS.format(brevo="", mailchimp="    concurrency: 20\n"))
    result = CliRunner().invoke(main, ["check", "--config", str(path)])
    assert result.exit_code == 2
    assert f"{path}:7: providers.mailchimp.concurrency: expected a whole number from 1 to 10" in result.output
    assert "Traceback" not in result.output
