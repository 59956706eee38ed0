"""The README's first command: `syncd demo` runs to the end, narrates, and leaves nothing behind."""

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_runs_the_whole_job_and_leaves_no_process(tmp_path):
    folder = tmp_path / "demo-run"
    proc = subprocess.run(
        [sys.executable, "-m", "syncd", "demo", "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr + out
    assert "40 rows read: 34 contacts created, 3 duplicates merged into them, 3 rejected" in out
    # Nicolas, a vendor in the CRM, signed up to the clients' newsletter: imported, kept out of it.
    assert "Kept out of the list (imported all the same): 1 — not in segment (kind is vendor" in out
    assert "4 confirmation mails sent" in out
    assert "Newsletter: 1 confirmed, 3 still pending" in out
    assert "Claire (a client) had been filed in the Brevo vendors list: removed" in out
    assert "Marie left newsletter-clients; she is still in: events." in out
    assert "Brevo events list: member; Mailchimp 'events' tag: member; Brevo blacklist lifted: True" in out
    assert "Julie is now in 0 lists of the master base and on 0 provider lists" in out
    assert "Done: simulators and web app stopped." in out
    # The kept base holds what the narration says.
    engine = sa.create_engine(f"sqlite:///{folder / 'syncd-demo.db'}")
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(
                sa.text(
                    "SELECT m.list_name, m.status FROM membership m JOIN contact c ON c.id = m.contact_id "
                    "WHERE c.email = 'marie.dupont@exemple.fr'"
                )
            ).all()
        )
    engine.dispose()
    assert statuses == {"newsletter-clients": "unsubscribed", "events": "subscribed"}
    assert (folder / "contacts.rejects.csv").exists()
    # The `syncd check` it suggests works as printed, from the checkout (secrets made by `syncd secret`).
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("env $(syncd secret"))
    command = "\n".join(line.split("(then")[0] for line in lines[start : start + 3])
    bin_dir = str(Path(sys.executable).parent)
    check = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    assert check.returncode == 0, check.stderr + check.stdout
    assert "config OK: config/demo.yaml" in check.stdout
