"""The weekly health check (Mondays 07:00): the runbook's performance review as a job.

It looks for what degrades a database slowly, before users notice:

* ``slow_statements``: the ten statements with the highest mean time, from
  pg_stat_statements when it is installed in this database; any over 1 s on average is a
  warning (the runbook's "queries slower than 1 second").  Without the extension there is
  nothing to measure, and the report says so and how to enable it.
* ``unused_indexes``: indexes never scanned since statistics were last reset and larger
  than 1 MB.  Each one slows every write and takes space in every backup.  Indexes that
  enforce a constraint (primary key, unique, exclusion) are never listed: they work
  without being scanned.  Counters are per server, so an index used only on a read
  replica looks unused here; the message says since when the counters run.
* ``table_bloat``: the dead-tuple estimate of pg_stat_user_tables.  A table is flagged
  when more than 20 % of its tuples are dead *and* there are more than 10,000 of them:
  vacuum is not keeping up (autovacuum disabled or throttled, or a long transaction or
  replication slot holding the xmin horizon).  It is an estimate from statistics, not a
  page-level measure (that needs pgstattuple), and it is free to take.
* ``lock_waits``: sessions waiting for a lock right now, and which sessions block them
  (``pg_blocking_pids``), the head of each chain being the one to look at.  A weekly
  snapshot only catches waits that happen to be in progress; they are worth a warning
  because a wait seen at random is rarely the only one.
* ``stale_statistics`` and ``connections``: as in the daily verification
  (:mod:`pgrunbook.checks.live`).

Figures (database size, connection use, unused indexes, worst bloat, blocked sessions,
slow statements, cache hit ratio, deadlocks) feed dashboards and CloudWatch metrics;
``report.detail`` keeps the full lists.  The job only reads catalogs and statistics, with
a lock timeout so that it gives up on an object someone holds an exclusive lock on rather
than queue behind it.
"""

from __future__ import annotations

from dataclasses import replace

from pgrunbook.adapters.postgres.connection import Database, quote_literal
from pgrunbook.checks.live import connections, guarded, stale_statistics
from pgrunbook.checks.performance import (
    database_figures,
    lock_waits,
    slow_statements,
    table_bloat,
    unused_indexes,
)
from pgrunbook.checks.sql import ROW_SAMPLE, add_to_report
from pgrunbook.domain import metrics
from pgrunbook.domain.errors import DatabaseUnreachable, SqlError
from pgrunbook.domain.results import Report
from pgrunbook.operations.context import OperationContext

SESSION_STATEMENT_TIMEOUT = "60s"
SESSION_LOCK_TIMEOUT = "5s"


def run(ctx: OperationContext, report: Report) -> None:
    """The weekly health report of the configured database."""
    settings = ctx.settings
    thresholds = settings.thresholds
    try:
        db = Database.connect(settings.conninfo(), application_name="pgrunbook-health")
    except DatabaseUnreachable as exc:  # as in verify: a database that is down is the news
        report.add("database", "critical", str(exc))
        return
    with db:
        db.run(f"SET statement_timeout TO {quote_literal(SESSION_STATEMENT_TIMEOUT)}")
        db.run(f"SET lock_timeout TO {quote_literal(SESSION_LOCK_TIMEOUT)}")
        try:
            report.figures.update(database_figures(db))
        except SqlError as exc:
            report.add("database", "warning", f"could not measure the database: {exc}")
        results = [
            guarded(db, "slow_statements", lambda: slow_statements(db)),
            guarded(db, "unused_indexes", lambda: unused_indexes(db)),
            guarded(db, "table_bloat", lambda: table_bloat(db)),
            guarded(db, "lock_waits", lambda: lock_waits(db)),
            guarded(db, "stale_statistics", lambda: stale_statistics(db)),
            guarded(db, "connections", lambda: connections(db, thresholds=thresholds)),
        ]
    for result in results:
        # The report's detail keeps every row; a finding carries a sample, as SQL checks do.
        report.detail[result.name] = result.rows
        sample = replace(result, rows=result.rows[:ROW_SAMPLE])
        add_to_report(report, [sample])
    for metric, key in (
        (metrics.DATABASE_SIZE, "database_size_bytes"),
        (metrics.CONNECTION_USE, "connection_use_pct"),
        (metrics.UNUSED_INDEXES, "unused_indexes"),
        (metrics.WORST_BLOAT, "worst_bloat_pct"),
        (metrics.BLOCKED_SESSIONS, "blocked_sessions"),
        (metrics.SLOW_STATEMENTS, "slow_statements"),
    ):
        value = report.figures.get(key)
        if isinstance(value, int | float):
            report.measure(metric, value)
