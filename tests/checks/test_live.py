"""The daily verification's checks of the live database, on a real PostgreSQL: the
built-in security and operations checks, and the runbooks' data-quality checks shipped as
SQL files."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime

import pytest

from pgrunbook.adapters.postgres.connection import Database, quote_ident
from pgrunbook.checks.live import builtin_checks
from pgrunbook.checks.sql import CheckResult, SqlCheck, check_dirs, load_checks, run_check, run_checks
from pgrunbook.domain.thresholds import Threshold, Thresholds

LONG_QUERY = "SELECT 1 AS still_here /* " + "x" * 300 + " */"


def checks_on(
    db: Database,
    *,
    profile: str = "default",
    exposed_schemas: list[str] | None = None,
    thresholds: Thresholds | None = None,
    now: datetime | None = None,
) -> dict[str, CheckResult]:
    results = builtin_checks(
        db,
        profile=profile,
        exposed_schemas=["public"] if exposed_schemas is None else exposed_schemas,
        thresholds=thresholds or Thresholds(),
        now=now or datetime.now(UTC),
    )
    return {r.name: r for r in results}


def tables(result: CheckResult) -> set[str]:
    return {f"{r['schema']}.{r['table']}" for r in result.rows}


# -- built-in checks ----------------------------------------------------------------------

RLS_SCHEMA = """
CREATE TABLE public.open_notes (id int PRIMARY KEY, body text);
CREATE TABLE public.guarded_notes (id int PRIMARY KEY, body text);
ALTER TABLE public.guarded_notes ENABLE ROW LEVEL SECURITY;
-- RLS on a partitioned table does not guard a client that names a partition directly.
CREATE TABLE public.events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
ALTER TABLE public.events ENABLE ROW LEVEL SECURITY;
CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE SCHEMA internal;
CREATE TABLE internal.jobs (id int PRIMARY KEY);
"""


def test_rls_disabled_is_critical_on_supabase_and_a_warning_elsewhere(new_db):
    with Database.connect(new_db(sql=RLS_SCHEMA)) as db:
        supabase = checks_on(db, profile="supabase")["rls_disabled"]
        default = checks_on(db, profile="default")["rls_disabled"]
        wider = checks_on(db, exposed_schemas=["public", "internal"])["rls_disabled"]
        nothing_exposed = checks_on(db, exposed_schemas=[])["rls_disabled"]

    assert supabase.severity == "critical"
    assert "PostgREST" in supabase.message and "public.open_notes" in supabase.message
    assert tables(supabase) == {"public.open_notes", "public.events_2025"}
    assert {r["table"]: r["kind"] for r in supabase.rows} == {
        "open_notes": "table",
        "events_2025": "partition",
    }
    assert supabase.count == 2 and supabase.figures == {"rls_disabled_tables": 2}

    assert default.severity == "warning"
    assert tables(default) == tables(supabase)
    assert tables(wider) == {"public.open_notes", "public.events_2025", "internal.jobs"}
    assert nothing_exposed.severity == "ok"


def test_a_schema_with_rls_everywhere_is_ok(new_db):
    info = new_db(sql="CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t ENABLE ROW LEVEL SECURITY;")
    with Database.connect(info) as db:
        result = checks_on(db, profile="supabase")["rls_disabled"]
    assert result.severity == "ok" and result.rows == []


NO_KEY_SCHEMA = """
CREATE TABLE keyed (id int PRIMARY KEY);
CREATE TABLE audit_log (at timestamptz, line text);
CREATE TABLE promotable (id int NOT NULL, v int);
CREATE UNIQUE INDEX promotable_id_key ON promotable (id);
-- A tree whose root has a key: its partitions inherit it, nothing to report.
CREATE TABLE keyed_tree (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE keyed_tree_2025 PARTITION OF keyed_tree FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
-- A tree without any key: reported once, by its root.
CREATE TABLE loose_tree (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE loose_tree_2025 PARTITION OF loose_tree FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE loose_tree_2026 PARTITION OF loose_tree FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
-- A tree whose every leaf has a key of its own: fine.
CREATE TABLE leaf_keyed_tree (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE leaf_keyed_tree_2025 PARTITION OF leaf_keyed_tree (PRIMARY KEY (id))
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
-- A platform's schema: the application cannot add keys there.
CREATE SCHEMA auth;
CREATE TABLE auth.audit_log_entries (payload json);
"""


def test_tables_without_a_primary_key_are_listed_once_per_partition_tree(new_db):
    with Database.connect(new_db(sql=NO_KEY_SCHEMA)) as db:
        default = checks_on(db)["tables_without_primary_key"]
        supabase = checks_on(db, profile="supabase")["tables_without_primary_key"]

    assert default.severity == "warning"
    assert tables(default) == {
        "public.audit_log",
        "public.promotable",
        "public.loose_tree",
        "auth.audit_log_entries",
    }
    rows = {r["table"]: r for r in default.rows}
    assert rows["promotable"]["candidate_key_index"] == "promotable_id_key"
    assert rows["audit_log"]["candidate_key_index"] is None
    assert rows["loose_tree"]["kind"] == "partitioned table"
    assert (rows["loose_tree"]["partitions"], rows["loose_tree"]["partitions_without_key"]) == (2, 2)
    assert default.figures == {"tables_without_primary_key": 4}
    assert "public.audit_log" in default.message
    # On Supabase the auth schema is the platform's.
    assert tables(supabase) == tables(default) - {"auth.audit_log_entries"}


def test_a_transaction_open_for_two_hours_by_the_job_clock_is_long(new_db):
    info = new_db(sql="CREATE TABLE t (id int PRIMARY KEY)")
    with Database.connect(info) as other, Database.connect(info) as db:
        other_pid = other.scalar("SELECT pg_backend_pid()")
        other.run("BEGIN")
        other.run(LONG_QUERY)  # idle in transaction from here on
        two_hours_on = db.scalar("SELECT now() + interval '2 hours'")
        five_hours_on = db.scalar("SELECT now() + interval '5 hours'")

        later = checks_on(db, now=two_hours_on)["long_transactions"]
        much_later = checks_on(db, now=five_hours_on)["long_transactions"]
        today = checks_on(db, now=datetime.now(UTC))["long_transactions"]
        other.run("ROLLBACK")

    assert later.severity == "warning"  # over 60 min, not yet over 240
    assert [r["pid"] for r in later.rows] == [other_pid]
    row = later.rows[0]
    assert row["state"] == "idle in transaction"
    assert row["user"] == info.user
    assert 119 <= row["age_minutes"] <= 122
    assert row["query"] == LONG_QUERY[:200]
    assert later.figures["long_transactions"] == 1
    assert f"pid {other_pid}" in later.message

    assert much_later.severity == "critical"
    assert today.severity == "ok" and today.rows == []
    assert today.figures["long_transactions"] == 0


def test_connection_figures_count_sessions_by_state(new_db):
    info = new_db(sql="CREATE TABLE t (id int PRIMARY KEY)")
    with Database.connect(info) as idle, Database.connect(info) as db:
        idle.run("SELECT 1")
        result = checks_on(db)["connections"]
        max_connections = int(db.scalar("SHOW max_connections"))
        crowded = checks_on(db, thresholds=Thresholds(connection_use_pct=Threshold(0.5, 99, "%")))[
            "connections"
        ]

    figures = result.figures
    assert result.severity == "ok"
    assert figures["connections_max"] == max_connections
    assert figures["connections_total"] >= 2
    assert figures["connections_active"] >= 1 and figures["connections_idle"] >= 1
    assert sum(r["sessions"] for r in result.rows) == figures["connections_total"]
    assert figures["connection_use_pct"] == round(100 * figures["connections_total"] / max_connections, 1)
    assert f"of {max_connections} connections in use" in result.message
    assert crowded.severity == "warning"
    assert "applications are refused" in crowded.message


STALE_SCHEMA = """
CREATE TABLE stale (id int) WITH (autovacuum_enabled = false);
INSERT INTO stale SELECT generate_series(1, 5000);
CREATE TABLE fresh (id int) WITH (autovacuum_enabled = false);
INSERT INTO fresh SELECT generate_series(1, 5000);
CREATE TABLE settings_table (id int);
INSERT INTO settings_table SELECT generate_series(1, 10);
SELECT pg_stat_force_next_flush();
"""


def test_a_table_changed_since_its_last_analyze_has_stale_statistics(new_db):
    with Database.connect(new_db(sql=STALE_SCHEMA)) as db:
        # In a transaction of its own: rows a transaction inserts count as changes when it
        # ends, after an ANALYZE it ran.
        db.run("ANALYZE fresh")
        result = checks_on(db)["stale_statistics"]

    assert result.severity == "warning"
    assert tables(result) == {"public.stale"}  # small tables are not worth an alarm
    row = result.rows[0]
    assert row["modified_since_analyze"] == 5000
    assert row["last_analyzed"] is None
    assert row["autovacuum_disabled"] is True
    assert "ANALYZE" in result.message and "autovacuum is disabled" in result.message
    assert result.figures == {"stale_statistics_tables": 1}


def test_checks_need_no_superuser_and_say_what_they_cannot_see(new_db, pg18):
    info = new_db(sql=RLS_SCHEMA)
    role = f"monitor_{secrets.token_hex(4)}"
    with Database.connect(info) as admin:
        admin.run(f"CREATE ROLE {quote_ident(role)} LOGIN")
    try:
        with Database.connect(info) as superuser_session:
            superuser_session.run("BEGIN")
            superuser_session.run("SELECT 1")
            with Database.connect(dataclasses.replace(info, user=role)) as db:
                assert db.scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
                results = checks_on(
                    db, profile="supabase", now=db.scalar("SELECT now() + interval '2 hours'")
                )
            superuser_session.run("ROLLBACK")
    finally:
        with Database.connect(pg18.conninfo) as admin:
            admin.run(f"DROP ROLE IF EXISTS {quote_ident(role)}")

    assert not [r.message for r in results.values() if "could not run" in r.message]
    assert results["rls_disabled"].severity == "critical"
    long = results["long_transactions"]
    assert long.figures["sessions_not_visible"] >= 1
    assert "could not be inspected" in long.message
    assert results["connections"].figures["connections_unknown"] >= 1


@pytest.mark.parametrize("version", [16, 18])
def test_every_builtin_check_runs_on_postgresql(version, new_db, request):
    server = request.getfixturevalue(f"pg{version}")
    info = new_db(sql=RLS_SCHEMA + NO_KEY_SCHEMA + STALE_SCHEMA, server=server)
    with Database.connect(info) as other, Database.connect(info) as db:
        other.run("BEGIN")
        other.run("SELECT 1")
        results = checks_on(db, now=db.scalar("SELECT now() + interval '2 hours'"))
        other.run("ROLLBACK")

    assert [r.name for r in results.values()] == [
        "rls_disabled",
        "tables_without_primary_key",
        "long_transactions",
        "connections",
        "stale_statistics",
    ]
    severities = {name: r.severity for name, r in results.items()}
    assert severities == {
        "rls_disabled": "warning",
        "tables_without_primary_key": "warning",
        "long_transactions": "warning",
        "connections": "ok",
        "stale_statistics": "warning",
    }


# -- the runbooks' data-quality checks (sql/checks) ---------------------------------------

SHIPPED = ("orphaned_tasks", "task_user_mismatch", "vehicles_without_auction")

APPLICATION_SCHEMA = """
CREATE TABLE projects (id int PRIMARY KEY, user_id int);
CREATE TABLE tasks (id int PRIMARY KEY, project_id int, user_id int);
CREATE TABLE auctions (id int PRIMARY KEY);
CREATE TABLE vehicles (id int PRIMARY KEY, auction_id int);
"""

CLEAN_DATA = """
INSERT INTO projects VALUES (1, 10), (2, 20), (3, NULL);
INSERT INTO tasks VALUES (1, 1, 10), (2, 2, 20), (3, 3, NULL);  -- both users NULL: the same
INSERT INTO auctions VALUES (1);
INSERT INTO vehicles VALUES (1, 1), (2, NULL);                  -- not yet in an auction: fine
"""

VIOLATIONS = """
INSERT INTO tasks VALUES
    (10, 99, 10),    -- orphaned: project 99 does not exist
    (11, NULL, 10),  -- orphaned: no project at all
    (12, 1, 20),     -- user differs from the project's
    (13, 1, NULL),   -- lost its user
    (14, 3, 30);     -- the project has no user, the task has one
INSERT INTO vehicles VALUES (3, 42);  -- auction 42 does not exist
"""


def shipped_checks():
    checks = {c.name: c for c in load_checks(check_dirs())}
    assert set(SHIPPED) <= set(checks)
    return [checks[name] for name in SHIPPED]


def test_shipped_checks_declare_their_severity_and_tables():
    checks = {c.name: c for c in shipped_checks()}
    assert checks["orphaned_tasks"].severity == "critical"
    assert checks["task_user_mismatch"].severity == "warning"
    assert checks["vehicles_without_auction"].severity == "warning"
    assert checks["orphaned_tasks"].requires == ("tasks", "projects")
    assert checks["vehicles_without_auction"].requires == ("vehicles", "auctions")
    assert "not critical" in checks["vehicles_without_auction"].description


def test_shipped_checks_report_the_offending_rows(new_db):
    with Database.connect(new_db(sql=APPLICATION_SCHEMA + CLEAN_DATA + VIOLATIONS)) as db:
        results = {r.name: r for r in run_checks(db, shipped_checks())}

    orphans = results["orphaned_tasks"]
    assert orphans.severity == "critical" and orphans.count == 2
    assert orphans.rows == [
        {"task_id": 10, "project_id": 99, "problem": "project missing"},
        {"task_id": 11, "project_id": None, "problem": "no project_id"},
    ]

    mismatch = results["task_user_mismatch"]
    assert mismatch.severity == "warning" and mismatch.count == 3
    assert [(r["task_id"], r["task_user_id"], r["project_user_id"]) for r in mismatch.rows] == [
        (12, 20, 10),
        (13, None, 10),
        (14, 30, None),
    ]

    vehicles = results["vehicles_without_auction"]
    assert vehicles.severity == "warning" and vehicles.count == 1
    assert vehicles.rows == [{"vehicle_id": 3, "auction_id": 42}]
    assert "1 row violates vehicles_without_auction" in vehicles.message


def test_shipped_checks_pass_on_consistent_data(new_db):
    with Database.connect(new_db(sql=APPLICATION_SCHEMA + CLEAN_DATA)) as db:
        results = run_checks(db, shipped_checks())
    assert {r.name: r.severity for r in results} == dict.fromkeys(SHIPPED, "ok")
    assert all(r.rows == [] for r in results)


def test_shipped_checks_are_skipped_where_their_tables_do_not_exist(new_db):
    info = new_db(sql="CREATE TABLE projects (id int PRIMARY KEY, user_id int)")
    with Database.connect(info) as db:
        results = {r.name: r for r in run_checks(db, shipped_checks())}
    assert {r.severity for r in results.values()} == {"info"}
    assert results["orphaned_tasks"].message == "skipped: tasks not in this database"
    assert results["vehicles_without_auction"].message == "skipped: vehicles, auctions not in this database"


# -- a check inside the caller's transaction --------------------------------------------------

NEGATIVE = SqlCheck("negative_amounts", "SELECT id FROM ledger WHERE amount < 0", "critical", ("ledger",))
BROKEN = SqlCheck("broken", "SELECT no_such_column FROM ledger", "critical", ("ledger",))


def test_a_check_inside_the_callers_transaction_sees_it_and_neither_commits_nor_changes_it(new_db):
    info = new_db(sql="CREATE TABLE ledger (id int PRIMARY KEY, amount numeric)")
    with Database.connect(info) as db:
        db.run("BEGIN")
        db.run("SET LOCAL statement_timeout TO '7s'")
        db.run("INSERT INTO ledger VALUES (1, -5)")

        found = run_check(db, NEGATIVE)
        failed = run_check(db, BROKEN)

        assert found.severity == "critical" and found.count == 1  # the uncommitted row is seen
        assert failed.severity == "warning" and "could not run" in failed.message
        assert db.in_transaction  # still the caller's, still usable
        assert db.scalar("SHOW statement_timeout") == "7s"
        assert db.scalar("SHOW transaction_read_only") == "off"
        db.run("INSERT INTO ledger VALUES (2, 3)")
        db.run("ROLLBACK")
        assert db.scalar("SELECT count(*) FROM ledger") == 0  # nothing was committed by a check


def test_a_check_on_its_own_is_read_only_and_leaves_no_transaction(new_db):
    info = new_db(sql="CREATE TABLE ledger (id int PRIMARY KEY, amount numeric); CREATE SEQUENCE ids")
    writer = SqlCheck("writes", "SELECT nextval('ids') AS id", "warning")
    with Database.connect(info) as db:
        assert run_check(db, NEGATIVE).severity == "ok"
        refused = run_check(db, writer)
        assert refused.severity == "warning" and "read-only transaction" in refused.message
        assert not db.in_transaction
        assert db.run("SELECT is_called FROM ids") == [[False]]  # nextval() never ran
