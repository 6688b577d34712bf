"""Where a restore test or a DR drill restores a backup: the decision, and throwaway RDS targets.

In order:

1. **A configured server** (``PGRUNBOOK_RESTORE_TARGET_URL`` / ``_SECRET_ARN``; for a drill
   the DR ones, never the primary region's): used as it is.
2. **The embedded server**, when its build hosts every extension the backup creates (the
   backup's major, else the nearest newer one that does; see
   :mod:`pgrunbook.adapters.postgres.builds`).
3. **A throwaway RDS instance** of the backup's major version, when the embedded server cannot
   host the backup and a DB subnet group is configured (``PGRUNBOOK_RESTORE_RDS=needed``, the
   default), or for every run (``always``).  It is created for the run and always deleted
   after it, on failure too (:func:`throwaway`).
4. Otherwise the embedded server, whose pre-flight then reports the backup *untested*, naming
   what is missing and how to give the restore a target that has it.

``PGRUNBOOK_RESTORE_RDS=never`` keeps every restore off RDS.  In AWS, creating an instance
takes longer than a Lambda invocation may last, so deployed runs that need one go through the
restore workflow (provision, wait, restore, delete: :mod:`pgrunbook.workflows.restore`); on a
laptop (or with ``--restore-rds always`` from the CLI) :func:`throwaway` does it all in
process, waiting for the instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from pgrunbook.adapters.aws.rds_targets import READY, RdsTargets, problem_with
from pgrunbook.adapters.postgres.builds import ExtensionsNotHosted
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.adapters.postgres.embedded import pick_version
from pgrunbook.domain.errors import ConfigError, PgRunbookError, RestoreFailed
from pgrunbook.domain.ids import Clock
from pgrunbook.domain.manifest import Manifest
from pgrunbook.progress import Progress
from pgrunbook.settings.model import Settings

READY_TIMEOUT = timedelta(minutes=60)  # RDS usually needs 5 to 15
POLL_SECONDS = 30


@dataclass(frozen=True)
class TargetPlan:
    kind: str  # server | embedded | rds
    reason: str
    major: int | None = None  # the embedded build's, or the RDS engine's

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rds_targets(settings: Settings, *, drill: bool) -> RdsTargets:
    """The region's throwaway targets: the DR region's for a drill, the primary's otherwise."""
    region = settings.dr_region if drill else settings.region
    if not region:
        raise ConfigError("no region for RDS restore targets: set PGRUNBOOK_REGION (and PGRUNBOOK_DR_REGION)")
    groups = (
        settings.dr_restore_rds_security_groups if drill else settings.restore_rds_security_groups
    ) or ""
    return RdsTargets(
        region=region,
        subnet_group=settings.dr_restore_rds_subnet_group if drill else settings.restore_rds_subnet_group,
        security_groups=tuple(g.strip() for g in groups.split(",") if g.strip()),
        database=settings.database_label,
    )


def plan_target(settings: Settings, manifest: Manifest, *, drill: bool = False) -> TargetPlan:
    """Where this backup is restored (see the module docstring)."""
    server = settings.dr_restore_target() if drill else settings.restore_target()
    if server is not None:
        return TargetPlan("server", f"the configured {'DR ' if drill else ''}restore target")
    major = int(manifest.server["version_num"]) // 10000
    subnet_group = settings.dr_restore_rds_subnet_group if drill else settings.restore_rds_subnet_group
    variable = f"PGRUNBOOK_{'DR_' if drill else ''}RESTORE_RDS_SUBNET_GROUP"
    if settings.restore_rds == "always":
        if not subnet_group:
            raise ConfigError(f"PGRUNBOOK_RESTORE_RDS is always, but {variable} is not set")
        return TargetPlan("rds", "PGRUNBOOK_RESTORE_RDS is always", major)
    needed = [e.name for e in manifest.needs.extensions]
    try:
        return TargetPlan(
            "embedded",
            "the embedded server hosts it",
            pick_version(major, needed, builds_dir=settings.embedded_path),
        )
    except ExtensionsNotHosted as exc:
        missing = ", ".join(exc.extensions) or "every extension needed on one major"
        if settings.restore_rds == "needed" and subnet_group:
            return TargetPlan("rds", f"the embedded server cannot host {missing}", major)
        fallback = pick_version(major, (), builds_dir=settings.embedded_path)
        why = (
            "PGRUNBOOK_RESTORE_RDS is never" if settings.restore_rds == "never" else f"{variable} is not set"
        )
        return TargetPlan("embedded", f"the embedded server cannot host {missing} and {why}", fallback)


@contextmanager
def throwaway(
    settings: Settings,
    manifest: Manifest,
    *,
    drill: bool,
    run_id: str,
    clock: Clock,
    progress: Progress,
    sleep: Callable[[float], None] = time.sleep,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> Iterator[ConnInfo]:
    """A throwaway RDS instance for one restore, ready to connect to; deleted when the block
    ends, however it ends.  ``on_event("created" | "ready" | "deleted", facts)`` records the
    steps (the report's ``detail["rds_target"]``)."""
    targets = rds_targets(settings, drill=drill)
    record = on_event or (lambda event, facts: None)
    swept = targets.sweep(clock())
    if swept:
        record("swept", {"deleted": swept})
    name = targets.name_for(settings.database_label, run_id)
    major = int(manifest.server["version_num"]) // 10000
    progress.step(
        f"creating the throwaway RDS restore target {name} (PostgreSQL {major}) in {targets.region}"
    )
    created = targets.create(
        name,
        major=major,
        dump_bytes=manifest.size_bytes,
        run_id=run_id,
        now=clock(),
        instance_class=settings.restore_rds_instance_class,
    )
    record("created", created)
    try:
        started = clock()
        while True:
            state = targets.state(name)
            if state.status == READY:
                break
            problem = problem_with(state)
            if problem:
                raise RestoreFailed(problem)
            if clock() - started > READY_TIMEOUT:
                raise RestoreFailed(
                    f"the restore target {name} was not ready after {READY_TIMEOUT.total_seconds() / 60:.0f} min "
                    f"(still {state.status})"
                )
            progress.detail(f"restore target {name} is {state.status}")
            sleep(POLL_SECONDS)
        record("ready", {"after_s": round((clock() - started).total_seconds(), 1)})
        yield targets.conninfo(state)
    finally:
        try:
            outcome = targets.delete(name)
            record("deleted", {"name": name, "status": outcome})
            progress.step(f"deleted the throwaway RDS restore target {name} ({outcome})")
        except PgRunbookError as exc:  # the sweep of a later run deletes it; said now
            record("delete_failed", {"name": name, "error": str(exc)})
            progress.step(
                f"could not delete the restore target {name}: {exc}; the next run's sweep deletes it"
            )
