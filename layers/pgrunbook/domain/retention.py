"""Retention policy (pure): which backups to keep and which to delete, each with its reason.

The rules, the lease protocol and why each region is planned on its own are explained in
:mod:`pgrunbook.operations.retention`, which gathers the facts from S3 and carries the plan out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.ids import backup_time
from pgrunbook.domain.tiers import TIERS, RetentionPolicy

PARTIAL_MIN_AGE = timedelta(days=1)

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
