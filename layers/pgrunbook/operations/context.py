"""One code path for every job: the CLI, the Lambda handlers and the Step Functions tasks
all call :func:`run_job`.

A job function takes a :class:`JobContext` and options and returns a
:class:`~pgrunbook.catalog.reports.JobReport`.  :func:`run_job` then stores the report in S3 (the
durable record of every check ever run) and, when it is not ok, publishes it to SNS.  Bad
input or configuration raises :class:`~pgrunbook.domain.errors.ConfigError` before anything is
written, as everywhere else.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pgrunbook.adapters.aws.sns import NullNotifier, SnsNotifier, TransientNotifyError
from pgrunbook.adapters.s3.store import ObjectStore
from pgrunbook.catalog.reports import JobReport, ReportStore, utcnow
from pgrunbook.domain.errors import ConfigError, PgRunbookError
from pgrunbook.progress import Progress
from pgrunbook.settings.model import Settings

log = logging.getLogger(__name__)

JobFunction = Callable[..., JobReport]
_REGISTRY: dict[str, JobFunction] = {}


@dataclass
class JobContext:
    settings: Settings
    clock: Callable[[], datetime] = utcnow
    progress: Progress = field(default_factory=Progress)
    notifier: Any = None  # a pgrunbook.adapters.aws.sns.Notifier; SNS when a topic is configured
    store_reports: bool = True

    def __post_init__(self) -> None:
        if self.notifier is None:
            topic = self.settings.sns_topic_arn
            self.notifier = SnsNotifier(topic) if topic else NullNotifier()

    def now(self) -> datetime:
        return self.clock()

    def report_stores(self, job: str) -> list[ObjectStore]:
        """Where a job's reports go: the primary bucket; a DR drill's go to the DR bucket
        first (it assumes the primary region is gone) and to the primary when it is there."""
        stores: list[ObjectStore] = []
        if job == "dr-drill" and self.settings.has_dr:
            stores.append(self.settings.dr_store())
        if self.settings.bucket and self.settings.region:
            stores.append(self.settings.primary_store())
        return stores

    def reports(self, job: str = "") -> ReportStore:
        """The report history this job reads (the first of :meth:`report_stores`)."""
        stores = self.report_stores(job)
        if not stores:
            raise ConfigError("no bucket: set PGRUNBOOK_BUCKET (and PGRUNBOOK_REGION)")
        return ReportStore(stores[0])


def job(name: str) -> Callable[[JobFunction], JobFunction]:
    def register(function: JobFunction) -> JobFunction:
        _REGISTRY[name] = function
        return function

    return register


# The module that registers each job.  Only the module of the job being run is imported:
# a Lambda handler's cold start loads one job, and one job's bug cannot break the others.
JOB_MODULES = {
    "backup": "backup_job",
    "restore-test": "restore_test",
    "verify": "verify",
    "dr-drill": "dr_drill",
    "retention": "retention",
    "health": "health",
}


def job_names() -> list[str]:
    return sorted(JOB_MODULES)


def run_job(name: str, ctx: JobContext, **options: Any) -> JobReport:
    if name not in JOB_MODULES:
        raise ConfigError(f"unknown job {name!r}; choose from {', '.join(job_names())}")
    importlib.import_module(f"{__package__}.{JOB_MODULES[name]}")
    report = _REGISTRY[name](ctx, **options)
    report.finished_at = ctx.now().isoformat()
    if ctx.store_reports:
        store_report(ctx, report)
    try:
        message_id = ctx.notifier.publish(report)
    except TransientNotifyError as exc:
        report.add("notification", "critical", str(exc))
        raise
    if message_id:
        report.detail["notification"] = {"message_id": message_id}
    return report


def store_report(ctx: JobContext, report: JobReport) -> None:
    locations = []
    for store in ctx.report_stores(report.job):
        try:
            locations.append(ReportStore(store).put(report))
        except PgRunbookError as exc:
            report.add("report_storage", "warning", f"could not store the report in {store.bucket}: {exc}")
    report.location = locations[0] if locations else None
