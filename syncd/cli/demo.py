"""``syncd demo``: the whole job in one minute, on simulators."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the demo base (and rejects files) in this folder [default: a temporary one, removed].",
)
@click.option("--keep-running", is_flag=True, help="Leave the daemon and the simulators up at the end.")
@click.option("--port", type=int, help="Port of the demo's web app [default: a free one].")
def demo(folder: Path | None, keep_running: bool, port: int | None) -> None:
    """See syncd do its whole job in one minute, on a throw-away base and the bundled Brevo and
    Mailchimp simulators: import, double opt-in, sync, a per-list unsubscribe, a spam
    complaint and the hygiene scan, narrated with the numbers."""
    from syncd.demo import run_demo

    run_demo(folder, keep_running=keep_running, port=port)
