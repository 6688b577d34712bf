"""``pgrunbook migrate lint|status|plan|apply|rollback|start|approve|reject|runs``.

Exit status: 0 good; 1 a lint error, a disagreement between files and database, or a
migration that failed (it was rolled back; the ones before it stay applied), or a
``start --local`` run that was not approved or failed; 2 bad input (nothing ran).
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from pgrunbook.adapters.aws.stepfunctions import Executions
from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.ids import utcnow
from pgrunbook.entrypoints.cli.flags import answer_parsers, settings_flags
from pgrunbook.entrypoints.cli.render import command_report, print_report
from pgrunbook.progress import Progress
from pgrunbook.settings.model import Settings
from pgrunbook.workflows.engine import local_approval
from pgrunbook.workflows.migrate.engine import Migrator, RunResult, Status
from pgrunbook.workflows.migrate.files import discover
from pgrunbook.workflows.migrate.lint import lint_all
from pgrunbook.workflows.operator import answer_from_command, require_terminal_or_yes


def render_status(status: Status, *, title: str) -> str:
    lines = [f"pgrunbook migrate {title}"]
    for a in status.applied:
        lines.append(
            f"  applied   {a.version}_{a.name}  {a.applied_at:%Y-%m-%d %H:%M:%S}  {a.duration_ms} ms  {a.applied_by}"
        )
    for m in status.pending:
        mode = "" if m.transaction else "  (outside a transaction)"
        lines.append(f"  pending   {m.label}{mode}")
    if not status.applied and not status.pending:
        lines.append("  no migrations")
    for p in status.problems:
        lines.append(f"  PROBLEM   {p}")
    for f in status.findings:
        lines.append(f"  {f.severity:<9} {f.file}:{f.line}: {f.message}")
    return "\n".join(lines)


def render_run(result: RunResult) -> str:
    lines = [f"pgrunbook migrate {result.action}  {'OK' if result.ok else 'FAILED'}"]
    if not result.steps:
        lines.append("  nothing to do")
    for s in result.steps:
        lines.append(
            f"  {s.status:<7} {s.version}_{s.name}  {s.duration_ms} ms"
            + (f"\n          {s.error}" if s.error else "")
        )
    return "\n".join(lines)


def _version(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"\d{14}", value):
        raise ConfigError(f"{value!r} is not a migration version (YYYYMMDDHHMMSS)")
    return value


def add_parsers(sub: Any) -> None:
    migrate = sub.add_parser("migrate", help="schema migrations: lint, status, plan, apply, rollback")
    commands = migrate.add_subparsers(
        dest="migrate_command", metavar="MIGRATE_COMMAND", parser_class=type(migrate)
    )
    commands.required = True

    def add(name: str, help: str, scope: str = "") -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help)
        settings_flags(p, scope or f"migrate {name}")
        return p

    add("lint", help="check the files: transaction-unsafe and destructive statements, missing down parts")
    add("status", help="applied and pending migrations; changed, missing or out-of-order files")
    add("plan", help="what apply would run, with its lint findings")
    p = add("apply", help="apply pending migrations, one transaction each, stopping at the first failure")
    p.add_argument(
        "--allow-destructive", action="store_true", help="run migrations lint flags as destructive"
    )
    p.add_argument("--to", help="apply up to this version")
    p = add("rollback", help="run down parts, newest first")
    p.add_argument("--steps", type=int, help="how many migrations (default 1)")
    p.add_argument("--to", help="roll back every migration after this version")

    def workflow(name: str, help: str) -> argparse.ArgumentParser:
        return add(name, help, scope="migrate workflow")

    p = workflow(
        "start",
        help="start the migration workflow (lint, backup, dry run, approval, apply): deployed, or --local",
    )
    p.add_argument("--reason", help="why (shown in the approval request and the report)")
    p.add_argument("--local", action="store_true", help="run every phase in this process, not Step Functions")
    p.add_argument("--yes", action="store_true", help="--local: approve without asking")
    p.add_argument(
        "--approval",
        choices=("on", "off"),
        help="--local: ask for approval after the dry run (default PGRUNBOOK_MIGRATION_APPROVAL, on); "
        "destructive migrations always ask",
    )
    answer_parsers(workflow, "the migrations")
    p = workflow("runs", help="the migration workflow's executions and where the newest stands")
    p.add_argument("execution", nargs="?", help="execution name or ARN (default: the newest)")


def run(args: argparse.Namespace, settings: Settings, progress: Progress) -> int:
    command = args.migrate_command
    if command == "lint":
        files = discover(settings.migrations_path)
        findings = lint_all(files)
        data = {"files": [m.path.name for m in files], "findings": [f.to_dict() for f in findings]}
        text = "\n".join(
            [f"pgrunbook migrate lint  {len(files)} files, {len(findings)} findings"]
            + [f"  {f}" for f in findings]
        )
        errors = [f for f in findings if f.severity == "error"]
        problem = f"lint: {len(errors)} errors" if errors else None
        return print_report(
            args.json,
            command_report("migrate", settings, data, message=text.splitlines()[0], problem=problem),
            text,
        )
    if command in ("start", "approve", "reject", "runs"):
        return _workflow(args, settings, progress)
    engine = Migrator.from_settings(settings, progress)
    if command in ("status", "plan"):
        status = engine.status()
        if command == "status":
            status.findings = []
        failed = status.problems or any(f.severity == "error" for f in status.findings)
        problem = (
            f"migrate {command}: the files and the database disagree, or lint found errors"
            if failed
            else None
        )
        report = command_report(
            "migrate", settings, status.to_dict(), message=f"migrate {command}", problem=problem
        )
        return print_report(args.json, report, render_status(status, title=command))
    if command == "apply":
        result = engine.apply(allow_destructive=args.allow_destructive, to_version=_version(args.to))
    elif command == "rollback":
        if args.steps is not None and args.steps < 1:
            raise ConfigError("--steps must be at least 1")
        to = _version(args.to)
        result = engine.rollback(steps=None if to else (args.steps or 1), to_version=to)
    else:
        raise ConfigError(f"unknown migrate command {command}")
    problem = None if result.ok else f"migrate {result.action} failed"
    report = command_report(
        "migrate", settings, result.to_dict(), message=f"migrate {result.action}", problem=problem
    )
    return print_report(args.json, report, render_run(result))


def executions(settings: Settings) -> Executions:
    if not settings.migration_state_machine_arn:
        raise ConfigError(
            "no migration state machine: set PGRUNBOOK_MIGRATION_STATE_MACHINE_ARN (the stack's output "
            "MigrationStateMachineArn)"
        )
    return Executions(settings.migration_state_machine_arn, workflow="migrate", validate_state="Lint")


def render_local(state: dict[str, Any]) -> str:
    """What a ``--local`` run did, phase by phase."""
    outcome = state.get("outcome", "unknown")
    lines = [f"pgrunbook migrate  {state.get('migration_id', '')}  {outcome}"]
    pending = [f"{p['version']}_{p['name']}" for p in state.get("pending", [])]
    lines.append(f"  pending       {', '.join(pending) or 'nothing'}")
    if state.get("backup"):
        lines.append(f"  backup        {state['backup'].get('backup_id')}  (restores the database as it was)")
    if state.get("dry_run"):
        lines.append(
            f"  dry run       applied on a restored copy in {state['dry_run'].get('apply_seconds')} s"
        )
    if state.get("approval"):
        lines.append(f"  approved by   {state['approval'].get('by')}")
    if "applied" in state:
        lines.append(f"  applied       {', '.join(state['applied']) or 'nothing'}")
    if "rolled_back" in state:
        lines.append(f"  rolled back   {', '.join(state['rolled_back']) or 'nothing'}")
    for check in (state.get("verification") or {}).get("problems", []):
        lines.append(f"  check         {check}")
    if state.get("abort_reason"):
        lines.append(f"  not applied   {state['abort_reason']}")
    if state.get("failure_message"):
        lines.append(f"  FAILED        {state['failure_message']}")
    if state.get("report"):
        lines.append(f"  report        {state['report']}")
    return "\n".join(lines)


def _start_local(args: argparse.Namespace, settings: Settings, progress: Progress) -> int:
    """``migrate start --local``: the workflow's phases in this process (no AWS account
    beyond the buckets; approval with ``--yes`` or at the terminal)."""
    from pgrunbook.operations.context import OperationContext
    from pgrunbook.workflows.migrate.phases import approval_summary, run_local

    request: dict[str, Any] = {"requested_by": settings.creator}
    if args.reason:
        request["reason"] = args.reason
    if args.approval:
        request["approval"] = args.approval == "on"
    if request.get("approval", settings.migration_approval == "on"):
        require_terminal_or_yes(args.yes, "pgrunbook migrate start --local")
    ctx = OperationContext(settings, progress=progress)
    state = run_local(ctx, request, approve=local_approval(settings, approval_summary, yes=args.yes))
    outcome = f"migration {state.get('migration_id', '')} {state.get('outcome')}"
    problem = (
        None
        if state.get("outcome") in ("applied", "nothing-pending")
        else state.get("failure_message") or outcome
    )
    report = command_report("migrate", settings, state, message=outcome, problem=problem)
    return print_report(args.json, report, render_local(state))


def _workflow(args: argparse.Namespace, settings: Settings, progress: Progress) -> int:
    """The deployed migration workflow: start it, answer its approval, see its runs."""
    from pgrunbook.workflows.migrate.phases import approval_summary

    command = args.migrate_command
    if command == "start" and args.local:
        return _start_local(args, settings, progress)
    if command == "start" and (args.yes or args.approval):
        raise ConfigError(
            "--yes and --approval apply to --local only: a deployed run is approved with "
            "pgrunbook migrate approve"
        )
    runs = executions(settings)
    if command == "start":
        request = {"requested_by": settings.creator}
        if args.reason:
            request["reason"] = args.reason
        started = runs.start(request, database=settings.database_label, now=utcnow())
        text = (
            f"pgrunbook migrate  started {started['name']}\n"
            "  next          lint, backup and dry run; then the approval request goes to the SNS topic: "
            f"pgrunbook migrate approve {started['name']}"
        )
        return print_report(
            args.json, command_report("migrate", settings, started, message=text.splitlines()[0]), text
        )
    if command in ("approve", "reject"):
        answered, text = answer_from_command(
            runs,
            args,
            by=settings.creator,
            summary=approval_summary,
            approved="the migrations are applied now",
            rejected="nothing is applied",
        )
        return print_report(args.json, command_report("migrate", settings, answered, message=text), text)
    status = runs.status(getattr(args, "execution", None))
    lines = ["pgrunbook migrate runs"]
    if status.get("execution"):
        lines.append(f"  execution     {status['name']}  {status['status']}  ({status['where']})")
        lines += [f"  answer with   {c}" for c in status.get("answer", [])]
        if status.get("reason"):
            lines.append(f"  reason        {status['reason']}")
    for e in status.get("executions", []):
        lines.append(f"    {e['name']:<48} {e['status']:<10} {e['started']}")
    return print_report(
        args.json, command_report("migrate", settings, status, message="runs"), "\n".join(lines)
    )
