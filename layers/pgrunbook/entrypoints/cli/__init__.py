"""The ``pgrunbook`` command.

Every command prints a report (:class:`~pgrunbook.domain.results.Report`): readable on
stdout, or as JSON with ``--json`` (the same top-level shape for every command); progress goes
to stderr.  The exit status follows from the report's status
(:func:`pgrunbook.domain.results.exit_code`): 0 all good, 1 a check failed or the operation
found a problem, 2 bad input or configuration, or unreachable at the start (one line on
stderr saying why; nothing was changed).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from pgrunbook.domain.errors import PgRunbookError, status_for
from pgrunbook.domain.ids import utcnow
from pgrunbook.domain.redact import install_logging_filter, one_line
from pgrunbook.domain.results import Report
from pgrunbook.entrypoints.cli.flags import load_settings, option_values
from pgrunbook.entrypoints.cli.parser import build_parser
from pgrunbook.operations import registry


def _run(args: argparse.Namespace) -> int:
    from pgrunbook.entrypoints.cli.render import print_report
    from pgrunbook.progress import StreamProgress

    op = registry.get(args.command)
    progress = StreamProgress(sys.stderr, verbose=args.verbose)
    if op.name == "demo":
        from pgrunbook.entrypoints.demo import run_demo

        options = option_values(args, op)
        return run_demo(
            tasks=options["tasks"], keep=options["keep"], html=options["html"], json_out=args.json
        )
    settings = load_settings(args)
    if op.kind == "workflow":
        from pgrunbook.entrypoints.cli.parser import workflow_cli

        return int(workflow_cli(op.name).run(args, settings, progress))
    from pgrunbook.operations.context import OperationContext, run_operation

    options = option_values(args, op)
    if op.name == "diff" and options["apply_repair"] and not options["yes"] and sys.stdin.isatty():
        options["confirm"] = _type_the_name
    report = run_operation(op.name, OperationContext(settings, progress=progress), **options)
    return print_report(args.json, report)


def _type_the_name(database: str, plan: list[str]) -> bool:
    """The repair's last question, after what it will do: the operator types the database's
    name to apply it."""
    sys.stderr.write("\n" + "\n".join(f"  {line}" for line in plan) + "\n\n")
    sys.stderr.write(f"Type the database name ({database}) to apply this repair, anything else to stop: ")
    sys.stderr.flush()
    return sys.stdin.readline().strip() == database


def refusal(command: str, error: PgRunbookError) -> Report:
    """The report of a command that stopped on ``error`` before it could report anything."""
    report = Report.start(command, "-", utcnow())
    message = one_line(error)
    if status_for(error) == "refused":
        report.refused = message
    report.add(command, "critical", message, error=type(error).__name__)
    return report


class Terminated(SystemExit):
    """The process was asked to stop (SIGTERM): exit status 128 + the signal."""


def _terminate(signum: int, frame: object) -> NoReturn:
    raise Terminated(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="pgrunbook: %(levelname)s %(message)s")
    install_logging_filter()
    args = build_parser().parse_args(argv)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (tests)
        previous = None
    try:
        return _run(args)
    except PgRunbookError as exc:
        sys.stderr.write(f"pgrunbook: {one_line(exc)}\n")
        report = refusal(args.command, exc)
        if getattr(args, "json", False):
            from pgrunbook.entrypoints.cli.render import print_report

            print_report(True, report)
        return report.exit_code
    except (KeyboardInterrupt, Terminated) as exc:
        # What the operation recorded before it stopped (a backup: its run as interrupted, its
        # uploads removed) it said on stderr; this says that it stopped, on every output.
        why = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else "stopped by SIGTERM"
        code = 130 if isinstance(exc, KeyboardInterrupt) else int(exc.code or 143)
        sys.stderr.write(f"pgrunbook: {args.command} {why}; it did not finish\n")
        report = Report.start(args.command, "-", utcnow())
        report.add(args.command, "critical", f"{args.command} {why}; it did not finish")
        if getattr(args, "json", False):
            from pgrunbook.entrypoints.cli.render import print_report

            print_report(True, report)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
