"""The flags of the ``pgrunbook`` command line, from the option table and the registry.

Every setting of :mod:`pgrunbook.settings.options` with a flag is offered by the commands its
``flag_scope`` names (``common``: all of them).  Flags of settings are typed by argparse
(``--jobs x`` is a usage error); an operation's own flags are taken as given and checked by
the operation's :class:`~pgrunbook.settings.options.Option`, exactly as a Lambda event's keys
are, so both refuse a bad value with the same message.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from pgrunbook.operations import registry
from pgrunbook.settings.model import Settings
from pgrunbook.settings.options import OPTIONS, Option


class OneLineParser(argparse.ArgumentParser):
    """argparse, but bad usage is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"pgrunbook: error: {message} (see pgrunbook {self._command()}--help)\n")
        raise SystemExit(2)

    def _command(self) -> str:
        parts = self.prog.split()[1:]
        return " ".join(parts) + " " if parts else ""


def settings_flags(parser: argparse.ArgumentParser, scope: str) -> None:
    """The flags of the settings ``scope`` offers (``common`` ones first), and --json/--verbose."""
    group = parser.add_argument_group("configuration (flags override PGRUNBOOK_* variables)")
    for opt in OPTIONS:
        if opt.flag and (opt.offered_by(scope) or opt.offered_by(scope.split()[0])):
            kwargs: dict[str, Any] = {"dest": opt.name, "help": f"{opt.doc} ({opt.env})"}
            if opt.kind == "int":
                kwargs["type"] = int
            group.add_argument(opt.flag, **kwargs)
    group.add_argument("--json", action="store_true", help="print the report as JSON")
    group.add_argument("--verbose", "-v", action="store_true", help="more progress detail")


def option_flags(parser: argparse.ArgumentParser, options: tuple[Option, ...]) -> None:
    """An operation's own options: values as given (checked later), switches for booleans."""
    for opt in options:
        if opt.flag is None:
            continue
        if opt.kind == "bool":
            parser.add_argument(
                opt.flag,
                dest=opt.name,
                action="store_const",
                const=not opt.negate,
                default=None,
                help=opt.doc,
            )
        else:
            parser.add_argument(opt.flag, dest=opt.name, metavar=opt.metavar, help=opt.doc)


def answer_parsers(add: Any, what: str) -> None:
    """``approve`` and ``reject`` of a workflow's waiting execution (``add`` makes a subcommand)."""
    p = add("approve", help=f"approve {what} an execution is waiting on")
    p.add_argument("execution", help="execution name or ARN")
    p.add_argument("--yes", action="store_true", help="do not ask to confirm")
    p = add("reject", help=f"reject {what} an execution is waiting on")
    p.add_argument("execution", help="execution name or ARN")
    p.add_argument("--reason", required=True, help="why (goes into the report)")


def load_settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the flags the command was given on top."""
    overrides = {opt.name: getattr(args, opt.name) for opt in OPTIONS if hasattr(args, opt.name)}
    return Settings.load(**overrides)


def option_values(args: argparse.Namespace, op: registry.Operation) -> dict[str, Any]:
    """The operation's options from its flags, checked as a Lambda event's would be."""
    given = {
        opt.name: getattr(args, opt.name) for opt in op.options if getattr(args, opt.name, None) is not None
    }
    return registry.parse_options(op, given, source="cli")
