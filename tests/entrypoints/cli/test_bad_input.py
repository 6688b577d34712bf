"""Bad input: exit status 2, one line saying why, and nothing written anywhere."""

from __future__ import annotations

import pytest

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.entrypoints.cli import main
from pgrunbook.operations.backup import run_backup


@pytest.fixture
def env(monkeypatch, s3, new_db, tmp_path):
    source = new_db(sql="CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);")
    values = {
        "PGRUNBOOK_DATABASE_URL": source.libpq_uri(),
        **s3.variables(),
        "PGRUNBOOK_WORK_DIR": str(tmp_path),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return source


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_nothing_written(s3, source) -> None:
    assert s3.keys("primary") == [] and s3.keys("dr") == []
    with Database.connect(source) as db:
        assert db.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'pgrunbook'") == 0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://user@host/db", "must be a libpq URI"),
        ("postgresql://user@host:notaport/db", "port"),
        ("postgresql://user@host/db?sslmode=sometimes", "sslmode"),
        ("postgresql://user@host/db?bogus=1", "unsupported parameter"),
        ("postgresql://a,b/db", "several hosts"),
    ],
)
def test_malformed_database_url(url, expected, env, s3, capsys, monkeypatch):
    monkeypatch.setenv("PGRUNBOOK_DATABASE_URL", url)
    code, out, err = run_cli(capsys, "backup")
    assert code == 2
    assert expected in err and len(err.strip().splitlines()) == 1
    assert out == ""
    assert_nothing_written(s3, env)


def test_unreachable_database(env, s3, capsys, tmp_path):
    url = f"postgresql://someone:hunter2hunter2@/nowhere?host={tmp_path}/no-such-dir"
    code, out, err = run_cli(capsys, "backup", "--database-url", url)
    assert code == 2
    assert "cannot connect" in err and len(err.strip().splitlines()) == 1
    assert "hunter2hunter2" not in err + out
    assert_nothing_written(s3, env)


def test_refused_tcp_connection(env, s3, capsys):
    code, _, err = run_cli(capsys, "backup", "--database-url", "postgresql://u:pw123456@127.0.0.1:1/db")
    assert code == 2 and "cannot connect" in err and "pw123456" not in err
    assert_nothing_written(s3, env)


def test_missing_bucket(env, s3, capsys):
    code, _, err = run_cli(capsys, "backup", "--bucket", "no-such-bucket-here")
    assert code == 2
    assert "no-such-bucket-here" in err and "does not exist" in err
    assert len(err.strip().splitlines()) == 1
    assert_nothing_written(s3, env)


def test_missing_dr_bucket(env, s3, capsys):
    code, _, err = run_cli(capsys, "backup", "--dr-bucket", "no-such-dr-bucket")
    assert code == 2 and "no-such-dr-bucket" in err
    assert_nothing_written(s3, env)


def test_no_bucket_configured(env, s3, capsys, monkeypatch):
    monkeypatch.delenv("PGRUNBOOK_BUCKET")
    code, _, err = run_cli(capsys, "backup")
    assert code == 2 and "PGRUNBOOK_BUCKET" in err
    assert_nothing_written(s3, env)


@pytest.mark.parametrize(
    "argv", [["--jobs", "0"], ["--compression", "12"], ["--profile", "oracle"], ["--tier", "yearly"]]
)
def test_bad_flags(argv, env, s3, capsys):
    code, _, err = run_cli(capsys, "backup", *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert_nothing_written(s3, env)


@pytest.mark.parametrize("backup_id", ["20990101T000000.000Z-abcdef", "not-a-backup-id"])
def test_unknown_backup_id(backup_id, env, s3, capsys):
    code, _, err = run_cli(capsys, "restore-test", "--backup-id", backup_id)
    assert code == 2
    assert backup_id in err and len(err.strip().splitlines()) == 1


def test_unknown_backup_id_when_others_exist(env, s3, capsys, make_settings):
    assert run_backup(make_settings(env)).status == "ok"
    capsys.readouterr()
    code, _, err = run_cli(
        capsys, "restore-test", "--from", "dr", "--backup-id", "20990101T000000.000Z-abcdef"
    )
    assert code == 2 and "no backup 20990101T000000.000Z-abcdef" in err


def test_no_backup_at_all(env, s3, capsys):
    code, _, err = run_cli(capsys, "restore-test")
    assert code == 2 and "no complete backup" in err


def test_json_errors_are_json(env, s3, capsys):
    import json
    from datetime import UTC, datetime

    from pgrunbook.domain.results import Report

    code, out, _ = run_cli(capsys, "status", "--json", "--bucket", "no-such-bucket-here")
    assert code == 2
    report = json.loads(out)
    # the same top-level shape as every other report, refused: nothing was done
    assert set(report) == set(Report.start("status", "-", datetime.now(UTC)).to_dict())
    assert report["status"] == "refused" and report["exit_code"] == 2
    assert "no-such-bucket-here" in report["refused"]


def test_status_html_into_a_missing_directory(env, s3, capsys, tmp_path):
    code, out, err = run_cli(capsys, "status", "--html", str(tmp_path / "no" / "page.html"))
    assert code == 2 and out == ""
    assert "--html" in err and "does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "no").exists()
