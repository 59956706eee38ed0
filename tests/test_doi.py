"""Double opt-in end to end: mail out (SMTP and Brevo), link followed, proof stored; and the ways it fails."""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from email.message import Message

import httpx
import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from simkit import BrevoSimulator, MailchimpSimulator
from sqlmodel import Session, select
from starlette.testclient import TestClient

from connectors.brevo.webhooks import parse_delivery as parse_brevo_delivery
from connectors.contract import EventKind, Target
from connectors.simulators.harness import ThreadedServer, free_port
from syncd import doi
from syncd.cli import main
from syncd.config import Config, MailchimpProvider
from syncd.contacts.qualify import normalise_email
from syncd.inbound.apply import apply_event
from syncd.membership import join_list
from syncd.models import Consent, Contact, DoiToken, Membership, utcnow
from syncd.web.app import create_app

UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"


def make_config(public_url: str = "http://syncd.test", **doi_settings) -> Config:
    return Config.model_validate(
        {
            "version": 1,
            "providers": {"brevo": {"api_key": "sim-key", "base_url": doi_settings.pop("brevo_url", None)}},
            "double_opt_in": {
                "secret": "doi-signing-secret",
                "public_url": public_url,
                "sender": {"email": "news@example.fr", "name": "Example"},
                **doi_settings,
            },
            "lists": {
                "club": {
                    "title": "Le Club",
                    "description": "Internal: DOI list for the club, owner Marc",
                    "consent": "double_opt_in",
                    "targets": [{"brevo": {"list_id": 7}}],
                },
                "news": {"title": "Newsletter", "consent": "single_opt_in"},
            },
        }
    )


class Catcher:
    def __init__(self):
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture
def smtp():
    catcher = Catcher()
    controller = Controller(catcher, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield catcher, controller.port
    controller.stop()


def pending(engine, config, email_addr="ana@example.fr", lists=("club",), **attrs) -> int:
    with Session(engine) as s:
        c = Contact(email=email_addr, first_name="Ana", attributes=attrs)
        s.add(c)
        s.flush()
        for name in lists:
            join_list(s, c, name, config.list(name), consent="single_opt_in", source="site-form")
        s.commit()
        return c.id


def statuses(engine, contact_id) -> dict[str, str]:
    with Session(engine) as s:
        rows = s.exec(select(Membership).where(Membership.contact_id == contact_id)).all()
        return {m.list_name: m.status for m in rows}


def text_part(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode()
    raise AssertionError("no text part")


def confirm_link(text: str) -> str:
    return re.search(r"https?://\S+/confirm/[A-Za-z0-9_.\-]+", text).group(0)


# --- the whole path, on real servers -------------------------------------------------------------


def test_smtp_confirmation_link_followed_records_the_proof(engine, smtp):
    catcher, port = smtp
    app_port = free_port()
    config = make_config(
        f"http://127.0.0.1:{app_port}", transport="smtp", smtp={"host": "127.0.0.1", "port": port}
    )
    cid = pending(engine, config, lists=("club", "news"))

    assert doi.send_pending(engine, config, doi.transport(config)) == 1
    [msg] = catcher.messages
    assert msg["To"] == "Ana <ana@example.fr>" and "Le Club" in msg["Subject"]
    assert "Internal" not in msg.as_string()  # the description is for the team, never sent
    assert email.utils.parsedate_to_datetime(msg["Date"]).tzinfo is not None
    assert re.fullmatch(r"<\S+@example\.fr>", msg["Message-ID"])
    unsubscribe = re.fullmatch(r"<(http://\S+/unsubscribe/\S+)>", msg["List-Unsubscribe"]).group(1)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    body = text_part(msg)
    assert "/prefs/" in body and unsubscribe in body
    link = confirm_link(body)

    with ThreadedServer(create_app(config, engine), port=app_port):
        page = httpx.get(link)  # what a mail scanner does: it must not confirm anything
        assert page.status_code == 200 and "<form" in page.text and 'method="post"' in page.text
        assert "Le Club" in page.text and "Internal" not in page.text  # the title, never the description
        assert statuses(engine, cid)["club"] == "pending"
        done = httpx.post(link, headers={"User-Agent": UA}, data={"lang": "en"})
        assert done.status_code == 200 and "confirmed" in done.text

    assert statuses(engine, cid) == {"club": "subscribed", "news": "subscribed"}
    token = link.rsplit("/", 1)[1]
    with Session(engine) as s:
        proof = s.exec(select(Consent).where(Consent.action == "doi_confirmed")).one()
        assert (proof.list_name, proof.ip, proof.user_agent) == ("club", "127.0.0.1", UA)
        assert proof.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert proof.wording.startswith("confirm.fr.html@")
        row = s.exec(select(DoiToken)).one()
        assert row.used_at is not None and row.token_hash == proof.token_hash
        requested = s.exec(select(Consent).where(Consent.action == "doi_requested")).one()
        assert requested.wording == proof.wording


def test_brevo_transactional_confirmation(engine):
    with BrevoSimulator(api_key="sim-key") as sim:
        app_port = free_port()
        config = make_config(f"http://127.0.0.1:{app_port}", transport="brevo", brevo_url=sim.api_url)
        cid = pending(engine, config, "bob@example.fr", language="en")
        assert doi.send_pending(engine, config, doi.transport(config)) == 1
        [mail] = sim.outbox
        assert mail["to"][0]["email"] == "bob@example.fr"
        assert mail["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert mail["subject"].startswith("Please confirm")  # the contact's language: English
        link = confirm_link(mail["textContent"])
        assert link in mail["htmlContent"]
        with ThreadedServer(create_app(config, engine), port=app_port):
            assert httpx.post(link, headers={"User-Agent": UA}).status_code == 200
    assert statuses(engine, cid) == {"club": "subscribed"}


# --- the ways it fails ---------------------------------------------------------------------------------


class Outbox(list):
    def __call__(self, mail: doi.Mail) -> str:
        self.append(mail)
        return f"<{len(self)}@test>"


def path_of(mail: doi.Mail) -> str:
    return confirm_link(mail.text).removeprefix("http://syncd.test")


@pytest.fixture
def config():
    return make_config()


@pytest.fixture
def client(engine, config):
    with TestClient(create_app(config, engine)) as c:
        yield c


def test_a_link_works_once(engine, config, client):
    cid = pending(engine, config)
    outbox = Outbox()
    doi.send_pending(engine, config, outbox)
    link = path_of(outbox[0])
    assert client.post(link).status_code == 200
    again = client.post(link)
    assert again.status_code == 200 and "déjà confirmée" in again.text
    assert statuses(engine, cid) == {"club": "subscribed"}
    with Session(engine) as s:
        assert len(s.exec(select(Consent).where(Consent.action == "doi_confirmed")).all()) == 1


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: "garbage",
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature altered
        lambda t: "x" + t,  # payload altered
        lambda t: doi.sign(make_config(), "confirm", "never-issued"),  # well signed, never issued
        lambda t: doi.sign(make_config(), "prefs", 1, "abc"),  # a token for another use
    ],
)
def test_forged_or_altered_links_get_a_clear_400(engine, config, client, mangle):
    cid = pending(engine, config)
    outbox = Outbox()
    doi.send_pending(engine, config, outbox)
    token = mangle(path_of(outbox[0]).rsplit("/", 1)[1])
    for r in (client.get(f"/confirm/{token}"), client.post(f"/confirm/{token}")):
        assert r.status_code == 400
        assert "Lien non valable" in r.text and "Traceback" not in r.text
    assert statuses(engine, cid) == {"club": "pending"}


@pytest.mark.parametrize("junk", ["==", "!!", "%0A", "%20", "~"])
def test_prefs_and_unsubscribe_links_with_junk_appended_are_refused(engine, config, client, junk):
    cid = pending(engine, config, lists=("club", "news"))
    outbox = Outbox()
    doi.send_pending(engine, config, outbox)
    unsubscribe = outbox[0].headers["List-Unsubscribe"].strip("<>").removeprefix("http://syncd.test")
    with Session(engine) as s:
        prefs = f"/prefs/{doi.prefs_token(config, s.get(Contact, cid))}"
    for link in (prefs, unsubscribe):
        assert client.get(link + junk).status_code == 400
        assert client.post(link + junk, data={"all": "1"}).status_code == 400
        assert client.get(link).status_code == 200  # the link as sent still works
    assert statuses(engine, cid) == {"club": "pending", "news": "subscribed"}


def test_a_link_with_junk_prepended_or_an_altered_last_character_is_refused(config):
    token = doi.sign(config, "prefs", 1, "abc")
    body, _, mac = token.partition(".")
    assert doi.unsign(config, "prefs", token) == [1, "abc"]
    bits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # The same bytes spelled another way: unused low bits of the last character set.
    last = bits[bits.index(body[-1]) + 1]
    for forged in (" " + token, token + "\n", f"{body[:-1]}{last}.{mac}", f"{body}..{mac}", body + mac):
        assert doi.unsign(config, "prefs", forged) is None, forged


def test_expired_link_offers_a_new_one(engine, config, client):
    cid = pending(engine, config)
    outbox = Outbox()
    doi.send_pending(engine, config, outbox, now=utcnow() - timedelta(days=8))
    link = path_of(outbox[0])
    page = client.get(link, params={"lang": "en"})
    assert page.status_code == 410 and "expired" in page.text and f"{link}/renew" in page.text
    assert client.post(link).status_code == 410
    assert statuses(engine, cid) == {"club": "pending"}

    renewed = Outbox()
    with TestClient(create_app(config, engine, send=renewed)) as c:
        assert c.post(f"{link}/renew").status_code == 200
    [fresh] = renewed
    assert client.post(path_of(fresh)).status_code == 200
    assert statuses(engine, cid) == {"club": "subscribed"}


def test_asking_for_new_links_is_limited_per_address_and_window(engine, smtp):
    catcher, port = smtp
    config = make_config(
        transport="smtp", smtp={"host": "127.0.0.1", "port": port}, renewals={"max": 3, "per": "1d"}
    )
    ana, bob = pending(engine, config), pending(engine, config, "bob@example.fr")
    old = Outbox()
    doi.send_pending(engine, config, old, now=utcnow() - timedelta(days=8))
    ana_link, bob_link = (path_of(m) + "/renew" for m in sorted(old, key=lambda m: m.to_email))

    with ThreadedServer(create_app(config, engine)) as srv, ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: httpx.post(srv.url + ana_link, data={"lang": "en"}, timeout=60), range(25))
        )
        assert sorted(r.status_code for r in answers) == [200] * 3 + [429] * 22
        limited = next(r for r in answers if r.status_code == 429)
        assert "Link already sent" in limited.text and "You can ask for a new one from 20" in limited.text
        assert 0 < int(limited.headers["Retry-After"]) <= 24 * 3600
        # The limit is the address's: someone else's renewal goes through.
        assert httpx.post(srv.url + bob_link).status_code == 200

    assert sorted(m["To"] for m in catcher.messages) == ["Ana <ana@example.fr>"] * 3 + [
        "Ana <bob@example.fr>"
    ]
    with Session(engine) as s:
        assert len(s.exec(select(DoiToken).where(DoiToken.contact_id == ana)).all()) == 4
    # Once the window has passed, the address may ask again.
    token = ana_link.removeprefix("/confirm/").removesuffix("/renew")
    later = utcnow() + timedelta(days=1, minutes=1)
    assert doi.renew(engine, config, token, Outbox(), now=later).state == "sent"
    assert statuses(engine, bob) == {"club": "pending"}


def test_pending_request_is_mailed_once_reminded_once_then_expires(engine, config):
    cid = pending(engine, config)
    outbox = Outbox()
    sent_at = utcnow()
    assert doi.send_pending(engine, config, outbox, now=sent_at) == 1
    assert doi.send_pending(engine, config, outbox, now=sent_at + timedelta(hours=1)) == 0
    assert doi.remind(engine, config, outbox, now=sent_at + timedelta(days=1)) == 0
    assert doi.remind(engine, config, outbox, now=sent_at + timedelta(days=2, seconds=1)) == 1
    assert doi.remind(engine, config, outbox, now=sent_at + timedelta(days=3)) == 0
    assert outbox[1].subject.startswith("Rappel")
    assert doi.expire(engine, config, now=sent_at + timedelta(days=6)) == 0
    assert doi.expire(engine, config, now=sent_at + timedelta(days=7, seconds=1)) == 1
    assert statuses(engine, cid) == {"club": "unsubscribed"}
    with Session(engine) as s:
        m = s.exec(select(Membership)).one()
        assert m.reason == "doi expired"
    assert doi.expire(engine, config, now=sent_at + timedelta(days=9)) == 0
    assert doi.send_pending(engine, config, outbox, now=sent_at + timedelta(days=9)) == 0


def test_the_reminder_link_confirms_too(engine, config, client):
    cid = pending(engine, config)
    outbox = Outbox()
    doi.send_pending(engine, config, outbox, now=utcnow() - timedelta(days=3))
    doi.remind(engine, config, outbox)
    assert client.post(path_of(outbox[1])).status_code == 200
    assert client.post(path_of(outbox[0])).status_code == 200  # the first link: already confirmed
    assert statuses(engine, cid) == {"club": "subscribed"}


class Refusing(Catcher):
    """An SMTP server that answers every recipient with ``code`` (4xx: try later; 5xx: never)."""

    def __init__(self, code: str):
        super().__init__()
        self.code, self.tries = code, 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        self.tries += 1
        if self.code:
            return self.code
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def refusing_smtp():
    catcher = Refusing("451 4.3.0 mailbox busy, try later")
    controller = Controller(catcher, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield catcher, controller.port
    controller.stop()


def deliveries(engine, contact_id) -> list[str]:
    with Session(engine) as s:
        rows = s.exec(select(DoiToken).where(DoiToken.contact_id == contact_id).order_by(DoiToken.id))
        return [r.delivery for r in rows]


def test_a_failed_send_is_retried_with_back_off_then_dead_and_visible(engine, refusing_smtp, tmp_path):
    server, port = refusing_smtp
    config = make_config(
        transport="smtp",
        smtp={"host": "127.0.0.1", "port": port},
        retries={"attempts": 4, "first_after": "5m"},
    )
    cid = pending(engine, config)
    t0 = utcnow()
    send = doi.transport(config)
    # The job runs every minute; the server is only tried again once each back-off is over.
    for minute in range(0, 24 * 60, 1):
        doi.send_pending(engine, config, send, now=t0 + timedelta(minutes=minute))
        if server.tries == 4:
            break
    assert server.tries == 4 and minute == 5 + 10 + 20  # 5, 10, 20 minutes between the attempts
    assert deliveries(engine, cid) == ["failed", "failed", "failed", "dead"]
    for later in (timedelta(hours=1), timedelta(days=30)):  # given up: no retry, and no "expiry"
        assert doi.send_pending(engine, config, send, now=t0 + later) == 0
        assert doi.expire(engine, config, now=t0 + later) == 0
    assert server.tries == 4
    with Session(engine) as s:
        m = s.exec(select(Membership).where(Membership.contact_id == cid)).one()
        assert m.status == "pending" and m.reason.startswith(
            "confirmation undeliverable: SMTPRecipientsRefused"
        )
        assert s.exec(select(Consent).where(Consent.action == "doi_requested")).all() == []

    # The operator sees it, fixes the server, and gives the request another try.
    path = tmp_path / "syncd.yaml"
    path.write_text("version: 1\nlists: {club: {consent: double_opt_in}}\n")
    cli = CliRunner()
    url = engine.url.render_as_string(hide_password=False)
    status = cli.invoke(main, ["--config", str(path), "--database", url, "doi", "status"])
    assert status.exit_code == 0, status.output
    assert "1 dead" in status.output and "ana@example.fr" in status.output and "club" in status.output
    assert "after 4 attempts" in status.output and "451" in status.output
    as_json = json.loads(
        cli.invoke(
            main, ["--config", str(path), "--database", url, "doi", "status", "--format", "json"]
        ).stdout
    )
    assert as_json["counts"]["dead"] == 1 and as_json["dead"][0]["list_name"] == "club"
    requeued = cli.invoke(main, ["--config", str(path), "--database", url, "doi", "requeue"])
    assert requeued.exit_code == 0 and "1 request queued again" in requeued.output
    server.code = ""
    assert doi.send_pending(engine, config, send, now=t0 + timedelta(days=31)) == 1
    assert len(server.messages) == 1 and deliveries(engine, cid)[-1] == "sent"


@pytest.mark.parametrize("smtputf8", [True, False])
def test_a_non_ascii_address_is_mailed_over_smtp_or_reported_undeliverable(engine, smtputf8):
    catcher = Catcher()
    controller = Controller(catcher, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=smtputf8)
    controller.start()
    try:
        config = make_config(transport="smtp", smtp={"host": "127.0.0.1", "port": controller.port})
        jean = pending(engine, config, normalise_email("Jean@Müller.de"))
        zoe = pending(engine, config, normalise_email("zoë@exämple.fr"))
        sent = doi.send_pending(engine, config, doi.transport(config))
    finally:
        controller.stop()
    to = sorted(m["To"] for m in catcher.messages)
    if smtputf8:
        assert sent == 2 and to == ["Ana <jean@xn--mller-kva.de>", "Ana <zoë@exämple.fr>"]
    else:
        # An ASCII local part only needs its domain in IDNA form; a non-ASCII one needs SMTPUTF8.
        assert sent == 1 and to == ["Ana <jean@xn--mller-kva.de>"]
        assert deliveries(engine, zoe) == ["dead"]  # at once: retrying cannot help
        with Session(engine) as s:
            row = s.exec(select(DoiToken).where(DoiToken.contact_id == zoe)).one()
            assert "SMTPUTF8" in row.error
    assert deliveries(engine, jean) == ["sent"]
    assert "confirm" in text_part(catcher.messages[0]).lower()


def test_a_name_with_a_line_break_is_cleaned_at_every_entry_and_the_mail_goes(engine, smtp, tmp_path):
    from syncd import inbox
    from syncd.contacts.importer import Options, import_file

    catcher, port = smtp
    config = make_config(transport="smtp", smtp={"host": "127.0.0.1", "port": port})
    # A row already in the base (written before names were cleaned) is cleaned on the way out.
    old = pending(engine, config, "old@example.fr")
    with Session(engine) as s:
        s.get(Contact, old).first_name = "Ana\r\nBcc: victim@example.org"
        s.commit()
    # The importer.
    csv = tmp_path / "people.csv"
    csv.write_text('email,first_name,last_name\nimp@example.fr,"Léa\r\nBcc: x@evil.example",Roy\x07\n')
    import_file(
        engine,
        csv,
        Options(channel="fair", list_name="club", list_cfg=config.lists["club"], consent="single_opt_in"),
    )
    # A provider's profile webhook.
    hooked = pending(engine, config, "hook@example.fr")
    mailchimp = MailchimpProvider(api_key="k-us1", base_url="http://127.0.0.1:9/3.0", webhook_secret="s")
    hook_config = config.model_copy(
        update={"providers": config.providers.model_copy(update={"mailchimp": mailchimp})}
    )
    body, _ = MailchimpSimulator().webhook_payload(
        EventKind.PROFILE_UPDATED,
        "hook@example.fr",
        Target("mailchimp", "aud"),
        first_name="Zoé\r\nX: y",
        fired_at=utcnow() + timedelta(minutes=1),  # newer than the contact (Mailchimp: to the second)
    )
    with TestClient(create_app(hook_config, engine)) as c:
        r = c.post(
            "/hooks/mailchimp/s", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert r.status_code == 200
    inbox.drain(engine, hook_config)

    with Session(engine) as s:
        names = {c.email: (c.first_name, c.last_name) for c in s.exec(select(Contact)).all()}
    assert names["imp@example.fr"] == ("Léa Bcc: X@evil.example", "Roy")
    assert names["hook@example.fr"] == ("Zoé X: y", None)
    assert doi.send_pending(engine, config, doi.transport(config)) == 3
    to = sorted(m["To"] for m in catcher.messages)
    assert to == [
        '"Ana Bcc: victim@example.org" <old@example.fr>',
        '"Léa Bcc: X@evil.example Roy" <imp@example.fr>',
        '"Zoé X: y" <hook@example.fr>',
    ]
    assert all(m["Bcc"] is None for m in catcher.messages)
    assert statuses(engine, hooked) == {"club": "pending"}


def test_one_click_unsubscribe_leaves_that_list_only(engine, config, client):
    cid = pending(engine, config, lists=("club", "news"))
    outbox = Outbox()
    doi.send_pending(engine, config, outbox)
    url = outbox[0].headers["List-Unsubscribe"].strip("<>").removeprefix("http://syncd.test")
    assert (
        client.get(url).status_code == 200 and statuses(engine, cid)["club"] == "pending"
    )  # GET is harmless
    r = client.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200
    assert statuses(engine, cid) == {"club": "unsubscribed", "news": "subscribed"}
    assert client.post(url.replace("/unsubscribe/", "/unsubscribe/x")).status_code == 400


def test_the_subject_is_the_list_title_as_written_not_html_escaped(engine):
    config = make_config()
    data = config.model_dump(by_alias=True)
    data["lists"]["club"]["title"] = "Tom & Jerry's <club>"
    config = Config.model_validate(data)
    pending(engine, config)
    outbox = Outbox()
    doi.send_pending(engine, config, outbox)
    assert outbox[0].subject == "Confirmez votre inscription à Tom & Jerry's <club>"
    assert "Tom &amp; Jerry&#39;s &lt;club&gt;" in outbox[0].html  # the page itself stays escaped


def test_custom_template_and_its_wording_version(engine, tmp_path):
    (tmp_path / "mine.html").write_text(
        "{% set subject %}Join {{ list_description }}{% endset %}"
        "<a href='{{ confirm_url }}'>yes</a> <a href='{{ prefs_url }}'>prefs</a>"
    )
    (tmp_path / "mine.txt").write_text("Yes: {{ confirm_url }}\nUnsubscribe: {{ unsubscribe_url }}\n")
    config = make_config(template=str(tmp_path / "mine.html"))
    pending(engine, config)
    outbox = Outbox()
    doi.send_pending(engine, config, outbox)
    assert outbox[0].subject == "Join Le Club"
    assert outbox[0].wording.startswith("mine.html@")


def test_a_mails_unsubscribe_and_preference_links_still_work_after_the_address_changed(
    engine, config, client
):
    """A mail's links are the person's way out for as long as they hold the mail: a change of
    address learnt since (a Brevo account user, a Mailchimp profile form) must not turn them into
    "invalid link" pages and lose the withdrawal."""
    cid = pending(engine, config, lists=("club", "news"))
    outbox = Outbox()
    doi.send_pending(engine, config, outbox)
    unsubscribe = outbox[0].headers["List-Unsubscribe"].strip("<>").removeprefix("http://syncd.test")
    prefs = re.search(r"http://syncd\.test(/prefs/\S+)", outbox[0].text).group(1)

    # Brevo reports that Ana's record now has another address: the base follows.
    body, _ = BrevoSimulator().webhook_payload(
        EventKind.EMAIL_CHANGED, "ana@example.fr", new_email="ana.new@example.fr"
    )
    with Session(engine) as s:
        [event] = parse_brevo_delivery(body, None).events
        assert apply_event(s, event, config) == "applied"
        s.commit()
    with Session(engine) as s:
        assert s.get(Contact, cid).email == "ana.new@example.fr"

    r = client.post(
        unsubscribe,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.text
    assert statuses(engine, cid) == {"club": "unsubscribed", "news": "subscribed"}

    page = client.get(prefs)
    assert page.status_code == 200 and "ana.new@example.fr" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    saved = client.post(prefs, data={"csrf": csrf, "all": "1"})
    assert saved.status_code == 200, saved.text
    with Session(engine) as s:
        assert s.get(Contact, cid).global_opt_out
    assert statuses(engine, cid) == {"club": "unsubscribed", "news": "unsubscribed"}


def test_a_link_does_not_open_another_contacts_page_under_a_reused_id(engine, config, client):
    """The binding to the address stays: a link made for a deleted contact whose id a new contact
    got (SQLite reuses the highest rowid) opens nothing."""
    cid = pending(engine, config, lists=("news",))
    with Session(engine) as s:
        old = s.get(Contact, cid)
        unsubscribe = f"/unsubscribe/{doi.unsubscribe_token(config, old, 'news')}"
        prefs = f"/prefs/{doi.prefs_token(config, old)}"
        s.delete(old)
        s.commit()
    with Session(engine) as s:
        bob = Contact(id=cid, email="bob@example.fr", first_name="Bob")
        s.add(bob)
        s.flush()
        join_list(s, bob, "news", config.list("news"), consent="single_opt_in", source="site-form")
        s.commit()
    assert client.post(unsubscribe).status_code == 400
    assert client.get(prefs).status_code == 400
    assert statuses(engine, cid) == {"news": "subscribed"}
