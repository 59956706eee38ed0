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

from connectors.contract import Target
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


def brevo_lists(tmp_path, engine, brevo, monkeypatch, ids: dict[str, str], settle_s: float = 0):
    """A config of single-opt-in lists, each on the Brevo list of ``ids``, and Ana a member of
    every one. Returns the config file's path and the database URL."""
    path = tmp_path / "syncd.yaml"
    lists = "".join(
        f"  {name}:\n    consent: single_opt_in\n    targets: [{{brevo: {{list_id: {list_id}}}}}]\n"
        for name, list_id in ids.items()
    )
    path.write_text(
        f"""
version: 1
providers:
  brevo: {{api_key: "${{T_BREVO_KEY}}", base_url: "{brevo.api_url}", settle_s: {settle_s}}}
lists:
{lists}""",
        encoding="utf-8",
    )
    monkeypatch.setenv("T_BREVO_KEY", brevo.api_key)
    config = load_config(path)
    with session_scope(engine) as s:
        c = Contact(email="ana@example.fr", first_name="Ana")
        s.add(c)
        s.flush()
        for name in ids:
            join_list(s, c, name, config.lists[name], consent="single_opt_in", source="form")
    return path, engine.url.render_as_string(hide_password=False)


def test_a_killed_run_is_marked_interrupted_by_the_next_run_of_its_list(tmp_path, engine, brevo, monkeypatch):
    path, url = brevo_lists(
        tmp_path, engine, brevo, monkeypatch, {"news": brevo.create_target("news").list_id}
    )

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


@pytest.mark.parametrize("jobs", [1, 3])
def test_sync_runs_its_lists_jobs_at_a_time_and_reports_them_in_the_config_order(
    tmp_path, engine, brevo, monkeypatch, jobs
):
    names = ("news", "offers", "club")
    ids = {name: brevo.create_target(name).list_id for name in names}
    # Each list waits a second after its writes before it reads them back: lists run at once
    # overlap those waits.
    path, url = brevo_lists(tmp_path, engine, brevo, monkeypatch, ids, settle_s=1)

    result = CliRunner().invoke(main, ["--config", str(path), "--database", url, "sync", "--jobs", str(jobs)])

    assert result.exit_code == 0, result.output
    headers = [line.split(":")[0] for line in result.output.splitlines() if line.endswith(": sync")]
    assert headers == list(names)
    done = runs(engine)
    assert sorted(r.list_name for r in done) == sorted(names) and {r.status for r in done} == {"ok"}
    for name in names:
        assert list(brevo.members(Target("brevo", ids[name]))) == ["ana@example.fr"]
    first_end = min(r.finished_at for r in done)
    overlapping = [r for r in done if r.started_at < first_end]
    # One at a time: each started after the one before it ended; three at once: all began before
    # any ended (each took at least its second's wait).
    assert len(overlapping) == (1 if jobs == 1 else 3)


def test_sixteen_lists_synced_at_once_each_get_their_connections(tmp_path, engine, brevo, monkeypatch):
    """A list's run holds three connections of the pool at once (the locks that keep its runs
    apart, and its session): the pool grows with the lists synced at once, so that none waits for
    a connection until it gives up (at the default pool size, the eighth list's run failed)."""
    names = [f"list{i:02d}" for i in range(16)]
    ids = {name: brevo.create_target(name).list_id for name in names}
    path, url = brevo_lists(tmp_path, engine, brevo, monkeypatch, ids, settle_s=1)

    result = CliRunner().invoke(main, ["--config", str(path), "--database", url, "sync", "--jobs", "16"])

    assert result.exit_code == 0, result.output
    assert {r.list_name: r.status for r in runs(engine)} == dict.fromkeys(names, "ok")


def test_a_list_that_fails_leaves_the_other_lists_run_at_the_same_time_whole(
    tmp_path, engine, brevo, monkeypatch
):
    news = brevo.create_target("news")
    path, url = brevo_lists(tmp_path, engine, brevo, monkeypatch, {"news": news.list_id, "offers": "999"})

    result = CliRunner().invoke(main, ["--config", str(path), "--database", url, "sync", "--jobs", "2"])

    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output.split("offers: sync")[1]
    assert list(brevo.members(news)) == ["ana@example.fr"]
    assert {r.list_name: r.status for r in runs(engine)} == {"news": "ok", "offers": "failed"}
