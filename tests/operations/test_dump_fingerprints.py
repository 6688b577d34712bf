"""Fingerprints from the dump itself (``PGRUNBOOK_FINGERPRINTS=dump``, issue 16): the
database is read once, by pg_dump; the restore test proves the restored tables equal what
was dumped, across major versions, and catches one changed row."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from datetime import UTC, datetime

import pytest

from pgrunbook.adapters.postgres.connection import Database, qualified
from pgrunbook.adapters.postgres.tools import find_pg_dump
from pgrunbook.adapters.s3.store import b64
from pgrunbook.catalog.backups import Catalog
from pgrunbook.catalog.metadata_mirror import Mirror
from pgrunbook.operations.backup import run_backup
from pgrunbook.operations.restorer import run_restore_test
from pgrunbook.progress import NullProgress


@pytest.mark.parametrize("version", [16, 18])
def test_a_backup_fingerprinted_from_its_dump_restores_at_100_percent(
    version, request, new_db, make_settings
):
    server = request.getfixturevalue(f"pg{version}")
    source = new_db("kitchen_sink.sql", server=server)
    with Database.connect(source) as db:
        db.run("ALTER TABLE everything ADD COLUMN doubled numeric GENERATED ALWAYS AS (amount * 2) STORED")
    settings = make_settings(source, fingerprints="dump")
    backup = run_backup(settings)
    assert backup.status == "ok", backup.error
    assert backup.copy_text_bytes > 0
    manifest = Catalog(settings.primary_store()).manifest(backup.backup_id)
    assert {t.method for t in manifest.tables} == {"copy"}
    assert manifest.options["fingerprints"] == "dump"
    assert dict(manifest.options["copy_session"])["TimeZone"] == "UTC"
    everything = next(t for t in manifest.tables if t.name == "everything")
    assert "doubled" not in [c for c, _ in everything.columns]  # pg_dump does not dump it
    with Database.connect(source) as db:
        for t in manifest.tables:
            if t.schema == "pgrunbook":
                continue  # the mirror gains this backup's own row after the snapshot
            assert db.scalar(f"SELECT count(*) FROM ONLY {qualified(t.schema, t.name)}") == t.rows, (
                t.qualified
            )
    report = run_restore_test(settings, backup_id=backup.backup_id)  # on PostgreSQL 18
    assert report.status == "ok", (
        report.error,
        report.restore_errors,
        [t for t in report.tables if not t.match],
    )
    assert report.integrity_pct == 100.0 and report.tables_matching == len(manifest.tables)


def _seq_scans(info, table: str) -> int:
    time.sleep(1.2)  # the statistics of other sessions are flushed at least once a second
    with Database.connect(info) as db:
        return int(db.scalar("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = :t", t=table) or 0)


SQL = """
CREATE TABLE items (id int PRIMARY KEY, body text, at timestamptz);
INSERT INTO items SELECT g, md5(g::text), timestamptz '2026-01-01 00:00+00' + g * interval '1 min'
FROM generate_series(1, 20000) g;
"""


def test_the_database_is_read_once_and_one_changed_row_fails_the_restore_test(new_db, make_settings, s3):
    source = new_db(sql=SQL)
    settings = make_settings(source, fingerprints="dump", jobs=1)
    before = _seq_scans(source, "items")
    backup = run_backup(settings)
    assert backup.status == "ok", backup.error
    assert _seq_scans(source, "items") - before == 1  # pg_dump's COPY, and nothing else
    server_mode = run_backup(make_settings(source, fingerprints="after", jobs=1))
    assert server_mode.status == "ok"
    assert _seq_scans(source, "items") - before >= 3  # the server-side method reads it again

    store = settings.primary_store()
    manifest = Catalog(store).manifest(backup.backup_id)
    [items] = [t for t in manifest.tables if t.name == "items"]
    data_files = [f for f in manifest.files if f.name.endswith(".dat.gz")]
    client = s3.client()
    changed = None
    row = hashlib.md5(b"42", usedforsecurity=False).hexdigest().encode()  # items' row 42 holds md5('42')
    for entry in data_files:  # change that row in its file; keep every checksum valid
        key = store.key(backup.backup_id, entry.name)
        text = gzip.decompress(client.get_object(Bucket=s3.primary, Key=key)["Body"].read())
        if row not in text:
            continue
        body = gzip.compress(text.replace(row, b"tampered", 1))
        digest = hashlib.sha256(body).digest()
        client.put_object(Bucket=s3.primary, Key=key, Body=body, ChecksumSHA256=b64(digest))
        changed = (entry.name, len(body), digest)
    assert changed is not None
    data = json.loads(store.get_bytes(store.manifest_key(backup.backup_id)))
    for f in data["files"]:
        if f["name"] == changed[0]:
            f.update(
                size=changed[1], sha256=changed[2].hex(), s3_checksum=b64(changed[2]), parts=1, part_size=0
            )
    store.put_bytes(store.manifest_key(backup.backup_id), json.dumps(data).encode())
    for jobs in (1, 2):  # verified after pg_restore, and while it runs
        progress = Steps()
        report = run_restore_test(
            make_settings(source, jobs=jobs), backup_id=backup.backup_id, progress=progress
        )
        assert report.status == "critical"
        [mismatch] = [t for t in report.tables if not t.match]
        assert mismatch.table == items.qualified
        assert mismatch.rows_match and not mismatch.fingerprint_match  # the same count, other content
        assert any("verified while pg_restore ran" in s for s in progress.steps) == (jobs == 2)


class Steps(NullProgress):
    def __init__(self) -> None:
        self.steps: list[str] = []

    def step(self, message: str) -> None:
        self.steps.append(message)


HASHED = """
CREATE TYPE mood AS ENUM ('m01', 'm02', 'm03', 'm04', 'm05', 'm06', 'm07', 'm08', 'm09', 'm10', 'm11', 'm12');
CREATE TABLE visits (id int, mood mood, note text) PARTITION BY HASH (mood);
CREATE TABLE visits_0 PARTITION OF visits FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE visits_1 PARTITION OF visits FOR VALUES WITH (MODULUS 2, REMAINDER 1);
INSERT INTO visits SELECT g, ('m' || lpad((1 + g % 12)::text, 2, '0'))::mood, md5(g::text)
FROM generate_series(1, 30000) g;
CREATE TABLE big AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 200000) g;
ALTER TABLE big ADD PRIMARY KEY (id);
CREATE INDEX big_slow ON big (md5(md5(md5(body))));  -- pg_restore is still busy after the data
CREATE TABLE small AS SELECT g AS id FROM generate_series(1, 10) g;
"""


def test_tables_are_verified_as_pg_restore_lands_them_and_partitions_after(new_db, make_settings):
    """With two jobs, each table but a partition is fingerprinted as soon as pg_restore has
    loaded it (a partition of an enum-hashed table is loaded through its root, so another
    partition's data can still add to it); every table matches."""
    settings = make_settings(new_db(sql=HASHED), fingerprints="dump", jobs=2)
    backup = run_backup(settings)
    assert backup.status == "ok", backup.error
    progress = Steps()
    report = run_restore_test(settings, backup_id=backup.backup_id, progress=progress)
    assert report.status == "ok", [t for t in report.tables if not t.match]
    assert report.integrity_pct == 100.0
    [line] = [s for s in progress.steps if "verified while pg_restore ran" in s]
    early, total = (int(n) for n in line.split(" tables")[0].split(" of "))
    assert total == len(report.tables) and 1 <= early <= total - 2  # visits_0 and visits_1 wait


def test_diff_and_repair_work_from_a_backup_fingerprinted_from_its_dump(new_db, make_settings):
    """The manifest records no server-side row hash: the diff hashes rows as a server-side
    backup would, from the backup's restored copy."""
    from pgrunbook.operations.context import OperationContext, run_operation
    from tests.operations.test_recovery import INCIDENT

    source = new_db("music_store.sql")
    settings = make_settings(source, fingerprints="dump")
    assert run_backup(settings).status == "ok"
    with Database.connect(source) as db:
        db.run(INCIDENT)
    report = run_operation(
        "diff",
        OperationContext(settings),
        tables="public.album,public.track,public.play_log",
        apply_repair=True,
        yes=True,
    )
    assert report.exit_code == 0, [f.message for f in report.findings]
    found = {t["table"]: t for t in report.payload.to_dict()["tables"]}
    assert (
        found["public.track"]["deleted"],
        found["public.track"]["inserted"],
        found["public.track"]["changed"],
    ) == (
        25,
        2,
        3,
    )
    assert (found["public.play_log"]["deleted"], found["public.play_log"]["inserted"]) == (3, 1)
    after = {t["table"]: t for t in report.payload.to_dict()["after"]}
    assert all(t["deleted"] == 0 and t["changed"] == 0 for t in after.values())


def test_rows_a_restore_moves_between_enum_hash_partitions_are_not_a_false_alarm(new_db, make_settings):
    """The restore renumbers the enum's OIDs, so hash partitioning may put rows in the other
    partition: with the server-side method too, the tree as a whole is what matches."""
    settings = make_settings(new_db(sql=HASHED), fingerprints="after", jobs=1)
    backup = run_backup(settings)
    report = run_restore_test(settings, backup_id=backup.backup_id)
    assert report.status == "ok", [t for t in report.tables if not t.match]
    visits = [t for t in report.tables if t.table.startswith("public.visits_")]
    assert len(visits) == 2 and all(t.match for t in visits)
    # twelve labels whose renumbered OIDs hash the same way as before by chance: 1 in 4096
    assert any(t.moved_within == "public.visits" for t in visits)


def test_a_table_whose_data_pg_dump_left_out_fails_the_backup_and_leaves_nothing(
    tmp_path, new_db, make_settings, s3
):
    """The snapshot's table list is checked against the archive's table of contents: a
    pg_dump that leaves out a table's data (here one given --exclude-table-data behind
    pgrunbook's back) fails the backup, and nothing of it stays in S3."""
    source = new_db(sql=SQL)
    real = find_pg_dump(18)
    tools = tmp_path / "bin"
    tools.mkdir()
    wrapper = tools / "pg_dump"
    wrapper.write_text(f'#!/bin/sh\nexec "{real.path}" "$@" --exclude-table-data=public.items\n')
    wrapper.chmod(0o755)
    for name in ("pg_restore", "psql"):
        (tools / name).symlink_to(real.path.parent / name)
    settings = make_settings(source, fingerprints="dump", pg_bin=str(tools))
    backup = run_backup(settings)
    assert backup.status == "critical"
    assert "pg_dump left out the data of public.items" in backup.error
    assert backup.peak_disk_bytes > 0  # a failed run's figures are what happened too
    assert Catalog(settings.primary_store()).entries() == []
    for bucket in (s3.primary, s3.dr):
        assert s3.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0, bucket


def test_the_open_uploads_of_a_killed_run_are_aborted_by_the_next_backup(new_db, make_settings, s3):
    """A run killed while a file was going up in parts leaves a multipart upload open (parts
    S3 keeps and bills, no object): the next backup settles the run's row and aborts them."""
    settings = make_settings(new_db(sql=SQL))
    assert run_backup(settings).status == "ok"  # the mirror exists
    killed = "20260101T000000.000Z-dead00"
    mirror = Mirror.open(settings.conninfo(), settings.database_label, "auto")
    now = datetime.now(UTC)
    mirror.record_start(  # what the killed run had recorded
        backup_id=killed,
        backup_type="daily",
        tiers=["daily"],
        location="s3://bucket/prefix/",
        tables=["public.items"],
        started_at=now,
        retention_until=now,
        created_by="test",
    )
    mirror.db.close()
    client = s3.client()
    for store in (settings.primary_store(), settings.dr_store()):
        key = store.key(killed, "3456.dat.gz")
        upload = client.create_multipart_upload(Bucket=store.bucket, Key=key)["UploadId"]
        client.upload_part(Bucket=store.bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 1024)
    again = run_backup(settings)
    assert again.status == "warning", again.error
    assert f"backup {killed} was interrupted by an earlier run; recorded as failed" in again.warnings
    for store in (settings.primary_store(), settings.dr_store()):
        assert f"aborted 1 unfinished upload(s) of backup {killed} in {store.bucket}" in again.warnings
        assert client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
