"""Applying and rolling back migrations, with a record of what was applied.

``pgrunbook.schema_migrations`` (created from ``sql/schema/schema_migrations.sql``) holds one
row per applied migration: version, name, SHA-256 of the file, applied_at, duration,
applied_by.  Before anything runs, the files and that record must agree:

* an applied migration whose file changed (checksum) or disappeared is an error: the schema
  no longer matches the files, and a person must decide which is right;
* a pending file whose version is older than the newest applied one is out of order: it
  was written before a migration that has run since, and applying it now may not mean what
  its author tested.

Each migration runs in its own transaction with ``lock_timeout`` (default 5 s: better to
fail than to queue every query behind an ``ACCESS EXCLUSIVE`` lock) and
``statement_timeout`` (default 15 min); its verify part runs in the same transaction, and
the history row is written in it too, so a migration is either applied, verified and
recorded, or not at all.  A ``transaction:false`` file runs statement by statement with the
same timeouts and is recorded only when all of them and its verify part succeed.
``apply`` stops at the first failure.  Runs take a session advisory lock, so two cannot
interleave.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.domain.errors import ConfigError, MigrationError, SqlError
from pgrunbook.domain.ids import Clock, utcnow
from pgrunbook.domain.redact import one_line, redact
from pgrunbook.settings.files import sql_file
from pgrunbook.workflows.migrate.files import MigrationFile, Part, discover
from pgrunbook.workflows.migrate.lint import Finding, lint_all

ADVISORY_LOCK = 0x7067726E_6D696772  # "pgrnmigr"


class VerifyFailed(MigrationError):
    pass


@dataclass
class Applied:
    version: str
    name: str
    sha256: str
    applied_at: datetime
    duration_ms: int
    applied_by: str


@dataclass
class Status:
    files: list[MigrationFile]
    applied: list[Applied]
    pending: list[MigrationFile]
    problems: list[str]
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": [
                {
                    "version": a.version,
                    "name": a.name,
                    "applied_at": a.applied_at.isoformat(),
                    "duration_ms": a.duration_ms,
                    "applied_by": a.applied_by,
                }
                for a in self.applied
            ],
            "pending": [
                {"version": m.version, "name": m.name, "transaction": m.transaction} for m in self.pending
            ],
            "problems": self.problems,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class Step:
    version: str
    name: str
    action: str  # apply | rollback
    status: str  # ok | failed | skipped
    duration_ms: int = 0
    error: str = ""
    statement_line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


@dataclass
class RunResult:
    action: str
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.status == "ok" for s in self.steps)

    @property
    def done(self) -> list[str]:
        return [s.version for s in self.steps if s.status == "ok"]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "ok": self.ok, "steps": [s.to_dict() for s in self.steps]}


def _error(exc: Exception) -> str:
    return one_line(exc)[:500]


_TIMEOUT = re.compile(r"^\d+\s*(ms|s|min|h)?$")


class Migrator:
    def __init__(
        self,
        info: ConnInfo,
        directory: Path,
        *,
        applied_by: str,
        lock_timeout: str = "5s",
        statement_timeout: str = "15min",
        clock: Clock = utcnow,
        progress: Any = None,
    ):
        self.info = info
        self.directory = directory
        self.applied_by = applied_by
        self.lock_timeout = lock_timeout
        self.statement_timeout = statement_timeout
        self.clock = clock
        self.progress = progress
        for name, value in (("lock_timeout", lock_timeout), ("statement_timeout", statement_timeout)):
            if not _TIMEOUT.match(value):
                raise ConfigError(f"{name} {value!r} is not a duration like 5s, 500ms or 15min")

    @classmethod
    def from_settings(cls, settings: Any, progress: Any = None, **overrides: Any) -> Migrator:
        """The configured database, migrations folder and timeouts (``overrides`` replace any)."""
        options = {
            "applied_by": settings.creator,
            "lock_timeout": settings.lock_timeout,
            "statement_timeout": settings.statement_timeout,
            "progress": progress,
            **overrides,
        }
        info = options.pop("info", None) or settings.conninfo()
        return cls(info, settings.migrations_path, **options)

    def _step(self, message: str) -> None:
        if self.progress is not None:
            self.progress.step(message)

    # -- reading ---------------------------------------------------------------------------

    @staticmethod
    def ensure_history(db: Database) -> None:
        db.run(sql_file("schema/schema_migrations.sql"))

    @staticmethod
    def history(db: Database) -> list[Applied]:
        exists = db.run("SELECT to_regclass('pgrunbook.schema_migrations') IS NOT NULL")[0][0]
        if not exists:
            return []
        rows = db.run(
            "SELECT version, name, sha256, applied_at, duration_ms, applied_by "
            "FROM pgrunbook.schema_migrations ORDER BY version"
        )
        return [Applied(*row) for row in rows]

    def status(self, db: Database | None = None) -> Status:
        files = discover(self.directory)
        if db is None:
            with Database.connect(self.info, application_name="pgrunbook-migrate") as conn:
                applied = self.history(conn)
        else:
            applied = self.history(db)
        return self.compare(files, applied)

    @staticmethod
    def compare(files: list[MigrationFile], applied: list[Applied]) -> Status:
        by_version = {f.version: f for f in files}
        done = {a.version for a in applied}
        problems: list[str] = []
        for a in applied:
            f = by_version.get(a.version)
            if f is None:
                problems.append(f"{a.version}_{a.name} was applied but its file is missing")
            elif f.sha256 != a.sha256:
                problems.append(
                    f"{f.path.name} changed after it was applied (SHA-256 {a.sha256[:12]} when applied, "
                    f"{f.sha256[:12]} now): write a new migration instead of editing an applied one"
                )
        newest = max(done) if done else None
        pending = [f for f in files if f.version not in done]
        for f in pending:
            if newest is not None and f.version < newest:
                problems.append(
                    f"{f.path.name} is out of order: it is older than {newest}, which is already applied; "
                    "give it a new version (timestamp)"
                )
        return Status(files, applied, pending, problems, lint_all(pending))

    def plan(self) -> Status:
        return self.status()

    # -- running -----------------------------------------------------------------------------

    def _session(self, db: Database) -> None:
        db.run(f"SET lock_timeout = '{self.lock_timeout}'")
        db.run(f"SET statement_timeout = '{self.statement_timeout}'")

    def _run_part(self, db: Database, migration: MigrationFile, part: Part) -> None:
        for statement in part.statements:
            try:
                db.run(statement.text)
            except SqlError as exc:
                raise MigrationError(
                    f"{migration.path.name}:{statement.line}: {part.name} failed: {_error(exc)}"
                ) from None

    def _verify(self, db: Database, migration: MigrationFile) -> None:
        for statement in migration.verify.statements:
            try:
                rows = db.run(statement.text)
            except SqlError as exc:
                raise VerifyFailed(
                    f"{migration.path.name}:{statement.line}: verify failed: {_error(exc)}"
                ) from None
            if rows:
                sample = "; ".join(str(tuple(r)) for r in rows[:3])
                raise VerifyFailed(
                    f"{migration.path.name}:{statement.line}: verify failed: {len(rows)} violating rows ({redact(sample)[:300]})"
                )

    def _check(self, status: Status, *, allow_destructive: bool) -> None:
        if status.problems:
            raise ConfigError(f"migrations and database disagree: {status.problems[0]}")
        errors = [f for f in status.findings if f.severity == "error"]
        if errors:
            raise ConfigError(f"lint: {errors[0]}")
        destructive = [f for f in status.findings if f.severity == "approval"]
        if destructive and not allow_destructive:
            raise ConfigError(f"lint: {destructive[0]} (pass --allow-destructive once it is approved)")

    @contextmanager
    def _locked(self) -> Iterator[Database]:
        """A session holding the migration advisory lock, with the migration timeouts set."""
        with Database.connect(self.info, application_name="pgrunbook-migrate") as db:
            db.run("SELECT pg_advisory_lock(CAST(:k AS bigint))", k=ADVISORY_LOCK)
            try:
                self._session(db)
                yield db
            finally:
                db.run("SELECT pg_advisory_unlock(CAST(:k AS bigint))", k=ADVISORY_LOCK)

    def apply(
        self, *, allow_destructive: bool = False, to_version: str | None = None, only: list[str] | None = None
    ) -> RunResult:
        """Apply pending migrations in order (up to ``to_version``, or exactly ``only``),
        stopping at the first failure.  Bad state or lint errors raise ConfigError before
        anything runs."""
        with self._locked() as db:
            self.ensure_history(db)
            status = self.status(db)
            pending = [m for m in status.pending if to_version is None or m.version <= to_version]
            if only is not None:
                unknown = set(only) - {m.version for m in status.pending}
                if unknown:
                    raise ConfigError(f"not pending: {', '.join(sorted(unknown))}")
                pending = [m for m in pending if m.version in only]
            chosen = {m.path.name for m in pending}
            status.findings = [f for f in status.findings if f.file in chosen]
            self._check(status, allow_destructive=allow_destructive)
            return self._run(db, "apply", pending)

    def rollback(
        self, *, steps: int | None = 1, to_version: str | None = None, only: list[str] | None = None
    ) -> RunResult:
        """Run the down parts of applied migrations, newest first: the last ``steps``, those
        after ``to_version``, or exactly the versions in ``only``."""
        with self._locked() as db:
            status = self.status(db)
            files = {f.version: f for f in status.files}
            applied = list(reversed(status.applied))
            if only is not None:
                chosen = [a for a in applied if a.version in only]
            elif to_version is not None:
                chosen = [a for a in applied if a.version > to_version]
            else:
                chosen = applied[: steps or 0]
            for a in chosen:
                f = files.get(a.version)
                if f is None or f.sha256 != a.sha256:
                    raise ConfigError(
                        f"cannot roll back {a.version}_{a.name}: its file is missing or changed"
                    )
                if f.down.empty:
                    raise ConfigError(
                        f"cannot roll back {f.path.name}: it has no -- migrate:down part; restore a backup instead"
                    )
            return self._run(db, "rollback", [files[a.version] for a in chosen])

    def _run(self, db: Database, action: str, migrations: list[MigrationFile]) -> RunResult:
        """Each migration in turn (in its own transaction unless it says otherwise), stopping at
        the first that fails; the history row is written or deleted with the migration."""
        result = RunResult(action)
        for migration in migrations:
            self._step(f"{'applying' if action == 'apply' else 'rolling back'} {migration.label}")
            started = time.monotonic()
            step = Step(migration.version, migration.name, action, "ok")
            try:
                if migration.transaction:
                    db.run("BEGIN")
                try:
                    if action == "apply":
                        self._run_part(db, migration, migration.up)
                        self._verify(db, migration)
                        self._record(db, migration, started)
                    else:
                        self._run_part(db, migration, migration.down)
                        db.run(
                            "DELETE FROM pgrunbook.schema_migrations WHERE version = :v", v=migration.version
                        )
                    if migration.transaction:
                        db.run("COMMIT")
                except BaseException:
                    if migration.transaction:
                        db.run("ROLLBACK")
                    raise
            except MigrationError as exc:
                step.status, step.error = "failed", str(exc)
            step.duration_ms = int((time.monotonic() - started) * 1000)
            result.steps.append(step)
            if step.status != "ok":
                break
        return result

    def _record(self, db: Database, migration: MigrationFile, started: float) -> None:
        db.run(
            "INSERT INTO pgrunbook.schema_migrations (version, name, sha256, applied_at, duration_ms, applied_by) "
            "VALUES (:v, :n, :s, :at, :d, :by)",
            v=migration.version,
            n=migration.name,
            s=migration.sha256,
            at=self.clock(),
            d=int((time.monotonic() - started) * 1000),
            by=self.applied_by,
        )
