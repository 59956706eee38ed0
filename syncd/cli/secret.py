"""``syncd secret``: fresh random secrets for the config."""

from __future__ import annotations

import re

import click


@click.command()
@click.argument("names", nargs=-1)
def secret(names: tuple[str, ...]) -> None:
    """Print a fresh random secret (43 characters) for a webhook URL, a bearer or signing secret,
    or double_opt_in.secret. With variable names, print one NAME=secret line each, ready for a
    secrets.env file: `syncd secret BREVO_WEBHOOK_SECRET SYNCD_SECRET >> secrets.env`."""
    from syncd.secret import generate

    for name in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise click.BadParameter(f"{name!r} is not an environment variable name", param_hint="NAMES")
    if not names:
        click.echo(generate())
    for name in names:
        click.echo(f"{name}={generate()}")
