"""The optional in-database mirror of the catalog: ``pgrunbook.backup_metadata``.

It carries the runbook's columns so the runbook's SQL (dashboards, success-rate KPIs) works
unchanged.  It is a mirror, never the source of truth: a backup is restorable when its
manifest is in S3, whatever this table says.

Mode ``auto`` (default) creates the schema when it can and carries on without the mirror when
it cannot (a read-only replica, a role without CREATE), with a warning in the report; ``on``
makes any mirror failure an error; ``off`` never touches it.

A run holds a session advisory lock for its whole duration.  A row left ``in_progress`` by a
run that was killed (its session, and so its lock, is gone) is marked ``failed`` by the next
run that takes the lock; two concurrent backups of one database cannot both hold it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.domain.errors import ConfigError, PgRunbookError, SqlError
from pgrunbook.domain.manifest import Manifest
from pgrunbook.settings.files import sql_file

log = logging.getLogger(__name__)
MODES = ("auto", "on", "off")


class Mirror:
    def __init__(self, db: Database, database: str):
        self.db = db
        self.database = database
        self.available = False
        self.failures: list[str] = []

    @classmethod
    def open(cls, info: ConnInfo, database: str, mode: str) -> Mirror:
        if mode not in MODES:
            raise ConfigError(f"mirror mode must be one of {', '.join(MODES)}, not {mode!r}")
        db = Database.connect(info, application_name="pgrunbook-mirror")
        mirror = cls(db, database)
        if mode == "off":
            return mirror
        try:
            if db.scalar("SELECT pg_is_in_recovery()"):
                reason = "the database is a read-only standby"
            else:
                if not db.scalar("SELECT to_regclass('pgrunbook.backup_metadata') IS NOT NULL"):
                    db.run(sql_file("schema/backup_metadata.sql"))  # once: DDL takes strong locks
                mirror.available, reason = True, ""
        except SqlError as exc:
            reason = f"cannot create the pgrunbook.backup_metadata mirror: {exc}"
        if not mirror.available:
            if mode == "on":
                db.close()
                raise ConfigError(reason)
            log.warning("backup_metadata mirror unavailable: %s", reason)
        return mirror

    def try_lock(self) -> bool:
        """Take the per-database backup lock for the life of this session."""
        return bool(
            self.db.scalar(
                "SELECT pg_try_advisory_lock(hashtextextended('pgrunbook:backup:' || :name, 0))",
                name=self.database,
            )
        )

    def repair_interrupted(self, manifest_of: Callable[[str], Manifest | None]) -> list[tuple[str, str]]:
        """Settle rows left ``in_progress`` by runs that ended without finishing (killed, timed
        out, or unable to reach the database at the end); call with the lock held.  A row whose
        backup has a manifest (``manifest_of``) is ``completed``: the backup is whole, only its
        last mirror update was lost.  Any other is ``failed``.  Returns ``(backup id, status)``."""
        if not self.available:
            return []
        settled = []
        for (backup_id,) in self.db.run(
            "SELECT backup_id FROM pgrunbook.backup_metadata WHERE status = 'in_progress' ORDER BY backup_id"
        ):
            manifest = manifest_of(backup_id)
            if manifest is not None:
                self.db.run(
                    "UPDATE pgrunbook.backup_metadata SET status = 'completed', completed_at = :completed, "
                    "backup_size_bytes = :size, error_message = NULL WHERE backup_id = :id",
                    completed=manifest.completed_at,
                    size=manifest.size_bytes,
                    id=backup_id,
                )
                settled.append((backup_id, "completed"))
            else:
                self.db.run(
                    "UPDATE pgrunbook.backup_metadata SET status = 'failed', completed_at = now(), "
                    "error_message = 'interrupted: the run ended without finishing (killed or timed out)' "
                    "WHERE backup_id = :id",
                    id=backup_id,
                )
                settled.append((backup_id, "failed"))
        return settled

    def record_start(
        self,
        *,
        backup_id: str,
        backup_type: str,
        tiers: list[str],
        location: str,
        tables: list[str],
        started_at: datetime,
        retention_until: datetime,
        created_by: str,
    ) -> None:
        self._safely(
            "INSERT INTO pgrunbook.backup_metadata (backup_id, backup_type, tiers, backup_location, "
            "tables_included, status, started_at, retention_until, created_by) VALUES (:id, :type, "
            "CAST(:tiers AS text[]), :location, CAST(:tables AS text[]), 'in_progress', :started, :retention, :by)",
            id=backup_id,
            type=backup_type,
            tiers=tiers,
            location=location,
            tables=tables,
            started=started_at,
            retention=retention_until,
            by=created_by,
        )

    def record_end(
        self,
        backup_id: str,
        *,
        status: str,
        completed_at: datetime,
        size_bytes: int | None = None,
        error: str | None = None,
    ) -> None:
        self._safely(
            "UPDATE pgrunbook.backup_metadata SET status = :status, completed_at = :completed, "
            "backup_size_bytes = :size, error_message = :error WHERE backup_id = :id",
            status=status,
            completed=completed_at,
            size=size_bytes,
            error=error,
            id=backup_id,
        )

    def _safely(self, sql: str, **params: object) -> None:
        """The mirror never fails a backup; what it could not record is kept in ``failures``."""
        if not self.available:
            return
        try:
            self.db.run(sql, **params)
        except PgRunbookError as exc:
            log.warning("backup_metadata mirror update failed: %s", exc)
            self.failures.append(str(exc))

    def close(self) -> None:
        self.db.close()
