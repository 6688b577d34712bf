"""The catalog as a status report: every backup with its tiers, time, size, rows, and
whether its DR copy is present; incomplete folders listed as not restorable."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from .catalog import Catalog
from .config import Settings


@dataclass
class BackupLine:
    backup_id: str
    restorable: bool
    tiers: list[str] = field(default_factory=list)
    started_at: str | None = None
    snapshot_time: str | None = None
    size_bytes: int = 0
    tables: int = 0
    rows: int = 0
    dr_copy: bool | None = None  # None: no DR bucket configured
    problem: str | None = None


@dataclass
class StatusReport:
    database: str
    location: str
    dr_location: str | None
    backups: list[BackupLine]
    generated_at: str
    last_backup_age_hours: float | None = None

    @property
    def exit_code(self) -> int:
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {"job": "status", **asdict(self)}


def build_status(
    settings: Settings, *, limit: int | None = None, now: datetime | None = None
) -> StatusReport:
    primary = settings.primary_store()
    primary.check_bucket()
    dr = settings.dr_store() if settings.has_dr else None
    if dr is not None:
        dr.check_bucket()
    entries = Catalog(primary).entries(limit=limit)
    dr_catalog = Catalog(dr) if dr is not None else None

    def line(entry) -> BackupLine:
        if entry.manifest is None:
            return BackupLine(entry.backup_id, restorable=False, problem=entry.problem)
        m = entry.manifest
        return BackupLine(
            backup_id=m.backup_id,
            restorable=True,
            tiers=list(m.tiers),
            started_at=m.started_at.isoformat(),
            snapshot_time=m.snapshot["time"],
            size_bytes=m.size_bytes,
            tables=len(m.tables),
            rows=m.total_rows,
            dr_copy=dr_catalog.has_manifest(m.backup_id) if dr_catalog is not None else None,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        lines = list(pool.map(line, entries))
    now = now or datetime.now(UTC)
    newest = next((b for b in lines if b.restorable), None)
    age = None
    if newest is not None and newest.snapshot_time:
        age = round((now - datetime.fromisoformat(newest.snapshot_time)).total_seconds() / 3600, 2)
    return StatusReport(
        database=settings.database_label,
        location=primary.describe(),
        dr_location=dr.describe() if dr is not None else None,
        backups=lines,
        generated_at=now.isoformat(),
        last_backup_age_hours=age,
    )
