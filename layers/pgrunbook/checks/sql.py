"""Data-quality checks written as SQL: each query returns the rows that violate a rule.

A check is a ``.sql`` file with a header of ``--`` comments::

    -- check: orphaned_tasks
    -- severity: critical              (warning when absent)
    -- requires: tasks, projects       (skipped when a table is missing)
    -- description: Tasks whose project no longer exists.
    SELECT t.id, t.project_id FROM tasks t LEFT JOIN projects p ON p.id = t.project_id
    WHERE p.id IS NULL

pgrunbook ships the runbooks' checks in ``sql/checks/``; ``PGRUNBOOK_CHECKS_DIR`` adds a
folder of your own.  Checks run in a read-only transaction with a statement timeout, on the
live database (daily verification) and on every restored copy (weekly restore test).  A
violated check reports up to :data:`ROW_SAMPLE` of the offending rows and their count.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgrunbook.adapters.postgres.connection import Database, quote_literal
from pgrunbook.domain.errors import ConfigError, SqlError
from pgrunbook.domain.results import Report
from pgrunbook.settings.files import sql_dir

ROW_SAMPLE = 20
STATEMENT_TIMEOUT = "60s"
_HEADER = re.compile(r"^--\s*(check|severity|requires|description)\s*:\s*(.*?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class SqlCheck:
    name: str
    query: str
    severity: str = "warning"
    requires: tuple[str, ...] = ()
    description: str = ""
    path: str = ""

    @classmethod
    def from_file(cls, path: Path) -> SqlCheck:
        header: dict[str, str] = {}
        body: list[str] = []
        for line in path.read_text().splitlines():
            match = _HEADER.match(line)
            if match and not body:
                header[match.group(1).lower()] = match.group(2)
            elif line.strip() and not line.strip().startswith("--"):
                body.append(line)
            elif body:
                body.append(line)
        query = "\n".join(body).strip().rstrip(";").strip()
        if not query:
            raise ConfigError(f"check {path} has no query")
        if ";" in _strip_literals(query):
            raise ConfigError(f"check {path} must hold a single SELECT statement")
        severity = header.get("severity", "warning").lower()
        if severity not in ("warning", "critical"):
            raise ConfigError(f"check {path}: severity must be warning or critical, not {severity!r}")
        requires = tuple(r.strip() for r in header.get("requires", "").split(",") if r.strip())
        return cls(
            name=header.get("check") or path.stem,
            query=query,
            severity=severity,
            requires=requires,
            description=header.get("description", ""),
            path=str(path),
        )


@dataclass
class CheckResult:
    name: str
    severity: str  # ok | warning | critical | info (skipped)
    message: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0
    figures: dict[str, Any] = field(default_factory=dict)  # merged into the report's figures


def _strip_literals(sql: str) -> str:
    return re.sub(r"'(?:[^']|'')*'", "''", sql)


def check_dirs(extra: str | None = None) -> list[Path]:
    dirs = [sql_dir() / "checks"]
    if extra:
        path = Path(extra)
        if not path.is_dir():
            raise ConfigError(f"PGRUNBOOK_CHECKS_DIR {extra} is not a folder")
        dirs.append(path)
    return dirs


def load_checks(dirs: list[Path]) -> list[SqlCheck]:
    checks: dict[str, SqlCheck] = {}
    for directory in dirs:
        for path in sorted(directory.glob("*.sql")):
            check = SqlCheck.from_file(path)
            checks[check.name] = check  # a check of your own replaces a shipped one of that name
    return list(checks.values())


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


def _end_check(db: Database, nested: bool) -> None:
    if nested:
        db.run("ROLLBACK TO SAVEPOINT pgrunbook_check")
        db.run("RELEASE SAVEPOINT pgrunbook_check")
    else:
        db.run("ROLLBACK")


def run_check(db: Database, check: SqlCheck) -> CheckResult:
    missing = [t for t in check.requires if db.scalar("SELECT to_regclass(:t) IS NULL", t=t)]
    if missing:
        return CheckResult(check.name, "info", f"skipped: {', '.join(missing)} not in this database")
    # A check runs read-only under its own statement timeout.  On a connection with no
    # transaction open it gets one of its own; inside the caller's transaction it runs in a
    # savepoint that is rolled back afterwards, which undoes its settings and leaves the
    # caller's transaction open and as it was (never committed by a check).
    nested = db.in_transaction
    db.run("SAVEPOINT pgrunbook_check" if nested else "BEGIN")
    try:
        db.run("SET LOCAL transaction_read_only TO on")
        db.run(f"SET LOCAL statement_timeout TO {quote_literal(STATEMENT_TIMEOUT)}")
        rows = db.rows(f"SELECT * FROM ({check.query}) AS violations LIMIT {ROW_SAMPLE + 1}")
        count = len(rows)
        if count > ROW_SAMPLE:
            count = int(db.scalar(f"SELECT count(*) FROM ({check.query}) AS violations"))
    except SqlError as exc:
        _end_check(db, nested)
        return CheckResult(check.name, "warning", f"the check could not run: {exc}")
    _end_check(db, nested)
    sample = [{k: jsonable(v) for k, v in row.items()} for row in rows[:ROW_SAMPLE]]
    if not count:
        message = f"no violations: {check.description}" if check.description else "no violations"
        return CheckResult(check.name, "ok", message)
    what = check.description or check.name
    rows_word = "row violates" if count == 1 else "rows violate"
    return CheckResult(check.name, check.severity, f"{count} {rows_word} {check.name}: {what}", sample, count)


def run_checks(db: Database, checks: list[SqlCheck]) -> list[CheckResult]:
    return [run_check(db, check) for check in checks]


def add_to_report(report: Report, results: list[CheckResult], *, where: str = "") -> None:
    prefix = f"{where}:" if where else ""
    for result in results:
        details: dict[str, Any] = {}
        if result.count:
            details = {"count": result.count, "rows": result.rows}
        report.add(f"{prefix}{result.name}", result.severity, result.message, **details)
        for key, value in result.figures.items():
            report.figures[f"{prefix}{key}"] = value
