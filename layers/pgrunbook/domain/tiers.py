"""Backup tiers, retention dates and backup ids (pure functions, no I/O).

Tiers follow the runbook's grandfather-father-son scheme.  A scheduled backup is ``daily``;
the one taken on a Sunday is also ``weekly``; the one taken on the first Sunday of a month is
also ``monthly``.  ``hourly`` and ``manual`` are never derived, only given.

Retention: a backup is kept for the longest retention of its tiers.  The 30-day floor (the
DealerScope runbook's regulatory minimum) applies to every tier except ``hourly``: hourly
backups are an RPO aid kept for 2 days, and every hour they cover is also covered by a daily
backup that the floor protects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pgrunbook.domain.errors import ConfigError

TIERS = ("monthly", "weekly", "daily", "hourly", "manual")
DEFAULT_RETENTION_DAYS: Mapping[str, int] = {
    "hourly": 2,
    "daily": 90,
    "weekly": 365,
    "monthly": 1095,
    "manual": 365,
}
FLOOR_DAYS = 30
FLOOR_EXEMPT = frozenset({"hourly"})


@dataclass(frozen=True)
class RetentionPolicy:
    days: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_RETENTION_DAYS))
    floor_days: int = FLOOR_DAYS

    def days_for(self, tier: str) -> int:
        days = self.days.get(tier, DEFAULT_RETENTION_DAYS[tier])
        return days if tier in FLOOR_EXEMPT else max(days, self.floor_days)

    def retention_until(self, started_at: datetime, tiers: Iterable[str]) -> datetime:
        longest = max(self.days_for(t) for t in tiers)
        return started_at + timedelta(days=longest)


def derive_tiers(when: datetime) -> list[str]:
    """Tiers of a scheduled backup started at ``when`` (UTC), most durable first."""
    when = when.astimezone(UTC)
    tiers = ["daily"]
    if when.weekday() == 6:  # Sunday
        tiers.insert(0, "weekly")
        if when.day <= 7:
            tiers.insert(0, "monthly")
    return tiers


def parse_tiers(text: str | None, when: datetime) -> list[str]:
    """``--tier`` value (comma separated) or, when absent, the tiers derived from the date."""
    if not text:
        return derive_tiers(when)
    tiers = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in tiers if t not in TIERS]
    if unknown or not tiers:
        raise ConfigError(f"unknown tier {', '.join(unknown) or text!r}; choose from {', '.join(TIERS)}")
    return sorted(set(tiers), key=TIERS.index)


def primary_tier(tiers: Iterable[str]) -> str:
    """The most durable tier: it names the backup in the runbook's ``backup_type`` column."""
    return min(tiers, key=TIERS.index)
