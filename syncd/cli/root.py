"""The ``syncd`` group: its global options, the errors every command turns into one line, and
the list of its commands."""

from __future__ import annotations

import sys
from typing import Any

import click
import sqlalchemy as sa

from syncd import db, log
from syncd.app import App, SchemaOutdated
from syncd.cli.check import check
from syncd.cli.contacts import contacts
from syncd.cli.db import db_group
from syncd.cli.demo import demo
from syncd.cli.doi import doi_group
from syncd.cli.imports import import_cmd
from syncd.cli.inbox import inbox_group
from syncd.cli.run import run
from syncd.cli.secret import secret
from syncd.cli.simulate import simulate
from syncd.cli.sync import flags, runs, sync
from syncd.cli.users import users_group
from syncd.config import ConfigError, UnknownList

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Group(click.Group):
    """Turns the errors an operator can act on (a bad config, a database that cannot be reached
    or named) into one clear line and exit status 2, for every command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, UnknownList, SchemaOutdated, db.DatabaseURLError) as exc:
            _fail(str(exc))
        except DATABASE_UNREACHABLE as exc:
            app = ctx.obj if isinstance(ctx.obj, App) else None
            _fail(f"cannot use the database {_described_url(app)}: {_reason(exc, app)}")


DATABASE_UNREACHABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)


def _fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(2)


def _described_url(app: App | None) -> str:
    try:
        return db.safe_url(app.url) if app else "(unknown)"
    except ConfigError:
        return "(unknown)"


def _reason(exc: Exception, app: App | None) -> str:
    """The driver's own first line (psycopg: 'connection timeout expired', 'connection refused'),
    without SQLAlchemy's SQL echo and links, and never the password."""
    orig = getattr(exc, "orig", None) or exc
    text = next((line.strip() for line in str(orig).splitlines() if line.strip()), type(exc).__name__)
    text = text.split(" (Background on this error at:")[0]
    password = _password(app)
    return text.replace(password, "***") if password else text


def _password(app: App | None) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        return make_url(db.normalise_url(app.url)).password if app else None  # type: ignore[return-value]
    except Exception:
        return None


@click.group(cls=_Group, context_settings=CONTEXT)
@click.option(
    "--config",
    "config_path",
    envvar="SYNCD_CONFIG",
    type=click.Path(dir_okay=False),
    help="The YAML file describing lists, providers and rules [env SYNCD_CONFIG; default ./syncd.yaml].",
)
@click.option(
    "--database",
    "database_url",
    envvar="SYNCD_DATABASE_URL",
    help="Master base URL, overriding the config [default sqlite:///syncd.db].",
)
@click.option("--log-level", default="warning", show_default=True, help="debug, info, warning or error.")
@click.version_option(package_name="syncd")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, database_url: str | None, log_level: str) -> None:
    """syncd keeps one clean master contact base and keeps your Brevo lists and Mailchimp
    audiences in line with it: imports, deduplication, consent, double opt-in, per-list
    unsubscribes and wrong-list flags.

    Start with `syncd demo`, then write your own YAML (see config/example.yaml) and check it
    with `syncd check --config FILE`.
    """
    log.configure(log_level)
    ctx.obj = App(config_path=config_path, database_url=database_url)


for command in (
    check,
    secret,
    db_group,
    simulate,
    run,
    demo,
    inbox_group,
    doi_group,
    import_cmd,
    contacts,
    sync,
    flags,
    runs,
    users_group,
):
    main.add_command(command)
