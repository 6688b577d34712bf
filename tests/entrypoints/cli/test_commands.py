"""The ``pgrunbook`` console script, as a user runs it: separate processes, AWS reached
through ``AWS_ENDPOINT_URL`` (a moto server), configuration from the environment."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import boto3
import pytest

from pgrunbook.adapters.postgres.connection import Database
from tests.entrypoints.cli.conftest import PASSWORD, PGRUNBOOK


def pgrunbook(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PGRUNBOOK, *args], env=env, capture_output=True, text=True, timeout=240)


def all_objects(endpoint: str, bucket: str, region: str) -> dict[str, bytes]:
    client = boto3.client("s3", region_name=region, endpoint_url=endpoint)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def test_backup_status_restore_test_end_to_end(cli_env):
    env, source, (primary, dr), endpoint = cli_env

    backup = pgrunbook(env, "backup", "--json", "--tier", "manual")
    assert backup.returncode == 0, backup.stderr
    report = json.loads(backup.stdout)
    assert report["operation"] == "backup" and report["status"] == "ok" and report["exit_code"] == 0
    result = report["payload"]  # the backup's own result, under the same top-level shape as every report
    assert result["tiers"] == ["manual"] and result["dr"]["status"] == "copied"
    assert "dumping" in backup.stderr  # progress, on stderr

    status = pgrunbook(env, "status")
    assert status.returncode == 0, status.stderr
    [line] = [ln for ln in status.stdout.splitlines() if result["backup_id"] in ln]
    assert (
        "manual" in line and "2,000" in line and line.split()[-2:] == ["yes", "-"]
    )  # DR copy; not tested yet

    restore = pgrunbook(env, "restore-test", "--from", "dr", "--json")
    assert restore.returncode == 0, restore.stderr
    restored = json.loads(restore.stdout)
    assert restored["operation"] == "restore-test" and restored["figures"]["integrity_pct"] == 100.0
    assert restored["payload"]["backup_id"] == result["backup_id"]
    assert {t["table"]: t["actual_rows"] for t in restored["payload"]["tables"]}["public.customers"] == 2000
    human = pgrunbook(env, "restore-test")
    assert human.returncode == 0 and "RESTORE TEST PASSED" in human.stdout and "100.00 %" in human.stdout
    [line] = [
        ln for ln in pgrunbook(env, "status").stdout.splitlines() if ln.split()[:1] == [result["backup_id"]]
    ]
    assert line.split()[-2:] == ["yes", "yes"]  # DR copy, and tested

    # The password appears nowhere: not in any output, object, or the mirror.
    for proc in (backup, status, restore, human):
        assert PASSWORD not in proc.stdout + proc.stderr
    objects = {**all_objects(endpoint, primary, "us-east-1"), **all_objects(endpoint, dr, "ap-southeast-2")}
    assert any(k.endswith("manifest.json") for k in objects)
    for key, body in objects.items():
        text = gzip.decompress(body) if key.endswith(".gz") else body
        assert PASSWORD.encode() not in text, key
    with Database.connect(source) as db:
        mirror = db.run("SELECT row_to_json(m)::text FROM pgrunbook.backup_metadata m")
    assert mirror and all(PASSWORD not in row[0] for row in mirror)


def test_failures_keep_the_password_out_of_messages(cli_env):
    env, *_ = cli_env
    env = {
        **env,
        "PGRUNBOOK_DATABASE_URL": f"postgresql://admin:{PASSWORD}@127.0.0.1:1/app?connect_timeout=2",
    }
    proc = pgrunbook(env, "backup")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "cannot connect" in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr


def test_usage_errors_are_one_line_and_exit_2(cli_env):
    env, *_ = cli_env
    for args in (["backup", "--jobs", "many"], ["restore-test", "--from", "moon"], ["frobnicate"], []):
        proc = pgrunbook(env, *args)
        assert proc.returncode == 2, args
        assert len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)


def test_a_failed_restore_test_exits_1(cli_env):
    env, _, (primary, _), endpoint = cli_env
    assert pgrunbook(env, "backup").returncode == 0
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
    [toc] = [
        o["Key"] for o in client.list_objects_v2(Bucket=primary)["Contents"] if o["Key"].endswith("toc.dat")
    ]
    client.put_object(Bucket=primary, Key=toc, Body=b"not a toc")
    proc = pgrunbook(env, "restore-test")
    assert proc.returncode == 1
    assert "RESTORE TEST FAILED" in proc.stdout and toc in proc.stdout


BIG = """
CREATE TABLE events (id bigint PRIMARY KEY, payload text, at timestamptz);
INSERT INTO events SELECT g, repeat(md5(g::text), 8), timestamptz '2025-01-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1, 400000) g;
"""


def start_backup(env: dict) -> subprocess.Popen:
    proc = subprocess.Popen(
        [PGRUNBOOK, "backup"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # wait until pg_dump is running
        if "dumping with" in line:
            return proc
    raise AssertionError(f"backup ended before dumping: {proc.wait()}")


def mirror(source) -> list[tuple[str, str, str | None]]:
    with Database.connect(source) as db:
        return [
            tuple(r) for r in db.run("SELECT backup_id, status, error_message FROM pgrunbook.backup_metadata")
        ]


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_a_killed_backup_leaves_nothing_restorable_and_the_next_run_repairs(signal_name, cli_env, new_db):
    import signal

    env, _, (primary, _), endpoint = cli_env
    source = new_db(sql=BIG)
    env = {**env, "PGRUNBOOK_DATABASE_URL": source.libpq_uri()}

    proc = start_backup(env)
    proc.send_signal(getattr(signal, signal_name))
    code = proc.wait(timeout=60)
    assert code == (143 if signal_name == "SIGTERM" else -9), proc.stderr.read()

    objects = all_objects(endpoint, primary, "us-east-1")
    keys = [k for k in objects if "/backups/" in k]
    assert not [k for k in keys if k.endswith("manifest.json")]
    status = pgrunbook(env, "status", "--json")
    assert not [b for b in json.loads(status.stdout)["payload"]["backups"] if b["restorable"]]
    [(killed_id, state, error)] = mirror(source)
    [run_report] = [json.loads(v) for k, v in objects.items() if "/reports/backup/" in k]
    stderr = proc.stderr.read()
    if signal_name == "SIGTERM":  # a clean stop: recorded at once, files removed, and said
        assert "backup stopped by SIGTERM; it did not finish" in stderr, stderr
        assert state == "failed" and error == "interrupted"
        assert keys == []
        assert run_report["status"] == "critical", (run_report, stderr)
        assert run_report["detail"]["state"] == "interrupted"
    else:  # no chance to clean up: the row and the run's report still say it is running ...
        assert state == "in_progress"
        assert run_report["detail"]["state"] == "running"
        # ... and the morning check says so, not "OK 0 B"
        text = pgrunbook(env, "status").stdout
        [line] = [line for line in text.splitlines() if line.strip().startswith("last backup run")]
        assert "RUNNING" in line and " OK " not in line, text
        assert [p.name for p in Path(env["PGRUNBOOK_WORK_DIR"]).glob("pgrunbook-*")]  # its dump stays

    again = pgrunbook(env, "backup", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    rows = {backup_id: state for backup_id, state, _ in mirror(source)}
    backup_id = report["figures"]["backup_id"]
    assert rows == {killed_id: "failed", backup_id: "completed"}  # ... until the next run
    if signal_name == "SIGKILL":
        assert any(killed_id in w for w in report["payload"]["warnings"])
        assert any("the work directory of an earlier backup" in w for w in report["payload"]["warnings"])
        assert not list(Path(env["PGRUNBOOK_WORK_DIR"]).glob("pgrunbook-*"))
    restore = pgrunbook(env, "restore-test", "--json")
    assert restore.returncode == 0 and json.loads(restore.stdout)["payload"]["backup_id"] == backup_id


def fill_limit(nbytes: int):
    """A child whose files cannot grow past ``nbytes`` (a full disk, as the process sees it)."""

    def preexec() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a core dump
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return preexec


def test_a_full_disk_during_a_restore_test_is_a_stored_failure(cli_env, new_db, pg18_target):
    env, _, (primary, _), endpoint = cli_env
    source = new_db(sql=BIG)
    env = {**env, "PGRUNBOOK_DATABASE_URL": source.libpq_uri()}
    assert pgrunbook(env, "backup").returncode == 0

    def restore_test(env: dict) -> subprocess.CompletedProcess:
        return subprocess.run(
            [PGRUNBOOK, "restore-test"],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            preexec_fn=fill_limit(256 * 1024),
        )

    # the download into the work directory fills it (the target is elsewhere)
    proc = restore_test({**env, "PGRUNBOOK_RESTORE_TARGET_URL": pg18_target.url})
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "RESTORE TEST FAILED" in proc.stdout and "to the work directory" in proc.stdout, proc.stdout
    status = json.loads(pgrunbook(env, "status", "--json").stdout)
    assert status["payload"]["last_runs"]["restore-test"]["status"] == "critical"
    # the embedded target cannot start on the full disk: said, stored, not a traceback
    proc = restore_test(env)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "the embedded PostgreSQL 18 could not start" in proc.stdout, proc.stdout
    assert "File too large" in proc.stdout
    reports = [k for k in all_objects(endpoint, primary, "us-east-1") if "/reports/restore-test/" in k]
    assert len(reports) == 2  # both on record
