"""The supabase profile keeps the application and leaves out what the platform manages."""

from __future__ import annotations

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.catalog.backups import Catalog
from pgrunbook.operations.backup import run_backup
from pgrunbook.operations.restorer import run_restore_test
from tests.conftest import drop_database


def test_supabase_profile_round_trip(new_db, make_settings, pg18_target):
    source = new_db("supabase_like.sql")
    settings = make_settings(source, profile="supabase", restore_target_url=pg18_target.conninfo.libpq_uri())

    backup = run_backup(settings)
    assert backup.status == "ok", backup.error
    manifest = Catalog(settings.primary_store()).manifest(backup.backup_id)

    tables = {t.qualified for t in manifest.tables}
    assert {"public.profiles", "public.notes"} <= tables
    assert not {
        t for t in tables if t.split(".")[0] in ("auth", "storage", "supabase_migrations", "extensions")
    }
    roles = {r.name for r in manifest.roles}
    assert {"anon", "authenticated", "service_role"} <= roles
    assert "supabase_auth_admin" not in roles  # owns only the excluded auth schema
    prereq = manifest.prerequisites
    assert {f"{f['schema']}.{f['name']}" for f in prereq.functions} == {"auth.uid"}
    assert set(prereq.schemas) == {"auth", "extensions"}
    assert prereq.extensions == [{"name": "vector", "schema": "extensions"}]
    assert [(fk["table"], fk["references"]) for fk in prereq.external_foreign_keys] == [
        ("profiles", "auth.users")
    ]
    assert manifest.options["profile"] == "supabase"
    # what the restore needs, checked by the pre-flight: the extension the profile's schemas
    # hold, and the languages of the functions it recreates (auth.uid() is SQL)
    needs = manifest.needs
    assert [(e.name, e.schema) for e in needs.extensions] == [("vector", "extensions")]
    assert "sql" in needs.languages

    report = run_restore_test(settings, backup_id=backup.backup_id, keep=True)
    try:
        assert report.status == "ok", (report.error, report.restore_errors)
        assert report.integrity_pct == 100.0
        assert any("profiles_id_fkey" in s and "auth.users" in s for s in report.skipped)
        restored = pg18_target.conninfo.with_dbname(report.scratch_database)
        with Database.connect(restored) as db:
            assert db.scalar("SELECT to_regclass('auth.users')") is None
            assert db.scalar("SELECT to_regnamespace('storage')") is None
            assert db.scalar("SELECT count(*) FROM pg_policies WHERE tablename = 'notes'") == 2
            # RLS works in the restored copy exactly as in the project: a user sees their notes.
            user = db.scalar("SELECT md5('user7')::uuid")
            db.run("BEGIN")
            db.run("SET LOCAL ROLE authenticated")
            db.run(f"SET LOCAL request.jwt.claim.sub TO '{user}'")
            visible = db.run("SELECT DISTINCT owner FROM public.notes")
            count = db.scalar("SELECT count(*) FROM public.notes")
            db.run("ROLLBACK")
            assert [r[0] for r in visible] == [user]
            assert count == 20
    finally:
        drop_database(pg18_target, report.scratch_database)
        with Database.connect(pg18_target.conninfo) as admin:
            for role in report.roles_created:
                admin.run(f'DROP ROLE IF EXISTS "{role}"')
    # --keep keeps the roles it created with the database, and says which.
    assert {"anon", "authenticated", "service_role"} <= set(report.roles_created)


def test_default_profile_keeps_every_schema(new_db, make_settings):
    source = new_db("supabase_like.sql")
    settings = make_settings(source)
    backup = run_backup(settings)
    assert backup.status == "ok", backup.error
    manifest = Catalog(settings.primary_store()).manifest(backup.backup_id)
    assert {"auth.users", "storage.buckets", "public.notes"} <= {t.qualified for t in manifest.tables}
    assert manifest.prerequisites.is_empty()
