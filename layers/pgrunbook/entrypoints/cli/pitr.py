"""``pgrunbook pitr ...``: the command-line side of the recovery workflow.

Exit status: 0 recovered (or, for ``start`` without ``--local``, started and past
validation), 1 aborted or failed, 2 a request refused before anything changed.
"""

from __future__ import annotations

import argparse
from typing import Any

from pgrunbook.domain.errors import ConfigError, InvalidTarget
from pgrunbook.entrypoints.cli.render import print_result
from pgrunbook.progress import Progress
from pgrunbook.settings.model import Settings
from pgrunbook.workflows.engine import answer, local_approval, now_utc, require_terminal_or_yes
from pgrunbook.workflows.pitr.control import (
    executions,
    maintenance,
    render_outcome,
    render_status,
    validate_request,
)
from pgrunbook.workflows.pitr.phases import approval_summary


def run_pitr(args: argparse.Namespace, settings: Settings, progress: Progress) -> int:
    command = args.pitr_command
    if command == "start":
        return _start(args, settings, progress)
    if command == "status":
        return _status(args, settings)
    if command == "maintenance":
        return _maintenance(args, settings)
    if command in ("approve", "reject"):
        answered = answer(
            executions(settings),
            command,
            args.execution,
            by=settings.creator,
            yes=getattr(args, "yes", False),
            reason=getattr(args, "reason", None),
            summary=approval_summary,
        )
        text = (
            f"approved {answered['name']} as {answered['by']}: the recovery starts now"
            if command == "approve"
            else f"rejected {answered['name']}: the recovery is aborted and nothing changes"
        )
        print_result(args.json, answered, text)
        return 0
    raise ConfigError(f"unknown pitr command {command}")


def _request(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    request = {
        "target_time": args.target_time,
        "provider": args.provider,
        "reason": args.reason,
        "requested_by": settings.creator,
        "approval_timeout_seconds": args.approval_timeout,
        "deadline_seconds": args.deadline,
        "poll_seconds": args.poll,
    }
    return validate_request(settings, request, now=now_utc())


def _start(args: argparse.Namespace, settings: Settings, progress: Progress) -> int:
    request = _request(args, settings)
    if args.local:
        return _start_local(args, settings, progress, request)
    if args.yes:
        raise ConfigError(
            "--yes applies to --local only: a deployed recovery is approved with pgrunbook pitr approve"
        )
    runs = executions(settings)
    started = runs.start(request, database=settings.database_label, now=now_utc())
    lines = [
        f"pgrunbook pitr  started {started['name']}",
        f"  target        {request['target_time']}  (provider {request.get('provider') or 'as deployed'})",
    ]
    if args.no_wait:
        lines.append("  next          the approval request goes to the SNS topic; see pgrunbook pitr status")
        print_result(args.json, started, "\n".join(lines))
        return 0
    progress.step("waiting for the execution to validate the request")
    checked = runs.wait_past_validation(started["execution"])
    started["validation"] = checked
    if checked["validated"] is False:
        reason = checked["reason"]
        if checked.get("status") == "FAILED" and checked.get("error") in (
            "InvalidTarget",
            "ConfigError",
            "PitrNotEnabled",
        ):
            raise InvalidTarget(f"the recovery was refused before anything changed: {reason}")
        lines.append(f"  ended         {checked['status']}: {reason}")
        print_result(args.json, started, "\n".join(lines))
        return 1
    lines.append(
        "  next          validated; the approval request goes to the SNS topic: answer with "
        f"pgrunbook pitr approve {started['name']} (or reject)"
        if checked["validated"]
        else "  next          still validating; see pgrunbook pitr status"
    )
    print_result(args.json, started, "\n".join(lines))
    return 0


def _start_local(
    args: argparse.Namespace, settings: Settings, progress: Progress, request: dict[str, Any]
) -> int:
    from pgrunbook.operations.context import JobContext
    from pgrunbook.workflows.pitr.phases import run_local

    require_terminal_or_yes(args.yes, "pgrunbook pitr start --local")
    ctx = JobContext(settings, progress=progress)

    approve = local_approval(settings, approval_summary, yes=args.yes)
    state = run_local(ctx, request, approve=approve)
    print_result(args.json, state, render_outcome(state))
    return 0 if state.get("outcome") == "recovered" else 1


def _status(args: argparse.Namespace, settings: Settings) -> int:
    out: dict[str, Any] = {}
    if settings.pitr_state_machine_arn:
        out.update(executions(settings).status(args.execution))
    elif args.execution:
        raise ConfigError("an execution needs the state machine: set PGRUNBOOK_PITR_STATE_MACHINE_ARN")
    name = settings.maintenance_parameter_name
    out["maintenance"] = {"parameter": name, "value": maintenance(settings).read() if name else None}
    if settings.bucket and settings.region:
        from pgrunbook.catalog.reports import ReportStore

        report = ReportStore(settings.primary_store()).latest("pitr")
        if report is not None:
            out["last_report"] = {
                "status": report.status,
                "finished_at": report.finished_at,
                "location": report.location,
                "findings": [f"{f.severity:<8} {f.message}" for f in report.findings],
            }
    print_result(args.json, out, render_status(out))
    return 0


def _maintenance(args: argparse.Namespace, settings: Settings) -> int:
    mode = maintenance(settings)
    now = now_utc()
    if args.switch == "on":
        mode.write(
            {
                "enabled": True,
                "reason": args.reason,
                "recovery_id": None,
                "since": now.isoformat(),
                "by": settings.creator,
            }
        )
    elif args.switch == "off":
        current = mode.read() or {}
        mode.write(
            {
                "enabled": False,
                "until": now.isoformat(),
                "by": settings.creator,
                "recovery_id": current.get("recovery_id"),
            }
        )
    value = mode.read()
    out = {"maintenance": {"parameter": mode.parameter, "value": value}}
    print_result(args.json, out, render_status(out))
    return 0
