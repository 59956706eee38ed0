"""The README's first command: `syncd demo` runs to the end, narrates, and leaves nothing behind."""

import subprocess
import sys

import sqlalchemy as sa


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
    assert "Julie is now in 0 list(s) of the master base and on 0 provider list(s)" in out
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
