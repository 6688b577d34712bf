"""Readable renderings of reports (the CLI prints these; ``--json`` prints ``Report.to_dict()``,
the same top-level shape for every command)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.ids import utcnow
from pgrunbook.domain.results import JsonPayload, Report
from pgrunbook.operations.backup import BackupResult
from pgrunbook.operations.config import ConfigResult
from pgrunbook.operations.registry import OPERATIONS, wording
from pgrunbook.operations.restorer import RestoreResult
from pgrunbook.operations.status import StatusResult
from pgrunbook.settings.model import Settings


def print_report(as_json: bool, report: Report, text: str | None = None) -> int:
    """What every command prints: the report as JSON with ``--json``, else ``text`` (by default
    the report's own rendering).  Returns the exit status, which follows from its status."""
    if as_json:
        data = report.to_dict()
        top_level = getattr(report.payload, "top_level", None)  # a command's own keys (diff's tables)
        if callable(top_level):
            data.update({k: v for k, v in top_level().items() if k not in data})
        out = json.dumps(data, indent=1, default=str)
    else:
        out = text if text is not None else render(report)
    sys.stdout.write(out + "\n")
    sys.stdout.flush()
    return report.exit_code


def size(n: int | float) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def _durations(d: dict[str, float]) -> str:
    return ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in d.items())


def _render_backup(r: BackupResult) -> str:
    lines = [f"BACKUP {r.status.upper()} - {r.database}"]
    if r.backup_id:
        lines.append(f"  backup id     {r.backup_id}  (tiers: {', '.join(r.tiers)})")
    if r.location and r.completed_at is None:  # set once the manifest is written
        lines.append(f"  location      {r.location}  (NOT restorable: no manifest was written)")
    elif r.location:
        lines.append(f"  location      {r.location}")
    if r.snapshot:
        lines.append(f"  snapshot      {r.snapshot.get('time')}  LSN {r.snapshot.get('lsn')}")
    if r.tables:
        lines.append(f"  contents      {r.tables} tables, {r.rows:,} rows, {size(r.size_bytes)} compressed")
    if r.peak_disk_bytes:
        lines.append(f"  local disk    {size(r.peak_disk_bytes)} at most (each file deleted once uploaded)")
    if r.dr:
        status = r.dr.get("status")
        where = r.dr.get("location", "")
        extra = f" ({r.dr.get('files')} files verified)" if status == "copied" else ""
        lines.append(f"  DR copy       {status}{extra} {where}".rstrip())
        if r.dr.get("problem"):
            lines.append(f"                {r.dr['problem']}")
    for backup_id in r.repaired_dr:
        lines.append(f"  DR repaired   {backup_id}")
    if r.object_lock:
        locks = ", ".join(f"{where} {mode}" for where, mode in r.object_lock.items())
        lines.append(f"  object lock   {locks} (until the retention date)")
    lines.append(f"  mirror        {r.mirror}")
    if r.durations:
        lines.append(f"  durations     {_durations(r.durations)}")
    for warning in r.warnings:
        lines.append(f"  WARNING       {warning}")
    if r.error:
        lines.append(f"  {'ERROR' if r.status == 'critical' else 'NOTE':<13} {r.error}")
    return "\n".join(lines)


def _render_restore(r: RestoreResult) -> str:
    if r.status == "untested":
        return _render_untested(r)
    verdict = "PASSED" if r.status == "ok" else "FAILED"
    lines = [f"RESTORE TEST {verdict} - {r.database}"]
    lines.append(f"  backup id     {r.backup_id}  (from {r.source}: {r.location})")
    lines.append(f"  snapshot      {r.snapshot_time}")
    if r.scratch_database:
        lines.append(
            f"  target        {r.target}  database {r.scratch_database}{' (kept)' if r.kept else ''}"
        )
    else:
        lines.append(f"  target        {r.target or 'not reached'}  (no scratch database was created)")
    if r.roles_created:
        kept = " (kept with the database)" if r.kept else " (dropped after the test)"
        lines.append(f"  roles created {', '.join(r.roles_created)}{kept}")
    if r.integrity_pct is None:
        lines.append("  integrity     not measured: the restore did not complete")
    else:
        lines.append(
            f"  integrity     {r.integrity_pct:.2f} % ({r.tables_matching}/{r.tables_total} tables match)"
        )
    if r.durations:
        lines.append(f"  durations     {_durations(r.durations)}")
    if r.tables:
        width = max(len(t.table) for t in r.tables)
        lines.append("")
        lines.append(f"  {'table':<{width}}  {'expected rows':>14}  {'actual rows':>14}  fingerprint")
        for t in r.tables:
            actual = "-" if t.actual_rows is None else f"{t.actual_rows:,}"
            mark = "match" if t.fingerprint_match else "MISMATCH"
            if t.moved_within and not (t.rows_match and t.fingerprint_match):
                mark = f"match within {t.moved_within} (rows moved between its partitions)"
            if t.error:
                mark = f"ERROR {t.error}"
            lines.append(f"  {t.table:<{width}}  {t.expected_rows:>14,}  {actual:>14}  {mark}")
    for item in r.skipped:
        lines.append(f"  SKIPPED       {item}")
    for error in r.restore_errors:
        lines.append(f"  RESTORE ERROR {error}")
    for note in r.notes:
        lines.append(f"  note          {note}")
    if r.error:
        lines.append(f"  ERROR         {r.error}")
    return "\n".join(lines)


def _render_untested(r: RestoreResult) -> str:
    """A backup the target could not host: what it needs, and how to give it a target that can."""
    lines = [f"BACKUP NOT TESTED - {r.database}"]
    lines.append(f"  backup id     {r.backup_id}  (from {r.source}: {r.location})")
    lines.append(f"  snapshot      {r.snapshot_time}")
    lines.append(f"  target        {r.target}: cannot host this backup; nothing was restored")
    for gap in r.unmet:
        lines.append(f"  NEEDS         {gap.need}: {gap.detail}")
        lines.append(f"  remedy        {gap.remedy}")
    lines.append("  integrity     not measured: the backup is untested, not failed")
    for note in r.notes:
        lines.append(f"  note          {note}")
    return "\n".join(lines)


def _when(iso: str | None) -> str:
    return (iso or "")[:16].replace("T", " ")


def _run_line(name: str, run: dict[str, Any] | None, describe: Callable[[dict[str, Any]], str]) -> str:
    if run is None:
        return f"  {name:<17} never"
    finished = run["status"] not in ("running", "unfinished")  # an unfinished run has no figures
    what = describe(run["figures"]) if finished else ""
    return f"  {name:<17} {_when(run['started_at'])}  {run['status'].upper():<8} {what}".rstrip()


def _integrity(figures: dict[str, Any]) -> str:
    pct = figures.get("integrity_pct")
    if figures.get("untested_needs"):
        return f"NOT TESTED: the target lacks {figures['untested_needs']}"
    if pct is None:
        return "integrity not measured"
    return f"integrity {pct:.2f} % in {figures.get('duration_s') or 0:.0f}s"


def _render_status(r: StatusResult) -> str:
    lines = [f"MORNING CHECK - {r.database}  ({_when(r.generated_at)} UTC)"]
    lines.append(f"  primary           {r.location}")
    lines.append(f"  DR                {r.dr_location or 'not configured'}")
    if r.last_backup_age_hours is not None:
        lines.append(f"  last backup       {r.last_backup_age_hours:.1f} h ago")
    else:
        lines.append("  last backup       none")
    if r.tiers:
        parts = []
        for tier, info in r.tiers.items():
            if info["count"]:
                parts.append(f"{tier} {info['age_hours']:.1f} h ago ({info['status']}, {info['count']} kept)")
            else:
                parts.append(f"{tier} none")
        lines.append("  tiers             " + "; ".join(parts))
    runs = r.last_runs or {}
    if runs:
        lines.append(
            _run_line("last backup run", runs.get("backup"), lambda f: f"{size(f.get('size_bytes') or 0)}")
        )
        lines.append(
            _run_line(
                "last verification",
                runs.get("verify"),
                lambda f: (
                    f"backup age {f.get('backup_age_hours', '?')} h, "
                    f"{f.get('verified_primary', 0)} backups verified, DR {f.get('verified_dr', 0)}"
                ),
            )
        )
        lines.append(
            _run_line(
                "last restore test",
                runs.get("restore-test"),
                lambda f: f"{_integrity(f)} ({f.get('backup_id')})",
            )
        )
        lines.append(
            _run_line(
                "last DR drill",
                runs.get("dr-drill"),
                lambda f: f"RTO {f.get('rto_hours')} h, RPO {f.get('rpo_hours')} h",
            )
        )
        for run in runs.values():
            for problem in (run or {}).get("problems", []):
                lines.append(f"                    {problem}")
    if r.drill_trend:
        rto = " ".join("-" if d["rto_hours"] is None else f"{d['rto_hours']:.2f}" for d in r.drill_trend)
        rpo = " ".join("-" if d["rpo_hours"] is None else f"{d['rpo_hours']:.1f}" for d in r.drill_trend)
        lines.append(f"  drill trend       RTO h: {rto}  |  RPO h: {rpo}")
    restorable = [b for b in r.backups if b.restorable]
    incomplete = [b for b in r.backups if not b.restorable]
    if restorable:
        lines.append("")
        lines.append(
            f"  {'backup id':<28} {'tiers':<22} {'snapshot (UTC)':<20} {'size':>10} {'rows':>13}  DR       tested"
        )
        for b in restorable:
            dr = "-" if b.dr_copy is None else ("yes" if b.dr_copy else "MISSING")
            when = (b.snapshot_time or "")[:19].replace("T", " ")
            tested = {"passed": "yes", "failed": "FAILED", "untested": "UNTESTED"}.get(b.tested or "", "-")
            lines.append(
                f"  {b.backup_id:<28} {','.join(b.tiers):<22} {when:<20} {size(b.size_bytes):>10} {b.rows:>13,}  "
                f"{dr:<8} {tested}"
            )
    if incomplete:
        lines.append("")
        lines.append("  not restorable:")
        for b in incomplete:
            lines.append(f"  {b.backup_id:<28} {b.problem}")
    return "\n".join(lines)


def render_job(r: Report) -> str:
    """Any report: findings worst first, then the figures."""
    order = {"critical": 0, "warning": 1, "ok": 2, "info": 3}
    head = f"{wording(r.operation).title.upper()} {r.status.upper()} - {r.database}"
    lines = [head]
    if r.skipped:
        lines.append(f"  skipped: {r.skipped}")
    if r.untested:
        lines.append(f"  NOT TESTED: {r.untested}")
    width = max((len(f.check) for f in r.findings), default=10)
    for finding in sorted(r.findings, key=lambda f: order.get(f.severity, 9)):
        lines.append(f"  {finding.severity.upper():<8} {finding.check:<{width}}  {finding.message}")
        rows = finding.details.get("rows") if isinstance(finding.details, dict) else None
        for row in (rows or [])[:5]:
            lines.append(f"  {'':<8} {'':<{width}}    {json.dumps(row, default=str)[:160]}")
    if r.figures:
        lines.append(
            "  figures   "
            + ", ".join(f"{k}={v}" for k, v in r.figures.items() if not isinstance(v, dict | list))
        )
    resolved = r.detail.get("resolved_notice") if isinstance(r.detail, dict) else None
    if resolved:
        lines += ["", f"  {resolved['subject']}", *("  " + line for line in resolved["message"].splitlines())]
    stored = _stored(r)
    if stored:
        lines.append(f"  report    {stored}")
    return "\n".join(lines)


def _stored(report: Report) -> str:
    """Where the report is, or that it is not stored (for an operation that stores its reports)."""
    if report.location:
        return report.location
    op = OPERATIONS.get(report.operation)
    if op is not None and op.stores_report and not report.refused:
        return "NOT STORED: this run is not on record in S3 (see the findings)"
    return ""


# The findings an engine's own rendering already says (the rest are listed under it).
SAID_BY_PAYLOAD = {"backup": {"backup", "dr_copy"}, "restore-test": {"restore_test", "preflight"}}


def _with_findings(text: str, report: Report) -> str:
    """An engine's own rendering, with every finding it does not say itself (the data-quality
    checks on a restored copy, a report that could not be stored, a failed notification) and
    where the report was stored, or that it was not."""
    said = SAID_BY_PAYLOAD.get(report.operation, set())
    extra = [f for f in report.findings if f.check not in said]
    if extra:
        return text + "\n\n" + "\n".join(render_job(replace(report, findings=extra)).splitlines()[1:])
    stored = _stored(report)
    return text + (f"\n  report        {stored}" if stored else "")


def command_report(
    operation: str,
    settings: Settings,
    data: dict[str, Any],
    *,
    message: str = "",
    problem: str | None = None,
) -> Report:
    """The report of a workflow command (start, approve, status ...): its answer as the
    payload, one finding saying how it went (critical when it did not)."""
    try:
        database = settings.database_label
    except ConfigError:
        database = "-"
    report = Report.start(operation, database, utcnow())
    report.payload = JsonPayload(data)
    if problem:
        report.add(operation, "critical", problem)
    else:
        report.add(operation, "ok", message or "done")
    return report


def render_backup(report: Report) -> str:
    if not isinstance(report.payload, BackupResult):
        return render_job(report)
    return _with_findings(_render_backup(report.payload), report)


def render_restore(report: Report) -> str:
    if not isinstance(report.payload, RestoreResult):
        return render_job(report)
    return _with_findings(_render_restore(report.payload), report)


def render_status(report: Report | StatusResult) -> str:
    payload = report.payload if isinstance(report, Report) else report
    if not isinstance(payload, StatusResult):
        return render_job(report) if isinstance(report, Report) else ""
    text = _render_status(payload)
    if isinstance(report, Report) and report.figures.get("html"):
        text += f"\n\n  status page written to {report.figures['html']}"
    return text


def render_config(report: Report) -> str:
    payload = report.payload
    if not isinstance(payload, ConfigResult):
        return render_job(report)
    lines = [f"PGRUNBOOK CONFIGURATION - {report.database}"]
    width = max(len(r.env or r.name) for r in payload.options)
    for row in payload.options:
        value = (
            ""
            if row.value is None
            else json.dumps(row.value)
            if not isinstance(row.value, str)
            else row.value
        )
        lines.append(f"  {row.env or row.name:<{width}}  {row.source:<7}  {value}")
    if payload.connections:
        lines.append("")
        for row in payload.connections:
            lines.append(f"  {row.name:<{width}}  {row.source:<7}  {row.value}")
    for finding in report.problems():
        lines.append(f"  {finding.severity.upper():<8} {finding.message}")
    return "\n".join(lines)


def render_diff(report: Report) -> str:
    """The diff: one line per table that differs, with its sample keys, then the rest."""
    payload = report.payload.to_dict() if report.payload is not None else {}
    tables = payload.get("tables") or []
    if not tables:
        return render_job(report)
    lines = [f"DATABASE DIFF {report.status.upper()} - {report.database}"]
    lines.append(f"  backup        {payload.get('backup_id')} (snapshot {payload.get('snapshot_time')})")
    width = max(len(t["table"]) for t in tables)
    for t in tables:
        if t.get("error"):
            lines.append(f"  {t['table']:<{width}}  NOT COMPARED: {t['error']}")
            continue
        counts = f"deleted {t['deleted']}, inserted {t['inserted']}, changed {t['changed']}"
        same = not (t["deleted"] or t["inserted"] or t["changed"])
        rows = f"rows {t['backup_rows']} -> {t['live_rows']}"
        lines.append(f"  {t['table']:<{width}}  {'unchanged' if same else counts}  ({rows})")
        for kind in ("deleted", "inserted", "changed"):
            sample = t["samples"].get(kind) or []
            if sample:
                shown = ", ".join(json.dumps(k) if isinstance(k, list) else str(k) for k in sample)
                key = ",".join(t["key"]) if t.get("key") else "row"
                lines.append(f"  {'':<{width}}    {kind} {key}: {shown[:200]}")
    rest = [f for f in report.findings if f.check != "diff"]
    if rest:
        lines += ["", *render_job(replace(report, findings=rest, figures={})).splitlines()[1:]]
    else:
        stored = _stored(report)
        if stored:
            lines.append(f"  report        {stored}")
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[Report], str]] = {
    "diff": render_diff,
    "backup": render_backup,
    "restore-test": render_restore,
    "status": render_status,
    "config": render_config,
}


def render(report: Report) -> str:
    """The readable form of any report."""
    return RENDERERS.get(report.operation, render_job)(report)
