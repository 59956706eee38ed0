"""What one sync run did, per target and per list: the figures `syncd sync` prints and stores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from syncd.core.plan import Plan

SAMPLE = 5  # changes shown per kind in a dry-run

Progress = Callable[[str, int], None]  # (step description, items done since last call)


@dataclass
class TargetReport:
    list_name: str
    target: str
    pulled: int = 0
    # Members the read after the run's writes returned (syncd's own writes among them): that read
    # moves the cursor past those writes, so the next run does not read them again.
    read_after_writes: int = 0
    # Records other lists' targets share with this one (a Brevo account's), read for the changes
    # of address made at the provider that their reads have not shown yet.
    read_elsewhere: int = 0
    reconciled: dict[str, int] = field(default_factory=dict)
    created: int = 0
    planned: dict[str, int] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (email, provider's reason)
    samples: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # kind -> (email, reason)
    write_calls: int = 0
    failed: str | None = None
    incremental: bool = False
    # Contacts planned, and those an incremental plan skipped (planned and stored since their
    # rows last changed).
    contacts_planned: int = 0
    unchanged: int = 0

    @property
    def ok(self) -> bool:
        return self.failed is None

    def count(self, figures: dict[str, int], kind: str, n: int = 1) -> None:
        """Add ``n`` to ``figures[kind]`` (``self.planned``, ``self.applied``, ``self.reconciled``)."""
        figures[kind] = figures.get(kind, 0) + n

    def planned_chunk(self, plan: Plan) -> None:
        """One chunk's plan: its counts, and the first SAMPLE items of each kind with their reason."""
        for kind, n in plan.counts().items():
            self.count(self.planned, kind, n)
        for kind in Plan.KINDS:
            samples = self.samples.setdefault(kind, [])
            for item in getattr(plan, kind)[: SAMPLE - len(samples)]:
                samples.append((item.email, item.reason))


@dataclass
class ListReport:
    list_name: str
    dry_run: bool
    targets: list[TargetReport] = field(default_factory=list)
    skipped: str | None = None  # e.g. another run of this list holds the lock
    confirmations_sent: int = 0  # double opt-in mails to the members asked to confirm
    confirmations_failed: str | None = None  # why they could not be sent (the DOI job retries)

    @property
    def ok(self) -> bool:
        return self.skipped is None and all(t.ok for t in self.targets)

    @property
    def reconfirms(self) -> int:
        """Members without the proof the list needs, asked to confirm (planned, in a dry run).
        Every target plans the same ones; the first to apply them moves them to pending."""
        key = "planned" if self.dry_run else "applied"
        return max((getattr(t, key).get("reconfirms", 0) for t in self.targets), default=0)
