"""The `syncd` command (syncd/cli.py): `syncd secret`, one clear line for a database it cannot use."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
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


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port that accepts TCP connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield listener.getsockname()[1]


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on return: nothing listens there


@pytest.mark.parametrize(
    "command",
    [
        ["inbox", "status"],
        ["contacts", "show", "ana@example.fr"],
        ["flags"],
        ["runs"],
        ["db", "current"],
        ["db", "upgrade"],
    ],
)
def test_every_command_says_in_one_line_which_database_it_cannot_reach(command):
    url = f"postgresql+psycopg://syncd:hunter2-pw@127.0.0.1:{refused_port()}/syncd"
    result = CliRunner().invoke(main, ["--database", url, *command])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(
        f"error: cannot use the database postgresql+psycopg://syncd:***@127.0.0.1:{url.split(':')[3]}"
    )
    assert len(result.output.strip().splitlines()) == 1
    assert "hunter2" not in result.output and "Traceback" not in result.output


def test_a_database_that_never_answers_is_one_line_once_the_connect_timeout_expires(tmp_path, silent_port):
    path = tmp_path / "syncd.yaml"
    path.write_text("version: 1\ndatabase_timeouts: {connect: 2s}\n")
    url = f"postgresql+psycopg://syncd:hunter2-pw@127.0.0.1:{silent_port}/syncd"
    result = CliRunner().invoke(main, ["--config", str(path), "--database", url, "inbox", "status"])
    assert result.exit_code == 1
    assert result.stderr.strip().endswith("timeout expired"), result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_sqlite_file_that_cannot_be_opened_is_one_line(tmp_path):
    url = f"sqlite:///{tmp_path}/no-such-folder/syncd.db"
    result = CliRunner().invoke(main, ["--database", url, "inbox", "status"])
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot use the database {url}: unable to open database file\n"


@pytest.mark.parametrize("url", ["nosuch://x/y", "mysql://u:hunter2-pw@h/db", "not a url"])
def test_a_database_url_syncd_cannot_use_says_how_to_write_one(url):
    result = CliRunner().invoke(main, ["--database", url, "inbox", "status"])
    assert result.exit_code == 2
    assert "expected sqlite:///path/to/syncd.db or postgresql+psycopg://" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "hunter2" not in result.output


def test_an_unknown_list_is_one_line():
    result = CliRunner().invoke(main, ["flags", "--list", "nope"])
    assert result.exit_code == 2
    assert result.stderr == "error: unknown list 'nope'; the config has: none\n"
