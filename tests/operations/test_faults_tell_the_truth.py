"""Faults whose reports used to tell the on-call engineer something false (issue 12, items 1-7).

Each fault is real: the restore target's server shut down mid-restore, S3 refusing a bucket or a
key, manifests damaged in the bucket, a run whose report could not be stored.  What is checked is
what the engineer reads: the status, the exit code, the stored report, the mirror row, the
morning check.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import timedelta

import pytest
from botocore.exceptions import ConnectionClosedError

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.embedded import start
from pgrunbook.adapters.s3.store import CLIENT_HOOKS
from pgrunbook.entrypoints.cli.render import render
from pgrunbook.operations.context import OperationContext, run_operation
from pgrunbook.operations.status import build_status
from pgrunbook.progress import Progress
from tests.lambda_env import Inbox

SQL = """
CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
"""


def refuse(operation: str, *, bucket: str | None = None, key_part: str = "", after=lambda: True):
    """A client hook: S3 drops ``operation`` calls (to ``bucket``, for keys containing
    ``key_part``) once ``after()`` says so."""

    def hook(client) -> None:
        def before(params, **kwargs):
            if bucket is not None and params.get("Bucket") != bucket:
                return
            if key_part not in str(params.get("Key", "")) or not after():
                return
            raise ConnectionClosedError(endpoint_url=f"https://injected-fault/{operation}")

        client.meta.events.register(f"provide-client-params.s3.{operation}", before)

    return hook


@pytest.fixture(autouse=True)
def no_hooks_left():
    yield
    CLIENT_HOOKS.clear()


def scratch_databases(info) -> list[str]:
    with Database.connect(info) as db:
        return [
            r[0] for r in db.run("SELECT datname FROM pg_database WHERE datname LIKE 'pgrunbook_restore_%'")
        ]


class ShutDown(Progress):
    """Shuts the target's server down (immediately, as a crash would) when pg_restore starts."""

    def __init__(self, data_dir):
        self.data_dir, self.done = data_dir, False

    def step(self, message: str) -> None:
        if message.startswith("restoring with") and not self.done:
            # give pg_restore time to create its first objects, as a real crash would
            time.sleep(0.3)
            os.kill(int((self.data_dir / "postmaster.pid").read_text().split()[0]), signal.SIGQUIT)
            self.done = True
            time.sleep(0.5)


def restart(data_dir):
    """Start the embedded server in ``data_dir`` again once its crashed postmaster is gone."""
    deadline = time.monotonic() + 30
    while (data_dir / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return start(data_dir, 18, cleanup=None)


# -- 1. the restore target lost mid-restore --------------------------------------------------


def test_a_lost_target_is_reported_and_its_scratch_database_dropped_by_the_next_run(
    tmp_path, new_db, make_settings, s3
):
    target_dir = tmp_path / "target"
    target = start(target_dir, 18, cleanup=None)
    try:
        inbox = Inbox(s3.primary_region)
        settings = make_settings(
            new_db(sql=SQL), restore_target_url=target.conninfo.libpq_uri(), sns_topic_arn=inbox.topic_arn
        )
        assert run_operation("backup", OperationContext(settings)).status == "ok"
        inbox.messages()

        progress = ShutDown(target.data_dir)
        report = run_operation("restore-test", OperationContext(settings, progress=progress))
        assert progress.done and report.status == "critical" and report.exit_code == 1
        assert report.location is not None  # on record ...
        [notice] = inbox.messages()  # ... and sent
        assert notice["Subject"].startswith("CRITICAL") and "restore" in notice["Message"].lower()
        text = render(report)
        assert "not measured" in text and "0.00 %" not in text  # ... and no made-up integrity
        assert "the next restore on this target drops it" in text
        # the morning check shows this test, not the last good one
        last = build_status(settings).last_runs["restore-test"]
        assert last["status"] == "critical" and last["report_id"] == report.report_id

        target = restart(target_dir)  # the server comes back
        [left] = scratch_databases(target.conninfo)
        again = run_operation("restore-test", OperationContext(settings))
        assert again.status == "ok", again.findings
        assert scratch_databases(target.conninfo) == []
        assert any(f"dropped the scratch database {left}" in note for note in again.payload.notes)
        assert f"dropped the scratch database {left}" in render(again)
    finally:
        target.stop()


def test_a_kept_scratch_database_is_never_swept(new_db, make_settings, s3, pg18_target):
    settings = make_settings(new_db(sql=SQL), restore_target_url=pg18_target.conninfo.libpq_uri())
    run_operation("backup", OperationContext(settings))
    kept = run_operation("restore-test", OperationContext(settings), keep=True).payload.scratch_database
    run_operation("restore-test", OperationContext(settings))
    assert kept in scratch_databases(pg18_target.conninfo)
    with Database.connect(pg18_target.conninfo) as db:
        db.run(f'DROP DATABASE "{kept}" WITH (FORCE)')


def test_a_drill_whose_target_goes_away_stops_and_says_so(tmp_path, new_db, make_settings, s3):
    target = start(tmp_path / "dr-target", 18, cleanup=None)
    try:
        settings = make_settings(new_db(sql=SQL), dr_restore_target_url=target.conninfo.libpq_uri())
        for _ in range(2):
            run_operation("backup", OperationContext(settings))
        progress = ShutDown(target.data_dir)
        report = run_operation("dr-drill", OperationContext(settings, progress=progress))
        assert report.status == "critical" and report.exit_code == 1 and report.location
        attempts = report.detail["attempts"]
        assert [a["status"] for a in attempts] == ["critical", "not tried"]
        assert "cannot connect" in attempts[1]["error"]
    finally:
        target.stop()


# -- 3. a run that did not finish --------------------------------------------------------------


def test_a_run_whose_report_cannot_be_stored_says_so(new_db, make_settings, s3):
    settings = make_settings(new_db(sql=SQL))
    marked = {"running": False}

    def after_the_running_marker() -> bool:
        if not marked["running"]:
            marked["running"] = True  # the first report write is the "running" marker
            return False
        return True

    CLIENT_HOOKS.append(
        refuse("PutObject", bucket=s3.primary, key_part="/reports/", after=after_the_running_marker)
    )
    report = run_operation("backup", OperationContext(settings))
    CLIENT_HOOKS.clear()
    assert report.location is None
    assert any(f.check == "report_storage" for f in report.findings)
    text = render(report)
    assert "could not store the report" in text and "NOT STORED" in text
    # the marker stays: the morning check does not call the run ok
    last = build_status(settings).last_runs["backup"]
    assert last["status"] == "running"
    later = build_status(settings, now=report.started + timedelta(hours=3)).last_runs["backup"]
    assert later["status"] == "unfinished" and "never finished" in later["problems"][0]


def test_the_next_backup_removes_a_killed_runs_work_directory(new_db, make_settings, s3):
    settings = make_settings(new_db(sql=SQL))
    label = settings.database_label
    abandoned = settings.work_path / f"pgrunbook-{label}-20260101T020000.000Z-abcdef"
    (abandoned / "dump").mkdir(parents=True)
    (abandoned / "dump" / "3001.dat.gz").write_bytes(os.urandom(200_000))
    other = settings.work_path / "pgrunbook-otherdb-20260101T020000.000Z-abcdef"
    other.mkdir()
    report = run_operation("backup", OperationContext(settings))
    assert not abandoned.exists() and other.exists()  # another database's is not ours to remove
    [warning] = [f for f in report.findings if "work directory" in f.message]
    assert warning.severity == "warning" and "0.2 MB" in warning.message


# -- 4. the DR bucket unreachable after the primary manifest -------------------------------------


def test_a_dr_failure_after_the_manifest_leaves_a_complete_backup_recorded_complete(
    new_db, make_settings, s3
):
    source = new_db(sql=SQL)
    settings = make_settings(source)
    primary_manifest = {"written": False}

    def note_manifest(client) -> None:
        def after(params, **kwargs):
            if params.get("Bucket") == s3.primary and str(params.get("Key", "")).endswith("manifest.json"):
                primary_manifest["written"] = True

        client.meta.events.register("provide-client-params.s3.PutObject", after)

    CLIENT_HOOKS.append(note_manifest)
    for operation in ("CopyObject", "HeadObject", "PutObject", "ListObjectsV2", "GetObject", "HeadBucket"):
        CLIENT_HOOKS.append(refuse(operation, bucket=s3.dr, after=lambda: primary_manifest["written"]))
    report = run_operation("backup", OperationContext(settings))
    CLIENT_HOOKS.clear()

    assert report.status == "critical" and report.exit_code == 1
    assert [f.check for f in report.findings if f.severity == "critical"] == ["dr_copy"]
    assert report.detail["state"] == "finished" and report.location
    text = render(report)
    assert "DR copy       failed" in text and "interrupted" not in text
    backup_id = report.figures["backup_id"]
    with Database.connect(source) as db:
        assert db.run("SELECT status FROM pgrunbook.backup_metadata WHERE backup_id = :b", b=backup_id) == [
            ["completed"]
        ]
    # the next run, with the DR bucket back, repairs the copy; the row stays completed
    again = run_operation("backup", OperationContext(settings))
    assert again.status == "ok" and backup_id in again.payload.repaired_dr
    with Database.connect(source) as db:
        rows = dict(db.run("SELECT backup_id, status FROM pgrunbook.backup_metadata"))
    assert set(rows.values()) == {"completed"}


# -- 5. corrupt manifests ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content", [b"{not json", b"[]", b"null", b"", b'{"format": "pgrunbook/1", "tiers": 3}']
)
def test_a_corrupt_manifest_is_critical_and_named(content, new_db, make_settings, s3):
    settings = make_settings(new_db(sql=SQL))
    backup_id = run_operation("backup", OperationContext(settings)).figures["backup_id"]
    key = settings.primary_store().manifest_key(backup_id)
    s3.client().put_object(Bucket=s3.primary, Key=key, Body=content)

    report = run_operation("verify", OperationContext(settings), check_database=False)
    assert report.status == "critical" and report.exit_code == 1
    [corrupt] = [f for f in report.findings if f.check == "catalog" and f.severity == "critical"]
    assert key in corrupt.message and corrupt.details["key"] == key
    assert "BackupAgeHours" not in report.metrics  # nothing restorable: no age, not a sentinel
    [line] = build_status(settings).backups
    assert not line.restorable and key in line.problem


def test_a_manifest_naming_a_missing_file_is_not_restorable(new_db, make_settings, s3):
    settings = make_settings(new_db(sql=SQL))
    older = run_operation("backup", OperationContext(settings)).figures["backup_id"]
    newer = run_operation("backup", OperationContext(settings), tier="daily,weekly").figures["backup_id"]
    store = settings.primary_store()
    manifest = json.loads(
        s3.client().get_object(Bucket=s3.primary, Key=store.manifest_key(newer))["Body"].read()
    )
    gone = next(f["name"] for f in manifest["files"] if f["name"] != "toc.dat")
    s3.client().delete_object(Bucket=s3.primary, Key=store.key(newer, gone))

    status = build_status(settings)
    lines = {b.backup_id: b for b in status.backups}
    assert not lines[newer].restorable and f"{gone} is missing" in lines[newer].problem
    assert lines[older].restorable
    assert status.tiers["weekly"]["status"] == "none"  # the broken backup is not the tier's newest
    assert status.tiers["daily"]["backup_id"] == older
    report = run_operation("verify", OperationContext(settings), check_database=False, recent_days=1)
    assert report.status == "critical" and report.figures["last_backup_id"] == older


# -- 7. no sentinel metrics --------------------------------------------------------------------


def test_with_no_backup_no_age_is_emitted(new_db, make_settings, s3):
    settings = make_settings(new_db(sql=SQL))
    report = run_operation("verify", OperationContext(settings), check_database=False)
    assert report.status == "critical"
    assert "BackupAgeHours" not in report.metrics and "BackupFailureRatePct" not in report.metrics
    assert report.metrics["VerifyProblems"][1] >= 1


class ShutDownSource(Progress):
    """Shuts the source's server down (as a crash would) once pg_dump is running."""

    def __init__(self, data_dir):
        self.data_dir, self.done = data_dir, False

    def step(self, message: str) -> None:
        if message.startswith("dumping with") and not self.done:
            time.sleep(0.2)
            os.kill(int((self.data_dir / "postmaster.pid").read_text().split()[0]), signal.SIGQUIT)
            self.done = True


def test_a_database_lost_mid_backup_is_a_stored_and_sent_critical_report(tmp_path, make_settings, s3):
    source_dir = tmp_path / "source"
    server = start(source_dir, 18, cleanup=None)
    try:
        with Database.connect(server.conninfo) as admin:
            admin.run("CREATE DATABASE app")
        info = server.conninfo.with_dbname("app")
        with Database.connect(info) as db:
            db.run(SQL.replace("20000", "300000"))
        inbox = Inbox(s3.primary_region)
        settings = make_settings(info, sns_topic_arn=inbox.topic_arn)

        progress = ShutDownSource(source_dir)
        report = run_operation("backup", OperationContext(settings, progress=progress))
        assert progress.done
        assert report.status == "critical" and report.exit_code == 1, report.findings
        assert report.location is not None
        [notice] = inbox.messages()
        assert notice["Subject"].startswith("CRITICAL")
        text = render(report)
        assert "NOT STORED" not in text
        # the failed run's row could not be updated: said, not "mirror recorded"
        assert "mirror        NOT updated (lost the connection" in text, text
        assert "the next backup settles its row" in text
        assert "(NOT restorable: no manifest was written)" in text
        # nothing restorable was left, and the morning check says the run failed
        status = build_status(settings)
        assert not [b for b in status.backups if b["restorable"]]
        assert status.last_runs["backup"]["status"] == "critical"

        server = restart(source_dir)  # the database comes back: the next run records the lost one
        again = run_operation("backup", OperationContext(settings))
        assert again.exit_code == 0, again.findings
        lost = report.figures["backup_id"]
        assert any(
            f"backup {lost} was interrupted by an earlier run; recorded as failed" in f.message
            for f in again.findings
        )
        with Database.connect(info) as db:
            rows = dict(db.run("SELECT backup_id, status FROM pgrunbook.backup_metadata"))
        assert rows[lost] == "failed" and rows[again.figures["backup_id"]] == "completed"
    finally:
        server.stop()


def test_a_complete_backup_whose_last_mirror_update_was_lost_is_settled_completed(new_db, make_settings, s3):
    """The run wrote its manifest, then could not reach the database to complete its row (or
    was killed right then): the next run finds the manifest and records the row completed,
    not failed."""
    info = new_db(sql=SQL)
    settings = make_settings(info)
    first = run_operation("backup", OperationContext(settings)).figures["backup_id"]
    with Database.connect(info) as db:  # the state that run left
        db.run(
            "UPDATE pgrunbook.backup_metadata SET status = 'in_progress', completed_at = NULL, "
            "backup_size_bytes = NULL WHERE backup_id = :id",
            id=first,
        )
    again = run_operation("backup", OperationContext(settings))
    assert any(
        f"backup {first} is complete but its mirror row was left in_progress" in w
        for w in again.payload.warnings
    )
    with Database.connect(info) as db:
        [(state, size)] = db.run(
            "SELECT status, backup_size_bytes FROM pgrunbook.backup_metadata WHERE backup_id = :id", id=first
        )
    assert state == "completed" and size > 0
