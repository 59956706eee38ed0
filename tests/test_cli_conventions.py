"""The CLI's conventions, on a first day's mistakes: every bad input is one line on stderr naming
what is wrong, exit status 2 for a usage or config error, 1 for a failure, 130 for Ctrl-C, no
traceback (but with --debug), and no database or rejects file left behind by a command that failed.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from syncd.cli import main

CONFIG = """\
version: 1
lists:
  newsletter:
    consent: single_opt_in
  clients:
    consent: legitimate_interest
    segment: {kind: [client]}
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A new user's empty working folder, with no config or database named in the environment."""
    monkeypatch.chdir(tmp_path)
    for var in ("SYNCD_CONFIG", "SYNCD_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def syncd(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def created(folder: Path) -> list[str]:
    """The files a command left in the folder besides those the test wrote."""
    return sorted(p.name for p in folder.iterdir() if p.name not in {"syncd.yaml", "people.csv", "a.xlsx"})


def assert_one_error_line(result: Result, status: int, message: str) -> None:
    assert result.exit_code == status, result.output
    assert result.stdout == ""
    assert result.stderr == f"error: {message}\n"


@pytest.mark.parametrize("command", [["sync", "--list", "newsleter"], ["flags", "--list", "newsleter"]])
def test_an_unknown_list_names_it_and_the_known_ones(folder, command):
    (folder / "syncd.yaml").write_text(CONFIG)
    result = syncd(*command)
    assert_one_error_line(result, 2, "unknown list 'newsleter'; the config has: newsletter, clients")
    assert created(folder) == []


@pytest.mark.parametrize("command", [["sync"], ["status"], ["webhooks", "register"]])
def test_a_command_about_the_lists_without_a_config_says_where_it_looked_and_creates_no_database(
    folder, command
):
    result = syncd(*command)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: no config file: neither --config nor SYNCD_CONFIG is set")
    assert str(folder / "syncd.yaml") in result.stderr
    assert created(folder) == []


def test_sync_of_a_config_without_lists_says_so(folder):
    (folder / "syncd.yaml").write_text("version: 1\n")
    assert_one_error_line(syncd("sync"), 2, "syncd.yaml declares no list: nothing to sync")
    assert created(folder) == []


def test_check_names_the_file_it_found_in_the_folder(folder):
    (folder / "syncd.yaml").write_text(CONFIG)
    result = syncd("check")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("config OK: syncd.yaml\n")


def test_check_without_a_config_says_it_checked_no_file(folder):
    result = syncd("check")
    assert result.exit_code == 0, result.output
    assert "config OK: no config file (no --config, no SYNCD_CONFIG, no ./syncd.yaml)" in result.stdout


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_a_libpq_url_means_psycopg_and_an_unreachable_base_is_one_line_naming_the_host(folder, scheme):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed on leaving: nothing listens there
    url = f"{scheme}://syncd:hunter2-pw@127.0.0.1:{port}/syncd"
    result = syncd("--database", url, "flags")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(
        f"error: cannot use the database postgresql+psycopg://syncd:***@127.0.0.1:{port}/syncd: "
    )
    assert len(result.stderr.splitlines()) == 1 and "hunter2" not in result.stderr
    assert created(folder) == []


def test_debug_shows_the_error_itself_for_a_traceback(folder):
    (folder / "base").mkdir()  # a folder where the SQLite file should be
    url = f"sqlite:///{folder / 'base'}"
    quiet = syncd("--database", url, "flags")
    assert quiet.exit_code == 1 and "Traceback" not in quiet.output
    assert quiet.stderr.startswith(f"error: cannot use the database {url}: unable to open database file")
    loud = syncd("--debug", "--database", url, "flags")
    assert loud.exit_code == 1
    assert type(loud.exception).__name__ == "OperationalError"  # not turned into one line


def test_run_on_a_busy_port_fails_before_saying_it_listens(folder):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = syncd("run", "--port", str(port))
    assert result.exit_code == 1, result.output
    assert "listening" not in result.output
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert "another process listens there" in result.stderr
    assert created(folder) == []


def test_a_text_file_named_xlsx_is_not_a_valid_excel_workbook(folder):
    (folder / "a.xlsx").write_text("email\nana@example.fr\n")
    result = syncd("import", "a.xlsx", "--source", "fair")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("error: cannot read a.xlsx: not a valid Excel workbook")
    assert "Traceback" not in result.output
    assert created(folder) == []  # neither a database nor a rejects file


@pytest.mark.parametrize(
    "command, status, message",
    [
        (["contacts", "show", "ana@example.fr"], 1, "no such contact"),
        (["contacts", "export", "ana@example.fr"], 1, "no such contact"),
        (["import", "absent.csv", "--source", "fair"], 1, None),
        (["import", "people.csv", "--source", "fair", "--kind", "alien"], 2, None),
    ],
)
def test_a_command_that_fails_leaves_no_database_behind(folder, command, status, message):
    (folder / "people.csv").write_text("email\nana@example.fr\n")
    result = syncd(*command)
    assert result.exit_code == status, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    if message:
        assert result.stderr == f"error: {message}\n"
    assert created(folder) == []


def test_a_command_that_succeeds_keeps_its_database(folder):
    (folder / "people.csv").write_text("email\nana@example.fr\n")
    result = syncd("import", "people.csv", "--source", "fair")
    assert result.exit_code == 0, result.output
    assert "syncd.db" in created(folder)


@pytest.mark.parametrize(
    "command, answer",
    [
        (["history"], "no sync run yet"),
        (["flags"], "no open flags"),
        (["doi", "status"], None),
        (["inbox", "status"], None),
    ],
)
def test_a_command_that_only_reads_a_base_not_yet_made_answers_and_leaves_none_behind(
    folder, command, answer
):
    result = syncd(*command)
    assert result.exit_code == 0, result.output
    if answer:
        assert result.stdout == f"{answer}\n"
    assert created(folder) == []


def test_flags_when_there_are_none_is_one_clear_line(folder):
    (folder / "syncd.yaml").write_text(CONFIG)
    result = syncd("flags")
    assert result.exit_code == 0, result.output
    assert result.stdout == "no open flags\n"
    assert json.loads(syncd("flags", "--format", "json").stdout) == []
    assert syncd("flags", "--format", "csv").stdout.splitlines() == [
        "list,rule,email,target,detail,detected_at"
    ]


def _on(engine) -> list[str]:
    return ["--database", engine.url.render_as_string(hide_password=False)]


def test_flags_print_a_table_with_a_header_row_and_a_count_in_english(engine):
    from sqlmodel import Session

    from syncd.models import Flag

    with Session(engine) as session:
        session.add(
            Flag(list_name="vendors", rule="unknown_remote", target_key="brevo:3", detail="added there")
        )
        session.commit()
    result = CliRunner().invoke(main, [*_on(engine), "flags", "--no-scan"])
    assert result.exit_code == 0, result.output
    header, row, count = result.stdout.splitlines()
    assert header.split() == ["LIST", "RULE", "EMAIL", "TARGET", "DETAIL"]
    assert row.split() == ["vendors", "unknown_remote", "-", "brevo:3", "added", "there"]
    assert count == "1 open flag"


def test_inbox_status_as_json(engine):
    result = CliRunner().invoke(main, [*_on(engine), "inbox", "status", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"counts": {}, "dead": []}
    table = CliRunner().invoke(main, [*_on(engine), "inbox", "status"])
    assert table.stdout == "the inbox is empty\n"


def test_sync_dry_run_as_json_is_the_plan_with_addresses_masked(live, tmp_path):
    people = tmp_path / "people.csv"
    people.write_text("email;type\nclaire@boulangerie.fr;client\n", encoding="utf-8")
    assert (
        live.cli(
            "import", str(people), "--source", "crm", "--list", "clients", "--consent", "single_opt_in"
        ).exit_code
        == 0
    )
    result = live.cli("sync", "--dry-run", "--list", "clients", "--format", "json")
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)
    assert report["list_name"] == "clients" and report["dry_run"] is True
    assert [t["planned"]["adds"] for t in report["targets"]] == [1, 1]
    (sample,) = report["targets"][0]["samples"]["adds"]
    assert "claire@boulangerie.fr" not in result.stdout and sample["email"].endswith("@boulangerie.fr")
    table = live.cli("sync", "--dry-run", "--list", "clients")
    assert "1 addition (planned over every contact)" in table.stdout


@pytest.mark.parametrize(
    "raised, status, message",
    [
        (
            RuntimeError("boom"),
            1,
            "unexpected RuntimeError: boom (run again with --debug to see the traceback)",
        ),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_an_error_no_command_expected_is_one_line_too(folder, monkeypatch, raised, status, message):
    from syncd import hygiene

    def scan(*args, **kw):  # a defect, or the operator's Ctrl-C, in the middle of a command
        raise raised

    monkeypatch.setattr(hygiene, "scan", scan)
    assert_one_error_line(syncd("flags"), status, message)
    assert created(folder) == []
    if status == 1:
        assert syncd("--debug", "flags").exception is raised


def test_output_cut_short_by_its_reader_is_no_error(folder):
    """`syncd history | head -1`: the reader leaves before syncd has written everything."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd", "history"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # the reader is gone before the first line
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 141  # as a program killed by SIGPIPE, to a shell
    assert stderr == ""
