"""``pgrunbook diff``: which rows changed since a backup, and the repair that puts them back.

The backup's copy of the chosen tables (every table by default) is restored into a scratch
database on the restore target (the configured server, or the embedded one: never the live
server unless it is the configured target), proven whole against its manifest, then each
table is compared with the live one by fingerprints of key ranges
(:mod:`pgrunbook.adapters.postgres.rangediff`): the live database is read, never copied.

With ``--repair-sql FILE`` the repair (:mod:`pgrunbook.adapters.postgres.repair`) is written
there; ``--apply`` runs it once the operator has typed the database's name (``--yes`` skips
the question), then compares again and reports the repaired kinds, which must be zero.

Exit status: 0 no differences (or, after ``--apply``, none left of the kinds repaired), 1
differences found, 2 bad input.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.copytext import METHOD as COPY_METHOD
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.adapters.postgres.fingerprints import discover_tables, method_for
from pgrunbook.adapters.postgres.rangediff import Column, Side, TableDiff, column_types, diff_table
from pgrunbook.adapters.postgres.repair import Script, TableRepair, apply, build
from pgrunbook.catalog.backups import Catalog
from pgrunbook.domain.errors import ConfigError, IntegrityError, OperationFailed
from pgrunbook.domain.manifest import Manifest, TableEntry
from pgrunbook.domain.results import Report
from pgrunbook.domain.selection import parse_tables
from pgrunbook.operations.context import OperationContext
from pgrunbook.operations.restore import choose_backup, parse_instant
from pgrunbook.operations.restorer import Restorer

# shown the database name and what the repair will do; True once the operator typed the name
Confirm = Callable[[str, list[str]], bool]
# pgrunbook's own schema (the backup_metadata mirror changes with every backup): compared only
# when --tables names it
OWN_SCHEMA = "pgrunbook"


@dataclass
class DiffResult:
    backup_id: str
    snapshot_time: str
    tables: list[TableDiff] = field(default_factory=list)
    repair_sql: str | None = None
    applied: bool = False
    after: list[TableDiff] = field(default_factory=list)  # the diff again, after the repair

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "backup_id": self.backup_id,
            "snapshot_time": self.snapshot_time,
            "tables": [t.to_dict() for t in self.tables],
            "repair_sql": self.repair_sql,
            "applied": self.applied,
        }
        if self.applied:
            data["after"] = [t.to_dict() for t in self.after]
        return data

    def top_level(self) -> dict[str, Any]:
        """What ``--json`` adds beside the report's common keys: the per-table list."""
        return {"tables": [t.to_dict() for t in self.tables]}


def compare_tables(
    backup: Database, live: Database, tables: list[TableEntry], *, backup_schema: str | None = None
) -> list[TableDiff]:
    """Each table of the backup's copy (``backup``; in ``backup_schema`` when the copy sits in
    a side schema, else under its own name) against the live one.  ``backup`` and ``live`` may
    be the same session (a copy in a side schema of the live database)."""
    hashing = row_hashing(backup, tables, backup_schema)
    return [
        diff_table(
            Side(backup, backup_schema or t.schema, t.name),
            Side(live, t.schema, t.name),
            *hashing[t.qualified],
            label=t.qualified,
        )
        for t in tables
    ]


def row_hashing(
    backup: Database, tables: list[TableEntry], backup_schema: str | None = None
) -> dict[str, tuple[list[Column], str]]:
    """How each table's rows are hashed on both sides: the manifest's columns and method, or,
    for a manifest whose fingerprints come from the dump's COPY text (no server-side row
    hash recorded), the typed row hash of the backup's copy as a backup would record it."""
    found: dict[str, tuple[list[Column], str]] = {}
    copied = [t for t in tables if t.method == COPY_METHOD]
    specs = {(s.schema, s.name): s for s in discover_tables(backup)} if copied else {}
    method = method_for(backup.server_version_num)
    for t in tables:
        if t.method != COPY_METHOD:
            found[t.qualified] = ([Column(c, m) for c, m in t.columns], t.method)
            continue
        spec = specs.get((backup_schema or t.schema, t.name))
        columns = dict(spec.columns) if spec is not None else {}
        found[t.qualified] = ([Column(c, columns.get(c, "text")) for c, _ in t.columns], method)
    return found


def repair_script(
    backup: Database,
    live: Database,
    tables: list[TableEntry],
    diffs: list[TableDiff],
    manifest: Manifest,
    *,
    database: str,
    include_inserted: bool,
    generated_at: str,
    backup_schema: str | None = None,
    statement_timeout: str = "15min",
    lock_timeout: str = "10s",
) -> Script:
    """The repair for the tables ``diffs`` found differing (see adapters/postgres/repair)."""
    parts = []
    hashing = row_hashing(backup, tables, backup_schema)
    for table, found in zip(tables, diffs, strict=True):
        if not found.differs or found.error or not found.listed:
            continue
        parts.append(
            TableRepair(
                table.qualified,
                Side(live, table.schema, table.name),
                Side(backup, backup_schema or table.schema, table.name),
                found,
                *hashing[table.qualified],
                column_types(backup, backup_schema or table.schema, table.name),
                include_inserted=include_inserted,
            )
        )
    header = [
        "pgrunbook repair script",
        f"database: {database}",
        f"backup: {manifest.backup_id} (snapshot {manifest.snapshot['time']})",
        f"generated: {generated_at}",
        "",
    ]
    script = build(parts, live, header=header, statement_timeout=statement_timeout, lock_timeout=lock_timeout)
    for part in parts:
        c = script.counts[part.label]
        left = part.diff.inserted_count - c["inserted"]
        line = (
            f"{part.label}: re-insert {c['deleted']} deleted rows, put back {c['changed']} changed rows, "
            f"delete {c['inserted']} inserted rows"
        )
        if left:
            line += f" ({left} inserted rows kept: --include-inserted deletes them)"
        script.header.append(line)
    for found in diffs:
        if found.error:
            script.header.append(f"{found.table}: not repaired: {found.error}")
        elif not found.listed:
            script.header.append(
                f"{found.table}: not repaired: {found.deleted_count} deleted and {found.inserted_count} inserted rows "
                "are too many to name one by one; restore the table beside the others "
                f"(pgrunbook restore --into-schema NAME --tables {found.table}) and swap it in"
            )
    script.header += [
        "",
        "One transaction: every statement checks that its row is still as the diff saw it, or the whole",
        "repair rolls back.  Run: psql -v ON_ERROR_STOP=1 -f THIS_FILE (it has its own BEGIN and COMMIT)",
    ]
    return script


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run(
    ctx: OperationContext,
    report: Report,
    *,
    backup_id: str | None = None,
    at: str | None = None,
    source: str = "primary",
    tables: str | None = None,
    repair_sql: str | None = None,
    include_inserted: bool = False,
    apply_repair: bool = False,
    yes: bool = False,
    confirm: Confirm | None = None,
) -> None:
    settings = ctx.settings
    if apply_repair and not yes and confirm is None:
        raise ConfigError(
            "--apply asks for the database name at a terminal: pass --yes to apply without asking"
        )
    out = Path(repair_sql).expanduser() if repair_sql else None
    if out is not None and not out.parent.is_dir():
        raise ConfigError(f"--repair-sql {repair_sql}: the folder {out.parent} does not exist")
    when = parse_instant(at) if at else None
    live_info: ConnInfo = settings.conninfo()
    Database.connect(live_info, application_name="pgrunbook-diff").close()  # unreachable: exit 2
    store = settings.store(source)
    store.check_bucket()
    manifest = choose_backup(Catalog(store), backup_id, when)
    chosen = parse_tables(tables or "", [(t.schema, t.name) for t in manifest.tables])
    result = DiffResult(manifest.backup_id, manifest.snapshot["time"])
    report.payload = result
    restorer: Restorer

    def inspect(scratch: ConnInfo) -> None:
        copy = restorer.report
        if copy.restore_errors or not all(t.match for t in copy.tables):
            raise IntegrityError(
                f"the backup's copy of the tables did not restore whole: {copy.restore_errors[:2]}"
            )
        restored = [t for t in restorer.restored_tables(manifest) if chosen or t.schema != OWN_SCHEMA]
        with (
            Database.connect(scratch, application_name="pgrunbook-diff") as backup,
            Database.connect(live_info, application_name="pgrunbook-diff") as live,
        ):
            backup.prepare_for_scans()
            live.prepare_for_scans()
            ctx.progress.step(f"comparing {len(restored)} tables with {live_info.display()}")
            result.tables = compare_tables(backup, live, restored)
            differing = [t for t in result.tables if t.differs]
            if not differing or (out is None and not apply_repair):
                return
            script = repair_script(
                backup,
                live,
                restored,
                result.tables,
                manifest,
                database=report.database,
                include_inserted=include_inserted,
                generated_at=ctx.now().isoformat(),
            )
            if out is not None:
                write_atomically(out, script.text())
                result.repair_sql = str(out)
                ctx.progress.step(f"repair written to {out}")
            if not apply_repair or script.empty:
                return
            if not yes and not (confirm is not None and confirm(live_info.dbname, script.header)):
                report.add(
                    "repair", "warning", "the repair was not applied: the database name was not confirmed"
                )
                return
            try:
                apply(live, script)
            except OperationFailed as exc:
                report.add("repair", "critical", str(exc))
                return
            result.applied = True
            ctx.progress.step("repair applied; comparing again")
            repaired = {t.table for t in differing}
            result.after = compare_tables(backup, live, [t for t in restored if t.qualified in repaired])

    restorer = Restorer(
        settings,
        backup_id=manifest.backup_id,
        source=source,
        progress=ctx.progress,
        clock=ctx.clock,
        holder=f"diff {report.report_id}",
        inspect=inspect,
        tables=chosen,
    )
    copy = restorer.run()
    if copy.status == "untested":
        gaps = "; ".join(f"{u.need} ({u.remedy})" for u in copy.unmet)
        raise ConfigError(f"{copy.target} cannot host backup {manifest.backup_id}: {gaps}")
    if copy.error:
        report.add("diff", "critical", f"no diff: the backup's copy could not be restored: {copy.error}")
        return
    findings(report, result, include_inserted=include_inserted)


def findings(report: Report, result: DiffResult, *, include_inserted: bool) -> None:
    differing = [t for t in result.tables if t.differs]
    report.figures.update(
        backup_id=result.backup_id,
        snapshot_time=result.snapshot_time,
        tables=len(result.tables),
        tables_differing=len(differing),
        deleted=sum(t.deleted_count for t in result.tables),
        inserted=sum(t.inserted_count for t in result.tables),
        changed=sum(t.changed_count for t in result.tables),
        range_queries=sum(t.queries for t in result.tables),
    )
    severity = "info" if result.applied else "critical"  # applied: the repair's finding decides
    for t in differing:
        if t.error:
            hint = ""
            if "does not exist in the live database" in t.error:
                hint = f"; pgrunbook restore --into-schema NAME --tables {t.table} brings it back beside the others"
            report.add("diff", "critical", t.error + hint, table=t.table, backup_rows=t.backup_rows)
            continue
        report.add(
            "diff",
            severity,
            f"{t.table}: {t.deleted_count} deleted, {t.inserted_count} inserted, {t.changed_count} changed "
            f"since backup {result.backup_id} (backup {t.backup_rows} rows, now {t.live_rows})",
            **t.to_dict(),
        )
    if not differing:
        report.add("diff", "ok", f"{len(result.tables)} tables unchanged since backup {result.backup_id}")
    if result.repair_sql:
        report.add("repair", "info", f"repair script written to {result.repair_sql}")
    if result.applied:
        left = [
            t
            for t in result.after
            if t.error or t.deleted_count or t.changed_count or (include_inserted and t.inserted_count)
        ]
        report.figures["repaired_tables"] = len(result.after)
        if left:
            report.add(
                "repair",
                "critical",
                "after the repair, differences remain in " + ", ".join(t.table for t in left),
                after=[t.to_dict() for t in left],
            )
        else:
            kept = sum(t.inserted_count for t in result.after)
            report.add(
                "repair",
                "ok",
                f"repair applied: {len(result.after)} tables back to backup {result.backup_id} for the repaired "
                "rows (deleted 0, changed 0"
                + (", inserted 0)" if include_inserted else f"; {kept} inserted rows kept)"),
                after=[t.to_dict() for t in result.after],
            )
