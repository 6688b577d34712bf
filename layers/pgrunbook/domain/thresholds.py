"""Alert thresholds and targets (pure).

Defaults are the runbook's table (docs/architecture.md, "Thresholds"): a value *above* the warning threshold is a
warning, above the critical one is critical; a value equal to a threshold is not yet over
it ("Last Backup Age > 26 hours").  Every threshold can be changed with
``PGRUNBOOK_THRESHOLDS``, a JSON object of ``{"name": [warning, critical]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

from pgrunbook.domain.errors import ConfigError


@dataclass(frozen=True)
class Threshold:
    warning: float
    critical: float
    unit: str = ""

    def classify(self, value: float | None) -> str:
        if value is None:
            return "ok"
        if value > self.critical:
            return "critical"
        if value > self.warning:
            return "warning"
        return "ok"


@dataclass(frozen=True)
class Thresholds:
    backup_age_hours: Threshold = field(default_factory=lambda: Threshold(26, 48, "h"))
    backup_failure_rate_pct: Threshold = field(default_factory=lambda: Threshold(5, 15, "%"))
    backup_duration_minutes: Threshold = field(default_factory=lambda: Threshold(30, 120, "min"))
    storage_growth_pct: Threshold = field(default_factory=lambda: Threshold(50, 100, "%"))
    rto_hours: Threshold = field(default_factory=lambda: Threshold(6, 12, "h"))
    rpo_hours: Threshold = field(default_factory=lambda: Threshold(2, 4, "h"))
    long_transaction_minutes: Threshold = field(default_factory=lambda: Threshold(60, 240, "min"))
    connection_use_pct: Threshold = field(default_factory=lambda: Threshold(80, 95, "%"))
    rto_target_hours: float = 4.0
    rpo_target_hours: float = 1.0

    @classmethod
    def from_json(cls, text: str | None) -> Thresholds:
        if not text:
            return cls()
        try:
            data: dict[str, Any] = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise ConfigError(f"PGRUNBOOK_THRESHOLDS is not valid JSON: {exc}") from None
        known = {f.name: f for f in fields(cls)}
        changes: dict[str, Any] = {}
        base = cls()
        for name, value in data.items():
            if name not in known:
                raise ConfigError(f"PGRUNBOOK_THRESHOLDS has an unknown threshold {name!r}")
            current = getattr(base, name)
            if isinstance(current, Threshold):
                if not (isinstance(value, list) and len(value) == 2 and all(_number(v) for v in value)):
                    raise ConfigError(f"threshold {name} must be [warning, critical]")
                if value[0] > value[1]:
                    raise ConfigError(f"threshold {name}: warning {value[0]} is above critical {value[1]}")
                changes[name] = replace(current, warning=float(value[0]), critical=float(value[1]))
            else:
                if not _number(value):
                    raise ConfigError(f"target {name} must be a number")
                changes[name] = float(value)
        return replace(base, **changes)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
