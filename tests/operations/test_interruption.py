"""An S3 failure in the middle of an upload leaves nothing that looks restorable."""

from __future__ import annotations

import pytest
from botocore.exceptions import ConnectionClosedError

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.s3.store import CLIENT_HOOKS
from pgrunbook.catalog.backups import Catalog
from pgrunbook.catalog.metadata_mirror import Mirror
from pgrunbook.domain.errors import BackupIncomplete, BackupNotFound
from pgrunbook.domain.status import exit_code
from pgrunbook.operations.backup import run_backup
from pgrunbook.operations.restorer import run_restore_test
from pgrunbook.operations.status import build_status

SQL = """
CREATE TABLE a (id int PRIMARY KEY, v text);
CREATE TABLE b (id int PRIMARY KEY, v text);
CREATE TABLE c (id int PRIMARY KEY, v text);
INSERT INTO a SELECT g, md5(g::text) FROM generate_series(1, 3000) g;
INSERT INTO b SELECT g, md5(g::text) FROM generate_series(1, 3000) g;
INSERT INTO c SELECT g, md5(g::text) FROM generate_series(1, 3000) g;
"""


def fail_after(operation: str, successes: int, *, bucket: str | None = None):
    """A client hook: the (successes+1)-th call of ``operation`` fails, and every later one."""
    calls = {"n": 0}

    def hook(client) -> None:
        def before(params, **kwargs):
            if bucket is not None and params.get("Bucket") != bucket:
                return
            calls["n"] += 1
            if calls["n"] > successes:
                # What a connection dropped by S3 looks like to botocore's caller.
                raise ConnectionClosedError(endpoint_url=f"https://injected-fault/{operation}")

        client.meta.events.register(f"provide-client-params.s3.{operation}", before)

    return hook, calls


def mirror_rows(info) -> list[dict]:
    with Database.connect(info) as db:
        return db.rows("SELECT backup_id, status, error_message FROM pgrunbook.backup_metadata ORDER BY id")


def test_s3_failure_mid_upload_leaves_no_manifest(new_db, make_settings, s3):
    source = new_db(sql=SQL)
    settings = make_settings(source)
    hook, calls = fail_after("PutObject", 2, bucket=s3.primary)
    CLIENT_HOOKS.append(hook)

    report = run_backup(settings)

    assert calls["n"] > 2, "the fault must have fired mid-upload"
    assert report.status == "critical" and exit_code(report.status) == 1
    assert "injected-fault" in report.error
    CLIENT_HOOKS.clear()
    store = settings.primary_store()
    assert not [k for k in s3.keys("primary") if k.endswith("manifest.json")]
    assert not [k for k in s3.keys("dr")], "nothing may reach the DR bucket"
    status = build_status(settings)
    assert not [b for b in status.backups if b.restorable]
    with pytest.raises((BackupNotFound, BackupIncomplete)):
        Catalog(store).latest()
    rows = mirror_rows(source)
    assert [(r["backup_id"], r["status"]) for r in rows] == [(report.backup_id, "failed")]
    assert "injected-fault" in rows[0]["error_message"]
    # The next run, with S3 healthy again, succeeds and is the only restorable backup.
    again = run_backup(settings)
    assert again.status == "ok", again.error
    assert [b.backup_id for b in build_status(settings).backups if b.restorable] == [again.backup_id]
    assert run_restore_test(settings).integrity_pct == 100.0


def test_partial_upload_that_could_not_be_cleaned_is_listed_as_not_restorable(new_db, make_settings, s3):
    """When S3 also refuses the clean-up, the partial folder stays, flagged incomplete."""
    source = new_db(sql=SQL)
    settings = make_settings(source)
    put_hook, _ = fail_after("PutObject", 2, bucket=s3.primary)
    delete_hook, _ = fail_after("DeleteObjects", 0)
    CLIENT_HOOKS.extend([put_hook, delete_hook])

    report = run_backup(settings)
    CLIENT_HOOKS.clear()

    assert report.status == "critical"
    leftovers = s3.keys("primary", settings.primary_store().backup_prefix(report.backup_id))
    assert leftovers and not any(k.endswith("manifest.json") for k in leftovers)
    status = build_status(settings)
    [line] = [b for b in status.backups if b.backup_id == report.backup_id]
    assert not line.restorable and "incomplete" in line.problem
    with pytest.raises(BackupIncomplete, match="not restorable"):
        run_restore_test(settings, backup_id=report.backup_id)


def test_a_killed_run_is_recorded_as_failed_by_the_next_one(new_db, make_settings):
    """A run that died without cleaning up (killed, timed out) leaves an in_progress row and
    no lock; the next run marks it failed."""
    source = new_db(sql=SQL)
    settings = make_settings(source)
    mirror = Mirror.open(source, settings.database_label, "on")
    mirror.db.run(
        "INSERT INTO pgrunbook.backup_metadata (backup_id, backup_type, backup_location, status, "
        "started_at, created_by) VALUES ('20260101T000000.000Z-dead00', 'daily', 's3://x', 'in_progress', "
        "now() - interval '3 hours', 'killed-run')"
    )
    mirror.close()

    report = run_backup(settings)

    assert report.status == "warning"  # the repair is worth telling
    assert any("20260101T000000.000Z-dead00" in w for w in report.warnings)
    statuses = {r["backup_id"]: r["status"] for r in mirror_rows(source)}
    assert statuses == {"20260101T000000.000Z-dead00": "failed", report.backup_id: "completed"}


def test_a_concurrent_backup_of_the_same_database_is_skipped(new_db, make_settings):
    source = new_db(sql=SQL)
    settings = make_settings(source)
    holder = Mirror.open(source, settings.database_label, "on")
    assert holder.try_lock()
    try:
        report = run_backup(settings)
    finally:
        holder.close()
    assert report.status == "skipped" and exit_code(report.status) == 0
    assert "another backup" in report.error
    assert mirror_rows(source) == []


def test_s3_failure_during_a_restore_test_download_is_a_problem_not_a_crash(new_db, make_settings, s3, pg18):
    from tests.conftest import scratch_databases

    source = new_db(sql=SQL)
    settings = make_settings(source)
    assert run_backup(settings).status == "ok"

    def hook(client) -> None:
        def before(params, **kwargs):
            if params.get("Key", "").endswith(".dat.gz"):
                raise ConnectionClosedError(endpoint_url="https://injected-fault/GetObject")

        client.meta.events.register("provide-client-params.s3.GetObject", before)

    CLIENT_HOOKS.append(hook)
    before = scratch_databases(pg18)
    report = run_restore_test(settings)
    assert report.status == "critical" and exit_code(report.status) == 1
    assert "injected-fault" in report.error and ".dat.gz" in report.error
    assert report.scratch_database is None and scratch_databases(pg18) == before
