"""The weekly health job on a real PostgreSQL: what a DBA would look for on Monday morning
(an index nobody uses, a table full of dead rows, a session stuck behind a lock)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.checks.performance import slowest_statements
from pgrunbook.domain.results import Finding, Report
from pgrunbook.operations.context import OperationContext, run_operation

HEALTH_SCHEMA = """
-- lookups: a primary key and a unique index, both over 1 MB and never scanned (they enforce
-- constraints, so they are not "unused"), an index used once, and one nobody ever used.
CREATE TABLE lookups (id text PRIMARY KEY, code text NOT NULL, note text, kind int);
INSERT INTO lookups SELECT md5('id' || g), md5(g::text), md5('note' || g), g % 100 FROM generate_series(1, 25000) AS g;
CREATE UNIQUE INDEX lookups_code_key ON lookups (code);
CREATE INDEX lookups_note_idx ON lookups (note);
CREATE INDEX lookups_kind_note_idx ON lookups (kind, note);
SET enable_seqscan = off;
SELECT count(*) FROM lookups WHERE kind = 7;  -- only lookups_kind_note_idx can serve it
RESET enable_seqscan;
-- churn: most rows deleted and no vacuum allowed to clean up.
CREATE TABLE churn (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = false);
INSERT INTO churn SELECT g, g FROM generate_series(1, 12000) AS g;
DELETE FROM churn WHERE id > 1000;
-- contended: one row two sessions will fight over.
CREATE TABLE contended (id int PRIMARY KEY, v int);
INSERT INTO contended VALUES (1, 0);
SELECT pg_stat_force_next_flush();
"""


def findings(report: Report) -> dict[str, Finding]:
    by_check = {f.check: f for f in report.findings}
    assert len(by_check) == len(report.findings), "one finding per check"
    return by_check


@contextmanager
def lock_wait(info: ConnInfo) -> Iterator[tuple[int, int]]:
    """One session holds a row lock; another waits for it (in a thread) until released.
    Yields (holder pid, waiter pid) once the waiter is really waiting."""
    holder = Database.connect(info)
    waiter = Database.connect(info)
    errors: list[BaseException] = []
    thread = None
    try:
        holder_pid = holder.scalar("SELECT pg_backend_pid()")
        waiter_pid = waiter.scalar("SELECT pg_backend_pid()")
        waiter.run("SET lock_timeout TO '30s'")  # never a hung test, whatever happens
        holder.run("BEGIN")
        holder.run("UPDATE contended SET v = 1 WHERE id = 1")

        def wait() -> None:
            try:
                waiter.run("UPDATE contended SET v = 2 WHERE id = 1")
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=wait, daemon=True)
        thread.start()
        with Database.connect(info) as probe:
            deadline = time.monotonic() + 15
            while not probe.scalar(
                "SELECT count(*) FROM pg_locks WHERE pid = :p AND NOT granted", p=waiter_pid
            ):
                assert time.monotonic() < deadline, "the second session never started waiting"
                time.sleep(0.02)
        yield holder_pid, waiter_pid
    finally:
        holder.run("ROLLBACK")
        if thread is not None:
            thread.join(timeout=30)
        holder.close()
        waiter.close()
    assert not errors, errors
    assert thread is not None and not thread.is_alive()


def test_health_reports_unused_indexes_bloat_and_lock_waits(new_db, make_settings):
    info = new_db(sql=HEALTH_SCHEMA)
    settings = make_settings(info)
    with lock_wait(info) as (holder_pid, waiter_pid):
        report = run_operation("health", OperationContext(settings, store_reports=False))

    found = findings(report)
    assert report.operation == "health" and report.status == "warning"
    assert set(found) == {
        "slow_statements",
        "unused_indexes",
        "table_bloat",
        "lock_waits",
        "stale_statistics",
        "connections",
    }

    unused = found["unused_indexes"]
    assert unused.severity == "warning"
    assert [r["index"] for r in unused.details["rows"]] == ["lookups_note_idx"]
    assert "lookups_note_idx" in unused.message and "never scanned" in unused.message
    assert report.detail["unused_indexes"][0]["definition"].startswith("CREATE INDEX lookups_note_idx")
    assert report.figures["unused_indexes"] == 1
    assert report.figures["unused_index_bytes"] > 1024 * 1024

    bloat = found["table_bloat"]
    assert bloat.severity == "warning"
    assert "public.churn" in bloat.message and "autovacuum is disabled" in bloat.message
    [churn] = report.detail["table_bloat"]
    assert (churn["table"], churn["dead_tuples"], churn["live_tuples"]) == ("churn", 11000, 1000)
    assert churn["dead_pct"] == 91.7
    assert report.figures["worst_bloat_pct"] == 91.7
    assert report.figures["bloated_tables"] == 1

    locks = found["lock_waits"]
    assert locks.severity == "warning"
    assert f"pid {waiter_pid}" in locks.message
    rows = {(r["role"], r["pid"]): r for r in report.detail["lock_waits"]}
    assert rows[("blocked", waiter_pid)]["blocked_by"] == [holder_pid]
    assert rows[("blocked", waiter_pid)]["wait_event_type"] == "Lock"
    assert rows[("blocking", holder_pid)]["head_of_chain"] is True
    assert rows[("blocking", holder_pid)]["state"] == "idle in transaction"
    assert report.figures["blocked_sessions"] == 1

    assert found["stale_statistics"].severity == "warning"
    assert "public.churn" in found["stale_statistics"].message
    assert found["connections"].severity == "ok"
    assert report.figures["connections_total"] >= 3  # the job, the holder, the waiter
    assert report.figures["connections_idle_in_transaction"] >= 1

    assert report.figures["database_size_bytes"] > 4 * 1024 * 1024
    assert 0 <= report.figures["cache_hit_pct"] <= 100
    assert report.figures["pg_stat_statements_installed"] is False
    assert report.metrics["UnusedIndexes"] == ("Count", 1.0)
    assert report.metrics["WorstBloatPct"] == ("Percent", 91.7)
    assert report.metrics["BlockedSessions"] == ("Count", 1.0)
    assert "SlowStatements" not in report.metrics  # nothing was measured
    assert Report.from_dict(report.to_dict()).status == "warning"  # stores as JSON


def test_without_pg_stat_statements_the_report_says_how_to_enable_it(new_db, make_settings):
    settings = make_settings(new_db(sql="CREATE TABLE t (id int PRIMARY KEY)"))
    report = run_operation("health", OperationContext(settings, store_reports=False))

    slow = findings(report)["slow_statements"]
    assert slow.severity == "info"
    assert "pg_stat_statements is not installed" in slow.message
    assert (
        "shared_preload_libraries" in slow.message and "CREATE EXTENSION pg_stat_statements" in slow.message
    )
    assert report.figures["pg_stat_statements_installed"] is False
    assert report.status == "ok"
    assert {f.severity for f in report.findings} <= {"ok", "info"}


# pg_stat_statements is in the embedded build but not preloaded (shared_preload_libraries), so
# its view has nothing to read: a table with the view's columns, in a
# schema with an awkward name (it lives in "extensions" on Supabase), stands in for it: the
# job's SQL runs for real against both layouts of the view.
STATEMENTS_VIEW = '''
CREATE SCHEMA "Stats ""ext""";
CREATE TABLE "Stats ""ext""".pg_stat_statements (
    userid oid, dbid oid, queryid bigint, query text, calls bigint, rows bigint, {columns}
);
INSERT INTO "Stats ""ext""".pg_stat_statements
SELECT 10, d.oid, v.queryid, v.query, v.calls, v.calls, v.total, v.total / v.calls
FROM pg_database d,
     (VALUES (1, 'SELECT * FROM reports WHERE created_at > $1', 4, 10000.0),
             (2, 'SELECT 1', 100000, 5000.0),
             (3, 'UPDATE accounts SET balance = balance + $1', 100, 3000.0)) AS v (queryid, query, calls, total)
WHERE d.datname = current_database()
UNION ALL
SELECT 10, 0, 4, 'VACUUM FULL elsewhere', 1, 0, 90000.0, 90000.0;  -- another database's statement
'''


@pytest.mark.parametrize(
    "columns",
    [
        "total_exec_time float8, mean_exec_time float8",  # PostgreSQL 13 and later
        "total_time float8, mean_time float8",  # before 13, or an extension not updated since
    ],
)
def test_the_slowest_statements_come_from_the_view_and_over_a_second_is_a_warning(new_db, columns):
    with Database.connect(new_db(sql=STATEMENTS_VIEW.format(columns=columns))) as db:
        db.run("BEGIN READ ONLY")
        result = slowest_statements(db, 'Stats "ext"')
        db.run("COMMIT")

    assert result.severity == "warning"
    assert result.count == 1
    assert [r["queryid"] for r in result.rows] == ["1", "3", "2"]  # by mean time; other databases left out
    slowest = result.rows[0]
    assert (slowest["calls"], slowest["mean_ms"], slowest["total_ms"]) == (4, 2500.0, 10000.0)
    assert slowest["pct_of_total_time"] == 55.6
    assert "1 statement average over 1 s" in result.message
    assert result.figures == {
        "pg_stat_statements_installed": True,
        "slow_statements": 1,
        "slowest_mean_ms": 2500.0,
    }


def test_health_runs_on_postgresql_16(new_db, make_settings, pg16):
    info = new_db(sql=HEALTH_SCHEMA, server=pg16)
    with lock_wait(info) as (_holder_pid, waiter_pid):
        report = run_operation("health", OperationContext(make_settings(info), store_reports=False))

    found = findings(report)
    assert not [f.message for f in report.findings if "could not run" in f.message]
    assert {name: f.severity for name, f in found.items()} == {
        "slow_statements": "info",
        "unused_indexes": "warning",
        "table_bloat": "warning",
        "lock_waits": "warning",
        "stale_statistics": "warning",
        "connections": "ok",
    }
    assert f"pid {waiter_pid}" in found["lock_waits"].message
    assert report.figures["server_version"].startswith("16.")
