"""pgrunbook finds pg_dump/pg_restore by itself and refuses ones too old for the server."""

from __future__ import annotations

import pytest

from pgrunbook.adapters.postgres.tools import _embedded_dirs, _probe, find_pg_dump, find_pg_restore
from pgrunbook.domain.errors import ToolVersionError
from pgrunbook.entrypoints.cli import main
from pgrunbook.operations.backup import run_backup


def bindir(major: int):
    for directory in _embedded_dirs():
        tool = _probe(directory / "pg_dump")
        if tool and tool.major == major:
            return directory
    raise AssertionError(f"no embedded PostgreSQL {major} binaries")


def test_same_major_is_preferred_and_never_older():
    assert find_pg_dump(16).major == 16
    assert find_pg_dump(18).major == 18
    assert find_pg_dump(16, minimum=17).major == 18  # the supabase profile needs --exclude-extension
    assert find_pg_restore(16, 16).major == 16
    assert find_pg_restore(18, 16).major == 18  # an archive from pg_dump 18 needs pg_restore 18


def test_explicit_bin_dir_is_the_only_candidate():
    assert find_pg_dump(16, pg_bin=str(bindir(16))).path.parent == bindir(16)
    with pytest.raises(ToolVersionError, match="pg_dump 18 or newer is needed"):
        find_pg_dump(18, pg_bin=str(bindir(16)))


def test_missing_tools_are_named(tmp_path):
    with pytest.raises(ToolVersionError, match="pg_dump not found in PGRUNBOOK_PG_BIN"):
        find_pg_dump(18, pg_bin=str(tmp_path))


def test_backup_with_a_too_old_pg_dump_is_bad_configuration(monkeypatch, new_db, make_settings, s3, capsys):
    settings = make_settings(new_db(sql="CREATE TABLE t (id int);"), pg_bin=str(bindir(16)))
    monkeypatch.setenv("PGRUNBOOK_PG_BIN", str(bindir(16)))
    with pytest.raises(ToolVersionError):
        run_backup(settings)
    for key, value in {
        "PGRUNBOOK_DATABASE_URL": settings.database_url,
        "PGRUNBOOK_BUCKET": settings.bucket,
        "PGRUNBOOK_REGION": settings.region,
    }.items():
        monkeypatch.setenv(key, value)
    assert main(["backup"]) == 2
    assert "pg_dump 18 or newer" in capsys.readouterr().err
    assert s3.keys("primary") == []
