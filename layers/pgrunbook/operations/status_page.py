"""The status page: ``pgrunbook status --html FILE``, and the weekly ``status-page`` job that
writes the same page to S3 (``<prefix>/<database>/pages/status-<date>.html``).

One self-contained HTML file.  Its CSS is inline and its charts are inline SVG drawn here;
there is no script, font, image or link to fetch. So it opens without a network, from a
laptop's disk, a chat attachment or S3.  It shows:

* the morning check (:mod:`pgrunbook.operations.status`): a verdict, the tiers, the last runs
  with their problems, the drill trend and the newest backups;
* the last 90 days from the reports: backup size and duration (against the duration
  thresholds), restore-test integrity (against 100 %) and duration, and the DR drills' RTO and
  RPO against their targets and warning and critical thresholds.  A run is a point in its
  status's colour; a run that measured nothing is a cross on the chart's floor (red: a failed
  backup, or a run that never finished; amber: a restore test whose target could not host the
  backup).  A chart never hides a run.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pgrunbook.catalog.reports import ReportStore
from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.results import Report
from pgrunbook.domain.thresholds import Thresholds
from pgrunbook.operations.context import OperationContext
from pgrunbook.operations.status import StatusResult, build_status
from pgrunbook.settings.model import Settings

PAGE_DAYS = 90
CATALOG_ROWS = 30  # the newest backups listed in the page (the rest are counted)
COLORS = {"ok": "#1a7f37", "warning": "#9a6700", "critical": "#cf222e", "series": "#0969da"}


# -- the history -------------------------------------------------------------------------------


@dataclass
class History:
    """The reports of the charts' period, oldest first."""

    since: datetime
    until: datetime
    backups: list[Report] = field(default_factory=list)
    restore_tests: list[Report] = field(default_factory=list)
    drills: list[Report] = field(default_factory=list)


def build_history(settings: Settings, now: datetime, days: int = PAGE_DAYS) -> History:
    since = now - timedelta(days=days)
    reports = ReportStore(settings.primary_store())
    dr = ReportStore(settings.dr_store()) if settings.has_dr else None
    with ThreadPoolExecutor(max_workers=3) as pool:
        backups = pool.submit(reports.history, "backup", since=since)
        tests = pool.submit(reports.history, "restore-test", since=since)
        # the drill runs in the DR region and keeps its history there first
        drills = pool.submit((dr or reports).history, "dr-drill", since=since)
        drill_reports = drills.result() or (reports.history("dr-drill", since=since) if dr else [])
        return History(since, now, backups.result(), tests.result(), drill_reports)


# -- charts --------------------------------------------------------------------------------------


@dataclass
class Line:
    """A horizontal line across a chart: a target or a threshold."""

    label: str
    value: float
    color: str


@dataclass
class Mark:
    """One run on a chart: a point (``value``) or, for a run that measured nothing, a cross
    on the floor."""

    at: datetime
    value: float | None
    status: str
    title: str


WIDTH, HEIGHT = 560, 230
LEFT, RIGHT, TOP, BOTTOM = 64, 118, 16, 34


def _chart(
    chart_id: str,
    title: str,
    unit: str,
    marks: list[Mark],
    lines: list[Line],
    since: datetime,
    until: datetime,
    *,
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}",
    floor: float = 0.0,
    ceiling: float | None = None,
) -> str:
    """An SVG line chart of ``marks`` over [since, until] with ``lines`` across it."""
    measured = [m for m in marks if m.value is not None]
    top = max(
        [*(m.value for m in measured if m.value is not None), *(ln.value for ln in lines), floor + 1e-9]
    )
    top = ceiling if ceiling is not None else _nice(top * 1.1)
    span = (until - since).total_seconds() or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: datetime) -> float:
        return LEFT + plot_w * min(max((at - since).total_seconds() / span, 0.0), 1.0)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - (value - floor) / ((top - floor) or 1.0))

    out = [
        f'<svg class="chart" id="{chart_id}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{html.escape(title)}" data-points="{len(measured)}" '
        f'data-unmeasured="{len(marks) - len(measured)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{html.escape(title)}</title>",
    ]
    for i in range(5):  # the value grid
        value = floor + (top - floor) * i / 4
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{html.escape(fmt(value))}</text>'
        )
    day = since.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    step = max(1, round(span / 86400 / 6))
    while day <= until:  # the date axis: about six labels
        out.append(
            f'<text class="axis" x="{x(day):.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">'
            f"{day.strftime('%b %d')}</text>"
        )
        day += timedelta(days=step)
    out.append(f'<text class="unit" x="{LEFT}" y="{TOP - 4}">{html.escape(unit)}</text>')
    for line in lines:
        out.append(
            f'<line class="threshold" data-label="{html.escape(line.label)}" x1="{LEFT}" x2="{LEFT + plot_w}" '
            f'y1="{y(line.value):.1f}" y2="{y(line.value):.1f}" stroke="{line.color}"/>'
            f'<text class="threshold-label" x="{LEFT + plot_w + 6}" y="{y(line.value) + 4:.1f}" '
            f'fill="{line.color}">{html.escape(line.label)} {html.escape(fmt(line.value))}</text>'
        )
    radius = 3.5 if len(measured) <= 200 else 1.5  # months of hourly backups: a band, not a blot
    if len(measured) > 1:
        path = " ".join(f"{x(m.at):.1f},{y(m.value):.1f}" for m in measured if m.value is not None)
        out.append(f'<polyline class="series" points="{path}"/>')
    for m in marks:
        tip = f"<title>{html.escape(m.title)}</title>"
        if m.value is None:
            cx, cy = x(m.at), TOP + plot_h
            color = COLORS["warning" if m.status == "untested" else "critical"]
            out.append(
                f'<g class="unmeasured {html.escape(m.status)}" stroke="{color}">{tip}'
                f'<line x1="{cx - 5:.1f}" y1="{cy - 5:.1f}" x2="{cx + 5:.1f}" y2="{cy + 5:.1f}"/>'
                f'<line x1="{cx - 5:.1f}" y1="{cy + 5:.1f}" x2="{cx + 5:.1f}" y2="{cy - 5:.1f}"/></g>'
            )
        else:
            color = COLORS.get(m.status, COLORS["series"]) if m.status != "ok" else COLORS["series"]
            out.append(
                f'<circle class="point {html.escape(m.status)}" cx="{x(m.at):.1f}" cy="{y(m.value):.1f}" r="{radius}" '
                f'fill="{color}">{tip}</circle>'
            )
    if not marks:
        out.append(
            f'<text class="empty" x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle">'
            f"no runs in the last {round(span / 86400)} days</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _nice(value: float) -> float:
    """The next round number at or above ``value`` (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** _floor_log10(value)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _floor_log10(value: float) -> int:
    exponent = 0
    while value >= 10:
        value /= 10
        exponent += 1
    while value < 1:
        value *= 10
        exponent -= 1
    return exponent


def _finished(report: Report) -> bool:
    return report.detail.get("state") != "running"


def _marks(
    reports: list[Report],
    figure: str,
    scale: float,
    describe: Callable[[Report], str],
    *,
    failed_measured: bool = True,
) -> list[Mark]:
    """One mark per run: its ``figure`` times ``scale`` (a point in its status's colour), or a
    cross when it has none: it did not finish, measured nothing (untested), or failed and
    ``failed_measured`` is off (a failed backup's size and duration describe no backup)."""
    marks = []
    for r in reports:
        value = r.figures.get(figure) if _finished(r) else None
        measured = isinstance(value, int | float) and not isinstance(value, bool)
        if r.status == "critical" and not failed_measured:
            measured = False
        marks.append(
            Mark(
                r.started,
                float(value) * scale if measured else None,  # type: ignore[arg-type]
                "untested" if r.status == "untested" else r.status,
                f"{r.started_at[:16].replace('T', ' ')} UTC  {r.status.upper()}  {describe(r)}",
            )
        )
    return marks


def _size_unit(largest: float) -> tuple[str, float]:
    for unit, factor in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if largest >= factor:
            return unit, factor
    return "B", 1.0


def charts(history: History, thresholds: Thresholds) -> dict[str, str]:
    """The page's six charts, by id."""
    since, until = history.since, history.until
    sizes = [r.figures.get("size_bytes") or 0 for r in history.backups]
    unit, factor = _size_unit(max([float(s) for s in sizes] or [0.0]))
    dur = thresholds.backup_duration_minutes

    def backup(r: Report) -> str:
        return f"{r.figures.get('backup_id') or ''} {run_figures('backup', r.figures)}"

    def restore(r: Report) -> str:
        if r.status == "untested":
            return (
                f"not tested: the target lacks {r.figures.get('untested_needs') or 'what the backup needs'}"
            )
        return run_figures("restore-test", r.figures)

    def drill(r: Report) -> str:
        return run_figures("dr-drill", r.figures)

    def levels(threshold: Any, target: float | None = None) -> list[Line]:
        found = [
            Line("warning", threshold.warning, COLORS["warning"]),
            Line("critical", threshold.critical, COLORS["critical"]),
        ]
        return [Line("target", target, COLORS["ok"]), *found] if target is not None else found

    def duration(reports: list[Report]) -> tuple[str, float]:
        """Minutes, or seconds when every run took less than two."""
        longest = max([float(r.figures.get("duration_s") or 0) for r in reports] or [0.0])
        return ("seconds", 1.0) if longest < 120 else ("minutes", 1 / 60)

    restore_unit, restore_scale = duration(history.restore_tests)  # the backup's: minutes, as its thresholds
    failed_backups = {"failed_measured": False}  # a failed backup's size and duration describe no backup
    specs: list[tuple[str, str, str, list[Mark], list[Line], dict[str, Any]]] = [
        ("backup-size", "Backup size", unit, _marks(history.backups, "size_bytes", 1 / factor, backup, **failed_backups), [], {}),
        ("backup-duration", "Backup duration", "minutes", _marks(history.backups, "duration_s", 1 / 60, backup, **failed_backups), levels(dur), {}),
        ("restore-integrity", "Restore test: integrity", "% of tables matching", _marks(history.restore_tests, "integrity_pct", 1.0, restore), [Line("required", 100.0, COLORS["ok"])], {"ceiling": 100.0}),
        ("restore-duration", "Restore test: duration", restore_unit, _marks(history.restore_tests, "duration_s", restore_scale, restore), [], {}),
        ("drill-rto", "DR drill: RTO", "hours", _marks(history.drills, "rto_hours", 1.0, drill), levels(thresholds.rto_hours, thresholds.rto_target_hours), {}),
        ("drill-rpo", "DR drill: RPO", "hours", _marks(history.drills, "rpo_hours", 1.0, drill), levels(thresholds.rpo_hours, thresholds.rpo_target_hours), {}),
    ]  # fmt: skip
    return {
        chart_id: _chart(chart_id, title, unit_label, marks, lines, since, until, **extra)
        for chart_id, title, unit_label, marks, lines, extra in specs
    }


def run_figures(operation: str, f: dict[str, Any]) -> str:
    """A finished run's figures in a few words: the last-runs table and the charts' tooltips."""
    if operation == "backup":
        return f"{_bytes(f.get('size_bytes'))} in {_minutes(f.get('duration_s'))}"
    if operation == "verify":
        return f"{f.get('verified_primary', 0)} backups verified, DR {f.get('verified_dr', 0)}"
    if operation == "restore-test":
        if not isinstance(f.get("integrity_pct"), int | float):
            return "integrity not measured"
        tested = f" ({f['backup_id']})" if f.get("backup_id") else ""
        return f"integrity {f['integrity_pct']:.2f} % in {_minutes(f.get('duration_s'))}{tested}"
    if operation == "dr-drill":
        return f"RTO {f.get('rto_hours')} h, RPO {f.get('rpo_hours')} h"
    return ""


def _bytes(n: Any) -> str:
    if not isinstance(n, int | float):
        return "-"
    unit, factor = _size_unit(float(n))
    return f"{n / factor:.1f} {unit}" if unit != "B" else f"{n:.0f} B"


def _minutes(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


# -- the page ------------------------------------------------------------------------------------

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0;background:#f6f8fa}
main{max-width:1180px;margin:0 auto;padding:20px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 10px}
.meta{color:#59636e}.verdict{display:inline-block;padding:4px 12px;border-radius:6px;color:#fff;font-weight:600;margin:10px 0}
.verdict.ok{background:#1a7f37}.verdict.warning{background:#9a6700}.verdict.critical{background:#cf222e}
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:8px}
th,td{border:1px solid #d1d9e0;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.s-ok{color:#1a7f37;font-weight:600}.s-warning,.s-untested,.s-running{color:#9a6700;font-weight:600}
.s-critical,.s-unfinished,.s-failed{color:#cf222e;font-weight:600}.s-none{color:#59636e}
ul.problems{margin:4px 0 0 18px;padding:0;color:#cf222e}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:14px}
figure{margin:0;background:#fff;border:1px solid #d1d9e0;border-radius:6px;padding:10px}
figcaption{font-weight:600;margin-bottom:4px}
svg.chart{width:100%;height:auto;display:block}
svg .grid{stroke:#e6eaef;stroke-width:1}svg .axis,svg .unit,svg .empty{font-size:11px;fill:#59636e}
svg .series{fill:none;stroke:#0969da;stroke-width:2}svg .threshold{stroke-dasharray:6 4;stroke-width:1.5}
svg .threshold-label{font-size:11px}svg g.unmeasured{stroke-width:2.5}
footer{color:#59636e;margin-top:24px;font-size:12px}
"""


def _status(value: str | None) -> str:
    value = value or "none"
    return f'<span class="s-{html.escape(value)}">{html.escape(value.upper())}</span>'


def verdict(status: StatusResult) -> str:
    """The worst of the tiers' ages and the last runs: ok, warning or critical.  A backup
    never verified or never restore-tested is a warning: nothing has proved it yet."""
    seen = [info["status"] for tier, info in status.tiers.items() if tier == "daily" or info["count"]]
    for name, run in status.last_runs.items():
        if run is not None:
            seen.append(run["status"])
        elif name in ("verify", "restore-test"):
            seen.append("warning")
    if status.last_backup_age_hours is None or any(s in ("critical", "unfinished", "none") for s in seen):
        return "critical"
    if any(s in ("warning", "untested") for s in seen):
        return "warning"
    return "ok"


def render_page(status: StatusResult, history: History, thresholds: Thresholds) -> str:
    e = html.escape
    worst = verdict(status)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # nothing may be fetched: no script, no remote or inline-URL resource
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>pgrunbook status: {e(status.database)}</title>",
        f"<style>{STYLE}</style></head><body><main>",
        f"<h1>Backup status of {e(status.database)}</h1>",
        f'<div class="meta">Generated {e(status.generated_at[:16].replace("T", " "))} UTC · primary '
        f"{e(status.location)} · DR {e(status.dr_location or 'not configured')}</div>",
        f'<div class="verdict {worst}" id="verdict">{worst.upper()}</div>',
        "<h2>Morning check</h2>",
        '<table id="tiers"><tr><th>tier</th><th>status</th><th>newest backup</th><th>age</th><th>kept</th></tr>',
    ]
    for tier, info in status.tiers.items():
        age = "-" if info["age_hours"] is None else f"{info['age_hours']:.1f} h"
        out.append(
            f"<tr><td>{e(tier)}</td><td>{_status(info['status'])}</td><td>{e(info['backup_id'] or '-')}</td>"
            f'<td class="num">{age}</td><td class="num">{info["count"]}</td></tr>'
        )
    out.append("</table>")
    out.append(
        '<table id="last-runs"><tr><th>run</th><th>started (UTC)</th><th>status</th><th>figures</th></tr>'
    )
    for name, run in status.last_runs.items():
        if run is None:
            out.append(f"<tr><td>{e(name)}</td><td>never</td><td>{_status('none')}</td><td></td></tr>")
            continue
        finished = run["status"] not in ("running", "unfinished")
        figures = e(run_figures(name, run["figures"])) if finished else ""
        problems = "".join(f"<li>{e(p)}</li>" for p in run["problems"])
        out.append(
            f"<tr><td>{e(name)}</td><td>{e(run['started_at'][:16].replace('T', ' '))}</td>"
            f"<td>{_status(run['status'])}</td><td>{figures}"
            + (f'<ul class="problems">{problems}</ul>' if problems else "")
            + "</td></tr>"
        )
    out.append("</table>")
    out.append(f"<h2>The last {PAGE_DAYS} days</h2>")
    drawn = charts(history, thresholds)
    captions = {
        "backup-size": "Backup size",
        "backup-duration": "Backup duration, against the duration thresholds",
        "restore-integrity": "Weekly restore test: integrity (100 % required)",
        "restore-duration": "Weekly restore test: duration",
        "drill-rto": "Monthly DR drill: RTO, against its target and thresholds",
        "drill-rpo": "Monthly DR drill: RPO, against its target and thresholds",
    }
    out.append('<div class="charts">')
    for chart_id, svg in drawn.items():
        out.append(f"<figure><figcaption>{e(captions[chart_id])}</figcaption>{svg}</figure>")
    out.append("</div>")
    restorable = [b for b in status.backups if b.restorable]
    out.append(f"<h2>Backups ({len(restorable)} restorable)</h2>")
    out.append(
        '<table id="catalog"><tr><th>backup id</th><th>tiers</th><th>snapshot (UTC)</th><th>size</th>'
        "<th>rows</th><th>DR copy</th><th>tested</th></tr>"
    )
    for b in restorable[:CATALOG_ROWS]:
        dr = "-" if b.dr_copy is None else ("yes" if b.dr_copy else "MISSING")
        tested = {"passed": "yes", "failed": "FAILED", "untested": "UNTESTED"}.get(b.tested or "", "-")
        out.append(
            f"<tr><td>{e(b.backup_id)}</td><td>{e(', '.join(b.tiers))}</td>"
            f'<td>{e((b.snapshot_time or "")[:19].replace("T", " "))}</td><td class="num">{_bytes(b.size_bytes)}</td>'
            f'<td class="num">{b.rows:,}</td><td>{dr}</td><td>{tested}</td></tr>'
        )
    out.append("</table>")
    if len(restorable) > CATALOG_ROWS:
        out.append(
            f'<div class="meta">and {len(restorable) - CATALOG_ROWS} older (pgrunbook status lists them)</div>'
        )
    incomplete = [b for b in status.backups if not b.restorable]
    if incomplete:
        out.append(
            '<h2>Not restorable</h2><table id="incomplete"><tr><th>backup id</th><th>problem</th></tr>'
        )
        out += [f"<tr><td>{e(b.backup_id)}</td><td>{e(b.problem or '')}</td></tr>" for b in incomplete]
        out.append("</table>")
    counts = {
        "backups": len(history.backups),
        "restore_tests": len(history.restore_tests),
        "drills": len(history.drills),
    }
    out.append(
        f"<footer>pgrunbook · runs charted: {counts['backups']} backups, {counts['restore_tests']} restore tests, "
        f"{counts['drills']} DR drills since {e(history.since.date().isoformat())}"
        f'<script type="application/json" id="figures">{json.dumps(counts)}</script></footer>'
    )
    out.append("</main></body></html>")
    return "\n".join(out)


def page(settings: Settings, now: datetime, *, limit: int | None = None) -> tuple[StatusResult, str]:
    """The morning check and its page."""
    status = build_status(settings, limit=limit, now=now)
    return status, render_page(status, build_history(settings, now), settings.thresholds)


def writable_file(path: str) -> Path:
    """``--html``'s FILE, checked before anything is read: its folder exists and it is not a folder."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise ConfigError(f"--html {path}: is a directory; name the file to write")
    if not target.parent.is_dir():
        raise ConfigError(f"--html {path}: the directory {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK):
        raise ConfigError(f"--html {path}: cannot write in {target.parent}")
    return target


def write_file(target: Path, text: str) -> None:
    """Written whole or not at all: a temporary file beside it, then renamed over it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- the weekly job -------------------------------------------------------------------------------


def run(ctx: OperationContext, report: Report) -> None:
    """The page of this week, written to the primary bucket beside the reports."""
    now = ctx.now()
    status, text = page(ctx.settings, now)
    store = ctx.settings.primary_store()
    key = store.layout.page_key(now.date().isoformat())
    data = text.encode()
    store.put_bytes(key, data, content_type="text/html; charset=utf-8")
    report.figures.update(page=store.uri(key), bytes=len(data), verdict=verdict(status))
    report.add("status_page", "info", f"the status page of the last {PAGE_DAYS} days is at {store.uri(key)}")
