"""The migration engine and `pgrunbook migrate` against the embedded PostgreSQL."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.domain.errors import ConfigError
from pgrunbook.entrypoints.cli import main
from pgrunbook.workflows.migrate.engine import Migrator

ADD_VIN = """-- migrate:up
CREATE TABLE vehicles (id int PRIMARY KEY, make text);
INSERT INTO vehicles VALUES (1, 'ford'), (2, 'fiat');
ALTER TABLE vehicles ADD COLUMN vin text;
-- migrate:down
DROP TABLE vehicles;
-- migrate:verify
SELECT id FROM vehicles WHERE make IS NULL;
"""
INDEX = """-- migrate:up transaction:false
CREATE INDEX CONCURRENTLY vehicles_make_idx ON vehicles (make);
-- migrate:down transaction:false
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "migrations"
    d.mkdir()
    write(d, "20250907090000_vehicles.sql", ADD_VIN)
    return d


def engine(info, folder: Path, **kw) -> Migrator:
    return Migrator(info, folder, applied_by="pytest", **kw)


def tables(info) -> list[str]:
    with Database.connect(info) as db:
        return [
            r[0] for r in db.run("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        ]


def test_apply_records_and_rollback_removes(new_db, folder):
    info = new_db()
    m = engine(info, folder)
    assert [f.version for f in m.status().pending] == ["20250907090000"]
    result = m.apply()
    assert result.ok and result.done == ["20250907090000"]
    [applied] = m.status().applied
    assert (applied.name, applied.applied_by) == ("vehicles", "pytest")
    assert applied.sha256 == m.status().files[0].sha256
    assert tables(info) == ["vehicles"]
    assert m.apply().steps == []  # nothing pending

    back = m.rollback()
    assert back.ok and tables(info) == [] and m.status().applied == []


def test_concurrent_index_runs_outside_a_transaction(new_db, folder):
    info = new_db()
    write(
        folder,
        "20250907090100_vehicles_make_index.sql",
        INDEX.replace(
            "-- migrate:down transaction:false\n",
            "-- migrate:down\nDROP INDEX CONCURRENTLY vehicles_make_idx;\n",
        ),
    )
    # lint refuses the same statement in a transactional file, with its line
    bad = write(
        folder,
        "20250907090200_bad.sql",
        "-- migrate:up\nSELECT 1;\nCREATE INDEX CONCURRENTLY x ON vehicles (vin);\n-- migrate:down\nDROP INDEX x;\n",
    )
    with pytest.raises(
        ConfigError, match=r"20250907090200_bad.sql:3: error: CREATE INDEX CONCURRENTLY cannot run inside"
    ):
        engine(info, folder).apply()
    assert tables(info) == []  # nothing ran
    bad.unlink()
    assert engine(info, folder).apply().ok
    with Database.connect(info) as db:
        assert db.run("SELECT indisvalid FROM pg_index WHERE indexrelid = 'vehicles_make_idx'::regclass") == [
            [True]
        ]
    assert engine(info, folder).rollback(steps=2).ok
    assert tables(info) == []


def test_failure_stops_and_leaves_that_migration_unapplied(new_db, folder):
    info = new_db()
    write(
        folder,
        "20250907090100_add_year.sql",
        "-- migrate:up\nALTER TABLE vehicles ADD year int;\n-- migrate:down\nALTER TABLE vehicles DROP year;\n",
    )
    write(
        folder,
        "20250907090200_broken.sql",
        "-- migrate:up\nALTER TABLE vehicles ADD color text;\nUPDATE vehicles SET nope = 1 WHERE id = 1;\n-- migrate:down\nSELECT 1;\n",
    )
    write(
        folder,
        "20250907090300_later.sql",
        "-- migrate:up\nALTER TABLE vehicles ADD seats int;\n-- migrate:down\nALTER TABLE vehicles DROP seats;\n",
    )
    result = engine(info, folder).apply()
    assert [(s.version, s.status) for s in result.steps] == [
        ("20250907090000", "ok"), ("20250907090100", "ok"), ("20250907090200", "failed"),
    ]  # fmt: skip
    assert (
        "20250907090200_broken.sql:3: up failed" in result.steps[-1].error
        and "nope" in result.steps[-1].error
    )
    status = engine(info, folder).status()
    assert [a.version for a in status.applied] == ["20250907090000", "20250907090100"]
    with Database.connect(info) as db:  # the failed one's first statement was rolled back
        columns = [
            r[0]
            for r in db.run(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'vehicles'::regclass AND attnum > 0"
            )
        ]
    assert "color" not in columns and "year" in columns and "seats" not in columns


def test_failed_verify_rolls_the_migration_back(new_db, folder):
    info = new_db()
    write(
        folder,
        "20250907090100_null_make.sql",
        "-- migrate:up\nINSERT INTO vehicles VALUES (3, NULL);\n-- migrate:down\nDELETE FROM vehicles WHERE id = 3;\n-- migrate:verify\nSELECT id FROM vehicles WHERE make IS NULL;\n",
    )
    result = engine(info, folder).apply()
    assert (
        result.steps[-1].status == "failed"
        and "verify failed: 1 violating rows ((3,))" in result.steps[-1].error
    )
    with Database.connect(info) as db:
        assert db.run("SELECT count(*) FROM vehicles") == [[2]]


def test_changed_missing_and_out_of_order_files_stop_everything(new_db, folder):
    info = new_db()
    assert engine(info, folder).apply().ok
    path = folder / "20250907090000_vehicles.sql"
    path.write_text(ADD_VIN + "-- edited\n")
    status = engine(info, folder).status()
    assert "changed after it was applied" in status.problems[0]
    with pytest.raises(ConfigError, match="changed after it was applied"):
        engine(info, folder).apply()
    path.write_text(ADD_VIN)

    write(folder, "20250101000000_older.sql", "-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 1;\n")
    with pytest.raises(ConfigError, match="out of order"):
        engine(info, folder).apply()
    (folder / "20250101000000_older.sql").unlink()

    path.unlink()
    assert "was applied but its file is missing" in engine(info, folder).status().problems[0]


def test_destructive_migrations_need_to_be_allowed(new_db, folder):
    info = new_db()
    write(
        folder,
        "20250907090100_drop_vin.sql",
        "-- migrate:up\nALTER TABLE vehicles DROP COLUMN vin;\n-- migrate:down\nALTER TABLE vehicles ADD COLUMN vin text;\n",
    )
    with pytest.raises(ConfigError, match="destructive: DROP COLUMN"):
        engine(info, folder).apply()
    assert tables(info) == []
    assert engine(info, folder).apply(allow_destructive=True).ok


def test_lock_timeout_fails_fast_instead_of_queueing(new_db, folder):
    info = new_db()
    assert engine(info, folder).apply().ok
    write(
        folder,
        "20250907090100_add_year.sql",
        "-- migrate:up\nALTER TABLE vehicles ADD year int;\n-- migrate:down\nALTER TABLE vehicles DROP year;\n",
    )
    holder = Database.connect(info)
    holder.run("BEGIN")
    holder.run("LOCK TABLE vehicles IN ACCESS SHARE MODE")
    try:
        result = engine(info, folder, lock_timeout="200ms").apply()
    finally:
        holder.run("ROLLBACK")
        holder.close()
    assert result.steps[0].status == "failed" and "lock timeout" in result.steps[0].error
    assert result.steps[0].duration_ms < 5000


def test_runs_do_not_interleave(new_db, folder):
    info = new_db()
    write(
        folder,
        "20250907090100_slow.sql",
        "-- migrate:up\nSELECT pg_sleep(0.5);\n-- migrate:down\nSELECT 1;\n",
    )
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(engine(info, folder).apply())) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r.steps) for r in results) == [0, 2] and all(r.ok for r in results)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_contract(new_db, folder, capsys):
    info = new_db()
    base = ["--database-url", info.libpq_uri(), "--migrations-dir", str(folder)]
    code, out, _ = cli(capsys, "migrate", "lint", "--migrations-dir", str(folder))
    assert code == 0 and "1 files, 0 findings" in out
    code, out, _ = cli(capsys, "migrate", "plan", *base)
    assert code == 0 and "pending   20250907090000_vehicles" in out
    code, out, _ = cli(capsys, "migrate", "apply", *base, "--json")
    assert code == 0 and json.loads(out)["payload"]["steps"][0]["status"] == "ok"
    code, out, _ = cli(capsys, "migrate", "status", *base)
    assert code == 0 and "applied   20250907090000_vehicles" in out
    code, out, err = cli(capsys, "migrate", "rollback", *base, "--steps", "0")
    assert code == 2 and "--steps must be at least 1" in err
    code, out, err = cli(capsys, "migrate", "apply", *base, "--to", "tomorrow")
    assert code == 2 and "is not a migration version" in err
    code, out, err = cli(capsys, "migrate", "apply", *base, "--lock-timeout", "5 seconds; DROP TABLE x")
    assert code == 2 and "lock_timeout" in err
    write(folder, "20250907090100_broken.sql", "-- migrate:up\nSELEC 1;\n-- migrate:down\nSELECT 1;\n")
    code, out, err = cli(capsys, "migrate", "apply", *base)
    assert code == 1 and "FAILED" in out and "20250907090100_broken.sql:2" in out
    code, out, _ = cli(capsys, "migrate", "rollback", *base)
    assert code == 0 and "ok      20250907090000_vehicles" in out
    code, out, err = cli(
        capsys,
        "migrate",
        "status",
        "--database-url",
        info.libpq_uri(),
        "--migrations-dir",
        str(folder / "nope"),
    )
    assert code == 2 and "no migrations folder" in err
