"""The rejects file: each row that could not be imported, with its line number and the reason."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

Reject = tuple[int, str, list[Any]]  # (line, reason, the row's cells)


class Rejects:
    """The rejects CSV: line number as in the file, reason, then the original columns. Opened lazily."""

    def __init__(self, path: Path, header: list[str], delimiter: str):
        self.path, self.header, self.delimiter = path, header, delimiter
        self._file: Any = None
        self._writer: Any = None

    def write(self, rows: list[Reject]) -> None:
        if not rows:
            return
        if self._writer is None:
            self._file = self.path.open("w", encoding="utf-8-sig", errors="surrogateescape", newline="")
            self._writer = csv.writer(self._file, delimiter=self.delimiter)
            self._writer.writerow(["row", "reason", *self.header])
        self._writer.writerows([line, reason, *cells] for line, reason, cells in rows)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def default_rejects_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f"{path.stem}.rejects.csv")
