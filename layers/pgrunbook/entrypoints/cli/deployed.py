"""Starting a deployed workflow from the CLI (``pitr start``, ``recover-tables start``): start
the execution, then wait until its validation has passed or failed, so that a request the
workflow refuses exits 2 at once (nothing changed) instead of failing later, unseen."""

from __future__ import annotations

import argparse
from collections.abc import Collection
from typing import Any

from pgrunbook.adapters.aws.stepfunctions import Executions
from pgrunbook.domain.errors import PgRunbookError
from pgrunbook.domain.ids import utcnow
from pgrunbook.entrypoints.cli.render import command_report, print_report
from pgrunbook.progress import Progress
from pgrunbook.settings.model import Settings


def start_deployed(
    args: argparse.Namespace,
    settings: Settings,
    progress: Progress,
    runs: Executions,
    request: dict[str, Any],
    *,
    workflow: str,
    what: str,
    shown: list[str],
    after_start: str,
    after_validation: str,
    refusals: Collection[str],
    refused: type[PgRunbookError],
) -> int:
    """``workflow``'s execution started with ``request``.  ``shown``: the request's lines of
    the output; ``after_start`` and ``after_validation``: what comes next (the latter is
    followed by the execution's name, for the approve command); ``refusals``: the error names
    a validation failure refuses with, raised as ``refused`` (exit 2)."""
    started = runs.start(request, database=settings.database_label, now=utcnow())
    lines = [f"pgrunbook {workflow}  started {started['name']}", *shown]

    def done(problem: str | None = None) -> int:
        report = command_report(workflow, settings, started, message=lines[0], problem=problem)
        return print_report(args.json, report, "\n".join(lines))

    if args.no_wait:
        lines.append(f"  next          {after_start}")
        return done()
    progress.step("waiting for the execution to validate the request")
    checked = runs.wait_past_validation(started["execution"])
    started["validation"] = checked
    if checked["validated"] is False:
        reason = checked["reason"]
        if checked.get("status") == "FAILED" and checked.get("error") in refusals:
            raise refused(f"the {what} was refused before anything changed: {reason}")
        lines.append(f"  ended         {checked['status']}: {reason}")
        return done(f"the {what} ended {checked['status']}: {reason}")
    lines.append(
        f"  next          validated; {after_validation} {started['name']} (or reject)"
        if checked["validated"]
        else f"  next          still validating; see pgrunbook {workflow} status"
    )
    return done()
