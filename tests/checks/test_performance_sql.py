"""The health job's SQL builders and policies (pure): which columns each server version
has, quoting, and the bloat rule."""

from __future__ import annotations

import pytest

from pgrunbook.checks.live import count_of, state_key
from pgrunbook.checks.performance import (
    is_bloated,
    lock_waits_sql,
    slow_statements_sql,
    timing_columns,
    unused_indexes_sql,
)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (90624, ("total_time", "mean_time")),
        (120017, ("total_time", "mean_time")),
        (130000, ("total_exec_time", "mean_exec_time")),
        (160004, ("total_exec_time", "mean_exec_time")),
        (180001, ("total_exec_time", "mean_exec_time")),
    ],
)
def test_timing_columns_follow_the_server_version(version, expected):
    assert timing_columns(version) == expected


def test_the_views_own_columns_win_over_the_server_version():
    # pg_upgrade to 16 keeps an extension at 1.7 (and its old names) until ALTER EXTENSION UPDATE.
    assert timing_columns(160000, {"query", "calls", "total_time", "mean_time"}) == (
        "total_time",
        "mean_time",
    )
    assert timing_columns(120000, {"mean_exec_time", "total_exec_time"}) == (
        "total_exec_time",
        "mean_exec_time",
    )


def test_slow_statements_sql_before_13_reads_mean_time():
    sql = slow_statements_sql("public", 120000)
    assert "s.mean_time" in sql and "s.total_time" in sql
    assert "exec_time" not in sql
    assert "ORDER BY s.mean_time DESC" in sql


@pytest.mark.parametrize("version", [130000, 180000])
def test_slow_statements_sql_from_13_reads_mean_exec_time(version):
    sql = slow_statements_sql("public", version)
    assert "s.mean_exec_time" in sql and "s.total_exec_time" in sql
    assert "s.mean_time" not in sql and "s.total_time" not in sql
    assert "ORDER BY s.mean_exec_time DESC" in sql


def test_slow_statements_sql_quotes_the_schema_and_keeps_to_this_database():
    sql = slow_statements_sql('ext"; DROP TABLE x; --', 160000)
    assert 'FROM "ext""; DROP TABLE x; --"."pg_stat_statements" s' in sql
    assert "datname = current_database()" in sql
    assert sql.rstrip().endswith("LIMIT 10")
    assert "s.calls" in sql


def test_version_dependent_columns_are_only_used_where_they_exist():
    assert "last_idx_scan" in unused_indexes_sql(160000)
    assert "last_idx_scan" not in unused_indexes_sql(150000)
    assert "waitstart" in lock_waits_sql(140000)
    assert "waitstart" not in lock_waits_sql(130000)


@pytest.mark.parametrize(
    ("dead", "pct", "bloated"),
    [
        (45000, 90.0, True),
        (10001, 20.1, True),
        (10000, 90.0, False),  # a tiny table: not worth a warning
        (5_000_000, 20.0, False),  # ordinary churn on a large table
        (0, 0.0, False),
    ],
)
def test_bloat_needs_both_a_high_share_and_many_dead_tuples(dead, pct, bloated):
    assert is_bloated(dead, pct) is bloated


def test_connection_states_become_figure_names():
    assert state_key("idle in transaction (aborted)") == "idle_in_transaction_aborted"
    assert state_key("fastpath function call") == "fastpath_function_call"
    assert (count_of(1, "index", "indexes"), count_of(3, "index", "indexes")) == ("1 index", "3 indexes")
