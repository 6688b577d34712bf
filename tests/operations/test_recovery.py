"""Recovery on a realistic schema: restore (full and partial), diff, repair.

The incident: after the backup, rows are deleted, changed and inserted in several tables (a
foreign-key chain, a composite key, a table without a key, jsonb, bytea, arrays, NULLs, a
partition); diff must name exactly those, and the repair must bring the chosen tables back to
the backup's fingerprints while an unrelated later change elsewhere stays."""

from __future__ import annotations

import json

import pytest

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.catalog.backups import Catalog
from pgrunbook.domain.errors import ConfigError
from pgrunbook.entrypoints.cli import main
from pgrunbook.operations.backup import run_backup
from pgrunbook.operations.context import OperationContext, run_operation
from tests.conftest import drop_database, fingerprints_now

INCIDENT = """
-- the FK chain: album 8 with its tracks and their playlist rows, deleted
DELETE FROM playlist_track WHERE track_id IN (SELECT track_id FROM track WHERE album_id = 8);
DELETE FROM track WHERE album_id = 8;
DELETE FROM album WHERE album_id = 8;
-- changed: text, array to NULL, numeric to NULL, bytea, jsonb
UPDATE track SET name = 'renamed', tags = NULL, price = NULL WHERE track_id IN (11, 12, 13);
UPDATE album SET cover = '\\xdeadbeef', meta = '{"year": 1}' WHERE album_id = 9;
-- inserted
INSERT INTO track (track_id, album_id, name) VALUES (900001, 1, 'new one'), (900002, 1, 'new two');
-- composite key: one deleted, one changed (besides the chain)
DELETE FROM playlist_track WHERE (playlist_id, track_id) = (2, 1);
UPDATE playlist_track SET position = -1 WHERE (playlist_id, track_id) = (4, 3);
-- no key: one copy of a duplicated row deleted, two rows deleted, one row inserted
DELETE FROM play_log WHERE ctid = (SELECT ctid FROM play_log WHERE note = 'the same row twice' LIMIT 1);
DELETE FROM play_log WHERE played_at IN ('2026-01-01 00:10+00', '2026-01-01 00:11+00');
INSERT INTO play_log VALUES ('2026-02-01 00:00+00', 1, 'inserted');
-- a partition: one changed, one deleted
UPDATE events SET payload = '{"n": -1}' WHERE id = 5;
DELETE FROM events WHERE id = 6;
"""
# album 8's tracks are 7, 207, 407, ... (album_id = 1 + track_id % 200): 25 of them, all odd,
# so all in a playlist (playlist_id = 1 + track_id % 20)
CHAIN_TRACKS = [str(t) for t in range(7, 5001, 200)]
CHAIN_PLAYLIST = [[str(1 + t % 20), str(t)] for t in range(7, 5001, 200)]


@pytest.fixture
def incident(new_db, make_settings):
    """A backed-up music store, then the incident; returns (settings, backup id)."""
    source = new_db("music_store.sql")
    settings = make_settings(source)
    backup = run_backup(settings)
    assert backup.status == "ok", backup.error
    with Database.connect(source) as db:
        db.run(INCIDENT)
    return settings, backup.backup_id


def _diff(settings, **options):
    return run_operation("diff", OperationContext(settings), **options)


def _tables(report) -> dict[str, dict]:
    return {t["table"]: t for t in report.payload.to_dict()["tables"]}


def test_diff_names_exactly_what_changed(incident):
    settings, _ = incident
    report = _diff(settings)
    assert report.exit_code == 1
    tables = _tables(report)
    album = tables["public.album"]
    assert (album["deleted"], album["inserted"], album["changed"]) == (1, 0, 1)
    assert album["samples"] == {"deleted": ["8"], "inserted": [], "changed": ["9"]}
    track = tables["public.track"]
    assert (track["deleted"], track["inserted"], track["changed"]) == (25, 2, 3)
    assert track["key"] == ["track_id"]
    assert track["samples"]["deleted"] == CHAIN_TRACKS[:20]  # up to 20 sample keys, in key order
    assert track["samples"]["inserted"] == ["900001", "900002"]
    assert track["samples"]["changed"] == ["11", "12", "13"]
    assert track["backup_rows"] == 5000 and track["live_rows"] == 5000 - 25 + 2
    playlist = tables["public.playlist_track"]
    assert playlist["key"] == ["playlist_id", "track_id"]
    assert (playlist["deleted"], playlist["inserted"], playlist["changed"]) == (len(CHAIN_PLAYLIST) + 1, 0, 1)
    assert ["2", "1"] in playlist["samples"]["deleted"]
    assert playlist["samples"]["changed"] == [["4", "3"]]
    log = tables["public.play_log"]
    assert log["key"] is None
    assert (log["deleted"], log["inserted"], log["changed"]) == (3, 1, 0)
    assert any("inserted" in row for row in log["samples"]["inserted"])
    assert (tables["public.events_2025"]["deleted"], tables["public.events_2025"]["changed"]) == (1, 1)
    for unchanged in ("public.artist", "public.audit", "public.events_2026"):
        t = tables[unchanged]
        assert (t["deleted"], t["inserted"], t["changed"]) == (0, 0, 0), unchanged
    assert report.figures["tables_differing"] == 5
    assert "pgrunbook.backup_metadata" not in tables  # pgrunbook's own mirror: only when named


def test_diff_of_an_unchanged_database_exits_0(new_db, make_settings):
    source = new_db("music_store.sql")
    settings = make_settings(source)
    assert run_backup(settings).status == "ok"
    report = _diff(settings, tables="public.track,public.play_log")
    assert report.exit_code == 0
    assert set(_tables(report)) == {"public.track", "public.play_log"}


def test_repair_brings_the_chosen_tables_back_and_nothing_else(incident, tmp_path):
    settings, backup_id = incident
    live = settings.conninfo()
    with Database.connect(live) as db:  # a later, unrelated change the repair must not undo
        db.run("INSERT INTO audit (msg) SELECT 'after' FROM generate_series(1, 5)")
    chosen = "public.album,public.track,public.playlist_track,public.play_log,public.events"
    script = tmp_path / "repair.sql"
    report = _diff(
        settings,
        tables=chosen,
        repair_sql=str(script),
        include_inserted=True,
        apply_repair=True,
        yes=True,
    )
    assert report.exit_code == 0, [f.message for f in report.findings]
    text = script.read_text()
    assert f"backup: {backup_id}" in text
    assert "public.track: re-insert 25 deleted rows, put back 3 changed rows, delete 2 inserted rows" in text
    # parents before children on insert
    assert text.index('INSERT INTO "public"."album"') < text.index('INSERT INTO "public"."track"')
    assert text.index('INSERT INTO "public"."track"') < text.index('INSERT INTO "public"."playlist_track"')
    after = {t["table"]: t for t in report.payload.to_dict()["after"]}
    assert all((t["deleted"], t["inserted"], t["changed"]) == (0, 0, 0) for t in after.values()), after
    manifest = Catalog(settings.primary_store()).manifest(backup_id)
    wanted = [
        t
        for t in manifest.tables
        if t.name in ("album", "track", "playlist_track", "play_log", "events_2025")
    ]

    now = fingerprints_now(live, wanted)
    assert now == {t.qualified: (t.rows, t.fingerprint) for t in wanted}
    with Database.connect(live) as db:
        assert db.scalar("SELECT count(*) FROM audit WHERE msg = 'after'") == 5


def test_repair_without_include_inserted_keeps_new_rows(incident):
    settings, _ = incident
    report = _diff(settings, tables="public.track,public.album", apply_repair=True, yes=True)
    assert report.exit_code == 0
    after = {t["table"]: t for t in report.payload.to_dict()["after"]}
    assert (after["public.track"]["deleted"], after["public.track"]["changed"]) == (0, 0)
    assert after["public.track"]["inserted"] == 2
    with Database.connect(settings.conninfo()) as db:
        assert db.scalar("SELECT count(*) FROM track WHERE track_id > 900000") == 2
        assert db.scalar("SELECT cover FROM album WHERE album_id = 9") != b"\xde\xad\xbe\xef"


def test_a_row_changed_again_after_the_diff_rolls_the_repair_back(incident, tmp_path):
    """The repair touches only rows still as the diff saw them; otherwise nothing at all."""
    settings, _ = incident
    live = settings.conninfo()
    script = tmp_path / "repair.sql"
    report = _diff(settings, tables="public.track", repair_sql=str(script))
    assert report.exit_code == 1
    with Database.connect(live) as db:
        db.run("UPDATE track SET name = 'changed again' WHERE track_id = 12")
        statements = script.read_text()
        with pytest.raises(Exception, match="still as the diff saw them"):
            db.run(statements)
        db.run("ROLLBACK")
        assert db.scalar("SELECT count(*) FROM track WHERE album_id = 8") == 0  # nothing re-inserted


def test_diff_json_and_exit_codes_from_the_cli(incident, capsys):
    settings, backup_id = incident
    args = [
        "diff",
        "--database-url",
        settings.database_url,
        "--bucket",
        settings.bucket,
        "--region",
        settings.region,
    ]
    args += ["--work-dir", settings.work_dir, "--restore-target-url", settings.restore_target_url]
    assert main([*args, "--tables", "public.album", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["tables"] == [
        {
            "table": "public.album",
            "backup_rows": 200,
            "live_rows": 199,
            "deleted": 1,
            "inserted": 0,
            "changed": 1,
            "key": ["album_id"],
            "samples": {"deleted": ["8"], "inserted": [], "changed": ["9"]},
            "queries": out["tables"][0]["queries"],
        }
    ]
    assert main([*args, "--tables", "nope"]) == 2
    assert "not schema.table" in capsys.readouterr().err
    assert main([*args, "--tables", "public.nope"]) == 2
    assert "not in the backup" in capsys.readouterr().err
    assert main([*args, "--backup-id", backup_id, "--at", "2026-01-01T00:00:00Z"]) == 2
    assert main([*args, "--apply"]) == 2  # not at a terminal, no --yes
    assert "--yes" in capsys.readouterr().err


def test_full_restore_into_a_new_database_on_a_second_server(incident, pg18_target):
    settings, backup_id = incident
    url = pg18_target.conninfo.with_dbname("recovered_music").libpq_uri()
    try:
        report = run_operation("restore", OperationContext(settings), target_url=url, backup_id=backup_id)
        assert report.exit_code == 0, [f.message for f in report.findings]
        assert report.figures["integrity_pct"] == 100.0
        manifest = Catalog(settings.primary_store()).manifest(backup_id)
        assert report.figures["tables"] == len(manifest.tables)
        assert report.detail["resolved_notice"]["subject"].startswith(
            "RESOLVED - Database Recovery Completed"
        )
        assert "Data Loss: everything written after" in report.detail["resolved_notice"]["message"]
        with Database.connect(pg18_target.conninfo.with_dbname("recovered_music")) as db:
            assert db.scalar("SELECT count(*) FROM track WHERE album_id = 8") == 25  # as before the incident
            assert (
                db.scalar("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'track'")
                == "music_owner"
            )
            assert db.scalar("SELECT has_table_privilege('music_reader', 'album', 'SELECT')")
            assert not db.scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'music_owner'")
            assert db.scalar("SELECT last_value FROM album_album_id_seq") == 200
        # the same database again: it has tables now, so it is refused and left as it is
        with pytest.raises(ConfigError, match="already has"):
            run_operation("restore", OperationContext(settings), target_url=url, backup_id=backup_id)
        with Database.connect(pg18_target.conninfo.with_dbname("recovered_music")) as db:
            assert db.scalar("SELECT count(*) FROM track") == 5000
    finally:
        drop_database(pg18_target, "recovered_music")


def test_restore_refuses_a_non_empty_target_from_the_cli(incident, capsys):
    settings, _ = incident
    args = ["restore", "--database-url", settings.database_url, "--bucket", settings.bucket]
    args += ["--region", settings.region, "--work-dir", settings.work_dir]
    assert main([*args, "--target-url", settings.database_url]) == 2  # the live database itself
    assert "already has" in capsys.readouterr().err
    assert main([*args]) == 2
    assert "--target-url" in capsys.readouterr().err


def test_partial_restore_skips_and_lists_foreign_keys_that_point_outside(incident, pg18_target):
    settings, _ = incident
    url = pg18_target.conninfo.with_dbname("only_tracks").libpq_uri()
    try:
        report = run_operation(
            "restore", OperationContext(settings), target_url=url, tables="public.track,public.playlist_track"
        )
        assert report.exit_code == 0, [f.message for f in report.findings]
        assert report.figures["tables"] == 2
        notes = [f.message for f in report.findings if f.severity == "info"]
        assert any("track_album_id_fkey" in n and "public.album" in n for n in notes), notes
        with Database.connect(pg18_target.conninfo.with_dbname("only_tracks")) as db:
            tables = {
                r[0]
                for r in db.run(
                    "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
                )
            }
            assert tables == {"track", "playlist_track"}
            # the FK inside the set is kept, the index comes with its table
            assert (
                db.scalar("SELECT count(*) FROM pg_constraint WHERE conname = 'playlist_track_track_id_fkey'")
                == 1
            )
            assert db.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'track_album'") == 1
    finally:
        drop_database(pg18_target, "only_tracks")


def test_into_schema_leaves_the_originals_untouched(incident):
    settings, _ = incident
    live = settings.conninfo()
    with Database.connect(live) as db:
        before = db.scalar("SELECT count(*) FROM track")
    report = run_operation(
        "restore", OperationContext(settings), into_schema="recovered", tables="public.track,public.events"
    )
    assert report.exit_code == 0, [f.message for f in report.findings]
    with Database.connect(live) as db:
        assert db.scalar("SELECT count(*) FROM track") == before  # the incident's state, untouched
        assert db.scalar("SELECT count(*) FROM recovered.track") == 5000
        assert db.scalar("SELECT count(*) FROM recovered.track WHERE album_id = 8") == 25
        assert db.scalar("SELECT count(*) FROM recovered.events") == 2000  # partitions came along
    landed = {t.table for t in report.payload.tables}
    assert landed == {"recovered.track", "recovered.events_2025", "recovered.events_2026"}
    with pytest.raises(ConfigError, match="already exists"):
        run_operation("restore", OperationContext(settings), into_schema="recovered", tables="public.track")


def test_apply_shows_the_plan_and_needs_the_database_name(incident):
    settings, _ = incident
    asked: list[tuple[str, list[str]]] = []

    def decline(database: str, plan: list[str]) -> bool:
        asked.append((database, plan))
        return False

    report = _diff(settings, tables="public.album", apply_repair=True, confirm=decline)
    assert report.exit_code == 1
    [(database, plan)] = asked
    assert database == settings.conninfo().dbname
    assert "public.album: re-insert 1 deleted rows, put back 1 changed rows, delete 0 inserted rows" in plan
    assert any("not applied" in f.message for f in report.findings)
    with Database.connect(settings.conninfo()) as db:
        assert db.scalar("SELECT count(*) FROM album WHERE album_id = 8") == 0  # nothing changed


def test_a_target_that_cannot_host_the_backup_is_refused_and_left_alone(new_db, make_settings, pg18_target):
    from tests.conftest import rewrite_manifest

    settings = make_settings(new_db(sql="CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);"))
    backup_id = run_backup(settings).backup_id
    rewrite_manifest(
        settings,
        backup_id,
        lambda data: data["needs"]["extensions"].append(
            {"name": "postgis", "version": "3.4.2", "schema": "public"}
        ),
    )
    url = pg18_target.conninfo.with_dbname("never_made").libpq_uri()
    with pytest.raises(ConfigError, match=r"cannot host backup .*extension postgis"):
        run_operation("restore", OperationContext(settings), target_url=url)
    with Database.connect(pg18_target.conninfo) as db:
        assert not db.scalar("SELECT 1 FROM pg_database WHERE datname = 'never_made'")


ROLES = """
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'legacy_owner') THEN CREATE ROLE legacy_owner NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'legacy_reader') THEN CREATE ROLE legacy_reader NOLOGIN; END IF;
END $$;
CREATE SCHEMA sales AUTHORIZATION legacy_owner;
CREATE TABLE sales.orders (id int PRIMARY KEY, total numeric);
ALTER TABLE sales.orders OWNER TO legacy_owner;
GRANT SELECT ON sales.orders TO legacy_reader;
GRANT USAGE ON SCHEMA sales TO legacy_reader;
INSERT INTO sales.orders SELECT g, g FROM generate_series(1, 100) g;
"""


def test_role_map_gives_a_roles_objects_and_grants_to_a_target_role(new_db, make_settings, pg18_target):
    settings = make_settings(new_db(sql=ROLES))
    backup_id = run_backup(settings).backup_id
    with Database.connect(pg18_target.conninfo) as admin:
        admin.run("DROP ROLE IF EXISTS app_v2; CREATE ROLE app_v2 NOLOGIN")
        for role in ("legacy_owner", "legacy_reader"):
            assert not admin.scalar(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'")
    url = pg18_target.conninfo.with_dbname("mapped").libpq_uri()
    try:
        report = run_operation(
            "restore",
            OperationContext(settings),
            target_url=url,
            backup_id=backup_id,
            role_map="legacy_reader=app_v2",
        )
        assert report.exit_code == 0, [f.message for f in report.findings]
        with Database.connect(pg18_target.conninfo.with_dbname("mapped")) as db:
            assert db.scalar("SELECT has_table_privilege('app_v2', 'sales.orders', 'SELECT')")
            assert db.scalar("SELECT has_schema_privilege('app_v2', 'sales', 'USAGE')")
            assert not db.scalar("SELECT 1 FROM pg_roles WHERE rolname = 'legacy_reader'")  # mapped: not left
            owner = db.scalar(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'sales.orders'::regclass"
            )
            assert owner == "legacy_owner"  # unmapped: recreated NOLOGIN, owner kept
            assert not db.scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'legacy_owner'")
        with pytest.raises(ConfigError, match="roles the target does not have: nobody_here"):
            run_operation(
                "restore",
                OperationContext(settings),
                target_url=pg18_target.conninfo.with_dbname("mapped2").libpq_uri(),
                role_map="legacy_reader=nobody_here",
            )
    finally:
        drop_database(pg18_target, "mapped")
        with Database.connect(pg18_target.conninfo) as admin:
            admin.run("DROP ROLE IF EXISTS legacy_owner")
            admin.run("DROP ROLE IF EXISTS app_v2")


def test_at_restores_the_newest_backup_at_or_before_the_time(new_db, make_settings, pg18_target):
    from datetime import timedelta

    source = new_db(sql="CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);")
    settings = make_settings(source)
    first = run_backup(settings)
    with Database.connect(source) as db:
        db.run("INSERT INTO t VALUES (2)")
    second = run_backup(settings)
    catalog = Catalog(settings.primary_store())
    between = catalog.manifest(first.backup_id).snapshot_time + timedelta(microseconds=1)
    assert between < catalog.manifest(second.backup_id).snapshot_time
    url = pg18_target.conninfo.with_dbname("as_of").libpq_uri()
    try:
        report = run_operation("restore", OperationContext(settings), target_url=url, at=between.isoformat())
        assert report.figures["backup_id"] == first.backup_id
        with Database.connect(pg18_target.conninfo.with_dbname("as_of")) as db:
            assert db.scalar("SELECT count(*) FROM t") == 1
        with pytest.raises(ConfigError, match="at or before"):
            run_operation("restore", OperationContext(settings), target_url=url, at="2001-01-01T00:00:00Z")
    finally:
        drop_database(pg18_target, "as_of")


def test_diff_and_repair_of_a_postgresql_16_database_against_a_copy_on_18(new_db, make_settings, pg16):
    """The copy is restored on the PostgreSQL 18 target; row hashes agree across versions."""
    source = new_db("music_store.sql", server=pg16)
    settings = make_settings(source)
    assert run_backup(settings).status == "ok"
    with Database.connect(source) as db:
        db.run(INCIDENT)
    report = _diff(settings, tables="public.album,public.track,public.play_log", apply_repair=True, yes=True)
    assert report.exit_code == 0, [f.message for f in report.findings]
    found = _tables(report)
    assert (found["public.track"]["deleted"], found["public.track"]["changed"]) == (25, 3)
    again = _diff(settings, tables="public.album,public.track,public.play_log")
    left = _tables(again)
    assert left["public.track"]["inserted"] == 2  # kept: no --include-inserted
    assert all(t["deleted"] == 0 and t["changed"] == 0 for t in left.values()), left


def test_a_dropped_table_is_named_with_the_way_back(incident):
    settings, _ = incident
    with Database.connect(settings.conninfo()) as db:
        db.run("DROP TABLE play_log")
    report = _diff(settings, tables="public.play_log,public.audit")
    assert report.exit_code == 1
    [finding] = [f for f in report.findings if f.details.get("table") == "public.play_log"]
    assert "does not exist in the live database" in finding.message
    assert "pgrunbook restore --into-schema NAME --tables public.play_log" in finding.message
    assert finding.details["backup_rows"] == 3002
