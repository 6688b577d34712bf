"""``make demo``: the whole story on one laptop, with nothing installed by hand.

Starts an embedded PostgreSQL, loads the runbook's project-management application (about
100,000 tasks in JSONB arrays, indexes, RLS), and, under moto (S3 in two regions, in this
process), runs backup -> verified DR copy -> restore test *from the DR region* into a scratch
database, then prints the reports and the catalog.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from pgrunbook.adapters.postgres.connection import Database, quote_ident
from pgrunbook.adapters.postgres.embedded import start as start_embedded
from pgrunbook.domain.results import JsonPayload, Report
from pgrunbook.entrypoints.cli.render import render
from pgrunbook.operations.context import OperationContext, run_operation
from pgrunbook.progress import StreamProgress
from pgrunbook.settings.files import sql_file
from pgrunbook.settings.model import Settings

PRIMARY = ("pgrunbook-demo-primary", "us-east-1")
DR = ("pgrunbook-demo-dr", "us-west-2")
DEMO_DB = "pm_app"


def load_demo_dataset(admin: Database, dbname: str, *, projects: int = 2000, avg_tasks: int = 50) -> None:
    """Create ``dbname`` and load the deterministic sample (``projects * avg_tasks`` tasks)."""
    admin.run(f"DROP DATABASE IF EXISTS {quote_ident(dbname)}")
    admin.run(f"CREATE DATABASE {quote_ident(dbname)}")
    with Database.connect(admin.info.with_dbname(dbname)) as db:
        db.run(f"SET pgrunbook.demo_projects TO '{int(projects)}'")
        db.run(f"SET pgrunbook.demo_avg_tasks TO '{int(avg_tasks)}'")
        db.run(sql_file("demo/project_management.sql"))
        db.run("ANALYZE")


def run_demo(
    *,
    tasks: int = 100_000,
    keep: bool = False,
    html: str | None = None,
    out: TextIO | None = None,
    json_out: bool = False,
) -> int:
    """The whole story; with ``html``, the status page of its result in that file too."""
    out = out or sys.stdout
    if html is not None:
        from pgrunbook.operations.status_page import writable_file

        writable_file(html)  # a bad path is refused before anything starts
    from moto import mock_aws  # a demo/test dependency, not needed by the library

    started = time.monotonic()
    progress = StreamProgress(sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="pgrunbook-demo-"))
    saved = {k: os.environ.pop(k, None) for k in ("AWS_ENDPOINT_URL", "AWS_PROFILE")}
    server = None
    try:
        progress.step("starting the embedded PostgreSQL 18")
        server = start_embedded(workdir / "pg18", 18, cleanup="delete")
        projects = max(1, tasks // 50)
        with Database.connect(server.conninfo) as admin:
            progress.step(f"loading the project-management sample: {projects} projects, ~{tasks:,} tasks")
            load_demo_dataset(admin, DEMO_DB, projects=projects, avg_tasks=50)
            loaded = Database.connect(server.conninfo.with_dbname(DEMO_DB))
            with loaded:
                count = loaded.scalar("SELECT sum(jsonb_array_length(tasks)) FROM projects")
            progress.step(f"loaded {int(count):,} tasks")
        with mock_aws():
            import boto3

            for bucket, region in (PRIMARY, DR):
                client = boto3.client("s3", region_name=region)
                config = (
                    {}
                    if region == "us-east-1"
                    else {"CreateBucketConfiguration": {"LocationConstraint": region}}
                )
                client.create_bucket(Bucket=bucket, **config)
            settings = Settings.load(
                env={},
                database_url=server.conninfo.with_dbname(DEMO_DB).libpq_uri(),
                bucket=PRIMARY[0],
                region=PRIMARY[1],
                dr_bucket=DR[0],
                dr_region=DR[1],
                restore_target_url=server.conninfo.libpq_uri(),
                work_dir=str(workdir),
                home=str(workdir),
                created_by="pgrunbook-demo",
            )
            ctx = OperationContext(settings, progress=progress)
            progress.step("backup: snapshot, pg_dump, fingerprints, upload, DR copy")
            backup = run_operation("backup", ctx)
            progress.step("restore test from the DR region, with the data-quality checks on the copy")
            restore = run_operation("restore-test", ctx, source="dr", keep=keep)
            progress.step("daily verification: freshness, checksums in both regions, database checks")
            verify = run_operation("verify", ctx)
            status = run_operation("status", ctx, html=html)
        steps = {"backup": backup, "restore-test": restore, "verify": verify, "status": status}
        report = _demo_report(steps, started, time.monotonic() - started)
        if json_out:
            out.write(json.dumps(report.to_dict(), indent=1, default=str) + "\n")
        else:
            out.write("\n".join(["", *(part for r in steps.values() for part in (render(r), ""))]))
            verdict = "PASSED" if report.exit_code == 0 else "FAILED"
            out.write(f"\ndemo {verdict} in {report.figures['elapsed_s']:.1f}s\n")
        return report.exit_code
    finally:
        for key, value in saved.items():
            if value is not None:
                os.environ[key] = value
        if server is not None and not keep:
            server.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _demo_report(steps: dict[str, Report], started: float, elapsed: float) -> Report:
    """The demo's own report: one finding per step, each step's report in the payload."""
    first = steps["backup"]
    report = Report.start("demo", first.database, first.started)
    for name, step in steps.items():
        severity = {"ok": "ok", "skipped": "info", "warning": "warning"}.get(step.status, "critical")
        report.add(name, severity, f"{name}: {step.status}")
    report.figures["elapsed_s"] = round(elapsed, 2)
    report.payload = JsonPayload({name: step.to_dict() for name, step in steps.items()})
    return report
