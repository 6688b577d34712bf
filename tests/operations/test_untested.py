"""A backup the restore target cannot host is untested, not failed (issue 13).

The pre-flight compares what the backup needs (its manifest's ``needs``) with what the target
offers, before anything is downloaded or restored.  Here the target lacks what the manifest
asks for because the manifest asks for more than any server has (a newer extension version, an
extension nobody has): the target is real, the comparison is real, and so is everything the
on-call engineer gets (exit status, notice, metric, status line).
"""

from __future__ import annotations

import json

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.catalog.backups import Catalog
from pgrunbook.entrypoints.cli.render import render
from pgrunbook.operations.context import OperationContext, run_operation
from pgrunbook.operations.status import build_status
from tests.lambda_env import Inbox

SQL = """
CREATE EXTENSION vector;
CREATE TABLE items (id int PRIMARY KEY, embedding vector(3));
INSERT INTO items SELECT g, ARRAY[g, g * 2, g * 3]::vector FROM generate_series(1, 500) g;
"""


def scratch_databases(server) -> list[str]:
    with Database.connect(server.conninfo) as db:
        return [
            r[0] for r in db.run("SELECT datname FROM pg_database WHERE datname LIKE 'pgrunbook_restore_%'")
        ]


def rewrite_manifest(settings, backup_id: str, change) -> None:
    store = settings.primary_store()
    key = store.manifest_key(backup_id)
    data = json.loads(store.get_bytes(key))
    change(data)
    store.put_bytes(key, json.dumps(data).encode())


def test_the_manifest_records_what_a_restore_needs(new_db, make_settings, s3):
    settings = make_settings(new_db(sql=SQL))
    backup = run_operation("backup", OperationContext(settings))
    needs = Catalog(settings.primary_store()).manifest(backup.figures["backup_id"]).needs
    assert needs.recorded
    [vector] = needs.extensions
    assert (vector.name, vector.schema) == ("vector", "public") and vector.version.startswith("0.")
    assert needs.encoding == "UTF8" and needs.locale


def test_a_target_without_what_the_backup_needs_gives_untested(new_db, make_settings, s3, pg18_target):
    inbox = Inbox(s3.primary_region)
    settings = make_settings(
        new_db(sql=SQL), restore_target_url=pg18_target.conninfo.libpq_uri(), sns_topic_arn=inbox.topic_arn
    )
    backup_id = run_operation("backup", OperationContext(settings)).figures["backup_id"]
    inbox.messages()

    def newer_than_any(data):  # a vector newer than the target's, and PostGIS
        data["needs"]["extensions"] = [
            {"name": "vector", "version": "99.0", "schema": "public"},
            {"name": "postgis", "version": "3.4.2", "schema": "public"},
        ]

    rewrite_manifest(settings, backup_id, newer_than_any)
    before = scratch_databases(pg18_target)
    report = run_operation("restore-test", OperationContext(settings))

    assert (report.status, report.exit_code) == ("untested", 1)
    result = report.payload
    assert [u.need for u in result.unmet] == ["extension vector", "extension postgis"]
    assert (
        "vector 99.0" in result.unmet[0].detail and "install vector 99.0 or newer" in result.unmet[0].remedy
    )
    assert result.integrity_pct is None and "integrity_pct" not in dict(report.metrics)
    assert "RestoreIntegrityPct" not in report.metrics
    assert report.metrics["RestoreTested"] == ("Count", 0.0)
    assert "download_s" not in result.durations  # nothing downloaded, nothing restored
    assert result.scratch_database is None and scratch_databases(pg18_target) == before
    # one finding per missing need, with its remedy; no verdict on the backup
    preflight = [f for f in report.findings if f.check == "preflight"]
    assert [f.details["need"] for f in preflight] == ["extension vector", "extension postgis"]
    assert not [f for f in report.findings if f.severity == "critical"]
    text = render(report)
    assert text.startswith("BACKUP NOT TESTED - ")
    assert "NEEDS         extension postgis" in text and "remedy        install postgis" in text
    assert "the backup is untested, not failed" in text and "FAILED" not in text
    [notice] = inbox.messages()
    assert notice["Subject"].startswith("UNTESTED - Backup Not Tested - ")
    assert "extension postgis" in notice["Message"]
    # the morning check: the run and the backup are untested
    status = build_status(settings)
    assert status.last_runs["restore-test"]["status"] == "untested"
    assert {b.backup_id: b.tested for b in status.backups}[backup_id] == "untested"
    # the stored report reads back untested
    assert report.location is not None


def test_an_old_manifest_is_checked_against_the_dump_itself(new_db, make_settings, s3, pg18_target):
    """A manifest written before needs were recorded: the dump's table of contents says which
    extensions it creates (after the download, before any restore)."""
    settings = make_settings(new_db(sql=SQL), restore_target_url=pg18_target.conninfo.libpq_uri())
    backup_id = run_operation("backup", OperationContext(settings)).figures["backup_id"]
    rewrite_manifest(settings, backup_id, lambda data: data.pop("needs"))
    report = run_operation("restore-test", OperationContext(settings))
    assert report.status == "ok", report.findings  # the target has vector: tested, 100 %
    assert report.figures["integrity_pct"] == 100.0
    assert report.metrics["RestoreTested"] == ("Count", 1.0)
