"""The restore test: a backup restored into a scratch database, checked table by table against
its manifest, and the data-quality checks run on the restored copy too.

Which backup: ``backup_id``, else the newest backup of ``prefer_tier`` (the weekly schedule
asks for ``weekly``), else the newest complete one.  The runbook accepts an integrity score
above 95 %; pgrunbook treats any mismatch as critical and reports the score.  A backup the
target cannot host (an extension, collation or language it lacks) is *untested*: exit 1, its
own notice ("Backup Not Tested"), ``RestoreTested`` 0, and no integrity score."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.checks.sql import CheckResult, add_to_report, check_dirs, load_checks, run_checks
from pgrunbook.domain import metrics
from pgrunbook.domain.results import Report
from pgrunbook.operations.context import OperationContext
from pgrunbook.operations.restorer import Restorer, restore_findings


def run(
    ctx: OperationContext,
    report: Report,
    *,
    backup_id: str | None = None,
    source: str = "primary",
    keep: bool = False,
    prefer_tier: str | None = None,
    run_user_checks: bool = True,
    target: ConnInfo | None = None,
    **engine_options: Any,
) -> None:
    settings = ctx.settings
    checks = load_checks(check_dirs(settings.checks_dir)) if run_user_checks else []  # bad files: exit 2 now
    results: list[CheckResult] = []

    def inspect(scratch: ConnInfo) -> None:
        with Database.connect(scratch, application_name="pgrunbook-checks") as db:
            results.extend(run_checks(db, checks))

    result = Restorer(
        settings,
        backup_id=backup_id,
        source=source,
        keep=keep,
        progress=ctx.progress,
        target=target,
        prefer_tier=prefer_tier,
        inspect=inspect if checks else None,
        clock=ctx.clock,
        holder=f"restore-test {report.report_id}",
        run_id=engine_options.pop("run_id", report.report_id),
        **engine_options,
    ).run()
    report.payload = result
    restore_findings(report, result)
    if result.snapshot_time:
        age = ctx.now() - datetime.fromisoformat(result.snapshot_time)
        report.figures["backup_age_hours"] = round(age.total_seconds() / 3600, 2)
    add_to_report(report, results, where="restored")
    if result.integrity_pct is not None:  # not measured: no figure, rather than a made-up one
        report.measure(metrics.RESTORE_INTEGRITY, result.integrity_pct)
    report.measure(metrics.RESTORE_TESTED, 1.0 if result.tested else 0.0)
    report.measure(metrics.RESTORE_DURATION, result.durations.get("total_s", 0.0))
