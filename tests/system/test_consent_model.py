"""A model-based test of consent integrity across the whole system (issue 10, "Build").

A Hypothesis ``RuleBasedStateMachine`` drives the real pieces, never a mock:

- the master base (SQLite, or PostgreSQL with ``SYNCD_TEST_DATABASE_URL``), built by the migrations;
- the sync engine (``syncd.sync.engine.sync_list``) with the real Brevo and Mailchimp connectors,
  talking to both bundled simulators over HTTP through the official SDKs;
- the importer (``import_file`` on a CSV, as ``syncd import --list L --consent ...`` does);
- the daemon's web app on a real loopback server: webhooks are POSTed to it by "the provider"
  and stored in the inbox, then applied by ``syncd.inbox.drain``; double-opt-in links are
  confirmed by a POST to its ``/confirm/<token>`` page;
- double-opt-in mail through the Brevo transactional API (the simulator's outbox);
- GDPR erasure through the CLI (``syncd contacts forget EMAIL --yes``);
- syncd's own ways out, from the confirmation mail the person holds: its one-click unsubscribe
  link (``List-Unsubscribe``, RFC 8058) and its preference centre (untick a list, or everything).

World: 4 people (slots 0-3, one address each, unique per example), 3 syncd lists over 2 Brevo
lists and 1 Mailchimp audience with tags::

    news      single_opt_in (a YAML edit may switch it to double_opt_in)   brevo B1 + mailchimp A/news
    club      double_opt_in                                                 mailchimp A/club
    partners  legitimate_interest, auto_enroll, segment kind [partner]      brevo B2 + mailchimp A/partners
              (a YAML edit may widen the segment to [partner, client])

Rules: import with and without consent (into any list, or none); the double-opt-in job sends the
confirmation mails; a person clicks a confirmation link; Mailchimp-side unsubscribe, archive, clean
(hard bounce), spam complaint and a resubscription through a Mailchimp form; Brevo per-list
unsubscribe with the per-list feature on (``listUnsubscribed`` + block) and off (account-wide block
only), an account-wide block set in Brevo's UI, a spam complaint at Brevo, a contact added to a list
in either provider's UI, a Brevo contact deleted, a change of address (a Mailchimp member's profile
form; an account user in Brevo's UI; onto an erased address); every
provider-side action queues its webhook, which is then delivered (in any order: late, out of order),
duplicated or lost; draining the inbox; ``sync`` of any list (plus a second, unchanged run); a sync
killed half-way (the engine's ``stop`` event, or a simulator outage / dropped connections mid-run);
the YAML edits above; GDPR erasure; a withdrawal through a mail's one-click unsubscribe link or its
preference centre (that list, or everything), whatever the person's address is by then.

What syncd can know (the model's notion of "opted out after the latest opt-in")
-------------------------------------------------------------------------------
An opt-out is an event with the real time of the provider-side action. It becomes *known* to syncd
 (a) when its webhook was delivered (2xx) and the inbox drained after that, and applied it: a
     delivery naming an address no contact has yet (the change of address onto it still to come,
     or lost) waits in the inbox, retried, and tells nothing until it is applied, or
 (b) when a sync of a list with the target that shows it *completes without failure*, and the
     target showed it when that sync started: Mailchimp ``unsubscribed``/``cleaned`` on the tag's
     view of the audience; Brevo ``listUnsubscribed`` naming the list, or ``emailBlacklisted`` on a
     contact of the list;
 (c) at once when it is taken on syncd's own pages (the page answered 200): the link must work,
     whatever the person's address is by then.
A lost webhook is therefore known only through the next completed sync of a list that reads that
target; an opt-out whose evidence vanished before any such sync (the contact deleted in Brevo,
re-added in the UI) is never known, and nothing is asserted about it.

A person is followed under all of their addresses (I1 holds for every one of them on every target,
and the master base holds one contact per person) once syncd can tell a new address is theirs: by
the change's webhook, or by the member's provider id that syncd read before the change. A change
made before syncd ever read the member's id leaves nothing to tell the new address by if its
webhook is lost: that person is no longer followed (``retired``), and the run counts such changes.

Meaning of each provider-side action, from the issue and the README:
- Mailchimp unsubscribe: opt-out of every syncd list on that audience (news, club, partners).
- Brevo unsubscribe, per-list feature on: opt-out of the syncd lists on that Brevo list only;
  the account-wide block that comes with it must be lifted (transactional mail stays possible).
- Brevo unsubscribe, feature off (block only; the webhook still names the list, as Brevo's
  campaign webhooks do): if its webhook was applied before a sync saw the block, a per-list
  opt-out (the block may then be lifted); otherwise a block without a per-list reason, i.e. a
  global opt-out (issue 10, defect 2). Either way at least an opt-out of that list.
- Account-wide block in Brevo's UI (no webhook): a global opt-out once a sync sees it.
- Spam complaint (either provider) and "cleaned"/hard bounce: never undone.
- Archive (Mailchimp), contact deletion (Brevo), add to a list in a provider's UI: no consent change.
- A Brevo block with no per-list reason is never lifted by syncd unless the person opted in again
  after it (a new recorded opt-in), or the contact was deleted/renamed at Brevo meanwhile.
An opt-in is one syncd recorded: an import with ``--consent single_opt_in`` (into a double-opt-in
list: the request), or a confirmation link accepted by the web app.
Clock: provider stamps are to the second; syncd honours an opt-out stamped in the same second as
an opt-in (``events.SAME_SECOND``). So "opted out after the latest opt-in" uses real time order,
and the check that nothing closes a membership *without* a reason ignores opt-outs from up to
``AMBIGUOUS_S`` before the opt-in.

Invariants
----------
After every sync of list L that completes (``report.ok``), on each target of L:
 I1  nobody with a known opt-out of L newer than their latest opt-in to L (or a known complaint
     or hard bounce) is subscribed or pending there;
 I2c a contact whose Brevo block comes only from per-list unsubscribes (feature on) of a list of
     L is not blocked any more (transactional mail possible, scope ``list``);
 I3  if L is double opt-in, every member syncd pushed (TargetState with a pushed hash) that is
     subscribed there has a ``doi_confirmed`` proof row for L;
 I4t no erased address is on L's targets;
 I5  (rule ``sync_twice``) a second run with no change makes zero write calls at both providers.
After every step:
 I1m no confirmation mail went to someone with a known opt-out of that list newer than their
     latest opt-in (checked when the double-opt-in job sends);
 I2a a per-list opt-out changes no other list: every membership with a recorded opt-in and no
     opt-out event of any kind for that list since is still subscribed or pending, and nobody is
     ``global_opt_out`` without a global event (unsubscribe from all, complaint, block);
 I2b a known global opt-out without a newer opt-in stays (``global_opt_out``), a known complaint
     or hard bounce stays forever, and a Brevo block without a per-list reason is not lifted;
 I4  an erased address is nowhere in the base (contacts, sources, flags, audit trail, applied
     inbox rows; the tombstone's hash aside).

Known open defects
------------------
``KNOWN_OPEN`` names the rules (or checks) that reproduce defects still open in issue 10; each is
disabled while its name is in the set, so that this suite passes on the code as it is. Empty the
set as the fixes land (run with ``SYNCD_MODEL_ALL=1`` to enable every rule without editing).

Running it
----------
Normal run (fixed budget, part of the suite)::

    .venv/bin/pytest -q -p no:cacheprovider tests/system/test_consent_model.py

Long run by hand: ``SYNCD_MODEL_EXAMPLES=N`` (N examples of up to ``SYNCD_MODEL_STEPS`` steps,
default 40), or ``--hypothesis-profile=consent-long`` (700 examples of up to 40 steps)::

    SYNCD_MODEL_EXAMPLES=500 .venv/bin/pytest -n 0 -q -p no:cacheprovider tests/system/test_consent_model.py
"""

from __future__ import annotations

import ast
import itertools
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from simkit import BrevoSimulator, MailchimpSimulator
from sqlmodel import Session, SQLModel, select

from connectors.brevo import BrevoConnector
from connectors.contract import EventKind, RemoteStatus, Target
from connectors.mailchimp import MailchimpConnector
from connectors.simulators.harness import ThreadedServer
from syncd import doi
from syncd.cli import main
from syncd.config import load_config
from syncd.contacts.importer import Options, import_file
from syncd.inbox import drain
from syncd.models import (
    AuditLog,
    Consent,
    Contact,
    DoiToken,
    Flag,
    InboxEvent,
    Membership,
    Source,
    TargetState,
)
from syncd.secret import generate as generate_secret
from syncd.sync.engine import sync_list
from syncd.web.app import create_app

# Rules (or checks) that reproduce a defect still open in issue 10. Empty it as the fixes land.
KNOWN_OPEN: set[str] = set()
if os.environ.get("SYNCD_MODEL_ALL"):
    KNOWN_OPEN = set()
KNOWN_OPEN -= set(filter(None, os.environ.get("SYNCD_MODEL_ENABLE", "").split(",")))

LISTS = ("news", "club", "partners")
SLOTS = 4
AMBIGUOUS_S = 2.5
BREVO_HOOK, BREVO_TOKEN, MC_HOOK, DOI_SECRET = (generate_secret() for _ in range(4))
_examples = itertools.count(1)
STATS = {
    "examples": 0,
    "steps": 0,
    "address changes followed": 0,
    "address changes unknowable": 0,
    "page withdrawals": 0,
}


def enabled(name: str) -> bool:
    return name not in KNOWN_OPEN


# --- the world: simulators and the web app, once per module -------------------------------------------


@dataclass
class World:
    brevo: BrevoSimulator
    mailchimp: MailchimpSimulator
    app_url: str
    engine: sa.Engine
    tmp: Path


def _config_text(world: World, ids: dict[str, str], *, news_consent: str, partner_kinds: str) -> str:
    return f"""
version: 1
providers:
  brevo:
    api_key: "${{T_BREVO_KEY}}"
    base_url: "{world.brevo.api_url}"
    webhook_secret: "${{T_BREVO_HOOK}}"
    webhook_token: "${{T_BREVO_TOKEN}}"
  mailchimp:
    {{api_key: "${{T_MC_KEY}}", base_url: "{world.mailchimp.api_url}", webhook_secret: "${{T_MC_HOOK}}"}}
double_opt_in:
  transport: brevo
  secret: "${{T_DOI_SECRET}}"
  public_url: "{world.app_url}"
  sender: {{email: news@example.fr, name: Example}}
lists:
  news:
    consent: {news_consent}
    targets:
      - brevo: {{list_id: {ids["b1"]}}}
      - mailchimp: {{audience: "{ids["a"]}", tag: news}}
  club:
    consent: double_opt_in
    targets:
      - mailchimp: {{audience: "{ids["a"]}", tag: club}}
  partners:
    consent: legitimate_interest
    auto_enroll: true
    segment: {{kind: [{partner_kinds}]}}
    targets:
      - brevo: {{list_id: {ids["b2"]}}}
      - mailchimp: {{audience: "{ids["a"]}", tag: partners}}
"""


@pytest.fixture(scope="module")
def world(_session_engine, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("consent-model")
    with pytest.MonkeyPatch.context() as mp, BrevoSimulator() as brevo, MailchimpSimulator() as mailchimp:
        mp.setenv("T_BREVO_KEY", brevo.api_key)
        mp.setenv("T_MC_KEY", mailchimp.api_key)
        mp.setenv("T_BREVO_HOOK", BREVO_HOOK)
        mp.setenv("T_BREVO_TOKEN", BREVO_TOKEN)
        mp.setenv("T_MC_HOOK", MC_HOOK)
        mp.setenv("T_DOI_SECRET", DOI_SECRET)
        # The web app needs only the secrets and the list names: one app serves every example.
        partial = World(brevo, mailchimp, "http://127.0.0.1:9", _session_engine, tmp)
        path = tmp / "app.yaml"
        ids = {"b1": "1", "b2": "2", "a": "audience"}
        path.write_text(_config_text(partial, ids, news_consent="single_opt_in", partner_kinds="partner"))
        with ThreadedServer(create_app(load_config(path), _session_engine)) as server:
            yield World(brevo, mailchimp, server.url, _session_engine, tmp)


# --- the model --------------------------------------------------------------------------------------------


@dataclass
class OptOut:
    """A person's (or a provider's) withdrawal, as the model holds it."""

    slot: int
    lists: frozenset[str]  # the syncd lists it closes at least
    kind: str  # list | global | complaint | bounce | block (a Brevo block with no per-list reason)
    at: float
    webhook: bool = False  # a webhook for it was queued
    known_at: float | None = None
    known_as: str | None = None  # what syncd can know it as: list | global | complaint | bounce
    brevo_list: str | None = None  # the Brevo list its per-list webhook names (feature on/off)
    mailchimp: bool = False  # visible on the Mailchimp audience
    ambiguous: bool = False  # a Brevo block: per-list only if its webhook was applied first
    by_syncd: bool = False  # taken on syncd's own pages: known at once, shown by no provider


@dataclass
class Person:
    slot: int
    addresses: list[str]  # oldest first: a change of address at a provider appends the new one
    kind: str | None = None
    imported: bool = False
    erased: bool = False
    retired: bool = False  # renamed at a provider onto another address: no longer followed
    optins: dict[str, float] = field(default_factory=dict)
    brevo_reset_at: float = 0.0  # last deletion/rename at Brevo (a block gone by the provider's hand)
    # Brevo erased the per-list trace of its block before syncd learnt of the per-list unsubscribe
    # (an admin put the contact back on that list in Brevo's UI): what is left, a block naming no
    # list, is a default account's opt-out from everything as far as anyone can read it. When.
    block_reason_erased: float = 0.0

    @property
    def email(self) -> str:
        """The newest address."""
        return self.addresses[-1]


@dataclass
class Mail:
    """A confirmation mail the person holds, and its links."""

    slot: int
    list_name: str
    token: str
    unsubscribe: str  # List-Unsubscribe's path (RFC 8058 one-click): that list only
    prefs: str  # the preference centre's path


@dataclass
class Webhook:
    provider: str
    body: bytes
    content_type: str
    events: list[OptOut]
    names: str  # the address the body names


class ConsentMachine(RuleBasedStateMachine):
    def __init__(self, world: World):
        super().__init__()
        self.w = world
        self.n = next(_examples)
        STATS["examples"] += 1
        _empty_base(world.engine)
        self.b1 = world.brevo.create_target(f"news-{self.n}")
        self.b2 = world.brevo.create_target(f"partners-{self.n}")
        self.audience = world.mailchimp.create_target(f"audience-{self.n}")
        self.ids = {"b1": self.b1.list_id, "b2": self.b2.list_id, "a": self.audience.list_id}
        self.news_consent, self.partner_kinds = "single_opt_in", "partner"
        self.config_path = world.tmp / f"syncd-{self.n}.yaml"
        self._write_config()
        self.brevo_c = BrevoConnector(
            world.brevo.api_key, world.brevo.api_url, max_retries=1, max_retry_seconds=0.3, timeout=5
        )
        self.mc_c = MailchimpConnector(
            world.mailchimp.api_key,
            world.mailchimp.api_url,
            max_retries=1,
            max_retry_seconds=0.3,
            backoff_base_s=0.01,
            concurrency=2,
            timeout=5,
        )
        self.connectors = {"brevo": self.brevo_c, "mailchimp": self.mc_c}
        self.people = [Person(i, [f"p{i}.x{self.n}@example.fr"]) for i in range(SLOTS)]
        self.new_addresses = itertools.count(1)
        self.events: list[OptOut] = []
        self.queue: list[Webhook] = []
        self.delivered: list[Webhook] = []  # delivered, not yet drained
        self.erased_addresses: set[str] = set()
        self.outbox_seen = len(world.brevo.outbox)
        self.mails: list[Mail] = []
        self.hook_url = {
            "brevo": f"{world.app_url}/hooks/brevo/{BREVO_HOOK}",
            "mailchimp": f"{world.app_url}/hooks/mailchimp/{MC_HOOK}",
        }

    # --- config -----------------------------------------------------------------------------------

    def _write_config(self) -> None:
        self.config_path.write_text(
            _config_text(self.w, self.ids, news_consent=self.news_consent, partner_kinds=self.partner_kinds)
        )
        self.config = load_config(self.config_path)

    def targets(self, list_name: str) -> list[Target]:
        return [t.target for t in self.config.lists[list_name].targets]

    def lists_on(self, target: Target) -> frozenset[str]:
        return frozenset(
            n
            for n in LISTS
            if any(t.provider == target.provider and t.list_id == target.list_id for t in self.targets(n))
        )

    # --- helpers over the simulators (HTTP where the provider's API offers it) -------------------------

    def brevo_state(self, email: str) -> dict | None:
        r = httpx.get(
            f"{self.w.brevo.api_url}/contacts/{email}", headers={"api-key": self.w.brevo.api_key}, timeout=5
        )
        return r.json() if r.status_code == 200 else None

    def brevo_put(self, email: str, body: dict) -> None:
        r = httpx.put(
            f"{self.w.brevo.api_url}/contacts/{email}",
            json=body,
            headers={"api-key": self.w.brevo.api_key},
            timeout=5,
        )
        assert r.status_code == 204, r.text

    def mc_status(self, email: str) -> str | None:
        return self.w.mailchimp.member_status(self.audience, email)

    def mc_tags(self, email: str) -> tuple[str, ...]:
        member = self.w.mailchimp.members(self.audience).get(email)
        return member.tags if member else ()

    def mc_addr(self, p: Person) -> str:
        """The address the audience holds the person under (if none, the master base's)."""
        held = (a for a in reversed(p.addresses) if self.w.mailchimp.member(self.audience.list_id, a))
        return next(held, None) or self.base_addr(p)

    def brevo_addr(self, p: Person) -> str:
        """The address Brevo holds the person under (if none, the master base's)."""
        return next((a for a in reversed(p.addresses) if self.w.brevo.contact(a)), None) or self.base_addr(p)

    def contact_of(self, s: Session, p: Person) -> Contact | None:
        """The person's contact in the master base, under whichever of their addresses it holds."""
        found = {c.email: c for c in s.exec(select(Contact).where(Contact.email.in_(p.addresses)))}
        if not p.retired:
            which = ", #".join(str(p.addresses.index(e) + 1) for e in found)
            assert len(found) <= 1, (
                f"slot {p.slot} is {len(found)} contacts after a change of address "
                f"(addresses #{which} of {len(p.addresses)})"
            )
        return next((found[a] for a in reversed(p.addresses) if a in found), None)

    def base_addr(self, p: Person) -> str:
        """The address the master base holds the person under (a marketer's file has that one)."""
        with Session(self.w.engine) as s:
            c = self.contact_of(s, p)
            return c.email if c is not None else p.email

    def known_addresses(self, p: Person) -> set[str]:
        """The person's addresses syncd holds: the contact's, and the former ones a target still
        holds it under (a change of address not carried there yet)."""
        with Session(self.w.engine) as s:
            c = self.contact_of(s, p)
            if c is None:
                return {p.email}
            former = s.exec(select(TargetState.remote_email).where(TargetState.contact_id == c.id))
            return {c.email} | {e for e in former if e}

    def syncd_knows_record(self, p: Person, provider: str, remote_id: str) -> bool:
        """Whether the master base holds ``remote_id`` as the person's record at ``provider``: then
        a change of address there is seen by the next read of the list, webhook or not."""
        with Session(self.w.engine) as s:
            c = self.contact_of(s, p)
            if c is None:
                return False
            ids = s.exec(
                select(TargetState.remote_id).where(
                    TargetState.contact_id == c.id, TargetState.target_key.startswith(f"{provider}:")
                )
            )
            return remote_id in set(ids)

    def queue_webhook(self, provider: str, body: bytes, ctype: str, email: str, events: list[OptOut]) -> None:
        for e in events:
            e.webhook = True
        self.queue.append(Webhook(provider, body, ctype, events, email))

    def live(self, slot: int) -> Person | None:
        p = self.people[slot]
        return None if (p.erased or p.retired) else p

    def record(self, event: OptOut) -> OptOut:
        self.events.append(event)
        return event

    # --- rules: the master base side ----------------------------------------------------------------

    @rule(
        slot=st.integers(0, SLOTS - 1),
        kind=st.sampled_from(["client", "partner"]),
        list_name=st.sampled_from([None, *LISTS]),
        consent=st.sampled_from(["single_opt_in", "none"]),
    )
    def import_contact(self, slot, kind, list_name, consent):
        p = self.people[slot]
        if p.retired:
            return
        path = self.w.tmp / f"import-{self.n}.csv"
        path.write_text(f"email;type\n{self.base_addr(p)};{kind}\n", encoding="utf-8")
        options = Options(channel="form")
        if list_name:
            options = Options(
                channel="form", list_name=list_name, list_cfg=self.config.lists[list_name], consent=consent
            )
        before = self._opt_ins(slot, list_name)
        import_file(self.w.engine, path, options, rejects_path=self.w.tmp / f"rejects-{self.n}.csv")
        if p.erased:
            return  # refused by its tombstone: checked by the invariants
        p.imported = True
        p.kind = p.kind or kind  # a re-import keeps the kind the base holds
        if list_name and self._opt_ins(slot, list_name) > before:
            # An import joins only whom the list's rules admit (segment, no earlier opt-out):
            # an opt-in is what it recorded, and it must be one the list's segment admits.
            assert consent == "single_opt_in", f"import without consent recorded an opt-in to {list_name}"
            admitted = list_name != "partners" or p.kind in self.partner_kinds.split(", ")
            assert admitted, f"import put slot {slot} ({p.kind}) in {list_name}, outside its segment"
            p.optins[list_name] = time.time()

    def _opt_ins(self, slot: int, list_name: str | None) -> int:
        if not list_name:
            return 0
        with Session(self.w.engine) as s:
            c = self.contact_of(s, self.people[slot])
            if c is None:
                return 0
            query = select(Consent).where(
                Consent.contact_id == c.id, Consent.list_name == list_name, Consent.action == "opt_in"
            )
            return len(s.exec(query).all())

    @rule()
    def doi_job_sends_confirmations(self):
        send = doi.brevo_transport(self.config, self.brevo_c)
        doi.send_pending(self.w.engine, self.config, send)
        outbox = self.w.brevo.outbox
        new, self.outbox_seen = outbox[self.outbox_seen :], len(outbox)
        now = time.time()
        for mail in new:
            to = mail["to"][0]["email"].lower()
            token = re.search(r"/confirm/([A-Za-z0-9_\-.]+)", mail["htmlContent"]).group(1)
            with Session(self.w.engine) as s:
                row = s.exec(select(DoiToken).where(DoiToken.token_hash == doi.token_hash(token))).one()
            slot = next(p.slot for p in self.people if to in p.addresses)
            prefs = re.search(r"(/prefs/[A-Za-z0-9_\-.]+)", mail["htmlContent"]).group(1)
            unsubscribe = mail["headers"]["List-Unsubscribe"].strip("<>").removeprefix(self.w.app_url)
            self.mails.append(Mail(slot, row.list_name, token, unsubscribe, prefs))
            if self.people[slot].retired:
                continue  # no longer followed: what the provider shows of them is not theirs to syncd
            why = self.required_out(slot, row.list_name, now)
            assert why is None, f"I1m: confirmation mail for {row.list_name} sent to slot {slot} after {why}"

    @rule(i=st.integers(0, 50))
    def person_confirms_a_link(self, i):
        if not self.mails:
            return
        mail = self.mails[i % len(self.mails)]
        slot, list_name, token = mail.slot, mail.list_name, mail.token
        before = self._proofs(slot, list_name)
        r = httpx.post(f"{self.w.app_url}/confirm/{token}", data={}, timeout=10)
        assert r.status_code < 500, r.text
        if self._proofs(slot, list_name) > before:
            self.people[slot].optins[list_name] = time.time()

    def _proofs(self, slot: int, list_name: str) -> int:
        with Session(self.w.engine) as s:
            c = self.contact_of(s, self.people[slot])
            if c is None:
                return 0
            return len(
                s.exec(
                    select(Consent).where(
                        Consent.contact_id == c.id,
                        Consent.list_name == list_name,
                        Consent.action == "doi_confirmed",
                    )
                ).all()
            )

    @rule(i=st.integers(0, 50), how=st.sampled_from(["one-click", "prefs-untick", "prefs-everything"]))
    def person_withdraws_through_a_mails_link(self, i, how):
        """syncd's own ways out, from a confirmation mail the person holds (whatever their address
        is now): the one-click unsubscribe of that mail's list, the preference centre's untick of
        that list, or its "everything". syncd knows it at once; the next sync of each list carries
        it to the targets (I1), and it closes no other list (I2a)."""
        if not self.mails:
            return
        mail = self.mails[i % len(self.mails)]
        p = self.live(mail.slot)
        if p is None:
            return  # erased: the link opens nothing; retired: no longer followed
        at = time.time()
        if how == "one-click":
            r = httpx.post(
                f"{self.w.app_url}{mail.unsubscribe}",
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=10,
            )
            lists, kind = frozenset({mail.list_name}), "list"
        else:
            page = httpx.get(f"{self.w.app_url}{mail.prefs}", timeout=10)
            assert page.status_code == 200, f"slot {p.slot}'s preference link refused: {page.status_code}"
            form = {"csrf": re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)}
            shown = re.findall(r'name="shown" value="([^"]+)"', page.text)
            if how == "prefs-everything":
                form["all"] = "1"
                lists, kind = frozenset(LISTS), "global"
            elif mail.list_name in shown:
                form |= {"shown": shown, "keep": [n for n in shown if n != mail.list_name]}
                lists, kind = frozenset({mail.list_name}), "list"
            else:
                return  # not on that list any more: nothing to untick
            r = httpx.post(f"{self.w.app_url}{mail.prefs}", data=form, timeout=10)
        assert r.status_code == 200, f"slot {p.slot}'s {how} link refused: {r.status_code}"
        self.record(OptOut(p.slot, lists, kind, at, known_at=time.time(), known_as=kind, by_syncd=True))
        STATS["page withdrawals"] += 1

    @rule(who=st.integers(0, 2 * SLOTS))
    def gdpr_erasure(self, who):
        p = self.choose(who, lambda p: p.imported)
        if p is None:
            return
        url = self.w.engine.url.render_as_string(hide_password=False)
        known, known_as = self.known_addresses(p), self.base_addr(p)
        result = CliRunner().invoke(
            main,
            [
                "--config",
                str(self.config_path),
                "--database",
                url,
                "contacts",
                "forget",
                known_as,
                "--yes",
            ],
        )
        assert result.exit_code == 0, result.output
        p.erased = True
        self.erased_addresses |= known

    @precondition(lambda self: enabled("switch-list-to-double-opt-in"))
    @rule()
    def yaml_switches_news_to_double_opt_in(self):
        # A rule change under existing members. Checked here, not as a precondition: which rules a
        # step may draw must not depend on the system's state, or Hypothesis's replays diverge.
        if self.news_consent != "single_opt_in" or not any("news" in p.optins for p in self.people):
            return
        self.news_consent = "double_opt_in"
        self._write_config()

    @precondition(lambda self: self.partner_kinds == "partner")
    @rule()
    def yaml_widens_partners_segment(self):
        self.partner_kinds = "partner, client"
        self._write_config()

    # --- rules: sync --------------------------------------------------------------------------------

    @rule(list_name=st.sampled_from(LISTS))
    def sync(self, list_name):
        self._sync(list_name)

    @rule(list_name=st.sampled_from(LISTS))
    def sync_twice(self, list_name):
        if not self._sync(list_name):
            return
        self.w.brevo.reset_calls()
        self.w.mailchimp.reset_calls()
        second = sync_list(self.w.engine, self.config, list_name, self.connectors)
        assert second.ok, second
        writes = (self.w.brevo.write_calls, self.w.mailchimp.write_calls)
        assert writes == (0, 0), f"I5: a second sync of {list_name} with no change wrote {writes}: {second}"

    @rule()
    def sync_lists_at_once(self):
        """Every list synced at the same time (``syncd sync --jobs``, or replicas): the runs of
        lists sharing a Mailchimp audience and a Brevo account interleave their reads and writes.
        The invariants hold after it as after runs one at a time."""
        started = time.time()
        visible = {name: self.visible_events(name) for name in LISTS}
        with ThreadPoolExecutor(len(LISTS)) as pool:
            futures = {
                n: pool.submit(sync_list, self.w.engine, self.config, n, self.connectors) for n in LISTS
            }
            reports = {n: f.result() for n, f in futures.items()}
        for name, report in reports.items():
            if report.ok:
                for e in visible[name]:
                    self.learn_by_pull(e, started)

    def _sync(self, list_name: str) -> bool:
        started = time.time()
        visible = self.visible_events(list_name)
        report = sync_list(self.w.engine, self.config, list_name, self.connectors)
        if not report.ok:
            return False
        for e in visible:
            self.learn_by_pull(e, started)
        self.check_targets(list_name, started)
        return True

    @rule(
        list_name=st.sampled_from(LISTS),
        how=st.sampled_from(["stop", "brevo-outage-mid-write", "mailchimp-drops-mid-read", "mailchimp-down"]),
    )
    def sync_killed_half_way(self, list_name, how):
        stop = threading.Event()
        brevo, mc = self.w.brevo, self.w.mailchimp

        def progress(step: str, n: int) -> None:
            if how == "stop":
                stop.set()
            elif how == "brevo-outage-mid-write" and "writing" in step:
                brevo.fail_next(1000, status=503)
            elif how == "mailchimp-drops-mid-read" and "reading" in step:
                mc.drop_next(1000)

        if how == "mailchimp-down":
            mc.fail_next(1000, status=503)
        try:
            sync_list(self.w.engine, self.config, list_name, self.connectors, progress=progress, stop=stop)
        finally:
            brevo.fail_next(0)
            mc.fail_next(0)
            mc.drop_next(0)

    # --- rules: webhooks ----------------------------------------------------------------------------

    @rule(i=st.integers(0, 50), duplicate=st.booleans())
    def deliver_webhook(self, i, duplicate):
        """Delivered now: possibly late and out of order (any queued one); a duplicate stays queued."""
        if not self.queue:
            return
        hook = self.queue[i % len(self.queue)]
        if not duplicate:
            self.queue.remove(hook)
        headers = {"Content-Type": hook.content_type}
        if hook.provider == "mailchimp":
            headers["User-Agent"] = "MailChimp.com"
        else:
            headers["Authorization"] = f"Bearer {BREVO_TOKEN}"
        r = httpx.post(self.hook_url[hook.provider], content=hook.body, headers=headers, timeout=10)
        assert r.status_code == 200, r.text
        self.delivered.append(hook)

    @rule(i=st.integers(0, 50))
    def lose_webhook(self, i):
        if not self.queue:
            return
        hook = self.queue[i % len(self.queue)]
        if any(e.ambiguous for e in hook.events) and not enabled("brevo-block-without-list-reason"):
            return
        self.queue.remove(hook)

    @rule()
    def drain_inbox(self):
        drain(self.w.engine, self.config, connectors=self.connectors)
        now = time.time()
        waiting = []
        for hook in self.delivered:
            if hook.events and self._waits_in_the_inbox(hook):
                waiting.append(hook)
                continue
            for e in hook.events:
                if e.known_at is None:
                    e.known_at, e.known_as = now, ("list" if e.ambiguous else e.kind)
                elif e.kind == "complaint":
                    e.known_as = "complaint"  # the pull saw an unsubscribe or a block; now the reason
        self.delivered = waiting

    def _waits_in_the_inbox(self, hook: Webhook) -> bool:
        """Whether the delivery still waits in syncd's inbox for the contact it names: an address no
        contact has yet (the change of address onto it not applied: its webhook still to come, or
        lost), retried with back-off, or settled unapplied once the retries ran out. Its opt-out is
        not known through it; the delivery of the change, or a sync's read, tells it later."""
        body = self.connectors[hook.provider].storable_body(hook.body)
        with Session(self.w.engine) as s:
            row = s.exec(
                select(InboxEvent).where(InboxEvent.provider == hook.provider, InboxEvent.payload == body)
            ).first()
        if row is None or row.status == "dead":
            return False  # not held back (a failure is the invariants' to find)
        return row.status == "new" or (row.error or "").startswith("settled")

    # --- rules: Mailchimp side ----------------------------------------------------------------------

    def choose(self, i: int, fits) -> Person | None:
        """The ``i``-th (modulo) live person for whom ``fits(person)`` holds: no step is wasted."""
        found = [p for p in self.people if not (p.erased or p.retired) and fits(p)]
        return found[i % len(found)] if found else None

    def _mc_member(self, slot: int, statuses: tuple[str, ...]) -> Person | None:
        return self.choose(
            slot,
            lambda p: (
                p.imported
                and self.mc_status(self.mc_addr(p)) in statuses
                and self.row_gate(p, self.lists_on(self.audience))
            ),
        )

    def row_gate(self, p: Person, lists: frozenset[str]) -> bool:
        """While defect 1 is open, only members with an active membership row of a list on the
        target leave it at the provider (see KNOWN_OPEN)."""
        if enabled("pull-ignores-member-without-membership-row"):
            return True
        with Session(self.w.engine) as s:
            c = self.contact_of(s, p)
            if c is None:
                return False
            rows = s.exec(select(Membership).where(Membership.contact_id == c.id)).all()
            return any(m.list_name in lists and m.status in ("subscribed", "pending") for m in rows)

    @rule(who=st.integers(0, 2 * SLOTS))
    def mailchimp_unsubscribe(self, who):
        p = self._mc_member(who, ("subscribed", "pending"))
        if p is None:
            return
        email = self.mc_addr(p)
        event = self.record(OptOut(p.slot, self.lists_on(self.audience), "list", time.time(), mailchimp=True))
        self.w.mailchimp.unsubscribe(email, self.audience)
        body, ctype = self.w.mailchimp.webhook_payload(EventKind.UNSUBSCRIBED, email, self.audience)
        self.queue_webhook("mailchimp", body, ctype, email, [event])

    @rule(who=st.integers(0, 2 * SLOTS))
    def mailchimp_resubscribes_through_a_form(self, who):
        """A member who left signs up again through a Mailchimp form: subscribed at the audience
        again (tags kept), and the ``subscribe`` webhook. Never consent for syncd (README)."""
        p = self._mc_member(who, ("unsubscribed",))
        if p is None:
            return
        email = self.mc_addr(p)
        self.w.mailchimp.member_action(self.audience.list_id, email, "resubscribe")
        body, ctype = self.w.mailchimp.webhook_payload(EventKind.SUBSCRIBED, email, self.audience)
        self.queue_webhook("mailchimp", body, ctype, email, [])

    @rule(who=st.integers(0, 2 * SLOTS))
    def mailchimp_spam_complaint(self, who):
        p = self._mc_member(who, ("subscribed",))
        if p is None:
            return
        email = self.mc_addr(p)
        event = self.record(OptOut(p.slot, frozenset(LISTS), "complaint", time.time(), mailchimp=True))
        self.w.mailchimp.unsubscribe(email, self.audience)  # Mailchimp unsubscribes the complainer
        body, ctype = self.w.mailchimp.webhook_payload(EventKind.COMPLAINED, email, self.audience)
        self.queue_webhook("mailchimp", body, ctype, email, [event])

    @rule(who=st.integers(0, 2 * SLOTS))
    def mailchimp_cleans_hard_bounce(self, who):
        p = self._mc_member(who, ("subscribed", "pending"))
        if p is None:
            return
        email = self.mc_addr(p)
        event = self.record(OptOut(p.slot, frozenset(LISTS), "bounce", time.time(), mailchimp=True))
        member = self.w.mailchimp.members(self.audience)[email]
        self.w.mailchimp.seed(
            self.audience,
            [{"email": email, "status": "cleaned", "tags": member.tags, **member.fields}],
        )
        body, ctype = self.w.mailchimp.webhook_payload(EventKind.BOUNCED_HARD, email, self.audience)
        self.queue_webhook("mailchimp", body, ctype, email, [event])

    @rule(who=st.integers(0, 2 * SLOTS))
    def mailchimp_admin_archives(self, who):
        statuses = ("subscribed", "pending")
        if enabled("mailchimp-compliance-state-push-retried-every-run"):
            statuses += ("unsubscribed", "cleaned")
        p = self._mc_member(who, statuses)
        if p is None:
            return
        email = self.mc_addr(p)
        self.mc_c.remove(Target("mailchimp", self.audience.list_id), [email])  # DELETE = archive
        body, ctype = self.w.mailchimp.webhook_payload(EventKind.DELETED, email, self.audience)
        self.queue_webhook("mailchimp", body, ctype, email, [])

    @precondition(lambda self: enabled("mailchimp-compliance-state-push-retried-every-run"))
    @rule(who=st.integers(0, 2 * SLOTS), list_name=st.sampled_from(LISTS))
    def mailchimp_admin_adds_in_ui(self, who, list_name):
        p = self.choose(who, lambda p: self.mc_status(self.mc_addr(p)) in (None, "archived"))
        if p is None:
            return
        tags = [t.tag for t in self.targets(list_name) if t.provider == "mailchimp"]
        if not tags:
            return
        tag = tags[0]
        email = self.mc_addr(p)
        self.w.mailchimp.seed(self.audience, [{"email": email, "status": "subscribed", "tags": [tag]}])
        body, ctype = self.w.mailchimp.webhook_payload(EventKind.SUBSCRIBED, email, self.audience)
        self.queue_webhook("mailchimp", body, ctype, email, [])

    # --- rules: Brevo side --------------------------------------------------------------------------

    def _brevo_member(self, slot: int, target: Target) -> tuple[Person, dict] | None:
        def on_target(p: Person) -> bool:
            state = self.brevo_state(self.brevo_addr(p)) if p.imported else None
            on = state is not None and int(target.list_id) in state["listIds"]
            return on and self.row_gate(p, self.lists_on(target))

        p = self.choose(slot, on_target)
        return None if p is None else (p, self.brevo_state(self.brevo_addr(p)))

    @rule(who=st.integers(0, 2 * SLOTS), on_b1=st.booleans(), per_list_feature=st.booleans())
    def brevo_unsubscribe(self, who, on_b1, per_list_feature):
        target = self.b1 if on_b1 else self.b2
        found = self._brevo_member(who, target)
        if found is None or (not per_list_feature and not enabled("brevo-block-without-list-reason")):
            return
        p, _ = found
        email = self.brevo_addr(p)
        lists = self.lists_on(target)
        if per_list_feature:
            event = OptOut(p.slot, lists, "list", time.time(), brevo_list=target.list_id)
            self.w.brevo.unsubscribe(email, target)  # listUnsubscribed + account-wide block
        else:
            event = OptOut(p.slot, lists, "block", time.time(), brevo_list=target.list_id, ambiguous=True)
            # A default account: the click blocks the address, and names no list.
            self.w.brevo.contact_unsubscribes(email, int(target.list_id))
        self.record(event)
        body, ctype = self.w.brevo.webhook_payload(EventKind.UNSUBSCRIBED, email, target)
        self.queue_webhook("brevo", body, ctype, email, [event])

    @precondition(lambda self: enabled("brevo-block-without-list-reason"))
    @rule(who=st.integers(0, 2 * SLOTS))
    def brevo_admin_blocks_account_wide(self, who):
        p = self.choose(who, lambda p: p.imported and self.brevo_state(self.brevo_addr(p)) is not None)
        if p is None:
            return
        email = self.brevo_addr(p)
        if self.brevo_state(email)["emailBlacklisted"]:
            # Already blocked: Brevo's state does not change and no webhook comes, so nothing
            # tells syncd of it; the block it already knows keeps its reason (README, Brevo table).
            return
        self.record(OptOut(p.slot, frozenset(LISTS), "block", time.time()))
        self.brevo_put(email, {"emailBlacklisted": True})  # Brevo sends no webhook for it

    @precondition(lambda self: enabled("brevo-block-without-list-reason"))
    @rule(who=st.integers(0, 2 * SLOTS))
    def brevo_spam_complaint(self, who):
        p = self.choose(who, lambda p: p.imported and self.brevo_state(self.brevo_addr(p)) is not None)
        if p is None:
            return
        email = self.brevo_addr(p)
        event = self.record(OptOut(p.slot, frozenset(LISTS), "complaint", time.time()))
        self.w.brevo.contact_complains(email, int(self.b1.list_id))  # a complaint blocks the address
        body, ctype = self.w.brevo.webhook_payload(EventKind.COMPLAINED, email)
        self.queue_webhook("brevo", body, ctype, email, [event])

    @rule(slot=st.integers(0, SLOTS - 1), on_b1=st.booleans())
    def brevo_admin_adds_to_list_in_ui(self, slot, on_b1):
        p = self.live(slot)
        if p is None:
            return
        email = self.brevo_addr(p)
        target = self.b1 if on_b1 else self.b2
        state = self.brevo_state(email)
        if (
            state is not None
            and state["emailBlacklisted"]
            and int(target.list_id) in state["listUnsubscribed"]
            and any(
                e.slot == p.slot and e.brevo_list == target.list_id and e.known_at is None
                for e in self.events
            )
        ):
            p.block_reason_erased = time.time()  # the re-add clears listUnsubscribed; the block stays
        self.w.brevo.seed(target, [{"email": email, "status": "subscribed"}])
        body, ctype = self.w.brevo.webhook_payload(EventKind.SUBSCRIBED, email, target)
        self.queue_webhook("brevo", body, ctype, email, [])

    @rule(who=st.integers(0, 2 * SLOTS))
    def brevo_admin_deletes_contact(self, who):
        p = self.choose(who, lambda p: self.brevo_state(self.brevo_addr(p)) is not None)
        if p is None:
            return
        email = self.brevo_addr(p)
        r = httpx.delete(
            f"{self.w.brevo.api_url}/contacts/{email}",
            headers={"api-key": self.w.brevo.api_key},
            timeout=5,
        )
        assert r.status_code == 204, r.text
        p.brevo_reset_at = time.time()
        body, ctype = self.w.brevo.webhook_payload(EventKind.DELETED, email)
        self.queue_webhook("brevo", body, ctype, email, [])

    @precondition(lambda self: enabled("email-change-onto-erased-address"))
    @rule(who=st.integers(0, 2 * SLOTS), pick=st.integers(0, SLOTS - 1))
    def brevo_email_change_onto_erased_address(self, who, pick):
        if not self.erased_addresses:
            return
        p = self.choose(who, lambda p: p.imported and self.brevo_state(self.brevo_addr(p)) is not None)
        if p is None:
            return
        erased = sorted(self.erased_addresses)[pick % len(self.erased_addresses)]
        if self.brevo_state(erased) is not None:
            return
        old = self.brevo_addr(p)
        self.brevo_put(old, {"attributes": {"EMAIL": erased}})
        body, ctype = self.w.brevo.webhook_payload(EventKind.EMAIL_CHANGED, old, new_email=erased)
        self.queue_webhook("brevo", body, ctype, erased, [])
        p.retired = True

    def _new_address(self, p: Person) -> str:
        return f"p{p.slot}.r{next(self.new_addresses)}.x{self.n}@example.fr"

    @rule(who=st.integers(0, 2 * SLOTS))
    def mailchimp_member_changes_address(self, who):
        """The member gives a new address in Mailchimp's profile form: same member (``contact_id``),
        status and tags, and the ``upemail`` webhook. The person is followed under both addresses
        when syncd can tell it is them: by the webhook, or by the member's id it already holds."""
        p = self._mc_member(who, ("subscribed", "pending", "unsubscribed", "cleaned"))
        if p is None:
            return
        old, new = self.mc_addr(p), self._new_address(p)
        member = self.w.mailchimp.member(self.audience.list_id, old)
        known = self.syncd_knows_record(p, "mailchimp", member.contact_id)
        self.w.mailchimp.member_action(self.audience.list_id, old, "change-email", new_email=new)
        body, ctype = self.w.mailchimp.webhook_payload(
            EventKind.EMAIL_CHANGED, old, self.audience, new_email=new
        )
        self.queue_webhook("mailchimp", body, ctype, new, [])
        self._changed_address(p, new, known)

    def _changed_address(self, p: Person, new: str, known: bool) -> None:
        p.addresses.append(new)
        STATS["address changes followed" if known else "address changes unknowable"] += 1
        if not known:
            p.retired = True  # a lost webhook would leave syncd nothing to tell the new address by

    @rule(who=st.integers(0, 2 * SLOTS))
    def brevo_admin_changes_address(self, who):
        """An account user changes the contact's address in Brevo's UI: same contact (its id), lists
        and ``listUnsubscribed``; Brevo lifts a block when the address changes."""
        p = self.choose(who, lambda p: p.imported and self.w.brevo.contact(self.brevo_addr(p)) is not None)
        if p is None:
            return
        old, new = self.brevo_addr(p), self._new_address(p)
        known = self.syncd_knows_record(p, "brevo", str(self.w.brevo.contact(old)["id"]))
        self.brevo_put(old, {"attributes": {"EMAIL": new}})
        p.brevo_reset_at = time.time()
        body, ctype = self.w.brevo.webhook_payload(EventKind.EMAIL_CHANGED, old, new_email=new)
        self.queue_webhook("brevo", body, ctype, new, [])
        self._changed_address(p, new, known)

    # --- what syncd can know ------------------------------------------------------------------------

    def visible_events(self, list_name: str) -> list[OptOut]:
        """Opt-outs whose evidence the targets of ``list_name`` show right now."""
        out = []
        for target in self.targets(list_name):
            if target.provider == "mailchimp":
                members = self.w.mailchimp.members(target)
                left = (RemoteStatus.UNSUBSCRIBED, RemoteStatus.CLEANED)
                for e in self.events:
                    held = [members[a] for a in self.people[e.slot].addresses if a in members]
                    if e.mailchimp and any(m.status in left for m in held):
                        out.append(e)
                continue
            for e in self.events:
                if e.mailchimp or e.by_syncd:
                    continue
                state = self.brevo_state(self.brevo_addr(self.people[e.slot]))
                if state is None or int(target.list_id) not in state["listIds"]:
                    continue
                if e.kind == "list" and int(e.brevo_list) in state["listUnsubscribed"]:
                    out.append(e)
                elif e.kind in ("block", "complaint") and state["emailBlacklisted"]:
                    if int(target.list_id) not in state["listUnsubscribed"]:
                        out.append(e)
        return out

    def learn_by_pull(self, e: OptOut, started: float) -> None:
        if e.known_at is not None:
            return
        e.known_at = started
        if e.kind in ("block", "complaint") and not e.mailchimp:
            e.known_as = "global"  # a Brevo block seen without a per-list reason applied first
        elif e.kind == "complaint":
            e.known_as = "list"  # Mailchimp shows a complainer as unsubscribed from the audience
        else:
            e.known_as = e.kind

    def latest_optin(self, slot: int, list_name: str) -> float:
        return self.people[slot].optins.get(list_name, float("-inf"))

    def required_out(self, slot: int, list_name: str, at: float) -> str | None:
        """Why ``slot`` must be off ``list_name``'s targets at ``at``, or None."""
        optin = self.latest_optin(slot, list_name)
        for e in self.events:
            if e.slot != slot or e.known_at is None or e.known_at > at:
                continue
            if e.known_as in ("complaint", "bounce"):
                return f"a known {e.known_as}"
            covers = e.known_as == "global" or list_name in e.lists
            if covers and e.at > optin:
                return f"a known {e.known_as} opt-out (kind {e.kind}) newer than the latest opt-in"
        return None

    # --- checks after a completed sync ----------------------------------------------------------------

    def check_targets(self, list_name: str, started: float) -> None:
        doi_list = self.config.lists[list_name].consent == "double_opt_in"
        for target in self.targets(list_name):
            present = self._present(target)
            for email in self.erased_addresses:
                assert email not in present, f"I4t: erased address on {target.key} after syncing {list_name}"
            for p, email in ((person, a) for person in self.people for a in person.addresses):
                if p.erased or p.retired or email not in present:
                    continue
                status = present[email]
                why = self.required_out(p.slot, list_name, started)
                if why and status in ("subscribed", "pending"):
                    raise AssertionError(
                        f"I1: slot {p.slot} is {status} on {target.key} ({list_name}) under "
                        f"{'a former' if email != p.email else 'their'} address after {why}"
                        f"{self._whereabouts(p, email)}"
                    )
                if doi_list and status == "subscribed" and self._pushed(p, list_name, target):
                    assert self._proofs(p.slot, list_name), (
                        f"I3: slot {p.slot} pushed and subscribed on {target.key} ({list_name}, double "
                        "opt-in) without a doi_confirmed proof"
                    )
            if target.provider == "brevo":
                self._check_unblocked(target)

    def _present(self, target: Target) -> dict[str, str]:
        if target.provider == "mailchimp":
            return {e: str(m.status) for e, m in self.w.mailchimp.members(target).items()}
        out = {}
        for e, m in self.w.brevo.members(target).items():
            state = self.brevo_state(e)
            if state and int(target.list_id) in state["listUnsubscribed"]:
                out[e] = "unsubscribed"
            else:
                out[e] = str(m.status)
        return out

    def _whereabouts(self, p: Person, email: str) -> str:
        """For a failure message: which of the person's addresses the base and its states hold."""
        with Session(self.w.engine) as s:
            c = self.contact_of(s, p)
            if c is None:
                return " (no contact in the base)"
            states = s.exec(select(TargetState).where(TargetState.contact_id == c.id)).all()
            held = [
                (t.target_key, t.list_name, t.remote_status, t.remote_id is not None, t.remote_email == email)
                for t in states
            ]
        shown = "the address shown" if c.email == email else f"address #{p.addresses.index(c.email) + 1}"
        return f" (the base holds {shown} of {len(p.addresses)}; states: {held})"

    def _pushed(self, p: Person, list_name: str, target: Target) -> bool:
        with Session(self.w.engine) as s:
            c = self.contact_of(s, p)
            if c is None:
                return False
            row = s.exec(
                select(TargetState).where(
                    TargetState.contact_id == c.id,
                    TargetState.list_name == list_name,
                    TargetState.target_key == target.key,
                )
            ).first()
            return row is not None and row.pushed_hash is not None

    def _check_unblocked(self, target: Target) -> None:
        """I2c: a block that comes only from per-list unsubscribes (feature on) is lifted."""
        for p in self.people:
            if p.erased or p.retired or not p.imported:
                continue
            mine = [e for e in self.events if e.slot == p.slot]
            if not any(e.kind == "list" and e.brevo_list == target.list_id for e in mine):
                continue
            if any(e.kind != "list" for e in mine):
                continue  # a global reason may stand behind the block
            state = self.brevo_state(self.brevo_addr(p))
            if state is None or int(target.list_id) not in state["listUnsubscribed"]:
                continue
            assert not state["emailBlacklisted"], (
                f"I2c: slot {p.slot} unsubscribed from Brevo list {target.list_id} only, "
                "still blocked account-wide after the sync (transactional mail cut off)"
            )

    # --- invariants after every step ---------------------------------------------------------------------

    @invariant()
    def no_membership_closed_without_a_reason(self):
        """I2a."""
        STATS["steps"] += 1  # invariants run once per step (and once at the start)
        with Session(self.w.engine) as s:
            for p in self.people:
                if p.erased or p.retired or not p.imported:
                    continue
                c = self.contact_of(s, p)
                assert c is not None, f"slot {p.slot} imported, missing from the base"
                mine = [e for e in self.events if e.slot == p.slot]
                if not any(e.kind != "list" for e in mine) and not p.block_reason_erased:
                    assert not c.global_opt_out, (
                        f"I2a: slot {p.slot} opted out of everything without a reason"
                    )
                rows = {
                    m.list_name: m for m in s.exec(select(Membership).where(Membership.contact_id == c.id))
                }
                for list_name, optin in p.optins.items():
                    closing = [
                        e
                        for e in mine
                        if e.at > optin - AMBIGUOUS_S and (e.kind != "list" or list_name in e.lists)
                    ]
                    if closing or optin < p.block_reason_erased:
                        continue
                    m = rows.get(list_name)
                    assert m is not None and m.status in ("subscribed", "pending"), (
                        f"I2a: slot {p.slot}'s membership of {list_name} is "
                        f"{m.status if m else 'gone'} with no opt-out since the opt-in "
                        f"(events: {[(e.kind, sorted(e.lists)) for e in mine]})"
                    )

    @invariant()
    def global_opt_outs_complaints_and_blocks_stay(self):
        """I2b."""
        now = time.time()
        with Session(self.w.engine) as s:
            for p in self.people:
                if p.erased or p.retired or not p.imported:
                    continue
                c = self.contact_of(s, p)
                if c is None:
                    continue
                for e in (e for e in self.events if e.slot == p.slot):
                    newer_optin = any(at > e.at for at in p.optins.values())
                    if e.known_at is not None and e.known_at <= now:
                        if e.known_as == "complaint":
                            assert c.email_status == "complained" and c.global_opt_out, (
                                f"I2b: slot {p.slot}'s known complaint was lifted"
                            )
                        elif e.known_as == "bounce":
                            # A complaint stays the address's status, the stronger fact (README).
                            assert c.email_status in ("bounced", "complained"), (
                                f"I2b: slot {p.slot}'s hard bounce was lifted"
                            )
                        elif e.known_as == "global" and not newer_optin:
                            assert c.global_opt_out, (
                                f"I2b: slot {p.slot}'s global opt-out ({e.kind}) was lifted"
                            )
                    if e.kind in ("block", "complaint") and not e.mailchimp:
                        lift_allowed = (
                            newer_optin
                            or p.brevo_reset_at > e.at
                            or (e.ambiguous and e.known_as == "list")
                            or self.block_looks_per_list(e)
                        )
                        if not lift_allowed:
                            state = self.brevo_state(self.brevo_addr(p))
                            assert state is None or state["emailBlacklisted"], (
                                f"I2b: slot {p.slot}'s Brevo block ({e.kind}, no per-list reason in the "
                                "base, no newer opt-in) was lifted"
                            )

    def block_looks_per_list(self, e: OptOut) -> bool:
        """A block syncd never saw on its own, followed by a per-list unsubscribe at Brevo: Brevo's
        state (blocked, ``listUnsubscribed`` naming a list) is then the per-list case, and Brevo keeps
        no history that would tell the older block apart (README, Brevo table)."""
        # A complaint, or a block an account user set, is in Brevo's record of the contact, which
        # syncd reads before a lift; only the contact's own unsubscribe click leaves no such trace.
        return (
            e.kind == "block"
            and e.ambiguous
            and any(
                later.slot == e.slot
                and later.kind == "list"
                and later.brevo_list is not None
                and later.at > e.at
                and (e.known_at is None or e.known_at > later.at)
                for later in self.events
            )
        )

    @invariant()
    def erased_addresses_are_nowhere_in_the_base(self):
        """I4."""
        if not self.erased_addresses:
            return
        with Session(self.w.engine) as s:
            for email in self.erased_addresses:
                needles = {email, email.replace("@", "%40")}
                assert s.exec(select(Contact).where(Contact.email == email)).first() is None, (
                    "I4: an erased address is a contact again"
                )
                for model, column, extra in (
                    (Source, Source.detail, None),
                    (Flag, Flag.detail, None),
                    (AuditLog, sa.cast(AuditLog.detail, sa.Text), None),
                    (InboxEvent, InboxEvent.payload, InboxEvent.status != "new"),
                ):
                    if model is InboxEvent and not enabled("webhook-after-erasure-kept-raw"):
                        continue
                    where = sa.or_(*(column.contains(n) for n in needles))
                    query = select(model).where(where)
                    if extra is not None:
                        query = query.where(extra)
                    found = s.exec(query).first()
                    assert found is None, f"I4: an erased address is still in {model.__tablename__}"


def _empty_base(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())


def _model_settings() -> settings:
    chosen = settings.get_profile("consent-model")
    if getattr(settings, "_current_profile", None) == "consent-long":
        chosen = settings.get_profile("consent-long")
    n = os.environ.get("SYNCD_MODEL_EXAMPLES")
    if n:
        steps = int(os.environ.get("SYNCD_MODEL_STEPS", "40"))
        chosen = settings(chosen, max_examples=int(n), stateful_step_count=steps, derandomize=False)
    if os.environ.get("SYNCD_MODEL_NO_SHRINK"):
        chosen = settings(chosen, phases=[Phase.explicit, Phase.reuse, Phase.generate])
    return chosen


def test_consent_holds_end_to_end_under_any_sequence_of_provider_and_base_actions(world):
    started = time.monotonic()
    try:
        run_state_machine_as_test(lambda: ConsentMachine(world), settings=_model_settings())
    finally:
        took = time.monotonic() - started
        print(
            f"\nconsent model: {STATS['examples']} examples, {STATS['steps']} steps in {took:.1f} s "
            f"({STATS['steps'] / took:.1f} steps/s); changes of address followed "
            f"{STATS['address changes followed']}, unknowable {STATS['address changes unknowable']}; "
            f"withdrawals on syncd's pages {STATS['page withdrawals']}; "
            f"open defects gated: {sorted(KNOWN_OPEN) or 'none'}"
        )


# --- sequences the long runs found, replayed step by step -------------------------------------------------

# Each is the failing sequence a long run printed (the rule calls, in order). A replay runs the same
# rules and the same invariants as the state machine, so a fixed defect stays fixed.
FOUND_SEQUENCES = {
    # Found by the last PostgreSQL long run of the round (43 steps); open (``STILL_OPEN``). A race
    # of lists synced at once, about one replay in three on PostgreSQL, not seen on SQLite: slot 1
    # has a Mailchimp member pushed by partners and a second one under their older address, added
    # with the club tag in Mailchimp's UI. While partners' Brevo read follows a change of address
    # made there (the older address becomes a former one), club's read of the audience meets the
    # member under the older address and, the contact having a state at a target sharing the
    # audience, takes it for a stranger: a second contact (one person, two contacts).
    "mc-ui-member-under-a-former-address-read-while-another-list-follows-the-change": """
        sync_killed_half_way(how='stop', list_name='club'); mailchimp_spam_complaint(who=1);
        import_contact(consent='single_opt_in', kind='partner', list_name='club', slot=2);
        drain_inbox(); brevo_admin_adds_to_list_in_ui(on_b1=False, slot=1); sync_lists_at_once();
        drain_inbox(); mailchimp_unsubscribe(who=0); sync(list_name='club');
        import_contact(consent='single_opt_in', kind='partner', list_name='club', slot=1);
        import_contact(consent='none', kind='partner', list_name='club', slot=1);
        mailchimp_admin_archives(who=8); sync(list_name='news'); mailchimp_unsubscribe(who=7);
        mailchimp_cleans_hard_bounce(who=2); doi_job_sends_confirmations();
        brevo_admin_changes_address(who=6); deliver_webhook(duplicate=True, i=18);
        sync(list_name='club'); mailchimp_cleans_hard_bounce(who=0);
        deliver_webhook(duplicate=True, i=3); mailchimp_member_changes_address(who=8);
        mailchimp_admin_adds_in_ui(list_name='news', who=4);
        sync_killed_half_way(how='stop', list_name='club'); mailchimp_cleans_hard_bounce(who=2);
        mailchimp_admin_adds_in_ui(list_name='club', who=6); mailchimp_spam_complaint(who=6);
        deliver_webhook(duplicate=True, i=3); lose_webhook(i=38);
        brevo_admin_adds_to_list_in_ui(on_b1=True, slot=2); deliver_webhook(duplicate=True, i=3);
        person_withdraws_through_a_mails_link(how='prefs-untick', i=39);
        brevo_unsubscribe(on_b1=True, per_list_feature=False, who=3);
        yaml_switches_news_to_double_opt_in();
        person_withdraws_through_a_mails_link(how='prefs-untick', i=9);
        mailchimp_resubscribes_through_a_form(who=1); mailchimp_resubscribes_through_a_form(who=4);
        sync_twice(list_name='news'); yaml_widens_partners_segment();
        mailchimp_admin_adds_in_ui(list_name='club', who=1); deliver_webhook(duplicate=True, i=3);
        mailchimp_admin_adds_in_ui(list_name='news', who=4); sync_lists_at_once()
    """,
    # Found by a SQLite long run (33 steps, shrunk here to 8): a defect of the model, not of syncd.
    # Slot 3, added to the audience in Mailchimp's UI and never read by syncd, complained, then
    # changed address in Mailchimp's profile form (both webhooks undelivered): syncd has nothing to
    # tell the member under the new address is slot 3 (the model's "retired"), yet the model's
    # check of confirmation mails, alone among the checks, still followed them. It skips them now.
    "complaint-of-an-unfollowed-member-before-a-reconfirmation": """
        mailchimp_admin_adds_in_ui(list_name='club', who=8);
        import_contact(consent='single_opt_in', kind='client', list_name='news', slot=3);
        mailchimp_admin_adds_in_ui(list_name='partners', who=5);
        yaml_switches_news_to_double_opt_in(); mailchimp_spam_complaint(who=1);
        mailchimp_member_changes_address(who=7); sync_lists_at_once();
        doi_job_sends_confirmations()
    """,
    # Found by a PostgreSQL long run (29 steps, shrunk here to 8): a defect of the model, not of
    # syncd. A spam complaint at Brevo (its webhook applied last) and a hard bounce at Mailchimp
    # (read first): syncd keeps the complaint as the address's status, the stronger fact, as its
    # design says; the model asked for "bounced". It now takes either as the bounce kept.
    "complaint-applied-after-a-bounce-stays-the-status": """
        import_contact(consent='single_opt_in', kind='client', list_name='partners', slot=2);
        yaml_widens_partners_segment(); sync_lists_at_once(); brevo_spam_complaint(who=8);
        deliver_webhook(duplicate=True, i=28); mailchimp_cleans_hard_bounce(who=0);
        sync_lists_at_once(); drain_inbox()
    """,
    # Found by a PostgreSQL long run (35 steps, shrunk here to 12): a defect of the model, not of
    # syncd. Slot 2 changed address in Mailchimp's profile form, then was cleaned (hard bounce); the
    # cleaned webhook, naming the new address, was delivered before the change's. The model took
    # the bounce as known once the inbox was drained; syncd, which has no contact under that
    # address yet, keeps the delivery waiting in its inbox (retried) until the change is applied.
    # The model now knows an opt-out by webhook only once its delivery is applied.
    "mc-bounce-webhook-before-the-change-of-address-it-names": """
        import_contact(consent='single_opt_in', kind='partner', list_name='club', slot=2);
        brevo_admin_adds_to_list_in_ui(on_b1=True, slot=0);
        sync_killed_half_way(how='brevo-outage-mid-write', list_name='partners');
        mailchimp_member_changes_address(who=0);
        brevo_admin_adds_to_list_in_ui(on_b1=True, slot=1);
        brevo_admin_adds_to_list_in_ui(on_b1=False, slot=3); mailchimp_cleans_hard_bounce(who=0);
        brevo_admin_adds_to_list_in_ui(on_b1=False, slot=0);
        sync_killed_half_way(how='mailchimp-down', list_name='partners');
        brevo_admin_changes_address(who=5); deliver_webhook(duplicate=True, i=18); drain_inbox()
    """,
    # Found by a PostgreSQL long run (32 steps, shrunk here to 9); failed every replay on both
    # databases, and on the previous round's code. Slot 2 changed address in Mailchimp's profile
    # form (webhook lost), then a Brevo account user changed it again; partners' run followed the
    # Brevo change and renamed the audience's member from the address the base had left: Mailchimp
    # held nothing under it any more, so the push added the new address as a second member. An
    # unsubscribe of that member, read by news, took the person's state to it, and news imported
    # the first member as a second contact, left subscribed on news. The rename now goes by the
    # member's ``contact_id`` when nothing is under the former address.
    "mc-member-renamed-at-mailchimp-then-at-brevo": """
        import_contact(consent='single_opt_in', kind='client', list_name='news', slot=2);
        sync(list_name='news'); mailchimp_member_changes_address(who=8);
        yaml_widens_partners_segment();
        sync_killed_half_way(how='mailchimp-down', list_name='partners');
        brevo_admin_changes_address(who=0); sync(list_name='partners');
        mailchimp_unsubscribe(who=4); sync(list_name='news')
    """,
    # Built by hand when the rule for syncd's own pages was added (not found by a long run): the
    # mail's one-click unsubscribe link, then its preference centre's "everything", after a change
    # of address syncd followed. Both links were refused as invalid (400) on the code before: they
    # were bound to the address the mail went to, and the withdrawal was lost.
    "mail-links-after-a-change-of-address": """
        import_contact(slot=0, kind='client', list_name='news', consent='single_opt_in');
        sync(list_name='news');
        import_contact(slot=0, kind='client', list_name='club', consent='single_opt_in');
        doi_job_sends_confirmations(); person_confirms_a_link(i=0); sync(list_name='club');
        brevo_admin_changes_address(who=0); deliver_webhook(i=0, duplicate=False); drain_inbox();
        person_withdraws_through_a_mails_link(i=0, how='one-click'); sync(list_name='club');
        person_withdraws_through_a_mails_link(i=0, how='prefs-everything'); sync(list_name='news')
    """,
    # Found by a SQLite long run; failed 6 replays of 6 on the previous round's code (a race between
    # lists synced at once, not always lost). Partners' Brevo read saw slot 3 blocked (a per-list
    # unsubscribe from news explained it) and kept ``blocked`` in its state; news lifted the block
    # before partners planned, so partners only flagged it. Then a spam complaint and a click in a
    # default account blocked the address again (webhooks lost): partners' reads showed ``blocked``,
    # the status its state held, and skipped the member, so the new block was never looked at and
    # the opt-out from everything never recorded. A blocked member whose record changed since the
    # block its target last saw is now reconciled again (``Reader._blocked_again``).
    "brevo-complaint-known-as-a-block-lifted": (
        "yaml_switches_news_to_double_opt_in();"
        "sync_lists_at_once();"
        "brevo_email_change_onto_erased_address(pick=1, who=3);"
        "mailchimp_member_changes_address(who=6);"
        "mailchimp_member_changes_address(who=7);"
        "yaml_switches_news_to_double_opt_in();"
        "mailchimp_member_changes_address(who=7);"
        "yaml_widens_partners_segment();"
        "drain_inbox();"
        "import_contact(consent='single_opt_in', kind='partner', list_name='club', slot=3);"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=0);"
        "sync_killed_half_way(how='mailchimp-down', list_name='club');"
        "brevo_unsubscribe(on_b1=False, per_list_feature=False, who=5);"
        "brevo_unsubscribe(on_b1=True, per_list_feature=True, who=3);"
        "sync_killed_half_way(how='mailchimp-down', list_name='partners');"
        "sync_killed_half_way(how='mailchimp-down', list_name='partners');"
        "brevo_email_change_onto_erased_address(pick=1, who=7);"
        "mailchimp_member_changes_address(who=1);"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=3);"
        "brevo_unsubscribe(on_b1=True, per_list_feature=True, who=3);"
        "sync_lists_at_once();"
        "mailchimp_cleans_hard_bounce(who=7);"
        "brevo_spam_complaint(who=8);"
        "mailchimp_admin_adds_in_ui(list_name='news', who=8);"
        "import_contact(consent='single_opt_in', kind='partner', list_name='club', slot=3);"
        "drain_inbox();"
        "brevo_unsubscribe(on_b1=False, per_list_feature=False, who=0);"
        "doi_job_sends_confirmations();"
        "sync_lists_at_once()"
    ),
    # Found by a PostgreSQL long run; a race between lists synced at once (failed about one replay
    # in eight on either database). A Brevo read of one list followed slot 3's change of address
    # while another list pushed slot 3, as planned, under the former address to the Mailchimp
    # audience, which had nothing of them: the target's new state did not remember the address
    # pushed, so the read after the write took the member for a stranger (a second contact, the
    # former address subscribed; on PostgreSQL, left there after a complaint). The state of a
    # contact whose address changed while it was pushed now holds the address pushed as a former
    # one (``store_accepted``), and the contact is planned again in the run: the push renames it.
    "mc-partners-subscribed-under-a-former-address-after-a-complaint": (
        "doi_job_sends_confirmations();"
        "brevo_admin_changes_address(who=2);"
        "mailchimp_admin_adds_in_ui(list_name='news', who=2);"
        "mailchimp_admin_archives(who=3);"
        "yaml_widens_partners_segment();"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=3);"
        "brevo_admin_changes_address(who=7);"
        "doi_job_sends_confirmations();"
        "sync_twice(list_name='news');"
        "mailchimp_cleans_hard_bounce(who=4);"
        "mailchimp_resubscribes_through_a_form(who=2);"
        "brevo_admin_blocks_account_wide(who=0);"
        "brevo_admin_changes_address(who=0);"
        "sync_killed_half_way(how='mailchimp-drops-mid-read', list_name='news');"
        "mailchimp_cleans_hard_bounce(who=1);"
        "mailchimp_admin_adds_in_ui(list_name='club', who=2);"
        "brevo_spam_complaint(who=7);"
        "sync_killed_half_way(how='mailchimp-drops-mid-read', list_name='club');"
        "import_contact(consent='single_opt_in', kind='partner', list_name='club', slot=3);"
        "brevo_admin_changes_address(who=7);"
        "import_contact(consent='single_opt_in', kind='partner', list_name='news', slot=1);"
        "yaml_switches_news_to_double_opt_in();"
        "brevo_spam_complaint(who=1);"
        "drain_inbox();"
        "drain_inbox();"
        "brevo_admin_changes_address(who=7);"
        "person_confirms_a_link(i=43);"
        "sync_lists_at_once();"
        "sync_twice(list_name='partners');"
        "yaml_switches_news_to_double_opt_in();"
        "yaml_switches_news_to_double_opt_in();"
        "mailchimp_unsubscribe(who=0);"
        "mailchimp_member_changes_address(who=4);"
        "mailchimp_admin_adds_in_ui(list_name='partners', who=0);"
        "mailchimp_resubscribes_through_a_form(who=0);"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=1);"
        "brevo_admin_blocks_account_wide(who=5);"
        "person_confirms_a_link(i=46);"
        "drain_inbox();"
        "sync_twice(list_name='partners')"
    ),
    # Found by a SQLite long run; failed on every replay, and on the previous round's code too.
    # Slot 3 was on the Mailchimp audience (added in its UI) before being imported, then left it
    # (webhook lost); partners' first run reached Brevo only (Mailchimp down); Brevo's user changed
    # the address. The next run followed the change, and the Mailchimp read, finding the member
    # under the former address with no state for it, took it for a stranger: the unsubscribe was
    # dropped and the new address added to the audience, subscribed. A member under a contact's
    # former address at a provider with no state of the contact is now that contact.
    "partners-subscribed-after-a-known-list-opt-out": (
        "yaml_switches_news_to_double_opt_in();"
        "doi_job_sends_confirmations();"
        "mailchimp_resubscribes_through_a_form(who=5);"
        "drain_inbox();"
        "gdpr_erasure(who=0);"
        "brevo_admin_changes_address(who=4);"
        "lose_webhook(i=1);"
        "brevo_admin_changes_address(who=4);"
        "brevo_spam_complaint(who=4);"
        "deliver_webhook(duplicate=True, i=1);"
        "brevo_admin_blocks_account_wide(who=6);"
        "brevo_admin_blocks_account_wide(who=4);"
        "brevo_unsubscribe(on_b1=False, per_list_feature=True, who=8);"
        "yaml_widens_partners_segment();"
        "brevo_email_change_onto_erased_address(pick=2, who=4);"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=0);"
        "brevo_admin_changes_address(who=0);"
        "mailchimp_admin_adds_in_ui(list_name='partners', who=6);"
        "brevo_admin_deletes_contact(who=0);"
        "person_confirms_a_link(i=13);"
        "mailchimp_admin_adds_in_ui(list_name='partners', who=2);"
        "doi_job_sends_confirmations();"
        "import_contact(consent='single_opt_in', kind='partner', list_name=None, slot=3);"
        "mailchimp_unsubscribe(who=0);"
        "mailchimp_admin_adds_in_ui(list_name='news', who=1);"
        "yaml_switches_news_to_double_opt_in();"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=1);"
        "mailchimp_spam_complaint(who=0);"
        "brevo_admin_changes_address(who=5);"
        "mailchimp_admin_adds_in_ui(list_name='partners', who=2);"
        "doi_job_sends_confirmations();"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=2);"
        "sync_killed_half_way(how='mailchimp-down', list_name='partners');"
        "brevo_admin_deletes_contact(who=1);"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=2);"
        "yaml_switches_news_to_double_opt_in();"
        "brevo_admin_changes_address(who=6);"
        "sync(list_name='partners')"
    ),
    # A per-list unsubscribe at Brevo (``listUnsubscribed`` and a block), then a click on a
    # campaign's unsubscribe link in a default account (a block naming no list, its webhook not
    # applied), then lists synced at once: a list's read dates the per-list opt-out it sees by the
    # record's last change (the click's time), which then explains the block, and the block of the
    # later click is lifted. Found by the SQLite long run; failed on every replay, and on the code
    # of the previous round too. A lift is now refused while Brevo's record shows a click since the
    # last lift and the latest opt-in whose campaign no webhook-reported opt-out names.
    "brevo-click-after-a-per-list-unsubscribe-lifted-by-the-older-reason": (
        "brevo_email_change_onto_erased_address(pick=3, who=5);"
        "sync_lists_at_once();"
        "import_contact(consent='single_opt_in', kind='partner', list_name='partners', slot=0);"
        "brevo_unsubscribe(on_b1=True, per_list_feature=True, who=8);"
        "deliver_webhook(duplicate=True, i=23);"
        "brevo_email_change_onto_erased_address(pick=0, who=7);"
        "mailchimp_resubscribes_through_a_form(who=7);"
        "brevo_email_change_onto_erased_address(pick=0, who=1);"
        "sync_lists_at_once();"
        "import_contact(consent='none', kind='client', list_name='partners', slot=1);"
        "brevo_unsubscribe(on_b1=True, per_list_feature=True, who=8);"
        "brevo_email_change_onto_erased_address(pick=2, who=3);"
        "mailchimp_admin_archives(who=8);"
        "brevo_unsubscribe(on_b1=False, per_list_feature=True, who=7);"
        "mailchimp_spam_complaint(who=1);"
        "deliver_webhook(duplicate=True, i=47);"
        "mailchimp_resubscribes_through_a_form(who=4);"
        "mailchimp_admin_archives(who=0);"
        "mailchimp_admin_archives(who=4);"
        "deliver_webhook(duplicate=False, i=20);"
        "import_contact(consent='single_opt_in', kind='partner', list_name='news', slot=0);"
        "import_contact(consent='none', kind='partner', list_name='club', slot=0);"
        "brevo_email_change_onto_erased_address(pick=3, who=4);"
        "import_contact(consent='single_opt_in', kind='client', list_name=None, slot=3);"
        "import_contact(consent='none', kind='partner', list_name='news', slot=2);"
        "mailchimp_resubscribes_through_a_form(who=7);"
        "brevo_unsubscribe(on_b1=False, per_list_feature=False, who=2);"
        "brevo_unsubscribe(on_b1=True, per_list_feature=True, who=2);"
        "mailchimp_resubscribes_through_a_form(who=3);"
        "deliver_webhook(duplicate=False, i=49);"
        "mailchimp_resubscribes_through_a_form(who=6);"
        "brevo_unsubscribe(on_b1=False, per_list_feature=False, who=6);"
        "deliver_webhook(duplicate=True, i=21);"
        "sync_lists_at_once()"
    ),
    # A member who changed address at Mailchimp twice (the webhooks not delivered), then was
    # archived there; the contact joined another list, whose first read of the audience is a full
    # one, which lists no archived member: it pushed the address the base still held, which the
    # audience, no longer holding it, took as a new member (read back as a second contact, lists
    # synced at once, once another list's incremental read had followed the change). Found by the
    # PostgreSQL long run; failed five replays in six on both databases before the fix: a full read
    # lists the archived members apart (``Page.elsewhere``), for their changes of address.
    "mc-address-change-of-an-archived-member-missed-by-a-full-read": (
        "drain_inbox();"
        "import_contact(consent='single_opt_in', kind='partner', list_name=None, slot=0);"
        "sync_killed_half_way(how='mailchimp-drops-mid-read', list_name='partners');"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=2);"
        "mailchimp_spam_complaint(who=2);"
        "mailchimp_admin_archives(who=3);"
        "brevo_admin_deletes_contact(who=6);"
        "sync_twice(list_name='partners');"
        "mailchimp_member_changes_address(who=6);"
        "mailchimp_member_changes_address(who=5);"
        "drain_inbox();"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=1);"
        "mailchimp_admin_archives(who=6);"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=1);"
        "mailchimp_admin_archives(who=1);"
        "mailchimp_unsubscribe(who=4);"
        "mailchimp_resubscribes_through_a_form(who=8);"
        "mailchimp_spam_complaint(who=0);"
        "import_contact(consent='single_opt_in', kind='client', list_name='news', slot=0);"
        "sync_lists_at_once()"
    ),
    # Three lists on tags of one Mailchimp audience synced at once, a member having changed address
    # there (its webhook not yet delivered): the run of a list whose tag the member did not have
    # yet pushed the contact under the former address, which the audience took as a new member
    # (the address is free there since the change); the read after the write brought it back as a
    # second contact once another list's run had followed the change. Fails about one replay in
    # two on SQLite, one in three on PostgreSQL, before the fix: a tag's read of the audience now
    # follows the changes of address of members without its tag (``Page.elsewhere``) before it
    # plans. (The same push by one list alone re-subscribed the former address: a test in
    # tests/sync/test_engine_consent.py.)
    "mc-address-change-seen-by-lists-synced-at-once": (
        "mailchimp_admin_adds_in_ui(list_name='news', who=4);"
        "brevo_spam_complaint(who=1);"
        "brevo_spam_complaint(who=8);"
        "person_confirms_a_link(i=50);"
        "mailchimp_admin_archives(who=5);"
        "mailchimp_admin_adds_in_ui(list_name='partners', who=5);"
        "gdpr_erasure(who=3);"
        "gdpr_erasure(who=1);"
        "mailchimp_admin_adds_in_ui(list_name='club', who=3);"
        "yaml_widens_partners_segment();"
        "brevo_unsubscribe(on_b1=False, per_list_feature=True, who=8);"
        "brevo_spam_complaint(who=0);"
        "brevo_unsubscribe(on_b1=True, per_list_feature=False, who=0);"
        "sync_lists_at_once();"
        "person_confirms_a_link(i=20);"
        "mailchimp_admin_adds_in_ui(list_name='news', who=8);"
        "brevo_admin_blocks_account_wide(who=3);"
        "mailchimp_admin_adds_in_ui(list_name='club', who=3);"
        "mailchimp_admin_archives(who=4);"
        "import_contact(consent='none', kind='client', list_name='club', slot=0);"
        "mailchimp_admin_adds_in_ui(list_name='news', who=2);"
        "brevo_admin_blocks_account_wide(who=2);"
        "mailchimp_member_changes_address(who=4);"
        "import_contact(consent='none', kind='partner', list_name='club', slot=1);"
        "brevo_admin_deletes_contact(who=3);"
        "brevo_admin_deletes_contact(who=2);"
        "sync_killed_half_way(how='brevo-outage-mid-write', list_name='club');"
        "brevo_admin_blocks_account_wide(who=6);"
        "sync_lists_at_once()"
    ),
    # A Brevo record changed onto an erased address, its webhook (``contact_updated`` of the other
    # contact, the erased address in its attributes) delivered after the erasure: stored raw to be
    # applied, and still raw once applied, until the daemon's next purge. It is blanked as soon as
    # the drain has applied it.
    "erased-address-in-a-webhook-applied-after-the-erasure": (
        "yaml_switches_news_to_double_opt_in();"
        "lose_webhook(i=39);"
        "import_contact(consent='none', kind='partner', list_name='news', slot=0);"
        "brevo_admin_changes_address(who=2);"
        "doi_job_sends_confirmations();"
        "import_contact(consent='single_opt_in', kind='client', list_name='partners', slot=0);"
        "import_contact(consent='single_opt_in', kind='partner', list_name=None, slot=2);"
        "mailchimp_resubscribes_through_a_form(who=3);"
        "sync(list_name='club');"
        "mailchimp_spam_complaint(who=0);"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=0);"
        "mailchimp_admin_adds_in_ui(list_name='news', who=1);"
        "drain_inbox();"
        "gdpr_erasure(who=5);"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=2);"
        "brevo_email_change_onto_erased_address(pick=2, who=0);"
        "sync(list_name='news');"
        "mailchimp_resubscribes_through_a_form(who=3);"
        "mailchimp_spam_complaint(who=7);"
        "deliver_webhook(duplicate=False, i=49);"
        "deliver_webhook(duplicate=True, i=47);"
        "drain_inbox()"
    ),
    # A default Brevo account's unsubscribe (a block naming no list) of a contact whose record has
    # an address the base has since changed (learnt from Mailchimp), before its webhook arrived: a
    # list with no state for the contact on Brevo pushed the new address as a second record beside
    # the blocked one. The record another Brevo list holds is renamed instead, and a blocked one is
    # not renamed (that would lift its block): its block is reconciled and the contact withheld.
    "blocked-record-under-a-former-address-another-list-holds": (
        "import_contact(consent='none', kind='partner', list_name=None, slot=1);"
        "import_contact(consent='none', kind='client', list_name='news', slot=2);"
        "import_contact(consent='single_opt_in', kind='client', list_name='news', slot=3);"
        "sync_twice(list_name='news');"
        "yaml_widens_partners_segment();"
        "brevo_admin_changes_address(who=2);"
        "sync_killed_half_way(how='brevo-outage-mid-write', list_name='partners');"
        "mailchimp_member_changes_address(who=8);"
        "brevo_unsubscribe(on_b1=True, per_list_feature=False, who=6);"
        "sync_twice(list_name='partners')"
    ),
    # A per-list unsubscribe at Brevo (listUnsubscribed + block), then the contact put back on that
    # list in Brevo's UI before syncd heard of the unsubscribe: the block left names no list, and
    # syncd reads it as an opt-out from everything (the model allows it: nothing tells it apart).
    "per-list-trace-erased-before-syncd-learnt-it": (
        "import_contact(consent='none', kind='partner', list_name=None, slot=2);"
        "import_contact(consent='single_opt_in', kind='partner', list_name='news', slot=3);"
        "import_contact(consent='single_opt_in', kind='partner', list_name='club', slot=1);"
        "sync_killed_half_way(how='mailchimp-down', list_name='partners');"
        "brevo_unsubscribe(on_b1=False, per_list_feature=True, who=3);"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=1);"
        "sync_twice(list_name='partners');"
        "deliver_webhook(duplicate=False, i=0);"
        "drain_inbox();"
        "sync_twice(list_name='partners')"
    ),
    # A Brevo contact deleted, re-added to a list in the UI, then blocked: the second run of a sync read
    # a block the first one had not applied.
    "block-after-delete-and-readd": (
        "sync_twice(list_name='club');"
        "import_contact(consent='none', kind='client', list_name='news', slot=3);"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=2);"
        "yaml_widens_partners_segment();"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=2);"
        "sync_twice(list_name='news');"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=2);"
        "deliver_webhook(duplicate=False, i=33);"
        "doi_job_sends_confirmations();"
        "sync_twice(list_name='news');"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=3);"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=1);"
        "brevo_admin_deletes_contact(who=8);"
        "doi_job_sends_confirmations();"
        "import_contact(consent='single_opt_in', kind='partner', list_name='partners', slot=3);"
        "sync_twice(list_name='partners');"
        "brevo_admin_blocks_account_wide(who=8);"
        "import_contact(consent='none', kind='client', list_name='partners', slot=0);"
        "import_contact(consent='single_opt_in', kind='partner', list_name='partners', slot=2);"
        "deliver_webhook(duplicate=True, i=27);"
        "sync_twice(list_name='club');"
        "brevo_admin_deletes_contact(who=1);"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=3);"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=2);"
        "brevo_admin_deletes_contact(who=4);"
        "brevo_admin_deletes_contact(who=3);"
        "sync_twice(list_name='partners');"
        "deliver_webhook(duplicate=False, i=33);"
        "brevo_admin_blocks_account_wide(who=5);"
        "import_contact(consent='none', kind='client', list_name='club', slot=1);"
        "import_contact(consent='none', kind='client', list_name='club', slot=1);"
        "deliver_webhook(duplicate=False, i=26);"
        "brevo_admin_blocks_account_wide(who=1);"
        "deliver_webhook(duplicate=True, i=49);"
        "import_contact(consent='single_opt_in', kind='client', list_name=None, slot=0);"
        "sync_twice(list_name='partners');"
    ),
    # A Brevo unsubscribe with the per-list feature off (a bare block, never seen by a sync), then
    # one with the feature on from the same list: the model first asked that the block be kept, where
    # Brevo's state is that of a per-list unsubscribe (a model fix, kept as a replay).
    "bare-block-then-per-list-unsubscribe": (
        "mailchimp_spam_complaint(who=3);"
        "import_contact(consent='none', kind='client', list_name='partners', slot=3);"
        "import_contact(consent='none', kind='client', list_name='partners', slot=2);"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=2);"
        "doi_job_sends_confirmations();"
        "mailchimp_spam_complaint(who=1);"
        "import_contact(consent='none', kind='client', list_name='club', slot=3);"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=0);"
        "mailchimp_spam_complaint(who=0);"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=1);"
        "sync(list_name='club');"
        "drain_inbox();"
        "deliver_webhook(duplicate=False, i=21);"
        "sync_twice(list_name='news');"
        "import_contact(consent='single_opt_in', kind='partner', list_name=None, slot=2);"
        "brevo_unsubscribe(on_b1=False, per_list_feature=False, who=4);"
        "import_contact(consent='none', kind='client', list_name='partners', slot=3);"
        "deliver_webhook(duplicate=False, i=41);"
        "mailchimp_cleans_hard_bounce(who=5);"
        "sync(list_name='club');"
        "brevo_unsubscribe(on_b1=False, per_list_feature=False, who=2);"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=3);"
        "mailchimp_spam_complaint(who=8);"
        "mailchimp_cleans_hard_bounce(who=6);"
        "mailchimp_spam_complaint(who=4);"
        "brevo_admin_deletes_contact(who=4);"
        "brevo_admin_deletes_contact(who=8);"
        "doi_job_sends_confirmations();"
        "mailchimp_admin_archives(who=3);"
        "brevo_unsubscribe(on_b1=False, per_list_feature=True, who=4);"
        "mailchimp_admin_archives(who=7);"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=3);"
        "sync_twice(list_name='partners');"
    ),
    # A spam complaint at Brevo (its webhook not delivered), then a per-list unsubscribe: Brevo's
    # lists show the per-list case; its record of the contact shows the complaint.
    "complaint-then-per-list-unsubscribe": (
        "brevo_unsubscribe(on_b1=False, per_list_feature=False, who=6);"
        "brevo_unsubscribe(on_b1=True, per_list_feature=True, who=7);"
        "sync(list_name='partners');"
        "import_contact(consent='single_opt_in', kind='client', list_name='club', slot=3);"
        "brevo_unsubscribe(on_b1=False, per_list_feature=True, who=5);"
        "brevo_unsubscribe(on_b1=True, per_list_feature=False, who=8);"
        "brevo_unsubscribe(on_b1=True, per_list_feature=True, who=1);"
        "brevo_spam_complaint(who=2);"
        "brevo_spam_complaint(who=2);"
        "brevo_unsubscribe(on_b1=False, per_list_feature=False, who=8);"
        "sync(list_name='club');"
        "sync(list_name='club');"
        "sync(list_name='news');"
        "import_contact(consent='single_opt_in', kind='partner', list_name='partners', slot=0);"
        "sync(list_name='partners');"
        "brevo_spam_complaint(who=6);"
        "brevo_unsubscribe(on_b1=False, per_list_feature=True, who=3);"
        "import_contact(consent='single_opt_in', kind='client', list_name='club', slot=1);"
        "brevo_spam_complaint(who=3);"
        "brevo_unsubscribe(on_b1=False, per_list_feature=False, who=5);"
        "brevo_spam_complaint(who=7);"
        "brevo_unsubscribe(on_b1=False, per_list_feature=True, who=2);"
        "sync(list_name='partners');"
    ),
    # A double opt-in request to club, then a Mailchimp complaint seen by a read of news (whose member
    # she was not): the audience-wide unsubscribe must close club too, before its confirmation mail.
    "audience-unsubscribe-read-through-another-list": (
        "sync(list_name='club');"
        "mailchimp_admin_adds_in_ui(list_name='news', who=6);"
        "mailchimp_admin_archives(who=2);"
        "mailchimp_spam_complaint(who=4);"
        "brevo_admin_blocks_account_wide(who=8);"
        "mailchimp_admin_adds_in_ui(list_name='partners', who=4);"
        "sync_killed_half_way(how='mailchimp-drops-mid-read', list_name='club');"
        "sync(list_name='news');"
        "lose_webhook(i=17);"
        "sync_twice(list_name='partners');"
        "yaml_widens_partners_segment();"
        "drain_inbox();"
        "sync_twice(list_name='partners');"
        "brevo_unsubscribe(on_b1=False, per_list_feature=True, who=2);"
        "sync(list_name='partners');"
        "doi_job_sends_confirmations();"
        "mailchimp_spam_complaint(who=0);"
        "sync_twice(list_name='partners');"
        "mailchimp_admin_adds_in_ui(list_name='news', who=8);"
        "sync_killed_half_way(how='stop', list_name='partners');"
        "brevo_admin_blocks_account_wide(who=8);"
        "doi_job_sends_confirmations();"
        "mailchimp_admin_archives(who=5);"
        "mailchimp_unsubscribe(who=2);"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=2);"
        "brevo_spam_complaint(who=4);"
        "import_contact(consent='single_opt_in', kind='client', list_name='club', slot=0);"
        "sync_twice(list_name='partners');"
        "lose_webhook(i=20);"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=1);"
        "brevo_spam_complaint(who=7);"
        "mailchimp_spam_complaint(who=6);"
        "sync(list_name='news');"
        "brevo_unsubscribe(on_b1=True, per_list_feature=True, who=0);"
        "brevo_spam_complaint(who=0);"
        "sync(list_name='news');"
        "doi_job_sends_confirmations();"
    ),
    # An address cleaned at Mailchimp (a hard bounce), then blocked in Brevo's UI: the block was not
    # recorded as her opt-out from everything because the address had bounced.
    "block-on-a-bounced-address": (
        "yaml_widens_partners_segment();"
        "sync_killed_half_way(how='stop', list_name='club');"
        "sync_killed_half_way(how='brevo-outage-mid-write', list_name='news');"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=3);"
        "mailchimp_admin_adds_in_ui(list_name='news', who=8);"
        "import_contact(consent='none', kind='partner', list_name=None, slot=0);"
        "mailchimp_cleans_hard_bounce(who=8);"
        "sync_killed_half_way(how='stop', list_name='partners');"
        "mailchimp_admin_adds_in_ui(list_name='partners', who=8);"
        "sync(list_name='partners');"
        "sync_killed_half_way(how='brevo-outage-mid-write', list_name='partners');"
        "mailchimp_admin_adds_in_ui(list_name='club', who=4);"
        "import_contact(consent='single_opt_in', kind='client', list_name='club', slot=1);"
        "import_contact(consent='none', kind='client', list_name='club', slot=1);"
        "brevo_admin_blocks_account_wide(who=5);"
        "sync_killed_half_way(how='mailchimp-down', list_name='news');"
        "brevo_admin_blocks_account_wide(who=8);"
        "sync_killed_half_way(how='brevo-outage-mid-write', list_name='partners');"
        "import_contact(consent='single_opt_in', kind='partner', list_name='partners', slot=2);"
        "sync(list_name='news');"
        "mailchimp_cleans_hard_bounce(who=0);"
        "mailchimp_cleans_hard_bounce(who=4);"
        "import_contact(consent='single_opt_in', kind='client', list_name='news', slot=3);"
        "brevo_admin_blocks_account_wide(who=3);"
        "mailchimp_cleans_hard_bounce(who=1);"
        "mailchimp_admin_adds_in_ui(list_name='news', who=4);"
        "yaml_switches_news_to_double_opt_in();"
        "mailchimp_cleans_hard_bounce(who=2);"
        "brevo_admin_blocks_account_wide(who=5);"
        "brevo_admin_blocks_account_wide(who=4);"
        "sync_killed_half_way(how='mailchimp-drops-mid-read', list_name='club');"
        "import_contact(consent='single_opt_in', kind='client', list_name=None, slot=2);"
        "mailchimp_admin_adds_in_ui(list_name='news', who=3);"
        "mailchimp_cleans_hard_bounce(who=0);"
        "brevo_admin_blocks_account_wide(who=5);"
        "sync(list_name='club');"
        "mailchimp_cleans_hard_bounce(who=1);"
        "sync(list_name='news');"
    ),
    # A contact in no list, cleaned at Mailchimp (a hard bounce): the read saw it and recorded
    # nothing, since she was no list's member.
    "hard-bounce-of-a-contact-in-no-list": (
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=2);"
        "import_contact(consent='single_opt_in', kind='partner', list_name='news', slot=2);"
        "yaml_switches_news_to_double_opt_in();"
        "doi_job_sends_confirmations();"
        "import_contact(consent='single_opt_in', kind='client', list_name='news', slot=1);"
        "mailchimp_admin_adds_in_ui(list_name='partners', who=5);"
        "sync(list_name='partners');"
        "sync(list_name='partners');"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=0);"
        "mailchimp_admin_adds_in_ui(list_name='club', who=2);"
        "import_contact(consent='single_opt_in', kind='partner', list_name=None, slot=1);"
        "lose_webhook(i=43);"
        "mailchimp_cleans_hard_bounce(who=5);"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=1);"
        "sync(list_name='partners');"
        "brevo_admin_deletes_contact(who=0);"
        "yaml_widens_partners_segment();"
        "import_contact(consent='none', kind='client', list_name='club', slot=3);"
        "import_contact(consent='single_opt_in', kind='client', list_name='club', slot=2);"
        "brevo_admin_deletes_contact(who=2);"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=2);"
        "lose_webhook(i=21);"
        "sync(list_name='club');"
        "doi_job_sends_confirmations();"
        "brevo_admin_deletes_contact(who=8);"
        "mailchimp_cleans_hard_bounce(who=1);"
        "import_contact(consent='none', kind='client', list_name='club', slot=3);"
        "mailchimp_admin_adds_in_ui(list_name='club', who=0);"
        "mailchimp_cleans_hard_bounce(who=2);"
        "doi_job_sends_confirmations();"
        "sync(list_name='club');"
    ),
    # A member who changed address at Mailchimp (no webhook) then hard-bounced under the new one: the
    # simulator gave the cleaned member a new id, and the read recorded nothing (the member's id is
    # kept by Mailchimp whatever its new state).
    "hard-bounce-after-a-change-of-address": (
        "import_contact(consent='single_opt_in', kind='partner', list_name='club', slot=3);"
        "mailchimp_member_changes_address(who=4);"
        "mailchimp_resubscribes_through_a_form(who=4);"
        "mailchimp_resubscribes_through_a_form(who=6);"
        "mailchimp_resubscribes_through_a_form(who=7);"
        "import_contact(consent='none', kind='partner', list_name='partners', slot=2);"
        "mailchimp_admin_archives(who=7);"
        "mailchimp_cleans_hard_bounce(who=5);"
        "sync_twice(list_name='partners');"
        "mailchimp_resubscribes_through_a_form(who=4);"
        "sync_twice(list_name='club');"
        "mailchimp_member_changes_address(who=3);"
        "mailchimp_member_changes_address(who=4);"
        "brevo_admin_deletes_contact(who=0);"
        "import_contact(consent='single_opt_in', kind='client', list_name=None, slot=3);"
        "import_contact(consent='none', kind='partner', list_name='news', slot=0);"
        "mailchimp_cleans_hard_bounce(who=1);"
        "brevo_unsubscribe(on_b1=False, per_list_feature=True, who=4);"
        "mailchimp_admin_adds_in_ui(list_name='news', who=8);"
        "mailchimp_resubscribes_through_a_form(who=1);"
        "sync(list_name='club');"
        "sync_twice(list_name='partners');"
    ),
    # A change of address at Mailchimp, then a complaint, then the former address re-added to a
    # Brevo list in the UI: the former address stayed subscribed there.
    "complaint-after-a-change-of-address-former-address-readded": (
        "yaml_widens_partners_segment();"
        "doi_job_sends_confirmations();"
        "brevo_admin_blocks_account_wide(who=8);"
        "drain_inbox();"
        "import_contact(consent='single_opt_in', kind='client', list_name='club', slot=0);"
        "gdpr_erasure(who=1);"
        "mailchimp_resubscribes_through_a_form(who=0);"
        "mailchimp_admin_adds_in_ui(list_name='partners', who=7);"
        "lose_webhook(i=2);"
        "drain_inbox();"
        "mailchimp_admin_archives(who=5);"
        "brevo_unsubscribe(on_b1=False, per_list_feature=False, who=7);"
        "import_contact(consent='none', kind='client', list_name='partners', slot=1);"
        "sync(list_name='news');"
        "sync_twice(list_name='partners');"
        "sync(list_name='news');"
        "sync_twice(list_name='partners');"
        "mailchimp_spam_complaint(who=7);"
        "deliver_webhook(duplicate=False, i=3);"
        "mailchimp_member_changes_address(who=2);"
        "mailchimp_resubscribes_through_a_form(who=6);"
        "mailchimp_unsubscribe(who=0);"
        "sync(list_name='partners');"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=1);"
        "mailchimp_unsubscribe(who=2);"
        "mailchimp_unsubscribe(who=7);"
        "mailchimp_admin_adds_in_ui(list_name='partners', who=2);"
        "import_contact(consent='none', kind='partner', list_name=None, slot=0);"
        "sync(list_name='club');"
        "mailchimp_unsubscribe(who=5);"
        "brevo_admin_adds_to_list_in_ui(on_b1=True, slot=2);"
        "mailchimp_unsubscribe(who=3);"
        "mailchimp_admin_adds_in_ui(list_name='partners', who=5);"
        "mailchimp_spam_complaint(who=2);"
        "brevo_admin_adds_to_list_in_ui(on_b1=False, slot=1);"
        "mailchimp_admin_archives(who=8);"
        "sync_twice(list_name='partners');"
    ),
    # A complaint's webhook delivered after a read had applied the complainer's change of address:
    # it named her former address, which no contact held any more, and was never applied.
    "complaint-webhook-naming-a-former-address": (
        "mailchimp_member_changes_address(who=0);"
        "yaml_widens_partners_segment();"
        "mailchimp_member_changes_address(who=3);"
        "brevo_unsubscribe(on_b1=True, per_list_feature=True, who=8);"
        "mailchimp_spam_complaint(who=6);"
        "mailchimp_spam_complaint(who=0);"
        "drain_inbox();"
        "brevo_admin_deletes_contact(who=3);"
        "mailchimp_unsubscribe(who=6);"
        "sync_twice(list_name='partners');"
        "brevo_unsubscribe(on_b1=True, per_list_feature=True, who=2);"
        "import_contact(consent='single_opt_in', kind='partner', list_name='partners', slot=1);"
        "mailchimp_member_changes_address(who=7);"
        "import_contact(consent='none', kind='client', list_name='club', slot=1);"
        "import_contact(consent='single_opt_in', kind='partner', list_name='news', slot=2);"
        "mailchimp_member_changes_address(who=2);"
        "sync_twice(list_name='club');"
        "import_contact(consent='single_opt_in', kind='client', list_name='partners', slot=3);"
        "sync_twice(list_name='news');"
        "yaml_switches_news_to_double_opt_in();"
        "drain_inbox();"
        "mailchimp_spam_complaint(who=0);"
        "import_contact(consent='single_opt_in', kind='partner', list_name='club', slot=1);"
        "deliver_webhook(duplicate=False, i=29);"
        "import_contact(consent='single_opt_in', kind='client', list_name='partners', slot=0);"
        "mailchimp_member_changes_address(who=4);"
        "import_contact(consent='none', kind='client', list_name='partners', slot=0);"
        "brevo_admin_deletes_contact(who=6);"
        "mailchimp_spam_complaint(who=4);"
        "mailchimp_spam_complaint(who=3);"
        "import_contact(consent='none', kind='partner', list_name=None, slot=0);"
        "brevo_admin_deletes_contact(who=0);"
        "brevo_unsubscribe(on_b1=True, per_list_feature=False, who=3);"
        "brevo_unsubscribe(on_b1=True, per_list_feature=False, who=6);"
        "sync_twice(list_name='news');"
        "drain_inbox();"
    ),
}

INVARIANTS = (
    "no_membership_closed_without_a_reason",
    "global_opt_outs_complaints_and_blocks_stay",
    "erased_addresses_are_nowhere_in_the_base",
)


def _steps(text: str) -> list[tuple[str, dict]]:
    calls = ast.parse("[" + text.strip().rstrip(";").replace(";", ",") + "]", mode="eval").body.elts
    return [(c.func.id, {k.arg: ast.literal_eval(k.value) for k in c.keywords}) for c in calls]


# Found sequences whose defect is narrowed, not closed: replayed, reported (xfail) when they fail
# again, never silently dropped.
STILL_OPEN: dict[str, str] = {
    "mc-ui-member-under-a-former-address-read-while-another-list-follows-the-change": (
        "a race on PostgreSQL: a Mailchimp member under a former address, read while another list "
        "follows the change, becomes a second contact"
    ),
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(reason=STILL_OPEN[n], strict=False)) if n in STILL_OPEN else n
        for n in sorted(FOUND_SEQUENCES)
    ],
)
def test_a_sequence_a_long_run_found_holds(world, name):
    machine = ConsentMachine(world)
    try:
        for check in INVARIANTS:
            getattr(machine, check)()
        for n, (rule_name, kwargs) in enumerate(_steps(FOUND_SEQUENCES[name]), 1):
            try:
                getattr(machine, rule_name)(**kwargs)
                for check in INVARIANTS:
                    getattr(machine, check)()
            except AssertionError as exc:
                raise AssertionError(f"step {n}, {rule_name}({kwargs}): {exc}") from exc
    finally:
        machine.teardown()
