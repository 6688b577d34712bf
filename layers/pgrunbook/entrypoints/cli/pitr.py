"""``pgrunbook pitr ...``: the operator's side of the recovery workflow.

``pgrunbook pitr start`` starts an execution of the deployed state machine
(``PGRUNBOOK_PITR_STATE_MACHINE_ARN``) and waits until its validation has passed or failed, so
that a target outside the window is reported at once, with exit status 2.  ``--local`` runs the
same phases in this process instead (:func:`pgrunbook.workflows.pitr.phases.run_local`).
``pgrunbook pitr approve|reject EXECUTION`` answers through
:class:`pgrunbook.adapters.aws.stepfunctions.Executions`.

Exit status: 0 recovered (or, for ``start`` without ``--local``, started and past
validation), 1 aborted or failed, 2 a request refused before anything changed.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from pgrunbook.adapters.aws.stepfunctions import Executions
from pgrunbook.domain.errors import ConfigError, InvalidTarget
from pgrunbook.domain.ids import utcnow
from pgrunbook.entrypoints.cli.deployed import start_deployed
from pgrunbook.entrypoints.cli.flags import answer_parsers, settings_flags
from pgrunbook.entrypoints.cli.render import command_report, print_report
from pgrunbook.progress import Progress
from pgrunbook.settings.model import Settings
from pgrunbook.workflows.engine import local_approval
from pgrunbook.workflows.operator import answer_from_command, require_terminal_or_yes
from pgrunbook.workflows.pitr.maintenance import MaintenanceMode
from pgrunbook.workflows.pitr.phases import REQUEST_KEYS, approval_summary, check_target
from pgrunbook.workflows.pitr.providers import PROVIDERS


def add_parsers(sub: Any) -> None:
    pitr = sub.add_parser(
        "pitr", help="point-in-time recovery: start, approve or reject, status, maintenance"
    )
    commands = pitr.add_subparsers(dest="pitr_command", metavar="PITR_COMMAND", parser_class=type(pitr))
    commands.required = True

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help)
        settings_flags(p, f"pitr {name}")
        return p

    p = add("start", help="start a recovery to a point in time (Step Functions, or --local)")
    p.add_argument("--target-time", required=True, help="ISO 8601 with a time zone: 2025-09-07T14:30:00Z")
    p.add_argument("--provider", choices=PROVIDERS, help="(PGRUNBOOK_PITR_PROVIDER)")
    p.add_argument("--reason", help="why: the incident, shown in the approval request and the report")
    p.add_argument("--local", action="store_true", help="run every phase in this process, not Step Functions")
    p.add_argument("--yes", action="store_true", help="--local: approve without asking")
    p.add_argument("--approval-timeout", type=int, help="seconds to wait for approval")
    p.add_argument("--deadline", type=int, help="seconds the recovery itself may take")
    p.add_argument("--poll", type=int, help="seconds between progress checks")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the execution's validation")

    p = add("status", help="where a recovery stands, maintenance mode, the last recovery report")
    p.add_argument("execution", nargs="?", help="execution name or ARN (default: the newest)")

    answer_parsers(add, "the recovery")

    p = add("maintenance", help="the application's maintenance mode: on, off or status")
    p.add_argument("switch", choices=("on", "off", "status"))
    p.add_argument("--reason", default="switched on by an operator", help="with on: shown to the application")


def run(args: argparse.Namespace, settings: Settings, progress: Progress) -> int:
    command = args.pitr_command
    if command == "start":
        return _start(args, settings, progress)
    if command == "status":
        return _status(args, settings)
    if command == "maintenance":
        return _maintenance(args, settings)
    if command in ("approve", "reject"):
        answered, text = answer_from_command(
            executions(settings),
            args,
            by=settings.creator,
            summary=approval_summary,
            approved="the recovery starts now",
            rejected="the recovery is aborted and nothing changes",
        )
        return print_report(args.json, command_report("pitr", settings, answered, message=text), text)
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
    return validate_request(settings, request, now=utcnow())


def _start(args: argparse.Namespace, settings: Settings, progress: Progress) -> int:
    request = _request(args, settings)
    if args.local:
        return _start_local(args, settings, progress, request)
    if args.yes:
        raise ConfigError(
            "--yes applies to --local only: a deployed recovery is approved with pgrunbook pitr approve"
        )
    return start_deployed(
        args,
        settings,
        progress,
        executions(settings),
        request,
        workflow="pitr",
        what="recovery",
        shown=[
            f"  target        {request['target_time']}  (provider {request.get('provider') or 'as deployed'})"
        ],
        after_start="the approval request goes to the SNS topic; see pgrunbook pitr status",
        after_validation="the approval request goes to the SNS topic: answer with pgrunbook pitr approve",
        refusals=("InvalidTarget", "ConfigError", "PitrNotEnabled"),
        refused=InvalidTarget,
    )


def _start_local(
    args: argparse.Namespace, settings: Settings, progress: Progress, request: dict[str, Any]
) -> int:
    from pgrunbook.operations.context import OperationContext
    from pgrunbook.workflows.pitr.phases import run_local

    require_terminal_or_yes(args.yes, "pgrunbook pitr start --local")
    ctx = OperationContext(settings, progress=progress)

    approve = local_approval(settings, approval_summary, yes=args.yes)
    state = run_local(ctx, request, approve=approve)
    outcome = f"recovery {state.get('recovery_id')} {state.get('outcome')}"
    problem = None if state.get("outcome") == "recovered" else state.get("failure_message") or outcome
    report = command_report("pitr", settings, state, message=outcome, problem=problem)
    return print_report(args.json, report, render_outcome(state))


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
    return print_report(
        args.json, command_report("pitr", settings, out, message="status"), render_status(out)
    )


def _maintenance(args: argparse.Namespace, settings: Settings) -> int:
    mode = maintenance(settings)
    now = utcnow()
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
    message = f"maintenance mode {'on' if value and value.get('enabled') else 'off'}"
    return print_report(args.json, command_report("pitr", settings, out, message=message), render_status(out))


# State names of infra/workflows.py, as people read them.
STATE_TITLES = {
    "Validate": "validating the request",
    "Prepare": "switching maintenance mode on",
    "SafetyPoint": "taking the safety point",
    "Approval": "waiting for approval",
    "StartRecovery": "starting the recovery",
    "WaitForRecovery": "recovering (waiting between progress checks)",
    "CheckProgress": "recovering (checking progress)",
    "RecoveryDone?": "recovering",
    "Verify": "verifying the recovered database",
    "Cutover": "switching the application over",
    "Finish": "switching maintenance mode off",
    "Recovered": "recovered",
    "Abort": "aborting (approval rejected or timed out)",
    "Aborted": "aborted: nothing was changed",
    "ReportFailure": "reporting a failure",
    "Failed": "FAILED: maintenance mode stays on",
    "Rejected": "rejected before anything changed",
}


def executions(settings: Settings) -> Executions:
    if not settings.pitr_state_machine_arn:
        raise ConfigError(
            "no recovery state machine: set PGRUNBOOK_PITR_STATE_MACHINE_ARN (the stack's output "
            "PitrStateMachineArn) or pass --local to run the recovery in this process"
        )
    return Executions(settings.pitr_state_machine_arn, workflow="pitr", titles=STATE_TITLES)


def validate_request(settings: Settings, request: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    """What can be checked before anything starts: the keys, the time's form, not in the future."""
    unknown = sorted(set(request) - set(REQUEST_KEYS))
    if unknown:
        raise ConfigError(f"a recovery request does not take {', '.join(unknown)}")
    check_target(request.get("target_time"), now)
    return {k: v for k, v in request.items() if v is not None}


def maintenance(settings: Settings) -> MaintenanceMode:
    name = settings.maintenance_parameter_name
    if not name:
        raise ConfigError(
            "maintenance mode is switched off by configuration (PGRUNBOOK_MAINTENANCE_PARAMETER=off)"
        )
    return MaintenanceMode(name, settings.region)


# -- rendering ------------------------------------------------------------------------------


def render_outcome(state: dict[str, Any]) -> str:
    outcome = state.get("outcome", "unknown")
    lines = [
        f"pgrunbook pitr  {state.get('database')}  recovery {state.get('recovery_id')}  {outcome.upper()}"
    ]
    lines.append(f"  target        {state.get('target_time')}  (provider {state.get('provider')})")
    recovery = state.get("recovery") or {}
    where = recovery.get("database") or recovery.get("cluster") or recovery.get("instance")
    if where or recovery.get("project_ref"):
        lines.append(f"  recovered     {where or 'project ' + recovery['project_ref'] + ' in place'}")
    if recovery.get("backup_id"):
        lines.append(f"  from backup   {recovery['backup_id']} (snapshot {recovery.get('snapshot_time')})")
    if outcome == "recovered":
        for key, value in (state.get("resolved") or {}).items():
            lines.append(f"  {key.replace('_', ' '):<13} {value}")
    elif outcome == "aborted":
        lines.append(f"  reason        {state.get('abort_reason')}")
        lines.append(f"  maintenance   {state.get('maintenance_after')}")
    else:
        lines.append(f"  failed        {state.get('failure_message')}")
        lines.append(
            f"  maintenance   {state.get('maintenance_after')}: switch it off with pgrunbook pitr maintenance off"
        )
    if state.get("report"):
        lines.append(f"  report        {state['report']}")
    return "\n".join(lines)


def render_status(status: dict[str, Any]) -> str:
    lines = ["pgrunbook pitr status"]
    if status.get("maintenance") is not None:
        m = status["maintenance"]
        if m.get("parameter"):
            value = m.get("value")
            on = bool(value and value.get("enabled"))
            since = f" since {value.get('since')} ({value.get('reason')})" if on and value else ""
            lines.append(f"  maintenance   {'ON' if on else 'off'}{since}  [{m['parameter']}]")
        else:
            lines.append("  maintenance   not configured")
    if status.get("execution"):
        lines.append(f"  execution     {status['name']}  {status['status']}")
        request = status.get("request") or {}
        lines.append(
            f"  target        {request.get('target_time')}  (provider {request.get('provider') or 'default'})"
        )
        lines.append(f"  now           {status['where']}")
        for command in status.get("answer", []):
            lines.append(f"  answer with   {command}")
        if status.get("reason"):
            lines.append(f"  reason        {status['reason']}")
        for key, value in (status.get("resolved") or {}).items():
            lines.append(f"  {key.replace('_', ' '):<13} {value}")
    elif "executions" in status:
        lines.append("  executions    none yet")
    if status.get("executions"):
        lines.append("  recent executions:")
        for e in status["executions"]:
            lines.append(f"    {e['name']:<48} {e['status']:<10} {e['started']}")
    if status.get("last_report"):
        r = status["last_report"]
        lines.append(f"  last report   {r['status']}  {r['finished_at']}  {r['location']}")
        for finding in r.get("findings", [])[:4]:
            lines.append(f"    {finding}")
    return "\n".join(lines)
