"""``pgrunbook doctor`` (issue 17, item 4): what the jobs need, and what to fix, on real
PostgreSQL and moto; it changes nothing."""

from __future__ import annotations

import boto3
import pytest

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.entrypoints.cli.render import render
from pgrunbook.operations.context import OperationContext, run_operation

SQL = """
CREATE TABLE items (id int PRIMARY KEY, body text);
INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 100) g;
"""


def _versioned(s3) -> None:
    for bucket, region in ((s3.primary, s3.primary_region), (s3.dr, s3.dr_region)):
        boto3.client("s3", region_name=region).put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
        )


def _by_check(report) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for f in report.findings:
        found.setdefault(f.check, []).append((f.severity, f.message))
    return found


def test_a_ready_setup_exits_0_and_says_what_it_checked(new_db, make_settings, s3):
    _versioned(s3)
    settings = make_settings(new_db(sql=SQL))
    report = run_operation("doctor", OperationContext(settings))
    assert report.exit_code == 0, render(report)
    found = _by_check(report)
    assert [s for s, _ in found["database"]] == ["ok"]
    assert found["pg_dump_reads"] == [("ok", "postgres can read all 1 tables and sequences pg_dump dumps")]
    assert [s for s, _ in found["buckets"]] == ["ok", "ok"]
    assert [s for s, _ in found["restore_target"]] == ["ok"]
    assert found["pg_stat_statements"][0][0] == "warning"  # the embedded server lacks it: a warning only


def test_what_pg_dump_could_not_read_is_listed_with_its_fix(new_db, make_settings, s3, pg18):
    info = new_db(
        sql=SQL
        + """
        CREATE TABLE hidden (id int);
        CREATE TABLE policed (id int, owner_name text);
        ALTER TABLE policed ENABLE ROW LEVEL SECURITY;
        CREATE POLICY mine ON policed USING (owner_name = current_user);
        """
    )
    with Database.connect(info) as db:
        db.run("DROP ROLE IF EXISTS doctor_reader")
        db.run("CREATE ROLE doctor_reader LOGIN")
        db.run("GRANT SELECT ON items, policed TO doctor_reader")
        db.run("CREATE TABLE forced (id int)")  # its own table, but row security forced on its owner
        db.run("ALTER TABLE forced OWNER TO doctor_reader")
        db.run("ALTER TABLE forced ENABLE ROW LEVEL SECURITY")
        db.run("ALTER TABLE forced FORCE ROW LEVEL SECURITY")
    reader = ConnInfo.parse(info.libpq_uri().replace("postgres@", "doctor_reader@", 1))
    try:
        report = run_operation("doctor", OperationContext(make_settings(reader)))
        assert report.exit_code == 1, render(report)
        reads = _by_check(report)["pg_dump_reads"]
        assert [s for s, _ in reads] == ["critical", "critical"]
        assert "cannot read 1 of 4 tables and sequences" in reads[0][1] and "public.hidden" in reads[0][1]
        assert "GRANT SELECT" in reads[0][1]
        assert "2 tables have row-level security" in reads[1][1] and "BYPASSRLS" in reads[1][1]
        assert "public.forced, public.policed" in reads[1][1]
        text = render(report)
        assert "CRITICAL pg_dump_reads" in text
    finally:
        with Database.connect(info) as db:
            db.run("DROP OWNED BY doctor_reader")
            db.run("DROP ROLE doctor_reader")


def test_buckets_in_another_region_or_unversioned_or_missing(new_db, make_settings, s3):
    info = new_db(sql=SQL)
    report = run_operation("doctor", OperationContext(make_settings(info, dr_region="ap-south-1")))
    buckets = _by_check(report)["buckets"]
    assert buckets[0][0] == "warning" and "versioning disabled" in buckets[0][1]
    assert buckets[1][0] == "critical" and f"is in {s3.dr_region}, not ap-south-1" in buckets[1][1]
    assert report.exit_code == 1
    missing = run_operation("doctor", OperationContext(make_settings(info, bucket="not-made-yet")))
    assert ("info", "the primary bucket not-made-yet does not exist yet: cdk deploy creates it") in _by_check(
        missing
    )["buckets"]


def test_an_older_restore_target_is_a_fix(new_db, make_settings, s3, pg16):
    _versioned(s3)
    settings = make_settings(new_db(sql=SQL), restore_target_url=pg16.conninfo.libpq_uri())
    report = run_operation("doctor", OperationContext(settings))
    [(severity, message)] = _by_check(report)["restore_target"]
    assert severity == "critical" and "runs PostgreSQL 16, older than the database's 18" in message
    assert report.exit_code == 1


@pytest.mark.parametrize(
    ("host", "severity", "said"),
    [
        ("aws-0-us-east-1.pooler.supabase.com:6543", "critical", "transaction pooler"),
        ("db.abcdefghijkl.supabase.co:5432", "warning", "IPv6 only"),
        ("aws-0-us-east-1.pooler.supabase.com:5432", "ok", "session pooler"),
    ],
)
def test_supabase_hosts_are_named_and_an_unreachable_database_is_a_fix(
    make_settings, s3, host, severity, said
):
    settings = make_settings(ConnInfo.parse(f"postgresql://postgres.ref@{host}/postgres?connect_timeout=2"))
    report = run_operation("doctor", OperationContext(settings))
    found = _by_check(report)
    [(got, message)] = found["host"]
    assert got == severity and said in message
    [(db_severity, db_message)] = found["database"]  # no network here: a fix, not a refusal
    assert db_severity == "critical" and "cannot connect" in db_message
    assert report.exit_code == 1
    assert "buckets" in found  # the account is still checked
