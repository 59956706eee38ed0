"""Shared fixtures: a real master base (SQLite file, or PostgreSQL when SYNCD_TEST_DATABASE_URL is set).

On PostgreSQL every test session gets its own schema, so concurrent runs never collide.
The schema is built by the Alembic migrations, as in production.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from syncd import db


def _pg_engine(url: str, schema: str | None = None) -> Engine:
    kw = {"connect_args": {"options": f"-csearch_path={schema}"}} if schema else {}
    return db.make_engine(url, **kw)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A URL to a fresh, migrated master base for this test session."""
    url = os.environ.get("SYNCD_TEST_DATABASE_URL")
    if not url:
        path = tmp_path_factory.mktemp("db") / "syncd-test.db"
        engine = db.make_engine(f"sqlite:///{path}")
        db.upgrade(engine)
        engine.dispose()
        yield f"sqlite:///{path}"
        return
    schema = f"syncd_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = _pg_engine(url, schema)
    db.upgrade(engine)
    engine.dispose()
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def _session_engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(_session_engine: Engine) -> Iterator[Engine]:
    """The session's master base, emptied before each test."""
    with _session_engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())
    yield _session_engine


# --- a live world: both simulators, the daemon's web app, and the CLI on a config naming them -----

LIVE_CONFIG = """\
version: 1
providers:
  brevo:
    api_key: "${{LIVE_BREVO_KEY}}"
    base_url: "{brevo_url}"
    webhook_secret: "${{LIVE_BREVO_HOOK}}"
    webhook_token: "${{LIVE_BREVO_TOKEN}}"
    settle_s: 0
  mailchimp:
    api_key: "${{LIVE_MC_KEY}}"
    base_url: "{mailchimp_url}"
    webhook_secret: "${{LIVE_MC_HOOK}}"
    settle_s: 0
inbox: {{retention: 30d}}
lists:
  clients:
    consent: single_opt_in
    segment: {{kind: [client]}}
    targets:
      - brevo: {{list_id: {clients_b}}}
      - mailchimp: {{audience: "{audience}", tag: clients}}
  vendors:
    consent: legitimate_interest
    segment: {{kind: [vendor]}}
    auto_enroll: true
    exclusive_with: [clients]
    on_violation: remove
    targets: [{{brevo: {{list_id: {vendors_b}}}}}]
"""


@pytest.fixture(scope="session")
def _live_simulators():
    from simkit import BrevoSimulator, MailchimpSimulator

    with BrevoSimulator() as brevo, MailchimpSimulator() as mailchimp:
        yield brevo, mailchimp


@pytest.fixture
def live(engine, tmp_path, monkeypatch, _live_simulators):
    """Fresh provider lists, a config file mapping ``clients`` and ``vendors`` (exclusive, remove)
    onto them, the web app serving the webhooks on a loopback port, and ``live.cli(...)``."""
    import httpx
    from click.testing import CliRunner

    from connectors.simulators.harness import ThreadedServer
    from syncd.cli import main
    from syncd.config import load_config
    from syncd.web.app import create_app

    brevo, mailchimp = _live_simulators
    from syncd.secret import generate as generate_secret

    clients_b, vendors_b = brevo.create_target("clients"), brevo.create_target("vendors")
    hooks = {"brevo": generate_secret(), "mailchimp": generate_secret()}
    brevo.webhook_token = token = generate_secret()  # carried by the webhooks the simulator fires
    audience = mailchimp.create_target("audience")
    for name, value in (
        ("LIVE_BREVO_KEY", brevo.api_key),
        ("LIVE_MC_KEY", mailchimp.api_key),
        ("LIVE_BREVO_HOOK", hooks["brevo"]),
        ("LIVE_BREVO_TOKEN", token),
        ("LIVE_MC_HOOK", hooks["mailchimp"]),
    ):
        monkeypatch.setenv(name, value)
    path = tmp_path / "syncd.yaml"
    path.write_text(
        LIVE_CONFIG.format(
            brevo_url=brevo.api_url,
            mailchimp_url=mailchimp.api_url,
            clients_b=clients_b.list_id,
            vendors_b=vendors_b.list_id,
            audience=audience.list_id,
        ),
        encoding="utf-8",
    )
    url = engine.url.render_as_string(hide_password=False)
    w = type("Live", (), {})()
    w.engine, w.brevo, w.mailchimp, w.config_path = engine, brevo, mailchimp, path
    w.config = load_config(path)
    w.clients_b, w.vendors_b = clients_b, vendors_b
    w.clients_mc = type(audience)(audience.provider, audience.list_id, "clients")
    w.targets = ((brevo, clients_b), (brevo, vendors_b), (mailchimp, w.clients_mc))
    w.cli = lambda *args: CliRunner().invoke(main, ["--config", str(path), "--database", url, *args])
    with ThreadedServer(create_app(w.config, engine)) as server:
        w.brevo_hook = f"{server.url}/hooks/brevo/{hooks['brevo']}"
        w.mailchimp_hook = f"{server.url}/hooks/mailchimp/{hooks['mailchimp']}"

        def post(url: str, body: bytes, content_type: str) -> httpx.Response:
            """One delivery as the provider sends it (Brevo's with its bearer token)."""
            headers = {"Content-Type": content_type}
            if url == w.brevo_hook:
                headers["Authorization"] = f"Bearer {token}"
            return httpx.post(url, content=body, headers=headers, timeout=10)

        w.post = post
        yield w
