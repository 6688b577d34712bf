"""``make demo``: the whole story on one laptop, with nothing installed by hand.

Starts an embedded PostgreSQL, loads the runbook's project-management application (about
100,000 tasks in JSONB arrays, indexes, RLS), and, under moto (S3 in two regions, in this
process), runs backup -> verified DR copy -> restore test *from the DR region* into a scratch
database, then prints the reports and the catalog.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from pgrunbook.adapters.postgres.connection import Database, quote_ident
from pgrunbook.adapters.postgres.embedded import start as start_embedded
from pgrunbook.entrypoints.cli.render import render_backup, render_job, render_restore, render_status
from pgrunbook.operations.context import JobContext, run_job
from pgrunbook.operations.status import build_status
from pgrunbook.progress import StreamProgress
from pgrunbook.resources import sql_file
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
    *, tasks: int = 100_000, keep: bool = False, out: TextIO | None = None, json_out: bool = False
) -> int:
    out = out or sys.stdout
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
            ctx = JobContext(settings, progress=progress)
            progress.step("backup: snapshot, pg_dump, fingerprints, upload, DR copy")
            backup = run_job("backup", ctx).raw
            progress.step("restore test from the DR region, with the data-quality checks on the copy")
            restore_job = run_job("restore-test", ctx, source="dr", keep=keep, prefer_tier=None)
            restore = restore_job.raw
            progress.step("daily verification: freshness, checksums in both regions, database checks")
            verify = run_job("verify", ctx)
            status = build_status(settings)
        elapsed = time.monotonic() - started
        if json_out:
            import json

            out.write(
                json.dumps(
                    {
                        "backup": backup.to_dict(),
                        "restore_test": restore.to_dict(),
                        "verify": verify.to_dict(),
                        "status": status.to_dict(),
                        "elapsed_s": round(elapsed, 2),
                    },
                    indent=1,
                    default=str,
                )
                + "\n"
            )
        else:
            out.write(
                "\n".join(
                    [
                        "",
                        render_backup(backup),
                        "",
                        render_restore(restore),
                        "",
                        render_job(verify),
                        "",
                        render_status(status),
                        "",
                    ]
                )
            )
            worst = max(backup.exit_code, restore_job.exit_code, verify.exit_code)
            verdict = "PASSED" if worst == 0 else "FAILED"
            out.write(f"\ndemo {verdict} in {elapsed:.1f}s\n")
        return max(backup.exit_code, restore_job.exit_code, verify.exit_code)
    finally:
        for key, value in saved.items():
            if value is not None:
                os.environ[key] = value
        if server is not None and not keep:
            server.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
