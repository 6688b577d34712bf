"""``pgrunbook restore``: the runbooks' "execute full database restoration" and "restore
specific tables from backup", as one command.

* A full restore (``--target-url``): the database the URL names is created on that server
  (or used if it exists and is empty; one that has tables is refused, exit 2, nothing
  changed).  The restore engine (:class:`~pgrunbook.operations.restorer.Restorer`) verifies
  every file's SHA-256 before restoring anything, runs the pre-flight against the target (a
  gap is a refusal: the target cannot host the backup), recreates the roles the dump refers
  to (``NOLOGIN``; ``--role-map old=new`` gives a role's objects and grants to a role the
  target has instead), keeps owners and grants, and compares every restored table's rows and
  fingerprint with the manifest.  A restore that fails drops the database it created: nothing
  half-restored is left looking like a recovery (a killed run's database is marked scratch
  and the next restore on that server drops it).
* A partial restore (``--tables``, ``--schemas``): only those, with what belongs to them
  (:mod:`pgrunbook.domain.selection`); foreign keys that point outside are skipped and listed.
* ``--into-schema NAME``: the chosen tables land in a new schema of an existing database
  (``--target-url``, else the configured database, the live one included), the originals
  untouched.  They are restored into a scratch database on that server, moved into the new
  schema there, and copied over with pg_dump/pg_restore of that schema alone; the copies are
  then compared with the manifest where they landed.

The report carries the runbook's "RESOLVED - Database Recovery Completed" fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pgrunbook.adapters.postgres.connection import Database, qualified, quote_ident
from pgrunbook.adapters.postgres.copytext import METHOD as COPY_METHOD
from pgrunbook.adapters.postgres.copytext import fingerprint_all
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.adapters.postgres.fingerprints import compute_all, partition_roots
from pgrunbook.adapters.postgres.tools import find_pg_dump, find_pg_restore, find_tool, run_tool
from pgrunbook.catalog.backups import Catalog
from pgrunbook.domain.errors import ConfigError, RestoreFailed
from pgrunbook.domain.integrity import TableCheck, compare, integrity_pct
from pgrunbook.domain.manifest import Manifest, TableEntry
from pgrunbook.domain.notices import resolved_message, resolved_subject
from pgrunbook.domain.results import Report
from pgrunbook.domain.selection import TableName, parse_tables
from pgrunbook.operations.context import OperationContext
from pgrunbook.operations.restorer import Restorer, RestoreResult, copy_session
from pgrunbook.settings.options import split_list

MAINTENANCE_DATABASES = ("postgres", "template1")


def parse_role_map(text: str | None) -> dict[str, str]:
    """``old=new,...`` as a mapping; ConfigError for anything else."""
    mapping: dict[str, str] = {}
    for item in split_list(text):
        source, eq, target = (part.strip() for part in item.partition("="))
        if not eq or not source or not target:
            raise ConfigError(f"--role-map entry {item!r} is not old=new")
        mapping[source] = target
    return mapping


def choose_backup(catalog: Catalog, backup_id: str | None, at: datetime | None) -> Manifest:
    """The backup by id, else the newest whose snapshot is at or before ``at``, else the newest."""
    if backup_id and at:
        raise ConfigError("give --backup-id or --at, not both")
    if at is not None:
        return catalog.at(at)
    return catalog.to_restore(backup_id)[0]


def admin_target(server: ConnInfo) -> ConnInfo:
    """A connection to the target server that does not need the new database to exist."""
    last: Exception | None = None
    for name in MAINTENANCE_DATABASES:
        candidate = server.with_dbname(name)
        try:
            Database.connect(candidate, application_name="pgrunbook-restore").close()
            return candidate
        except Exception as exc:
            last = exc
    assert last is not None
    raise last


def run(
    ctx: OperationContext,
    report: Report,
    *,
    target_url: str | None = None,
    backup_id: str | None = None,
    at: str | None = None,
    source: str = "primary",
    tables: str | None = None,
    schemas: str | None = None,
    into_schema: str | None = None,
    role_map: str | None = None,
) -> None:
    settings = ctx.settings
    chosen_schemas = split_list(schemas)
    roles = parse_role_map(role_map)
    if into_schema is not None and not (tables or chosen_schemas):
        raise ConfigError("--into-schema needs --tables or --schemas: it restores chosen tables")
    if into_schema is None and not target_url:
        raise ConfigError("restore needs --target-url (a new or empty database), or --into-schema")
    when = parse_instant(at) if at else None
    store = settings.store(source)
    store.check_bucket()
    manifest = choose_backup(Catalog(store), backup_id, when)
    chosen = parse_tables(tables or "", [(t.schema, t.name) for t in manifest.tables])
    if into_schema is not None:
        live = ConnInfo.parse(target_url, what="target URL") if target_url else settings.conninfo()
        result = restore_into_schema(
            ctx,
            manifest,
            live,
            into_schema,
            chosen,
            chosen_schemas,
            source=source,
            roles=roles,
            run_id=report.report_id,
        )
        report.detail["into_schema"] = into_schema
    else:
        assert target_url is not None
        url = ConnInfo.parse(target_url, what="target URL")
        result = Restorer(
            settings,
            backup_id=manifest.backup_id,
            source=source,
            keep=True,
            keep_on_failure=False,
            progress=ctx.progress,
            target=admin_target(url),
            clock=ctx.clock,
            holder=f"restore {report.report_id}",
            database_name=url.dbname,
            existing_ok=True,
            tables=chosen,
            schemas=chosen_schemas,
            role_map=roles,
        ).run()
        result.target = url.display()
    _findings(ctx, report, manifest, result, into_schema)


def parse_instant(text: str) -> datetime:
    value = text.strip()
    if value.upper().endswith(" UTC"):
        value = value[:-4] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--at {text!r} is not an ISO 8601 time (e.g. 2026-12-01T14:30:00Z)") from None
    if parsed.tzinfo is None:
        raise ConfigError(f"--at {text!r} has no time zone: add Z or an offset")
    return parsed


def restore_into_schema(
    ctx: OperationContext,
    manifest: Manifest,
    live: ConnInfo,
    side: str,
    tables: list[TableName],
    schemas: Sequence[str] = (),
    *,
    source: str = "primary",
    roles: dict[str, str] | None = None,
    run_id: str,
) -> RestoreResult:
    """Restore the chosen tables into a scratch database on the live server, move them into
    ``side`` there, then copy that schema alone into the live database and verify it there.
    ConfigError (nothing changed) if ``side`` exists or two chosen tables share a name."""
    with Database.connect(live, application_name="pgrunbook-restore") as db:
        if db.scalar("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = :s", s=side):
            raise ConfigError(f"schema {side} already exists in {live.display()}: name a new one")
    wanted = [t for t in manifest.tables if TableName(t.schema, t.name) in tables or t.schema in schemas]
    names = [t.name for t in wanted]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ConfigError(f"--into-schema would put two tables named {', '.join(clash)} in {side}")
    landed: list[TableEntry] = []
    restorer: Restorer

    def move(scratch: ConnInfo) -> None:
        assert restorer.selection is not None
        with Database.connect(scratch, application_name="pgrunbook-restore") as db:
            db.run(f"CREATE SCHEMA {quote_ident(side)}")
            for table in restorer.selection.tables:
                db.run(f"ALTER TABLE {qualified(table.schema, table.name)} SET SCHEMA {quote_ident(side)}")
            major = db.server_version_num // 10000
        if restorer.report.restore_errors or not all(t.match for t in restorer.report.tables):
            return  # the backup's copy is not whole: nothing goes into the live database
        archive = ctx.settings.work_path / f"pgrunbook-into-schema-{run_id}.dump"
        dumper = find_pg_dump(major, pg_bin=ctx.settings.pg_bin)
        try:
            dump = run_tool(
                dumper,
                ["--format=custom", f"--schema={side}", f"--file={archive}", "--no-password"],
                scratch,
            )
            if dump.returncode != 0:
                raise RestoreFailed(f"pg_dump of the restored tables failed: {dump.tail(3)}")
            restore = run_tool(
                find_pg_restore(dumper.major, major, pg_bin=ctx.settings.pg_bin),
                ["--no-password", "--exit-on-error", "--single-transaction", str(archive)],
                live,
            )
            if restore.returncode != 0:
                raise RestoreFailed(f"copying schema {side} into {live.dbname} failed: {restore.tail(3)}")
        finally:
            archive.unlink(missing_ok=True)
        chosen = {(t.schema, t.name) for t in restorer.selection.tables}
        landed.extend(
            TableEntry(side, t.name, t.rows, t.fingerprint, t.method, t.columns)
            for t in manifest.tables
            if (t.schema, t.name) in chosen
        )

    restorer = Restorer(
        ctx.settings,
        backup_id=manifest.backup_id,
        source=source,
        progress=ctx.progress,
        target=live,
        clock=ctx.clock,
        holder=f"restore {run_id}",
        inspect=move,
        tables=tables,
        schemas=schemas,
        role_map=roles,
    )
    result = restorer.run()
    result.target = f"{live.display()} schema {side}"
    result.scratch_database = None
    if landed:
        result.tables = _verify_landed(ctx, live, landed, copy_session(manifest))
        result.tables_matching = sum(1 for t in result.tables if t.match)
        result.integrity_pct = integrity_pct(result.tables)
        if result.integrity_pct < 100.0:
            result.status = "critical"
        ctx.progress.step(
            f"{len(landed)} tables in {live.dbname}.{side}: {result.tables_matching} match the manifest"
        )
    elif result.error is None and result.status == "ok":
        result.status, result.error = "critical", "the restored tables did not match the manifest: not copied"
    return result


def _verify_landed(
    ctx: OperationContext, live: ConnInfo, landed: list[TableEntry], session_settings: list[tuple[str, str]]
) -> list[TableCheck]:
    errors: dict[str, str] = {}

    def session() -> Database:
        db = Database.connect(live, application_name="pgrunbook-verify")
        db.prepare_for_scans()
        return db

    results: dict[str, tuple[int, str]] = {}
    with Database.connect(live, application_name="pgrunbook-verify") as db:
        major = db.server_version_num // 10000
        trees = partition_roots(db)
    copied = [t for t in landed if t.method == COPY_METHOD]
    if copied:
        psql = find_tool("psql", major, pg_bin=ctx.settings.pg_bin)
        results.update(fingerprint_all(live, copied, session_settings, psql=psql, errors=errors))
    for method in sorted({t.method for t in landed if t.method != COPY_METHOD}):
        results.update(compute_all(session, [t for t in landed if t.method == method], method, errors=errors))
    return compare(landed, results, errors, trees)


def _findings(
    ctx: OperationContext, report: Report, manifest: Manifest, result: RestoreResult, into_schema: str | None
) -> None:
    report.payload = result
    report.figures.update(
        backup_id=manifest.backup_id,
        snapshot_time=manifest.snapshot["time"],
        target=result.target,
        tables=len(result.tables),
        tables_matching=result.tables_matching,
        rows=sum(t.actual_rows or 0 for t in result.tables),
        integrity_pct=result.integrity_pct,
        duration_s=result.durations.get("total_s"),
    )
    if result.status == "untested":
        gaps = "; ".join(f"{u.need} ({u.remedy})" for u in result.unmet)
        raise ConfigError(
            f"{result.target} cannot host backup {manifest.backup_id}: {gaps}; nothing was restored"
        )
    for note in result.skipped:
        report.add("restore", "info", note)
    if result.error:
        report.add("restore", "critical", f"backup {manifest.backup_id} was not restored: {result.error}")
        return
    mismatched = [t.table for t in result.tables if not t.match]
    if mismatched:
        report.add(
            "restore",
            "critical",
            f"{len(mismatched)} of {len(result.tables)} restored tables differ from the manifest "
            f"({', '.join(mismatched[:10])})",
            tables=[t.to_dict() for t in result.tables if not t.match][:50],
        )
    if result.restore_errors:
        report.add(
            "restore",
            "critical",
            f"pg_restore reported {len(result.restore_errors)} errors",
            errors=result.restore_errors[:20],
        )
    if mismatched or result.restore_errors:
        return
    where = result.target
    snapshot = manifest.snapshot_time
    age = (ctx.now() - snapshot).total_seconds()
    rows = sum(t.actual_rows or 0 for t in result.tables)
    kind = f"{len(result.tables)} tables" + (f" into schema {into_schema}" if into_schema else "")
    summary = f"backup {manifest.backup_id} restored into {where}: {kind}, every one matching the manifest"
    report.add("restore", "ok", summary)
    fields: dict[str, Any] = {
        "summary": summary,
        "downtime": f"the restore took {result.durations.get('total_s', 0):.1f} s (add the time before it was started)",
        "data_loss": f"everything written after the backup's snapshot {snapshot.isoformat()} "
        f"({age / 3600:.1f} h before the restore)",
        "validation": f"integrity {result.integrity_pct:.2f} %: {len(result.tables)} tables, {rows} rows, "
        "row counts and fingerprints equal to the manifest; checksums of every file verified",
        "lessons_learned": "to be written by the incident's owner within 24 hours",
    }
    report.detail["resolved"] = fields
    report.detail["resolved_notice"] = {
        "subject": resolved_subject(report.database, ctx.now().isoformat()),
        "message": resolved_message(fields),
    }
