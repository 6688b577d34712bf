"""Bounded disk (issue 14, item 4): the backup keeps only the files not yet uploaded, and the
restore test refuses, before it downloads anything, a machine whose disk cannot hold it."""

from __future__ import annotations

import json

import pytest

from pgrunbook.adapters.s3.store import ObjectStore
from pgrunbook.adapters.s3.uploads import Uploader
from pgrunbook.domain.errors import ConfigError, TransientStorageError
from pgrunbook.entrypoints.cli.render import render
from pgrunbook.operations.context import OperationContext, run_operation
from pgrunbook.progress import NullProgress
from tests.conftest import rewrite_manifest

# Eight tables of the same size: the whole dump is eight times one table's file.
TABLES = "\n".join(
    f"CREATE TABLE t{i} AS SELECT g AS id, md5(g::text || '{i}') || md5(g::text) AS body "
    f"FROM generate_series(1, 40000) g;"
    for i in range(8)
)


@pytest.mark.parametrize(
    ("jobs", "fingerprints", "bound"),
    [(1, "server", 0.75), (2, "server", 0.75), (2, "dump", 0.9)],
)
def test_the_backup_deletes_each_file_once_uploaded(new_db, make_settings, s3, jobs, fingerprints, bound):
    """With fingerprints from the dump, the upload threads also gunzip and hash each file, so
    files wait longer for their turn (66 % of the dump at the peak was seen on 2 cores), and a
    table's file stays until pg_dump has finished it even while its parts go up: the bounds
    only say that files are deleted, not how soon (a busy 2-core machine once saw more than
    60 % with server-side fingerprints)."""
    settings = make_settings(new_db(sql=TABLES), jobs=jobs, fingerprints=fingerprints)
    report = run_operation("backup", OperationContext(settings))
    assert report.status == "ok", report.findings
    peak, size = report.figures["peak_disk_bytes"], report.figures["size_bytes"]
    # each file is uploaded as soon as pg_dump is done with it, and gone once uploaded.  Without the
    # deletion the work directory ends holding the whole dump, and the last sample sees it.
    assert 0 < peak < bound * size, (peak, size)
    assert "  local disk    " in render(report) and "at most (each file deleted once uploaded)" in render(
        report
    )
    restored = run_operation("restore-test", OperationContext(settings))
    assert restored.figures["integrity_pct"] == 100.0


def test_a_file_whose_upload_failed_stays_on_disk(s3, tmp_path):
    kept, sent = tmp_path / "kept.dat", tmp_path / "sent.dat"
    kept.write_bytes(b"x" * 1000)
    sent.write_bytes(b"y" * 1000)
    good = ObjectStore(s3.primary, s3.primary_region, "pgrunbook", "app")
    missing = ObjectStore("no-such-bucket-here", s3.primary_region, "pgrunbook", "app")

    uploader = Uploader(good, "b1", NullProgress(), 2, remove_uploaded=True)
    uploader.submit(sent)
    [entry] = uploader.wait()
    assert not sent.exists() and entry.size == 1000
    assert good.get_bytes(good.key("b1", "sent.dat")) == b"y" * 1000

    failing = Uploader(missing, "b1", NullProgress(), 2, remove_uploaded=True)
    failing.submit(kept)
    with pytest.raises(TransientStorageError, match="no-such-bucket-here"):
        failing.wait()
    assert kept.read_bytes() == b"x" * 1000


def test_the_restore_test_refuses_a_disk_too_small_before_downloading(new_db, make_settings, s3):
    settings = make_settings(new_db(sql=TABLES), restore_target_url=None)  # the embedded target
    backup_id = run_operation("backup", OperationContext(settings)).figures["backup_id"]
    manifest = settings.primary_store().manifest_key(backup_id)
    assert json.loads(settings.primary_store().get_bytes(manifest))["server"]["database_bytes"] > 0

    def a_petabyte_database(data):
        data["server"]["database_bytes"] = 10**15

    rewrite_manifest(settings, backup_id, a_petabyte_database)
    with pytest.raises(ConfigError) as refused:
        run_operation("restore-test", OperationContext(settings))
    message = str(refused.value)
    assert f"backup {backup_id} needs about 1100000.0 GB free" in message
    assert "the restored database, about 1000000.0 GB" in message and "\n" not in message
    assert not list(settings.work_path.glob("pgrunbook-restore-*"))  # nothing downloaded


def test_a_download_too_big_for_the_disk_is_refused_for_a_server_target_too(new_db, make_settings, s3):
    settings = make_settings(new_db(sql=TABLES))  # a configured server: only the download is local
    backup_id = run_operation("backup", OperationContext(settings)).figures["backup_id"]

    def a_huge_file(data):
        data["files"][0]["size"] = 10**15

    rewrite_manifest(settings, backup_id, a_huge_file)
    with pytest.raises(ConfigError) as refused:
        run_operation("restore-test", OperationContext(settings))
    assert "the download, 1000000.0 GB" in str(refused.value)
    assert "restored database" not in str(refused.value)
