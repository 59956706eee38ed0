"""Helpers for the contacts tests: run the real CLI against the test base, dump tables."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from syncd.cli import main

CONFIG = """\
version: 1
lists:
  newsletter:
    consent: single_opt_in
  clients-doi:
    consent: double_opt_in
    segment: {kind: [client]}
  vendors:
    consent: legitimate_interest
    segment: {kind: [vendor]}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "syncd.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def syncd(engine: Engine, config_file: Path) -> Callable[..., Result]:
    """Run ``syncd --database <test base> --config <test config> ARGS…``."""
    url = engine.url.render_as_string(hide_password=False)

    def run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(main, ["--database", url, "--config", str(config_file), *args], input=input)

    return run


def _dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order."""
    out = {}
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            out[table.name] = [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key))]
    return out


def _count(engine: Engine, table: str, **where: Any) -> int:
    t = SQLModel.metadata.tables[table]
    query = sa.select(sa.func.count()).select_from(t)
    for key, value in where.items():
        query = query.where(t.c[key] == value)
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()


@pytest.fixture
def dump(engine: Engine) -> Callable[[], dict[str, list[tuple[Any, ...]]]]:
    return lambda: _dump(engine)


@pytest.fixture
def count(engine: Engine) -> Callable[..., int]:
    return lambda table, **where: _count(engine, table, **where)
