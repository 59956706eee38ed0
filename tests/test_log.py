"""No address reaches a log or a printed sample in clear, whatever its alphabet."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from simkit import BrevoSimulator, MailchimpSimulator

from syncd import log
from syncd.cli import main
from syncd.config import load_config
from syncd.db import session_scope
from syncd.membership import join_list
from syncd.models import Contact

_LETTERS = st.characters(categories=("L", "M", "N"))
_NON_ASCII = st.characters(categories=("L", "M", "N"), min_codepoint=0x80)
_SEPARATORS = st.sampled_from(list(".+-_"))


@st.composite
def addresses(draw: st.DrawFn) -> tuple[str, str]:
    """(local part, domain), each with at least one character outside ASCII."""
    local = draw(st.lists(_LETTERS | _SEPARATORS, min_size=1, max_size=20).map("".join))
    local = draw(_LETTERS) + local + draw(_NON_ASCII)
    labels = draw(st.lists(st.text(_LETTERS, min_size=1, max_size=12), min_size=1, max_size=3))
    domain = ".".join([*labels, draw(st.text(_NON_ASCII, min_size=2, max_size=6))])
    return local, domain


_WORDS = st.text(st.characters(categories=("L", "N", "P"), exclude_characters="@"), max_size=15)


@given(addresses(), _WORDS, _WORDS)
def test_any_address_in_a_text_is_masked_but_its_first_character_and_domain(address, before, after):
    local, domain = address
    text = f"{before} {local}@{domain} {after}"
    assert log.mask_email(text) == f"{before} {local[0]}***@{domain} {after}"


@given(addresses())
def test_the_log_processor_masks_non_ascii_addresses_in_every_field(address):
    local, domain = address
    email = f"{local}@{domain}"
    event = {
        "event": "sync.member_rejected",
        "email": email,
        "reason": f"{email} looks fake or invalid",
        "sample": [email, (email,)],
        "detail": {"old": email},
        "error": ValueError(f"rejected {email!r}"),
    }
    rendered = json.dumps(log.mask_personal_data(None, "warning", event), ensure_ascii=False)
    assert f"{local}@" not in rendered
    assert f"{local[1:]}@" not in rendered


@pytest.mark.parametrize(
    "email, masked",
    [
        ("jean@müller.de", "j***@müller.de"),
        ("zoë@exämple.fr", "z***@exämple.fr"),
        ("josé.garcía@exemple.fr", "j***@exemple.fr"),
        ("jean@xn--mller-kva.de", "j***@xn--mller-kva.de"),
        ("e\u0301lodie@exemple.fr", "e***@exemple.fr"),  # é written as e + a combining accent
        ("o'brien@example.ie", "o***@example.ie"),
    ],
)
def test_addresses_reported_in_the_issue_are_masked_whole(email, masked):
    assert log.mask_email(f"rejected: {email} — invalid") == f"rejected: {masked} — invalid"


@pytest.fixture
def brevo():
    with BrevoSimulator() as sim:
        yield sim


@pytest.fixture
def mailchimp():
    with MailchimpSimulator() as sim:
        yield sim


def test_a_sync_with_rejected_non_ascii_members_logs_and_prints_them_masked(
    tmp_path, engine, brevo, mailchimp, monkeypatch
):
    news, audience = brevo.create_target("news"), mailchimp.create_target("audience")
    monkeypatch.setenv("T_BREVO_KEY", brevo.api_key)
    monkeypatch.setenv("T_MC_KEY", mailchimp.api_key)
    path = tmp_path / "syncd.yaml"
    path.write_text(
        f"""
version: 1
providers:
  brevo: {{api_key: "${{T_BREVO_KEY}}", base_url: "{brevo.api_url}", settle_s: 0}}
  mailchimp: {{api_key: "${{T_MC_KEY}}", base_url: "{mailchimp.api_url}", settle_s: 0}}
lists:
  news:
    consent: single_opt_in
    targets:
      - brevo: {{list_id: {news.list_id}}}
      - mailchimp: {{audience: "{audience.list_id}"}}
""",
        encoding="utf-8",
    )
    config = load_config(path)
    # Brevo refuses every address outside ASCII; Mailchimp only the last one (its domain ends in
    # letters outside ASCII), with a reason that quotes the address.
    addresses = ("ana@example.fr", "jean@müller.de", "zoë@exämple.fr", "josé.garcía@correo.españa")
    with session_scope(engine) as s:
        for email in addresses:
            c = Contact(email=email, first_name="Ana")
            s.add(c)
            s.flush()
            join_list(s, c, "news", config.lists["news"], consent="single_opt_in", source="form")

    url = engine.url.render_as_string(hide_password=False)
    args = ["--log-level", "info", "--config", str(path), "--database", url, "sync"]
    result = CliRunner().invoke(main, args)  # the log goes to stderr as JSON lines (not a terminal)

    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    rejected = [(line["target"], line["email"]) for line in lines if line["event"] == "sync.member_rejected"]
    assert sorted(rejected) == [
        (f"brevo:{news.list_id}", "j***@correo.españa"),
        (f"brevo:{news.list_id}", "j***@müller.de"),
        (f"brevo:{news.list_id}", "z***@exämple.fr"),
        (f"mailchimp:{audience.list_id}", "j***@correo.españa"),
    ]
    for masked in ("j***@müller.de", "z***@exämple.fr", "j***@correo.españa"):
        assert f"rejected by the provider: {masked}" in result.stdout
    for clear in ("jean@", "zoë@", "josé.garcía@", "garcía@"):
        assert clear not in result.output
    assert "applied: 1 addition" in result.stdout  # ana was pushed to Brevo: the sync did run
