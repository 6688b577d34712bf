"""The scheduled jobs from the command line: verify, dr-drill, retention, health, status."""

from __future__ import annotations

import json

import pytest

from pgrunbook.entrypoints.cli import main

APP = """
CREATE TABLE projects (id int PRIMARY KEY, user_id int NOT NULL);
CREATE TABLE tasks (id int PRIMARY KEY, project_id int NOT NULL, user_id int NOT NULL);
INSERT INTO projects SELECT g, g FROM generate_series(1, 20) g;
INSERT INTO tasks SELECT g, 1 + g % 20, 1 + g % 20 FROM generate_series(1, 200) g;
ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
ANALYZE;
"""


@pytest.fixture
def cli(monkeypatch, s3, new_db, pg18, tmp_path, capsys):
    source = new_db(sql=APP)
    for key, value in {
        "PGRUNBOOK_DATABASE_URL": source.libpq_uri(),
        **s3.variables(),
        "PGRUNBOOK_RESTORE_TARGET_URL": pg18.conninfo.libpq_uri(),
        "PGRUNBOOK_DR_RESTORE_TARGET_URL": pg18.conninfo.libpq_uri(),
        "PGRUNBOOK_WORK_DIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(key, value)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run, source


def test_the_morning_check_from_the_command_line(cli):
    run, _ = cli
    assert run("backup")[0] == 0
    code, out, _ = run("verify")
    assert code == 0, out
    assert out.startswith("DATABASE BACKUP VERIFICATION OK") and "backup_age" in out
    code, out, _ = run("restore-test", "--prefer-tier", "weekly")
    assert code == 0 and "RESTORE TEST PASSED" in out
    code, out, _ = run("dr-drill")
    assert code in (0, 1)  # RPO is measured against real time here
    assert "RESOLVED - Database Recovery Completed" in out and "RTO" in out
    code, out, _ = run("health", "--json")
    health = json.loads(out)
    assert code == 0 and health["operation"] == "health" and "database_size_bytes" in health["figures"]
    code, out, _ = run("status")
    assert code == 0
    for line in ("last verification", "last restore test", "last DR drill", "drill trend", "tiers"):
        assert line in out, line
    code, out, _ = run("status", "--json")
    status = json.loads(out)["payload"]
    assert status["last_runs"]["verify"]["status"] == "ok"
    assert status["last_runs"]["restore-test"]["figures"]["integrity_pct"] == 100.0
    assert len(status["drill_trend"]) == 1


def test_verify_exits_1_on_a_critical_finding_and_0_on_a_warning(cli):
    from pgrunbook.adapters.postgres.connection import Database

    run, source = cli
    run("backup")
    with Database.connect(source) as db:
        db.run("CREATE TABLE public.open_table (id int)")  # no RLS, no primary key: warnings
    code, out, _ = run("verify", "--no-database")
    assert code == 0
    code, out, _ = run("verify")
    assert code == 0 and "WARNING" in out and "open_table" in out
    with Database.connect(source) as db:
        db.run("INSERT INTO tasks VALUES (999, 4242, 1)")  # an orphaned task: critical
    code, out, _ = run("verify")
    assert code == 1 and "orphaned_tasks" in out and "4242" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "--recent-days", "0"],
        ["dr-drill", "--attempts", "0"],
        ["dr-drill", "--scenario", "meteor"],
        ["verify", "--dr-bucket", "no-such-dr-bucket"],
    ],
)
def test_bad_job_arguments_exit_2_and_write_nothing(argv, cli, s3):
    run, _ = cli
    code, _, err = run(*argv)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert s3.keys("primary") == []


def test_the_drill_needs_the_dr_bucket(cli, monkeypatch, s3):
    run, _ = cli
    monkeypatch.delenv("PGRUNBOOK_DR_BUCKET")
    code, _, err = run("dr-drill")
    assert code == 2 and "PGRUNBOOK_DR_BUCKET" in err


def test_every_command_prints_the_same_json_shape(cli, monkeypatch, tmp_path):
    """One top-level shape for every command, whatever it did; the exit status follows the
    status in it."""
    run, _ = cli
    (tmp_path / "migrations").mkdir()
    commands = [
        ["backup"],
        ["restore-test"],
        ["verify"],
        ["dr-drill"],
        ["retention", "--dry-run"],
        ["health"],
        ["status"],
        ["config"],
        ["migrate", "lint", "--migrations-dir", str(tmp_path / "migrations")],
        ["migrate", "status", "--migrations-dir", str(tmp_path / "migrations")],
        ["restore-test", "--backup-id", "20990101T000000.000Z-abcdef"],  # refused: no such backup
    ]
    shapes = {}
    for argv in commands:
        code, out, _ = run(*argv, "--json")
        report = json.loads(out)
        shapes[" ".join(argv[:2])] = tuple(sorted(report))
        assert report["exit_code"] == code, argv
        assert {"ok": 0, "warning": 0, "skipped": 0, "critical": 1, "refused": 2}[report["status"]] == code, (
            argv
        )
    assert len(set(shapes.values())) == 1, shapes
