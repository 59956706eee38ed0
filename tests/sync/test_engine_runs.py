"""A sync run's record: a run killed mid-way is marked interrupted by the next run of its list."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from simkit import BrevoSimulator
from sqlmodel import Session, select

from syncd.cli import main
from syncd.config import load_config
from syncd.db import session_scope
from syncd.membership import join_list
from syncd.models import Contact, SyncRun


@pytest.fixture
def brevo():
    with BrevoSimulator() as sim:
        yield sim


def runs(engine) -> list[SyncRun]:
    with Session(engine) as s:
        return list(s.exec(select(SyncRun).order_by(SyncRun.id)))


def wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_run_is_marked_interrupted_by_the_next_run_of_its_list(tmp_path, engine, brevo, monkeypatch):
    news = brevo.create_target("news")
    path = tmp_path / "syncd.yaml"
    path.write_text(
        f"""
version: 1
providers:
  brevo: {{api_key: "${{T_BREVO_KEY}}", base_url: "{brevo.api_url}", settle_s: 0}}
lists:
  news:
    consent: single_opt_in
    targets: [{{brevo: {{list_id: {news.list_id}}}}}]
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("T_BREVO_KEY", brevo.api_key)
    config = load_config(path)
    with session_scope(engine) as s:
        c = Contact(email="ana@example.fr", first_name="Ana")
        s.add(c)
        s.flush()
        join_list(s, c, "news", config.lists["news"], consent="single_opt_in", source="form")
    url = engine.url.render_as_string(hide_password=False)

    brevo.latency_s = 60  # the run waits on the provider: it is killed in the middle
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd", "--config", str(path), "--database", url, "sync"],
        env={**os.environ, "T_BREVO_KEY": brevo.api_key},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: [r.status for r in runs(engine)] == ["running"], "the run to start")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    brevo.latency_s = 0
    [killed] = runs(engine)
    assert (killed.status, killed.finished_at) == ("running", None)  # what a kill leaves behind

    result = CliRunner().invoke(main, ["--config", str(path), "--database", url, "sync"])
    assert result.exit_code == 0, result.output

    before, after = runs(engine)
    assert before.id == killed.id and before.status == "interrupted"
    assert before.finished_at is not None and "interrupted" in (before.error or "")
    assert after.status == "ok"
    shown = CliRunner().invoke(main, ["--config", str(path), "--database", url, "runs"])
    assert shown.exit_code == 0, shown.output
    newest, oldest = shown.output.splitlines()
    assert f"#{after.id} " in newest and " ok " in newest and "applied: 1 addition" in newest
    assert f"#{killed.id} " in oldest and " interrupted " in oldest and "killed" in oldest


def test_a_run_of_another_list_or_target_is_left_alone(engine, brevo, tmp_path, monkeypatch):
    news, offers = brevo.create_target("news"), brevo.create_target("offers")
    path = tmp_path / "syncd.yaml"
    path.write_text(
        f"""
version: 1
providers:
  brevo: {{api_key: "${{T_BREVO_KEY}}", base_url: "{brevo.api_url}", settle_s: 0}}
lists:
  news: {{targets: [{{brevo: {{list_id: {news.list_id}}}}}]}}
  offers: {{targets: [{{brevo: {{list_id: {offers.list_id}}}}}]}}
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("T_BREVO_KEY", brevo.api_key)
    with session_scope(engine) as s:
        s.add(SyncRun(list_name="offers", target_key=f"brevo:{offers.list_id}"))  # running elsewhere
    url = engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(main, ["--config", str(path), "--database", url, "sync", "--list", "news"])
    assert result.exit_code == 0, result.output
    assert {(r.list_name, r.status) for r in runs(engine)} == {("offers", "running"), ("news", "ok")}
