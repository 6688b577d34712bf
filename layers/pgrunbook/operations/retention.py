"""Retention: which backups to delete, and deleting them without ever breaking a restore.

The policy (:func:`pgrunbook.domain.retention.plan_retention`) is a pure function over plain
data; this operation (:func:`run`) gathers that data from S3 and the report history, runs the
policy in each region on its own, and carries the plan out.

Rules for every complete backup (one with a manifest); a backup is kept when any of 2-5
holds, and the plan gives every reason that applies:

1. **Grandfather-father-son by tier.**  A backup expires at ``started_at`` plus the longest
   retention of its tiers (:meth:`~pgrunbook.domain.tiers.RetentionPolicy.days_for`: daily 90 d,
   weekly 365 d, monthly 1,095 d, manual 365 d, hourly 2 d by default, configurable).  The
   30-day floor applies to every tier but ``hourly`` (see :mod:`pgrunbook.domain.tiers` for why),
   so nothing that is not purely hourly is deleted before it is 30 days old.
2. **Nothing is deleted before it expires.**  The current policy decides, not the
   ``retention_until`` a manifest recorded when it was written: changing
   ``PGRUNBOOK_RETENTION_DAYS`` applies to the backups already taken.
3. **The newest verified backup of every tier is kept.**  "Verified" means a restore test or
   a DR drill restored it completely (their report has status ok), or the latest
   verification listed the region's copy as intact.  Proof that a tier can be restored is
   worth more than its age: when every newer weekly backup is untested, the last tested one
   stays.  A tier with no verified backup keeps its newest backup instead (conservative:
   never let a tier disappear).
4. **A backup a restore or drill is reading is never deleted** (it has a live lease, see
   :mod:`pgrunbook.catalog.leases`).
5. **A backup with a tier this version does not know is kept**, for a person to decide.
6. Every other expired backup is deleted.  The policy is complete, not just safe: storage
   is a cost the runbook budgets for.

Partial folders (a backup folder without a manifest: an upload that failed or was
interrupted, or a deletion that was) are deleted once their backup id's time is older than
``partial_min_age`` (one day).  A younger one may be a backup still uploading, which writes
its manifest last; a folder with a live lease is left alone as well.  A folder whose
manifest is there but cannot be read (damaged, or written by a newer pgrunbook) is neither
a backup nor a partial: it is kept, and reported as a warning for a person to look at.

Deletion follows the lease protocol: check the leases, delete ``manifest.json`` first, check
the leases again (a lease that appeared in between means a restore saw the manifest: put it
back and leave the backup alone), and only then delete the files.  An interrupted run
therefore leaves either a complete backup or a folder without a manifest, which is listed
as incomplete, never offered for restore, and removed by the next run: re-running is safe.

Each region is planned on its own (its own catalog, partial folders and leases), so that a
backup held by a DR drill in the DR region does not pin its primary copy, and a failure in
one region does not stop the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from pgrunbook.adapters.s3.store import ObjectStore
from pgrunbook.catalog.backups import Catalog
from pgrunbook.catalog.leases import held_backups, sweep_expired_leases
from pgrunbook.catalog.reports import ReportStore
from pgrunbook.domain import metrics
from pgrunbook.domain.errors import DeletionRefused, PgRunbookError
from pgrunbook.domain.results import Report
from pgrunbook.domain.retention import (
    BackupFacts,
    PartialFolder,
    RetentionPlan,
    Verified,
    plan_retention,
)
from pgrunbook.operations.context import OperationContext

# Operations whose successful report proves that a backup restores completely.
RESTORING_OPERATIONS = ("restore-test", "dr-drill")


def read_verified(reports: ReportStore) -> Verified:
    verified = Verified()
    for job_name in RESTORING_OPERATIONS:
        for report in reports.history(job_name):
            # A complete restore proves the backup, whatever else the run found (a data-quality
            # check on the restored copy may warn about the data, not about the backup).
            backup_id = report.figures.get("backup_id")
            if report.figures.get("integrity_pct") == 100.0 and isinstance(backup_id, str):
                verified.restored.add(backup_id)
    latest = reports.latest("verify")
    listed = latest.detail.get("verified_backups") if latest is not None else None
    if isinstance(listed, Mapping):
        for region, ids in listed.items():
            if isinstance(ids, list | tuple | set):
                verified.intact[str(region)] = {str(i) for i in ids}
    return verified


# -- one region: what is there, and carrying the plan out -----------------------------------


@dataclass
class RegionState:
    backups: list[BackupFacts]
    partials: list[PartialFolder]
    unreadable: dict[str, str]  # backup id -> why its manifest cannot be read
    held: set[str]


def read_region(store: ObjectStore, now: datetime) -> RegionState:
    backups, partials, unreadable = [], [], {}
    for entry in Catalog(store).entries():
        manifest = entry.manifest
        if manifest is not None:
            backups.append(
                BackupFacts(
                    manifest.backup_id, manifest.started_at, tuple(manifest.tiers), manifest.size_bytes
                )
            )
        elif store.head(store.manifest_key(entry.backup_id)) is not None:
            # A manifest that is there but cannot be read (damaged, or written by a newer
            # pgrunbook) is not a partial: deleting it could lose a good backup.
            unreadable[entry.backup_id] = entry.problem or "unreadable manifest"
        else:
            objects = list(store.list_keys(store.backup_prefix(entry.backup_id)))
            partials.append(
                PartialFolder(entry.backup_id, sum(int(o.get("Size", 0)) for o in objects), len(objects))
            )
    return RegionState(backups, partials, unreadable, held_backups(store, now))


@dataclass
class Outcome:
    deleted: bool
    message: str


def delete_backup(store: ObjectStore, backup_id: str, clock: Callable[[], datetime]) -> Outcome:
    """Delete one complete backup by the lease protocol (see :mod:`pgrunbook.catalog.leases`)."""
    if backup_id in held_backups(store, clock()):
        return Outcome(False, "kept: a restore or drill leased it after the plan was made")
    manifest_key = store.manifest_key(backup_id)
    manifest_bytes = store.get_bytes(manifest_key)
    if manifest_bytes is not None:
        if store.delete_keys([manifest_key]) != 1:
            raise DeletionRefused(f"S3 refused to delete {store.uri(manifest_key)}; the backup is intact")
        if backup_id in held_backups(store, clock()):
            # A reader wrote its lease while the manifest was going: it may have seen the
            # manifest and be reading the files now.  Undo, and leave the backup alone.
            try:
                store.put_bytes(manifest_key, manifest_bytes)
            except PgRunbookError as exc:
                raise PgRunbookError(
                    f"a restore leased {backup_id} during its deletion and its manifest could not be "
                    f"put back ({exc}): the files are untouched, but the backup is now incomplete"
                ) from None
            return Outcome(False, "kept: a restore leased it during deletion, manifest put back")
    return _delete_files(store, backup_id, manifest_deleted=manifest_bytes is not None)


def delete_partial(store: ObjectStore, backup_id: str, clock: Callable[[], datetime]) -> Outcome:
    """Delete a folder without a manifest, unless it got a lease or a manifest meanwhile."""
    if backup_id in held_backups(store, clock()):
        return Outcome(False, "kept: a restore or drill leased it after the plan was made")
    if store.head(store.manifest_key(backup_id)) is not None:
        return Outcome(False, "kept: its manifest appeared after the plan was made")
    return _delete_files(store, backup_id)


def _delete_files(store: ObjectStore, backup_id: str, *, manifest_deleted: bool = False) -> Outcome:
    keys = [obj["Key"] for obj in store.list_keys(store.backup_prefix(backup_id))]
    deleted = store.delete_keys(keys) if keys else 0
    # Another retention run that had to put this manifest back (a lease race) may have done
    # so while these files went: a manifest over missing files would be listed as
    # restorable, so it goes too, and the folder stays a partial.
    manifest_key = store.manifest_key(backup_id)
    stray_manifest = store.head(manifest_key) is not None
    if stray_manifest:
        store.delete_keys([manifest_key])
    if deleted < len(keys):
        raise DeletionRefused(
            f"S3 refused to delete {len(keys) - deleted} of {len(keys)} objects under "
            f"{store.uri(store.backup_prefix(backup_id))}; without its manifest the folder is listed "
            "as incomplete and the next run tries again"
        )
    extra = " (and a manifest put back meanwhile by another run)" if stray_manifest else ""
    return Outcome(True, f"deleted {len(keys) + manifest_deleted} objects{extra}")


# -- the job ----------------------------------------------------------------------------------


def run(ctx: OperationContext, report: Report, *, dry_run: bool = False) -> None:
    """Plan and apply retention in the primary and (when configured) the DR region.

    Figures per region (``primary_...``, ``dr_...``): backups kept and deleted, partial
    folders deleted, bytes freed (in a dry run: what the plan would delete).  In a bucket
    with versioning, a deletion leaves a delete marker and the bytes are freed only when the
    bucket's lifecycle rule expires the noncurrent versions.
    """
    settings = ctx.settings
    policy = settings.retention_policy
    stores = {"primary": settings.primary_store()}
    if settings.has_dr:
        stores["dr"] = settings.dr_store()
    for store in stores.values():  # configuration errors stop the run before any change
        store.check_bucket()
    now = ctx.now()
    report.figures["dry_run"] = dry_run
    report.detail["plan"] = {}
    report.detail["policy"] = {"days": dict(policy.days), "floor_days": policy.floor_days}

    delete_backups = True
    try:
        verified = read_verified(ReportStore(stores["primary"]))  # where every job's reports are
    except PgRunbookError as exc:
        # Without the evidence the newest verified backups are unknown: deleting could
        # remove the one a tier must keep.  Partial folders do not depend on it.
        report.add(
            "verified_backups", "warning", f"could not read the report history ({exc}): no backup deleted"
        )
        verified, delete_backups = Verified(), False

    total_deleted = total_freed = 0
    for region, store in stores.items():
        try:
            state = read_region(store, now)
        except PgRunbookError as exc:
            report.add(
                "retention", "warning", f"{region}: could not read {store.describe()}: {exc}", region=region
            )
            continue
        plan = plan_retention(
            state.backups,
            state.partials,
            now=now,
            policy=policy,
            held=state.held,
            verified=verified.for_region(region),
        )
        for backup_id, problem in sorted(state.unreadable.items()):
            report.add(
                "retention",
                "warning",
                f"{region}: kept {backup_id}: its manifest cannot be read ({problem})",
                region=region,
                backup_id=backup_id,
            )
        deleted, freed = _apply(
            ctx, report, region, store, plan, dry_run=dry_run, delete_backups=delete_backups
        )
        if not dry_run:
            try:
                report.figures[f"{region}_leases_swept"] = sweep_expired_leases(store, now)
            except PgRunbookError as exc:
                report.add("retention", "warning", f"{region}: could not sweep expired leases: {exc}")
        total_deleted += deleted
        total_freed += freed
    report.measure(metrics.RETENTION_DELETED, total_deleted)
    report.measure(metrics.RETENTION_FREED, total_freed)


def _apply(
    ctx: OperationContext,
    report: Report,
    region: str,
    store: ObjectStore,
    plan: RetentionPlan,
    *,
    dry_run: bool,
    delete_backups: bool,
) -> tuple[int, int]:
    """Carry out one region's plan; record every decision and outcome in the report."""
    entries = [d.to_dict() for d in plan.decisions]
    report.detail["plan"][region] = entries
    counts = {"backups_deleted": 0, "partials_deleted": 0, "bytes_freed": 0}
    verb = "would delete" if dry_run else "deleted"
    for decision, entry in zip(plan.decisions, entries, strict=True):
        if not decision.deletes:
            continue
        what = "backup" if decision.kind == "backup" else "partial folder"
        if dry_run:
            entry["outcome"] = "planned (dry run)"
        elif decision.kind == "backup" and not delete_backups:
            entry["outcome"] = "not done: the report history could not be read"
            continue
        else:
            remove = delete_backup if decision.kind == "backup" else delete_partial
            try:
                outcome = remove(store, decision.backup_id, ctx.clock)
            except PgRunbookError as exc:
                entry["outcome"] = f"failed: {exc}"
                report.add(
                    "retention",
                    "warning",
                    f"{region}: could not delete {what} {decision.backup_id}: {exc}",
                    region=region,
                    backup_id=decision.backup_id,
                )
                continue
            entry["outcome"] = outcome.message
            if not outcome.deleted:
                report.add(
                    "retention",
                    "info",
                    f"{region}: {decision.backup_id} {outcome.message}",
                    region=region,
                    backup_id=decision.backup_id,
                )
                continue
        counts["backups_deleted" if decision.kind == "backup" else "partials_deleted"] += 1
        counts["bytes_freed"] += decision.size_bytes
        ctx.progress.step(f"{region}: {verb} {what} {decision.backup_id}: {decision.reason}")
        report.add(
            "retention",
            "info",
            f"{region}: {verb} {what} {decision.backup_id}: {decision.reason}",
            region=region,
            backup_id=decision.backup_id,
            kind=decision.kind,
            tiers=list(decision.tiers),
            size_bytes=decision.size_bytes,
        )
    kept = len(plan.backups) - counts["backups_deleted"]
    report.figures.update(
        {
            f"{region}_backups_kept": kept,
            f"{region}_backups_deleted": counts["backups_deleted"],
            f"{region}_partials_deleted": counts["partials_deleted"],
            f"{region}_bytes_freed": counts["bytes_freed"],
        }
    )
    report.add(
        "retention",
        "ok",
        f"{region}: {kept} backups kept; {verb} {counts['backups_deleted']} backups and "
        f"{counts['partials_deleted']} partial folders ({counts['bytes_freed'] / 1e6:.1f} MB) "
        f"in {store.describe()}",
        region=region,
    )
    return counts["backups_deleted"], counts["bytes_freed"]
