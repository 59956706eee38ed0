"""A marketer's first day: ``syncd simulate --config`` sets up the lists a config names,
``syncd check --online`` says what is missing at the providers, ``syncd webhooks register``
registers syncd's webhooks once. The CLI runs with click's CliRunner against simulators started
in the test (their exchanges checked against the providers' descriptions, as in the whole
suite), and ``syncd simulate`` as the process a user starts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from simkit import BrevoSimulator, MailchimpSimulator

from syncd.cli import main
from syncd.secret import generate as generate_secret

SECRETS = ("BREVO_WEBHOOK_SECRET", "BREVO_WEBHOOK_TOKEN", "MAILCHIMP_WEBHOOK_SECRET")


def write_config(path: Path, brevo_url: str, mailchimp_url: str) -> Path:
    path.write_text(
        f"""version: 1
providers:
  brevo:
    api_key: ${{BREVO_API_KEY}}
    base_url: {brevo_url}
    webhook_secret: ${{BREVO_WEBHOOK_SECRET}}
    webhook_token: ${{BREVO_WEBHOOK_TOKEN}}
  mailchimp:
    api_key: ${{MAILCHIMP_API_KEY}}
    base_url: {mailchimp_url}
    webhook_secret: ${{MAILCHIMP_WEBHOOK_SECRET}}
double_opt_in:
  public_url: https://lists.example.fr
lists:
  newsletter:
    targets:
      - brevo: {{list_id: 12}}
      - mailchimp: {{audience: a1b2c3d4e5, tag: clients}}
  vendors:
    targets:
      - brevo: {{list_id: 14}}
      - mailchimp: {{audience: a1b2c3d4e5, tag: vendors}}
  partners:
    targets: [{{mailchimp: {{audience: f6e5d4c3b2}}}}]
"""
    )
    return path


@pytest.fixture
def env(monkeypatch) -> dict[str, str]:
    values = {name: generate_secret() for name in SECRETS}
    values |= {"BREVO_API_KEY": "sim-brevo-key", "MAILCHIMP_API_KEY": "sim-mailchimp-key-us1"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def sims() -> Iterator[tuple[BrevoSimulator, MailchimpSimulator]]:
    with (
        BrevoSimulator(api_key="sim-brevo-key") as brevo,
        MailchimpSimulator(api_key="sim-mailchimp-key-us1") as mailchimp,
    ):
        yield brevo, mailchimp


@pytest.fixture
def config(tmp_path, sims, env) -> Path:
    brevo, mailchimp = sims
    return write_config(tmp_path / "syncd.yaml", brevo.api_url, mailchimp.api_url)


def set_up_as_configured(brevo: BrevoSimulator, mailchimp: MailchimpSimulator) -> None:
    brevo.create_list("newsletter", list_id=12)
    brevo.create_list("vendors", list_id=14)
    mailchimp.create_audience("clients", list_id="a1b2c3d4e5")
    mailchimp.create_tag("a1b2c3d4e5", "clients")
    mailchimp.create_tag("a1b2c3d4e5", "vendors")
    mailchimp.create_audience("partners", list_id="f6e5d4c3b2")


def run(*args: str):
    return CliRunner().invoke(main, list(args))


# --- syncd simulate --config ------------------------------------------------------------------------


def test_simulate_refuses_an_unknown_provider():
    result = run("simulate", "sendgrid")
    assert result.exit_code == 2
    assert "'sendgrid' is not one of 'brevo', 'mailchimp'" in result.output


@pytest.mark.parametrize(
    "command",
    [["simulate", "brevo"], ["check", "--online"], ["webhooks", "register"]],
    ids=["simulate", "check", "register"],
)
def test_a_bad_config_line_is_named_with_its_file(tmp_path, env, command):
    bad = tmp_path / "trial.yaml"
    bad.write_text("version: 1\nlists:\n  news:\n    consnet: double_opt_in\n")
    result = run(*command, "--config", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:4" in result.output and "consnet" in result.output
    assert "Traceback" not in result.output


def test_simulate_refuses_an_audience_id_it_cannot_serve(tmp_path, env):
    bad = tmp_path / "trial.yaml"
    bad.write_text(
        "version: 1\nproviders:\n  mailchimp:\n    api_key: ${MAILCHIMP_API_KEY}\n"
        "lists:\n  news:\n    targets:\n      - mailchimp: {audience: 'a/b'}\n"
    )
    result = run("simulate", "mailchimp", "--config", str(bad), "--port", "1")
    assert result.exit_code == 2
    assert f"{bad}: lists.news.targets[0]: audience id 'a/b' cannot be one" in result.output


def start_simulate(provider: str, config: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "syncd", "simulate", provider, "--config", str(config), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def read_until_serving(proc: subprocess.Popen) -> list[str]:
    """The lines printed until the simulator says where it serves (then it is about to listen)."""
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if "Ctrl-C stops it" in line:
            return lines
    raise AssertionError(f"syncd simulate ended: {lines} {proc.stderr.read() if proc.stderr else ''}")


def wait_for(url: str, **kw) -> httpx.Response:
    for _ in range(200):
        try:
            return httpx.get(url, timeout=2, **kw)
        except httpx.TransportError:
            subprocess.run(["sleep", "0.05"], check=True)
    raise AssertionError(f"nothing answers at {url}")


@pytest.mark.parametrize("provider", ["brevo", "mailchimp"])
def test_simulate_creates_what_the_config_names_with_its_ids(tmp_path, env, provider):
    from connectors.simulators.harness import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path / "syncd.yaml", f"{base}/v3", f"{base}/3.0")
    proc = start_simulate(provider, config, port)
    try:
        lines = read_until_serving(proc)
        if provider == "brevo":
            assert lines[:2] == [
                "created Brevo list 12 'newsletter' (for newsletter)",
                "created Brevo list 14 'vendors' (for vendors)",
            ]
            assert f"{base}/_sim/outbox" in lines[-2]
            lists = wait_for(f"{base}/v3/contacts/lists?sort=asc", headers={"api-key": "sim-brevo-key"})
            assert [x["id"] for x in lists.json()["lists"]] == [12, 14]
        else:
            assert lines[:2] == [
                "created Mailchimp audience a1b2c3d4e5 'newsletter, vendors' with tags clients, vendors "
                "(for newsletter, vendors)",
                "created Mailchimp audience f6e5d4c3b2 'partners' (for partners)",
            ]
            auth = ("anyone", "sim-mailchimp-key-us1")
            audience = wait_for(f"{base}/3.0/lists/a1b2c3d4e5", auth=auth)
            assert audience.json()["name"] == "newsletter, vendors"
            tags = httpx.get(f"{base}/3.0/lists/a1b2c3d4e5/tag-search", auth=auth).json()["tags"]
            assert sorted(t["name"] for t in tags) == ["clients", "vendors"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- syncd check --online ------------------------------------------------------------------------


def test_check_online_names_a_missing_audience_and_tag_and_exits_1(config, sims):
    brevo, mailchimp = sims
    brevo.create_list("newsletter", list_id=12)
    brevo.create_list("vendors", list_id=14)
    mailchimp.create_audience("clients", list_id="a1b2c3d4e5")
    mailchimp.create_tag("a1b2c3d4e5", "clients")

    result = run("check", "--config", str(config), "--online")

    assert result.exit_code == 1, result.output
    table = [
        line.split() for line in result.output.splitlines() if line.startswith(("newsletter ", "vendors "))
    ]
    rows = {(cells[0], cells[1]): cells for cells in table}
    assert rows["newsletter", "brevo"][-3:] == ["(newsletter)", "-", "MISSING"]
    assert rows["vendors", "mailchimp"][-3:] == ["(clients)", "MISSING", "MISSING"]  # tag vendors
    assert "missing (" in result.output
    assert "  - mailchimp audience f6e5d4c3b2" in result.output
    assert "  - tag vendors in mailchimp audience a1b2c3d4e5" in result.output
    assert "  - syncd's webhook at the brevo account (MISSING)" in result.output
    assert env_secret_absent(result.output)


def env_secret_absent(output: str) -> bool:
    return all(os.environ[name] not in output for name in SECRETS)


def test_check_online_passes_once_everything_is_set_up(config, sims):
    set_up_as_configured(*sims)
    assert run("webhooks", "register", "--config", str(config)).exit_code == 0

    result = run("check", "--config", str(config), "--online")

    assert result.exit_code == 0, result.output
    assert "online: every list, audience, tag and webhook is in place" in result.output
    header = next(line for line in result.output.splitlines() if line.startswith("LIST"))
    assert header.split() == ["LIST", "TARGET", "LIST/AUDIENCE", "TAG", "WEBHOOK"]
    assert env_secret_absent(result.output)


def test_check_online_reports_a_refused_key(tmp_path, sims, env, monkeypatch):
    set_up_as_configured(*sims)
    monkeypatch.setenv("BREVO_API_KEY", "not-the-key")
    config = write_config(tmp_path / "syncd.yaml", sims[0].api_url, sims[1].api_url)

    result = run("check", "--config", str(config), "--online")

    assert result.exit_code == 1
    assert "error: brevo: GET /contacts/lists/12: 401" in result.stderr  # errors go to stderr
    assert "Traceback" not in result.output


def test_check_online_flags_a_webhook_without_every_event(config, sims):
    brevo, mailchimp = sims
    set_up_as_configured(brevo, mailchimp)
    url = f"https://lists.example.fr/hooks/brevo/{os.environ['BREVO_WEBHOOK_SECRET']}"
    brevo.account.create_webhook({"url": url, "events": ["unsubscribed"], "type": "marketing"})

    result = run("check", "--config", str(config), "--online")

    assert result.exit_code == 1
    assert "lacks hardBounce, softBounce, spam" in result.output


# --- syncd webhooks register --------------------------------------------------------------------------


def test_register_twice_registers_once(config, sims):
    brevo, mailchimp = sims
    set_up_as_configured(brevo, mailchimp)

    first = run("webhooks", "register", "--config", str(config))
    second = run("webhooks", "register", "--config", str(config))

    assert first.exit_code == 0, first.output
    assert "registered 3 webhooks; 0 already registered" in first.output
    assert (
        "brevo account (newsletter, vendors): registered https://lists.example.fr/hooks/brevo/<webhook_secret>"
        in (first.output)
    )
    assert second.exit_code == 0, second.output
    assert "nothing new to register: 3 webhooks already registered" in second.output
    assert len(brevo.account.webhooks) == 1
    assert [len(a.webhooks) for a in mailchimp.account.audiences.values()] == [1, 1]
    (hook,) = brevo.account.webhooks.values()
    assert hook["url"] == f"https://lists.example.fr/hooks/brevo/{os.environ['BREVO_WEBHOOK_SECRET']}"
    assert hook["auth"] == {"type": "bearer", "token": os.environ["BREVO_WEBHOOK_TOKEN"]}
    assert env_secret_absent(first.output + second.output)


def test_register_takes_the_public_url_given(config, sims):
    set_up_as_configured(*sims)
    result = run("webhooks", "register", "--config", str(config), "--public-url", "https://hooks.example.fr/")
    assert result.exit_code == 0, result.output
    (hook,) = sims[0].account.webhooks.values()
    assert hook["url"].startswith("https://hooks.example.fr/hooks/brevo/")


def test_register_names_a_missing_audience_and_exits_1(config, sims):
    brevo, mailchimp = sims
    brevo.create_list("newsletter", list_id=12)
    mailchimp.create_audience("clients", list_id="a1b2c3d4e5")

    result = run("webhooks", "register", "--config", str(config))

    assert result.exit_code == 1
    assert "error: mailchimp audience f6e5d4c3b2: does not exist" in result.stderr  # errors on stderr
    assert "1 webhook could not be registered" in result.stderr
    assert "error" not in result.stdout
    assert len(brevo.account.webhooks) == 1  # the others were registered all the same


def test_register_refuses_without_a_webhook_secret(tmp_path, sims, env, monkeypatch):
    config = write_config(tmp_path / "syncd.yaml", sims[0].api_url, sims[1].api_url)
    text = config.read_text().replace("    webhook_secret: ${MAILCHIMP_WEBHOOK_SECRET}\n", "")
    config.write_text(text)

    result = run("webhooks", "register", "--config", str(config))

    assert result.exit_code == 2
    assert "providers.mailchimp.webhook_secret is not set" in result.output
    assert not sims[0].account.webhooks  # nothing registered anywhere


def test_the_registered_brevo_webhook_reaches_syncd(config, sims, engine):
    """The URL registered is the one the web app routes, and the token the one it checks: a
    delivery Brevo would post there is accepted."""
    from starlette.testclient import TestClient

    from syncd.config import load_config
    from syncd.web.app import create_app

    brevo, mailchimp = sims
    set_up_as_configured(brevo, mailchimp)
    run("webhooks", "register", "--config", str(config))
    (hook,) = brevo.account.webhooks.values()
    body, content_type = brevo.webhook_payload("unsubscribed", "ana@example.fr", list_id=[12])
    with TestClient(create_app(load_config(str(config)), engine)) as client:
        r = client.post(
            hook["url"].removeprefix("https://lists.example.fr"),
            content=body,
            headers={"Authorization": f"Bearer {hook['auth']['token']}", "Content-Type": content_type},
        )
    assert r.status_code == 200, r.text


def test_register_at_a_mailchimp_that_checks_the_url(config, sims, engine):
    """Mailchimp GETs a new webhook's URL: registered when syncd's web app answers there, refused
    (and said, exit 1) when nothing does."""
    from connectors.simulators.harness import ThreadedServer
    from syncd.config import load_config
    from syncd.web.app import create_app

    brevo, mailchimp = sims
    set_up_as_configured(brevo, mailchimp)
    mailchimp.verify_webhook_urls = True
    with ThreadedServer(create_app(load_config(str(config)), engine)) as web:
        served = run("webhooks", "register", "--config", str(config), "--public-url", web.url)
    assert served.exit_code == 0, served.output
    assert [len(a.webhooks) for a in mailchimp.account.audiences.values()] == [1, 1]

    nobody = f"http://127.0.0.1:{refused_port()}"
    refused = run("webhooks", "register", "--config", str(config), "--public-url", nobody)
    assert refused.exit_code == 1
    assert "We couldn't verify the URL is working" in refused.output
    assert "mailchimp audience a1b2c3d4e5" in refused.output


def refused_port() -> int:
    from connectors.simulators.harness import free_port

    return free_port()  # nothing listens there once free_port has closed its socket
