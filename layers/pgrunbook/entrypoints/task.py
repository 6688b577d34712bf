"""An operation as a Fargate task: what :mod:`pgrunbook.entrypoints.task_bootstrap` hands over
to once the layers are unpacked.

The task definition's environment holds the operation's settings, exactly as its function's
does (``PGRUNBOOK_OPERATION`` says which operation).  The run itself comes in
``PGRUNBOOK_TASK``, a container override the dispatch state machine sets (overrides are capped
at 8 KB, so it carries names and options, never data or secrets)::

    {"options": {...the job's options...}, "runner": {"runner": "fargate", "why": "..."}}

The options are checked by the same :class:`~pgrunbook.settings.options.Option` objects as a
Lambda event's; the run goes through the same :func:`~pgrunbook.operations.context.run_operation`
(its report stored in S3 and published when it is not ok, as always).  On Fargate, parallelism
follows the task's CPUs: ``PGRUNBOOK_JOBS`` defaults to them, unless the deployment set it.
The report's metrics are sent with PutMetricData (a task's logs are not read for embedded
metrics as a function's are).

Exit status, which ``ecs:runTask.sync`` turns into the state's outcome: the report's (0 ok,
warning or skipped; 1 critical or untested: the report was stored and published; 2 refused:
nothing was changed); 70 when the run could not start or crashed outside the operation (the
dispatch's failure phase then sends the CRITICAL notice); 128 + the signal when stopped
(SIGTERM: a scale-in or a platform retirement; what the operation records when it is stopped,
a backup its ``interrupted`` report, it records first).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pgrunbook.domain.errors import ConfigError, PgRunbookError, Unreachable
from pgrunbook.domain.metrics import DIMENSION, NAMESPACE
from pgrunbook.domain.redact import RedactingFilter, one_line
from pgrunbook.domain.runners import Choice
from pgrunbook.domain.status import exit_code

if TYPE_CHECKING:
    from pgrunbook.operations.context import OperationContext

TASK_VARIABLE = "PGRUNBOOK_TASK"
CRASHED = 70

log = logging.getLogger("pgrunbook.task")


def cpus() -> int:
    """The CPUs this task may use (its vCPUs; affinity where the kernel limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _say(**fields: Any) -> None:
    """One JSON line on stdout: the task's log stream."""
    sys.stdout.write(json.dumps({"service": "pgrunbook", **fields}, default=str) + "\n")
    sys.stdout.flush()


def _put_metrics(database: str, measured: dict[str, tuple[str, float]]) -> None:
    """The run's metrics (PutMetricData); a failure is logged, not raised: the report or state
    is what matters, and a missing datapoint alarms by itself."""
    if not measured:
        return
    import boto3

    try:
        boto3.client("cloudwatch").put_metric_data(
            Namespace=NAMESPACE,
            MetricData=[
                {
                    "MetricName": name,
                    "Unit": unit,
                    "Value": float(value),
                    "Dimensions": [{"Name": DIMENSION, "Value": database}],
                }
                for name, (unit, value) in measured.items()
            ],
        )
    except Exception as exc:
        log.warning("could not send the metrics: %s", one_line(exc))


def _context(runner: Choice) -> OperationContext:
    """The run's OperationContext: parallel jobs default to the task's CPUs (unless the
    deployment set PGRUNBOOK_JOBS), progress on stderr, the runner recorded."""
    from pgrunbook.operations.context import OperationContext
    from pgrunbook.progress import StreamProgress
    from pgrunbook.settings.model import Settings

    os.environ.setdefault("PGRUNBOOK_JOBS", str(max(1, min(64, cpus()))))
    return OperationContext(Settings.load(), progress=StreamProgress(sys.stderr), runner=runner)


def main() -> int:
    environ = os.environ
    logging.basicConfig(
        level=logging.WARNING, format="pgrunbook: %(levelname)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("pgrunbook").setLevel(logging.INFO)  # ours; not every library's INFO
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    from pgrunbook.entrypoints.cli import Terminated, _terminate

    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (tests run it in process)
        pass
    operation = environ.get("PGRUNBOOK_OPERATION", "")
    try:
        return _run(operation, environ)
    except (ConfigError, Unreachable) as exc:
        _say(operation=operation, status="refused", exit_code=exit_code("refused"), message=one_line(exc))
        return exit_code("refused")
    except Terminated as exc:
        _say(operation=operation, status="stopped", message="stopped by SIGTERM; it did not finish")
        return int(exc.code or 143)
    except Exception as exc:
        message = (
            one_line(f"{type(exc).__name__}: {exc}") if not isinstance(exc, PgRunbookError) else one_line(exc)
        )
        _say(operation=operation, status="crashed", exit_code=CRASHED, message=message)
        return CRASHED


def _run(operation: str, environ: Mapping[str, str]) -> int:
    from pgrunbook.entrypoints.aws_lambda import BadEvent, job_options
    from pgrunbook.operations import registry
    from pgrunbook.operations.context import run_operation

    op = registry.get(operation)
    if op.task is None:
        raise ConfigError(f"{operation!r} is not an operation a task runs")
    try:
        task = json.loads(environ.get(TASK_VARIABLE) or "{}")
    except ValueError:
        raise BadEvent(f"{TASK_VARIABLE} is not JSON") from None
    if not isinstance(task, dict):
        raise BadEvent(f"{TASK_VARIABLE} must be a JSON object")
    if "phase" in task:
        return _run_phase(op, task)
    if op.kind != "job":
        raise BadEvent(f"{op.name} runs on a task one phase at a time: {TASK_VARIABLE} names the phase")
    unknown = sorted(set(task) - {"options", "runner"})
    if unknown:
        raise BadEvent(f"{TASK_VARIABLE} does not take {', '.join(unknown)}")
    options = job_options(op, task.get("options") or {})
    runner = Choice.from_dict(task.get("runner")) or Choice(
        "fargate", "started as a task, not by the dispatch"
    )
    ctx = _context(runner)
    database = ctx.settings.database_label
    _say(operation=op.name, database=database, runner=runner.to_dict(), jobs=ctx.settings.jobs)
    report = run_operation(op.name, ctx, **options)
    _put_metrics(database, report.metrics)
    _say(
        operation=op.name,
        status=report.status,
        exit_code=report.exit_code,
        report=report.location,
        problems=len(report.problems()),
    )
    return report.exit_code


def _run_phase(op: Any, task: dict[str, Any]) -> int:
    """One long phase of a workflow: its state from the handoff object, its new state (or the
    error it raised, by name) into the other; exit 0 once that is written, whatever the phase
    did (the state machine's Collect step raises the phase's error again)."""
    import importlib

    from pgrunbook.entrypoints.aws_lambda import BadEvent
    from pgrunbook.workflows.dispatch.phases import handoff_store

    unknown = sorted(set(task) - {"phase", "in", "out", "execution", "runner"})
    if unknown:
        raise BadEvent(f"{TASK_VARIABLE} does not take {', '.join(unknown)}")
    module = op.module if op.kind == "workflow" else op.workflow
    if not module or not all(isinstance(task.get(k), str) for k in ("phase", "in", "out")):
        raise BadEvent(
            f'a phase task is {{"phase", "in", "out", "execution"}} of a workflow, not {sorted(task)}'
        )
    runner = Choice.from_dict(task.get("runner")) or Choice("fargate", "a phase task")
    ctx = _context(runner)
    store = handoff_store(ctx, op.name)
    raw = store.get_bytes(task["in"])
    if raw is None:
        raise BadEvent(f"the phase's state {task['in']} is not there")
    state = json.loads(raw)
    database = ctx.settings.database_label
    _say(operation=op.name, phase=task["phase"], database=database, runner=runner.to_dict())
    phases = importlib.import_module(module)
    out: dict[str, Any]
    try:
        new_state = phases.run_phase(ctx, task["phase"], state, execution=task.get("execution"))
        _put_metrics(database, new_state.pop("metrics", None) or {})
        out = {"state": new_state}
    except Exception as exc:
        out = {"error": {"Error": type(exc).__name__, "Cause": one_line(exc)}}
    store.put_bytes(task["out"], json.dumps(out, default=str).encode())
    _say(
        operation=op.name,
        phase=task["phase"],
        outcome="failed" if "error" in out else "done",
        **out.get("error", {}),
    )
    return 0
