"""``pgrunbook recover-tables start|approve|reject|status``: the operator's side of the
table-recovery workflow (:mod:`pgrunbook.workflows.recover.phases`).

``start`` checks the request's form, then starts an execution of the deployed state machine
(``PGRUNBOOK_RECOVER_TABLES_STATE_MACHINE_ARN``) and waits until its validation has passed or
failed, so that a table the backup lacks is reported at once, with exit status 2.  ``--local``
runs the same phases in this process instead, asking for approval at the terminal (or not,
with ``--yes``).  ``approve|reject EXECUTION`` answer the approval request; ``status`` says
where an execution stands, and what the last recovery reported.

Exit status: 0 repaired, or nothing to repair (for ``start`` without ``--local``: started and
past validation); 1 aborted or failed; 2 a request refused before anything changed.
"""

from __future__ import annotations

import argparse
from typing import Any

from pgrunbook.adapters.aws.stepfunctions import Executions
from pgrunbook.domain.errors import ConfigError, Unreachable, error_names
from pgrunbook.entrypoints.cli.deployed import start_deployed
from pgrunbook.entrypoints.cli.flags import answer_parsers, option_flags, settings_flags
from pgrunbook.entrypoints.cli.render import command_report, print_report
from pgrunbook.operations import registry
from pgrunbook.progress import Progress
from pgrunbook.settings.model import Settings
from pgrunbook.workflows.engine import local_approval
from pgrunbook.workflows.operator import answer_from_command, require_terminal_or_yes
from pgrunbook.workflows.recover.phases import OPTIONS, WORKFLOW, approval_summary, request_options

# State names of infra/constructs/workflows.TableRecoveryWorkflow, as people read them.
STATE_TITLES = {
    "Validate": "validating the request",
    "Restore": "restoring the backup's copy of the tables into the side schema",
    "Diff": "comparing the tables with the backup's copy",
    "AnythingToRepair?": "comparing the tables with the backup's copy",
    "Approval": "waiting for approval",
    "Apply": "comparing again and repairing",
    "Verify": "verifying the repair",
    "Finish": "reporting, dropping the backup's copy",
    "Repaired?": "reporting, dropping the backup's copy",
    "Repaired": "repaired",
    "NothingToRepair": "nothing to repair",
    "Abort": "aborting (approval rejected or timed out)",
    "Aborted": "aborted: nothing was repaired",
    "ReportFailure": "reporting a failure",
    "Failed": "FAILED: the backup's copy is kept for investigation",
    "Rejected": "rejected before anything changed",
}
# a refusal by the validate phase: bad input, or what it had to read was unreachable
REFUSALS = set(error_names((ConfigError, Unreachable)))


def add_parsers(sub: Any) -> None:
    op = registry.get(WORKFLOW)
    parser = sub.add_parser(WORKFLOW, help=op.help)
    commands = parser.add_subparsers(
        dest="recover_tables_command", metavar="RECOVER_TABLES_COMMAND", parser_class=type(parser)
    )
    commands.required = True

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help)
        settings_flags(p, f"{WORKFLOW} {name}")
        return p

    p = add(
        "start",
        help="put chosen tables back to a backup: restore a copy beside them, diff, approval, repair "
        "(Step Functions, or --local)",
    )
    option_flags(p, op.options)
    p.add_argument("--reason", help="why: the incident, shown in the approval request and the report")
    p.add_argument("--local", action="store_true", help="run every phase in this process, not Step Functions")
    p.add_argument("--yes", action="store_true", help="--local: approve without asking")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the execution's validation")
    answer_parsers(add, "the repair")
    p = add("status", help="where a table recovery stands, and what the last one reported")
    p.add_argument("execution", nargs="?", help="execution name or ARN (default: the newest)")


def run(args: argparse.Namespace, settings: Settings, progress: Progress) -> int:
    command = args.recover_tables_command
    if command == "start":
        return _start(args, settings, progress)
    if command in ("approve", "reject"):
        answered, text = answer_from_command(
            executions(settings),
            args,
            by=settings.creator,
            summary=approval_summary,
            approved="the tables are compared again and repaired now",
            rejected="nothing is repaired and the backup's copy is dropped",
        )
        return print_report(args.json, command_report(WORKFLOW, settings, answered, message=text), text)
    if command == "status":
        return _status(args, settings)
    raise ConfigError(f"unknown recover-tables command {command}")


def executions(settings: Settings) -> Executions:
    if not settings.recover_tables_state_machine_arn:
        raise ConfigError(
            "no table-recovery state machine: set PGRUNBOOK_RECOVER_TABLES_STATE_MACHINE_ARN (the stack's "
            "output TableRecoveryStateMachineArn) or pass --local to run the recovery in this process"
        )
    return Executions(settings.recover_tables_state_machine_arn, workflow=WORKFLOW, titles=STATE_TITLES)


def _request(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The request from the flags, its form checked (exit 2 before anything starts)."""
    request: dict[str, Any] = {name: getattr(args, name, None) for name in OPTIONS}
    request.update(requested_by=settings.creator, reason=args.reason)
    request = {k: v for k, v in request.items() if v is not None}
    request_options(request)
    return request


def _start(args: argparse.Namespace, settings: Settings, progress: Progress) -> int:
    request = _request(args, settings)
    if args.local:
        return _start_local(args, settings, progress, request)
    if args.yes:
        raise ConfigError(
            "--yes applies to --local only: a deployed table recovery is approved with "
            "pgrunbook recover-tables approve"
        )
    return start_deployed(
        args,
        settings,
        progress,
        executions(settings),
        request,
        workflow=WORKFLOW,
        what="table recovery",
        shown=[f"  tables        {request['tables']}"],
        after_start="restore, diff, then the approval request goes to the SNS topic",
        after_validation="restore and diff, then the approval request goes to the SNS topic: answer with "
        "pgrunbook recover-tables approve",
        refusals=REFUSALS,
        refused=ConfigError,
    )


def render_local(state: dict[str, Any]) -> str:
    """What a ``--local`` run did, phase by phase."""
    lines = [f"pgrunbook recover-tables  {state.get('recovery_id', '')}  {state.get('outcome', 'unknown')}"]
    lines.append(f"  tables        {', '.join(state.get('tables') or state.get('requested_tables') or [])}")
    lines.append(f"  backup        {state.get('backup_id')} (snapshot {state.get('snapshot_time')})")
    for t in (state.get("diff") or {}).get("tables", []):
        if t["deleted"] or t["inserted"] or t["changed"]:
            lines.append(
                f"  differs       {t['table']}: {t['deleted']} deleted, {t['inserted']} inserted, "
                f"{t['changed']} changed"
            )
    if state.get("approval"):
        lines.append(f"  approved by   {state['approval'].get('by')}")
    repaired = (state.get("repair") or {}).get("totals")
    if repaired:
        lines.append(
            f"  repaired      re-inserted {repaired['deleted']}, put back {repaired['changed']}, "
            f"deleted {repaired['inserted']} inserted rows"
        )
    if state.get("message"):
        lines.append(f"  result        {state['message']}")
    if state.get("abort_reason"):
        lines.append(f"  not repaired  {state['abort_reason']}")
    if state.get("failure_message"):
        lines.append(f"  FAILED        {state['failure_message']}")
    side = state.get("side_schema")
    if side:
        kept = state.get("outcome") == "failed" and state.get("side_schema_kept")
        lines.append(f"  copy          schema {side} {'kept for investigation' if kept else 'dropped'}")
    if state.get("report"):
        lines.append(f"  report        {state['report']}")
    return "\n".join(lines)


def _start_local(
    args: argparse.Namespace, settings: Settings, progress: Progress, request: dict[str, Any]
) -> int:
    from pgrunbook.operations.context import OperationContext
    from pgrunbook.workflows.recover.phases import run_local

    require_terminal_or_yes(args.yes, "pgrunbook recover-tables start --local")
    ctx = OperationContext(settings, progress=progress)
    state = run_local(ctx, request, approve=local_approval(settings, approval_summary, yes=args.yes))
    outcome = f"table recovery {state.get('recovery_id', '')} {state.get('outcome')}"
    problem = (
        None
        if state.get("outcome") in ("repaired", "nothing-to-repair")
        else state.get("failure_message") or outcome
    )
    report = command_report(WORKFLOW, settings, state, message=outcome, problem=problem)
    return print_report(args.json, report, render_local(state))


def _status(args: argparse.Namespace, settings: Settings) -> int:
    out: dict[str, Any] = {}
    if settings.recover_tables_state_machine_arn:
        out.update(executions(settings).status(args.execution))
    elif args.execution:
        raise ConfigError(
            "an execution needs the state machine: set PGRUNBOOK_RECOVER_TABLES_STATE_MACHINE_ARN"
        )
    if settings.bucket and settings.region:
        from pgrunbook.catalog.reports import ReportStore

        report = ReportStore(settings.primary_store()).latest(WORKFLOW)
        if report is not None:
            out["last_report"] = {
                "status": report.status,
                "finished_at": report.finished_at,
                "location": report.location,
                "findings": [f"{f.severity:<8} {f.message}" for f in report.findings],
            }
    lines = ["pgrunbook recover-tables status"]
    if out.get("execution"):
        lines.append(f"  execution     {out['name']}  {out['status']}  ({out['where']})")
        lines += [f"  answer with   {c}" for c in out.get("answer", [])]
        if out.get("reason"):
            lines.append(f"  reason        {out['reason']}")
    for e in out.get("executions", [])[1:]:
        lines.append(f"    {e['name']:<48} {e['status']:<10} {e['started']}")
    last = out.get("last_report")
    if last:
        lines.append(f"  last report   {last['status']}  {last['finished_at']}  {last['location']}")
        lines += [f"    {f}" for f in last["findings"]]
    if len(lines) == 1:
        lines.append("  no table recovery yet")
    return print_report(
        args.json, command_report(WORKFLOW, settings, out, message="status"), "\n".join(lines)
    )
