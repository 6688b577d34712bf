"""Performance checks of a live database, for the weekly health report
(:mod:`pgrunbook.operations.health` explains each one and its thresholds)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pgrunbook.adapters.postgres.connection import Database, qualified
from pgrunbook.checks.live import AUTOVACUUM_DISABLED_SQL, QUERY_TEXT_CHARS, count_of
from pgrunbook.checks.sql import CheckResult, jsonable
from pgrunbook.domain.errors import SqlError

SLOW_STATEMENT_MEAN_MS = 1000.0
SLOW_STATEMENTS_LISTED = 10
STATEMENT_TEXT_CHARS = 500
UNUSED_INDEX_MIN_BYTES = 1024 * 1024
BLOAT_DEAD_PCT = 20.0
BLOAT_MIN_DEAD_TUPLES = 10_000

PG_STAT_STATEMENTS_HOWTO = (
    "add pg_stat_statements to shared_preload_libraries and restart (RDS/Aurora: the DB "
    "parameter group; Supabase preloads it), then run CREATE EXTENSION pg_stat_statements "
    "in this database"
)


# -- database-wide figures ----------------------------------------------------------------

_DATABASE_SQL = """
SELECT pg_database_size(d.datname) AS database_size_bytes,
       s.deadlocks,
       round(100.0 * s.blks_hit / nullif(s.blks_hit + s.blks_read, 0), 2)::float8 AS cache_hit_pct,
       s.stats_reset
FROM pg_catalog.pg_database d
JOIN pg_catalog.pg_stat_database s ON s.datid = d.oid
WHERE d.datname = current_database()
"""


def database_figures(db: Database) -> dict[str, Any]:
    """Size, deadlocks and cache hit ratio since the statistics were last reset."""
    row = db.rows(_DATABASE_SQL)[0]
    return {
        "server_version": db.server_version,
        "database_size_bytes": int(row["database_size_bytes"]),
        "deadlocks": int(row["deadlocks"] or 0),
        "cache_hit_pct": row["cache_hit_pct"],
        "stats_reset": jsonable(row["stats_reset"]),
    }


# -- slow statements ----------------------------------------------------------------------

_PG_STAT_STATEMENTS_SQL = """
SELECT n.nspname AS schema, e.extversion AS version
FROM pg_catalog.pg_extension e
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_stat_statements'
"""

_VIEW_COLUMNS_SQL = """
SELECT a.attname
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = to_regclass(:view) AND a.attnum > 0 AND NOT a.attisdropped
"""


def timing_columns(server_version_num: int, view_columns: Collection[str] = ()) -> tuple[str, str]:
    """The (total, mean) time columns of pg_stat_statements, in milliseconds.

    PostgreSQL 13 (extension 1.8) split planning from execution and renamed
    ``total_time``/``mean_time`` to ``total_exec_time``/``mean_exec_time``.  The view's
    actual columns win when known: after pg_upgrade the extension keeps its old version,
    and its old column names, until ``ALTER EXTENSION pg_stat_statements UPDATE``.
    """
    if "mean_exec_time" in view_columns:
        return "total_exec_time", "mean_exec_time"
    if "mean_time" in view_columns:
        return "total_time", "mean_time"
    if server_version_num >= 130000:
        return "total_exec_time", "mean_exec_time"
    return "total_time", "mean_time"


def slow_statements_sql(
    schema: str,
    server_version_num: int,
    view_columns: Collection[str] = (),
    *,
    limit: int = SLOW_STATEMENTS_LISTED,
) -> str:
    """The statements of this database with the highest mean time, slowest first.

    pg_stat_statements lives in whatever schema the extension was created in (Supabase:
    ``extensions``), so the view is schema-qualified, quoted.  It covers the whole server:
    only this database's statements are kept.  Each one's share of the total time says
    whether it matters (a slow statement run twice a week may not).
    """
    total, mean = timing_columns(server_version_num, view_columns)
    view = qualified(schema, "pg_stat_statements")
    return f"""
SELECT s.queryid::text AS queryid,
       left(s.query, {STATEMENT_TEXT_CHARS}) AS query,
       s.calls,
       s.rows,
       round(s.{mean}::numeric, 2)::float8 AS mean_ms,
       round(s.{total}::numeric, 2)::float8 AS total_ms,
       round((100 * s.{total} / nullif(sum(s.{total}) OVER (), 0))::numeric, 1)::float8 AS pct_of_total_time
FROM {view} s
WHERE s.dbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database())
ORDER BY s.{mean} DESC
LIMIT {int(limit)}
"""


def slow_statements(db: Database) -> CheckResult:
    name = "slow_statements"
    extension = db.rows(_PG_STAT_STATEMENTS_SQL)
    if not extension:
        available = db.scalar(
            "SELECT count(*) FROM pg_catalog.pg_available_extensions WHERE name = 'pg_stat_statements'"
        )
        where = (
            "" if available else " (and this server does not ship it: install PostgreSQL's contrib package)"
        )
        return CheckResult(
            name,
            "info",
            "pg_stat_statements is not installed in this database, so the slowest statements cannot be "
            f"listed{where}; to enable it, {PG_STAT_STATEMENTS_HOWTO}",
            figures={"pg_stat_statements_installed": False},
        )
    return slowest_statements(db, extension[0]["schema"])


def slowest_statements(db: Database, schema: str) -> CheckResult:
    """Read the pg_stat_statements view of ``schema`` and flag statements over 1 s mean."""
    name = "slow_statements"
    view = qualified(schema, "pg_stat_statements")
    columns = {r["attname"] for r in db.rows(_VIEW_COLUMNS_SQL, view=view)}
    db.run("SAVEPOINT pg_stat_statements")
    try:
        rows = db.rows(slow_statements_sql(schema, db.server_version_num, columns))
    except SqlError as exc:
        # Created but not loaded: "pg_stat_statements must be loaded via shared_preload_libraries".
        db.run("ROLLBACK TO SAVEPOINT pg_stat_statements")
        return CheckResult(
            name,
            "info",
            f"pg_stat_statements is installed but cannot be read ({exc}); {PG_STAT_STATEMENTS_HOWTO}",
            figures={"pg_stat_statements_installed": True},
        )
    db.run("RELEASE SAVEPOINT pg_stat_statements")
    slow = [r for r in rows if (r["mean_ms"] or 0) > SLOW_STATEMENT_MEAN_MS]
    figures = {
        "pg_stat_statements_installed": True,
        "slow_statements": len(slow),
        "slowest_mean_ms": rows[0]["mean_ms"] if rows else 0.0,
    }
    rows = [jsonable(r) for r in rows]
    if not slow:
        slowest = f"; the slowest averages {rows[0]['mean_ms']:.1f} ms" if rows else ""
        return CheckResult(
            name,
            "ok",
            f"no statement averages over {SLOW_STATEMENT_MEAN_MS / 1000:g} s{slowest}",
            rows,
            figures=figures,
        )
    worst = slow[0]
    return CheckResult(
        name,
        "warning",
        f"{count_of(len(slow), 'statement')} average over {SLOW_STATEMENT_MEAN_MS / 1000:g} s; the slowest "
        f"{worst['mean_ms'] / 1000:.1f} s over {worst['calls']} calls ({worst['pct_of_total_time']} % of all "
        "statement time): EXPLAIN (ANALYZE, BUFFERS) it",
        rows,
        count=len(slow),
        figures=figures,
    )


# -- unused indexes -----------------------------------------------------------------------


def unused_indexes_sql(server_version_num: int) -> str:
    """Indexes with no scan since statistics were reset, larger than the floor, that
    enforce no constraint.  ``last_idx_scan`` exists from PostgreSQL 16."""
    last_scan = "s.last_idx_scan" if server_version_num >= 160000 else "NULL::timestamptz"
    return f"""
SELECT s.schemaname AS schema,
       s.relname AS table,
       s.indexrelname AS index,
       pg_relation_size(s.indexrelid) AS size_bytes,
       s.idx_scan AS scans,
       {last_scan} AS last_scan,
       i.indisvalid AS valid,
       pg_get_indexdef(s.indexrelid) AS definition
FROM pg_catalog.pg_stat_user_indexes s
JOIN pg_catalog.pg_index i ON i.indexrelid = s.indexrelid
WHERE s.idx_scan = 0
  AND NOT i.indisunique
  AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = s.indexrelid)
  AND pg_relation_size(s.indexrelid) > :min_bytes
ORDER BY size_bytes DESC, s.schemaname, s.indexrelname
"""


def unused_indexes(db: Database) -> CheckResult:
    name = "unused_indexes"
    rows = [
        jsonable(r)
        for r in db.rows(unused_indexes_sql(db.server_version_num), min_bytes=UNUSED_INDEX_MIN_BYTES)
    ]
    total_bytes = sum(int(r["size_bytes"]) for r in rows)
    figures = {"unused_indexes": len(rows), "unused_index_bytes": total_bytes}
    if not rows:
        return CheckResult(name, "ok", "every index over 1 MB has been used", figures=figures)
    since = db.scalar(
        "SELECT stats_reset FROM pg_catalog.pg_stat_database WHERE datname = current_database()"
    )
    counted = f"since {since:%Y-%m-%d}" if since else "since statistics began"
    names = ", ".join(f"{r['schema']}.{r['index']}" for r in rows[:10]) + (" ..." if len(rows) > 10 else "")
    return CheckResult(
        name,
        "warning",
        f"{count_of(len(rows), 'index', 'indexes')} ({_size(total_bytes)}) never scanned {counted}: {names}; each "
        "slows every write. Check read replicas before dropping (DROP INDEX CONCURRENTLY)",
        rows,
        count=len(rows),
        figures=figures,
    )


# -- table bloat --------------------------------------------------------------------------

_BLOAT_SQL = f"""
SELECT s.schemaname AS schema,
       s.relname AS table,
       s.n_live_tup AS live_tuples,
       s.n_dead_tup AS dead_tuples,
       round(100.0 * s.n_dead_tup / nullif(s.n_live_tup + s.n_dead_tup, 0), 1)::float8 AS dead_pct,
       pg_table_size(s.relid) AS table_bytes,
       greatest(s.last_vacuum, s.last_autovacuum) AS last_vacuumed,
       {AUTOVACUUM_DISABLED_SQL} AS autovacuum_disabled
FROM pg_catalog.pg_stat_user_tables s
JOIN pg_catalog.pg_class c ON c.oid = s.relid
WHERE s.n_dead_tup > :min_dead
ORDER BY dead_pct DESC, s.n_dead_tup DESC
"""


def is_bloated(dead_tuples: int, dead_pct: float) -> bool:
    """Both conditions: a high share on a tiny table does not matter, and a large count
    on a huge table is ordinary churn that autovacuum is about to clean up."""
    return dead_tuples > BLOAT_MIN_DEAD_TUPLES and dead_pct > BLOAT_DEAD_PCT


def table_bloat(db: Database) -> CheckResult:
    name = "table_bloat"
    measured = [jsonable(r) for r in db.rows(_BLOAT_SQL, min_dead=BLOAT_MIN_DEAD_TUPLES)]
    bloated = [r for r in measured if is_bloated(int(r["dead_tuples"]), float(r["dead_pct"] or 0))]
    figures = {
        "bloated_tables": len(bloated),
        "worst_bloat_pct": max((float(r["dead_pct"] or 0) for r in measured), default=0.0),
        "dead_tuples": sum(int(r["dead_tuples"]) for r in measured),
    }
    if not bloated:
        return CheckResult(
            name,
            "ok",
            f"no table has more than {BLOAT_DEAD_PCT:g} % dead tuples (among those with over "
            f"{BLOAT_MIN_DEAD_TUPLES:,} dead)",
            figures=figures,
        )
    worst = bloated[0]
    disabled = [f"{r['schema']}.{r['table']}" for r in bloated if r["autovacuum_disabled"]]
    cause = (
        f"; autovacuum is disabled on {', '.join(disabled[:10])}"
        if disabled
        else "; if vacuum has run, look for what holds the xmin horizon (long transactions, replication slots)"
    )
    return CheckResult(
        name,
        "warning",
        f"{count_of(len(bloated), 'table')} over {BLOAT_DEAD_PCT:g} % dead tuples; the worst "
        f"{worst['schema']}.{worst['table']} at {worst['dead_pct']:g} % ({int(worst['dead_tuples']):,} dead): "
        f"run VACUUM{cause}",
        bloated,
        count=len(bloated),
        figures=figures,
    )


# -- lock waits ---------------------------------------------------------------------------


def lock_waits_sql(server_version_num: int) -> str:
    """Sessions of this database waiting for a lock, with the pids blocking them.

    Waiting sessions come from pg_locks (readable by every role, unlike the activity of
    other roles); ``waitstart`` exists from PostgreSQL 14.
    """
    wait_start = (
        "(SELECT min(l.waitstart) FROM pg_catalog.pg_locks l WHERE l.pid = w.pid AND NOT l.granted)"
        if server_version_num >= 140000
        else "NULL::timestamptz"
    )
    return f"""
WITH waiting AS (
    SELECT DISTINCT l.pid FROM pg_catalog.pg_locks l WHERE NOT l.granted AND l.pid IS NOT NULL
)
SELECT w.pid,
       a.usename AS user,
       a.application_name,
       a.state,
       a.wait_event_type,
       a.wait_event,
       pg_blocking_pids(w.pid) AS blocked_by,
       round(extract(epoch FROM clock_timestamp() - {wait_start})::numeric, 1)::float8 AS waiting_s,
       left(a.query, {QUERY_TEXT_CHARS}) AS query
FROM waiting w
JOIN pg_catalog.pg_stat_activity a ON a.pid = w.pid
WHERE a.datname = current_database()
ORDER BY waiting_s DESC NULLS LAST, w.pid
"""


_BLOCKERS_SQL = f"""
SELECT a.pid,
       a.usename AS user,
       a.application_name,
       a.state,
       round(extract(epoch FROM clock_timestamp() - a.xact_start)::numeric, 1)::float8 AS transaction_s,
       left(a.query, {QUERY_TEXT_CHARS}) AS query
FROM pg_catalog.pg_stat_activity a
WHERE a.pid = ANY(CAST(:pids AS int[]))
ORDER BY a.pid
"""


def lock_waits(db: Database) -> CheckResult:
    name = "lock_waits"
    waiting = [r for r in db.rows(lock_waits_sql(db.server_version_num)) if r["blocked_by"]]
    figures = {"blocked_sessions": len(waiting)}
    if not waiting:
        return CheckResult(name, "ok", "no session is waiting for a lock", figures=figures)
    blocked_pids = {r["pid"] for r in waiting}
    blocker_pids = sorted({pid for r in waiting for pid in r["blocked_by"]})
    # The head of a chain blocks others and waits for no one: it is the one to look at.
    heads = [pid for pid in blocker_pids if pid not in blocked_pids]
    blockers = db.rows(_BLOCKERS_SQL, pids=blocker_pids)
    for blocker in blockers:
        blocker["head_of_chain"] = blocker["pid"] in heads
    rows = [{**jsonable(r), "role": "blocked"} for r in waiting]
    rows += [{**jsonable(b), "role": "blocking"} for b in blockers]
    figures["blocking_sessions"] = len(blocker_pids)
    longest = waiting[0]
    waited = f" for {longest['waiting_s']:g} s" if longest["waiting_s"] is not None else ""
    return CheckResult(
        name,
        "warning",
        f"{count_of(len(waiting), 'session')} waiting for a lock (pid {longest['pid']}{waited}, blocked by "
        f"{', '.join(map(str, longest['blocked_by']))}); blocking chains start at pid "
        f"{', '.join(map(str, heads or blocker_pids))}",
        rows,
        count=len(waiting),
        figures=figures,
    )


# -- helpers ------------------------------------------------------------------------------


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
