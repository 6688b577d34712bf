"""The restore engine: restore a backup into a fresh database and prove it complete.

The restore test, the DR drill, the logical point-in-time recovery and the migration dry run
all restore through :class:`Restorer`:

1. Find the backup (by id, or the newest complete one) in the primary or the DR bucket.
2. Download every file and check its size and SHA-256 against the manifest *before*
   anything is restored: a mismatch names the file and stops.
3. Pre-flight: compare what the backup needs (its manifest's ``needs``: extensions and their
   versions, languages, collations; for older manifests, the dump's table of contents) with
   what the target offers.  A target that lacks any of it cannot host the backup: the result
   is ``untested`` (one :class:`~pgrunbook.domain.needs.Unmet` per missing need, with the
   remedy), nothing is restored and no integrity is reported.  pg_restore errors that say the
   same thing (an extension, library, collation or language missing on the target) make the
   result untested too.
   Then create a scratch database on the restore target (``PGRUNBOOK_RESTORE_TARGET_URL``, or
   the embedded server), with the source's encoding and locale when the target has them.
4. Recreate the roles the dump refers to (``NOLOGIN``, never superuser) and the
   prerequisites a profile left out (schemas, functions such as ``auth.uid()``).
5. ``pg_restore --jobs=N`` into it.  Foreign keys to tables in profile-excluded schemas are
   left out (the restore report lists them); subscriptions are never restored (they would
   connect to publishers) and tablespaces are ignored (the target may not have them).
6. Recompute every table's row count and fingerprint and compare with the manifest.
7. Drop the scratch database (and the roles step 4 created) unless ``keep``.

A scratch database carries a comment that says it is pgrunbook's and which roles the run
created, and the run holds an advisory lock named after it for as long as it lives.  A run that
could not drop its scratch database (the target went away, the process was killed) leaves it
behind; the next restore on that target finds it by its comment, sees that no session holds its
lock, drops it and its roles, and says so.  A kept database is marked kept and left alone.

The scratch restore runs with ``synchronous_commit=off``: a crash would lose a disposable
database, never data, and the restore is faster for it.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgrunbook.adapters.disk import existing, free_bytes, same_filesystem
from pgrunbook.adapters.postgres.connection import Database, quote_ident, quote_literal
from pgrunbook.adapters.postgres.copytext import METHOD as COPY_METHOD
from pgrunbook.adapters.postgres.copytext import SESSION as COPY_SESSION
from pgrunbook.adapters.postgres.copytext import Fingerprinter
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.adapters.postgres.embedded import default_data_dir
from pgrunbook.adapters.postgres.embedded import start as start_embedded
from pgrunbook.adapters.postgres.fingerprints import compute_all, partition_roots, table_sizes
from pgrunbook.adapters.postgres.introspect import capabilities
from pgrunbook.adapters.postgres.tools import find_pg_restore, find_tool, run_tool
from pgrunbook.adapters.s3.store import ObjectStore, TransferSettings
from pgrunbook.catalog.backups import Catalog
from pgrunbook.catalog.leases import LEASE_TTL, Lease
from pgrunbook.domain.errors import (
    BackupIncomplete,
    ConfigError,
    DiskTooSmall,
    PgRunbookError,
    RestoreFailed,
    SqlError,
)
from pgrunbook.domain.ids import Clock, utcnow
from pgrunbook.domain.integrity import TableCheck, compare, integrity_pct
from pgrunbook.domain.manifest import FileEntry, Manifest, TableEntry
from pgrunbook.domain.needs import Needs, Unmet, needs_from_toc, unmet
from pgrunbook.domain.redact import redact
from pgrunbook.domain.results import Report
from pgrunbook.domain.selection import Selection, TableName, parse_toc, ready_after, select
from pgrunbook.operations.targets import TargetPlan, plan_target, throwaway
from pgrunbook.progress import Progress
from pgrunbook.settings.model import Settings

RESTORE_PGOPTIONS = "-c synchronous_commit=off -c maintenance_work_mem=256MB"
# pg_restore errors that mean the target lacks something the backup needs: (pattern, need)
_TARGET_ERRORS = (
    (re.compile(r'extension "([^"]+)" is not available'), "extension {}"),
    (re.compile(r'could not open extension control file "[^"]*/([^/"]+)\.control"'), "extension {}"),
    (re.compile(r'required extension "([^"]+)" is not installed'), "extension {}"),
    (re.compile(r'could not access file "(?:\$libdir/)?([^"/]+)"'), "library {}"),
    (re.compile(r'collation "([^"]+)" for encoding "[^"]+" does not exist'), "collation {}"),
    (re.compile(r'language "([^"]+)" does not exist'), "language {}"),
)
SCRATCH_MARKER = "pgrunbook"
DISK_MARGIN = 1.1  # free space wanted over the estimate  # the key of the JSON comment on a scratch database


@dataclass
class RestoreResult:
    status: str  # ok | critical | untested (the target cannot host the backup: nothing measured)
    database: str
    backup_id: str | None = None
    source: str = "primary"
    location: str | None = None
    snapshot_time: str | None = None
    target: str | None = None
    scratch_database: str | None = None
    kept: bool = False
    roles_created: list[str] = field(default_factory=list)  # dropped again unless kept
    integrity_pct: float | None = None  # None: not measured (the restore did not complete)
    tables_total: int = 0
    tables_matching: int = 0
    tables: list[TableCheck] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)
    restore_errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    unmet: list[Unmet] = field(default_factory=list)  # why the backup could not be tested
    target_plan: dict[str, Any] | None = None  # where it was restored, and why there
    rds_target: list[dict[str, Any]] = field(default_factory=list)  # a throwaway RDS target's life
    disk_needed_bytes: int = 0  # local disk the run needs: the download, and an embedded restore
    selected_tables: list[str] = field(default_factory=list)  # a partial restore's tables

    @property
    def tested(self) -> bool:
        """Whether the backup's integrity was measured (pass or fail)."""
        return self.integrity_pct is not None

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in ("tables", "unmet")}
        data["tables"] = [t.to_dict() for t in self.tables]
        data["unmet"] = [u.to_dict() for u in self.unmet]
        return data


class Restorer:
    def __init__(
        self,
        settings: Settings,
        *,
        backup_id: str | None = None,
        source: str = "primary",
        keep: bool = False,
        progress: Progress | None = None,
        transfer: TransferSettings | None = None,
        target: ConnInfo | None = None,
        prefer_tier: str | None = None,
        inspect: Callable[[ConnInfo], None] | None = None,
        clock: Clock = utcnow,
        holder: str = "restore-test",
        drill: bool = False,
        database_name: str | None = None,
        run_id: str | None = None,
        tables: Sequence[TableName] = (),
        schemas: Sequence[str] = (),
        role_map: Mapping[str, str] | None = None,
        existing_ok: bool = False,
        keep_on_failure: bool = True,
    ):
        self.settings = settings
        self.backup_id = backup_id
        self.source = source
        self.keep = keep
        self.progress = progress or Progress()
        self.store: ObjectStore = settings.store(source, transfer)
        self.explicit_target = target
        self.prefer_tier = prefer_tier
        self.inspect = inspect
        self.clock = clock
        self.holder = holder
        # A DR drill restores into the DR region's targets (its configured server, its RDS
        # subnet group), never the primary region's.
        self.drill = drill
        self.run_id = run_id or secrets.token_hex(4)  # names a throwaway RDS target
        self.plan: TargetPlan | None = None
        self.database_name = database_name  # the new database's name (a recovery), else a scratch name
        self.embedded = False  # whether the target is the embedded server (decides the remedy)
        self.embedded_data_dir: Path | None = None  # its data directory, on this machine's disk
        self.report = RestoreResult(status="ok", database=settings.database_label, source=source)
        # a partial restore: only these tables (and what belongs to them) and schemas
        self.tables, self.schemas = list(tables), list(schemas)
        self.selection: Selection | None = None
        self._listings: dict[Path, str] = {}
        # the dump's roles that are other roles on the target: their objects and grants go there
        self.role_map = dict(role_map or {})
        # ``database_name`` may exist already if it is empty (a recovery into a prepared database)
        self.existing_ok = existing_ok
        # a kept database whose restore failed is dropped unless this (a half-restored database
        # must not look like a recovery)
        self.keep_on_failure = keep_on_failure
        self.created_database = True

    @property
    def partial(self) -> bool:
        return bool(self.tables or self.schemas)

    def run(self) -> RestoreResult:
        t_start = time.monotonic()
        self.store.check_bucket()
        catalog = Catalog(self.store)
        manifest = self._choose(catalog)
        lease = Lease(self.store, manifest.backup_id, self.holder, self.clock())
        with lease:
            # Retention may have removed the backup between choosing it and leasing it.
            if not catalog.has_manifest(manifest.backup_id):
                raise BackupIncomplete(
                    f"backup {manifest.backup_id} was removed before the restore test began"
                )
            if self.explicit_target is None:
                self.plan = plan_target(self.settings, manifest, drill=self.drill)
                self.report.target_plan = self.plan.to_dict()
                self.report.notes.append(f"restore target: {self.plan.kind} ({self.plan.reason})")
            if self.plan is not None and self.plan.kind == "rds":
                return self._run_on_rds(manifest, t_start)
            return self._run(manifest, t_start)

    def _run_on_rds(self, manifest: Manifest, t_start: float) -> RestoreResult:
        """Restore into a throwaway RDS instance, deleted afterwards whatever happened."""
        events = self.report.rds_target

        def record(event: str, facts: dict[str, Any]) -> None:
            events.append({"event": event, **facts})

        try:
            with throwaway(
                self.settings,
                manifest,
                drill=self.drill,
                run_id=self.run_id,
                clock=self.clock,
                progress=self.progress,
                on_event=record,
            ) as target:
                self.explicit_target = target
                return self._run(manifest, t_start)
        except RestoreFailed as exc:  # the instance never became ready: not the backup's fault
            self.report.status, self.report.error = "critical", f"throwaway RDS restore target: {exc}"
            return self._finish(self.report, t_start)

    def _choose(self, catalog: Catalog) -> Manifest:
        manifest, fell_back = catalog.to_restore(self.backup_id, self.prefer_tier)
        if fell_back:
            self.report.notes.append(f"no {self.prefer_tier} backup yet: tested the newest backup instead")
        return manifest

    def _run(self, manifest: Manifest, t_start: float) -> RestoreResult:
        report = self.report
        report.backup_id = manifest.backup_id
        report.location = self.store.uri(self.store.backup_prefix(manifest.backup_id))
        report.snapshot_time = manifest.snapshot["time"]
        report.tables_total = len(manifest.tables)
        target = self._target(manifest)
        report.target = target.display()
        admin = Database.connect(target, application_name="pgrunbook-restore")
        workdir = self.settings.work_path / f"pgrunbook-restore-{manifest.backup_id}-{secrets.token_hex(3)}"
        scratch: str | None = None
        created_roles: list[str] = []
        completed = False
        landing: _Landing | None = None
        try:
            # what dead runs left first (a killed recovery's half-restored database is marked
            # scratch and is dropped here, so that running the same command again works)
            self._sweep(admin)
            if self.database_name is not None:
                self._check_new_database(admin, target)  # before anything else changes: exit 2
            self._check_role_map(admin)
            self._remove_abandoned_work_dirs()
            target_major = admin.server_version_num // 10000
            source_major = int(manifest.server["version_num"]) // 10000
            pg_restore = find_pg_restore(manifest.pg_dump_major, target_major, pg_bin=self.settings.pg_bin)
            if target_major < source_major:
                report.notes.append(
                    f"restoring a PostgreSQL {source_major} backup into PostgreSQL {target_major}: "
                    "expect errors for features the older server lacks"
                )
            capable = capabilities(admin, self._target_name(target))
            if manifest.needs.recorded and self._untested(
                unmet(manifest.needs, capable, remedy=self._remedy())
            ):
                return self._finish(report, t_start)
            self._check_disk(manifest, workdir)
            # 1. download and verify everything before restoring anything --------------------
            t0 = time.monotonic()
            dump_dir = workdir / "dump"
            dump_dir.mkdir(parents=True)
            files = manifest.files
            if self.partial:  # the table of contents first: it says which data files are needed
                self._download(manifest, dump_dir, [manifest.file("toc.dat")])
                files = self._select(pg_restore, manifest, dump_dir, workdir)
            self._download(manifest, dump_dir, [f for f in files if f.name != "toc.dat" or not self.partial])
            report.durations["download_s"] = round(time.monotonic() - t0, 3)
            self.progress.step(
                f"downloaded and verified {len(files)} files ({sum(f.size for f in files) / 1e6:.1f} MB) "
                f"of {manifest.backup_id} from {self.source}"
            )
            if not manifest.needs.recorded:  # an older manifest: what the dump creates, from its TOC
                toc = self._needs_from_toc(pg_restore, dump_dir, workdir)
                if self._untested(unmet(toc, capable, remedy=self._remedy())):
                    return self._finish(report, t_start)
            # 2. scratch database, roles, prerequisites, pg_restore ---------------------------
            t1 = time.monotonic()
            scratch = self._create_database(admin, manifest)
            report.scratch_database = scratch
            created_roles = self._create_roles(admin, manifest)
            report.roles_created = list(created_roles)
            self._mark(admin, scratch, created_roles)
            scratch_info = target.with_dbname(scratch)
            self._prerequisites(scratch_info, manifest)
            # 3. verify: each table as soon as pg_restore has loaded it, the rest after --------
            landing = self._landing(pg_restore, scratch_info, manifest, dump_dir, workdir)
            self._pg_restore(
                pg_restore, scratch_info, dump_dir, manifest, workdir, landing.on_line if landing else None
            )
            report.durations["restore_s"] = round(time.monotonic() - t1, 3)
            if self._untested(self._target_gaps(report.restore_errors)):
                return self._finish(report, t_start)  # the scratch database is dropped below
            t2 = time.monotonic()
            report.tables = self._verify(scratch_info, manifest, landing)
            report.tables_total = len(report.tables)
            report.durations["verify_s"] = round(time.monotonic() - t2, 3)
            self._map_roles(scratch_info, created_roles)
            if self.inspect is not None:
                self.inspect(scratch_info)
            completed = not report.restore_errors and all(t.match for t in report.tables)
        except ConfigError:
            raise  # bad configuration (pg_restore too old, ...): exit 2, nothing was restored
        except PgRunbookError as exc:
            # corrupt or missing files, S3 or database failures mid-run: a problem found
            report.status, report.error = "critical", str(exc)
            self.progress.step(f"restore test stopped: {exc}")
        finally:
            if landing is not None:
                landing.fingerprinter.cancel()
            shutil.rmtree(workdir, ignore_errors=True)
            drop = not self.keep or (not completed and not self.keep_on_failure)
            if scratch is not None and drop and self.created_database:
                self._drop(admin, scratch, created_roles)
            elif scratch is not None and drop:
                report.notes.append(
                    f"the database {scratch} existed before this run and holds a partial restore: "
                    "empty it (or drop it) before restoring into it again"
                )
            elif scratch is not None and self.created_database:
                self._mark(admin, scratch, created_roles, kept=True)
            report.kept = scratch is not None and not drop
            admin.close()
        report.tables_matching = sum(1 for t in report.tables if t.match)
        if report.error is None:
            report.integrity_pct = integrity_pct(report.tables)
            if report.integrity_pct < 100.0 or report.restore_errors:
                report.status = "critical"
        return self._finish(report, t_start)

    @staticmethod
    def _finish(report: RestoreResult, t_start: float) -> RestoreResult:
        report.durations["total_s"] = round(time.monotonic() - t_start, 3)
        return report

    # -- pre-flight ----------------------------------------------------------------------

    def _untested(self, gaps: list[Unmet]) -> bool:
        """Make the result untested when the target lacks something the backup needs."""
        if not gaps:
            return False
        report = self.report
        report.status, report.unmet = "untested", gaps
        report.restore_errors = []  # they are the target's, said by the gaps
        names = ", ".join(g.need for g in gaps)
        self.progress.step(f"not tested: {report.target} cannot host backup {report.backup_id} ({names})")
        return True

    def _target_name(self, target: ConnInfo) -> str:
        return "the embedded PostgreSQL" if self.embedded else f"the restore target {target.display()}"

    def _remedy(self) -> str:
        if self.embedded:
            prefix = "PGRUNBOOK_DR_" if self.drill else "PGRUNBOOK_"
            return (
                f"set {prefix}RESTORE_RDS_SUBNET_GROUP for a throwaway RDS target, or "
                f"{prefix}RESTORE_TARGET_URL to a server that has it"
            )
        return "point the restore target at a server that has it"

    def _needs_from_toc(self, tool, dump_dir: Path, workdir: Path) -> Needs:
        listing_file = workdir / "needs.list"
        listing = run_tool(tool, ["--list", f"--file={listing_file}", str(dump_dir)])
        if listing.returncode != 0:
            raise RestoreFailed(f"pg_restore --list failed: {listing.tail(3)}")
        return needs_from_toc(listing_file.read_text())

    def _target_gaps(self, errors: list[str]) -> list[Unmet]:
        """pg_restore errors that say the target lacks something (not that the backup is bad)."""
        gaps: dict[str, Unmet] = {}
        for line in errors:
            for pattern, need in _TARGET_ERRORS:
                match = pattern.search(line)
                if match:
                    name = need.format(*match.groups())
                    gaps.setdefault(
                        name,
                        Unmet(name, f"pg_restore: {line.split('error:', 1)[-1].strip()}", self._remedy()),
                    )
                    break
        return list(gaps.values())

    # -- steps ---------------------------------------------------------------------------

    def _target(self, manifest: Manifest) -> ConnInfo:
        if self.explicit_target is not None:
            return self.explicit_target
        plan = self.plan or plan_target(self.settings, manifest, drill=self.drill)
        if plan.kind == "server":
            configured = self.settings.dr_restore_target() if self.drill else self.settings.restore_target()
            assert configured is not None  # what made the plan a server
            return configured
        self.embedded = True
        version = plan.major or int(manifest.server["version_num"]) // 10000
        self.embedded_data_dir = default_data_dir(self.settings.home_path, version)
        server = start_embedded(
            self.embedded_data_dir,
            version,
            builds_dir=self.settings.embedded_path,
            progress=self.progress,
        )
        return server.conninfo

    def _check_disk(self, manifest: Manifest, workdir: Path) -> None:
        """Refuse, before anything is downloaded, a machine whose disk cannot hold the run: the
        download (the dump's size) in the work directory and, on the embedded target, the
        restored database (its size at backup time, else 5x the dump) in its data directory."""
        needs = [(workdir, manifest.size_bytes, f"the download, {_gb(manifest.size_bytes)}")]
        if self.embedded_data_dir is not None:
            restored = restored_bytes(manifest)
            needs.append((self.embedded_data_dir, restored, f"the restored database, about {_gb(restored)}"))
        self.report.disk_needed_bytes = sum(size for _, size, _ in needs)
        for path, _, _ in needs:
            shared = [(size, what) for other, size, what in needs if same_filesystem(path, other)]
            needed = int(sum(size for size, _ in shared) * DISK_MARGIN)
            free = free_bytes(path)
            if free < needed:
                raise DiskTooSmall(
                    f"backup {manifest.backup_id} needs about {_gb(needed)} free on the disk of {existing(path)} "
                    f"({'; '.join(what for _, what in shared)}; {DISK_MARGIN:.1f}x for headroom), which has "
                    f"{_gb(free)}: run it where the disk is larger (PGRUNBOOK_WORK_DIR, PGRUNBOOK_HOME), "
                    "or restore into a server (PGRUNBOOK_RESTORE_TARGET_URL, or a throwaway RDS target)"
                )

    def _download(
        self, manifest: Manifest, dump_dir: Path, files: Sequence[FileEntry | None] | None = None
    ) -> None:
        entries = [f for f in (manifest.files if files is None else files) if f is not None]

        def fetch(entry):
            self.store.download_file(
                self.store.key(manifest.backup_id, entry.name), dump_dir / entry.name, entry
            )

        if manifest.file("toc.dat") is None:
            raise BackupIncomplete(f"the manifest of {manifest.backup_id} lists no toc.dat")
        workers = max(1, min(self.store.transfer.concurrency, len(entries)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download") as pool:
            futures = [pool.submit(fetch, entry) for entry in entries]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def _create_database(self, admin: Database, manifest: Manifest) -> str:
        stamp = self.clock().strftime("%Y%m%d%H%M%S")
        name = self.database_name or f"pgrunbook_restore_{stamp}_{secrets.token_hex(3)}"
        if self.existing_ok and admin.scalar(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = :n", n=name
        ):
            self.created_database = False  # an empty database made for the recovery: used as it is
            return name
        base = f"CREATE DATABASE {quote_ident(name)} TEMPLATE template0"
        encoding = manifest.server.get("encoding")
        locale = ""
        if encoding:
            locale = f" ENCODING {quote_literal(encoding)}"
            if manifest.server.get("collate") and manifest.server.get("ctype"):
                locale += (
                    f" LC_COLLATE {quote_literal(manifest.server['collate'])}"
                    f" LC_CTYPE {quote_literal(manifest.server['ctype'])}"
                )
        try:
            admin.run(base + locale)
        except SqlError as exc:
            if not locale:
                raise RestoreFailed(f"cannot create the scratch database: {exc}") from None
            try:
                admin.run(base)
            except SqlError as exc2:
                raise RestoreFailed(f"cannot create the scratch database: {exc2}") from None
            self.report.notes.append(
                f"source encoding/locale not available on the target ({exc}); used defaults"
            )
        return name

    def _create_roles(self, admin: Database, manifest: Manifest) -> list[str]:
        existing = {r[0] for r in admin.run("SELECT rolname FROM pg_catalog.pg_roles")}
        created = []
        for role in manifest.roles:
            if role.name in existing:
                continue
            options = ["NOLOGIN", "INHERIT" if role.inherit else "NOINHERIT"]
            if role.bypassrls:
                options.append("BYPASSRLS")
            if role.superuser:
                self.report.notes.append(
                    f"role {role.name} is a superuser at the source; recreated without it"
                )
            try:
                admin.run(f"CREATE ROLE {quote_ident(role.name)} {' '.join(options)}")
                created.append(role.name)
            except SqlError as exc:
                self.report.restore_errors.append(f"cannot create role {role.name}: {exc}")
        if created:
            self.progress.detail(f"created {len(created)} roles: {', '.join(created)}")
        return created

    def _prerequisites(self, scratch: ConnInfo, manifest: Manifest) -> None:
        prereq = manifest.prerequisites
        if not (prereq.schemas or prereq.functions):
            return
        with Database.connect(scratch, application_name="pgrunbook-restore") as db:
            db.run("SET check_function_bodies TO off")
            for schema in prereq.schemas:
                db.run(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
            for function in prereq.functions:
                try:
                    db.run(function["definition"])
                except SqlError as exc:
                    self.report.restore_errors.append(
                        f"cannot recreate prerequisite {function['schema']}.{function['name']}(): {exc}"
                    )
        self.report.notes.append(
            f"recreated {len(prereq.schemas)} schemas and {len(prereq.functions)} functions the "
            f"{manifest.options.get('profile')} profile leaves out"
        )

    def _pg_restore(
        self,
        tool,
        scratch: ConnInfo,
        dump_dir: Path,
        manifest: Manifest,
        workdir: Path,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        args = [
            f"--jobs={self.settings.jobs}",
            *(["--verbose"] if on_line is not None else []),
            "--no-password",
            "--no-tablespaces",
            "--no-subscriptions",
        ]
        skip = [
            f"FK CONSTRAINT {fk['schema']} {fk['table']} {fk['constraint']} "
            for fk in manifest.prerequisites.external_foreign_keys
        ]
        if skip or self.selection is not None:
            listing_file = workdir / "restore.list"
            lines = self._listing(tool, dump_dir, workdir).splitlines()
            lines = [";" + line if any(s in line + " " for s in skip) else line for line in lines]
            text = "\n".join(lines) + "\n"
            listing_file.write_text(text if self.selection is None else self.selection.use_list(text))
            args.append(f"--use-list={listing_file}")
            for fk in manifest.prerequisites.external_foreign_keys:
                self.report.skipped.append(
                    f"foreign key {fk['constraint']} on {fk['schema']}.{fk['table']} references "
                    f"{fk['references']}, which the {manifest.options.get('profile')} profile leaves out"
                )
        args.append(str(dump_dir))
        self.progress.step(f"restoring with {tool.path.name} {tool.version}, {self.settings.jobs} jobs")
        result = run_tool(tool, args, scratch, on_line=on_line, extra_env={"PGOPTIONS": RESTORE_PGOPTIONS})
        errors = [line for line in result.stderr_lines if "error:" in line and "errors ignored" not in line]
        self.report.restore_errors.extend(redact(e) for e in errors[:50])
        if result.returncode != 0 and not errors:
            self.report.restore_errors.append(f"pg_restore exited {result.returncode}: {result.tail(4)}")

    def _listing(self, tool, dump_dir: Path, workdir: Path) -> str:
        """The archive's table of contents, with each entry's dependencies (listed once per
        archive: the partial selection, the skipped foreign keys and the verification as
        tables land all read it)."""
        if dump_dir not in self._listings:
            listing_file = workdir / "toc.list"
            listing = run_tool(tool, ["--list", "--verbose", f"--file={listing_file}", str(dump_dir)])
            if listing.returncode != 0:
                raise RestoreFailed(f"pg_restore --list failed: {listing.tail(3)}")
            self._listings[dump_dir] = listing_file.read_text()
        return self._listings[dump_dir]

    def _select(self, tool, manifest: Manifest, dump_dir: Path, workdir: Path) -> list[FileEntry]:
        """A partial restore's entries (ConfigError, before anything changed, for a table or
        schema the backup lacks), and the files it needs: the TOC and the chosen data."""
        known = [TableName(t.schema, t.name) for t in manifest.tables]
        self.selection = select(
            parse_toc(self._listing(tool, dump_dir, workdir)), self.tables, self.schemas, known
        )
        chosen = {f"{t.schema}.{t.name}" for t in self.selection.tables}
        self.report.selected_tables = sorted(chosen)
        self.report.skipped.extend(self.selection.skipped)
        self.progress.step(
            f"partial restore: {len(chosen)} tables"
            + (f", {len(self.selection.skipped)} references left out" if self.selection.skipped else "")
        )
        data = {str(i) for i in self.selection.ids}
        return [f for f in manifest.files if f.name == "toc.dat" or f.name.split(".", 1)[0] in data]

    def restored_tables(self, manifest: Manifest) -> list[TableEntry]:
        """The manifest's tables this run restores: all of them, or a partial restore's."""
        if self.selection is None:
            return list(manifest.tables)
        chosen = {(t.schema, t.name) for t in self.selection.tables}
        return [t for t in manifest.tables if (t.schema, t.name) in chosen]

    def _check_new_database(self, admin: Database, target: ConnInfo) -> None:
        """A recovery's database must not exist, or (``existing_ok``) be empty: refused
        before anything is changed, so nothing that holds data is ever restored over."""
        name = self.database_name
        if not admin.scalar("SELECT 1 FROM pg_catalog.pg_database WHERE datname = :n", n=name):
            return
        if not self.existing_ok:
            raise ConfigError(f"the database {name} already exists on {target.display()}")
        with Database.connect(target.with_dbname(str(name)), application_name="pgrunbook-restore") as db:
            count = db.scalar(
                "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') "
                "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' "
                "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = "
                "'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')"
            )
        if count:
            raise ConfigError(
                f"the database {name} on {target.display()} already has {count} tables, views or "
                "sequences: restore into a new or empty database"
            )

    def _check_role_map(self, admin: Database) -> None:
        if not self.role_map:
            return
        existing = {r[0] for r in admin.run("SELECT rolname FROM pg_catalog.pg_roles")}
        missing = sorted({to for to in self.role_map.values() if to not in existing})
        if missing:
            raise ConfigError(f"--role-map names roles the target does not have: {', '.join(missing)}")

    def _map_roles(self, restored: ConnInfo, created_roles: list[str]) -> None:
        """Give the objects and grants of each mapped role to the role it maps to, then remove
        the dump's role from the restored database (and from the server if this run made it)."""
        if not self.role_map:
            return
        with Database.connect(restored, application_name="pgrunbook-restore") as db:
            present = {r[0] for r in db.run("SELECT rolname FROM pg_catalog.pg_roles")}
            for source, to in self.role_map.items():
                if source not in present:
                    continue
                src, dst = quote_ident(source), quote_ident(to)
                grants = db.run(_GRANTS_TO_ROLE, role=source)
                db.run(f"REASSIGN OWNED BY {src} TO {dst}")
                for kind, name, privilege in grants:
                    db.run(f"GRANT {privilege} ON {kind} {name} TO {dst}")
                db.run(f"DROP OWNED BY {src}")
                self.report.notes.append(
                    f"role {source} of the backup is {to} on the target: owners and grants moved"
                )
                if source in created_roles:
                    created_roles.remove(source)
                    db.run(f"DROP ROLE {src}")
        self.report.roles_created = list(created_roles)

    def _landing(
        self, pg_restore, scratch: ConnInfo, manifest: Manifest, dump_dir: Path, workdir: Path
    ) -> _Landing | None:
        """Verification that starts while pg_restore runs: a parallel pg_restore says, with
        ``--verbose``, when it has finished each item ("finished item N"); once a table's data
        and what locks it exclusively afterwards (its primary key) are done, it is
        fingerprinted (COPY TO) while pg_restore goes on with the others
        (:func:`~pgrunbook.domain.selection.ready_after`: not partitions).  The rest is verified
        after the restore, as is everything when pg_restore runs serially."""
        copied = {t.qualified: t for t in self.restored_tables(manifest) if t.method == COPY_METHOD}
        if not copied or self.settings.jobs < 2:
            return None
        entries = parse_toc(self._listing(pg_restore, dump_dir, workdir))
        names = [TableName(t.schema, t.name) for t in copied.values()]
        waiting = {copied[t.qualified]: items for t, items in ready_after(entries, names).items()}
        return _Landing(self._fingerprinter(scratch, manifest), waiting)

    def _fingerprinter(self, scratch: ConnInfo, manifest: Manifest) -> Fingerprinter:
        """COPY TO of restored tables under the dump's session, over ``jobs`` psql sessions."""
        with Database.connect(scratch, application_name="pgrunbook-verify") as db:
            major = db.server_version_num // 10000
        return Fingerprinter(
            scratch,
            copy_session(manifest),
            psql=find_tool("psql", major, pg_bin=self.settings.pg_bin),
            workers=self.settings.jobs,
            errors={},
        )

    def _verify(
        self, scratch: ConnInfo, manifest: Manifest, landing: _Landing | None = None
    ) -> list[TableCheck]:
        def session() -> Database:
            db = Database.connect(scratch, application_name="pgrunbook-verify")
            db.prepare_for_scans()
            return db

        errors: dict[str, str] = {}
        with Database.connect(scratch, application_name="pgrunbook-verify") as db:
            sizes = table_sizes(db)
            trees = partition_roots(db)
            ranges = db.server_version_num >= 140000
        restored = self.restored_tables(manifest)
        results: dict[str, tuple[int, str]] = {}
        copied = [t for t in restored if t.method == COPY_METHOD]
        if copied:  # fingerprints taken from the dump's COPY data: COPY TO under its settings
            fingerprinter = landing.fingerprinter if landing else self._fingerprinter(scratch, manifest)
            done = fingerprinter.done()  # those verified while pg_restore ran
            try:
                for table in sorted(copied, key=lambda t: -t.rows):
                    fingerprinter.add(table)
                results.update(fingerprinter.finish())
            finally:
                fingerprinter.cancel()
            errors.update(fingerprinter.errors or {})
            if landing is not None:
                self.progress.step(f"{done} of {len(copied)} tables were verified while pg_restore ran")
        methods = {t.method for t in restored if t.method != COPY_METHOD}
        for method in sorted(methods):
            tables = [t for t in restored if t.method == method]
            results.update(
                compute_all(
                    session,
                    tables,
                    method,
                    workers=self.settings.jobs,
                    sizes=sizes,
                    ranges=ranges,
                    errors=errors,
                )
            )
        checks = compare(restored, results, errors, trees)
        matching = sum(1 for c in checks if c.match)
        self.progress.step(f"verified {len(checks)} tables: {matching} match the manifest")
        return checks

    def _drop(self, admin: Database, scratch: str, roles: list[str]) -> bool:
        try:
            force = " WITH (FORCE)" if admin.server_version_num >= 130000 else ""
            admin.run(f"DROP DATABASE IF EXISTS {quote_ident(scratch)}{force}")
            for role in roles:
                admin.run(f"DROP ROLE IF EXISTS {quote_ident(role)}")
        except PgRunbookError as exc:
            self.report.notes.append(
                f"could not drop the scratch database {scratch} ({exc}); the next restore on this target drops it"
            )
            return False
        return True

    # -- what runs that did not finish left behind -----------------------------------------

    def _remove_abandoned_work_dirs(self) -> None:
        """Download folders of restores killed before they could clean up: older than any
        restore may take (a lease's lifetime), so no live run's."""
        work = self.settings.work_path
        if not work.is_dir():
            return
        cutoff = time.time() - LEASE_TTL.total_seconds()
        for path in work.glob("pgrunbook-restore-*"):
            if path.is_dir() and path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
                self.report.notes.append(
                    f"removed {path}, the download folder of a restore that did not finish"
                )

    @staticmethod
    def _lock_key(name: str) -> str:
        return f"hashtextextended({quote_literal('pgrunbook:scratch:' + name)}, 0)"

    def _mark(self, admin: Database, name: str, roles: list[str], *, kept: bool = False) -> None:
        if not self.created_database:
            return  # not pgrunbook's database: no marker, and no sweep may ever drop it
        """Say on the database that it is pgrunbook's scratch database (kept or not) and which
        roles the run created; hold its advisory lock while this run lives."""
        marker = {SCRATCH_MARKER: "kept" if kept else "scratch", "holder": self.holder, "roles": roles}
        try:
            admin.run(f"SELECT pg_catalog.pg_advisory_lock({self._lock_key(name)})")
            admin.run(f"COMMENT ON DATABASE {quote_ident(name)} IS {quote_literal(json.dumps(marker))}")
        except PgRunbookError as exc:
            self.report.notes.append(f"could not mark the scratch database {name}: {exc}")

    def _sweep(self, admin: Database) -> None:
        """Drop the scratch databases (and their roles) of earlier runs that did not finish:
        marked scratch, not kept, and no session holds their lock."""
        rows = admin.rows(
            "SELECT datname AS name, pg_catalog.shobj_description(oid, 'pg_database') AS comment "
            "FROM pg_catalog.pg_database WHERE pg_catalog.shobj_description(oid, 'pg_database') LIKE :marker",
            marker=f'{{"{SCRATCH_MARKER}": "scratch"%',
        )
        for row in rows:
            name = row["name"]
            if not admin.scalar(f"SELECT pg_catalog.pg_try_advisory_lock({self._lock_key(name)})"):
                continue  # a live run's
            try:
                marker = json.loads(row["comment"])
                if self._drop(admin, name, [str(r) for r in marker.get("roles", [])]):
                    self.report.notes.append(
                        f"dropped the scratch database {name} that an earlier run ({marker.get('holder')}) "
                        "left behind"
                    )
            finally:
                admin.run(f"SELECT pg_catalog.pg_advisory_unlock({self._lock_key(name)})")


# what a role was granted, as (object kind, name, privilege) for GRANT ... ON <kind> <name>
_GRANTS_TO_ROLE = """
SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass::text, a.privilege_type
FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
WHERE a.grantee = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = :role)
UNION ALL
SELECT 'SCHEMA', pg_catalog.quote_ident(n.nspname), a.privilege_type
FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
WHERE a.grantee = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = :role)
UNION ALL
SELECT CASE WHEN p.prokind = 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.oid::regprocedure::text, a.privilege_type
FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
WHERE a.grantee = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = :role) AND p.prokind IN ('f', 'p')
"""


class _Landing:
    """Tables verified as pg_restore lands them: each one once the TOC items it waits for
    (:func:`~pgrunbook.domain.selection.ready_after`) have finished.  ``on_line`` runs for
    every line pg_restore prints: it looks the item up, it does not scan the tables."""

    def __init__(self, fingerprinter: Fingerprinter, waiting: dict[TableEntry, set[int]]):
        self.fingerprinter = fingerprinter
        self.waiting = waiting
        self.by_item: dict[int, list[TableEntry]] = {}
        for table, items in waiting.items():
            for item in items:
                self.by_item.setdefault(item, []).append(table)

    def on_line(self, line: str) -> None:
        match = _FINISHED.search(line)
        if not match:
            return
        for table in self.by_item.pop(int(match.group(1)), []):
            items = self.waiting[table]
            items.discard(int(match.group(1)))
            if not items:
                self.fingerprinter.add(table)


_FINISHED = re.compile(r"finished item (\d+) ")


def copy_session(manifest: Manifest) -> list[tuple[str, str]]:
    """The session settings the dump's COPY text was written under (its manifest says)."""
    recorded = manifest.options.get("copy_session")
    session = [(str(k), str(v)) for k, v in recorded] if recorded else list(COPY_SESSION)
    if not any(name.lower() == "client_encoding" for name, _ in session):
        # pg_dump writes in the database's encoding; the text compared must be in it too
        session.append(("client_encoding", manifest.needs.encoding or "UTF8"))
    return session


def restored_bytes(manifest: Manifest) -> int:
    """The restored database's size on disk: as measured at backup time, else 5x the dump."""
    return int(manifest.server.get("database_bytes") or 0) or 5 * manifest.size_bytes


def disk_need(manifest: Manifest, *, embedded: bool = True) -> int:
    """What a restore of ``manifest`` needs on the local disk, headroom included: the download,
    and on the embedded target the restored database."""
    return int((manifest.size_bytes + (restored_bytes(manifest) if embedded else 0)) * DISK_MARGIN)


def _gb(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


def run_restore_test(settings: Settings, **kwargs: Any) -> RestoreResult:
    """The restore engine alone, into a scratch database: no report stored, nothing published."""
    return Restorer(settings, **kwargs).run()


def restore_findings(report: Report, result: RestoreResult, *, check: str = "restore_test") -> None:
    """Findings and figures every restoring job (restore test, DR drill) shares."""
    report.figures.update(
        backup_id=result.backup_id,
        source=result.source,
        integrity_pct=result.integrity_pct,
        tables=result.tables_total,
        tables_matching=result.tables_matching,
        rows=sum(t.actual_rows or 0 for t in result.tables),
        download_s=result.durations.get("download_s"),
        restore_s=result.durations.get("restore_s"),
        verify_s=result.durations.get("verify_s"),
        duration_s=result.durations.get("total_s"),
        snapshot_time=result.snapshot_time,
        disk_needed_bytes=result.disk_needed_bytes,
    )
    report.figures["tested"] = result.tested
    if result.status == "untested":
        for unmeasured in ("integrity_pct", "tables_matching", "rows", "verify_s"):
            del report.figures[unmeasured]  # nothing was measured: no figure, not a zero
        untested(report, result, check=check)
        return
    if result.error:
        report.add(check, "critical", f"backup {result.backup_id} could not be restored: {result.error}")
        return
    mismatched = [t.table for t in result.tables if not t.match]
    if mismatched:
        report.add(
            check,
            "critical",
            f"integrity {result.integrity_pct:.2f} %: {len(mismatched)} of {result.tables_total} tables differ "
            f"from the manifest ({', '.join(mismatched[:10])})",
            tables=[t.to_dict() for t in result.tables if not t.match][:50],
        )
    if result.restore_errors:
        report.add(
            check,
            "critical",
            f"pg_restore reported {len(result.restore_errors)} errors",
            errors=result.restore_errors[:20],
        )
    if not mismatched and not result.restore_errors:
        report.add(
            check,
            "ok",
            f"backup {result.backup_id} restored from {result.source}: integrity 100 % "
            f"({result.tables_total} tables) in {result.durations.get('total_s', 0):.1f}s",
        )
    for root in sorted({t.moved_within for t in result.tables if t.moved_within and t.match}):
        report.add(
            check,
            "info",
            f"the restore put some rows of {root} in other partitions than the dump had them in (hash "
            "partitioning on an enum hashes its OIDs, which a restore renumbers); its partitions "
            "together hold exactly the dumped rows",
        )
    for note in result.skipped:
        report.add(check, "info", note)


def untested(report: Report, result: RestoreResult, *, check: str = "restore_test") -> None:
    """A backup the target could not host: the report says why, need by need, with the remedy;
    no integrity figure (nothing was measured) and no verdict on the backup."""
    names = ", ".join(u.need for u in result.unmet)
    report.figures.setdefault("backup_id", result.backup_id)
    report.figures["untested_needs"] = names
    report.untested = (
        f"backup {result.backup_id} was not tested: {result.target} cannot host it ({names}); "
        "the backup may be fine, nothing was restored"
    )
    for gap in result.unmet:
        report.add(
            "preflight",
            "warning",
            f"{gap.need}: {gap.detail}; remedy: {gap.remedy}",
            need=gap.need,
            remedy=gap.remedy,
        )
    report.add(check, "info", report.untested)
