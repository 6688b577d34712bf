"""A backup restores to the same schema and the same data, on PostgreSQL 16 and 18."""

from __future__ import annotations

import pytest

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.catalog.backups import Catalog
from pgrunbook.operations.backup import run_backup
from pgrunbook.operations.restorer import run_restore_test
from tests.conftest import drop_database, schema_dump, scratch_databases


@pytest.mark.parametrize("version", [16, 18])
def test_kitchen_sink_round_trip(version, request, new_db, make_settings):
    server = request.getfixturevalue(f"pg{version}")
    source = new_db("kitchen_sink.sql", server=server)
    settings = make_settings(source, restore_target_url=server.conninfo.libpq_uri())

    backup = run_backup(settings)
    assert backup.status == "ok", backup.error
    manifest = Catalog(settings.primary_store()).manifest(backup.backup_id)
    tables = {t.qualified: t for t in manifest.tables}
    # partitioned table counted once, through its leaves; the parent has no entry of its own
    assert "public.events" not in tables
    assert tables["public.events_2025"].rows + tables["public.events_2026"].rows == 5000
    assert tables["public.duplicates"].rows == 3
    assert tables['Odd Schema.Weird "Name"'].rows == 3
    assert manifest.server["version_num"] // 10000 == version
    assert int(manifest.tools["pg_dump"].split(".")[0]) == version
    assert "kitchen_reader" in {r.name for r in manifest.roles}

    report = run_restore_test(settings, backup_id=backup.backup_id, keep=True)
    try:
        assert report.status == "ok", (report.error, report.restore_errors)
        assert report.integrity_pct == 100.0
        assert report.tables_matching == report.tables_total == len(manifest.tables)
        assert all(t.rows_match and t.fingerprint_match for t in report.tables)
        restored = server.conninfo.with_dbname(report.scratch_database)
        assert schema_dump(restored, version) == schema_dump(source, version)
        with Database.connect(source) as a, Database.connect(restored) as b:
            for query in (
                "SELECT last_value FROM invoice_seq",
                "SELECT sum(events) FROM event_months",
                "SELECT count(*) FROM happy_things",
            ):
                assert a.scalar(query) == b.scalar(query), query
    finally:
        drop_database(server, report.scratch_database)


def test_restore_test_drops_its_scratch_database(new_db, make_settings, pg18):
    source = new_db(sql="CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);")
    settings = make_settings(source)
    before = scratch_databases(pg18)
    assert run_backup(settings).status == "ok"
    report = run_restore_test(settings)
    assert report.status == "ok"
    assert report.integrity_pct == 100.0
    assert scratch_databases(pg18) == before


def test_restore_into_a_server_without_the_roles(new_db, make_settings, pg18_target):
    """Roles the dump references are created on the target, and removed again after."""
    source = new_db(
        sql="""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'only_on_source') THEN
                CREATE ROLE only_on_source NOLOGIN;
            END IF;
        END $$;
        CREATE TABLE owned (id int PRIMARY KEY, v text);
        ALTER TABLE owned OWNER TO only_on_source;
        INSERT INTO owned SELECT g, 'v' || g FROM generate_series(1, 100) g;
        ALTER TABLE owned ENABLE ROW LEVEL SECURITY;
        CREATE POLICY mine ON owned TO only_on_source USING (true);
        """
    )
    settings = make_settings(source, restore_target_url=pg18_target.conninfo.libpq_uri())
    assert run_backup(settings).status == "ok"
    report = run_restore_test(settings)
    assert report.status == "ok", report.restore_errors
    assert report.integrity_pct == 100.0
    with Database.connect(pg18_target.conninfo) as admin:
        assert admin.scalar("SELECT count(*) FROM pg_roles WHERE rolname = 'only_on_source'") == 0
