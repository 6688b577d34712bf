"""The ``pgrunbook`` command line, built from the registry: every operation of
:mod:`pgrunbook.operations.registry` is a subcommand with its own options as flags
(:mod:`pgrunbook.entrypoints.cli.flags`); the workflows add their own subcommands."""

from __future__ import annotations

import argparse
from typing import Any

from pgrunbook import __version__
from pgrunbook.entrypoints.cli.flags import OneLineParser, option_flags, settings_flags
from pgrunbook.operations import registry


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="pgrunbook", description="PostgreSQL operations runbooks as software.")
    parser.add_argument("--version", action="version", version=f"pgrunbook {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for op in registry.OPERATIONS.values():
        if op.kind == "workflow":
            workflow_cli(op.name).add_parsers(sub)
            continue
        p = sub.add_parser(op.name, help=op.help)
        if op.name == "demo":  # the demo makes its own database and buckets: no settings
            p.add_argument("--json", action="store_true", help="print the report as JSON")
            p.add_argument("--verbose", "-v", action="store_true")
        else:
            settings_flags(p, op.name)
        option_flags(p, op.options)
    return parser


def workflow_cli(name: str) -> Any:
    """The command module of a workflow operation (its subcommands and their ``run``)."""
    if name == "pitr":
        from pgrunbook.entrypoints.cli import pitr

        return pitr
    if name == "recover-tables":
        from pgrunbook.entrypoints.cli import recover_tables

        return recover_tables
    if name == "migrate":
        from pgrunbook.entrypoints.cli import migrate

        return migrate
    raise ValueError(f"{name!r} has no workflow command module")
