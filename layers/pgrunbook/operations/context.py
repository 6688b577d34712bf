"""One code path for every operation: the CLI, the Lambda handlers and the workflows' phases
all call :func:`run_operation`.

It checks the options (a :class:`~pgrunbook.domain.errors.ConfigError` before anything is
written), starts the :class:`~pgrunbook.domain.results.Report`, calls the operation's
``run(ctx, report, **options)``, then stores the report in S3 (the durable record of every
check ever run) and, when it is not ok, publishes it.  How a failure ends follows its cause
(:mod:`pgrunbook.domain.errors`): bad input, or a database or bucket unreachable at the start,
is raised as it is (exit 2, nothing stored: nothing was changed); any other pgrunbook error
once the operation has started (a connection lost in the middle of a restore, S3 failing)
becomes a critical finding in a report that is stored and published (exit 1).
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pgrunbook.adapters.aws.sns import Notifier, NullNotifier, SnsNotifier
from pgrunbook.adapters.s3.store import ObjectStore
from pgrunbook.adapters.webhook import FanoutNotifier, WebhookNotifier
from pgrunbook.catalog.reports import ReportStore
from pgrunbook.domain.errors import ConfigError, PgRunbookError, TransientNotifyError, Unreachable
from pgrunbook.domain.ids import Clock, utcnow
from pgrunbook.domain.notices import Notice, report_notice
from pgrunbook.domain.redact import one_line
from pgrunbook.domain.results import Report
from pgrunbook.domain.runners import Choice
from pgrunbook.operations import registry
from pgrunbook.progress import Progress
from pgrunbook.settings.model import Settings

log = logging.getLogger(__name__)


@dataclass
class OperationContext:
    settings: Settings
    clock: Clock = utcnow
    progress: Progress = field(default_factory=Progress)
    notifier: Notifier | None = None  # SNS when a topic is configured
    store_reports: bool = True
    # a deployed run: where it runs and why (domain/runners); recorded in its report
    runner: Choice | None = None

    def __post_init__(self) -> None:
        if self.notifier is None:
            channels: list[Notifier] = []
            if self.settings.sns_topic_arn:
                channels.append(SnsNotifier(self.settings.sns_topic_arn))
            if self.settings.webhook_url:  # the key is read when the first notice goes
                channels.append(WebhookNotifier(self.settings.webhook_url, self.settings.webhook_key))
            self.notifier = (
                NullNotifier()
                if not channels
                else channels[0]
                if len(channels) == 1
                else FanoutNotifier(channels)
            )

    def now(self) -> datetime:
        return self.clock()

    def send(self, notice: Notice) -> str | None:
        assert self.notifier is not None
        return self.notifier.send(notice)

    def publish(self, report: Report) -> str | None:
        """Send a report that is not ok, in the runbook's template; returns the message id."""
        notice = report_notice(report, registry.wording(report.operation))
        return self.send(notice) if notice is not None else None

    def report_stores(self, operation: str) -> list[ObjectStore]:
        """Where an operation's reports go: the primary bucket; a DR drill's go to the DR
        bucket first (it assumes the primary region is gone) and to the primary when it is there."""
        stores: list[ObjectStore] = []
        if operation == "dr-drill" and self.settings.has_dr:
            stores.append(self.settings.dr_store())
        if self.settings.bucket and self.settings.region:
            stores.append(self.settings.primary_store())
        return stores

    def reports(self, operation: str = "") -> ReportStore:
        """The report history this operation reads (the first of :meth:`report_stores`)."""
        stores = self.report_stores(operation)
        if not stores:
            raise ConfigError("no bucket: set PGRUNBOOK_BUCKET (and PGRUNBOOK_REGION)")
        return ReportStore(stores[0])


def run_operation(name: str, ctx: OperationContext, **options: Any) -> Report:
    """Run one operation, store its report and publish it when it is not ok."""
    op = registry.get(name)
    module = importlib.import_module(op.module)
    report = Report.start(op.name, _database(ctx.settings, op), ctx.now())
    if ctx.runner is not None:
        report.runner = {**ctx.runner.to_dict(), "cpus": os.cpu_count()}
    values = {o.name: o.default for o in op.options}
    values.update(options)
    try:
        module.run(ctx, report, **values)
    except (ConfigError, Unreachable):
        raise  # nothing was written: exit 2
    except (PgRunbookError, OSError) as exc:
        # the operation had started: what stopped it is a problem found, and it is reported
        # (an OSError: the machine itself, a full disk say, which no adapter named)
        message = (
            one_line(exc) if isinstance(exc, PgRunbookError) else one_line(f"{type(exc).__name__}: {exc}")
        )
        log.warning("%s stopped: %s", op.name, message)
        report.add(op.name, "critical", f"{op.name} stopped: {message}", error=type(exc).__name__)
    report.finished_at = ctx.now().isoformat()
    if ctx.store_reports and op.stores_report:
        store_report(ctx, report)
    if op.kind == "command":
        return report  # read-only commands report to the person who ran them, not the topic
    try:
        message_id = ctx.publish(report)
    except TransientNotifyError as exc:
        report.add("notification", "critical", str(exc))
        raise
    if message_id:
        report.detail["notification"] = {"message_id": message_id}
    return report


def _database(settings: Settings, op: registry.Operation) -> str:
    if op.needs_database:
        return settings.database_label
    try:
        return settings.database_label
    except ConfigError:
        return "(not configured)"


def store_report(ctx: OperationContext, report: Report) -> None:
    locations = []
    for store in ctx.report_stores(report.operation):
        try:
            locations.append(ReportStore(store).put(report))
        except PgRunbookError as exc:
            report.add("report_storage", "warning", f"could not store the report in {store.bucket}: {exc}")
    report.location = locations[0] if locations else None
