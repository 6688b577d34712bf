"""Recovery providers: how a platform gets a database back to a point in time.

Every provider answers the same five questions (the workflow needs nothing else):

* ``window()``: the earliest and latest times it can recover to;
* ``safety_point(state)``: a restorable copy of the database as it is now, taken before
  anything changes, so that a recovery to the wrong time is itself recoverable;
* ``start(state)``: begin the recovery (not idempotent: the workflow never retries it,
  except when the provider refused the request outright);
* ``status(state)``: done, failed, or still running;
* ``endpoint(state)``: where the recovered database answers, for verification;

plus ``recovery_point(state)`` (the time the recovered data really reflects) and
``cutover(state)`` (what makes the application use it, run only after verification).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.domain.errors import BackupFailed, ProviderError
from pgrunbook.domain.ids import Clock, utcnow
from pgrunbook.progress import Progress
from pgrunbook.settings.model import Settings


@dataclass(frozen=True)
class RecoveryWindow:
    earliest: datetime
    latest: datetime
    note: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"earliest": self.earliest.isoformat(), "latest": self.latest.isoformat(), "note": self.note}


@dataclass(frozen=True)
class RecoveryStatus:
    done: bool
    failed: bool
    status: str
    detail: str = ""


class Provider(ABC):
    name = "abstract"

    def __init__(self, settings: Settings, *, progress: Progress | None = None, clock=None):
        self.settings = settings
        self.progress = progress or Progress()
        self.clock: Clock = clock or utcnow

    @abstractmethod
    def window(self) -> RecoveryWindow: ...

    @abstractmethod
    def safety_point(self, state: dict[str, Any]) -> dict[str, Any]: ...

    @abstractmethod
    def start(self, state: dict[str, Any]) -> dict[str, Any]: ...

    @abstractmethod
    def status(self, state: dict[str, Any]) -> RecoveryStatus: ...

    @abstractmethod
    def endpoint(self, state: dict[str, Any]) -> ConnInfo: ...

    def backup_safety_point(self) -> dict[str, Any]:
        """A pgrunbook backup of tier ``manual``, taken now: a safety point that any provider can
        fall back on, restorable whatever the provider later does to the database."""
        from pgrunbook.operations.backup import take_backup
        from pgrunbook.operations.context import OperationContext

        ctx = OperationContext(self.settings, progress=self.progress, clock=self.clock)
        try:
            result = take_backup(ctx, tier="manual")
        except BackupFailed as exc:
            raise ProviderError(f"the safety-point {exc}") from None
        return {
            "kind": "pgrunbook backup",
            "backup_id": result.backup_id,
            "tier": "manual",
            "snapshot_time": result.snapshot.get("time"),
        }

    def recovery_point(self, state: dict[str, Any]) -> datetime:
        """The time the recovered data reflects: the target itself, for continuous recovery."""
        return datetime.fromisoformat(state["target_time"])

    def plan(self, state: dict[str, Any]) -> dict[str, Any]:
        """What the recovery will do, for the approval request (read-only)."""
        return {
            "recovery_point": state["target_time"],
            "description": f"recovers {state['database']} to the target time by replaying its write-ahead log",
        }

    def cutover(self, state: dict[str, Any]) -> dict[str, Any]:
        return {"note": "recovered in place: nothing to switch"}
