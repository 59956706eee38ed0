"""The ``syncd`` group: its global options, the errors every command turns into one line, and
the list of its commands."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import sqlalchemy as sa

from connectors.contract import ConnectorError
from syncd import db, log
from syncd.app import App, NoConfigFile, SchemaOutdated
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
from syncd.cli.status import history, status
from syncd.cli.sync import flags, runs, sync
from syncd.cli.users import users_group
from syncd.cli.webhooks import webhooks_group
from syncd.config import ConfigError, UnknownList

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Group(click.Group):
    """The one place where errors become what an operator reads: one line on stderr, exit status
    2 for a usage or config error, 1 for a failure, 130 for Ctrl-C; the traceback only with
    --debug. A command that stored nothing leaves no empty database file behind, whether it
    failed or only read (``syncd history`` in a folder without a base)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _stop_writing_to_the_closed_pipe()
            sys.exit(141)  # what a shell reads from a program SIGPIPE stopped (128 + 13)
        except KeyboardInterrupt:
            if sys.stderr.isatty():
                click.echo("", err=True)  # past the ^C the terminal echoed
            _fail("interrupted", 130)
        except (SystemExit, click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            message, status = _explain(exc, ctx.obj if isinstance(ctx.obj, App) else None)
            _fail(message, status)
        finally:
            _forget_empty_database(ctx)


DATABASE_UNREACHABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)
USAGE_ERRORS = (ConfigError, UnknownList, NoConfigFile, db.DatabaseURLError)


def _explain(exc: Exception, app: App | None) -> tuple[str, int]:
    """The one line an exception becomes, and the exit status."""
    if isinstance(exc, USAGE_ERRORS):
        return str(exc), 2
    if isinstance(exc, SchemaOutdated):
        return str(exc), 1
    if isinstance(exc, DATABASE_UNREACHABLE):
        return f"cannot use the database {_described_url(app)}: {_reason(exc, app)}", 1
    if isinstance(exc, ConnectorError):
        return f"{exc.provider or 'provider'}: {exc}", 1
    if isinstance(exc, OSError):
        return str(exc), 1
    return f"unexpected {type(exc).__name__}: {exc} (run again with --debug to see the traceback)", 1


def _fail(message: str, status: int = 2) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(status)


def _stop_writing_to_the_closed_pipe() -> None:
    """The reader of the output left (``syncd history | head -1``): nothing is wrong, and the
    output still buffered goes nowhere rather than failing again at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _forget_empty_database(ctx: click.Context) -> None:
    """Remove the SQLite file this command created when nothing was stored in it: a mistyped
    command, or a read of a base that did not exist, leaves no empty base behind."""
    if not isinstance(ctx.obj, App):
        return
    try:
        ctx.obj.discard_unused_database()
    except sa.exc.SQLAlchemyError:
        pass  # the failure being reported matters more than the cleanup


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
@click.option("--debug", is_flag=True, help="On an error, show the Python traceback rather than one line.")
@click.version_option(package_name="syncd")
@click.pass_context
def main(
    ctx: click.Context, config_path: str | None, database_url: str | None, log_level: str, debug: bool
) -> None:
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
    webhooks_group,
    status,
    history,
    users_group,
):
    main.add_command(command)
