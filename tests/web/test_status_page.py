"""``GET /status`` and ``GET /``: the status the CLI prints, as JSON and as a read-only page."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session
from webfixtures import add_contact

from syncd.models import Flag, SyncRun, utcnow


def a_failed_run(engine) -> None:
    started = utcnow() - timedelta(minutes=3)
    with Session(engine) as s:
        s.add(
            SyncRun(
                list_name="news",
                target_key="brevo:12",
                started_at=started,
                finished_at=started + timedelta(seconds=4),
                status="failed",
                error="PayloadError: ana@example.fr <script>alert(1)</script>",
                counts={"applied": {"adds": 5, "removals": 1}, "planned": {"flags": 2}},
            )
        )
        s.commit()


def test_status_json_is_the_clis_status(client, engine, config):
    from syncd.status import status

    ana = add_contact(engine, "ana@example.fr", {"news": "single_opt_in", "club": "single_opt_in"})
    with Session(engine) as s:
        s.add(Flag(contact_id=ana, list_name="news", rule="not_in_segment"))
        s.commit()
    a_failed_run(engine)

    answer = client.get("/status")

    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    data = answer.json()
    expected = status(engine, config)
    assert {k: v for k, v in data.items() if k != "generated_at"} == {
        k: v for k, v in expected.items() if k != "generated_at"
    }
    news = data["lists"][0]
    run = news["targets"][0]["last_run"]
    assert (run["adds"], run["removals"], run["flags"], run["outcome"]) == (5, 1, 2, "failed")
    assert news["open_flags"]["total"] == 1 and data["lists"][2]["pending_double_opt_in"] == 1
    assert "ana@" not in answer.text and "a***@example.fr" in run["error"]


def test_the_page_shows_the_status_in_english_or_french_and_no_address(client, engine):
    add_contact(engine, "ana@example.fr", {"news": "single_opt_in"})
    a_failed_run(engine)

    english = client.get("/", headers={"Accept-Language": "en-GB,en;q=0.8"})
    assert english.status_code == 200 and english.headers["content-type"].startswith("text/html")
    assert english.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in english.headers["content-security-policy"]
    page = english.text
    assert '<html lang="en">' in page and "<h1>Sync status</h1>" in page
    assert "<h2>List Newsletter</h2>" in page and "<td>5 / 0 / 1 / 2</td>" in page
    assert "<td>4.0 s</td>" in page and "<td>failed</td>" in page
    assert "never synced" in page  # offers and club
    assert "&lt;script&gt;" in page and "<script>" not in page
    assert "ana@" not in page

    french = client.get("/?lang=fr").text
    assert '<html lang="fr">' in french and "État de la synchronisation" in french
    assert "jamais synchronisée" in french and "Doubles opt-in en attente : 0" in french


def test_the_page_on_an_empty_base(client):
    page = client.get("/?lang=en").text
    assert "Open flags: 0" in page and "Webhooks: 0 waiting; dead letters: 0." in page
    assert "Double opt-in: 0 pending; requests given up: 0." in page  # no "(s)" to read past
    french = client.get("/?lang=fr").text
    assert "Double opt-in : 0 en attente ; demandes abandonnées : 0." in french
