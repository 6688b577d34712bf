"""The status page (issue 17): ``pgrunbook status --html FILE`` and the weekly ``status-page``
job.  Ninety days of history are fabricated in (moto) S3 as the jobs store it; the page is
opened in headless Chromium (Debian's, which `make test` installs), with every network
request refused, and what it renders is checked.  A screenshot is saved under
``build/test-artifacts/``."""

from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from pgrunbook.catalog.reports import ReportStore
from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.results import Report
from pgrunbook.operations.context import OperationContext, run_operation
from pgrunbook.progress import NullProgress
from tests.operations.test_retention import DAY, NOW, fabricate, settings  # noqa: F401 - the fixture

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
SIZE = 3_200_000_000  # a 3.2 GB backup


def put(store, job: str, age: timedelta, *, figures: dict, severity: str = "ok", untested: str | None = None):
    report = Report.start(job, store.database, NOW - age)
    report.figures.update(figures)
    report.detail["state"] = "finished"
    report.untested = untested
    report.add(job, severity, "fabricated by the test")
    ReportStore(store).put(report)


@pytest.fixture
def history(settings, stores):  # noqa: F811 - settings is test_retention's fixture
    """90 days of a deployment's life: a daily backup (one failed), a weekly restore test (one
    whose target could not host the backup, one at 87.5 %), a monthly drill (one over its RTO
    threshold), and older reports the page must leave out."""
    primary, dr = stores["primary"], stores["dr"]
    for days in (0.2, 1.2, 2.2):
        fabricate([primary, dr], timedelta(days=days))
    for day in range(90):
        age = timedelta(days=day, hours=0.5)
        if day == 17:
            put(primary, "backup", age, figures={"size_bytes": 0}, severity="critical")
            continue
        put(
            primary,
            "backup",
            age,
            figures={"size_bytes": SIZE - day * 5_000_000, "duration_s": 600 + day * 3},
        )
    for week in range(13):
        age = timedelta(days=7 * week + 0.3)
        if week == 4:
            put(primary, "restore-test", age, figures={"duration_s": 30}, untested="the target lacks postgis")
        else:
            pct = 87.5 if week == 2 else 100.0
            put(primary, "restore-test", age, figures={"integrity_pct": pct, "duration_s": 1500 + week * 20},
                severity="critical" if pct < 100 else "ok")  # fmt: skip
    for month, rto in enumerate((2.5, 7.0, 3.1)):
        put(
            dr,
            "dr-drill",
            timedelta(days=30 * month + 1),
            figures={"rto_hours": rto, "rpo_hours": 0.8 + month},
        )
    put(primary, "backup", timedelta(days=200), figures={"size_bytes": 1, "duration_s": 1})  # out of range
    return {"backups": 90, "restore_tests": 13, "drills": 3}


@pytest.fixture
def stores(settings):  # noqa: F811
    return {"primary": settings.primary_store(), "dr": settings.dr_store()}


def context(settings) -> OperationContext:  # noqa: F811
    return OperationContext(settings, clock=lambda: NOW, progress=NullProgress())


def test_the_page_charts_90_days_against_targets_and_thresholds(settings, history, tmp_path):  # noqa: F811
    target = tmp_path / "status.html"
    report = run_operation("status", context(settings), html=str(target))
    assert report.figures["html"] == str(target)
    text = target.read_text()
    # self-contained: nothing to fetch, and a policy that forbids fetching anything
    assert (
        "<script src" not in text
        and "<link" not in text
        and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )
    assert "default-src 'none'" in text
    shot = rendered(target)
    assert shot["title"] == f"pgrunbook status: {settings.database_label}"
    assert shot["requests"] == []  # the page asked for nothing, and the console is clean
    assert shot["figures"] == history
    charts = shot["charts"]
    assert set(charts) == {
        "backup-size",
        "backup-duration",
        "restore-integrity",
        "restore-duration",
        "drill-rto",
        "drill-rpo",
    }
    for chart_id, chart in charts.items():  # every chart is drawn, inside the page's width
        assert chart["width"] > 300 and chart["height"] > 100, (chart_id, chart)
        assert chart["right"] <= shot["viewport"] + 1, (chart_id, chart)
    # every run is on its chart: 89 measured backups and the failed one as a red cross
    assert (charts["backup-size"]["points"], charts["backup-size"]["crosses"]) == (89, ["critical"])
    assert charts["backup-duration"]["thresholds"] == ["warning", "critical"]
    # the 87.5 % run is a red point; the run that measured nothing, an amber cross
    assert (charts["restore-integrity"]["points"], charts["restore-integrity"]["crosses"]) == (
        12,
        ["untested"],
    )
    assert charts["restore-integrity"]["critical_points"] == 1
    # each run's tooltip says what it measured, or why it measured nothing
    assert "CRITICAL  integrity 87.50 % in 25.7 min" in text and "not tested: the target lacks" in text
    assert charts["restore-integrity"]["thresholds"] == ["required"]
    assert charts["drill-rto"]["thresholds"] == ["target", "warning", "critical"]
    assert charts["drill-rto"]["points"] == charts["drill-rpo"]["points"] == 3
    # the drill over its warning threshold is drawn above that line (SVG y grows downwards)
    rto = charts["drill-rto"]
    assert min(rto["point_y"]) < rto["threshold_y"]["warning"] < max(rto["point_y"])
    # the morning check: the catalog and the last runs
    # the last runs are fine, but no verification has ever run: nothing proved the files yet
    assert shot["catalog_rows"] == 3 and shot["verdict"] == "WARNING"
    assert "RTO 2.5 h" in shot["last_runs"]
    (ARTIFACTS).mkdir(parents=True, exist_ok=True)
    shutil.copy(shot["screenshot"], ARTIFACTS / "status-page.png")
    assert (ARTIFACTS / "status-page.png").stat().st_size > 20_000


def test_the_weekly_job_writes_the_page_to_the_primary_bucket(settings, history, stores):  # noqa: F811
    report = run_operation("status-page", context(settings))
    assert report.status == "ok", report.findings
    key = f"pgrunbook/{settings.database_label}/pages/status-{NOW.date().isoformat()}.html"
    assert report.figures["page"] == f"s3://{settings.bucket}/{key}"
    page = stores["primary"].get_bytes(key)
    assert page is not None and len(page) == report.figures["bytes"]
    text = page.decode()
    assert text.count('<svg class="chart"') == 6 and 'data-points="89"' in text
    head = stores["primary"].client.head_object(Bucket=settings.bucket, Key=key)
    assert head["ContentType"] == "text/html; charset=utf-8"
    # its own report is stored like every job's
    [stored] = ReportStore(stores["primary"]).history("status-page")
    assert stored.figures["page"] == report.figures["page"]


def test_an_empty_history_still_makes_a_page_that_says_so(settings, tmp_path):  # noqa: F811
    target = tmp_path / "empty.html"
    run_operation("status", context(settings), html=str(target))
    text = target.read_text()
    assert text.count("no runs in the last 90 days") == 6
    assert 'id="verdict">CRITICAL' in text  # no backup at all
    # the footer's counts: a JSON data block, which no browser runs
    block = text.split('<script type="application/json" id="figures">')[1].split("</script>")[0]
    assert json.loads(block) == {"backups": 0, "restore_tests": 0, "drills": 0}


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing/dir/page.html", "does not exist"), (".", "is a directory")],
)
def test_a_bad_html_path_is_refused_before_anything_is_read(settings, tmp_path, name, message):  # noqa: F811
    with pytest.raises(ConfigError, match=message):
        run_operation("status", context(settings), html=str(tmp_path / name))


def test_values_from_the_reports_are_escaped(settings, stores, tmp_path):  # noqa: F811
    put(
        stores["primary"],
        "backup",
        timedelta(hours=1),
        figures={"backup_id": "<img src=x onerror=alert(1)>", "size_bytes": 5},
    )
    target = tmp_path / "page.html"
    run_operation("status", context(settings), html=str(target))
    text = target.read_text()
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text


# -- the browser ---------------------------------------------------------------------------------

MEASURE = """() => {
  const charts = {};
  for (const svg of document.querySelectorAll('svg.chart')) {
    const box = svg.getBoundingClientRect();
    const scale = box.height / svg.viewBox.baseVal.height;
    const thresholds = {};
    for (const line of svg.querySelectorAll('line.threshold')) {
      thresholds[line.dataset.label] = line.y1.baseVal.value;
    }
    charts[svg.id] = {
      width: box.width, height: box.height, right: box.right, scale,
      points: svg.querySelectorAll('circle.point').length,
      critical_points: svg.querySelectorAll('circle.point.critical').length,
      point_y: [...svg.querySelectorAll('circle.point')].map(c => c.cy.baseVal.value),
      crosses: [...svg.querySelectorAll('g.unmeasured')].map(g => g.classList[1]).sort(),
      thresholds: [...svg.querySelectorAll('line.threshold')].map(l => l.dataset.label),
      threshold_y: thresholds,
    };
  }
  return {
    title: document.title,
    viewport: document.documentElement.clientWidth,
    charts,
    figures: JSON.parse(document.getElementById('figures').textContent),
    catalog_rows: document.querySelectorAll('#catalog tr').length - 1,
    verdict: document.getElementById('verdict').textContent,
    last_runs: document.getElementById('last-runs').innerText,
  };
}"""


def rendered(page_file: Path) -> dict:
    """The page as headless Chromium lays it out, every request it makes, and a screenshot."""
    if not CHROMIUM.exists() and os.environ.get("CI"):
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def refuse(route) -> None:
                if route.request.url != page_file.as_uri():
                    requests.append(route.request.url)
                    route.abort()
                else:
                    route.continue_()

            page.route("**/*", refuse)
            # the page's CSP blocks a fetch before it reaches the route: a blocked fetch is a
            # console error ("Refused to load ..."), so the console must stay clean too
            page.on("console", lambda m: requests.append(m.text) if m.type in ("error", "warning") else None)
            page.goto(page_file.as_uri())
            found = page.evaluate(MEASURE)
            shot = page_file.with_suffix(".png")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    return {**found, "requests": requests, "screenshot": shot}
