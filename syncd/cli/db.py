"""``syncd db upgrade|current``: the master base's schema."""

from __future__ import annotations

import sys

import click

from syncd import db
from syncd.app import App


@click.group(name="db")
def db_group() -> None:
    """Master base schema: migrations."""


@db_group.command()
@click.pass_obj
def upgrade(app: App) -> None:
    """Create or migrate the master base schema to the latest version."""
    engine = app.new_engine()
    db.upgrade(engine)
    click.echo(f"database {db.safe_url(app.url)} at revision {db.current_revision(engine)}")


@db_group.command()
@click.pass_obj
def current(app: App) -> None:
    """Print the schema revision of the master base."""
    engine = app.new_engine()
    rev, head = db.current_revision(engine), db.head_revision()
    click.echo(f"revision {rev or 'none'} (latest {head})")
    if rev != head:
        sys.exit(1)
