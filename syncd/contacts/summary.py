"""What an import did: its counts per outcome and its first warnings, for the marketer."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

MAX_NOTES = 50


@dataclass
class Summary:
    read: int = 0
    imported: int = 0
    merged: int = 0
    unchanged: int = 0
    rejected: int = 0
    incomplete: int = 0
    conflicts: int = 0
    updated: int = 0  # values replaced by the file's (import --update)
    phones_dropped: int = 0
    siret_dropped: int = 0
    other_warnings: int = 0
    not_joined: int = 0
    not_joined_why: Counter[str] = field(default_factory=Counter)  # reason → contacts not added to --list
    notes: list[str] = field(default_factory=list)  # first warnings and conflicts, for the marketer
    rejects_path: str | None = None

    def add(self, other: Summary) -> None:
        for name, value in other.counts().items():
            setattr(self, name, getattr(self, name) + value)
        self.not_joined_why.update(other.not_joined_why)
        self.notes.extend(other.notes[: max(0, MAX_NOTES - len(self.notes))])

    def note(self, line: int, text: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(f"row {line}: {text}")

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}
