"""Built-in checks on the live database: the security and operations half of the daily
verification (the data-quality half is the SQL files of :mod:`pgrunbook.checks.sql`).

* ``rls_disabled``: tables an API exposes without row-level security.  On Supabase,
  PostgREST serves every table of the exposed schemas to anyone holding the public ``anon``
  key, so a table without RLS is readable (often writable) from the internet: critical.
  Elsewhere it is a warning: the same gap, but only if something exposes the schema.
* ``tables_without_primary_key``: logical replication cannot replicate their updates and
  deletes, tools such as pg_repack refuse them, and duplicate rows cannot be told apart.
* ``long_transactions``: an open transaction holds back the xmin horizon, so vacuum cannot
  remove dead rows anywhere in the database (bloat), and it may hold locks that stall
  migrations and backups (the runbook's "backup process hanging" diagnosis).
* ``connections``: sessions by state, and use of ``max_connections``: at 100 % new
  connections are refused and the application is down.
* ``stale_statistics``: tables changed a lot since the planner last looked at them, the
  runbook's first suspect for "poor query performance post-migration".

Every check reads catalogs and statistics views only: no table is scanned or locked, and
none needs superuser.  A role without ``pg_read_all_stats`` (or ``pg_monitor``) sees other
roles' sessions in ``pg_stat_activity`` as ``<insufficient privilege>`` with no times or
state; those are counted and said, never guessed at.  The weekly health job reuses
:func:`connections` and :func:`stale_statistics`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pgrunbook.adapters.postgres.connection import Database, quote_literal
from pgrunbook.adapters.postgres.fingerprints import excluded_schema_regex
from pgrunbook.checks.sql import ROW_SAMPLE, CheckResult, jsonable
from pgrunbook.domain.errors import PgRunbookError, SqlError
from pgrunbook.domain.profiles import get_profile
from pgrunbook.domain.thresholds import Thresholds

CHECK_STATEMENT_TIMEOUT = "30s"
QUERY_TEXT_CHARS = 200
INSUFFICIENT_PRIVILEGE = "<insufficient privilege>"
NAMES_IN_MESSAGE = 10

# Stale statistics: autovacuum analyzes a table once its changes exceed 10 % of the rows
# the planner believes it has (autovacuum_analyze_scale_factor); a table past that line
# that has not been analyzed means autovacuum is off for it, or falling behind.  The floor
# of 1,000 changed rows keeps small tables, whose plans cannot go far wrong, out of it.
STALE_MODIFIED_SHARE = 0.10
STALE_MIN_ROWS = 1000

# Client sessions, whatever the caller may see of them: other roles' sessions show no
# backend_type, but they do show the database they are connected to, unlike the server's
# own background processes.
_CLIENT_SESSION = "(a.backend_type = 'client backend' OR (a.backend_type IS NULL AND a.datid IS NOT NULL))"

# Whether a table's own settings switch autovacuum off (reloptions keep the value as typed).
AUTOVACUUM_DISABLED_SQL = (
    "coalesce((SELECT bool_or(o ~* '^autovacuum_enabled=(false|off|no|n|f|0)$')"
    " FROM unnest(c.reloptions) AS o), false)"
)


def builtin_checks(
    db: Database,
    *,
    profile: str,
    exposed_schemas: list[str],
    thresholds: Thresholds,
    now: datetime,
) -> list[CheckResult]:
    """All built-in checks, in the order a report lists them.  A check that cannot run
    (a statement timeout, a privilege a managed platform withholds) becomes a warning
    saying why; the others still run."""
    results = [
        guarded(
            db, "rls_disabled", lambda: rls_disabled(db, profile=profile, exposed_schemas=exposed_schemas)
        ),
        guarded(db, "tables_without_primary_key", lambda: tables_without_primary_key(db, profile=profile)),
        guarded(db, "long_transactions", lambda: long_transactions(db, thresholds=thresholds, now=now)),
        guarded(db, "connections", lambda: connections(db, thresholds=thresholds)),
        guarded(db, "stale_statistics", lambda: stale_statistics(db)),
    ]
    return [sampled(result) for result in results]


def guarded(db: Database, name: str, measure: Callable[[], CheckResult]) -> CheckResult:
    """Run one check in its own read-only transaction with a statement timeout, so a
    check can neither change the database nor hang the job behind a lock."""
    db.run("BEGIN READ ONLY")
    try:
        db.run(f"SET LOCAL statement_timeout TO {quote_literal(CHECK_STATEMENT_TIMEOUT)}")
        result = measure()
    except SqlError as exc:
        db.run("ROLLBACK")
        return CheckResult(name, "warning", f"the check could not run: {exc}")
    except BaseException:
        with suppress(PgRunbookError):
            db.run("ROLLBACK")
        raise
    db.run("COMMIT")
    return result


def sampled(result: CheckResult, size: int = ROW_SAMPLE) -> CheckResult:
    """The first ``size`` rows, as the SQL checks report them; ``count`` keeps the total."""
    if len(result.rows) <= size:
        return result
    return replace(result, rows=result.rows[:size])


# -- rls_disabled -------------------------------------------------------------------------

_RLS_DISABLED_SQL = """
SELECT n.nspname AS schema,
       c.relname AS table,
       CASE WHEN c.relkind = 'p' THEN 'partitioned table'
            WHEN c.relispartition THEN 'partition'
            ELSE 'table' END AS kind
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND c.relpersistence <> 't'
  AND NOT c.relrowsecurity
  AND n.nspname::text = ANY(CAST(:schemas AS text[]))
  AND NOT EXISTS (
      SELECT 1 FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname
"""


def rls_disabled(db: Database, *, profile: str, exposed_schemas: list[str]) -> CheckResult:
    """Tables and partitioned tables of the exposed schemas without RLS enabled.

    Partitions are listed too: RLS on a partitioned table guards queries through it, not
    a client that names a partition directly, and PostgREST exposes partitions as tables.
    Tables that belong to an extension (PostGIS's ``spatial_ref_sys``) are left out: the
    application does not own them and cannot enable RLS on them.
    """
    name = "rls_disabled"
    if not exposed_schemas:
        return CheckResult(name, "ok", "no exposed schemas to check (PGRUNBOOK_EXPOSED_SCHEMAS is empty)")
    rows = db.rows(_RLS_DISABLED_SQL, schemas=list(exposed_schemas))
    where = ", ".join(exposed_schemas)
    figures = {"rls_disabled_tables": len(rows)}
    if not rows:
        return CheckResult(
            name, "ok", f"every table in {where} has row-level security enabled", figures=figures
        )
    supabase = profile == "supabase"
    why = (
        "PostgREST serves them to anyone holding the project's anon key"
        if supabase
        else "any API that exposes these schemas serves every row"
    )
    return CheckResult(
        name,
        "critical" if supabase else "warning",
        f"row-level security is disabled on {count_of(len(rows), 'table')} in {where} ({_names(rows)}): {why}; "
        "ALTER TABLE ... ENABLE ROW LEVEL SECURITY and add policies",
        rows=[jsonable(r) for r in rows],
        count=len(rows),
        figures=figures,
    )


# -- tables_without_primary_key -----------------------------------------------------------

# A partition tree is one table to the application: it is fine when its root has a primary
# key (every partition inherits it), or when every leaf partition has one of its own.  Only
# roots and ordinary tables are listed; a partition is never listed on its own.
_NO_PRIMARY_KEY_SQL = """
WITH RECURSIVE candidates AS (
    SELECT c.oid, n.nspname AS schema, c.relname AS table, c.relkind
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
      AND NOT c.relispartition
      AND c.relpersistence <> 't'
      AND n.nspname !~ :excluded
      AND NOT EXISTS (
          SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')
      AND NOT EXISTS (
          SELECT 1 FROM pg_catalog.pg_depend d
          WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
),
tree AS (
    SELECT oid AS root, oid AS member FROM candidates WHERE relkind = 'p'
    UNION ALL
    SELECT tree.root, i.inhrelid
    FROM tree JOIN pg_catalog.pg_inherits i ON i.inhparent = tree.member
),
leaves AS (
    SELECT tree.root,
           count(*) AS partitions,
           count(*) FILTER (WHERE NOT EXISTS (
               SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conrelid = m.oid AND k.contype = 'p'))
               AS partitions_without_key
    FROM tree JOIN pg_catalog.pg_class m ON m.oid = tree.member
    WHERE m.relkind = 'r'
    GROUP BY tree.root
)
SELECT c.schema,
       c.table,
       CASE WHEN c.relkind = 'p' THEN 'partitioned table' ELSE 'table' END AS kind,
       leaves.partitions,
       leaves.partitions_without_key,
       greatest(r.reltuples, 0)::bigint AS estimated_rows,
       (SELECT ic.relname
        FROM pg_catalog.pg_index x
        JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
        WHERE x.indrelid = c.oid AND x.indisunique AND x.indisvalid
          AND x.indpred IS NULL AND x.indexprs IS NULL
          AND NOT EXISTS (
              SELECT 1 FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum = ANY(x.indkey::int2[]) AND NOT a.attnotnull)
        ORDER BY ic.relname
        LIMIT 1) AS candidate_key_index
FROM candidates c
JOIN pg_catalog.pg_class r ON r.oid = c.oid
LEFT JOIN leaves ON leaves.root = c.oid
WHERE c.relkind = 'r' OR leaves.partitions_without_key > 0 OR leaves.partitions IS NULL
ORDER BY c.schema, c.table
"""


def tables_without_primary_key(db: Database, *, profile: str) -> CheckResult:
    """Application tables without a primary key (a platform's own schemas are left out:
    the application cannot change them).  ``candidate_key_index`` names a unique index on
    NOT NULL columns when there is one: ``ALTER TABLE ... ADD PRIMARY KEY USING INDEX``
    promotes it without rebuilding anything."""
    name = "tables_without_primary_key"
    excluded = excluded_schema_regex(get_profile(profile).exclude_schemas)
    rows = [jsonable(r) for r in db.rows(_NO_PRIMARY_KEY_SQL, excluded=excluded)]
    figures = {"tables_without_primary_key": len(rows)}
    if not rows:
        return CheckResult(name, "ok", "every table has a primary key", figures=figures)
    return CheckResult(
        name,
        "warning",
        f"no primary key on {count_of(len(rows), 'table')} ({_names(rows)}): logical replication cannot "
        "replicate their updates and deletes, and duplicate rows cannot be told apart",
        rows=rows,
        count=len(rows),
        figures=figures,
    )


# -- long_transactions --------------------------------------------------------------------

_OPEN_TRANSACTIONS_SQL = f"""
SELECT a.pid,
       a.usename AS user,
       a.application_name,
       a.state,
       a.xact_start,
       a.wait_event_type,
       left(a.query, {QUERY_TEXT_CHARS}) AS query
FROM pg_catalog.pg_stat_activity a
WHERE a.datname = current_database()
  AND a.pid <> pg_backend_pid()
  AND a.backend_type = 'client backend'
  AND a.xact_start IS NOT NULL
"""

_PREPARED_TRANSACTIONS_SQL = """
SELECT p.gid, p.owner AS user, p.prepared
FROM pg_catalog.pg_prepared_xacts p
WHERE p.database = current_database()
"""

_HIDDEN_SESSIONS_SQL = f"""
SELECT count(*)
FROM pg_catalog.pg_stat_activity a
WHERE a.datname = current_database()
  AND a.backend_type IS NULL
  AND a.query = {quote_literal(INSUFFICIENT_PRIVILEGE)}
"""


def long_transactions(db: Database, *, thresholds: Thresholds, now: datetime) -> CheckResult:
    """Transactions open longer than ``thresholds.long_transaction_minutes``, measured
    against ``now`` (the job's clock, so tests can move it), not the server's.

    Forgotten two-phase-commit transactions (``PREPARE TRANSACTION``) count too: they
    hold the xmin horizon and their locks until someone commits or rolls them back, and
    they survive restarts.  Query texts are cut to 200 characters: enough to recognise a
    statement, and no room for a whole payload of someone's data.
    """
    name = "long_transactions"
    threshold = thresholds.long_transaction_minutes
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    open_transactions: list[dict[str, Any]] = []
    for row in db.rows(_OPEN_TRANSACTIONS_SQL):
        row["kind"] = "session"
        row["age_minutes"] = _minutes(now - row.pop("xact_start"))
        open_transactions.append(row)
    for row in db.rows(_PREPARED_TRANSACTIONS_SQL):
        open_transactions.append(
            {
                "pid": None,
                "user": row["user"],
                "application_name": None,
                "state": "prepared",
                "wait_event_type": None,
                "query": f"PREPARE TRANSACTION {quote_literal(row['gid'])}",
                "kind": "prepared transaction",
                "age_minutes": _minutes(now - row["prepared"]),
            }
        )
    hidden = int(db.scalar(_HIDDEN_SESSIONS_SQL) or 0)
    long = sorted(
        (t for t in open_transactions if threshold.classify(t["age_minutes"]) != "ok"),
        key=lambda t: -t["age_minutes"],
    )
    figures = {
        "long_transactions": len(long),
        "oldest_transaction_minutes": max((t["age_minutes"] for t in open_transactions), default=0.0),
        "sessions_not_visible": hidden,
    }
    unseen = (
        f"; {count_of(hidden, 'session')} of other roles could not be inspected (grant pg_read_all_stats "
        "or pg_monitor)"
        if hidden
        else ""
    )
    if not long:
        return CheckResult(
            name,
            "ok",
            f"no transaction open longer than {threshold.warning:g} {threshold.unit}{unseen}",
            figures=figures,
        )
    severity = max((threshold.classify(t["age_minutes"]) for t in long), key=("warning", "critical").index)
    oldest = long[0]
    who = f"pid {oldest['pid']}" if oldest["pid"] is not None else oldest["query"]
    return CheckResult(
        name,
        severity,
        f"{count_of(len(long), 'transaction')} open longer than {threshold.warning:g} {threshold.unit}; the oldest "
        f"({who}, {oldest['user']}, {oldest['state']}) for {oldest['age_minutes']:.0f} min: it holds back "
        f"vacuum and may hold locks{unseen}",
        rows=[jsonable(t) for t in long],
        count=len(long),
        figures=figures,
    )


# -- connections --------------------------------------------------------------------------

_CONNECTIONS_BY_STATE_SQL = f"""
SELECT coalesce(a.state, 'unknown') AS state, count(*) AS sessions
FROM pg_catalog.pg_stat_activity a
WHERE {_CLIENT_SESSION}
GROUP BY 1
ORDER BY 2 DESC, 1
"""

_CONNECTION_LIMITS_SQL = """
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS superuser_reserved,
       coalesce(current_setting('reserved_connections', true), '0')::int AS reserved
"""


def state_key(state: str) -> str:
    """``idle in transaction (aborted)`` -> ``idle_in_transaction_aborted``: a figure name."""
    return re.sub(r"[^a-z0-9]+", "_", state.lower()).strip("_")


def connections(db: Database, *, thresholds: Thresholds) -> CheckResult:
    """Client sessions on the whole server by state, and their share of ``max_connections``
    (the limit is the server's, so sessions of every database count).  ``unknown`` is
    sessions of other roles whose state this role may not see."""
    name = "connections"
    by_state = {r["state"]: int(r["sessions"]) for r in db.rows(_CONNECTIONS_BY_STATE_SQL)}
    limits = db.rows(_CONNECTION_LIMITS_SQL)[0]
    total = sum(by_state.values())
    max_connections = int(limits["max_connections"])
    reserved = int(limits["superuser_reserved"]) + int(limits["reserved"])
    use_pct = round(100.0 * total / max_connections, 1) if max_connections else 0.0
    figures: dict[str, Any] = {f"connections_{k}": 0 for k in ("active", "idle", "idle_in_transaction")}
    figures.update({f"connections_{state_key(s)}": n for s, n in by_state.items()})
    figures.update(connections_total=total, connections_max=max_connections, connection_use_pct=use_pct)
    severity = thresholds.connection_use_pct.classify(use_pct)
    states = ", ".join(f"{n} {s}" for s, n in by_state.items()) or "none"
    message = f"{total} of {max_connections} connections in use ({use_pct:g} %): {states}"
    if severity != "ok":
        message += (
            f"; applications are refused at {max_connections - reserved} (the rest is reserved for "
            "superusers): find idle sessions or put a pooler in front"
        )
    rows = [{"state": s, "sessions": n} for s, n in by_state.items()]
    count = len(rows) if severity != "ok" else 0  # the states are the finding's rows only when it is one
    return CheckResult(name, severity, message, rows=rows, count=count, figures=figures)


# -- stale_statistics ---------------------------------------------------------------------

_STALE_STATISTICS_SQL = f"""
SELECT s.schemaname AS schema,
       s.relname AS table,
       s.n_live_tup AS live_rows,
       s.n_mod_since_analyze AS modified_since_analyze,
       CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS planner_rows,
       greatest(s.last_analyze, s.last_autoanalyze) AS last_analyzed,
       {AUTOVACUUM_DISABLED_SQL} AS autovacuum_disabled
FROM pg_catalog.pg_stat_user_tables s
JOIN pg_catalog.pg_class c ON c.oid = s.relid
WHERE (s.n_mod_since_analyze > :min_rows
       AND s.n_mod_since_analyze > :share * greatest(c.reltuples, 0))
   OR (s.last_analyze IS NULL AND s.last_autoanalyze IS NULL
       AND greatest(s.n_live_tup, c.reltuples) >= :min_rows)
ORDER BY s.n_mod_since_analyze DESC, s.schemaname, s.relname
"""


def stale_statistics(db: Database) -> CheckResult:
    """Tables whose planner statistics no longer describe them: more than 10 % of the
    rows (and more than 1,000) changed since the last ANALYZE, or never analyzed at all
    with at least 1,000 rows (a restored copy until its first ANALYZE: pg_restore does not
    run one).  Partitioned parents are not listed: autovacuum never analyzes them, and
    their modification counts stay at zero; run ANALYZE on them after big loads."""
    name = "stale_statistics"
    rows = [
        jsonable(r)
        for r in db.rows(_STALE_STATISTICS_SQL, min_rows=STALE_MIN_ROWS, share=STALE_MODIFIED_SHARE)
    ]
    figures = {"stale_statistics_tables": len(rows)}
    if not rows:
        return CheckResult(name, "ok", "planner statistics are current on every table", figures=figures)
    disabled = sum(1 for r in rows if r["autovacuum_disabled"])
    cause = f"; autovacuum is disabled on {disabled} of them" if disabled else ""
    return CheckResult(
        name,
        "warning",
        f"stale planner statistics on {count_of(len(rows), 'table')} ({_names(rows)}): over "
        f"{STALE_MODIFIED_SHARE:.0%} of the rows changed since the last ANALYZE, or never analyzed; "
        f"the planner misjudges them: run ANALYZE{cause}",
        rows=rows,
        count=len(rows),
        figures=figures,
    )


# -- helpers ------------------------------------------------------------------------------


def count_of(n: int, singular: str, plural: str | None = None) -> str:
    """``1 table``, ``3 tables``: findings are read by people at 7 in the morning."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def _minutes(age: Any) -> float:
    return round(age.total_seconds() / 60, 1)


def _names(rows: list[dict[str, Any]], limit: int = NAMES_IN_MESSAGE) -> str:
    names = [f"{r['schema']}.{r['table']}" for r in rows[:limit]]
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(names) + more
