"""The deployment files parse, and every command, path, port and probe they name exists."""

from __future__ import annotations

import configparser
import re
import shlex
import tomllib
import warnings
from pathlib import Path

import click
import pytest
import yaml

from syncd.cli import main
from syncd.config import ConfigError, load_config
from syncd.secret import generate as generate_secret

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def k8s_docs() -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "syncd.yaml").read_text()) if d]


def _rest(ctx: click.Context) -> list[str]:
    with warnings.catch_warnings():  # click 8.2 moves these into ctx.args; both are read here
        warnings.simplefilter("ignore", DeprecationWarning)
        return [*ctx.protected_args, *ctx.args]


def assert_cli_accepts(args: list[str]) -> None:
    """``syncd ARGS`` names real commands and options (parsed by the real CLI, not run)."""
    ctx = main.make_context("syncd", list(args), resilient_parsing=True)
    rest, group = _rest(ctx), main
    while rest:
        name, rest = rest[0], rest[1:]
        cmd = group.get_command(ctx, name)
        assert cmd is not None, f"syncd has no command {name!r} (from {args})"
        sub = cmd.make_context(name, list(rest), parent=ctx, resilient_parsing=True)
        for opt in (a for a in rest if a.startswith("--")):
            assert any(opt in p.opts for p in cmd.params), f"{name} has no option {opt}"
        if not isinstance(cmd, click.Group):
            return
        group, ctx, rest = cmd, sub, _rest(sub)


def test_the_console_script_is_syncd():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["syncd"] == "syncd.cli:main"


def test_dockerfile_copies_what_exists_and_runs_the_daemon_on_its_port():
    text = (DEPLOY / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (ROOT / src).exists(), src
    assert "USER 10001" in text
    assert re.search(r"^EXPOSE 8080$", text, re.M)
    assert "127.0.0.1:8080/healthz" in text
    assert 'ENTRYPOINT ["syncd"]' in text
    cmd = yaml.safe_load(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert_cli_accepts(cmd)
    assert cmd[cmd.index("--port") + 1] == "8080"


def test_compose_runs_migrations_then_the_daemon_against_postgresql():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "migrate", "syncd"}
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert_cli_accepts(services["migrate"]["command"])
    assert_cli_accepts(services["syncd"]["command"])
    assert services["syncd"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["syncd"]["environment"]["SYNCD_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert (DEPLOY / services["migrate"]["build"]["dockerfile"].removeprefix("deploy/")).exists()


def test_systemd_unit_runs_syncd_with_hardening():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(DEPLOY / "systemd" / "syncd.service")
    service = unit["Service"]
    for key in ("ExecStartPre", "ExecStart"):
        binary, *args = shlex.split(service[key])
        assert binary.endswith("/bin/syncd")
        assert_cli_accepts(args)
    for hardening in (
        "NoNewPrivileges",
        "ProtectSystem",
        "PrivateTmp",
        "CapabilityBoundingSet",
        "RestrictAddressFamilies",
        "SystemCallFilter",
    ):
        assert hardening in service
    assert service["KillSignal"] == "SIGTERM"


def test_kubernetes_manifests_parse_and_agree_with_the_app(monkeypatch, tmp_path):
    docs = {d["kind"]: d for d in k8s_docs()}
    assert set(docs) >= {"ConfigMap", "Secret", "Deployment", "Service", "Job"}
    deployment = docs["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert_cli_accepts(container["args"])
    assert_cli_accepts(docs["Job"]["spec"]["template"]["spec"]["containers"][0]["args"])
    port = container["ports"][0]["containerPort"]
    assert str(port) == container["args"][container["args"].index("--port") + 1]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The ConfigMap's YAML is a valid syncd config once the Secret's variables are set, and its
    # placeholder secrets are refused until the operator replaces them.
    for key, value in docs["Secret"]["stringData"].items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "syncd.yaml"
    path.write_text(docs["ConfigMap"]["data"]["syncd.yaml"])
    with pytest.raises(ConfigError, match="too weak.*syncd secret"):
        load_config(path)
    for key in docs["Secret"]["stringData"]:
        if key.endswith("_SECRET"):
            monkeypatch.setenv(key, generate_secret())
    config = load_config(path)
    assert config.server.port == port


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probed_routes_exist_in_the_web_app(path, engine):
    from syncd.config import Config
    from syncd.web.app import create_app

    routes = {r.path for r in create_app(Config(version=1), engine).routes}
    assert path in routes


def test_every_deploy_file_says_which_proxies_are_trusted():
    """Each way of running syncd sets SYNCD_TRUSTED_PROXIES (read by `syncd run`), to a list the
    daemon accepts: behind a proxy, the consent proof must record the client, not the proxy."""
    from syncd.netaddr import parse_networks

    run = main.get_command(None, "run")
    [option] = [p for p in run.params if p.name == "trusted_proxies"]
    assert option.envvar == "SYNCD_TRUSTED_PROXIES"

    docker = re.search(r'SYNCD_TRUSTED_PROXIES="([^"]*)"', (DEPLOY / "Dockerfile").read_text())
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["syncd"]["environment"]
    unit = (DEPLOY / "systemd" / "syncd.service").read_text()
    systemd = re.search(r"^Environment=SYNCD_TRUSTED_PROXIES=(\S*)$", unit, re.M)
    container = {d["kind"]: d for d in k8s_docs()}["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    kubernetes = {e["name"]: e["value"] for e in container["env"]}
    values = {
        "Dockerfile": docker and docker.group(1),
        "compose": compose.get("SYNCD_TRUSTED_PROXIES", "").replace("${SYNCD_TRUSTED_PROXIES:-}", ""),
        "systemd": systemd and systemd.group(1),
        "kubernetes": kubernetes.get("SYNCD_TRUSTED_PROXIES"),
    }
    for where, value in values.items():
        assert value is not None, f"{where} does not set SYNCD_TRUSTED_PROXIES"
        parse_networks(value)
    # Where syncd listens on every interface behind an ingress, the ingress must be trusted.
    assert parse_networks(values["kubernetes"])
    assert parse_networks(values["systemd"])
