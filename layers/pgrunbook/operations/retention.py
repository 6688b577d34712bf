"""Retention: which backups to delete, and deleting them without ever breaking a restore.

The policy (:func:`plan_retention`) is a pure function over plain data; the job
(:func:`retention_job`) gathers that data from S3 and the report history, runs the policy
in each region on its own, and carries the plan out.

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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pgrunbook.adapters.s3.store import ObjectStore
from pgrunbook.catalog.backups import Catalog
from pgrunbook.catalog.leases import held_backups, sweep_expired_leases
from pgrunbook.catalog.reports import JobReport, ReportStore
from pgrunbook.domain.errors import ConfigError, PgRunbookError
from pgrunbook.domain.tiers import TIERS, RetentionPolicy, backup_time
from pgrunbook.operations.context import JobContext, job

PARTIAL_MIN_AGE = timedelta(days=1)
# Jobs whose successful report proves that a backup restores completely.
RESTORING_JOBS = ("restore-test", "dr-drill")

KEEP = "keep"
DELETE = "delete"


# -- the policy (pure) ------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupFacts:
    """What the policy needs to know about a complete backup (from its manifest)."""

    backup_id: str
    started_at: datetime
    tiers: tuple[str, ...]
    size_bytes: int = 0


@dataclass(frozen=True)
class PartialFolder:
    """A backup folder without a manifest: its id (which carries its start time) and size."""

    backup_id: str
    size_bytes: int = 0
    objects: int = 0


@dataclass(frozen=True)
class Decision:
    backup_id: str
    action: str  # keep | delete
    reason: str
    kind: str = "backup"  # backup | partial
    tiers: tuple[str, ...] = ()
    started_at: datetime | None = None
    expires_at: datetime | None = None  # None: a partial, or a tier the policy does not know
    size_bytes: int = 0
    held: bool = False
    protects: tuple[str, ...] = ()  # tiers whose newest (verified) backup this is

    @property
    def deletes(self) -> bool:
        return self.action == DELETE

    def to_dict(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "kind": self.kind,
            "action": self.action,
            "reason": self.reason,
            "tiers": list(self.tiers),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "size_bytes": self.size_bytes,
            "held": self.held,
            "protects": list(self.protects),
        }


@dataclass(frozen=True)
class RetentionPlan:
    backups: tuple[Decision, ...]  # newest first
    partials: tuple[Decision, ...]  # newest first

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return self.backups + self.partials

    @property
    def backups_to_delete(self) -> list[Decision]:
        return [d for d in self.backups if d.deletes]

    @property
    def backups_to_keep(self) -> list[Decision]:
        return [d for d in self.backups if not d.deletes]

    @property
    def partials_to_delete(self) -> list[Decision]:
        return [d for d in self.partials if d.deletes]

    @property
    def bytes_to_free(self) -> int:
        return sum(d.size_bytes for d in self.decisions if d.deletes)

    def decision(self, backup_id: str) -> Decision:
        for decision in self.decisions:
            if decision.backup_id == backup_id:
                return decision
        raise KeyError(backup_id)


def plan_retention(
    backups: Iterable[BackupFacts],
    partials: Iterable[PartialFolder] = (),
    *,
    now: datetime,
    policy: RetentionPolicy,
    held: Iterable[str] = (),
    verified: Iterable[str] = (),
    partial_min_age: timedelta = PARTIAL_MIN_AGE,
) -> RetentionPlan:
    """Keep or delete every backup and partial folder of one region, each with its reason.

    ``held``: backup ids with a live lease; ``verified``: backup ids proven restorable (see
    the module docstring for both).  Applying the plan and planning again at the same
    ``now`` deletes nothing more.
    """
    now = _utc(now)
    held = frozenset(held)
    verified = frozenset(verified)
    backups = sorted(backups, key=lambda b: (_utc(b.started_at), b.backup_id), reverse=True)
    protects = _protected_newest(backups, verified)

    decisions = []
    for backup in backups:
        started = _utc(backup.started_at)
        reasons: list[str] = []
        expires, longest = _expiry(backup, started, policy)
        if expires is None:
            reasons.append(
                f"tiers {', '.join(backup.tiers) or '(none)'} have no retention here: a person decides"
            )
        elif expires > now:
            reasons.append(f"within retention until {_day(expires)} ({longest})")
        reasons += [
            _protection_reason(tier, backup.backup_id in verified) for tier in protects[backup.backup_id]
        ]
        if backup.backup_id in held:
            reasons.append("in use: a restore or drill holds a lease on it")
        if not reasons:
            action, reason = DELETE, f"expired on {_day(expires)} ({longest})"
        else:
            action, reason = KEEP, "; ".join(reasons)
        decisions.append(
            Decision(
                backup_id=backup.backup_id,
                action=action,
                reason=reason,
                tiers=tuple(backup.tiers),
                started_at=started,
                expires_at=expires,
                size_bytes=backup.size_bytes,
                held=backup.backup_id in held,
                protects=tuple(protects[backup.backup_id]),
            )
        )

    partial_decisions = [
        _plan_partial(p, now, held, partial_min_age)
        for p in sorted(partials, key=lambda p: p.backup_id, reverse=True)
    ]
    return RetentionPlan(tuple(decisions), tuple(partial_decisions))


def _protected_newest(backups: list[BackupFacts], verified: frozenset[str]) -> dict[str, list[str]]:
    """For every tier present, the backup that must stay: its newest verified backup, else
    its newest.  ``backups`` is newest first, so the first match is the newest."""
    protects: dict[str, list[str]] = {b.backup_id: [] for b in backups}
    tiers = {tier for b in backups for tier in b.tiers}
    for tier in sorted(tiers, key=lambda t: (TIERS.index(t) if t in TIERS else len(TIERS), t)):
        members = [b for b in backups if tier in b.tiers]
        chosen = next((b for b in members if b.backup_id in verified), members[0])
        protects[chosen.backup_id].append(tier)
    return protects


def _protection_reason(tier: str, is_verified: bool) -> str:
    if is_verified:
        return f"newest verified {tier} backup"
    return f"newest {tier} backup (no {tier} backup verified yet)"


def _expiry(backup: BackupFacts, started: datetime, policy: RetentionPolicy) -> tuple[datetime | None, str]:
    """When the backup expires, and which tier decides it ("weekly 365 d")."""
    try:
        days = {tier: policy.days_for(tier) for tier in backup.tiers}
    except KeyError:
        return None, ""
    if not days:
        return None, ""
    longest = max(days, key=lambda tier: days[tier])
    return started + timedelta(days=days[longest]), f"{longest} {days[longest]} d"


def _plan_partial(
    partial: PartialFolder, now: datetime, held: frozenset[str], min_age: timedelta
) -> Decision:
    try:
        started: datetime | None = backup_time(partial.backup_id)
    except ConfigError:
        started = None

    def decide(action: str, reason: str) -> Decision:
        return Decision(
            backup_id=partial.backup_id,
            action=action,
            reason=reason,
            kind="partial",
            started_at=started,
            size_bytes=partial.size_bytes,
            held=partial.backup_id in held,
        )

    if partial.backup_id in held:
        return decide(KEEP, "incomplete, but a restore or drill holds a lease on it")
    if started is None:
        return decide(KEEP, "not a pgrunbook backup id: a person decides")
    age = now - started
    if age <= min_age:
        return decide(KEEP, f"incomplete, {_age(age)} old: may be a backup still uploading")
    return decide(DELETE, f"incomplete upload (no manifest), {_age(age)} old")


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _day(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC") if when else "?"


def _age(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours / 24:.0f} days" if hours >= 48 else f"{hours:.0f} h"


# -- evidence: which backups are proven restorable ------------------------------------------


@dataclass
class Verified:
    """Backup ids proven restorable: by a restore (a restore test or DR drill restores one
    copy and checks it against the manifest, and every copy is checked against the same
    checksums, so it proves the backup in both regions) or by the latest verification
    (which checks each region's copy, so it counts for that region only)."""

    restored: set[str] = field(default_factory=set)
    intact: dict[str, set[str]] = field(default_factory=dict)  # region -> backup ids

    def for_region(self, region: str) -> set[str]:
        return self.restored | self.intact.get(region, set())


def read_verified(reports: ReportStore) -> Verified:
    verified = Verified()
    for job_name in RESTORING_JOBS:
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


class DeletionRefused(PgRunbookError):
    """S3 answered a deletion with per-object errors (a bucket policy, an Object Lock)."""


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


@job("retention")
def retention_job(ctx: JobContext, *, dry_run: bool = False) -> JobReport:
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
    report = JobReport.start("retention", settings.database_label, now)
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
    report.metrics = {
        "RetentionBackupsDeleted": ("Count", total_deleted),
        "RetentionBytesFreed": ("Bytes", total_freed),
    }
    return report


def _apply(
    ctx: JobContext,
    report: JobReport,
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
