"""`syncd run` as an operator runs it: a real process, real simulators, SIGTERM to stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from simkit import BrevoSimulator

from connectors.contract import RemoteStatus
from connectors.simulators.harness import free_port
from syncd.config import load_config
from syncd.db import session_scope
from syncd.membership import join_list
from syncd.models import Contact
from syncd.secret import generate as generate_secret


@pytest.fixture
def brevo():
    with BrevoSimulator() as sim:
        yield sim


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_daemon_serves_health_syncs_on_schedule_and_stops_on_sigterm(tmp_path, engine, brevo):
    news = brevo.create_target("news")
    port = free_port()
    path = tmp_path / "syncd.yaml"
    path.write_text(f"""
version: 1
providers:
  brevo: {{api_key: "${{T_KEY}}", base_url: "{brevo.api_url}", webhook_secret: "${{T_HOOK}}", settle_s: 0}}
server: {{host: 127.0.0.1, port: {port}}}
lists:
  news:
    consent: single_opt_in
    targets: [{{brevo: {{list_id: {news.list_id}}}}}]
    schedule: every 1 second
""")
    hook_secret = generate_secret()
    config = load_config_with(path, T_KEY=brevo.api_key, T_HOOK=hook_secret)
    with session_scope(engine) as s:
        c = Contact(email="ana@example.fr", first_name="Ana")
        s.add(c)
        s.flush()
        join_list(s, c, "news", config.lists["news"], consent="single_opt_in", source="form")

    env = {
        **os.environ,
        "T_KEY": brevo.api_key,
        "T_HOOK": hook_secret,
        "SYNCD_DATABASE_URL": engine.url.render_as_string(hide_password=False),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd", "--log-level", "info", "--config", str(path), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ok(f"{base}/healthz"), what="/healthz")
        assert httpx.get(f"{base}/readyz").status_code == 200
        wait_for(lambda: brevo.members(news).get("ana@example.fr") is not None, what="the scheduled sync")
        assert brevo.members(news)["ana@example.fr"].status == RemoteStatus.SUBSCRIBED
        done = 'syncd_sync_runs_total{list="news",status="ok"}'
        wait_for(lambda: done in httpx.get(f"{base}/metrics").text, what="the sync run in the metrics")
        scraped = httpx.get(f"{base}/metrics").text
        calls = [
            line
            for line in scraped.splitlines()
            if line.startswith('syncd_api_calls_total{provider="brevo"}')
        ]
        assert calls and float(calls[0].split()[-1]) > 0
        live = httpx.get(f"{base}/status").json()  # the daemon sees itself lead, its list's runs
        assert live["daemon"]["up"] is True
        assert live["lists"][0]["targets"][0]["last_run"]["outcome"] in ("ok", "running")
        assert live["lists"][0]["next_run"]["state"] in ("scheduled", "due")
        assert_stops_cleanly_on_sigterm(proc)
    finally:
        kill_if_running(proc)


def test_a_config_error_stops_start_up_with_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nlists:\n  news:\n    schedul: every 1 hour\n")
    proc = subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(path), "run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"{path}:4: lists.news.schedul: unknown key" in proc.stderr


def assert_stops_cleanly_on_sigterm(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "daemon.stopped" in err


def kill_if_running(proc) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def load_config_with(path, **env):
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return load_config(path)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_syncd_run_with_the_demo_config_syncs_at_start_and_on_schedule(tmp_path):
    from syncd.contacts.importer import Options, import_file
    from syncd.demo import CONFIG, SAMPLES, Demo

    saved = dict(os.environ)
    demo = Demo(tmp_path, free_port(), brevo_class=BrevoSimulator)
    try:
        demo.start_providers()
        import_file(
            demo.engine,
            SAMPLES / "contacts.csv",
            Options(channel="crm"),
            rejects_path=tmp_path / "rejects.csv",
        )
        env = {**os.environ, **demo.env}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "syncd",
                "--log-level",
                "info",
                "--config",
                str(CONFIG),
                "run",
                "--port",
                str(demo.port),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: _ok(f"{demo.public}/healthz"), what="/healthz")
            # vendors is auto-enrolled: the sync run at start-up pushes the file's vendors.
            vendors = {
                "compta@atelier-moreau.fr",
                "bernard@boulangerie-fontaine.fr",
                "nicolas.fournier@exemple.fr",
                "arthur.muller@exemple.fr",
                "jules.mathieu@exemple.fr",
            }

            def synced() -> bool:
                held = set(demo.brevo.members(demo.vendors))
                return vendors <= held and "claire@boulangerie-fontaine.fr" not in held

            wait_for(synced, what="the start-up sync (vendors pushed, the misfiled client removed)")
            assert_stops_cleanly_on_sigterm(proc)
        finally:
            kill_if_running(proc)
    finally:
        demo.stop()
        os.environ.clear()
        os.environ.update(saved)


LEADER_ONLY = ("double-opt-in", "hygiene", "inbox-purge")


def start_daemon(config_path, env, log_path) -> subprocess.Popen:
    """`syncd run` on a free port, its JSON log in ``log_path``."""
    command = [sys.executable, "-m", "syncd", "--log-level", "info", "--config", str(config_path), "run"]
    with open(log_path, "w") as handle:
        return subprocess.Popen(
            [*command, "--port", str(free_port())], env=env, stdout=subprocess.DEVNULL, stderr=handle
        )


def stop_daemon(proc) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def finished_jobs(log_path) -> list[str]:
    """The jobs a daemon finished, from its JSON log lines."""
    jobs = []
    for line in log_path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "job.finished":
            jobs.append(event.get("job"))
    return jobs


def test_two_daemons_only_the_leader_runs_its_jobs_and_the_other_takes_over(tmp_path, engine, brevo):
    """The leader's jobs (mail, purge, hygiene) run on one daemon only. On SQLite the other daemon
    stays idle; on PostgreSQL it shares the list syncs and the inbox (tests/test_replicas.py)."""
    news = brevo.create_target("news")
    path = tmp_path / "syncd.yaml"
    path.write_text(f"""
version: 1
providers:
  brevo: {{api_key: "${{T_KEY}}", base_url: "{brevo.api_url}", settle_s: 0}}
lists:
  news:
    consent: single_opt_in
    targets: [{{brevo: {{list_id: {news.list_id}}}}}]
    schedule: every 1 second
""")
    env = {
        **os.environ,
        "T_KEY": brevo.api_key,
        "SYNCD_DATABASE_URL": engine.url.render_as_string(hide_password=False),
    }

    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_daemon(path, env, first_log)
    wait_for(lambda: "leader.acquired" in first_log.read_text(), what="a leader")
    second = start_daemon(path, env, second_log)
    try:
        wait_for(lambda: "double-opt-in" in finished_jobs(first_log), what="the leader's jobs")
        wait_for(lambda: "daemon.started" in second_log.read_text(), what="the second daemon")
        time.sleep(3)
        assert "leader.acquired" not in second_log.read_text()
        ran = finished_jobs(second_log)
        assert not set(ran) & set(LEADER_ONLY), "the follower ran a leader's job"
        if engine.dialect.name == "sqlite":
            assert ran == [], "a second daemon on SQLite ran a job"
        first.send_signal(signal.SIGKILL)  # the leader dies without a word
        first.wait(timeout=10)
        wait_for(lambda: "leader.acquired" in second_log.read_text(), timeout=30, what="the take-over")
        wait_for(lambda: "sync:news" in finished_jobs(second_log), what="the list synced by the new leader")
    finally:
        for proc in (first, second):
            stop_daemon(proc)
