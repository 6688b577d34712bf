"""Job reports: what every scheduled job returns, stores and, when not ok, sends.

A report has a status (``ok``, ``warning`` or ``critical``; ``skipped`` when another run
held the lock), a list of findings (each a named check with a severity, a one-line message
and details such as the offending rows or S3 keys), and figures (the numbers dashboards
and metrics use).  Every report is stored as JSON under
``<prefix>/<database>/reports/<job>/<report-id>.json``, a durable record of every check
ever run, and report ids sort by time like backup ids.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from pgrunbook.adapters.s3.store import ObjectStore
from pgrunbook.domain.tiers import new_backup_id, time_stamp

SEVERITY_ORDER = {"ok": 0, "info": 0, "warning": 1, "critical": 2}
JOB_TITLES = {
    "backup": "Database Backup Failure",
    "verify": "Database Backup Verification",
    "restore-test": "Database Restore Test",
    "dr-drill": "Disaster Recovery Drill",
    "retention": "Backup Retention",
    "health": "Database Health",
    "pitr": "Database Point-in-Time Recovery",
    "migrate": "Schema Migration",
}


@dataclass
class Finding:
    check: str
    severity: str  # ok | info | warning | critical
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobReport:
    job: str
    database: str
    started_at: str
    report_id: str
    finished_at: str | None = None
    findings: list[Finding] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    location: str | None = None  # where the report was stored
    # CloudWatch metrics the Lambda handler emits: name -> (unit, value)
    metrics: dict[str, tuple[str, float]] = field(default_factory=dict)
    # the job's own result object (BackupReport, RestoreReport...), for the CLI; not stored
    raw: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def start(cls, job: str, database: str, now: datetime) -> JobReport:
        return cls(job=job, database=database, started_at=now.isoformat(), report_id=new_backup_id(now))

    def add(self, check: str, severity: str, message: str, **details: Any) -> Finding:
        if severity not in SEVERITY_ORDER:
            raise ValueError(f"unknown severity {severity!r}")
        finding = Finding(check, severity, " ".join(message.split()), details)
        self.findings.append(finding)
        return finding

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        worst = max((SEVERITY_ORDER[f.severity] for f in self.findings), default=0)
        return ("ok", "warning", "critical")[worst]

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "critical" else 0

    def problems(self) -> list[Finding]:
        return [f for f in self.findings if SEVERITY_ORDER[f.severity] > 0]

    @property
    def title(self) -> str:
        return JOB_TITLES.get(self.job, self.job)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "raw"}
        data["findings"] = [asdict(f) for f in self.findings]
        data["status"] = self.status
        return data

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=1, sort_keys=True, default=str) + "\n").encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobReport:
        return cls(
            job=data["job"],
            database=data["database"],
            started_at=data["started_at"],
            report_id=data["report_id"],
            finished_at=data.get("finished_at"),
            findings=[Finding(**f) for f in data.get("findings", [])],
            figures=dict(data.get("figures", {})),
            detail=dict(data.get("detail", {})),
            skipped=data.get("skipped"),
            location=data.get("location"),
            metrics={k: tuple(v) for k, v in data.get("metrics", {}).items()},
        )

    @property
    def started(self) -> datetime:
        return datetime.fromisoformat(self.started_at)


class ReportStore:
    """Reports of one database in one bucket: ``<prefix>/<database>/reports/<job>/``."""

    def __init__(self, store: ObjectStore):
        self.store = store

    def prefix(self, job: str) -> str:
        return f"{self.store.prefix}/{self.store.database}/reports/{job}/"

    def key(self, report: JobReport) -> str:
        return f"{self.prefix(report.job)}{report.report_id}.json"

    def put(self, report: JobReport) -> str:
        key = self.key(report)
        report.location = self.store.uri(key)
        self.store.put_bytes(key, report.to_json())
        return report.location

    def history(
        self, job: str, *, since: datetime | None = None, limit: int | None = None
    ) -> list[JobReport]:
        """Reports of ``job``, oldest first (since ``since``; the newest ``limit``)."""
        # Keys start with the report's time stamp, so listing can start right at ``since``.
        start_after = self.prefix(job) + time_stamp(since) if since is not None else None
        keys = [
            obj["Key"]
            for obj in self.store.list_keys(self.prefix(job), start_after=start_after)
            if obj["Key"].endswith(".json")
        ]
        keys.sort()
        if limit is not None:
            keys = keys[-limit:]
        reports = []
        for key in keys:
            raw = self.store.get_bytes(key)
            if raw is None:
                continue
            try:
                reports.append(JobReport.from_dict(json.loads(raw)))
            except (ValueError, KeyError, TypeError):
                continue  # a damaged report is not a reason to fail a job
        return reports

    def latest(self, job: str) -> JobReport | None:
        reports = self.history(job, limit=1)
        return reports[-1] if reports else None


def utcnow() -> datetime:
    return datetime.now(UTC)
