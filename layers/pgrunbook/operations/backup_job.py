"""The backup as a scheduled job: the backup engine's report as a job report.

Before the backup starts, a report with state ``running`` is stored under the id the final
report will use; the final report replaces it.  A run killed before it could finish (a
Lambda timeout, an out-of-memory kill) therefore leaves a ``running`` report behind, which
verification counts as a failed backup: the failure rate cannot miss the runs that died.
"""

from __future__ import annotations

from typing import Any

from pgrunbook.catalog.reports import JobReport, ReportStore
from pgrunbook.operations.backup import BackupRun
from pgrunbook.operations.context import JobContext, job


@job("backup")
def backup_job(ctx: JobContext, *, tiers: str | None = None, **run_options: Any) -> JobReport:
    report = JobReport.start("backup", ctx.settings.database_label, ctx.now())

    def mark_running(backup_id: str) -> None:
        report.detail.update(state="running", backup_id=backup_id)
        if ctx.store_reports:
            for store in ctx.report_stores("backup"):
                ReportStore(store).put(report)

    run = BackupRun(
        ctx.settings,
        tiers=tiers,
        progress=ctx.progress,
        clock=ctx.clock,
        on_started=mark_running,
        **run_options,
    )
    try:
        result = run.run()
    except BaseException:
        if report.detail.get("state") == "running" and ctx.store_reports:
            # stopped (SIGTERM, Ctrl-C): record the run as failed now rather than leave it
            # for verification to find still "running" hours later
            report.detail["state"] = "interrupted"
            report.add("backup", "critical", f"backup {report.detail.get('backup_id')} was interrupted")
            report.finished_at = ctx.now().isoformat()
            for store in ctx.report_stores("backup"):
                try:
                    ReportStore(store).put(report)
                except Exception:  # noqa: S112 - already failing; the interruption is what matters
                    continue
        raise
    report.raw = result
    report.detail = {"state": "finished", "backup": result.to_dict()}
    report.figures = {
        "backup_id": result.backup_id,
        "tiers": result.tiers,
        "size_bytes": result.size_bytes,
        "rows": result.rows,
        "tables": result.tables,
        "duration_s": result.durations.get("total_s"),
        "snapshot_time": result.snapshot.get("time"),
    }
    if result.status == "skipped":
        report.skipped = result.error
        return report
    if result.status == "critical" and result.dr.get("status") == "failed":
        report.add(
            "dr_copy", "critical", result.error or "DR copy failed", location=result.dr.get("location")
        )
    elif result.status == "critical":
        report.add("backup", "critical", f"backup {result.backup_id} failed: {result.error}")
    else:
        report.add(
            "backup",
            "ok",
            f"backup {result.backup_id} complete: {result.tables} tables, {result.rows} rows, "
            f"{result.size_bytes} bytes, DR copy {result.dr.get('status')}",
        )
    for warning in result.warnings:
        report.add("backup", "warning", warning)
    for backup_id in result.repaired_dr:
        report.add("dr_copy", "info", f"repaired the missing DR copy of {backup_id}")
    report.metrics = {
        "BackupSizeBytes": ("Bytes", result.size_bytes),
        "BackupDurationSeconds": ("Seconds", result.durations.get("total_s", 0.0)),
        "BackupSucceeded": ("Count", 0 if result.status == "critical" else 1),
    }
    return report
