"""The backup job: a consistent, checksummed, self-verifying copy in two regions.

1. Check both buckets and the database are reachable (bad configuration stops here, before
   anything is written: exit 2).
2. A coordinator session opens ``REPEATABLE READ, READ ONLY``, exports its snapshot, records
   its time and WAL position, takes ACCESS SHARE locks on the tables (as pg_dump does, so
   no DDL can change them under the dump) and reads, in that snapshot, the tables, the roles
   and the prerequisites the dump refers to.
3. ``pg_dump --format=directory --jobs=N --snapshot=<id>`` dumps in that snapshot.  Each
   table file is uploaded as soon as pg_dump reports it finished, deleted from the local
   disk once uploaded, and copied on to the DR bucket (S3 to S3) as soon as its upload is
   done.  The disk a backup needs is the files being written or uploaded, not the whole dump:
   ``peak_disk_bytes`` in the report is what the work directory held at its largest.
4. Each table's row count and fingerprint come, by default, from the dump itself: the COPY
   text of each data file, hashed from the bytes its upload reads (``--fingerprints dump``;
   :mod:`pgrunbook.adapters.postgres.copytext`), so the database is read once.  With
   ``--fingerprints server`` they are computed in the same snapshot, in page ranges
   spread over N sessions.  Where depends on where the database runs: on another machine
   (RDS, Supabase) they run alongside pg_dump, on the server's CPUs; on this machine they
   run right after pg_dump, because pg_dump's compression and the fingerprints would
   otherwise fight over the same CPUs.  (``PGRUNBOOK_FINGERPRINTS=alongside|after`` forces
   one.)  The snapshot is released as soon as both are done: an old snapshot holds back
   vacuum.
5. ``manifest.json`` is written last.  Then the DR copies are verified against it and the DR
   manifest written; older backups whose DR copy is missing (a failed or interrupted
   earlier copy) are repaired.

A failure before the manifest leaves no manifest: the uploaded files are deleted when S3
allows it, the mirror row says ``failed``, and the catalog never lists the backup as
restorable.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from pgrunbook import __version__
from pgrunbook.adapters.disk import PeakWatch
from pgrunbook.adapters.postgres.connection import Database, qualified, quote_literal
from pgrunbook.adapters.postgres.copytext import METHOD as COPY_METHOD
from pgrunbook.adapters.postgres.copytext import SESSION as COPY_SESSION
from pgrunbook.adapters.postgres.copytext import columns_for_copy, dump_environment
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.adapters.postgres.fingerprints import TableSpec, compute_all, discover_tables, method_for
from pgrunbook.adapters.postgres.introspect import (
    database_properties,
    prerequisites,
    referenced_roles,
    restore_needs,
)
from pgrunbook.adapters.postgres.tools import Tool, ToolProcess, find_pg_dump, find_pg_restore, run_tool
from pgrunbook.adapters.s3.replication import Replicator, replicate
from pgrunbook.adapters.s3.store import ObjectStore, TransferSettings
from pgrunbook.adapters.s3.uploads import Uploader
from pgrunbook.catalog.backups import Catalog
from pgrunbook.catalog.metadata_mirror import Mirror
from pgrunbook.catalog.reports import ReportStore
from pgrunbook.domain import metrics
from pgrunbook.domain.errors import BackupFailed, PgRunbookError
from pgrunbook.domain.ids import Clock, new_backup_id, utcnow
from pgrunbook.domain.manifest import FORMAT, Manifest, TableEntry
from pgrunbook.domain.needs import Needs
from pgrunbook.domain.profiles import get_profile
from pgrunbook.domain.redact import redact
from pgrunbook.domain.results import Report
from pgrunbook.domain.selection import parse_toc
from pgrunbook.domain.tiers import RetentionPolicy, parse_tiers, primary_tier
from pgrunbook.operations.context import OperationContext, run_operation
from pgrunbook.progress import Progress
from pgrunbook.settings.model import Settings

log = logging.getLogger(__name__)
_FINISHED_DATA = re.compile(r"finished item (\d+) TABLE DATA ")
_STARTED_DATA = re.compile(r"dumping contents of table ")
LOCK_TIMEOUT = "120s"
DR_REPAIR_WINDOW = 14  # newest primary backups checked for a missing DR copy


@dataclass
class BackupResult:
    status: str  # ok | warning | critical | skipped
    database: str
    backup_id: str | None = None
    tiers: list[str] = field(default_factory=list)
    location: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)
    size_bytes: int = 0
    peak_disk_bytes: int = 0  # the work directory at its largest (sampled)
    copy_text_bytes: int = 0  # COPY text the fingerprints read from the dump (fingerprints=dump)
    tables: int = 0
    rows: int = 0
    durations: dict[str, float] = field(default_factory=dict)
    dr: dict[str, Any] = field(default_factory=dict)
    repaired_dr: list[str] = field(default_factory=list)
    object_lock: dict[str, str] = field(default_factory=dict)  # bucket role -> lock mode applied
    mirror: str = "off"
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BackupRun:
    def __init__(
        self,
        settings: Settings,
        *,
        tiers: str | None = None,
        progress: Progress | None = None,
        transfer: TransferSettings | None = None,
        clock: Clock = utcnow,
        policy: RetentionPolicy | None = None,
        on_started: Callable[[str], None] | None = None,
        labels: dict[str, str] | None = None,
    ):
        self.labels = dict(labels or {})
        self._t0 = time.monotonic()
        self.on_started = on_started
        self.settings = settings
        self.progress = progress or Progress()
        self.clock = clock
        self.policy = policy or settings.retention_policy
        self.tiers_text = tiers
        parse_tiers(tiers, clock())  # bad --tier is bad input: refuse before touching anything
        self.profile = get_profile(settings.profile)
        self.info: ConnInfo = settings.conninfo()
        self.label = settings.database_label
        self.primary: ObjectStore = settings.primary_store(transfer)
        self.dr: ObjectStore | None = settings.dr_store(transfer) if settings.has_dr else None
        self.report = BackupResult(status="ok", database=self.label)
        self.replicator: Replicator | None = None

    @property
    def fingerprints_alongside(self) -> bool:
        mode = self.settings.fingerprints
        return not self.info.is_local if mode in ("auto", "server") else mode == "alongside"

    @property
    def fingerprints_from_dump(self) -> bool:
        """Fingerprints from the archive's own COPY data, read once for its upload: the
        database is read once, by pg_dump (issue 16; ``PGRUNBOOK_FINGERPRINTS=dump``)."""
        return self.settings.fingerprints == "dump"

    # -- the run -------------------------------------------------------------------------

    def run(self) -> BackupResult:
        try:
            self._run()
        finally:
            self.report.durations["total_s"] = round(time.monotonic() - self._t0, 3)
        return self.report

    def _run(self) -> None:
        self.primary.check_bucket()
        if self.dr is not None:
            self.dr.check_bucket()
        else:
            self._warn("no DR bucket configured: this backup exists in one region only")
        session = Database.connect(self.info, application_name="pgrunbook-backup")
        coordinator: Database | None = session  # closed here unless _backup took it over
        mirror: Mirror | None = None
        try:
            major = session.server_version_num // 10000
            pg_dump = find_pg_dump(major, minimum=self.profile.min_pg_dump, pg_bin=self.settings.pg_bin)
            mirror = Mirror.open(self.info, self.label, self.settings.mirror)
            if not mirror.try_lock():
                self.report.status = "skipped"
                self.report.mirror = "not touched"
                self.report.error = f"another backup of {self.label} is running; nothing to do"
                self.progress.step(self.report.error)
                return
            self.report.mirror = "recorded" if mirror.available else self.settings.mirror
            if self.settings.mirror != "off" and not mirror.available:
                self._warn("the backup_metadata mirror is unavailable (read-only or no CREATE privilege)")
            for stale, state in mirror.repair_interrupted(self._complete_manifest):
                if state == "completed":
                    self._warn(
                        f"backup {stale} is complete but its mirror row was left in_progress by its run; "
                        "recorded as completed"
                    )
                else:
                    self._warn(f"backup {stale} was interrupted by an earlier run; recorded as failed")
                    self._abort_uploads(stale)
            self._remove_abandoned_work_dirs()
            coordinator = None  # _backup closes it once the snapshot is done
            try:
                manifest, manifest_bytes = self._backup(session, pg_dump, mirror)
            except BackupFailed:
                return  # status critical, error set, nothing restorable left behind
            # From here the backup is complete and restorable: its primary manifest is written.
            # Nothing that follows may undo that or make it look unfinished.
            mirror.record_end(
                manifest.backup_id,
                status="completed",
                completed_at=manifest.completed_at,
                size_bytes=manifest.size_bytes,
            )
            self._after_manifest(manifest, manifest_bytes)
        finally:
            if coordinator is not None:
                coordinator.close()
            if mirror is not None:
                if mirror.failures:  # the row may say in_progress: the next run settles it
                    self.report.mirror = (
                        f"NOT updated ({redact(mirror.failures[-1])}); the next backup settles its row"
                    )
                    self._warn(
                        f"the backup_metadata mirror could not be updated: {redact(mirror.failures[-1])}"
                    )
                mirror.close()

    def _complete_manifest(self, backup_id: str) -> Manifest | None:
        """The backup's manifest in the primary bucket, if it has a readable one."""
        try:
            return Catalog(self.primary).manifest(backup_id)
        except PgRunbookError:
            return None

    def _backup(self, coordinator: Database, pg_dump: Tool, mirror: Mirror) -> tuple[Manifest, bytes]:
        started_at = self.clock()
        backup_id = new_backup_id(started_at)
        tiers = parse_tiers(self.tiers_text, started_at)
        retention_until = self.policy.retention_until(started_at, tiers)
        workdir = self.settings.work_path / f"pgrunbook-{self.label}-{backup_id}"
        report = self.report
        report.backup_id, report.tiers = backup_id, tiers
        report.location = self.primary.uri(self.primary.backup_prefix(backup_id))
        report.started_at = started_at.isoformat()
        if self.on_started is not None:
            self.on_started(backup_id)  # every check has passed: the run is really starting
        if self.dr is not None:
            self.replicator = Replicator(self.primary, self.dr, backup_id, self.progress)
        uploader = Uploader(
            self.primary,
            backup_id,
            self.progress,
            self.primary.transfer.concurrency,
            on_uploaded=self.replicator.submit if self.replicator is not None else None,
            remove_uploaded=True,
            copy_digests=self.fingerprints_from_dump,
        )
        process: ToolProcess | None = None
        recorded = False
        disk = PeakWatch(workdir)
        try:
            workdir.mkdir(parents=True, exist_ok=False)
            disk.start()
            t0 = time.monotonic()
            snapshot, specs, roles, prereqs, server, needs = self._snapshot(coordinator)
            mirror.record_start(
                backup_id=backup_id,
                backup_type=primary_tier(tiers),
                tiers=tiers,
                location=report.location,
                tables=[s.qualified for s in specs],
                started_at=started_at,
                retention_until=retention_until,
                created_by=self.settings.creator,
            )
            recorded = True
            dump_dir = workdir / "dump"
            process = self._start_pg_dump(pg_dump, snapshot["id"], dump_dir, uploader)
            fingerprint = self._fingerprinter(coordinator, snapshot["id"], specs, server["version_num"])
            copy_columns: dict[str, tuple[str, ...]] = {}
            if self.fingerprints_from_dump:
                copy_columns = columns_for_copy(coordinator, specs)  # in the snapshot, while pg_dump runs
                result = process.wait()
                t_dump = time.monotonic()
                fingerprints = {}
            elif self.fingerprints_alongside:
                fingerprints = fingerprint()
                result = process.wait()
                t_dump = time.monotonic()
            else:
                result = process.wait()
                t_dump = time.monotonic()
                if result.returncode == 0:
                    self._upload_all(dump_dir, uploader)  # uploads run while fingerprints do
                    fingerprints = fingerprint()
            process = None
            t_fp = time.monotonic()
            coordinator.close()  # releases the snapshot: vacuum may proceed
            if result.returncode != 0:
                raise BackupFailed(f"pg_dump failed (exit {result.returncode}): {result.tail(4)}")
            report.durations["dump_s"] = round(t_dump - t0, 3)
            report.durations["fingerprint_s"] = round(
                t_fp - (t0 if self.fingerprints_alongside else t_dump), 3
            )

            self._upload_all(dump_dir, uploader)
            files = uploader.wait()
            report.peak_disk_bytes = disk.stop()  # nothing is written locally after this
            report.durations["upload_after_dump_s"] = round(time.monotonic() - max(t_dump, t_fp), 3)
            if self.fingerprints_from_dump:
                tables = self._tables_from_dump(pg_dump, dump_dir, specs, uploader, copy_columns)
                (dump_dir / "toc.dat").unlink(missing_ok=True)
            else:
                method = method_for(server["version_num"])
                tables = [
                    TableEntry(
                        schema=s.schema,
                        name=s.name,
                        rows=fingerprints[s.qualified][0],
                        fingerprint=fingerprints[s.qualified][1],
                        method=method,
                        columns=s.columns,
                    )
                    for s in specs
                ]
            manifest = Manifest(
                format=FORMAT,
                backup_id=backup_id,
                database=self.label,
                tiers=tiers,
                created_by=self.settings.creator,
                labels=self.labels,
                started_at=started_at,
                completed_at=self.clock(),
                retention_until=retention_until,
                snapshot=snapshot,
                server=server,
                tools={"pg_dump": pg_dump.version, "pgrunbook": __version__},
                options={
                    "jobs": self.settings.jobs,
                    "compression": f"gzip:{self.settings.compression}",
                    "profile": self.profile.name,
                    "exclude_schemas": list(self.profile.exclude_schemas),
                    "exclude_extensions": list(self.profile.exclude_extensions),
                    **(
                        {"fingerprints": "dump", "copy_session": [list(p) for p in COPY_SESSION]}
                        if self.fingerprints_from_dump
                        else {"fingerprints": "server"}
                    ),
                },
                files=files,
                tables=tables,
                roles=roles,
                prerequisites=prereqs,
                needs=needs,
            )
            manifest_bytes = manifest.to_json()
            self.primary.put_bytes(self.primary.manifest_key(backup_id), manifest_bytes)
            report.completed_at = manifest.completed_at.isoformat()
            report.size_bytes, report.rows, report.tables = (
                manifest.size_bytes,
                manifest.total_rows,
                len(tables),
            )
            self.progress.step(
                f"backup {backup_id} complete: {len(files)} files, {manifest.size_bytes / 1e6:.1f} MB, "
                f"{manifest.total_rows} rows in {len(tables)} tables"
            )
            return manifest, manifest_bytes
        except BaseException as exc:
            coordinator.close()
            if process is not None:
                process.kill()
            uploader.abort()
            self._discard(self.primary, uploader.started_keys)
            if self.replicator is not None and self.dr is not None:
                self.replicator.abort()
                self._discard(self.dr, self.replicator.started_keys)
            if isinstance(exc, PgRunbookError):
                message = redact(str(exc))
            elif isinstance(exc, Exception):
                log.error("backup %s failed unexpectedly", backup_id, exc_info=True)
                message = redact(f"unexpected {type(exc).__name__}: {exc}")
            else:
                message = "interrupted"
            report.status, report.error = "critical", message
            if recorded:
                mirror.record_end(backup_id, status="failed", completed_at=self.clock(), error=message[:2000])
            if isinstance(exc, Exception) and not isinstance(exc, BackupFailed):
                raise BackupFailed(f"backup {backup_id} failed: {message}") from None
            raise
        finally:
            report.peak_disk_bytes = disk.stop()  # a failed run's too: what it had written
            shutil.rmtree(workdir, ignore_errors=True)

    # -- steps ---------------------------------------------------------------------------

    def _snapshot(self, coordinator: Database) -> tuple[dict, list[TableSpec], list, Any, dict, Needs]:
        """Export the snapshot, lock the tables and read what the manifest needs, all in it."""
        coordinator.prepare_for_scans()
        coordinator.run(f"SET lock_timeout TO {quote_literal(LOCK_TIMEOUT)}")
        coordinator.run("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snap = coordinator.rows(
            "SELECT pg_catalog.pg_export_snapshot() AS id, statement_timestamp() AS time, "
            "pg_catalog.pg_is_in_recovery() AS in_recovery, "
            "CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() "
            "ELSE pg_catalog.pg_current_wal_lsn() END::text AS lsn"
        )[0]
        snapshot = {
            "id": snap["id"],
            "time": snap["time"].astimezone(UTC).isoformat(),
            "lsn": snap["lsn"],
            "in_recovery": bool(snap["in_recovery"]),
        }
        self.report.snapshot = snapshot
        specs = discover_tables(coordinator, self.profile.exclude_schemas)
        for start in range(0, len(specs), 500):
            chunk = ", ".join(qualified(s.schema, s.name) for s in specs[start : start + 500])
            coordinator.run(f"LOCK TABLE {chunk} IN ACCESS SHARE MODE")
        roles = referenced_roles(coordinator, self.profile.exclude_schemas)
        prereqs = prerequisites(coordinator, self.profile.exclude_schemas, self.profile.exclude_extensions)
        needs = restore_needs(
            coordinator, self.profile.exclude_schemas, self.profile.exclude_extensions, prereqs
        )
        server = {
            "version": coordinator.server_version,
            "version_num": coordinator.server_version_num,
            **database_properties(coordinator),
            # what a restore of it takes on disk, indexes included (the restore test's check)
            "database_bytes": int(
                coordinator.scalar("SELECT pg_catalog.pg_database_size(current_database())")
            ),
        }
        self.progress.step(
            f"snapshot {snapshot['id']} at {snapshot['time']} (LSN {snapshot['lsn']}): "
            f"{len(specs)} tables, {len(roles)} roles"
        )
        return snapshot, specs, roles, prereqs, server, needs

    def _start_pg_dump(
        self, pg_dump: Tool, snapshot_id: str, dump_dir: Path, uploader: Uploader
    ) -> ToolProcess:
        suffix = ".dat.gz" if self.settings.compression > 0 else ".dat"
        serial = self.settings.jobs == 1
        # serial only: every data file seen, and those not yet submitted -> the check that
        # first saw them; checks[0] counts checks, checks[1] is the last that saw a new file
        seen: set[str] = set()
        pending: dict[str, int] = {}
        checks = [0, 0]

        def on_line(line: str) -> None:
            match = _FINISHED_DATA.search(line)
            if match:  # parallel pg_dump names each file it finished
                path = dump_dir / f"{match.group(1)}{suffix}"
                if path.is_file():
                    uploader.submit(path)
            elif serial and _STARTED_DATA.search(line):
                # A serial pg_dump does not say which file it finished, and this line may be
                # read well after it was written.  It writes one file at a time, closing each
                # before it creates the next: a file is complete once a check has seen a file
                # that an earlier check had not (that one was created after it).
                checks[0] += 1
                for path in dump_dir.iterdir():  # small: uploaded files are deleted
                    if path.name.endswith(suffix) and path.name not in seen:
                        seen.add(path.name)
                        pending[path.name] = checks[1] = checks[0]
                for name in [n for n, first in pending.items() if first < checks[1]]:
                    del pending[name]
                    uploader.submit(dump_dir / name)
            elif ": error:" in line:
                self.progress.step(line)

        args = [
            "--format=directory",
            f"--jobs={self.settings.jobs}",
            f"--compress={self.settings.compression}",
            f"--snapshot={snapshot_id}",
            f"--file={dump_dir}",
            f"--lock-wait-timeout={LOCK_TIMEOUT}",
            "--no-password",
            "--verbose",
            *self.profile.pg_dump_args(),
        ]
        where = "alongside pg_dump" if self.fingerprints_alongside else "after pg_dump"
        if self.fingerprints_from_dump:
            where = "from the dump's own data"
        self.progress.step(
            f"dumping with {pg_dump.name} {pg_dump.version}, {self.settings.jobs} jobs, gzip level "
            f"{self.settings.compression}; fingerprints {where}"
        )
        # the session settings COPY text depends on, recorded in the manifest (copytext.SESSION)
        env = dump_environment() if self.fingerprints_from_dump else None
        process = ToolProcess(pg_dump, args, self.info, on_line=on_line, extra_env=env)
        uploader.watch(dump_dir)  # each table's file goes up (and is digested) as it is written
        return process

    def _tables_from_dump(
        self,
        pg_dump: Tool,
        dump_dir: Path,
        specs: list[TableSpec],
        uploader: Uploader,
        copy_columns: dict[str, tuple[str, ...]],
    ) -> list[TableEntry]:
        """Each table's rows and fingerprint from its data file's digest, found through the
        archive's table of contents; a table read in the snapshot whose data pg_dump did not
        write (no TABLE DATA entry, or no file) fails the backup."""
        lister = find_pg_restore(pg_dump.major, pg_dump.major, pg_bin=self.settings.pg_bin)
        listing_file = dump_dir.parent / "toc.list"
        listing = run_tool(lister, ["--list", "--verbose", f"--file={listing_file}", str(dump_dir)])
        if listing.returncode != 0:
            raise BackupFailed(f"pg_restore --list of the archive failed: {listing.tail(3)}")
        entries = [e for e in parse_toc(listing_file.read_text()) if e.kind == "TABLE DATA"]
        suffix = ".dat.gz" if self.settings.compression > 0 else ".dat"
        self.report.durations["fingerprint_s"] = round(uploader.digest_seconds, 3)
        text_bytes = 0
        tables = []
        for spec in sorted(specs, key=lambda s: (-len(s.schema), s.schema, s.name)):
            found = [e for e in entries if e.names(spec.schema, spec.name)]
            if not found:
                raise BackupFailed(
                    f"pg_dump left out the data of {spec.qualified}: the archive's table of contents has no "
                    "TABLE DATA entry for it"
                )
            entries.remove(found[0])
            digest = uploader.digests.get(f"{found[0].id}{suffix}")
            if digest is None:
                raise BackupFailed(f"the data file of {spec.qualified} ({found[0].id}{suffix}) was not read")
            rows, fingerprint, size = digest
            text_bytes += size
            columns = copy_columns[spec.qualified]
            tables.append(
                TableEntry(
                    spec.schema,
                    spec.name,
                    rows,
                    fingerprint,
                    COPY_METHOD,
                    tuple((c, "copy") for c in columns),
                )
            )
        self.report.copy_text_bytes = text_bytes
        order = {s.qualified: i for i, s in enumerate(specs)}
        return sorted(tables, key=lambda t: order[t.qualified])

    def _fingerprinter(
        self, coordinator: Database, snapshot_id: str, specs: list[TableSpec], version_num: int
    ) -> Callable[[], dict[str, tuple[int, str]]]:
        def snapshot_session() -> Database:
            db = Database.connect(self.info, application_name="pgrunbook-fingerprint")
            db.prepare_for_scans()
            db.run("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            db.run(f"SET TRANSACTION SNAPSHOT {quote_literal(snapshot_id)}")
            return db

        done = [0]

        def on_table(name: str, rows: int) -> None:
            done[0] += 1
            self.progress.detail(f"fingerprinted {done[0]}/{len(specs)} tables ({name}: {rows} rows)")

        def fingerprint() -> dict[str, tuple[int, str]]:
            return compute_all(
                snapshot_session,
                specs,
                method_for(version_num),
                workers=self.settings.jobs,
                ranges=version_num >= 140000,
                on_table=on_table,
                first_session=coordinator,
            )

        return fingerprint

    @staticmethod
    def _upload_all(dump_dir: Path, uploader: Uploader) -> None:
        for path in sorted(dump_dir.iterdir()):
            if path.is_file():
                uploader.submit(path)

    def _abort_uploads(self, backup_id: str) -> None:
        """A killed run may have left a file's multipart upload open (its parts go up while
        pg_dump writes it): abort those of ``backup_id`` in both buckets."""
        for store in [self.primary, *([self.dr] if self.dr is not None else [])]:
            try:
                aborted = store.abort_uploads(store.backup_prefix(backup_id))
            except PgRunbookError as exc:
                log.warning("could not list the open uploads in %s: %s", store.bucket, redact(str(exc)))
                continue
            if aborted:
                self._warn(f"aborted {aborted} unfinished upload(s) of backup {backup_id} in {store.bucket}")

    def _discard(self, store: ObjectStore, keys: list[str]) -> None:
        """Best effort: remove what a failed run uploaded (retention removes any leftovers)."""
        if not keys:
            return
        try:
            store.delete_keys(keys)
        except Exception as exc:
            log.warning("could not remove the partial upload in %s: %s", store.bucket, redact(str(exc)))

    def _after_manifest(self, manifest: Manifest, manifest_bytes: bytes) -> None:
        """Object Lock, the DR copy, and repairs of older DR copies.  Each failure is a finding
        of this backup's report (the DR copy's is critical), never an exception: the backup
        itself is complete whatever happens here."""
        try:
            self._lock(self.primary, manifest, "primary")
        except PgRunbookError as exc:
            self._warn(
                f"the objects of {manifest.backup_id} in the primary bucket could not be locked: {exc}"
            )
        self._finish_dr_copy(manifest, manifest_bytes)
        if self.dr is not None and self.report.dr.get("status") == "copied":
            try:
                self._repair_dr(manifest.backup_id)
            except PgRunbookError as exc:
                self._warn(f"older backups' DR copies could not be checked: {exc}")

    def _remove_abandoned_work_dirs(self) -> None:
        """A backup killed before it could clean up (SIGKILL, a Lambda timeout) leaves its dump
        in the work directory.  With this database's backup lock held, no other backup of it
        is running: every such directory of it is abandoned."""
        pattern = re.compile(rf"pgrunbook-{re.escape(self.label)}-\d{{8}}T\d{{6}}\.\d{{3}}Z-[0-9a-f]{{6}}")
        work = self.settings.work_path
        if not work.is_dir():
            return
        for path in sorted(work.iterdir()):
            if path.is_dir() and pattern.fullmatch(path.name):
                size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                shutil.rmtree(path, ignore_errors=True)
                self._warn(
                    f"removed {path} ({size / 1e6:.1f} MB), the work directory of an earlier backup "
                    "that did not finish"
                )

    def _finish_dr_copy(self, manifest: Manifest, manifest_bytes: bytes) -> None:
        if self.dr is None or self.replicator is None:
            self.report.dr = {"status": "not_configured"}
            return
        t0 = time.monotonic()
        try:
            result = self.replicator.finish(manifest, manifest_bytes)
        except PgRunbookError as exc:
            self.report.status = "critical"
            self.report.dr = {"status": "failed", "location": self.dr.describe(), "problem": str(exc)}
            self.report.error = f"DR copy failed: {exc}"
            self.progress.step(self.report.error)
            return
        self.report.durations["dr_copy_after_manifest_s"] = round(time.monotonic() - t0, 3)
        self.report.dr = {"status": "copied", "location": result.location, "files": result.files}
        try:
            self._lock(self.dr, manifest, "dr")
        except PgRunbookError as exc:
            self._warn(f"the objects of {manifest.backup_id} in the DR bucket could not be locked: {exc}")
        self.progress.step(f"DR copy verified: {result.files} files in {self.dr.describe()}")

    def _lock(self, store: ObjectStore, manifest: Manifest, where: str) -> None:
        """Lock every object of a complete backup until its retention date (S3 Object Lock),
        so that no one, not even the retention job, can destroy it early.  Only complete
        backups are locked: a partial upload stays deletable."""
        mode = store.lock_mode(self.settings.object_lock)
        if mode is None:
            return
        keys = [store.key(manifest.backup_id, f.name) for f in manifest.files]
        keys.append(store.manifest_key(manifest.backup_id))
        problems = store.lock(keys, mode, manifest.retention_until)
        if problems:
            self._warn(
                f"{len(problems)} objects of {manifest.backup_id} in the {where} bucket could not be locked: "
                f"{problems[0]}"
            )
            return
        self.report.object_lock[where] = mode.lower()
        self.progress.detail(
            f"locked {len(keys)} objects in the {where} bucket ({mode.lower()}) until "
            f"{manifest.retention_until:%Y-%m-%d}"
        )

    def _repair_dr(self, current: str) -> None:
        """Copy recent primary backups whose DR copy is missing (an earlier copy failed)."""
        assert self.dr is not None
        primary, dr = Catalog(self.primary), Catalog(self.dr)
        now = self.clock()
        for entry in primary.entries(limit=DR_REPAIR_WINDOW):
            if entry.backup_id == current or entry.manifest is None or dr.has_manifest(entry.backup_id):
                continue
            if self.policy.retention_until(entry.manifest.started_at, entry.manifest.tiers) < now:
                continue  # past its retention: DR retention may have removed it on purpose
            raw = self.primary.get_bytes(self.primary.manifest_key(entry.backup_id))
            try:
                replicate(
                    entry.manifest, raw or entry.manifest.to_json(), self.primary, self.dr, self.progress
                )
                self._lock(self.dr, entry.manifest, "dr")
                self.report.repaired_dr.append(entry.backup_id)
                self.progress.step(f"repaired the missing DR copy of {entry.backup_id}")
            except PgRunbookError as exc:
                self._warn(f"the DR copy of {entry.backup_id} is missing and could not be repaired: {exc}")

    def _warn(self, message: str) -> None:
        self.report.warnings.append(message)
        if self.report.status == "ok":
            self.report.status = "warning"


def run_backup(settings: Settings, **kwargs: Any) -> BackupResult:
    return BackupRun(settings, **kwargs).run()


# -- the operation ----------------------------------------------------------------------------


def run(
    ctx: OperationContext,
    report: Report,
    *,
    tier: str | None = None,
    labels: dict[str, str] | None = None,
    transfer: TransferSettings | None = None,
    policy: RetentionPolicy | None = None,
) -> None:
    """The backup as an operation: the engine's result as findings, figures and metrics.

    Before the backup starts, a report with state ``running`` is stored under the id the final
    report will use; the final report replaces it.  A run killed before it could finish (a
    Lambda timeout, an out-of-memory kill) therefore leaves a ``running`` report behind, which
    verification counts as a failed backup: the failure rate cannot miss the runs that died.
    """

    def mark_running(backup_id: str) -> None:
        report.detail.update(state="running", backup_id=backup_id)
        if ctx.store_reports:
            for store in ctx.report_stores("backup"):
                ReportStore(store).put(report)

    engine = BackupRun(
        ctx.settings,
        tiers=tier,
        progress=ctx.progress,
        clock=ctx.clock,
        on_started=mark_running,
        labels=labels,
        transfer=transfer,
        policy=policy,
    )
    try:
        result = engine.run()
    except BaseException:
        if report.detail.get("state") == "running" and ctx.store_reports:
            # stopped (SIGTERM, Ctrl-C): record the run as failed now rather than leave it
            # for verification to find still "running" hours later
            report.detail["state"] = "interrupted"
            report.add("backup", "critical", f"backup {report.detail.get('backup_id')} was interrupted")
            report.finished_at = ctx.now().isoformat()
            stored = []
            for store in ctx.report_stores("backup"):
                try:
                    stored.append(ReportStore(store).put(report))
                except Exception:  # noqa: S112 - already failing; the interruption is what matters
                    continue
            where = f"recorded as failed in {stored[0]}" if stored else "its report could not be stored"
            ctx.progress.step(
                f"backup {report.detail.get('backup_id')} interrupted: its uploads are removed, {where}"
            )
        raise
    report.payload = result
    report.detail = {"state": "finished"}
    report.figures = {
        "backup_id": result.backup_id,
        "tiers": result.tiers,
        "size_bytes": result.size_bytes,
        "peak_disk_bytes": result.peak_disk_bytes,
        "rows": result.rows,
        "tables": result.tables,
        "duration_s": result.durations.get("total_s"),
        "snapshot_time": result.snapshot.get("time"),
    }
    if result.status == "skipped":
        report.skipped = result.error
        return
    _findings(report, result)
    report.measure(metrics.BACKUP_SIZE, result.size_bytes)
    report.measure(metrics.BACKUP_DURATION, result.durations.get("total_s", 0.0))
    report.measure(metrics.BACKUP_SUCCEEDED, 0 if result.status == "critical" else 1)


def _findings(report: Report, result: BackupResult) -> None:
    if result.status == "critical" and result.dr.get("status") == "failed":
        report.add(
            "dr_copy", "critical", result.error or "DR copy failed", location=result.dr.get("location")
        )
    elif result.status == "critical":
        report.add("backup", "critical", f"backup {result.backup_id} failed: {result.error}")
    else:
        report.add(
            "backup",
            "ok",
            f"backup {result.backup_id} complete: {result.tables} tables, {result.rows} rows, "
            f"{result.size_bytes} bytes, DR copy {result.dr.get('status')}",
        )
    for warning in result.warnings:
        report.add("backup", "warning", warning)
    for backup_id in result.repaired_dr:
        report.add("dr_copy", "info", f"repaired the missing DR copy of {backup_id}")


def take_backup(ctx: OperationContext, *, tier: str, labels: dict[str, str] | None = None) -> BackupResult:
    """A backup taken as one step of a workflow (a recovery's safety point, a migration's
    pre-migration backup): the operation with its report stored, its result returned; raises
    BackupFailed when no complete backup was made."""
    report = run_operation("backup", ctx, tier=tier, labels=labels)
    result = report.payload
    if not isinstance(result, BackupResult) or result.status == "critical" or not result.backup_id:
        problem = result.error if isinstance(result, BackupResult) else report.status
        raise BackupFailed(f"backup failed: {problem}")
    return result
