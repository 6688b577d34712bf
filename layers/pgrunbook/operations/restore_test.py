"""The weekly restore test as a job: the newest weekly backup (else the newest) restored into
a scratch database, checked table by table against its manifest, and the data-quality
checks run on the restored copy too.  The runbook accepts an integrity score above 95 %;
pgrunbook treats any mismatch as critical and reports the score."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.catalog.reports import JobReport
from pgrunbook.checks.sql import CheckResult, add_to_report, check_dirs, load_checks, run_checks
from pgrunbook.operations.context import JobContext, job
from pgrunbook.operations.restorer import RestoreReport, RestoreTest


def restore_findings(report: JobReport, result: RestoreReport, *, check: str = "restore_test") -> None:
    """Findings and figures every restoring job (restore test, DR drill) shares."""
    report.figures.update(
        backup_id=result.backup_id,
        source=result.source,
        integrity_pct=result.integrity_pct,
        tables=result.tables_total,
        tables_matching=result.tables_matching,
        rows=sum(t.actual_rows or 0 for t in result.tables),
        download_s=result.durations.get("download_s"),
        restore_s=result.durations.get("restore_s"),
        verify_s=result.durations.get("verify_s"),
        duration_s=result.durations.get("total_s"),
        snapshot_time=result.snapshot_time,
    )
    if result.error:
        report.add(check, "critical", f"backup {result.backup_id} could not be restored: {result.error}")
        return
    mismatched = [t.table for t in result.tables if not t.match]
    if mismatched:
        report.add(
            check,
            "critical",
            f"integrity {result.integrity_pct:.2f} %: {len(mismatched)} of {result.tables_total} tables differ "
            f"from the manifest ({', '.join(mismatched[:10])})",
            tables=[t.to_dict() for t in result.tables if not t.match][:50],
        )
    if result.restore_errors:
        report.add(
            check,
            "critical",
            f"pg_restore reported {len(result.restore_errors)} errors",
            errors=result.restore_errors[:20],
        )
    if not mismatched and not result.restore_errors:
        report.add(
            check,
            "ok",
            f"backup {result.backup_id} restored from {result.source}: integrity 100 % "
            f"({result.tables_total} tables) in {result.durations.get('total_s', 0):.1f}s",
        )
    for note in result.skipped:
        report.add(check, "info", note)


@job("restore-test")
def restore_test_job(
    ctx: JobContext,
    *,
    backup_id: str | None = None,
    source: str = "primary",
    keep: bool = False,
    prefer_tier: str | None = "weekly",
    run_user_checks: bool = True,
    target: ConnInfo | None = None,
    **options: Any,
) -> JobReport:
    settings = ctx.settings
    checks = load_checks(check_dirs(settings.checks_dir)) if run_user_checks else []  # bad files: exit 2 now
    report = JobReport.start("restore-test", settings.database_label, ctx.now())
    results: list[CheckResult] = []

    def inspect(scratch: ConnInfo) -> None:
        with Database.connect(scratch, application_name="pgrunbook-checks") as db:
            results.extend(run_checks(db, checks))

    result = RestoreTest(
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
        **options,
    ).run()
    report.raw = result
    report.detail = {"restore": result.to_dict()}
    restore_findings(report, result)
    if result.snapshot_time:
        age = ctx.now() - datetime.fromisoformat(result.snapshot_time)
        report.figures["backup_age_hours"] = round(age.total_seconds() / 3600, 2)
    add_to_report(report, results, where="restored")
    report.metrics = {
        "RestoreIntegrityPct": ("Percent", result.integrity_pct),
        "RestoreDurationSeconds": ("Seconds", result.durations.get("total_s", 0.0)),
    }
    return report
