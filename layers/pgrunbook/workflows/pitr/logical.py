"""Point-in-time recovery from pgrunbook's own backups (the ``logical`` provider)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.catalog.backups import Catalog
from pgrunbook.domain.errors import BackupNotFound, InvalidTarget, ProviderError
from pgrunbook.operations.restorer import Restorer
from pgrunbook.workflows.pitr.provider import Provider, RecoveryStatus, RecoveryWindow


class LogicalProvider(Provider):
    """Recovery from pgrunbook's own backups.

    Logical backups are points, not a continuous log: the recovery restores the newest
    backup whose snapshot is at or before the target, into a new database
    ``<database>_pitr_<time>`` on the same server, so the damaged one is kept for
    investigation.  The report states the real data-loss window: everything after that
    snapshot, including what happened between the snapshot and the target.  The safety point
    is a fresh backup (tier ``manual``) of the database as it is now.
    """

    name = "logical"

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.settings.primary_store())

    def window(self) -> RecoveryWindow:
        manifests = [e.manifest for e in self.catalog.entries() if e.manifest is not None]
        if not manifests:
            raise InvalidTarget("there is no restorable pgrunbook backup to recover from")
        earliest = min(m.snapshot_time for m in manifests)
        return RecoveryWindow(
            earliest,
            self.clock(),
            note="logical backups are points in time: the newest one at or before the target is restored",
        )

    def backup_for(self, target: datetime) -> Any:
        try:
            return self.catalog.at(target)
        except BackupNotFound:
            raise InvalidTarget(f"no pgrunbook backup was taken at or before {target.isoformat()}") from None

    def safety_point(self, state: dict[str, Any]) -> dict[str, Any]:
        point = self.backup_safety_point()
        point["summary"] = (
            f"pgrunbook backup {point['backup_id']} (tier manual, snapshot {point['snapshot_time']}): the "
            "database as it was before the recovery"
        )
        return point

    def database_name(self, state: dict[str, Any]) -> str:
        stamp = datetime.fromisoformat(state["started_at"]).strftime("%Y%m%d%H%M%S")
        return f"{self.settings.conninfo().dbname[:40]}_pitr_{stamp}"

    def plan(self, state: dict[str, Any]) -> dict[str, Any]:
        target = datetime.fromisoformat(state["target_time"])
        manifest = self.backup_for(target)
        gap = (target - manifest.snapshot_time).total_seconds()
        return {
            "recovery_point": manifest.snapshot_time.isoformat(),
            "backup_id": manifest.backup_id,
            "database": self.database_name(state),
            "description": f"restores backup {manifest.backup_id} (snapshot {manifest.snapshot_time.isoformat()}) "
            f"into a new database {self.database_name(state)} on the same server; the current database is kept",
            "data_loss_note": f"logical backups are points in time: the {gap / 60:.0f} min between the backup's "
            "snapshot and the target time are lost as well",
        }

    def start(self, state: dict[str, Any]) -> dict[str, Any]:
        target = datetime.fromisoformat(state["target_time"])
        planned = (state.get("plan") or {}).get("backup_id")
        manifest = self.catalog.manifest(planned) if planned else self.backup_for(target)
        live = self.settings.conninfo()
        name = self.database_name(state)
        result = Restorer(
            self.settings,
            backup_id=manifest.backup_id,
            keep=True,
            progress=self.progress,
            target=live,
            clock=self.clock,
            holder=f"pitr {state['recovery_id']}",
            database_name=name,
        ).run()
        if result.status == "untested":  # the live server lacks what the backup needs
            raise ProviderError(
                f"cannot restore backup {manifest.backup_id} into {name}: the server lacks "
                + "; ".join(f"{u.need} ({u.remedy})" for u in result.unmet)
            )
        if result.status != "ok":
            problem = result.error or (
                f"integrity {result.integrity_pct:.2f} %, errors {result.restore_errors[:3]}"
                if result.integrity_pct is not None
                else f"errors {result.restore_errors[:3]}"
            )
            raise ProviderError(f"restoring backup {manifest.backup_id} into {name} failed: {problem}")
        return {
            "database": name,
            "backup_id": manifest.backup_id,
            "snapshot_time": manifest.snapshot["time"],
            "integrity_pct": result.integrity_pct,
        }

    def status(self, state: dict[str, Any]) -> RecoveryStatus:
        return RecoveryStatus(
            done=True, failed=False, status="RESTORED", detail="the restore ran synchronously"
        )

    def endpoint(self, state: dict[str, Any]) -> ConnInfo:
        return self.settings.conninfo().with_dbname(state["recovery"]["database"])

    def recovery_point(self, state: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(state["recovery"]["snapshot_time"])

    def cutover(self, state: dict[str, Any]) -> dict[str, Any]:
        database = state["recovery"]["database"]
        arn = self.settings.database_secret_arn
        if not arn:
            return {"note": f"point the application at the database {database}"}
        from pgrunbook.adapters.aws.secrets import update_secret

        update_secret(arn, {"dbname": database})
        return {"secret": arn, "dbname": database}
