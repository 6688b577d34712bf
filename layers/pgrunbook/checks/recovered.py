"""Verification of a recovered database, before anyone is let back in.

The runbook's checks, made general:

* critical tables (``PGRUNBOOK_CRITICAL_TABLES``, e.g. ``public.projects,public.tasks``)
  exist and are not empty; every table's row count is reported;
* no row was created after the target: in every table with a ``created_at`` or
  ``inserted_at`` timestamp column (``PGRUNBOOK_CREATED_AT_COLUMNS``), nothing is newer than
  the recovery point (the runbook's ``SELECT MAX(created_at) FROM auction_data``);
* no orphaned references: for every foreign key, no child row whose parent is missing (the
  runbook's ``vehicles v LEFT JOIN auctions a ... WHERE a.id IS NULL``, for all of them);
* the data-quality checks of ``sql/checks`` and ``PGRUNBOOK_CHECKS_DIR``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgrunbook.adapters.postgres.connection import Database, qualified, quote_ident
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.adapters.postgres.fingerprints import discover_tables
from pgrunbook.checks.sql import SqlCheck, run_checks

_FOREIGN_KEYS = """
SELECT con.conname AS name,
       cn.nspname AS child_schema, cc.relname AS child,
       pn.nspname AS parent_schema, pc.relname AS parent,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, i)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.i)
           AS child_columns,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, i)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.i)
           AS parent_columns
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class cc ON cc.oid = con.conrelid
JOIN pg_catalog.pg_namespace cn ON cn.oid = cc.relnamespace
JOIN pg_catalog.pg_class pc ON pc.oid = con.confrelid
JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0
  AND cn.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 2, 3, 1
"""

_TIME_COLUMNS = """
SELECT n.nspname AS schema, c.relname AS table, a.attname AS column
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
  AND a.atttypid IN ('timestamptz'::regtype, 'timestamp'::regtype)
  AND a.attname = ANY(CAST(:names AS text[]))
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND NOT c.relispartition
ORDER BY 1, 2, 3
"""


def orphan_sql(fk: dict[str, Any]) -> str:
    child, parent = qualified(fk["child_schema"], fk["child"]), qualified(fk["parent_schema"], fk["parent"])
    set_ = " AND ".join(f"ch.{quote_ident(c)} IS NOT NULL" for c in fk["child_columns"])  # MATCH SIMPLE
    join = " AND ".join(
        f"p.{quote_ident(p)} = ch.{quote_ident(c)}"
        for c, p in zip(fk["child_columns"], fk["parent_columns"], strict=True)
    )
    return f"SELECT count(*) FROM {child} AS ch WHERE {set_} AND NOT EXISTS (SELECT 1 FROM {parent} AS p WHERE {join})"


def verify_recovery(
    info: ConnInfo,
    *,
    recovery_point: datetime,
    critical_tables: list[str],
    created_columns: list[str],
    checks: list[SqlCheck],
    exclude_schemas: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Check the recovered database; returns the evidence and the list of problems."""
    problems: list[str] = []
    with Database.connect(info, application_name="pgrunbook-pitr-verify") as db:
        db.prepare_for_scans()
        tables = {s.qualified: s for s in discover_tables(db, exclude_schemas)}
        counts = {
            name: int(db.scalar(f"SELECT count(*) FROM ONLY {qualified(spec.schema, spec.name)}"))
            for name, spec in tables.items()
        }
        for name in critical_tables:
            qualified_name = name if "." in name else f"public.{name}"
            if qualified_name not in counts:
                # a partitioned table: its rows are in its partitions
                total = sum(v for k, v in counts.items() if k.startswith(qualified_name + "_"))
                exists = db.scalar("SELECT to_regclass(:t) IS NOT NULL", t=qualified_name)
                if not exists:
                    problems.append(f"critical table {qualified_name} is missing")
                    continue
                counts.setdefault(qualified_name, total)
            if counts.get(qualified_name, 0) == 0:
                problems.append(f"critical table {qualified_name} is empty")
        after: dict[str, int] = {}
        for row in db.rows(_TIME_COLUMNS, names="{" + ",".join(created_columns) + "}"):
            table = qualified(row["schema"], row["table"])
            newer = int(
                db.scalar(
                    f"SELECT count(*) FROM {table} WHERE {quote_ident(row['column'])} > CAST(:point AS timestamptz)",
                    point=recovery_point,
                )
            )
            if newer:
                after[f"{row['schema']}.{row['table']}.{row['column']}"] = newer
        for column, newer in after.items():
            problems.append(
                f"{newer} rows of {column} are newer than the recovery point {recovery_point.isoformat()}"
            )
        orphans: dict[str, int] = {}
        for fk in db.rows(_FOREIGN_KEYS):
            missing = int(db.scalar(orphan_sql(fk)))
            if missing:
                orphans[f"{fk['child_schema']}.{fk['child']} ({fk['name']})"] = missing
        for where, missing in orphans.items():
            problems.append(f"{missing} rows of {where} reference a missing parent")
        results = run_checks(db, checks)
    for result in results:
        if result.severity == "critical":
            problems.append(result.message)
    return {
        "row_counts": counts,
        "rows_after_recovery_point": after,
        "orphaned_references": orphans,
        "checks": [
            {"check": r.name, "severity": r.severity, "message": r.message, "count": r.count} for r in results
        ],
        "problems": problems,
    }
