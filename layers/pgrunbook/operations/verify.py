"""Daily verification: the runbook's morning check, run unattended.

About the backups (from S3, nothing downloaded):

* age of the newest restorable backup (warning 26 h, critical 48 h);
* every file of the recent backups present in both regions with the manifest's size and
  SHA-256, compared with the checksum S3 stored when it received the object;
* catalog consistency: backup folders without a manifest (failed or interrupted uploads),
  objects in a backup folder that its manifest does not list, DR copies missing;
* the share of backup runs that failed over 7 days (5 % / 15 %): from the backup job's own
  reports, where a run still "running" long after it started counts as failed, so a run
  killed by a timeout is not forgotten;
* the duration of the newest backup (30 min / 2 h);
* month-over-month growth of the backups' size (50 % / 100 %).

About the live database: the built-in checks (RLS on exposed tables, primary keys, long
transactions, connections, stale statistics) and the data-quality checks from ``sql/checks``
and ``PGRUNBOOK_CHECKS_DIR``.  A database that cannot be reached is a critical finding, not
a configuration error: it may be exactly what is wrong this morning.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from statistics import mean
from typing import Any

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.s3.store import ObjectStore
from pgrunbook.catalog.backups import Catalog, CatalogEntry, by_backup, missing_files
from pgrunbook.catalog.reports import ReportStore
from pgrunbook.checks.sql import add_to_report, check_dirs, load_checks, run_checks
from pgrunbook.domain import metrics
from pgrunbook.domain.errors import DatabaseUnreachable
from pgrunbook.domain.ids import backup_time, is_backup_id
from pgrunbook.domain.layout import MANIFEST_NAME
from pgrunbook.domain.manifest import Manifest
from pgrunbook.domain.results import Report
from pgrunbook.operations.context import OperationContext

RECENT_DAYS = 7
GROWTH_WINDOW = timedelta(days=30)


def run(
    ctx: OperationContext, report: Report, *, recent_days: int = RECENT_DAYS, check_database: bool = True
) -> None:
    settings = ctx.settings
    now = ctx.now()
    thresholds = settings.thresholds
    primary = settings.primary_store()
    dr = settings.dr_store() if settings.has_dr else None
    primary.check_bucket()
    if dr is not None:
        dr.check_bucket()
    checks = load_checks(check_dirs(settings.checks_dir)) if check_database else []  # bad files: exit 2

    entries = Catalog(primary).entries()
    objects = list(primary.list_keys(primary.backups_prefix))
    contents = by_backup(primary.backups_prefix, objects)
    # restorable: a manifest that can be read, and every file it lists in the bucket
    manifests = [
        e.manifest for e in entries if e.manifest is not None and not missing_files(e.manifest, contents)
    ]
    _freshness(report, manifests, now, thresholds)
    recent = [m for m in manifests if m.started_at >= now - timedelta(days=recent_days)] or manifests[:1]
    verified = {"primary": _verify_files(report, primary, recent, "primary")}
    if dr is not None:
        verified["dr"] = _verify_dr(report, dr, manifests, recent)
    else:
        report.add("dr_copy", "warning", "no DR bucket configured: backups exist in one region only")
    report.detail["verified_backups"] = verified
    _catalog_consistency(report, primary, entries, recent, objects, now, thresholds)
    _failure_rate(report, ReportStore(primary), now, thresholds)
    _duration(report, manifests, now, thresholds)
    _growth(report, manifests, now, thresholds)
    if check_database:
        _database(report, ctx, checks, now)
    # A figure that was not measured is not emitted: missing data, which the backup-age alarm
    # treats as breaching (a sentinel such as -1 would read as "fine").
    for metric, figure in (
        (metrics.BACKUP_AGE, "backup_age_hours"),
        (metrics.BACKUP_FAILURE_RATE, "backup_failure_rate_pct"),
        (metrics.STORAGE_GROWTH, "storage_growth_pct"),
    ):
        if isinstance(report.figures.get(figure), int | float):
            report.measure(metric, report.figures[figure])
    report.measure(metrics.VERIFY_PROBLEMS, len(report.problems()))


# -- backups --------------------------------------------------------------------------------


def _freshness(report: Report, manifests: list[Manifest], now: datetime, thresholds: Any) -> None:
    if not manifests:
        report.add("backup_age", "critical", "there is no restorable backup at all")
        return
    newest = manifests[0]
    age = (now - newest.snapshot_time).total_seconds() / 3600
    report.figures.update(
        backup_age_hours=round(age, 2), last_backup_id=newest.backup_id, backups=len(manifests)
    )
    severity = thresholds.backup_age_hours.classify(age)
    limit = {"warning": thresholds.backup_age_hours.warning, "critical": thresholds.backup_age_hours.critical}
    message = f"the newest restorable backup {newest.backup_id} is {age:.1f} h old"
    if severity != "ok":
        message += f" (more than {limit[severity]:g} h)"
    report.add("backup_age", severity, message, backup_id=newest.backup_id, age_hours=round(age, 2))


def _check_files(store: ObjectStore, manifest: Manifest) -> list[str]:
    """Problems with the stored copy of one backup (empty: every file matches)."""
    problems = [store.verify_object(store.key(manifest.backup_id, f.name), f) for f in manifest.files]
    if store.head(store.manifest_key(manifest.backup_id)) is None:
        problems.append(f"{store.uri(store.manifest_key(manifest.backup_id))} is missing")
    return [p for p in problems if p]


def _verify_files(report: Report, store: ObjectStore, manifests: list[Manifest], region: str) -> list[str]:
    verified = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda m: (m, _check_files(store, m)), manifests))
    for manifest, problems in results:
        if problems:
            report.add(
                f"files_{region}",
                "critical",
                f"backup {manifest.backup_id} in the {region} bucket does not match its manifest: {problems[0]}",
                backup_id=manifest.backup_id,
                problems=problems[:50],
            )
        else:
            verified.append(manifest.backup_id)
    if verified:
        report.add(
            f"files_{region}",
            "ok",
            f"{len(verified)} recent backups verified in the {region} bucket against S3's stored SHA-256",
        )
    report.figures[f"verified_{region}"] = len(verified)
    return verified


def _verify_dr(
    report: Report, dr: ObjectStore, manifests: list[Manifest], recent: list[Manifest]
) -> list[str]:
    """DR copies: recent ones verified file by file; older ones must at least exist."""
    dr_catalog = Catalog(dr)
    recent_ids = {m.backup_id for m in recent}
    present = [m for m in recent if dr_catalog.has_manifest(m.backup_id)]
    for manifest in recent:
        if manifest.backup_id not in {p.backup_id for p in present}:
            report.add(
                "dr_copy",
                "critical",
                f"backup {manifest.backup_id} has no complete copy in the DR bucket "
                f"({dr.uri(dr.manifest_key(manifest.backup_id))} is missing)",
                backup_id=manifest.backup_id,
            )
    older_missing = [
        m.backup_id
        for m in manifests
        if m.backup_id not in recent_ids and not dr_catalog.has_manifest(m.backup_id)
    ]
    if older_missing:
        report.add(
            "dr_copy",
            "warning",
            f"{len(older_missing)} older backups have no DR copy",
            backups=older_missing[:50],
        )
    return _verify_files(report, dr, present, "dr")


def _catalog_consistency(
    report: Report,
    store: ObjectStore,
    entries: list[CatalogEntry],
    recent: list[Manifest],
    objects: list[dict[str, Any]],
    now: datetime,
    thresholds: Any,
) -> None:
    """What one listing of the backups shows: corrupt manifests (critical, by key), manifests
    whose files are not all there (critical: listed, but not restorable), folders without a
    manifest, objects no manifest lists, objects outside any backup folder."""
    grace = timedelta(minutes=thresholds.backup_duration_minutes.critical)
    contents = by_backup(store.backups_prefix, objects)
    recent_ids = {m.backup_id for m in recent}
    for entry in entries:
        folder = contents.get(entry.backup_id, {})
        if entry.corrupt:
            key = store.manifest_key(entry.backup_id)
            report.add(
                "catalog",
                "critical",
                f"backup {entry.backup_id} is not restorable: its manifest {store.uri(key)} is corrupt ({entry.problem})",
                backup_id=entry.backup_id,
                key=key,
            )
        elif entry.manifest is None:
            if now - backup_time(entry.backup_id) <= grace:
                report.add(
                    "catalog", "info", f"backup {entry.backup_id} has no manifest yet (may be running)"
                )
                continue
            report.add(
                "catalog",
                "warning",
                f"partial backup {entry.backup_id}: {len(folder)} objects and no manifest (a failed or "
                "interrupted upload; retention removes it)",
                backup_id=entry.backup_id,
                objects=len(folder),
            )
        elif entry.backup_id not in recent_ids:  # the recent ones' files are checked one by one
            gone = missing_files(entry.manifest, contents)
            if gone:
                report.add(
                    "catalog",
                    "critical",
                    f"backup {entry.backup_id} is not restorable: its manifest lists files the bucket does "
                    f"not hold ({gone[0]}{f' and {len(gone) - 1} more' if len(gone) > 1 else ''})",
                    backup_id=entry.backup_id,
                    problems=gone[:50],
                )
        else:
            listed = {f.name for f in entry.manifest.files} | {MANIFEST_NAME}
            extra = sorted(store.key(entry.backup_id, name) for name in folder if name not in listed)
            if extra:
                report.add(
                    "catalog",
                    "warning",
                    f"backup {entry.backup_id} folder holds {len(extra)} objects its manifest does not list",
                    objects=extra[:50],
                )
    stray = [o["Key"] for o in objects if not _in_backup_folder(store, o["Key"])]
    if stray:
        report.add(
            "catalog", "warning", f"{len(stray)} objects outside any backup folder", objects=stray[:50]
        )


def _in_backup_folder(store: ObjectStore, key: str) -> bool:
    folder, slash, _ = key[len(store.backups_prefix) :].partition("/")
    return bool(slash) and is_backup_id(folder)


def _failure_rate(report: Report, reports: ReportStore, now: datetime, thresholds: Any) -> None:
    window = now - timedelta(days=7)
    runs = [r for r in reports.history("backup", since=window) if r.started >= window and not r.skipped]
    if not runs:
        report.add("backup_failure_rate", "info", "no backup runs recorded in the last 7 days")
        return
    killed_after = timedelta(minutes=thresholds.backup_duration_minutes.critical)
    failed = [
        r
        for r in runs
        if r.status == "critical" or (r.detail.get("state") == "running" and now - r.started > killed_after)
    ]
    finished = [r for r in runs if r.detail.get("state") != "running" or now - r.started > killed_after]
    if not finished:
        report.add("backup_failure_rate", "info", "no finished backup run in the last 7 days yet")
        return
    rate = 100.0 * len(failed) / len(finished)
    report.figures.update(backup_failure_rate_pct=round(rate, 2), backup_runs_7d=len(finished))
    severity = thresholds.backup_failure_rate_pct.classify(rate)
    report.add(
        "backup_failure_rate",
        severity,
        f"{len(failed)} of {len(finished)} backup runs failed in the last 7 days ({rate:.1f} %)",
        failed=[r.report_id for r in failed],
    )


def _duration(report: Report, manifests: list[Manifest], now: datetime, thresholds: Any) -> None:
    if not manifests:
        return
    newest = manifests[0]
    minutes = (newest.completed_at - newest.started_at).total_seconds() / 60
    week = [m for m in manifests if m.started_at >= now - timedelta(days=7)] or [newest]
    slowest = max((m.completed_at - m.started_at).total_seconds() / 60 for m in week)
    report.figures.update(
        backup_duration_minutes=round(minutes, 2), slowest_backup_minutes_7d=round(slowest, 2)
    )
    severity = thresholds.backup_duration_minutes.classify(minutes)
    report.add("backup_duration", severity, f"the newest backup took {minutes:.1f} min")


def _growth(report: Report, manifests: list[Manifest], now: datetime, thresholds: Any) -> None:
    this = [m.size_bytes for m in manifests if now - GROWTH_WINDOW <= m.started_at <= now]
    last = [m.size_bytes for m in manifests if now - 2 * GROWTH_WINDOW <= m.started_at < now - GROWTH_WINDOW]
    if not this or not last or not mean(last):
        report.add("storage_growth", "info", "not enough history to measure month-over-month growth")
        return
    growth = 100.0 * (mean(this) - mean(last)) / mean(last)
    report.figures.update(storage_growth_pct=round(growth, 2), backup_size_bytes_avg=int(mean(this)))
    severity = thresholds.storage_growth_pct.classify(growth)
    report.add(
        "storage_growth",
        severity,
        f"backups grew {growth:.1f} % over the last 30 days (average {mean(this) / 1e6:.1f} MB vs {mean(last) / 1e6:.1f} MB)",
    )


# -- the live database ---------------------------------------------------------------------


def _database(report: Report, ctx: OperationContext, checks: list[Any], now: datetime) -> None:
    from pgrunbook.checks.live import builtin_checks

    settings = ctx.settings
    try:
        db = Database.connect(settings.conninfo(), application_name="pgrunbook-verify")
    except DatabaseUnreachable as exc:
        report.add("database", "critical", str(exc))
        return
    with db:
        results = builtin_checks(
            db,
            profile=settings.profile,
            exposed_schemas=settings.exposed_schema_list,
            thresholds=settings.thresholds,
            now=now,
        )
        results += run_checks(db, checks)
    add_to_report(report, results)
