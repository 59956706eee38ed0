"""The ``syncd`` command line: the group and its global options in ``root``, one module per
command or command group."""

from syncd.cli.root import main

__all__ = ["main"]
