"""The Lambda entry point of every operation and workflow.

Every function the CDK app deploys runs the same handler (``functions/app.py`` is
``handler = make_handler()``); ``PGRUNBOOK_OPERATION`` (set by infra) says which operation of
:mod:`pgrunbook.operations.registry` it runs.  The handler is wrapped in powertools' Logger
(JSON, with the database and the operation as keys), Tracer and Metrics (namespace
``pgrunbook``, dimension ``Database``, embedded metric format).  Configuration comes from the
function's environment (``PGRUNBOOK_*``, set by the CDK app from the option table), the
database credentials from the Secrets Manager secret it names.

* A job's event carries its options (EventBridge passes a constant input per schedule; an
  EventBridge event's ``detail`` is taken as the options).  They are checked by the same
  :class:`~pgrunbook.settings.options.Option` objects as the CLI's flags, so a bad value is
  refused with the same message, before anything runs.  The result is the report as a dict.
* A workflow's task event is ``{"phase", "state", "execution"}``; the result is the new state.
  A job with a ``workflow`` in its registry entry (the restore test and the DR drill, whose
  throwaway RDS targets take longer to create than an invocation lasts) takes both.
* The dispatch state machine (a deployment with Fargate runners) invokes the job with
  ``{"options", "runner"}`` (the run records where it ran and why), and its own phases with
  ``{"phase", "state", "execution", "workflow": "dispatch"}``
  (:mod:`pgrunbook.workflows.dispatch.phases`).
  A phase that fails raises its named exception, which the state machine's Retry and Catch
  clauses match by name.

The library logs through the standard ``logging`` module under ``pgrunbook``; those records go
through the same JSON handler as the handler's own, and every record passes the redacting
filter, so a password cannot reach CloudWatch even by accident.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.metrics import DIMENSION, NAMESPACE
from pgrunbook.domain.redact import RedactingFilter, redact
from pgrunbook.domain.runners import Choice
from pgrunbook.operations import registry
from pgrunbook.operations.context import OperationContext, run_operation
from pgrunbook.progress import Progress
from pgrunbook.settings.model import Settings

SERVICE = "pgrunbook"
DISPATCH = "pgrunbook.workflows.dispatch.phases"  # the runner's choice and the failure notice
OPERATION_VARIABLE = "PGRUNBOOK_OPERATION"


class BadEvent(ConfigError):
    """The invocation's event does not describe a run of this operation."""


def job_options(op: registry.Operation, event: Any) -> dict[str, Any]:
    """The options an event gives a job, checked (a :class:`BadEvent` when they are not)."""
    if event is None:
        event = {}
    if not isinstance(event, dict):
        raise BadEvent("the event must be a JSON object")
    if "detail-type" in event and "source" in event:  # an EventBridge event: options in detail
        event = event.get("detail") or {}
    try:
        return registry.parse_options(op, event, source="event")
    except BadEvent:
        raise
    except ConfigError as exc:
        raise BadEvent(str(exc)) from None


class LoggerProgress(Progress):
    """Progress of long steps as INFO log lines."""

    def __init__(self, logger: Any):
        self.logger = logger

    def step(self, message: str) -> None:
        self.logger.info(redact(message))

    def detail(self, message: str) -> None:
        self.logger.debug(redact(message))


class CurrentStdout:
    """``sys.stdout`` as it is when a line is written.

    powertools configures the ``pgrunbook`` logger once per process and keeps the stream it
    was given; every later Logger of the same service reuses that handler.  Writing through
    this indirection keeps log lines with the metrics, on whatever stdout the process has now
    (a test's capture, say), instead of on the one the first handler found."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def observability() -> tuple[Any, Any, Any]:
    """The powertools Logger, Tracer and Metrics every handler uses."""
    from aws_lambda_powertools import Logger, Metrics, Tracer
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    logger = Logger(service=SERVICE, stream=CurrentStdout())  # type: ignore[arg-type]  # only write/flush are used
    logger.addFilter(RedactingFilter())
    copy_config_to_registered_loggers(source_logger=logger, include={"pgrunbook"})
    for handler in logging.getLogger("pgrunbook").handlers:
        handler.addFilter(RedactingFilter())
    return logger, Tracer(service=SERVICE), Metrics(namespace=NAMESPACE, service=SERVICE)


def _emit(metrics: Any, database: str, measured: dict[str, tuple[str, float]]) -> None:
    if measured:
        metrics.add_dimension(name=DIMENSION, value=database)
    for name, (unit, value) in measured.items():
        metrics.add_metric(name=name, unit=unit, value=float(value))


DIRECT = Choice("lambda", "invoked directly (its schedule, or on demand)")


def dispatched(event: Any) -> tuple[Any, Choice]:
    """The job's own event and the runner it was given: the dispatch state machine invokes
    the function with ``{"options": {...}, "runner": {"runner", "why"}}``; a schedule or a
    person with the options alone."""
    if not (isinstance(event, dict) and "runner" in event):
        return event, DIRECT
    unknown = sorted(set(event) - {"options", "runner"})
    if unknown:
        raise BadEvent(f"a dispatched event does not take {', '.join(unknown)}")
    runner = Choice.from_dict(event["runner"])
    if runner is None or runner.runner != "lambda":
        raise BadEvent('a dispatched event\'s runner is {"runner": "lambda", "why": ...}')
    return event.get("options") or {}, runner


def handle(operation: str, event: Any, context: Any, *, logger: Any, metrics: Any) -> dict[str, Any]:
    """Run ``operation`` (a job) for one invocation and return its report."""
    op = registry.get(operation)
    event, runner = dispatched(event)
    options = job_options(op, event)
    settings = Settings.load()
    database = settings.database_label
    logger.append_keys(job=op.name, database=database, runner=runner.runner)
    ctx = OperationContext(settings, progress=LoggerProgress(logger), runner=runner)
    report = run_operation(op.name, ctx, **options)
    _emit(metrics, database, report.metrics)
    logger.info(
        f"{op.name} finished: {report.status}",
        extra={"status": report.status, "problems": len(report.problems()), "report": report.location},
    )
    return report.to_dict()


def handle_phase(
    workflow: str, event: Any, context: Any, *, logger: Any, metrics: Any, module: str | None = None
) -> dict[str, Any]:
    """Run one phase of ``workflow`` (its phases in ``module``, by default the workflow
    operation's own): the event is ``{"phase", "state", "execution"}`` and the result is the
    new state."""
    if not isinstance(event, dict) or not isinstance(event.get("phase"), str):
        raise BadEvent(f'a {workflow} task event is {{"phase": ..., "state": {{...}}}}')
    # task_token: only so that the approval task's token is in the execution history
    unknown = sorted(set(event) - {"phase", "state", "execution", "task_token", "workflow"})
    if unknown:
        raise BadEvent(f"a {workflow} task event does not take {', '.join(unknown)}")
    state = event.get("state") or {}
    settings = Settings.load()
    database = settings.database_label
    logger.append_keys(
        job=workflow,
        phase=event["phase"],
        database=database,
        run_id=state.get("recovery_id") or state.get("migration_id") or state.get("backup_id"),
    )
    # a long phase the dispatch chose Lambda for: its runs record that, and why
    runner = Choice.from_dict(state.get("runner_choice")) if isinstance(state, dict) else None
    ctx = OperationContext(settings, progress=LoggerProgress(logger), runner=runner)
    phases = importlib.import_module(module or registry.get(workflow).module)
    result: dict[str, Any] = phases.run_phase(ctx, event["phase"], state, execution=event.get("execution"))
    # a phase that measured something (a finished recovery: downtime, data loss) says so
    _emit(metrics, database, result.pop("metrics", None) or {})
    logger.info(f"{workflow} phase {event['phase']} done", extra={"outcome": result.get("outcome")})
    return result


def _observed(run: Callable[..., dict[str, Any]]) -> Any:
    """A Lambda entry point around ``run(event, context, logger=, metrics=)``, observed by
    powertools (context in every log line, X-Ray, metrics flushed as embedded metric format)."""
    logger, tracer, metrics = observability()

    # clear_state: the keys one invocation appends (job, phase, run id) must not carry over
    # into the next one a warm container runs.
    @logger.inject_lambda_context(log_event=False, clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def handler(event: Any, context: Any) -> dict[str, Any]:
        return run(event, context, logger=logger, metrics=metrics)

    return handler


def make_handler(operation: str | None = None) -> Any:
    """The Lambda entry point of ``operation`` (default: ``PGRUNBOOK_OPERATION``)."""
    name = operation or os.environ.get(OPERATION_VARIABLE)
    if not name:
        raise ValueError(f"set {OPERATION_VARIABLE} to the operation this function runs")
    op = registry.OPERATIONS.get(name)
    if op is None or op.function is None:
        deployable = ", ".join(o.name for o in registry.deployed())
        raise ValueError(f"{name!r} is not an operation a function runs; choose from {deployable}")
    if op.kind == "workflow":

        def phase(event: Any, context: Any, **observers: Any) -> dict[str, Any]:
            dispatch = isinstance(event, dict) and event.get("workflow") == "dispatch"
            return handle_phase(op.name, event, context, module=DISPATCH if dispatch else None, **observers)

        return _observed(phase)

    def job(event: Any, context: Any, **observers: Any) -> dict[str, Any]:
        if isinstance(event, dict) and "phase" in event and event.get("workflow") == "dispatch":
            return handle_phase(op.name, event, context, module=DISPATCH, **observers)
        if op.workflow and isinstance(event, dict) and "phase" in event:  # a task of its workflow
            return handle_phase(op.name, event, context, module=op.workflow, **observers)
        return handle(op.name, event, context, **observers)

    return _observed(job)
