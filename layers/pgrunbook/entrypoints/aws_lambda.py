"""What every Lambda handler in ``functions/`` shares: parse the event, run one job, emit
metrics, return the report.

Handlers stay thin (DESIGN.md): ``functions/<job>/app.py`` is ``handler = make_handler(job)``,
a function wrapped in powertools' Logger (JSON, with the database and the job as keys), Tracer
and Metrics (namespace ``pgrunbook``, dimension ``Database``, embedded metric format) that
calls :func:`handle`.  Configuration comes from the function's environment (``PGRUNBOOK_*``, set by
the CDK app), the database credentials from the Secrets Manager secret it names.

The library logs through the standard ``logging`` module under ``pgrunbook``; those records go
through the same JSON handler as the handler's own, and every record passes the redacting
filter, so a password cannot reach CloudWatch even by accident.
"""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

from pgrunbook.domain.redact import RedactingFilter, redact
from pgrunbook.operations.context import JobContext, run_job
from pgrunbook.progress import Progress
from pgrunbook.settings.model import Settings

SERVICE = "pgrunbook"
NAMESPACE = "pgrunbook"

# What each job accepts from its event (EventBridge passes a constant input per schedule).
OPTIONS: dict[str, dict[str, type]] = {
    "backup": {"tier": str},
    "verify": {"recent_days": int, "check_database": bool},
    "restore-test": {"backup_id": str, "source": str, "prefer_tier": str, "run_user_checks": bool},
    "dr-drill": {"scenario": str, "attempts": int},
    "retention": {"dry_run": bool},
    "health": {},
}
# Event keys mapped to the job function's keyword arguments where the names differ.
RENAMES = {"backup": {"tier": "tiers"}}
DEFAULTS = {"restore-test": {"prefer_tier": "weekly"}}


class BadEvent(ValueError):
    """The invocation's event does not describe a run of this job."""


@dataclass(frozen=True)
class JobEvent:
    job: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, job: str, event: Any) -> JobEvent:
        if job not in OPTIONS:
            raise BadEvent(f"unknown job {job!r}")
        if event is None:
            event = {}
        if not isinstance(event, dict):
            raise BadEvent("the event must be a JSON object")
        if "detail-type" in event and "source" in event:  # an EventBridge event: options in detail
            event = event.get("detail") or {}
        allowed = OPTIONS[job]
        options: dict[str, Any] = dict(DEFAULTS.get(job, {}))
        for key, value in event.items():
            if key not in allowed:
                raise BadEvent(f"{job} does not take {key!r} (it takes {', '.join(allowed) or 'nothing'})")
            expected = allowed[key]
            if value is not None and not (
                isinstance(value, expected) and not (expected is int and isinstance(value, bool))
            ):
                raise BadEvent(f"{job}: {key} must be of type {expected.__name__}")
            options[RENAMES.get(job, {}).get(key, key)] = value
        return cls(job, options)


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

    logger = Logger(service=SERVICE, stream=CurrentStdout())
    logger.addFilter(RedactingFilter())
    copy_config_to_registered_loggers(source_logger=logger, include={"pgrunbook"})
    for handler in logging.getLogger("pgrunbook").handlers:
        handler.addFilter(RedactingFilter())
    return logger, Tracer(service=SERVICE), Metrics(namespace=NAMESPACE, service=SERVICE)


def handle(job: str, event: Any, context: Any, *, logger: Any, metrics: Any) -> dict[str, Any]:
    """Run ``job`` for one invocation and return its report."""
    request = JobEvent.parse(job, event)
    settings = Settings.load()
    database = settings.database_label
    logger.append_keys(job=job, database=database)
    ctx = JobContext(settings, progress=LoggerProgress(logger))
    report = run_job(job, ctx, **request.options)
    metrics.add_dimension(name="Database", value=database)
    for name, (unit, value) in report.metrics.items():
        metrics.add_metric(name=name, unit=unit, value=float(value))
    logger.info(
        f"{job} finished: {report.status}",
        extra={"status": report.status, "problems": len(report.problems()), "report": report.location},
    )
    return report.to_dict()


def _observed(run: Any) -> Any:
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


def make_handler(job: str) -> Any:
    """The Lambda entry point of ``job``."""
    if job not in OPTIONS:
        raise ValueError(f"unknown job {job!r}")
    return _observed(lambda event, context, **observers: handle(job, event, context, **observers))


# -- workflow phases (Step Functions tasks) ---------------------------------------------------

# The module of each workflow: it provides ``run_phase(ctx, phase, state, execution=...)``.
WORKFLOWS = {"pitr": "pgrunbook.workflows.pitr.phases", "migrate": "pgrunbook.workflows.migrate.phases"}


def handle_phase(workflow: str, event: Any, context: Any, *, logger: Any, metrics: Any) -> dict[str, Any]:
    """Run one phase of ``workflow``: the event is ``{"phase", "state", "execution"}`` and the
    result is the new state.  A phase that fails raises its named exception, which the state
    machine's Retry and Catch clauses match by name."""
    if not isinstance(event, dict) or not isinstance(event.get("phase"), str):
        raise BadEvent(f'a {workflow} task event is {{"phase": ..., "state": {{...}}}}')
    # task_token: only so that the approval task's token is in the execution history
    unknown = sorted(set(event) - {"phase", "state", "execution", "task_token"})
    if unknown:
        raise BadEvent(f"a {workflow} task event does not take {', '.join(unknown)}")
    state = event.get("state") or {}
    settings = Settings.load()
    database = settings.database_label
    logger.append_keys(
        job=workflow,
        phase=event["phase"],
        database=database,
        run_id=state.get("recovery_id") or state.get("migration_id"),
    )
    ctx = JobContext(settings, progress=LoggerProgress(logger))
    module = importlib.import_module(WORKFLOWS[workflow])
    result = module.run_phase(ctx, event["phase"], state, execution=event.get("execution"))
    # a phase that measured something (a finished recovery: downtime, data loss) says so
    measured = result.pop("metrics", None) or {}
    if measured:
        metrics.add_dimension(name="Database", value=database)
    for name, (unit, value) in measured.items():
        metrics.add_metric(name=name, unit=unit, value=float(value))
    logger.info(f"{workflow} phase {event['phase']} done", extra={"outcome": result.get("outcome")})
    return result


def make_phase_handler(workflow: str) -> Any:
    """The Lambda entry point of a workflow's tasks (one function runs every phase)."""
    if workflow not in WORKFLOWS:
        raise ValueError(f"unknown workflow {workflow!r}")
    return _observed(lambda event, context, **observers: handle_phase(workflow, event, context, **observers))
