"""Wrong-list rules: which rules a contact breaks in a list, given what the targets hold (pure).

``hygiene.scan`` reads the base and the last pulls, asks ``violations`` and raises the flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from syncd.config import ListConfig
from syncd.core.segments import ACTIVE, ContactFacts, consent_blockers, eligibility, left_list

ON_TARGET = ("subscribed", "pending", "blocked")

RULES = {
    "not_in_segment": "not in the list's segment",
    "exclusive": "member of two lists declared exclusive",
    "unconfirmed": "double opt-in not confirmed, yet on the provider's list",
    "opted_out_present": "unsubscribed, bounced, complained or opted out, yet on the provider's list",
    "unknown_remote": "on the provider's list, unknown to the master base's list",
    "invalid_email": "invalid email address in a list",
}


@dataclass(frozen=True)
class Violation:
    rule: str
    detail: str
    target_key: str | None = None


def violations(
    list_name: str,
    list_cfg: ListConfig,
    contact: ContactFacts,
    memberships: Mapping[str, str],
    remote: Mapping[str, tuple[str | None, bool]],
    all_lists: Mapping[str, ListConfig],
) -> list[Violation]:
    """The rules ``contact`` breaks in ``list_name``.

    ``memberships``: list name → status. ``remote``: target key → (last pulled remote status,
    whether syncd pushed it). Pure.
    """
    out: list[Violation] = []
    status = memberships.get(list_name)
    in_list = status in ACTIVE
    elig = eligibility(list_name, list_cfg, contact, memberships, all_lists)
    on_targets = [key for key, (remote_status, _) in remote.items() if remote_status in ON_TARGET]
    if in_list or on_targets:
        for reason in elig.reasons:
            if reason.startswith("not in segment"):
                out.append(Violation("not_in_segment", reason))
            elif reason.startswith("exclusive with"):
                out.append(Violation("exclusive", reason))
        if contact.email_status == "invalid":
            out.append(Violation("invalid_email", "the address failed validation"))
    blockers = [*consent_blockers(contact), *left_list(status)]
    for key in on_targets:
        _, pushed = remote[key]
        if blockers:
            out.append(Violation("opted_out_present", "; ".join(blockers), key))
        elif status == "pending" and list_cfg.consent == "double_opt_in":
            out.append(Violation("unconfirmed", "membership pending confirmation", key))
        elif status is None and not pushed and not elig.must:
            out.append(Violation("unknown_remote", "added at the provider, not through syncd", key))
    return out
