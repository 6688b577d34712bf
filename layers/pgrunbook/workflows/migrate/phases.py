"""The runbooks' migration procedure as phases over one JSON state (the Step Functions state
machine in ``infra/workflows.py`` calls them one Lambda invocation at a time)::

    validate (lint, files vs database) -> backup (tier manual, labelled with the versions)
      -> dry_run (that backup restored into a scratch database, the migrations applied and
         verified there, durations recorded) -> request_approval (unless switched off)
      -> apply (the real database) -> verify (data-quality checks) -> finish

* Nothing touches the real database before ``apply``: a lint error stops at ``validate``,
  before the backup; a dry-run failure stops before ``apply``.
* ``apply`` and ``verify`` do not raise when a migration or a check fails: they record it
  (``apply_ok``, ``verify_ok``) so that ``rollback`` knows exactly which migrations this run
  applied and runs their down parts, newest first.  The ``fail`` phase then sends the
  CRITICAL notice naming the phase and the backup that restores everything else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.checks.sql import check_dirs, load_checks, run_checks
from pgrunbook.domain.errors import (
    BackupFailed,
    ConfigError,
    ConnectionLost,
    DatabaseUnreachable,
    MigrationError,
    PgRunbookError,
    TransientNotifyError,
    TransientStorageError,
)
from pgrunbook.domain.ids import new_report_id
from pgrunbook.domain.notices import Notice
from pgrunbook.domain.results import Report
from pgrunbook.operations.backup import take_backup
from pgrunbook.operations.context import OperationContext, store_report
from pgrunbook.operations.restorer import Restorer
from pgrunbook.workflows import engine as workflows
from pgrunbook.workflows.engine import Retry, abort_reason, error_message
from pgrunbook.workflows.migrate.engine import Migrator

REQUEST_KEYS = ("requested_by", "reason", "approval", "approval_timeout_seconds", "execution")
PHASE_TITLES = {
    "validate": "lint and validation",
    "backup": "pre-migration backup",
    "dry_run": "dry run on a restored copy",
    "request_approval": "approval",
    "apply": "apply",
    "verify": "verification",
    "rollback": "rollback",
    "finish": "finish",
}


# Which errors each phase may retry (Lambda's own throttling is retried everywhere).  Applying
# and rolling back never retry: a migration that may have run is not run twice.
_REPORTING = (TransientStorageError, TransientNotifyError)
_DATABASE = (DatabaseUnreachable, ConnectionLost)
RETRIES = {
    "validate": Retry(_DATABASE),
    "backup": Retry(),
    "dry_run": Retry(),
    "request_approval": Retry((TransientNotifyError,)),
    "apply": Retry(),
    "verify": Retry(_DATABASE),
    "rollback": Retry(),
    "finish": Retry(_REPORTING),
    "abort": Retry(_REPORTING),
    "fail": Retry(_REPORTING),
}


class LintFailed(ConfigError):
    """A pending migration cannot run as written."""


class DryRunFailed(MigrationError):
    """The migrations failed on a restored copy; the real database was not touched."""


def _versions(state: dict[str, Any]) -> list[str]:
    return [p["version"] for p in state["pending"]]


def validate(ctx: OperationContext, request: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(request, dict):
        raise ConfigError("a migration request must be a JSON object")
    unknown = sorted(set(request) - set(REQUEST_KEYS))
    if unknown:
        raise ConfigError(f"a migration request does not take {', '.join(unknown)}")
    settings = ctx.settings
    status = Migrator.from_settings(settings).status()
    if status.problems:
        raise ConfigError(f"migrations and database disagree: {status.problems[0]}")
    errors = [f for f in status.findings if f.severity == "error"]
    if errors:
        raise LintFailed(f"lint: {errors[0]}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    approval = request.get("approval", settings.migration_approval == "on")
    if not isinstance(approval, bool):
        raise ConfigError("approval must be true or false")
    destructive = [str(f) for f in status.findings if f.severity == "approval"]
    if destructive and not approval:
        raise ConfigError(f"lint: {destructive[0]}: destructive migrations need the approval step")
    timeout = request.get("approval_timeout_seconds", settings.pitr_approval_timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 7 * 24 * 3600:
        raise ConfigError("approval_timeout_seconds must be a whole number of seconds up to a week")
    now = ctx.now()
    return {
        "migration_id": new_report_id(now),
        "database": settings.database_label,
        "started_at": now.isoformat(),
        "requested_by": str(request.get("requested_by") or settings.creator)[:200],
        "reason": str(request.get("reason") or "")[:500],
        "execution": request.get("execution"),
        "approval_required": approval,
        "approval_timeout_seconds": timeout,
        "pending": [
            {"version": m.version, "name": m.name, "transaction": m.transaction} for m in status.pending
        ],
        "pending_count": len(status.pending),
        "findings": [f.to_dict() for f in status.findings],
        "destructive": destructive,
    }


def backup(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    labels = {
        "reason": "pre-migration",
        "migration_id": state["migration_id"],
        "migrations": ",".join(_versions(state)),
    }
    try:
        result = take_backup(ctx, tier="manual", labels=labels)
    except BackupFailed as exc:
        raise MigrationError(f"the pre-migration {exc}") from None
    state["backup"] = {
        "backup_id": result.backup_id,
        "snapshot_time": result.snapshot.get("time"),
        "labels": labels,
    }
    return state


def dry_run(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """Restore the pre-migration backup into a scratch database and run the migrations there."""
    outcome: dict[str, Any] = {}

    def rehearse(info) -> None:
        started = time.monotonic()
        engine = Migrator.from_settings(
            ctx.settings, ctx.progress, info=info, applied_by=f"dry run {state['migration_id']}"
        )
        try:
            result = engine.apply(allow_destructive=True, only=_versions(state))
            outcome.update(result=result.to_dict(), ok=result.ok)
        except PgRunbookError as exc:
            outcome.update(result={"error": str(exc)}, ok=False)
        outcome["apply_seconds"] = round(time.monotonic() - started, 3)

    started = time.monotonic()
    restored = Restorer(
        ctx.settings,
        backup_id=state["backup"]["backup_id"],
        progress=ctx.progress,
        inspect=rehearse,
        clock=ctx.clock,
        holder=f"migration dry run {state['migration_id']}",
    ).run()
    state["dry_run"] = {
        "restore_status": restored.status,
        "durations": restored.durations,
        "seconds": round(time.monotonic() - started, 3),
        **outcome,
    }
    if restored.status == "untested":
        raise DryRunFailed(
            f"the dry run could not rehearse on a copy of backup {state['backup']['backup_id']}: the restore "
            "target cannot host it ("
            + "; ".join(f"{u.need}: {u.remedy}" for u in restored.unmet)
            + "); the real database was not touched"
        )
    if restored.status != "ok" and not outcome:
        raise DryRunFailed(
            f"the dry run could not restore backup {state['backup']['backup_id']}: {restored.error}"
        )
    if not outcome.get("ok"):
        failed = [s for s in (outcome.get("result") or {}).get("steps", []) if s.get("status") == "failed"]
        why = failed[0].get("error") if failed else (outcome.get("result") or {}).get("error")
        raise DryRunFailed(
            f"the migrations failed on a restored copy (the real database was not touched): {why}"
        )
    return state


def approval_summary(state: dict[str, Any]) -> list[str]:
    dry = state.get("dry_run") or {}
    lines = [
        f"Summary: {state['pending_count']} schema migrations for {state['database']} are waiting for approval",
        f"Requested by: {state['requested_by']}" + (f" ({state['reason']})" if state.get("reason") else ""),
        "Migrations: " + ", ".join(f"{p['version']}_{p['name']}" for p in state["pending"]),
        f"Pre-migration backup: {state['backup']['backup_id']}",
        f"Dry run on a restored copy: ok, {dry.get('apply_seconds')} s to apply",
    ]
    lines += [f"Needs approval: {d}" for d in state.get("destructive", [])]
    return lines + [
        f"Lint: {f['file']}:{f['line']}: {f['severity']}: {f['message']}"
        for f in state.get("findings", [])
        if f["severity"] != "approval"
    ]


def request_approval(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    return workflows.request_approval(
        ctx,
        state,
        workflow="migrate",
        title="Schema Migration",
        summary=approval_summary(state),
        without_answer="nothing is applied.",
    )


def apply(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    result = Migrator.from_settings(ctx.settings, ctx.progress).apply(
        allow_destructive=True, only=_versions(state)
    )
    state["apply"] = result.to_dict()
    state["applied"] = result.done
    state["apply_ok"] = result.ok and len(result.done) == state["pending_count"]
    if not state["apply_ok"]:
        failed = [s for s in result.steps if s.status == "failed"]
        state["failed_phase"] = "apply"
        state["error"] = {
            "Error": "MigrationFailed",
            "Cause": failed[0].error if failed else "not every migration ran",
        }
    return state


def verify(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    with Database.connect(ctx.settings.conninfo(), application_name="pgrunbook-migrate") as db:
        results = run_checks(db, load_checks(check_dirs(ctx.settings.checks_dir)))
    bad = [r for r in results if r.severity == "critical"]
    state["verification"] = {
        "checks": [{"check": r.name, "severity": r.severity, "message": r.message} for r in results],
        "problems": [r.message for r in bad],
    }
    state["verify_ok"] = not bad
    if bad:
        state["failed_phase"] = "verify"
        state["error"] = {"Error": "VerificationFailed", "Cause": "; ".join(r.message for r in bad[:3])}
    return state


def rollback(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """Undo what this run applied (down parts, newest first); nothing else."""
    applied = state.get("applied") or []
    if applied:
        result = Migrator.from_settings(ctx.settings, ctx.progress).rollback(steps=None, only=applied)
        state["rollback"] = result.to_dict()
        state["rolled_back"] = result.done
    else:
        state["rollback"] = {"action": "rollback", "ok": True, "steps": []}
        state["rolled_back"] = []
    return state


def _report(state: dict[str, Any]) -> Report:
    from datetime import datetime

    report = Report.start("migrate", state["database"], datetime.fromisoformat(state["started_at"]))
    report.report_id = state["migration_id"]
    keep = (
        "pending",
        "findings",
        "backup",
        "dry_run",
        "apply",
        "verification",
        "rollback",
        "approval",
        "requested_by",
        "reason",
    )
    report.detail["migration"] = {k: state[k] for k in keep if k in state}
    return report


def finish(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    report = _report(state)
    names = ", ".join(f"{p['version']}_{p['name']}" for p in state["pending"])
    report.add("migrate", "ok", f"applied and verified {state['pending_count']} migrations: {names}")
    report.figures.update(
        migrations=state["pending_count"],
        dry_run_apply_seconds=(state.get("dry_run") or {}).get("apply_seconds"),
        apply_seconds=round(sum(s.get("duration_ms", 0) for s in state["apply"]["steps"]) / 1000, 3),
    )
    report.finished_at = ctx.now().isoformat()
    if ctx.store_reports:
        store_report(ctx, report)
    ctx.send(
        Notice(
            f"RESOLVED - Schema Migration Applied - {state['database']} - {report.finished_at[:19]}Z",
            f"Summary: {report.findings[0].message}\nPre-migration backup: {state['backup']['backup_id']}\n"
            f"Verification: {len(state['verification']['checks'])} data-quality checks, none critical",
            {"job": "migrate", "database": state["database"], "severity": "resolved"},
        )
    )
    state.update(outcome="applied", report=report.location, figures=report.figures)
    return state


def abort(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    reason = abort_reason(state)
    report = _report(state)
    report.add("migrate", "warning", f"the migrations were not applied ({reason}); nothing changed")
    report.finished_at = ctx.now().isoformat()
    if ctx.store_reports:
        store_report(ctx, report)
    ctx.publish(report)
    state.update(outcome="aborted", abort_reason=reason, report=report.location)
    return state


def fail(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    phase = state.get("failed_phase") or "unknown"
    title = PHASE_TITLES.get(phase, phase)
    message = error_message(state.get("error"))
    parts = [f"schema migration of {state.get('database')} failed in the {title} phase: {message}"]
    rolled = state.get("rolled_back")
    if rolled is not None:
        complete = (state.get("rollback") or {}).get("ok")
        parts.append(f"rolled back {', '.join(rolled) or 'nothing (nothing was applied)'}")
        if not complete:
            last = (state.get("rollback") or {}).get("steps", [])[-1:]
            parts.append(f"THE ROLLBACK ITSELF FAILED: {json.dumps(last)}")
    backup_id = (state.get("backup") or {}).get("backup_id")
    if backup_id:
        touched = phase in ("apply", "verify", "rollback")
        parts.append(
            f"backup {backup_id} (taken before this run) restores the database as it was"
            + ("" if touched else "; the real database was not touched")
        )
    report = _report(state)
    report.add(f"migrate:{phase}", "critical", "; ".join(parts), phase=phase, backup_id=backup_id)
    report.finished_at = ctx.now().isoformat()
    if ctx.store_reports:
        store_report(ctx, report)
    ctx.publish(report)
    state.update(
        outcome="failed", failure_message=f"{title} failed: {message}"[:1000], report=report.location
    )
    return state


PHASES = {
    "validate": validate,
    "backup": backup,
    "dry_run": dry_run,
    "request_approval": request_approval,
    "apply": apply,
    "verify": verify,
    "rollback": rollback,
    "finish": finish,
    "abort": abort,
    "fail": fail,
}


def run_phase(
    ctx: OperationContext, phase: str, state: dict[str, Any], *, execution: str | None = None
) -> dict[str, Any]:
    return workflows.run_phase(PHASES, ctx, phase, state, execution=execution, what="migration")


# -- the same phases on a laptop -----------------------------------------------------------


def run_local(
    ctx: OperationContext,
    request: dict[str, Any],
    *,
    approve: Callable[[dict[str, Any]], tuple[bool, str]],
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Every phase in this process, in the state machine's order and with its retries: what
    ``pgrunbook migrate start --local`` runs.

    A request the lint or validation refuses raises (nothing changed).  With nothing pending
    the run ends there (outcome ``nothing-pending``).  ``approve(state)`` is asked after the
    dry run when approval is required and returns ``(approved, who or why not)``.  A failed
    apply or verification rolls back what this run applied and reports; any other failure
    after validation runs the ``fail`` phase, as the state machine's catch does.
    """

    def step(phase: str, state: dict[str, Any]) -> dict[str, Any]:
        return workflows.with_retries(PHASES, RETRIES, phase, ctx, state, sleep)

    state = step("validate", request)
    if state["pending_count"] == 0:
        state["outcome"] = "nothing-pending"
        return state
    phase = "backup"
    try:
        for phase in ("backup", "dry_run"):
            state = step(phase, state)
        if state["approval_required"]:
            phase = "request_approval"
            if not workflows.approved_locally(ctx, state, approve):
                return abort(ctx, state)
        phase = "apply"
        state = step("apply", state)
        if state["apply_ok"]:
            phase = "verify"
            state = step("verify", state)
            if state["verify_ok"]:
                phase = "finish"
                return step("finish", state)
        phase = "rollback"
        state = step("rollback", state)
        return fail(ctx, state)
    except Exception as exc:  # every failure after validation must be reported
        return fail(ctx, workflows.failed_in(state, phase, exc))
