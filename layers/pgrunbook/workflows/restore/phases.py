"""The restore workflow: a scheduled restore test or DR drill whose target may be a throwaway
RDS instance, which takes longer to create than one Lambda invocation may last.

    Plan ─(embedded or a configured server)→ Run → Done
         ─(rds)→ Provision → Wait ⇄ CheckTarget → Run → Teardown → Done
    any failure after Provision → Teardown → ReportFailure → Failed

* ``plan`` picks the backup the operation will test (the newest of ``prefer_tier``, or the
  newest; for a drill the newest in the DR bucket), decides where it is restored
  (:func:`pgrunbook.operations.targets.plan_target`), and deletes leftover targets of runs
  that died (the sweep).  The state's ``started_at`` is the run's start: a drill's RTO counts
  from it, so provisioning the target is part of the recovery time, as in a real complete
  loss.
* ``provision`` asks RDS for the instance (idempotent: a retried step takes the instance it
  made); ``check_target`` says whether it is ready (a broken or vanished instance fails the
  run; so does one not ready after an hour).
* ``run`` runs the operation itself (``restore-test`` or ``dr-drill``) into that target: its
  report is stored and sent as any run's.
* ``teardown`` deletes the instance (always: the state machine routes every failure after
  provisioning through it) and sweeps again.
* ``fail`` stores and sends a critical report of the operation naming the step that failed.

The same phases run on a laptop through :mod:`pgrunbook.operations.targets`' context manager
(no Step Functions needed there: the process just waits).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from pgrunbook.adapters.aws.rds_targets import READY, problem_with
from pgrunbook.catalog.backups import Catalog
from pgrunbook.domain import metrics
from pgrunbook.domain.errors import (
    ConfigError,
    DatabaseUnreachable,
    RestoreFailed,
    TransientNotifyError,
    TransientStorageError,
)
from pgrunbook.domain.redact import one_line
from pgrunbook.domain.results import Report
from pgrunbook.operations.context import OperationContext, run_operation, store_report
from pgrunbook.operations.targets import READY_TIMEOUT, plan_target, rds_targets
from pgrunbook.workflows import engine as workflows
from pgrunbook.workflows.engine import Retry

OPERATIONS = ("restore-test", "dr-drill")
POLL_SECONDS = 60

RETRIES = {
    "plan": Retry((TransientStorageError,)),
    "provision": Retry((TransientStorageError,)),
    "check_target": Retry((TransientStorageError,)),
    "run": Retry(),  # a restore that may have started is not run twice
    "teardown": Retry((TransientStorageError, DatabaseUnreachable), attempts=5),
    "fail": Retry((TransientStorageError, TransientNotifyError)),
}


def _drill(state: dict[str, Any]) -> bool:
    return state["operation"] == "dr-drill"


def plan(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    operation = state.get("operation")
    if operation not in OPERATIONS:
        raise ConfigError(f"the restore workflow runs {' or '.join(OPERATIONS)}, not {operation!r}")
    options = dict(state.get("options") or {})
    settings = ctx.settings
    drill = operation == "dr-drill"
    store = settings.dr_store() if drill else settings.store(options.get("source", "primary"))
    manifest, _ = Catalog(store).to_restore(options.get("backup_id"), options.get("prefer_tier"))
    target = plan_target(settings, manifest, drill=drill)
    now = ctx.now()
    state.update(
        operation=operation,
        options=options,
        started_at=state.get("started_at") or now.isoformat(),
        backup_id=manifest.backup_id,
        plan=target.to_dict(),
        target_kind=target.kind,
        poll_seconds=POLL_SECONDS,
        target_ready=False,
    )
    if target.kind == "rds":
        targets = rds_targets(settings, drill=drill)
        state["swept"] = targets.sweep(now)
        run_id = str(state.get("execution") or now.strftime("%Y%m%d%H%M%S")).rsplit(":", 1)[-1]
        state["target"] = {
            "name": targets.name_for(settings.database_label, run_id[-24:]),
            "major": target.major,
            "dump_bytes": manifest.size_bytes,
            "run_id": run_id,
        }
    return state


def provision(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    target = state["target"]
    created = rds_targets(ctx.settings, drill=_drill(state)).create(
        target["name"],
        major=int(target["major"]),
        dump_bytes=int(target["dump_bytes"]),
        run_id=target["run_id"],
        now=ctx.now(),
        instance_class=ctx.settings.restore_rds_instance_class,
    )
    target.update(created=created, provisioned_at=ctx.now().isoformat())
    return state


def check_target(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    target = state["target"]
    found = rds_targets(ctx.settings, drill=_drill(state)).state(target["name"])
    target["status"] = found.status
    problem = problem_with(found)
    if problem:
        raise RestoreFailed(problem)
    state["target_ready"] = found.status == READY
    if not state["target_ready"]:
        waited = ctx.now() - datetime.fromisoformat(target["provisioned_at"])
        if waited > READY_TIMEOUT:
            raise RestoreFailed(
                f"the restore target {target['name']} was not ready after {waited / timedelta(minutes=1):.0f} min "
                f"(still {found.status})"
            )
    else:
        target["ready_at"] = ctx.now().isoformat()
    return state


def run(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = dict(state.get("options") or {})
    if state.get("target_kind") == "rds":
        targets = rds_targets(ctx.settings, drill=_drill(state))
        options["target"] = targets.conninfo(targets.state(state["target"]["name"]))
    if _drill(state):
        options["started_at"] = state["started_at"]  # the RTO counts provisioning in
    else:
        options.setdefault("backup_id", state["backup_id"])
    report = run_operation(state["operation"], ctx, **options)
    state["report"] = {
        "status": report.status,
        "exit_code": report.exit_code,
        "location": report.location,
        "report_id": report.report_id,
    }
    state["metrics"] = report.metrics  # the Lambda handler emits them
    return state


def teardown(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    target = state.get("target")
    if not target:
        return state
    targets = rds_targets(ctx.settings, drill=_drill(state))
    target["deleted"] = targets.delete(target["name"])
    state["swept"] = [*state.get("swept", []), *targets.sweep(ctx.now(), keep=target["name"])]
    return state


def fail(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """A critical report of the operation, naming the step that failed (and saying whether the
    throwaway target was deleted)."""
    error = state.get("error") or {}
    step = state.get("failed_phase", "a step")
    cause = _cause(error)
    report = Report.start(state.get("operation") or "restore-test", ctx.settings.database_label, ctx.now())
    target = state.get("target") or {}
    deleted = target.get("deleted") in ("deleting", "gone")
    message = f"the scheduled {report.operation} did not run to the end: {step} failed: {cause}"
    if target and deleted:
        message += f"; its throwaway RDS target {target.get('name')} was deleted"
    report.add(report.operation, "critical", message, backup_id=state.get("backup_id"))
    if target and not deleted:
        report.add(
            "rds_target",
            "critical",
            f"the throwaway RDS target {target.get('name')} was NOT deleted "
            f"({one_line(str((state.get('teardown_error') or {}).get('Cause') or 'teardown did not run'))[:300]}): "
            "the next run's sweep deletes it, or delete it by hand",
        )
    report.figures.update(backup_id=state.get("backup_id"), tested=False)
    report.measure(metrics.RESTORE_TESTED, 0.0)
    state["metrics"] = report.metrics
    report.finished_at = ctx.now().isoformat()
    if ctx.store_reports:
        store_report(ctx, report)
    ctx.publish(report)
    state["failure_message"] = report.findings[0].message[:1000]
    return state


def _cause(error: dict[str, Any]) -> str:
    """What failed, from a Step Functions error (a Lambda error's Cause is its JSON)."""
    cause = error.get("Cause") or error.get("Error") or "unknown"
    try:
        data = json.loads(cause)
        cause = f"{data.get('errorType', 'Error')}: {data.get('errorMessage', '')}"
    except (TypeError, ValueError, AttributeError):
        pass
    return one_line(str(cause))[:800]


PHASES = {
    "plan": plan,
    "provision": provision,
    "check_target": check_target,
    "run": run,
    "teardown": teardown,
    "fail": fail,
}


def run_phase(
    ctx: OperationContext, phase: str, state: dict[str, Any], *, execution: str | None = None
) -> dict[str, Any]:
    if phase == "plan" and execution:
        state = {**state, "execution": execution}
    return workflows.run_phase(PHASES, ctx, phase, state, execution=execution, what="restore workflow")
