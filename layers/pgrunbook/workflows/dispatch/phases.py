"""The dispatch: which runner a scheduled job runs on, and the notice when a run failed
without reporting it.

Deployed with a runner other than plain Lambda, a job's schedules start a small state machine
(``infra/constructs/runners.py``)::

    Choose ─(lambda)→ RunOnLambda ─(exit 0)→ Done
           │               └─ DiskTooSmall → RunOnFargate (Lambda's /tmp cannot hold it)
           └(fargate)→ RunOnFargate (ecs:runTask.sync) ─(exit 0)→ Done
    a run that failed → ReportFailure → Failed

Its input, from the schedule: ``{"operation", "options", "runner": "auto"|"lambda"|"fargate",
"lambda": {"seconds", "disk_bytes"}}`` (the function's own limits).

* ``choose`` checks the options (as the function would), reads the operation's last report
  and, for a restore, what the backup it will restore needs on disk, and decides
  (:func:`pgrunbook.domain.runners.choose`).  The state gets ``choice`` (runner and why, which
  the run records in its report; a Fargate run gets it, with the options, in its container
  override ``PGRUNBOOK_TASK``).
* ``fail`` sends the CRITICAL notice of a run that did not report its own failure: a Lambda
  error (a refusal, a timeout, a crash), a task that could not start, crashed, was stopped,
  or never ran (capacity, after the retries).  A run that stored and published its own
  critical report (a function's result, or a task's exit status 1) is not announced twice.
"""

from __future__ import annotations

import json
from typing import Any

from pgrunbook.catalog.backups import Catalog
from pgrunbook.domain.errors import BackupNotFound, ConfigError, TransientNotifyError, TransientStorageError
from pgrunbook.domain.redact import one_line
from pgrunbook.domain.results import Report
from pgrunbook.domain.runners import LAMBDA_DISK_BYTES, LAMBDA_SECONDS, MODES, LastRun
from pgrunbook.domain.runners import choose as decide
from pgrunbook.operations import registry
from pgrunbook.operations.context import OperationContext, store_report
from pgrunbook.workflows import engine as workflows
from pgrunbook.workflows.engine import Retry

RESTORING = ("restore-test", "dr-drill")
RETRIES = {
    "choose": Retry((TransientStorageError,)),
    "examine": Retry(),
    "fail": Retry((TransientStorageError, TransientNotifyError)),
}
REPORTED = 1  # a task's exit status when its own report was stored and published
FARGATE_ATTEMPTS = 3  # runs of a task that never got to run, or that the platform stopped
RETRY_SECONDS = 120  # before the first retry; doubled after each
# A task that stopped for one of these did not fail on its own account: Fargate had no
# capacity, could not set the task up, or retired its host (the task got SIGTERM, and the
# operation recorded itself as interrupted).  Such a run is started again.
PLATFORM_STOPS = (
    "capacity",
    "resourceinitializationerror",
    "cannotpullcontainererror",
    "retire",
    "maintenance",
    "taskfailedtostart",
    "spotinterruption",
    "timeout waiting for network interface",
)


def choose(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    op = registry.get(str(state.get("operation")))
    if op.kind != "job" or op.function is None:
        raise ConfigError(f"the dispatch runs a deployed job, not {op.name!r}")
    mode = state.get("runner", "auto")
    if mode not in MODES:
        raise ConfigError(f"runner must be one of {', '.join(MODES)}, not {mode!r}")
    given = dict(state.get("options") or {})
    registry.parse_options(op, given, source="event")  # refused here as the function would
    limits = state.get("lambda") or {}
    seconds = float(limits.get("seconds") or LAMBDA_SECONDS)
    disk = int(limits.get("disk_bytes") or LAMBDA_DISK_BYTES)
    last = None
    if mode == "auto":
        previous = ctx.reports(op.name).latest(op.name)
        last = LastRun.from_report(previous.to_dict()) if previous is not None else None
    choice = decide(
        mode,
        last,
        disk_needed=_disk_needed(ctx, op.name, given) if mode == "auto" else None,
        seconds=seconds,
        disk=disk,
    )
    state.update(
        operation=op.name,
        options=given,
        choice=choice.to_dict(),
    )
    return state


def _disk_needed(ctx: OperationContext, operation: str, options: dict[str, Any]) -> int | None:
    """What a restore will need on the local disk (from its backup's manifest); None for other
    operations, or when no backup is there yet (the run itself then says so)."""
    if operation not in RESTORING:
        return None
    from pgrunbook.operations.restorer import disk_need

    settings = ctx.settings
    store = (
        settings.dr_store() if operation == "dr-drill" else settings.store(options.get("source", "primary"))
    )
    catalog = Catalog(store)
    try:
        if options.get("backup_id"):
            manifest = catalog.manifest(options["backup_id"])
        elif options.get("prefer_tier"):
            try:
                manifest = catalog.latest(options["prefer_tier"])
            except BackupNotFound:
                manifest = catalog.latest()
        else:
            manifest = catalog.latest()
    except BackupNotFound:
        return None
    embedded = not settings.restore_target_url  # a configured server holds the restored copy
    return disk_need(manifest, embedded=embedded)


def fail(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    error = state.get("error") or {}
    runner = (state.get("choice") or {}).get("runner", "lambda")
    operation = str(state.get("operation") or "backup")
    reported, cause = _what_happened(error, state.get("result"))
    if reported:
        state["failure_message"] = f"{operation} on {runner} reported a problem: see its report and notice"
        return state
    report = Report.start(operation, ctx.settings.database_label, ctx.now())
    report.runner = state.get("choice")
    report.add(
        operation,
        "critical",
        f"the scheduled {operation} did not run to the end on {runner}: {cause}",
        error=error.get("Error"),
    )
    report.finished_at = ctx.now().isoformat()
    if ctx.store_reports:
        store_report(ctx, report)
    ctx.publish(report)
    state["failure_message"] = report.findings[0].message[:1000]
    return state


def _what_happened(error: dict[str, Any], result: Any) -> tuple[bool, str]:
    """(whether the run published its own report, what happened in one line) from a Step
    Functions error: a Lambda error's Cause is ``{"errorType", "errorMessage"}``; a failed
    ``ecs:runTask.sync``'s is the stopped task as DescribeTasks gives it."""
    if isinstance(result, dict) and result.get("exit_code"):  # a function's critical report
        return True, f"{result.get('status')}"
    name = str(error.get("Error") or "")
    raw = error.get("Cause") or ""
    try:
        data = json.loads(raw) if isinstance(raw, str) and raw.startswith("{") else None
    except ValueError:
        data = None
    if isinstance(data, dict) and ("Containers" in data or "containers" in data or "StopCode" in data):
        containers = data.get("Containers") or data.get("containers") or []
        codes = [c.get("ExitCode", c.get("exitCode")) for c in containers]
        reasons = [c.get("Reason") or c.get("reason") for c in containers]
        code = next((c for c in codes if c is not None), None)
        if code == REPORTED:
            return True, "exit status 1"
        stopped = data.get("StoppedReason") or data.get("stoppedReason") or data.get("StopCode") or "stopped"
        meanings = {
            2: "refused (exit 2: bad input or unreachable; nothing was changed)",
            70: "the task could not start or crashed outside the operation (exit 70)",
        }
        what = meanings.get(code, f"exit status {code}") if isinstance(code, int) else "no exit status"
        extra = "; ".join(r for r in reasons if r)
        return False, one_line(
            f"the Fargate task stopped: {stopped}; {what}" + (f" ({extra})" if extra else "")
        )[:800]
    if isinstance(data, dict) and "errorType" in data:
        return False, one_line(f"{data['errorType']}: {data.get('errorMessage', '')}")[:800]
    if name in ("States.Timeout", "Sandbox.Timedout") or "timed out" in str(raw).lower():
        return False, one_line(f"it timed out ({name}): {raw}")[:800]
    return False, one_line(f"{name}: {raw}" if raw else name or "unknown failure")[:800]


def examine(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """A Fargate run that failed: start it again when the platform, not the run, stopped it
    (``fargate_retry``, after ``retry_seconds``), up to :data:`FARGATE_ATTEMPTS` runs."""
    error = state.get("error") or {}
    attempts = int(state.get("fargate_attempts") or 0) + 1
    state["fargate_attempts"] = attempts
    platform = _platform_stop(error)
    state["fargate_retry"] = bool(platform) and attempts < FARGATE_ATTEMPTS
    state["retry_seconds"] = RETRY_SECONDS * 2 ** (attempts - 1)
    if platform:
        state.setdefault("platform_stops", []).append(platform)
    return state


def _platform_stop(error: dict[str, Any]) -> str:
    """The platform's reason, when a failed ``ecs:runTask.sync`` was stopped by the platform
    ("" when the run itself failed)."""
    raw = str(error.get("Cause") or "")
    name = str(error.get("Error") or "")
    if name.startswith("ECS.") and "capacity" in raw.lower():
        return one_line(raw)[:300]
    try:
        data = json.loads(raw) if raw.startswith("{") else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        return ""
    containers = data.get("Containers") or data.get("containers") or []
    codes = {c.get("ExitCode", c.get("exitCode")) for c in containers}
    if codes & {0, 1, 2, 70}:  # the operation itself ran and ended: not the platform's doing
        return ""
    said = " ".join(
        str(x)
        for x in (
            data.get("StoppedReason"),
            data.get("stoppedReason"),
            data.get("StopCode"),
            data.get("stopCode"),
            *(c.get("Reason") or c.get("reason") for c in containers),
        )
        if x
    )
    return one_line(said)[:300] if any(marker in said.lower() for marker in PLATFORM_STOPS) else ""


PHASES = {"choose": choose, "examine": examine, "fail": fail}


def run_phase(
    ctx: OperationContext, phase: str, state: dict[str, Any], *, execution: str | None = None
) -> dict[str, Any]:
    return workflows.run_phase(PHASES, ctx, phase, state, execution=execution, what="dispatch")
