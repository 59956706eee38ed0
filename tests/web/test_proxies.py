"""The consent proof records the client's address, read through trusted proxies only, on a real
`syncd run` (uvicorn's own proxy-header handling must not get in the way)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlmodel import Session, select
from webfixtures import add_contact

from connectors.simulators.harness import free_port
from syncd import doi
from syncd.config import load_config
from syncd.models import Consent
from syncd.secret import generate as generate_secret

SECRET = generate_secret()


def write_config(tmp_path, port: int, trusted: list[str] | None):
    path = tmp_path / f"syncd-{port}.yaml"
    proxies = f", trusted_proxies: [{', '.join(trusted)}]" if trusted is not None else ""
    path.write_text(f"""
version: 1
double_opt_in: {{secret: "${{T_DOI_SECRET}}", public_url: "http://127.0.0.1:{port}"}}
server: {{host: 127.0.0.1, port: {port}{proxies}}}
lists:
  club: {{consent: double_opt_in}}
""")
    return path


@contextlib.contextmanager
def syncd_run(engine, path, port: int, **extra_env: str) -> Iterator[str]:
    env = {**os.environ, "T_DOI_SECRET": SECRET, "SYNCD_DATABASE_URL": engine.url.render_as_string(False)}
    env.pop("FORWARDED_ALLOW_IPS", None)
    env.pop("SYNCD_TRUSTED_PROXIES", None)
    env.update(extra_env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd", "--config", str(path), "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"syncd run did not start: {proc.communicate()[1][-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def confirm_links(engine, config, n: int) -> list[str]:
    mails: list[doi.Mail] = []
    for i in range(n):
        add_contact(engine, f"person{i}@example.fr", {"club": "single_opt_in"})
    doi.send_pending(engine, config, lambda mail: mails.append(mail) or "<id@test>")
    return ["/confirm/" + m.text.split("/confirm/", 1)[1].split()[0] for m in mails]


def proof_ips(engine) -> list[str | None]:
    with Session(engine) as s:
        rows = s.exec(select(Consent).where(Consent.action == "doi_confirmed").order_by(Consent.id)).all()
        return [r.ip for r in rows]


LONG = "203.0.113.9, " + "1" * 100  # a hop that is not an address, longer than Consent.ip


@pytest.mark.parametrize("given_by", ["config", "environment"])
def test_behind_a_trusted_proxy_the_proof_records_the_client_not_the_proxy(engine, tmp_path, given_by):
    port = free_port()
    path = write_config(tmp_path, port, ["127.0.0.1"] if given_by == "config" else None)
    env = {"SYNCD_TRUSTED_PROXIES": "192.0.2.0/24,127.0.0.1"} if given_by == "environment" else {}
    config = load_config_with_secret(path)
    links = confirm_links(engine, config, 4)
    with syncd_run(engine, path, port, **env) as base:
        forwarded = [
            "198.51.100.23",  # one proxy: the client
            "192.0.2.1, 198.51.100.24, 127.0.0.1",  # the client's own claim, then two proxies
            "[2001:db8::7]:51000",
            LONG,  # an unparsable hop: the client is unknown, and confirming still works
        ]
        for link, header in zip(links, forwarded, strict=True):
            r = httpx.post(base + link, headers={"X-Forwarded-For": header})
            assert r.status_code == 200 and "confirm" in r.text.lower(), (header, r.status_code)
    assert proof_ips(engine) == ["198.51.100.23", "198.51.100.24", "2001:db8::7", None]


def test_without_trusted_proxies_a_forwarded_header_is_ignored(engine, tmp_path):
    port = free_port()
    path = write_config(tmp_path, port, None)  # the default: no proxy is trusted
    config = load_config_with_secret(path)
    links = confirm_links(engine, config, 2)
    with syncd_run(engine, path, port) as base:
        for link, header in zip(links, ["198.51.100.23", LONG], strict=True):
            r = httpx.post(base + link, headers={"X-Forwarded-For": header})
            assert r.status_code == 200, (header, r.status_code)
    assert proof_ips(engine) == ["127.0.0.1", "127.0.0.1"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.0/8, 192.0.2.10", ["10.0.0.0/8", "192.0.2.10/32"]),
        ("[fd00::/8]", ["fd00::/8"]),
        ("[]", []),
    ],
)
def test_trusted_proxies_are_read_from_the_config_or_one_variable(tmp_path, monkeypatch, text, expected):
    monkeypatch.setenv("T_PROXIES", text)
    path = tmp_path / "syncd.yaml"
    path.write_text("version: 1\nserver:\n  trusted_proxies: ${T_PROXIES}\n")
    assert [str(n) for n in load_config(path).server.trusted_proxies] == expected


def test_a_trusted_proxy_that_is_not_an_address_names_the_line(tmp_path):
    from syncd.config import ConfigError

    path = tmp_path / "syncd.yaml"
    path.write_text("version: 1\nserver:\n  trusted_proxies: [10.0.0.0/8, ingress]\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "syncd.yaml:3: server.trusted_proxies" in str(err.value) and "'ingress'" in str(err.value)


def load_config_with_secret(path):
    os.environ["T_DOI_SECRET"] = SECRET
    try:
        return load_config(path)
    finally:
        del os.environ["T_DOI_SECRET"]
