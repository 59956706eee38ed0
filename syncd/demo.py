"""``syncd demo``: the whole job, narrated, on a throw-away SQLite base and the bundled simulators.

Nothing leaves the machine: Brevo and Mailchimp are the loopback simulators, the confirmation
mails land in the Brevo simulator's outbox, and the webhooks are fired by the simulators at
syncd's own web app, exactly as the providers post them.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click
import httpx
from sqlmodel import Session, select

from connectors.contract import Target
from connectors.simulators.brevo import BrevoSimulator
from connectors.simulators.brevo.webhooks import campaign_fields
from connectors.simulators.harness import ThreadedServer, free_port
from connectors.simulators.mailchimp import MailchimpSimulator
from syncd import db, doi, hygiene, inbox
from syncd.cli.output import changes, plural
from syncd.config import Config, load_config
from syncd.contacts.importer import Options, import_file
from syncd.contacts.qualify import Rules
from syncd.contacts.summary import Summary
from syncd.models import Contact, Membership
from syncd.providers import make_connector
from syncd.secret import generate as generate_secret
from syncd.sync.engine import sync_list


def _project_root() -> Path:
    """The checkout the demo runs from (its config/ folder), for an editable install or the CWD."""
    for root in (Path(__file__).resolve().parents[1], Path.cwd()):
        if (root / "config" / "demo.yaml").exists():
            return root
    raise click.ClickException("config/demo.yaml not found: run the demo from the syncd checkout")


ROOT = _project_root()
CONFIG = ROOT / "config" / "demo.yaml"
SAMPLES = ROOT / "config" / "samples"
SECRET_VARIABLES = ("BREVO_WEBHOOK_SECRET", "BREVO_WEBHOOK_TOKEN", "MAILCHIMP_WEBHOOK_SECRET", "SYNCD_SECRET")
LINK = re.compile(r"https?://[^\s\"'<>]+/confirm/[^\s\"'<>]+")


def say(text: str = "", **style: Any) -> None:
    click.secho(text, **style)


def step(n: int, title: str) -> None:
    say(f"\n{n}. {title}", bold=True)


class Demo:
    def __init__(
        self,
        folder: Path,
        port: int,
        kept: bool = False,
        brevo_class: type[BrevoSimulator] = BrevoSimulator,
    ):
        """``brevo_class``: a subclass of the Brevo simulator to run (a test's, with its helpers)."""
        self.folder, self.port, self.kept = folder, port, kept
        self.brevo_class = brevo_class
        self.public = f"http://127.0.0.1:{port}"
        self.stack = ExitStack()

    # --- set-up --------------------------------------------------------------------------------

    def start(self) -> None:
        self.start_providers()
        from syncd.web.app import create_app

        app = create_app(self.config, self.engine, connectors=self.connectors)
        self.web = self.stack.enter_context(ThreadedServer(app, port=self.port))

    def start_providers(self) -> None:
        """Simulators up, the accounts' lists created, the environment config/demo.yaml reads set."""
        self.brevo = self.stack.enter_context(self.brevo_class(api_key="sim-brevo-key"))
        self.mailchimp = self.stack.enter_context(MailchimpSimulator(api_key="sim-mailchimp-key-us1"))
        # The lists are created through the official SDKs, as a marketer would in each account.
        # Fresh secrets for every run, as an operator makes them with `syncd secret`.
        self.secrets = {name: generate_secret() for name in SECRET_VARIABLES}
        self.brevo.webhook_token = self.secrets["BREVO_WEBHOOK_TOKEN"]
        env = {
            **self.secrets,
            "BREVO_API_KEY": self.brevo.api_key,
            "BREVO_BASE_URL": self.brevo.api_url,
            "MAILCHIMP_API_KEY": self.mailchimp.api_key,
            "MAILCHIMP_BASE_URL": self.mailchimp.api_url,
            "SYNCD_PUBLIC_URL": self.public,
            "SYNCD_DATABASE_URL": f"sqlite:///{self.folder / 'syncd-demo.db'}",
        }
        self.env = env
        os.environ.update(env)
        bootstrap = load_config(CONFIG)
        brevo, mailchimp = make_connector(bootstrap, "brevo"), make_connector(bootstrap, "mailchimp")
        self.news = brevo.create_list("Newsletter clients")
        self.events = brevo.create_list("Événements")
        self.vendors = brevo.create_list("Fournisseurs")
        self.audience = mailchimp.create_list("Maison Demo")
        self.env.update(
            {
                "DEMO_BREVO_NEWSLETTER": self.news.list_id,
                "DEMO_BREVO_EVENTS": self.events.list_id,
                "DEMO_BREVO_VENDORS": self.vendors.list_id,
                "DEMO_MAILCHIMP_AUDIENCE": self.audience.list_id,
            }
        )
        os.environ.update(self.env)
        self.config: Config = load_config(CONFIG)
        self.engine = db.make_engine(self.config.database)
        db.upgrade(self.engine)
        self.connectors = {
            "brevo": make_connector(self.config, "brevo"),
            "mailchimp": make_connector(self.config, "mailchimp"),
        }
        # What the accounts hold before syncd: someone filed Claire, a client, in the vendors list.
        self.brevo.put_contact(
            "claire@boulangerie-fontaine.fr",
            list_ids=[int(self.vendors.list_id)],
            attributes={"FIRSTNAME": "Claire"},
        )

    def stop(self) -> None:
        self.stack.close()
        engine = getattr(self, "engine", None)  # None: the start failed before the base was made
        if engine is not None:
            engine.dispose()

    # --- the story -----------------------------------------------------------------------------

    def run(self) -> None:
        say("syncd demo — one master base, two providers, every rule at work", bold=True, fg="cyan")
        say(
            f"Base: {self.config.database}  ·  Brevo simulator: {self.brevo.api_url}  ·  "
            f"Mailchimp simulator: {self.mailchimp.api_url}  ·  web app: {self.public}"
        )

        step(1, "Import the CRM export (config/samples/contacts.csv)")
        s = self._import("contacts.csv", "crm-export")
        say(
            f"   {s.read} rows read: {s.imported} contacts created, {s.merged} duplicates merged into them, "
            f"{s.rejected} rejected (bad addresses), {s.incomplete} kept but incomplete (no name)."
        )
        say(f"   Rejected rows, with their line and reason: {s.rejects_path}")
        say(
            f"   Phone numbers normalised to E.164; {plural(s.phones_dropped, 'unusable phone')} and "
            f"{s.siret_dropped} invalid SIRET dropped and reported."
        )

        step(2, "Sign-ups arrive from three channels, each with its consent")
        n = self._import(
            "newsletter-signups.csv", "site-newsletter", "newsletter-clients", "single_opt_in", kind="client"
        )
        say(
            f"   Site newsletter form: {n.read} sign-ups for the clients' newsletter, which needs double "
            f"opt-in: they wait for confirmation ({self._count('newsletter-clients', 'pending')} pending)."
        )
        for reason, count in n.not_joined_why.items():
            say(f"   Kept out of the list (imported all the same): {count} — {reason}.")
        f = self._import("salon-2026.csv", "salon-2026", "events", "single_opt_in")
        say(
            f"   Fair sign-up sheet: {f.read} people asked for event invitations "
            f"({f.imported} new, {f.merged + f.unchanged} already known and merged)."
        )
        w = self._import("livre-blanc.csv", "white-paper", "prospects", "single_opt_in", kind="prospect")
        say(f"   White paper download: {w.read} prospects opted in to the nurturing list.")

        step(3, "Double opt-in: confirmation mails go out, one contact confirms")
        sent = doi.send_pending(self.engine, self.config, doi.transport(self.config, self.connectors))
        say(
            f"   {sent} confirmation mails sent through Brevo's transactional API "
            f"(caught by the simulator's outbox: {len(self.brevo.outbox)} mails)."
        )
        mail = next(m for m in self.brevo.outbox if m["to"][0]["email"] == "marie.dupont@exemple.fr")
        link = LINK.search(mail.get("textContent") or mail["htmlContent"]).group(0)
        httpx.get(link, timeout=10)  # the landing page; confirming is its button (a POST)
        page = httpx.post(link, headers={"User-Agent": "Mozilla/5.0 (demo)"}, timeout=10)
        say(
            f"   Marie follows her link and confirms (HTTP {page.status_code}); the proof — time, IP, "
            "browser, wording and token hash — is in the consent ledger."
        )
        say(
            f"   Newsletter: {self._count('newsletter-clients', 'subscribed')} confirmed, "
            f"{self._count('newsletter-clients', 'pending')} still pending (never pushed until they confirm)."
        )

        step(4, "First sync to Brevo and Mailchimp")
        self._sync_all()
        claire_gone = "claire@boulangerie-fontaine.fr" not in self._on(self.vendors)
        say(
            "   Claire (a client) had been filed in the Brevo vendors list: "
            f"{'removed' if claire_gone else 'still there'} (vendors list: on_violation: remove)."
        )

        step(5, "Marie unsubscribes from the newsletter only (Brevo webhook)")
        # Blocked account-wide, with the list she left recorded on her contact (listUnsubscribed).
        self.brevo.put_contact(
            "marie.dupont@exemple.fr", list_unsubscribed=[int(self.news.list_id)], email_blacklisted=True
        )
        say(
            f"   Brevo blacklists her account-wide, as it always does: blocked = "
            f"{self._blocked('marie.dupont@exemple.fr')}."
        )
        body, content_type = self.brevo.webhook_payload(
            "unsubscribe", "marie.dupont@exemple.fr", **campaign_fields(), list_id=[int(self.news.list_id)]
        )
        hook = self.brevo.post_webhook(
            f"{self.public}/hooks/brevo/{self.secrets['BREVO_WEBHOOK_SECRET']}", body, content_type
        )
        drained = inbox.drain(self.engine, self.config, connectors=self.connectors)
        say(f"   Webhook stored (HTTP {hook.status_code}) and applied ({drained.get('done', 0)} event).")
        self._sync_all(quiet=True)
        lists = self._memberships("marie.dupont@exemple.fr")
        still = [n for n, st in lists.items() if st == "subscribed"]
        say(f"   Marie left newsletter-clients; she is still in: {', '.join(still) or 'nothing'}.")
        marie = "marie.dupont@exemple.fr"
        in_brevo = marie in self._on(self.events)
        in_mailchimp = marie in self._on(self._tag("events"))
        say(
            f"   Brevo events list: {'member' if in_brevo else 'gone'}; "
            f"Mailchimp 'events' tag: {'member' if in_mailchimp else 'gone'}; "
            f"Brevo blacklist lifted: {not self._blocked(marie)} (her order e-mails keep flowing)."
        )

        step(6, "Julie marks a mail as spam (Mailchimp webhook): that one is global")
        # A spam complaint reaches Mailchimp's webhook as an unsubscribe with the reason "abuse".
        body, content_type = self.mailchimp.webhook_payload(
            "unsubscribe", "julie.morel@exemple.fr", self.audience.list_id, reason="abuse"
        )
        hook = self.mailchimp.post_webhook(
            f"{self.public}/hooks/mailchimp/{self.secrets['MAILCHIMP_WEBHOOK_SECRET']}", body, content_type
        )
        inbox.drain(self.engine, self.config, connectors=self.connectors)
        self._sync_all(quiet=True)
        julie = "julie.morel@exemple.fr"
        left = [n for n, st in self._memberships(julie).items() if st == "subscribed"]
        remote = [
            t.key for t in (self.events, self._tag("events"), self._tag("prospects")) if julie in self._on(t)
        ]
        say(
            f"   Webhook stored (HTTP {hook.status_code}); Julie is now in {plural(len(left), 'list')} of "
            f"the master base and on {plural(len(remote), 'provider list')}: a complaint opts out of "
            "everything."
        )

        step(7, "Hygiene scan: who sits where they should not")
        counts = hygiene.scan(self.engine, self.config)
        flags = hygiene.open_flags(self.engine)
        say(
            f"   {plural(len(flags), 'open flag')}{': ' if flags else '.'}"
            + ", ".join(f"{n} {rule}" for rule, n in sorted(counts.items()))
        )
        for flag in flags[:5]:
            say(f"   - {flag['list']}: {flag['rule']} — {flag['email']} ({flag['detail']})")

        step(8, "Where to look next")
        if self.kept:
            say(f"   syncd --database {self.config.database} contacts show marie.dupont@exemple.fr")
            say(f"   syncd --database {self.config.database} flags")
        else:
            say("   syncd demo --dir demo-run                   (keeps the base, to explore it afterwards:)")
            say("   syncd --database sqlite:///demo-run/syncd-demo.db contacts show marie.dupont@exemple.fr")
        # config/demo.yaml takes its keys and secrets from the environment only, as a real config does.
        secrets = " ".join(SECRET_VARIABLES)
        say(f"   env $(syncd secret {secrets}) \\")
        say("       BREVO_API_KEY=sim-brevo-key MAILCHIMP_API_KEY=sim-mailchimp-key-us1 \\")
        say("       syncd check --config config/demo.yaml      (then start yours from config/example.yaml)")
        say(
            "   syncd demo --keep-running                   (the daemon stays up: preference centre, metrics)"
        )
        say("   README.md: lists, consent, webhooks registration, operations.")

    # --- helpers -------------------------------------------------------------------------------

    def _import(
        self,
        name: str,
        channel: str,
        list_name: str | None = None,
        consent: str = "none",
        kind: str | None = None,
    ) -> Summary:
        cfg = self.config
        options = Options(
            channel=channel,
            rules=Rules(
                default_region=cfg.qualification.default_region, kinds=tuple(cfg.kinds), default_kind=kind
            ),
            list_name=list_name,
            list_cfg=cfg.lists[list_name] if list_name else None,
            all_lists=cfg.lists,
            consent=consent,
        )
        return import_file(
            self.engine, SAMPLES / name, options, rejects_path=self.folder / f"{Path(name).stem}.rejects.csv"
        )

    def _sync_all(self, quiet: bool = False) -> None:
        for name in self.config.lists:
            report = sync_list(self.engine, self.config, name, self.connectors)
            if quiet:
                continue
            for t in report.targets:
                done = changes(t.applied, "nothing to change")
                say(f"   {name} → {t.target}: {done} ({plural(t.write_calls, 'write call')})")

    def _count(self, list_name: str, status: str) -> int:
        with Session(self.engine) as s:
            return len(
                s.exec(
                    select(Membership.id).where(
                        Membership.list_name == list_name, Membership.status == status
                    )
                ).all()
            )

    def _memberships(self, email: str) -> dict[str, str]:
        with Session(self.engine) as s:
            c = s.exec(select(Contact).where(Contact.email == email)).one()
            return {
                m.list_name: m.status for m in s.exec(select(Membership).where(Membership.contact_id == c.id))
            }

    def _tag(self, tag: str) -> Target:
        return Target("mailchimp", self.audience.list_id, tag)

    def _on(self, target: Target) -> set[str]:
        """Who is subscribed to ``target`` on the provider's side, read from its simulator."""
        if target.provider == "brevo":
            list_id = int(target.list_id)
            return {
                c["email"]
                for c in self.brevo.list_contacts(list_id)
                if not c["emailBlacklisted"] and list_id not in c["listUnsubscribed"]
            }
        return {
            m.email.lower()
            for m in self.mailchimp.audience_members(target.list_id)
            if m.status == "subscribed" and (not target.tag or target.tag in m.tags)
        }

    def _blocked(self, email: str) -> bool:
        contact = self.brevo.contact(email)
        return bool(contact and contact["emailBlacklisted"])

    def prefs_url(self, email: str) -> str:
        with Session(self.engine) as s:
            contact = s.exec(select(Contact).where(Contact.email == email)).one()
            return doi.url(self.config, f"/prefs/{doi.prefs_token(self.config, contact)}")


@contextmanager
def _folder(given: Path | None) -> Iterator[Path]:
    if given:
        given.mkdir(parents=True, exist_ok=True)
        for stale in given.glob("syncd-demo.db*"):
            stale.unlink()
        yield given
        return
    path = Path(tempfile.mkdtemp(prefix="syncd-demo-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_demo(
    folder: Path | None = None,
    *,
    keep_running: bool = False,
    port: int | None = None,
    serve: Callable[[Demo], None] | None = None,
) -> None:
    with _folder(folder) as where:
        demo = Demo(where, port or free_port(), kept=folder is not None)
        try:
            demo.start()
            demo.run()
            if keep_running:
                (serve or _serve_forever)(demo)
        finally:
            demo.stop()
    say(
        "\nDone: simulators and web app stopped." + ("" if folder else " The demo base was removed."),
        fg="green",
    )


def _serve_forever(demo: Demo) -> None:
    from syncd import daemon

    demo.web.stop()
    say("\nThe daemon is running (Ctrl-C to stop):", bold=True)
    say(f"   preference centre (Marie): {demo.prefs_url('marie.dupont@exemple.fr')}")
    say(
        f"   health: {demo.public}/healthz   readiness: {demo.public}/readyz   metrics: {demo.public}/metrics"
    )
    say(f"   Brevo simulator: {demo.brevo.api_url}   Mailchimp simulator: {demo.mailchimp.api_url}")
    daemon.run(demo.config, demo.engine, host="127.0.0.1", port=demo.port)
