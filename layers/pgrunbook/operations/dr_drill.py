"""The monthly disaster-recovery drill, scenario ``complete_data_loss``.

Assume the primary database and the whole primary region are gone.  Use only what the DR
region holds: the DR bucket's catalog and a restore target there
(``PGRUNBOOK_DR_RESTORE_TARGET_URL`` or ``..._SECRET_ARN``; the embedded server on a laptop).
Restore the newest DR backup and verify it completely; when it does not verify, fall back
to the next older one, as an operator would in a real recovery.

* RTO (recovery time) = drill start to the end of a verified restore.
* RPO (data loss) = drill start minus the snapshot time of the backup that restored, i.e.
  how much data a real disaster at that moment would have lost.

Both are compared with the targets (RTO 4 h, RPO 1 h) and thresholds (RTO 6 h / 12 h, RPO
2 h / 4 h).  With daily backups alone the RPO is up to a day, far over the 1 h target: the
drill says so every month until hourly backups (or PITR) close the gap.  The report carries
the runbook's "RESOLVED - Database Recovery Completed" fields, and the drill history lives
in the DR bucket (and the primary one when it is there) for the trend in ``pgrunbook status``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.catalog.backups import Catalog
from pgrunbook.catalog.reports import ReportStore
from pgrunbook.domain import metrics
from pgrunbook.domain.errors import ConfigError, Unreachable
from pgrunbook.domain.notices import resolved_message, resolved_subject
from pgrunbook.domain.results import Report
from pgrunbook.operations.context import OperationContext
from pgrunbook.operations.restorer import Restorer, RestoreResult, restore_findings, untested

TREND_LENGTH = 12


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h ({seconds / 60:.0f} min)"


def run(
    ctx: OperationContext,
    report: Report,
    *,
    scenario: str = "complete_data_loss",
    attempts: int = 3,
    target: ConnInfo | None = None,
    started_at: str | None = None,
) -> None:
    """``scenario`` and ``attempts`` are checked by the registry's options before this runs.
    The restore workflow passes the ``target`` it provisioned and the time it started
    (``started_at``): the RTO then includes making the target, as a real recovery's would."""
    settings = ctx.settings
    if not settings.has_dr:
        raise ConfigError("the DR drill needs the DR bucket: set PGRUNBOOK_DR_BUCKET and PGRUNBOOK_DR_REGION")
    dr = settings.dr_store()
    dr.check_bucket()
    settings.dr_restore_target()  # a bad secret is a refusal, before anything is written
    thresholds = settings.thresholds
    started = datetime.fromisoformat(started_at) if started_at else report.started  # the drill's clock
    report.detail["scenario"] = scenario
    history = ReportStore(dr).history("dr-drill", limit=TREND_LENGTH)

    candidates = [e.manifest for e in Catalog(dr).entries() if e.manifest is not None]
    restored: RestoreResult | None = None
    measured = False  # whether any attempt measured a backup's integrity
    tried: list[dict[str, str | None]] = []
    for manifest in candidates[:attempts]:
        restorer = Restorer(
            settings,
            backup_id=manifest.backup_id,
            source="dr",
            progress=ctx.progress,
            target=target,
            clock=ctx.clock,
            holder=f"dr-drill {report.report_id}",
            drill=True,  # the DR region's targets, never the primary's
            run_id=f"{report.report_id}-{len(tried) + 1}",
        )
        try:
            result = restorer.run()
        except Unreachable as exc:
            if not tried:
                raise  # unreachable before the drill did anything: a refusal, nothing written
            # the target went away during the drill: older backups cannot be tried either
            tried.append({"backup_id": manifest.backup_id, "status": "not tried", "error": str(exc)})
            report.add("restore_attempt", "critical", f"DR backup {manifest.backup_id} was not tried: {exc}")
            break
        tried.append({"backup_id": manifest.backup_id, "status": result.status, "error": result.error})
        measured = measured or result.tested
        if result.status == "ok":
            restored = result
            break
        if result.status == "untested":  # older backups need the same: the target is what is missing
            untested(report, result, check="validation")
            break
        why = result.error or f"integrity {result.integrity_pct:.2f} %"
        report.add(
            "restore_attempt",
            "critical",
            f"DR backup {manifest.backup_id} did not restore completely ({why}); trying the next older one",
            notes=result.notes,
        )
    finished = ctx.now()
    report.detail["attempts"] = tried
    rto_s = (finished - started).total_seconds()

    report.measure(metrics.RESTORE_TESTED, 1.0 if measured else 0.0)
    if restored is None and report.untested:
        report.figures.update(rto_hours=None, rpo_hours=None, recovered=False, tested=False)
        report.detail["trend"] = _trend(history, None)
        return
    if restored is None:
        report.add(
            "recovery",
            "critical",
            "no backup in the DR region could be restored and verified: a real disaster now would lose the database"
            if candidates
            else "the DR region holds no restorable backup at all",
        )
        report.figures.update(rto_hours=None, rpo_hours=None, recovered=False)
        report.detail["trend"] = _trend(history, None)
        return

    restore_findings(report, restored, check="validation")
    rpo_s = (started - datetime.fromisoformat(restored.snapshot_time or started.isoformat())).total_seconds()
    rto_h, rpo_h = rto_s / 3600, max(0.0, rpo_s) / 3600
    report.figures.update(
        recovered=True,
        rto_hours=round(rto_h, 4),
        rpo_hours=round(rpo_h, 4),
        rto_target_hours=thresholds.rto_target_hours,
        rpo_target_hours=thresholds.rpo_target_hours,
        rto_target_met=rto_h <= thresholds.rto_target_hours,
        rpo_target_met=rpo_h <= thresholds.rpo_target_hours,
    )
    _measure(report, "rto", rto_h, thresholds.rto_hours, thresholds.rto_target_hours, "recovery time")
    _measure(report, "rpo", rpo_h, thresholds.rpo_hours, thresholds.rpo_target_hours, "data-loss window")

    lessons = [f.message for f in report.problems()] or ["none: the recovery met its targets"]
    if rpo_h > thresholds.rpo_target_hours:
        lessons.append(
            "the data-loss window is set by how often backups run: enable hourly backups (or point-in-time "
            "recovery) to meet the RPO target"
        )
    resolved = {
        "summary": f"DR drill ({scenario}): database recovered from the DR region backup {restored.backup_id} "
        f"into {restored.target}",
        "downtime": _hours(rto_s),
        "data_loss": f"{_hours(max(0.0, rpo_s))}: changes after the snapshot of {restored.snapshot_time} "
        f"would be lost",
        "validation": f"integrity {restored.integrity_pct:.2f} % ({restored.tables_matching}/{restored.tables_total} "
        f"tables match their manifest, row counts and fingerprints)",
        "lessons_learned": "; ".join(lessons),
    }
    report.detail["resolved"] = resolved
    report.detail["resolved_notice"] = {
        "subject": resolved_subject(report.database, finished.isoformat()),
        "message": resolved_message(resolved),
    }
    report.detail["trend"] = _trend(history, report)
    report.payload = restored
    report.measure(metrics.DRILL_RTO, rto_s)
    report.measure(metrics.DRILL_RPO, max(0.0, rpo_s))
    if restored.integrity_pct is not None:
        report.measure(metrics.DRILL_INTEGRITY, restored.integrity_pct)


def _measure(report: Report, name: str, hours: float, threshold: Any, target: float, what: str) -> None:
    severity = threshold.classify(hours)
    message = f"{name.upper()} {hours:.2f} h ({what}); target {target:g} h"
    if severity != "ok":
        message += (
            f", over the {threshold.warning if severity == 'warning' else threshold.critical:g} h threshold"
        )
    elif hours > target:
        message += ", within the thresholds but over the target"
    report.add(name, severity, message, hours=round(hours, 4), target_hours=target)


def _trend(history: list[Report], current: Report | None) -> list[dict[str, Any]]:
    drills = [*history, current] if current is not None else list(history)
    return [
        {
            "report_id": r.report_id,
            "started_at": r.started_at,
            "status": r.status,
            "rto_hours": r.figures.get("rto_hours"),
            "rpo_hours": r.figures.get("rpo_hours"),
        }
        for r in drills
    ]
