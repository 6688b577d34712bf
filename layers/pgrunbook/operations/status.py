"""``pgrunbook status``: the runbook's morning check on one screen.

Health per tier (the age of each tier's newest backup against its cadence), the last backup,
the last verification, the last restore test and the last DR drill with their figures and
the drill trend; then the catalog itself: every backup with its tiers, time, size, rows and
whether its DR copy is present, and incomplete folders listed as not restorable.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pgrunbook.catalog.backups import Catalog, CatalogEntry, missing_files
from pgrunbook.catalog.reports import ReportStore
from pgrunbook.domain.ids import utcnow
from pgrunbook.domain.results import Report
from pgrunbook.domain.thresholds import Threshold
from pgrunbook.operations.context import OperationContext
from pgrunbook.settings.model import Settings

# How old a tier's newest backup may get (hours) before it is a warning / critical.  Daily
# uses the configured backup-age threshold; manual backups have no cadence.
TIER_CADENCE = {
    "hourly": Threshold(2, 4, "h"),
    "weekly": Threshold(8 * 24, 15 * 24, "h"),
    "monthly": Threshold(32 * 24, 63 * 24, "h"),
}


@dataclass
class BackupLine:
    backup_id: str
    restorable: bool
    tiers: list[str] = field(default_factory=list)
    started_at: str | None = None
    snapshot_time: str | None = None
    size_bytes: int = 0
    tables: int = 0
    rows: int = 0
    dr_copy: bool | None = None  # None: no DR bucket configured
    problem: str | None = None
    tested: str | None = None  # the newest restore test or drill of it: passed | failed | untested


@dataclass
class StatusResult:
    database: str
    location: str
    dr_location: str | None
    backups: list[BackupLine]
    generated_at: str
    last_backup_age_hours: float | None = None
    tiers: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_runs: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    drill_trend: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _summary(report: Report | None, now: datetime, killed_after: timedelta) -> dict[str, Any] | None:
    """A run as the morning check shows it.  A run whose report still says ``running`` is
    ``running`` while it may still be running, and ``unfinished`` (critical) once it is older
    than the longest a backup may take: killed, or its final report could not be stored.  No
    ``ok`` is shown for a run that did not finish."""
    if report is None:
        return None
    status = report.status
    problems = [f"{f.severity}: {f.check}: {f.message}" for f in report.problems()][:5]
    if report.detail.get("state") == "running":
        if now - report.started > killed_after:
            status = "unfinished"
            problems.insert(
                0,
                f"critical: {report.operation}: the run started at {report.started_at} never finished "
                "(killed, timed out, or its final report could not be stored)",
            )
        else:
            status = "running"
    return {
        "report_id": report.report_id,
        "started_at": report.started_at,
        "status": status,
        "problems": problems,
        "figures": report.figures,
        "location": report.location,
    }


TESTS_READ = 26  # restore-test reports read for the catalog's "tested" column (half a year of weeks)


def tested_backups(reports: list[Report]) -> dict[str, str]:
    """Backup id -> what its newest restore test or drill that measured it found: ``passed``
    (integrity 100 %) or ``failed``; ``untested`` when every run so far had a target that could
    not host it.  An untested run measures nothing, so it does not hide an earlier verdict.
    ``reports`` oldest first."""
    verdicts: dict[str, str] = {}
    for report in reports:
        backup_id = report.figures.get("backup_id")
        if not backup_id or report.detail.get("state") == "running":
            continue
        if report.status == "untested":
            verdicts.setdefault(backup_id, "untested")
        elif report.figures.get("integrity_pct") == 100 and report.status != "critical":
            verdicts[backup_id] = "passed"
        else:
            verdicts[backup_id] = "failed"
    return verdicts


def build_status(
    settings: Settings, *, limit: int | None = None, now: datetime | None = None
) -> StatusResult:
    primary = settings.primary_store()
    primary.check_bucket()
    dr = settings.dr_store() if settings.has_dr else None
    if dr is not None:
        dr.check_bucket()
    now = now or utcnow()
    catalog = Catalog(primary)
    entries = catalog.entries()
    contents = catalog.contents()
    dr_catalog = Catalog(dr) if dr is not None else None
    missing = {e.backup_id: missing_files(e.manifest, contents) for e in entries if e.manifest is not None}

    def line(entry: CatalogEntry) -> BackupLine:
        if entry.manifest is None:
            return BackupLine(entry.backup_id, restorable=False, problem=entry.problem)
        if missing[entry.backup_id]:
            gone = missing[entry.backup_id]
            more = f" (and {len(gone) - 3} more)" if len(gone) > 3 else ""
            problem = f"its manifest lists files the bucket does not hold: {'; '.join(gone[:3])}{more}"
            return BackupLine(
                entry.backup_id, restorable=False, tiers=list(entry.manifest.tiers), problem=problem
            )
        m = entry.manifest
        return BackupLine(
            backup_id=m.backup_id,
            restorable=True,
            tiers=list(m.tiers),
            started_at=m.started_at.isoformat(),
            snapshot_time=m.snapshot["time"],
            size_bytes=m.size_bytes,
            tables=len(m.tables),
            rows=m.total_rows,
            dr_copy=dr_catalog.has_manifest(m.backup_id) if dr_catalog is not None else None,
        )

    shown = entries[:limit] if limit is not None else entries
    with ThreadPoolExecutor(max_workers=8) as pool:
        lines = list(pool.map(line, shown))

    def age_hours(snapshot_time: str) -> float:
        return round((now - datetime.fromisoformat(snapshot_time)).total_seconds() / 3600, 2)

    # what can be restored: a manifest, and every file it lists
    manifests = [e.manifest for e in entries if e.manifest is not None and not missing[e.backup_id]]
    cadence = {"daily": settings.thresholds.backup_age_hours, **TIER_CADENCE}
    tiers: dict[str, dict[str, Any]] = {}
    for tier in ("hourly", "daily", "weekly", "monthly", "manual"):
        newest = next((m for m in manifests if tier in m.tiers), None)
        if newest is None:
            tiers[tier] = {"status": "none", "backup_id": None, "age_hours": None, "count": 0}
            continue
        age = age_hours(newest.snapshot["time"])
        threshold = cadence.get(tier)
        tiers[tier] = {
            "status": threshold.classify(age) if threshold else "ok",
            "backup_id": newest.backup_id,
            "age_hours": age,
            "count": sum(1 for m in manifests if tier in m.tiers),
        }
    reports = ReportStore(primary)
    killed_after = timedelta(minutes=settings.thresholds.backup_duration_minutes.critical)
    last_runs = {
        name: _summary(reports.latest(name), now, killed_after)
        for name in ("backup", "verify", "restore-test")
    }
    # the drill runs in the DR region and keeps its history there first
    drill_reports = ReportStore(dr) if dr is not None else reports
    drills = drill_reports.history("dr-drill", limit=12) or reports.history("dr-drill", limit=12)
    trend = [
        {
            "started_at": r.started_at,
            "status": r.status,
            "rto_hours": r.figures.get("rto_hours"),
            "rpo_hours": r.figures.get("rpo_hours"),
        }
        for r in drills
    ]
    last_runs["dr-drill"] = _summary(drills[-1], now, killed_after) if drills else None
    verdicts = tested_backups([*reports.history("restore-test", limit=TESTS_READ), *drills])
    for backup in lines:
        backup.tested = verdicts.get(backup.backup_id)
    return StatusResult(
        database=settings.database_label,
        location=primary.describe(),
        dr_location=dr.describe() if dr is not None else None,
        backups=lines,
        generated_at=now.isoformat(),
        last_backup_age_hours=age_hours(manifests[0].snapshot["time"]) if manifests else None,
        tiers=tiers,
        last_runs=last_runs,
        drill_trend=trend,
    )


def run(ctx: OperationContext, report: Report, *, limit: int | None = None, html: str | None = None) -> None:
    """The morning check as a report: the figures, and the whole picture as its payload;
    with ``html``, also the status page (:mod:`pgrunbook.operations.status_page`) in that file."""
    from pgrunbook.operations import status_page  # it builds on this module

    target = status_page.writable_file(html) if html is not None else None  # refused before reading
    result = build_status(ctx.settings, limit=limit, now=ctx.now())
    report.payload = result
    report.figures.update(
        last_backup_age_hours=result.last_backup_age_hours,
        backups=len(result.backups),
        restorable=sum(1 for b in result.backups if b.restorable),
    )
    if target is not None:
        history = status_page.build_history(ctx.settings, ctx.now())
        status_page.write_file(target, status_page.render_page(result, history, ctx.settings.thresholds))
        report.figures["html"] = str(target)
