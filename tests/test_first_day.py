"""The README's "Your first day" walkthrough, run as it is written.

The section's files (the ``yaml`` and ``text`` blocks) are written to an empty folder and its
``bash`` blocks run there, in order, in one shell, with the installed ``syncd`` on the ``PATH``:
the same commands a new user types, against the simulators and the daemon they start. Only two
things are added, neither of which changes a command: free ports in place of the README's 8025,
8026 and 8080 (a test must not depend on them being free), and a wait for each server started
with ``&`` to listen (a person types the next command later than a script does). At the end, the
state of the master base and of both simulators is read and checked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
PORTS = {"8025": "brevo", "8026": "mailchimp", "8080": "daemon"}


def walkthrough() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Your first day")
    return text[start : text.index("\n## ", start + 3)]


def blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", section, flags=re.S | re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int) -> str:
    """A shell line that waits (at most 30 s) for 127.0.0.1:port to accept connections."""
    return (
        f"for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.1; done"
    )


def script(section: str, ports: dict[str, int]) -> str:
    lines = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT"]
    for block in blocks(section, "bash"):
        for line in block.splitlines():
            lines.append(line)
            if line.rstrip().endswith(" &"):
                who = "daemon" if " run" in line else ("brevo" if "brevo" in line else "mailchimp")
                lines.append(wait_for(ports[who]))
    # What the providers hold at the end, read before the trap stops the simulators.
    lines += [
        f'curl -sf -H "api-key: $BREVO_API_KEY" '
        f'"http://127.0.0.1:{ports["brevo"]}/v3/contacts/lists/12/contacts" > brevo-news.json',
        f'curl -sf -u "any:$MAILCHIMP_API_KEY" '
        f'"http://127.0.0.1:{ports["mailchimp"]}/3.0/lists/a1b2c3d4e5/members" > mailchimp.json',
    ]
    text = "\n".join(lines) + "\n"
    for readme_port, who in PORTS.items():
        text = text.replace(f"127.0.0.1:{readme_port}", f"127.0.0.1:{ports[who]}")
    return text


def test_the_readme_first_day_walkthrough_runs_as_written(tmp_path):
    if shutil.which("curl") is None:
        if os.environ.get("CI"):
            pytest.fail("the walkthrough needs curl (.ci/run installs it)")
        pytest.skip("the walkthrough needs curl")
    section = walkthrough()
    ports = {who: free_port() for who in PORTS.values()}
    config = blocks(section, "yaml")[0]
    for readme_port, who in PORTS.items():
        config = config.replace(f"127.0.0.1:{readme_port}", f"127.0.0.1:{ports[who]}")
        config = config.replace(f"port: {readme_port}", f"port: {ports[who]}")
    (tmp_path / "syncd.yaml").write_text(config, encoding="utf-8")
    (tmp_path / "contacts.csv").write_text(blocks(section, "text")[0], encoding="utf-8")
    run = tmp_path / "first-day.sh"
    run.write_text(script(section, ports), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCD_", "BREVO_", "MAILCHIMP_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    done = subprocess.run(
        ["bash", str(run)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr
    out = done.stdout
    assert "nothing missing" in out.lower() or "missing" not in out.lower().split("syncd check")[-1]
    # The master base: Ana joined the club after confirming; Bruno left the newsletter only.
    db = sqlite3.connect(tmp_path / "syncd.db")
    rows = db.execute(
        "SELECT c.email, m.list_name, m.status FROM membership m JOIN contact c ON c.id = m.contact_id"
    ).fetchall()
    memberships = {(email, name): status for email, name, status in rows}
    assert memberships[("ana@example.fr", "news")] == "subscribed"
    assert memberships[("ana@example.fr", "club")] == "subscribed"
    assert memberships[("bruno@example.fr", "news")] == "unsubscribed"
    proofs = db.execute(
        "SELECT count(*) FROM consent WHERE list_name = 'club' AND action = 'doi_confirmed'"
    ).fetchone()[0]
    assert proofs == 1
    assert (
        db.execute("SELECT global_opt_out FROM contact WHERE email = 'bruno@example.fr'").fetchone()[0] == 0
    )
    # The providers: Ana on the Brevo list and on both tags; Bruno off the newsletter everywhere.
    brevo = {c["email"] for c in json.loads((tmp_path / "brevo-news.json").read_text())["contacts"]}
    assert brevo == {"ana@example.fr"}
    members = json.loads((tmp_path / "mailchimp.json").read_text())["members"]
    tags = {m["email_address"]: {t["name"] for t in m["tags"]} for m in members}
    assert tags["ana@example.fr"] == {"news", "club"}
    assert "news" not in tags.get("bruno@example.fr", set())
