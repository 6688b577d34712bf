"""The runbook's "Data Corruption Response" for chosen tables, as phases over one JSON state
(the Step Functions state machine in ``infra/constructs/workflows.py`` calls them one Lambda
invocation at a time; ``pgrunbook recover-tables start --local`` calls them in this process)::

    validate -> restore -> diff ─(nothing to repair)→ finish
                              └→ request_approval -> apply -> verify -> finish

* ``validate`` checks the request and changes nothing: the tables are named, one of
  ``backup_id`` or ``at`` at most, the backup exists and has the tables, the tables exist in
  the live database, and the side schema ``pgrunbook_recover_<short id>`` does not.
* ``restore`` puts the backup's copy of the tables into that new schema of the live database
  (:func:`pgrunbook.operations.restore.restore_into_schema`, verified against the manifest);
  the live tables are not touched.
* ``diff`` compares each live table with its copy by key-range fingerprints
  (:func:`pgrunbook.operations.diff.compare_tables`): rows deleted, inserted and changed
  since the backup, with up to 20 sample keys of each kind.  Nothing to repair ends the run.
* ``request_approval`` sends the counts, the samples and the commands that answer; no answer
  before the timeout aborts.
* ``apply`` compares again and refuses (nothing repaired) if what it would repair is not
  exactly what was approved (the database moved on since); else it builds the repair
  (:func:`pgrunbook.operations.diff.repair_script`) and applies it in one guarded transaction.
* ``verify`` compares again: the repaired kinds (deleted, changed, and inserted when the
  request said ``include_inserted``) must be zero.
* ``finish`` sends the runbook's "RESOLVED - Database Recovery Completed" notice with the
  counts repaired and drops the side schema.

``abort`` (rejected, or no answer in time): nothing was repaired; the side schema is dropped.
``fail`` (any phase after validation): the CRITICAL notice names the phase; the side schema
is kept for investigation, and the notice says so.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from pgrunbook.adapters.postgres.connection import Database, quote_ident
from pgrunbook.adapters.postgres.rangediff import TableDiff
from pgrunbook.adapters.postgres.repair import apply as apply_repair
from pgrunbook.catalog.backups import Catalog
from pgrunbook.domain.errors import (
    ConfigError,
    ConnectionLost,
    DatabaseUnreachable,
    IntegrityError,
    OperationFailed,
    PgRunbookError,
    RestoreFailed,
    TransientNotifyError,
    TransientStorageError,
    VerificationFailed,
)
from pgrunbook.domain.ids import new_report_id
from pgrunbook.domain.manifest import Manifest, TableEntry
from pgrunbook.domain.notices import Notice, resolved_message, resolved_subject
from pgrunbook.domain.results import Report
from pgrunbook.domain.selection import TableName, parse_tables
from pgrunbook.operations import registry
from pgrunbook.operations.context import OperationContext, store_report
from pgrunbook.operations.diff import compare_tables, repair_script
from pgrunbook.operations.restore import choose_backup, parse_instant, restore_into_schema
from pgrunbook.workflows import engine as workflows
from pgrunbook.workflows.engine import Retry, abort_reason, error_message

WORKFLOW = "recover-tables"
SIDE_PREFIX = "pgrunbook_recover_"
OPTIONS = ("tables", "backup_id", "at", "source", "include_inserted")
REQUEST_KEYS = (*OPTIONS, "requested_by", "reason", "approval_timeout_seconds", "execution")
PHASE_TITLES = {
    "validate": "validation",
    "restore": "restore",
    "diff": "diff",
    "request_approval": "approval",
    "apply": "apply",
    "verify": "verification",
    "finish": "finish",
}
SAMPLE_LINES = 20  # sample keys of each kind in the approval request (rangediff keeps 20)

# Which errors each phase may retry (Lambda's own throttling is retried everywhere).  The
# restore creates the side schema and the apply writes the live tables: neither is run twice.
_REPORTING = (TransientStorageError, TransientNotifyError)
_DATABASE = (DatabaseUnreachable, ConnectionLost)
RETRIES = {
    "validate": Retry(_DATABASE),
    "restore": Retry(),
    "diff": Retry(_DATABASE),
    "request_approval": Retry((TransientNotifyError,)),
    "apply": Retry(),
    "verify": Retry(_DATABASE),
    "finish": Retry(_REPORTING),
    "abort": Retry(_REPORTING),
    "fail": Retry(_REPORTING),
}


class DatabaseMoved(OperationFailed):
    """What the repair would change is no longer what was approved: nothing was repaired."""


# -- the request ---------------------------------------------------------------------------


def request_options(request: dict[str, Any]) -> dict[str, Any]:
    """The request's options checked by the registry's Option objects (the same messages as
    the CLI's flags); ConfigError for a missing ``tables`` or both ``backup_id`` and ``at``."""
    op = registry.get(WORKFLOW)
    given = {k: request[k] for k in OPTIONS if request.get(k) is not None}
    values = registry.parse_options(op, given, source="event")
    if not values["tables"]:
        raise ConfigError("--tables is required: the tables to put back, schema.table,...")
    if values["backup_id"] and values["at"]:
        raise ConfigError("give --backup-id or --at, not both")
    return values


def side_schema(recovery_id: str) -> str:
    """``pgrunbook_recover_<the id's random part>``: where the backup's copy goes."""
    return SIDE_PREFIX + recovery_id.rsplit("-", 1)[-1].lower()


def _relkind(db: Database, table: TableName) -> str | None:
    return db.scalar(
        "SELECT c.relkind::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relname = :n",
        s=table.schema,
        n=table.name,
    )


def _check_tables(db: Database, manifest: Manifest, chosen: list[TableName]) -> None:
    """Each chosen table is in the backup (a partitioned table: its partitions are) and in the
    live database, and no two of them (partitions included) share a name, which the side
    schema could not hold; ConfigError otherwise."""
    backed_up = {(t.schema, t.name) for t in manifest.tables}
    landing: dict[str, set[str]] = {}  # a name in the side schema -> the tables that would take it
    for table in chosen:
        landing.setdefault(table.name, set()).add(table.qualified)
        kind = _relkind(db, table)
        if kind is None:
            raise ConfigError(
                f"table {table.qualified} is not in the live database: this workflow puts rows back into "
                f"existing tables (a dropped table comes back with pgrunbook restore --tables "
                f"{table.qualified} --into-schema NAME)"
            )
        if (table.schema, table.name) in backed_up:
            continue
        leaves: list[list[Any]] = []
        if kind == "p":
            leaves = db.run(
                "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_partition_tree(CAST(:t AS regclass)) p "
                "JOIN pg_catalog.pg_class c ON c.oid = p.relid JOIN pg_catalog.pg_namespace n "
                "ON n.oid = c.relnamespace WHERE p.isleaf",
                t=f"{quote_ident(table.schema)}.{quote_ident(table.name)}",
            )
        if not any((s, n) in backed_up for s, n in leaves):
            raise ConfigError(f"table {table.qualified} is not in backup {manifest.backup_id}")
        for s, n in leaves:
            landing.setdefault(n, set()).add(f"{s}.{n}")
    clash = sorted(", ".join(sorted(tables)) for tables in landing.values() if len(tables) > 1)
    if clash:
        raise ConfigError(
            f"{clash[0]} have the same name: the backup's copy of them cannot share one schema "
            "(recover them in two runs)"
        )


def validate(ctx: OperationContext, request: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(request, dict):
        raise ConfigError("a table-recovery request must be a JSON object")
    unknown = sorted(set(request) - set(REQUEST_KEYS))
    if unknown:
        raise ConfigError(f"a table-recovery request does not take {', '.join(unknown)}")
    values = request_options(request)
    settings = ctx.settings
    timeout = request.get("approval_timeout_seconds", settings.pitr_approval_timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 7 * 24 * 3600:
        raise ConfigError("approval_timeout_seconds must be a whole number of seconds up to a week")
    when = parse_instant(values["at"]) if values["at"] else None
    store = settings.store(values["source"])
    store.check_bucket()
    manifest = choose_backup(Catalog(store), values["backup_id"], when)
    chosen = list(
        dict.fromkeys(parse_tables(values["tables"], [(t.schema, t.name) for t in manifest.tables]))
    )
    now = ctx.now()
    recovery_id = new_report_id(now)
    side = side_schema(recovery_id)
    live = settings.conninfo()
    with Database.connect(live, application_name="pgrunbook-recover-tables") as db:
        _check_tables(db, manifest, chosen)
        if db.scalar("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = :s", s=side):
            raise ConfigError(f"schema {side} already exists in {live.display()}: start again")
    return {
        "recovery_id": recovery_id,
        "database": settings.database_label,
        "started_at": now.isoformat(),
        "requested_by": str(request.get("requested_by") or settings.creator)[:200],
        "reason": str(request.get("reason") or "")[:500],
        "execution": request.get("execution"),
        "approval_timeout_seconds": timeout,
        "requested_tables": [t.qualified for t in chosen],
        "requested": [[t.schema, t.name] for t in chosen],
        "backup_id": manifest.backup_id,
        "snapshot_time": manifest.snapshot["time"],
        "source": values["source"],
        "include_inserted": values["include_inserted"],
        "side_schema": side,
    }


# -- the phases ----------------------------------------------------------------------------


def _manifest(ctx: OperationContext, state: dict[str, Any]) -> Manifest:
    return Catalog(ctx.settings.store(state["source"])).manifest(state["backup_id"])


def _tables(ctx: OperationContext, state: dict[str, Any]) -> tuple[Manifest, list[TableEntry]]:
    """The backup's manifest and its entries of the tables the restore put in the side schema."""
    manifest = _manifest(ctx, state)
    wanted = set(state["tables"])
    return manifest, [t for t in manifest.tables if t.qualified in wanted]


@contextmanager
def _live(ctx: OperationContext) -> Iterator[Database]:
    with Database.connect(ctx.settings.conninfo(), application_name="pgrunbook-recover-tables") as db:
        db.prepare_for_scans()
        yield db


def restore(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """The backup's copy of the tables into the side schema of the live database."""
    manifest = _manifest(ctx, state)
    side = state["side_schema"]
    result = restore_into_schema(
        ctx,
        manifest,
        ctx.settings.conninfo(),
        side,
        [TableName(s, n) for s, n in state["requested"]],
        source=state["source"],
        run_id=state["recovery_id"],
    )
    if result.status == "untested":
        gaps = "; ".join(f"{u.need} ({u.remedy})" for u in result.unmet)
        raise RestoreFailed(f"the live server cannot host backup {manifest.backup_id}: {gaps}")
    if result.error:
        raise RestoreFailed(
            f"backup {manifest.backup_id} was not restored into schema {side}: {result.error}"
        )
    mismatched = [t.table for t in result.tables if not t.match]
    if mismatched or result.restore_errors:
        raise IntegrityError(
            f"the backup's copy in schema {side} is not whole: "
            + (f"{', '.join(mismatched[:10])} differ from the manifest" if mismatched else "")
            + ("; " if mismatched and result.restore_errors else "")
            + (f"pg_restore: {result.restore_errors[0]}" if result.restore_errors else "")
        )
    selected = set(result.selected_tables)
    state["tables"] = [t.qualified for t in manifest.tables if t.qualified in selected]
    state["restore"] = {
        "tables": len(result.tables),
        "rows": sum(t.actual_rows or 0 for t in result.tables),
        "integrity_pct": result.integrity_pct,
        "seconds": result.durations.get("total_s"),
        "skipped": result.skipped[:20],
    }
    return state


def _counts(t: TableDiff) -> dict[str, Any]:
    data = t.to_dict()
    data.pop("queries", None)
    return data


def _to_repair(t: TableDiff, include_inserted: bool) -> int:
    return t.deleted_count + t.changed_count + (t.inserted_count if include_inserted else 0)


def _fingerprint(found: list[TableDiff], include_inserted: bool) -> str:
    """What the repair would change, exactly: the keys (or, without a key, the row hashes) of
    the repaired kinds, with the live row version of each row it would overwrite or delete."""
    parts = []
    for t in sorted(found, key=lambda d: d.table):
        item: dict[str, Any] = {"table": t.table, "key": t.key}
        if t.key is not None:
            item["deleted"] = sorted(list(k) for k in t.deleted)
            item["changed"] = sorted([list(k), t.live_hashes.get(k, 0)] for k in t.changed)
            if include_inserted:
                item["inserted"] = sorted([list(k), t.live_hashes.get(k, 0)] for k in t.inserted)
        else:
            item["deleted"] = sorted([h, n] for h, n in t.deleted_rows.items())
            if include_inserted:
                item["inserted"] = sorted([h, n] for h, n in t.inserted_rows.items())
        parts.append(item)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _compare(
    ctx: OperationContext, state: dict[str, Any], db: Database, tables: list[TableEntry]
) -> list[TableDiff]:
    found = compare_tables(db, db, tables, backup_schema=state["side_schema"])
    broken = [t for t in found if t.error]
    if broken:
        raise OperationFailed(
            "; ".join(f"{t.table} could not be compared with its copy: {t.error}" for t in broken[:3])
        )
    return found


def _totals(tables: list[dict[str, Any]]) -> dict[str, int]:
    return {kind: sum(int(t[kind]) for t in tables) for kind in ("deleted", "inserted", "changed")}


def diff(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """Each live table against its copy: what changed since the backup."""
    _, tables = _tables(ctx, state)
    started = time.monotonic()
    with _live(ctx) as db:
        ctx.progress.step(f"comparing {len(tables)} tables with their copies in {state['side_schema']}")
        found = _compare(ctx, state, db, tables)
    seconds = round(time.monotonic() - started, 3)
    include = bool(state["include_inserted"])
    counts = [_counts(t) for t in found]
    unlisted = [t for t in found if not t.listed and _to_repair(t, include)]
    if unlisted:  # a DELETE without WHERE on a big table: no repair names every row
        state["diff"] = {"tables": counts, "totals": _totals(counts), "seconds": seconds}
        raise OperationFailed(
            "; ".join(
                f"{t.table}: {t.deleted_count} deleted and {t.inserted_count} inserted rows are too many to "
                "repair one by one"
                for t in unlisted[:5]
            )
            + f": the backup's copy is in schema {state['side_schema']}, to be swapped in for the table by hand"
        )
    state["diff"] = {
        "tables": counts,
        "totals": _totals(counts),
        "fingerprint": _fingerprint(found, include),
        "seconds": seconds,
    }
    state["repair_needed"] = any(_to_repair(t, include) for t in found)
    # the apply compares again and repairs: sizes its runner (workflows/dispatch)
    state["apply_estimate_seconds"] = round(3 * seconds, 3)
    return state


def _sample(values: list[Any]) -> str:
    return ", ".join(json.dumps(v) if not isinstance(v, str) else v for v in values[:SAMPLE_LINES])


def approval_summary(state: dict[str, Any]) -> list[str]:
    diff = state.get("diff") or {}
    tables = diff.get("tables", [])
    differing = [t for t in tables if t["deleted"] or t["inserted"] or t["changed"]]
    include = state.get("include_inserted")
    lines = [
        f"Summary: table recovery {state['recovery_id']} of {state['database']}: {len(differing)} of "
        f"{len(tables)} tables differ from backup {state['backup_id']} and wait for approval to be put back",
        f"Requested by: {state['requested_by']}" + (f" ({state['reason']})" if state.get("reason") else ""),
        f"Backup: {state['backup_id']} (snapshot {state['snapshot_time']}, {state['source']} bucket)",
        f"Backup's copy: schema {state['side_schema']} of the live database",
        "Repair: re-insert deleted rows, put back changed rows, "
        + ("delete rows inserted since the backup" if include else "keep rows inserted since the backup"),
    ]
    for t in differing:
        lines.append(
            f"{t['table']}: {t['deleted']} deleted, {t['inserted']} inserted, {t['changed']} changed "
            f"(backup {t['backup_rows']} rows, now {t['live_rows']}; key {', '.join(t['key'] or []) or 'none'})"
        )
        for kind in ("deleted", "changed", "inserted"):
            if t["samples"][kind]:
                more = t[kind] - len(t["samples"][kind])
                lines.append(
                    f"  {kind}: {_sample(t['samples'][kind])}" + (f" (and {more} more)" if more > 0 else "")
                )
    unchanged = [t["table"] for t in tables if t not in differing]
    if unchanged:
        lines.append(f"Unchanged: {', '.join(unchanged)}")
    lines.append(
        "The repair is one transaction; before it runs the tables are compared again, and it is refused "
        "if what it would change is not exactly what this comparison found."
    )
    return lines


def request_approval(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    return workflows.request_approval(
        ctx,
        state,
        workflow=WORKFLOW,
        title="Table Recovery",
        summary=approval_summary(state),
        without_answer="nothing is repaired and the backup's copy is dropped.",
    )


def apply(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """Compare again; repair only what was approved, in one guarded transaction."""
    manifest, tables = _tables(ctx, state)
    include = bool(state["include_inserted"])
    approved = state["diff"]
    started = time.monotonic()
    with _live(ctx) as db:
        found = _compare(ctx, state, db, tables)
        if _fingerprint(found, include) != approved["fingerprint"]:
            now = _totals([_counts(t) for t in found])
            was = approved["totals"]
            what = (
                f"now {now['deleted']} deleted, {now['changed']} changed, {now['inserted']} inserted; approved "
                f"{was['deleted']} deleted, {was['changed']} changed, {was['inserted']} inserted"
                if now != was
                else "the same counts, but other rows or other row versions"
            )
            raise DatabaseMoved(
                f"the tables changed since the approval ({what}): nothing was repaired; "
                "start a new recovery to see what differs now"
            )
        script = repair_script(
            db,
            db,
            tables,
            found,
            manifest,
            database=state["database"],
            include_inserted=include,
            generated_at=ctx.now().isoformat(),
            backup_schema=state["side_schema"],
        )
        ctx.progress.step(f"applying the repair ({len(script.statements)} statements, one transaction)")
        apply_repair(db, script)
    state["repair"] = {
        "counts": script.counts,
        "totals": {
            kind: sum(c[kind] for c in script.counts.values()) for kind in ("deleted", "changed", "inserted")
        },
        "statements": len(script.statements),
        "header": [line for line in script.header if line][:60],
        "seconds": round(time.monotonic() - started, 3),
    }
    return state


def verify(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """Compare again: the repaired kinds must be zero."""
    _, tables = _tables(ctx, state)
    include = bool(state["include_inserted"])
    with _live(ctx) as db:
        found = _compare(ctx, state, db, tables)
    counts = [_counts(t) for t in found]
    left = [t for t in found if _to_repair(t, include)]
    state["verification"] = {"tables": counts, "totals": _totals(counts)}
    if left:
        raise VerificationFailed(
            "after the repair, differences remain in "
            + "; ".join(
                f"{t.table} ({t.deleted_count} deleted, {t.changed_count} changed"
                + (f", {t.inserted_count} inserted)" if include else ")")
                for t in left[:10]
            )
        )
    return state


def _drop_side(ctx: OperationContext, state: dict[str, Any]) -> str:
    side = state["side_schema"]
    if not side.startswith(SIDE_PREFIX):  # never anything but this workflow's own schema
        raise ConfigError(f"{side!r} is not a table-recovery side schema")
    with Database.connect(ctx.settings.conninfo(), application_name="pgrunbook-recover-tables") as db:
        db.run(f"DROP SCHEMA IF EXISTS {quote_ident(side)} CASCADE")
    return side


def _side_exists(ctx: OperationContext, side: str) -> bool | None:
    """Whether the side schema is there (None: the database could not say)."""
    try:
        with Database.connect(ctx.settings.conninfo(), application_name="pgrunbook-recover-tables") as db:
            return bool(db.scalar("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = :s", s=side))
    except PgRunbookError:
        return None


def _report(state: dict[str, Any]) -> Report:
    report = Report.start(WORKFLOW, state["database"], datetime.fromisoformat(state["started_at"]))
    report.report_id = state["recovery_id"]
    keep = (
        "recovery_id",
        "requested_by",
        "reason",
        "execution",
        "requested_tables",
        "tables",
        "backup_id",
        "snapshot_time",
        "source",
        "include_inserted",
        "side_schema",
        "restore",
        "diff",
        "approval",
        "repair",
        "verification",
    )
    report.detail["recovery"] = {k: state[k] for k in keep if k in state}
    return report


def finish(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """The side schema dropped; the RESOLVED notice (or, with nothing to repair, the report)."""
    side = _drop_side(ctx, state)
    ended = ctx.now()
    report = _report(state)
    tables = (state.get("diff") or {}).get("tables", [])
    totals = (state.get("diff") or {}).get("totals", {})
    report.figures.update(
        backup_id=state["backup_id"],
        snapshot_time=state["snapshot_time"],
        tables=len(tables),
        restore_seconds=(state.get("restore") or {}).get("seconds"),
        diff_seconds=(state.get("diff") or {}).get("seconds"),
    )
    if not state.get("repair_needed"):
        kept = totals.get("inserted", 0)
        message = (
            f"nothing to repair: the {len(tables)} tables have every row of backup {state['backup_id']} as it was"
            + (
                f" ({kept} rows inserted since the backup are kept: include_inserted deletes them)"
                if kept
                else ""
            )
            + f"; schema {side} dropped"
        )
        report.add(WORKFLOW, "ok", message)
        report.finished_at = ended.isoformat()
        if ctx.store_reports:
            store_report(ctx, report)
        state.update(outcome="nothing-to-repair", message=message, report=report.location)
        return state
    repaired = state["repair"]["totals"]
    include = bool(state["include_inserted"])
    snapshot = state["snapshot_time"]
    differing = [t["table"] for t in tables if t["deleted"] or t["changed"] or (include and t["inserted"])]
    inserted = (
        f"deleted {repaired['inserted']} rows inserted since the backup"
        if include
        else f"kept {totals.get('inserted', 0)} rows inserted since the backup"
    )
    fields = {
        "summary": f"{len(differing)} tables of {state['database']} put back to backup {state['backup_id']} "
        f"(snapshot {snapshot}) by table recovery {state['recovery_id']}: re-inserted {repaired['deleted']} "
        f"deleted rows, put back {repaired['changed']} changed rows, {inserted} ({', '.join(differing)})",
        "downtime": f"none: the tables stayed in service; the repair took {state['repair']['seconds']:.1f} s "
        "in one transaction, locking only the rows it repaired",
        "data_loss": f"the repaired rows lost what was written to them after the backup's snapshot {snapshot}; "
        "every other row and table kept its changes"
        + ("" if include else f", the {totals.get('inserted', 0)} rows inserted since the backup included"),
        "validation": "compared again after the repair: 0 deleted, 0 changed"
        + (", 0 inserted" if include else "")
        + f" rows in {len(tables)} tables against the backup's copy (restored with integrity "
        f"{(state.get('restore') or {}).get('integrity_pct')} % against the manifest)",
        "lessons_learned": "to be written by the incident's owner within 24 hours",
    }
    report.add(WORKFLOW, "ok", fields["summary"])
    report.figures.update(
        tables_repaired=len(differing),
        deleted_repaired=repaired["deleted"],
        changed_repaired=repaired["changed"],
        inserted_deleted=repaired["inserted"],
        apply_seconds=state["repair"]["seconds"],
    )
    notice = {
        "subject": resolved_subject(state["database"], ended.isoformat()),
        "message": resolved_message(fields),
    }
    report.detail.update(resolved=fields, resolved_notice=notice)
    report.finished_at = ended.isoformat()
    if ctx.store_reports:
        store_report(ctx, report)
    ctx.send(
        Notice(
            notice["subject"],
            notice["message"],
            {"job": WORKFLOW, "database": state["database"], "severity": "resolved"},
        )
    )
    state.update(outcome="repaired", resolved=fields, figures=report.figures, report=report.location)
    return state


def abort(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """Rejected or not answered in time: nothing was repaired; the side schema goes."""
    reason = abort_reason(state)
    side = _drop_side(ctx, state)
    report = _report(state)
    report.add(
        WORKFLOW,
        "warning",
        f"the tables were not repaired ({reason}); nothing in them changed and schema {side} was dropped",
    )
    report.finished_at = ctx.now().isoformat()
    if ctx.store_reports:
        store_report(ctx, report)
    ctx.publish(report)
    state.update(outcome="aborted", abort_reason=reason, report=report.location)
    return state


# what a failure in each phase left in the live tables
_LEFT = {
    "restore": "the live tables were not touched",
    "diff": "the live tables were not touched",
    "request_approval": "the live tables were not touched",
    "apply": "the repair is one transaction and did not complete: the live tables are as they were",
    "verify": "the repair was committed, but the comparison after it still finds differences",
    "finish": "the repair was committed and verified; only the finish (report, notice, dropping the "
    "backup's copy) failed",
}


def fail(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    phase = state.get("failed_phase") or "unknown"
    title = PHASE_TITLES.get(phase, phase)
    message = error_message(state.get("error"))
    parts = [
        f"table recovery {state.get('recovery_id')} of {state.get('database')} failed in the {title} phase: {message}",
        _LEFT.get(phase, "see the execution's history for what ran"),
    ]
    side = state.get("side_schema")
    exists = _side_exists(ctx, side) if side else False
    if exists or exists is None:
        parts.append(
            f"the backup's copy of the tables {'stays' if exists else 'may remain'} in schema {side} of the live "
            f"database for investigation: drop it with DROP SCHEMA {side} CASCADE when done"
        )
    report = _report(state)
    report.add(f"{WORKFLOW}:{phase}", "critical", "; ".join(parts), phase=phase, side_schema=side)
    report.finished_at = ctx.now().isoformat()
    if ctx.store_reports:
        store_report(ctx, report)
    ctx.publish(report)
    state.update(
        outcome="failed",
        failure_message=f"{title} failed: {message}"[:1000],
        side_schema_kept=bool(exists),
        report=report.location,
    )
    return state


PHASES = {
    "validate": validate,
    "restore": restore,
    "diff": diff,
    "request_approval": request_approval,
    "apply": apply,
    "verify": verify,
    "finish": finish,
    "abort": abort,
    "fail": fail,
}


def run_phase(
    ctx: OperationContext, phase: str, state: dict[str, Any], *, execution: str | None = None
) -> dict[str, Any]:
    return workflows.run_phase(PHASES, ctx, phase, state, execution=execution, what="table-recovery")


# -- the same phases on a laptop -----------------------------------------------------------


def run_local(
    ctx: OperationContext,
    request: dict[str, Any],
    *,
    approve: Callable[[dict[str, Any]], tuple[bool, str]],
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Every phase in this process, in the state machine's order and with its retries: what
    ``pgrunbook recover-tables start --local`` runs.

    A request validation refuses raises (nothing changed).  ``approve(state)`` is asked after
    the diff when there is something to repair and returns ``(approved, who or why not)``.
    Any failure after validation runs the ``fail`` phase, as the state machine's catch does.
    """

    def step(phase: str, state: dict[str, Any]) -> dict[str, Any]:
        return workflows.with_retries(PHASES, RETRIES, phase, ctx, state, sleep)

    state = step("validate", request)
    phase = "restore"
    try:
        for phase in ("restore", "diff"):
            state = step(phase, state)
        if state["repair_needed"]:
            phase = "request_approval"
            if not workflows.approved_locally(ctx, state, approve):
                return abort(ctx, state)
            for phase in ("apply", "verify"):
                state = step(phase, state)
        phase = "finish"
        return step("finish", state)
    except Exception as exc:  # every failure after validation must be reported
        return fail(ctx, workflows.failed_in(state, phase, exc))
