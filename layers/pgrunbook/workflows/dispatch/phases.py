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
from dataclasses import dataclass
from typing import Any

from pgrunbook.adapters.s3.store import ObjectStore
from pgrunbook.catalog.backups import Catalog
from pgrunbook.domain.errors import (
    BackupNotFound,
    ConfigError,
    OperationFailed,
    PgRunbookError,
    TransientNotifyError,
    TransientStorageError,
)
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
    "choose_phase": Retry((TransientStorageError,)),
    "collect": Retry((TransientStorageError,)),
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
    try:
        manifest, _ = Catalog(store).to_restore(options.get("backup_id"), options.get("prefer_tier"))
    except BackupNotFound:
        return None
    # a configured server holds the restored copy: then only the download is local
    server = (
        (settings.dr_restore_target_url or settings.dr_restore_target_secret_arn)
        if operation == "dr-drill"
        else (settings.restore_target_url or settings.restore_target_secret_arn)
    )
    return disk_need(manifest, embedded=not server)


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


@dataclass(frozen=True)
class StoppedTask:
    """What a failed ``ecs:runTask.sync`` says: its cause is the stopped task as DescribeTasks
    gives it (PascalCase from Step Functions; camelCase accepted too)."""

    exit_code: int | None  # the container's, when it ran to an exit
    reason: str  # the task's stopped reason and stop code, and its containers' reasons

    @classmethod
    def from_error(cls, error: dict[str, Any]) -> StoppedTask | None:
        raw = str(error.get("Cause") or "")
        try:
            data = json.loads(raw) if raw.startswith("{") else None
        except ValueError:
            return None
        if not isinstance(data, dict) or not {"Containers", "containers", "StopCode", "stopCode"} & set(data):
            return None

        def get(item: dict[str, Any], key: str) -> Any:
            return item.get(key, item.get(key[0].lower() + key[1:]))

        containers = get(data, "Containers") or []
        code = next((c for c in (get(x, "ExitCode") for x in containers) if isinstance(c, int)), None)
        said = [get(data, "StoppedReason"), get(data, "StopCode"), *(get(x, "Reason") for x in containers)]
        return cls(code, one_line(" ".join(str(x) for x in said if x)))

    @property
    def ran(self) -> bool:
        """The operation itself ran and ended (0, 1, 2 or 70): whatever stopped it, not the platform."""
        return self.exit_code in (0, REPORTED, 2, 70)

    @property
    def platform_stop(self) -> bool:
        return not self.ran and any(marker in self.reason.lower() for marker in PLATFORM_STOPS)


MEANINGS = {
    2: "refused (exit 2: bad input or unreachable; nothing was changed)",
    70: "the task could not start or crashed outside the operation (exit 70)",
}


def _what_happened(error: dict[str, Any], result: Any) -> tuple[bool, str]:
    """(whether the run published its own report, what happened in one line) from a Step
    Functions error: a Lambda error's Cause is ``{"errorType", "errorMessage"}``; a failed
    ``ecs:runTask.sync``'s is the stopped task (:class:`StoppedTask`)."""
    if isinstance(result, dict) and result.get("exit_code"):  # a function's critical report
        return True, f"{result.get('status')}"
    name, raw = str(error.get("Error") or ""), str(error.get("Cause") or "")
    task = StoppedTask.from_error(error)
    if task is not None:
        if task.exit_code == REPORTED:
            return True, "exit status 1"
        code = task.exit_code
        what = MEANINGS.get(code, f"exit status {code}") if code is not None else "no exit status"
        return False, one_line(f"the Fargate task stopped: {task.reason or 'stopped'}; {what}")[:800]
    try:
        data = json.loads(raw) if raw.startswith("{") else None
    except ValueError:
        data = None
    if isinstance(data, dict) and "errorType" in data:
        return False, one_line(f"{data['errorType']}: {data.get('errorMessage', '')}")[:800]
    if name in ("States.Timeout", "Sandbox.Timedout") or "timed out" in raw.lower():
        return False, one_line(f"it timed out ({name}): {raw}")[:800]
    return False, one_line(f"{name}: {raw}" if raw else name or "unknown failure")[:800]


def examine(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """A Fargate run that failed: start it again when the platform, not the run, stopped it
    (``fargate_retry``, after ``retry_seconds``), up to :data:`FARGATE_ATTEMPTS` runs.  A
    workflow phase (it has a ``handoff``) is started again only if its task never ran: one
    the platform stopped after it started (an apply, a recovery's restore) goes to the
    workflow's failure path instead."""
    error = state.get("error") or {}
    attempts = int(state.get("fargate_attempts") or 0) + 1
    state["fargate_attempts"] = attempts
    raw = str(error.get("Cause") or "")
    task = StoppedTask.from_error(error)
    platform = ""
    if str(error.get("Error") or "").startswith("ECS.") and "capacity" in raw.lower():
        platform = one_line(raw)[:300]  # RunTask itself refused: no capacity
    elif (
        task is not None and task.platform_stop and not (state.get("handoff") and task.exit_code is not None)
    ):
        # a job is started again after a retirement (it recorded itself as interrupted)
        platform = task.reason[:300]
    state["fargate_retry"] = bool(platform) and attempts < FARGATE_ATTEMPTS
    state["retry_seconds"] = RETRY_SECONDS * 2 ** (attempts - 1)
    if platform:
        state.setdefault("platform_stops", []).append(platform)
    return state


# -- a workflow's long phase (PITR, migration, a restore on a throwaway target) ---------------
#
#     Choose<Phase> ─(lambda)→ <Phase> (the function, as always)
#                   └(fargate)→ <Phase>OnFargate (ecs:runTask.sync) → Collect<Phase>
#
# The phase's state goes to the task through S3 (``runs/<execution>/<phase>-in.json``: a
# container override holds 8 KB, a migration's state can hold more), and comes back the same
# way (``-out.json``, the new state or the error the phase raised), deleted once collected.

# Which history sizes each long phase: a backup's, or a restore's (with the backup it restores).
BACKING_UP = ("backup", "safety_point")
RESTORING_PHASES = {
    "dry_run": "restore-test",
    "start": "restore-test",
    "run": None,
    "restore": "restore-test",
}


class PhaseError(PgRunbookError):
    """A phase that failed on Fargate, raised again by ``collect`` under the name the phase
    raised it with (its class is made with that name), so that the state machine's Retry and
    Catch clauses see what they would have seen from the function."""


def _phase_error(name: str, message: str) -> PhaseError:
    safe = name if name.isidentifier() else "PhaseError"
    return type(safe, (PhaseError,), {})(message)


def handoff_store(ctx: OperationContext, operation: str) -> ObjectStore:
    """Where a phase's state is handed over: the DR bucket for the drill, else the primary."""
    return ctx.settings.dr_store() if operation == "dr-drill" else ctx.settings.primary_store()


def run_name(execution: str | None) -> str:
    name = str(execution or "local").rsplit(":", 1)[-1]
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)[:80] or "local"


def choose_phase(ctx: OperationContext, request: dict[str, Any]) -> dict[str, Any]:
    """The runner of one long phase (``for_phase``) of ``operation``'s workflow; on Fargate,
    the phase's state handed over.  Returns the workflow's state with ``runner_choice`` (and
    ``handoff``)."""
    state = dict(request.get("workflow_state") or {})
    operation, phase = str(request.get("operation")), str(request.get("for_phase"))
    mode = request.get("runner", "auto")
    if mode not in MODES:
        raise ConfigError(f"runner must be one of {', '.join(MODES)}, not {mode!r}")
    limits = request.get("lambda") or {}
    last, needed = _phase_sizing(ctx, operation, phase, state) if mode == "auto" else (None, None)
    choice = decide(
        mode,
        last,
        disk_needed=needed,
        seconds=float(limits.get("seconds") or LAMBDA_SECONDS),
        disk=int(limits.get("disk_bytes") or LAMBDA_DISK_BYTES),
    )
    state.pop("handoff", None)
    state["runner_choice"] = choice.to_dict()
    if choice.runner == "fargate":
        store = handoff_store(ctx, operation)
        run = run_name(request.get("execution") or state.get("execution"))
        keys = {d: store.layout.handoff_key(run, phase, d) for d in ("in", "out")}
        store.put_bytes(keys["in"], json.dumps(state, default=str).encode())
        state["handoff"] = {"phase": phase, "operation": operation, **keys}
    return state


def _phase_sizing(
    ctx: OperationContext, operation: str, phase: str, state: dict[str, Any]
) -> tuple[LastRun | None, int | None]:
    """(the run that sizes this phase, what it will need on disk)."""
    if phase in BACKING_UP:
        return _last(ctx, "backup"), None
    if phase == "apply":  # the dry run applied the same migrations to a copy, and timed it
        # (a table recovery: its diff estimated the apply, which compares again and repairs)
        seconds = (state.get("dry_run") or {}).get("apply_seconds")
        if seconds is None:
            seconds = state.get("apply_estimate_seconds")
        if seconds is None:
            return None, None
        return LastRun("lambda", "ok", float(seconds), 0), None
    if phase in RESTORING_PHASES:
        sized_by = RESTORING_PHASES[phase] or operation
        backup_id = (
            (state.get("backup") or {}).get("backup_id")
            or (state.get("plan") or {}).get("backup_id")
            or state.get("backup_id")
        )
        # restored into a server (the live one for a recovery, a throwaway one, a configured
        # target): only the download is local
        embedded = phase == "dry_run" and not (
            ctx.settings.restore_target_url or ctx.settings.restore_target_secret_arn
        )
        if phase == "run":
            embedded = state.get("target_kind") == "embedded"
        needed = None
        if backup_id:
            from pgrunbook.operations.restorer import disk_need

            from_dr = operation == "dr-drill" or (
                operation == "recover-tables" and state.get("source") == "dr"
            )
            source = ctx.settings.dr_store() if from_dr else ctx.settings.primary_store()
            needed = disk_need(Catalog(source).manifest(str(backup_id)), embedded=embedded)
        return _last(ctx, sized_by), needed
    return None, None


def _last(ctx: OperationContext, operation: str) -> LastRun | None:
    report = ctx.reports(operation).latest(operation)
    return LastRun.from_report(report.to_dict()) if report is not None else None


def collect(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """The state (or the error) a Fargate task handed back; both objects are then deleted."""
    handoff = state.get("handoff") or {}
    if not handoff.get("out"):
        raise ConfigError("collect needs the handoff of a phase that ran on Fargate")
    store = handoff_store(ctx, str(handoff.get("operation") or ""))
    raw = store.get_bytes(handoff["out"])
    if raw is None:
        raise OperationFailed(
            f"the {handoff.get('phase')} phase's task stopped without handing back its state "
            f"({handoff['out']} is missing)"
        )
    out = json.loads(raw)
    store.delete_keys([handoff["in"], handoff["out"]])
    if "error" in out:
        error = out["error"]
        raise _phase_error(str(error.get("Error") or "PhaseError"), str(error.get("Cause") or ""))
    new_state: dict[str, Any] = out["state"]
    new_state.pop("handoff", None)
    return new_state


PHASES = {
    "choose": choose,
    "examine": examine,
    "fail": fail,
    "choose_phase": choose_phase,
    "collect": collect,
}


def run_phase(
    ctx: OperationContext, phase: str, state: dict[str, Any], *, execution: str | None = None
) -> dict[str, Any]:
    return workflows.run_phase(PHASES, ctx, phase, state, execution=execution, what="dispatch")
