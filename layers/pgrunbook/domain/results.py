"""The one result model: every operation returns a :class:`Report`.

A report has a status, a list of findings (each a named check with a severity, a one-line
message and details such as the offending rows or S3 keys), figures (the numbers dashboards
and metrics use), ``detail`` (what later runs read back from the stored report: a backup's
``state``, the backups a verification found intact, a drill's trend) and a typed ``payload``:
the operation's own result object where it has more to say than findings and figures (a
backup's :class:`~pgrunbook.operations.backup.BackupResult`, a restore's
:class:`~pgrunbook.operations.restorer.RestoreResult`, a workflow's state ...).

A report's status decides its exit status, in one place: :mod:`pgrunbook.domain.status`.

Every command's ``--json`` output is :meth:`Report.to_dict`, the same top-level shape for
every command; every report is stored as the same JSON under
``<prefix>/<database>/reports/<operation>/<report-id>.json`` (see
:mod:`pgrunbook.domain.layout`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pgrunbook.domain.ids import new_report_id
from pgrunbook.domain.metrics import Metric
from pgrunbook.domain.status import exit_code

SEVERITY_ORDER = {"ok": 0, "info": 0, "warning": 1, "critical": 2}


class Payload(Protocol):
    """An operation's typed result: anything that serializes to a JSON object."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class JsonPayload:
    """A payload that is JSON already: a workflow's state, a command's answer, or the payload
    of a report read back from S3."""

    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


@dataclass
class Finding:
    check: str
    severity: str  # ok | info | warning | critical
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    operation: str
    database: str
    started_at: str
    report_id: str
    finished_at: str | None = None
    findings: list[Finding] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    payload: Payload | None = None
    skipped: str | None = None  # why there was nothing to do
    refused: str | None = None  # why the run was refused before anything changed
    untested: str | None = None  # why a backup could not be tested (the target cannot host it)
    location: str | None = None  # where the report was stored
    # where a deployed run ran and why (domain/runners.Choice.to_dict() plus "cpus")
    runner: dict[str, Any] | None = None
    # CloudWatch metrics the Lambda handler emits: name -> (unit, value)
    metrics: dict[str, tuple[str, float]] = field(default_factory=dict)

    @classmethod
    def start(cls, operation: str, database: str, now: datetime) -> Report:
        return cls(
            operation=operation, database=database, started_at=now.isoformat(), report_id=new_report_id(now)
        )

    def add(self, check: str, severity: str, message: str, **details: Any) -> Finding:
        if severity not in SEVERITY_ORDER:
            raise ValueError(f"unknown severity {severity!r}")
        finding = Finding(check, severity, " ".join(message.split()), details)
        self.findings.append(finding)
        return finding

    def measure(self, metric: Metric, value: float) -> None:
        """Record a CloudWatch metric (the Lambda handler emits it)."""
        self.metrics[metric.name] = (metric.unit, float(value))

    @property
    def status(self) -> str:
        if self.refused:
            return "refused"
        worst = max((SEVERITY_ORDER[f.severity] for f in self.findings), default=0)
        if worst < SEVERITY_ORDER["critical"] and self.untested:
            return "untested"  # a problem found outranks it; nothing is known otherwise
        if self.skipped:
            return "skipped"
        return ("ok", "warning", "critical")[worst]

    @property
    def exit_code(self) -> int:
        return exit_code(self.status)

    def problems(self) -> list[Finding]:
        return [f for f in self.findings if SEVERITY_ORDER[f.severity] > 0]

    @property
    def started(self) -> datetime:
        return datetime.fromisoformat(self.started_at)

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "database": self.database,
            "status": self.status,
            "exit_code": self.exit_code,
            "report_id": self.report_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "findings": [asdict(f) for f in self.findings],
            "figures": self.figures,
            "detail": self.detail,
            "payload": self.payload.to_dict() if self.payload is not None else None,
            "skipped": self.skipped,
            "refused": self.refused,
            "untested": self.untested,
            "location": self.location,
            "runner": self.runner,
            "metrics": {k: list(v) for k, v in self.metrics.items()},
        }

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=1, sort_keys=True, default=str) + "\n").encode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """A stored report; reports written before the ``operation`` key used ``job``."""
        payload = data.get("payload")
        return cls(
            operation=str(data.get("operation") or data["job"]),
            database=data["database"],
            started_at=data["started_at"],
            report_id=data["report_id"],
            finished_at=data.get("finished_at"),
            findings=[Finding(**f) for f in data.get("findings", [])],
            figures=dict(data.get("figures") or {}),
            detail=dict(data.get("detail") or {}),
            payload=JsonPayload(dict(payload)) if isinstance(payload, Mapping) else None,
            skipped=data.get("skipped"),
            refused=data.get("refused"),
            untested=data.get("untested"),
            location=data.get("location"),
            runner=dict(data["runner"]) if isinstance(data.get("runner"), Mapping) else None,
            metrics={k: (str(v[0]), float(v[1])) for k, v in (data.get("metrics") or {}).items()},
        )
