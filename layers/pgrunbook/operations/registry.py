"""The operation registry: one declaration per runbook operation.

Everything that runs an operation derives from its entry here:

* the CLI subcommand (:mod:`pgrunbook.entrypoints.cli.parser`): its help, its own options as
  flags, and the settings flags it offers (declared with each setting in
  :mod:`pgrunbook.settings.options`);
* the Lambda handler (:mod:`pgrunbook.entrypoints.aws_lambda`): which event keys it takes and
  how they are checked (the same :class:`~pgrunbook.settings.options.Option` objects as the
  flags, so both refuse a bad value with the same message), the metrics it emits;
* the notifications (:class:`~pgrunbook.domain.notices.Wording`: title, impact, next update);
* in the CDK app (``infra/``): the function (memory, timeout, ephemeral storage, reserved
  concurrency), its environment (the settings the operation reads), its EventBridge schedules
  and its IAM grants (:class:`Grant` records, turned into policy statements by
  ``infra/constructs/access.py``), and for a workflow the function that runs its phases.

Adding an operation is one module in :mod:`pgrunbook.operations` with a ``run(ctx, report,
**options)`` function, and one entry in :data:`OPERATIONS` (docs/architecture.md has the
checklist).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from pgrunbook.domain import metrics as m
from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.ids import is_backup_id
from pgrunbook.domain.layout import BACKUPS, LEASES, PAGES, REPORTS, everything_under
from pgrunbook.domain.notices import Wording
from pgrunbook.domain.tiers import TIERS, parse_tiers
from pgrunbook.settings.options import Option

# -- what an operation needs from AWS -------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One IAM statement an operation needs, in terms of pgrunbook's resources.

    ``kind``: ``list`` (list a backup bucket; ``lock`` adds reading its Object Lock setting,
    ``uploads`` listing its open multipart uploads),
    ``objects`` (``paths`` under ``<prefix>/<database>/`` in that bucket), ``key`` (the bucket's
    KMS key), ``secret`` (the Secrets Manager secret a setting names).  ``bucket`` is
    ``primary`` or ``dr``; infra resolves it to this stack's bucket or the other region's."""

    sid: str
    kind: str
    bucket: str = "primary"
    paths: tuple[str, ...] = ()
    read: bool = False
    write: bool = False
    delete: bool = False
    lock: bool = False
    uploads: bool = False
    encrypt: bool = False
    decrypt: bool = False
    setting: str = ""  # kind "secret": the option holding the ARN


def listing(sid: str, bucket: str, *, lock: bool = False, uploads: bool = False) -> Grant:
    return Grant(sid, "list", bucket, lock=lock, uploads=uploads)


def objects(
    sid: str,
    bucket: str,
    *paths: str,
    read: bool = False,
    write: bool = False,
    delete: bool = False,
    lock: bool = False,
) -> Grant:
    return Grant(sid, "objects", bucket, paths=paths, read=read, write=write, delete=delete, lock=lock)


def key(sid: str, bucket: str, *, encrypt: bool = False, decrypt: bool = False) -> Grant:
    return Grant(sid, "key", bucket, encrypt=encrypt, decrypt=decrypt)


def secret(sid: str, setting: str, *, write: bool = False) -> Grant:
    return Grant(sid, "secret", setting=setting, write=write)


BACKUP_FILES = everything_under(BACKUPS)
ALL_LEASES = everything_under(LEASES)
ALL_REPORTS = everything_under(REPORTS)


def reports_of(*operations: str) -> tuple[str, ...]:
    return tuple(everything_under(REPORTS, op) for op in operations)


# -- where it runs and when ----------------------------------------------------------------


@dataclass(frozen=True)
class Lambda:
    """The Lambda function that runs the operation (or every phase of a workflow)."""

    description: str
    memory_mb: int
    timeout_minutes: int
    ephemeral_mb: int = 512
    exclusive: bool = False  # reserved concurrency 1: a second start waits


@dataclass(frozen=True)
class Fargate:
    """The ECS Fargate task that runs the operation when Lambda cannot (any size): chosen per
    run by the dispatch (:mod:`pgrunbook.domain.runners`).  cdk.json's ``fargate`` may change
    the size; the ephemeral storage is Fargate's largest."""

    cpu: int = 4096  # CPU units: 1024 = 1 vCPU (parallel jobs follow the vCPUs)
    memory_mib: int = 16384
    ephemeral_gib: int = 200


@dataclass(frozen=True)
class Schedule:
    """A default EventBridge schedule; ``key`` is its name in cdk.json's ``schedules``."""

    id: str
    key: str
    expression: str  # cron(...) or rate(...), UTC
    input: dict[str, Any] = field(default_factory=dict)
    enabled_by: str | None = None  # a boolean in cdk.json that switches it on


# -- the declaration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    name: str  # the CLI subcommand, the report folder, the Lambda function's suffix
    module: str  # where ``run(ctx, report, **options)`` (or a workflow's phases) lives
    help: str  # one line for ``pgrunbook --help``
    wording: Wording
    kind: str = "job"  # job (scheduled or on demand) | workflow | command (CLI only)
    options: tuple[Option, ...] = ()
    metrics: tuple[m.Metric, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    grants: tuple[Grant, ...] = ()
    function: Lambda | None = None  # None: not deployed
    task: Fargate | None = None  # None: always runs in Lambda (short by nature)
    # a workflow's phases (or, for a job with a ``workflow``, that workflow's) that may outgrow
    # a Lambda invocation: the dispatch runs each where cdk.json's runner says
    long_phases: tuple[str, ...] = ()
    region: str = "primary"  # the stack its function is in: primary | dr
    stores_report: bool = True
    includes: tuple[str, ...] = ()  # operations it runs as steps (their settings and grants)
    needs_database: bool = True  # False: runs without a configured database (config)
    # the phases its function also runs when a deployment routes its schedule through a
    # workflow (a restore on a throwaway RDS target): a task event {"phase", "state"}
    workflow: str | None = None

    @property
    def event_options(self) -> dict[str, Option]:
        return {o.name: o for o in self.options if o.event}

    def option(self, name: str) -> Option:
        return next(o for o in self.options if o.name == name)


def _tiers(label: str, value: str) -> None:
    from pgrunbook.domain.ids import utcnow

    if not value.strip():
        raise ConfigError(f"{label} must name at least one tier ({', '.join(TIERS)})")
    parse_tiers(value, utcnow())


def _backup_id(label: str, value: str) -> None:
    if not is_backup_id(value):
        raise ConfigError(
            f"{label} {value!r} is not a pgrunbook backup id (like 20261121T020000.123Z-3fa9c1)"
        )


def _tier(label: str, value: str) -> None:
    if value not in TIERS:
        raise ConfigError(f"{label} must be one of {', '.join(TIERS)}, not {value!r}")


BACKUP = Operation(
    "backup",
    "pgrunbook.operations.backup",
    "take a verified backup and copy it to the DR region",
    Wording(
        "Database Backup Failure",
        "No new restorable backup was made: changes since the last good backup are not protected.",
    ),
    options=(
        Option(
            "tier",
            "tiers, comma separated (default: derived from the date: daily, weekly on Sundays, "
            "monthly on the first Sunday)",
            flag="--tier",
            check=_tiers,
        ),
    ),
    metrics=(m.BACKUP_SIZE, m.BACKUP_DURATION, m.BACKUP_SUCCEEDED),
    schedules=(
        Schedule("Daily", "backup", "cron(0 2 * * ? *)"),
        Schedule(
            "Hourly", "hourly_backup", "cron(0 * * * ? *)", {"tier": "hourly"}, enabled_by="hourly_backups"
        ),
    ),
    grants=(
        listing("PrimaryBucket", "primary", lock=True, uploads=True),
        objects("PrimaryBackups", "primary", BACKUP_FILES, read=True, write=True, delete=True, lock=True),
        key("PrimaryKey", "primary", encrypt=True, decrypt=True),
        listing("DrBucket", "dr", lock=True, uploads=True),
        objects("DrBackups", "dr", BACKUP_FILES, read=True, write=True, delete=True, lock=True),
        key("DrKey", "dr", encrypt=True, decrypt=True),
        secret("DatabaseSecret", "database_secret_arn"),
    ),
    function=Lambda(
        "pgrunbook backup: snapshot, pg_dump, fingerprints, upload, DR copy (tiers from the date)",
        memory_mb=3008,
        timeout_minutes=15,
        ephemeral_mb=10240,
        exclusive=True,
    ),
    task=Fargate(),
)

RESTORE_TEST = Operation(
    "restore-test",
    "pgrunbook.operations.restore_test",
    "restore a backup into a scratch database and prove it complete",
    Wording(
        "Database Restore Test",
        "The tested backup did not restore completely: it cannot be trusted for recovery.",
    ),
    options=(
        Option(
            "backup_id",
            "the backup to test (default: the newest complete one)",
            flag="--backup-id",
            check=_backup_id,
        ),
        Option(
            "source",
            "the bucket to restore from",
            default="primary",
            kind="choice",
            choices=("primary", "dr"),
            flag="--from",
        ),
        Option(
            "prefer_tier",
            "test the newest backup of this tier (the weekly schedule says weekly), else the newest",
            flag="--prefer-tier",
            check=_tier,
        ),
        Option(
            "run_user_checks",
            "skip the data-quality checks on the restored copy",
            default=True,
            kind="bool",
            flag="--no-checks",
            negate=True,
        ),
        Option("keep", "keep the scratch database", default=False, kind="bool", flag="--keep", event=False),
    ),
    metrics=(m.RESTORE_INTEGRITY, m.RESTORE_TESTED, m.RESTORE_DURATION),
    workflow="pgrunbook.workflows.restore.phases",
    schedules=(Schedule("Weekly", "restore_test", "cron(0 5 ? * SUN *)", {"prefer_tier": "weekly"}),),
    grants=(
        listing("PrimaryBucket", "primary"),
        objects("PrimaryBackups", "primary", BACKUP_FILES, read=True),
        objects("PrimaryLeases", "primary", ALL_LEASES, write=True, delete=True),
        key("PrimaryKey", "primary", encrypt=True, decrypt=True),
        secret("RestoreTargetSecret", "restore_target_secret_arn"),
    ),
    function=Lambda(
        "pgrunbook restore-test: the latest weekly backup restored and proven complete",
        memory_mb=3008,
        timeout_minutes=15,
        ephemeral_mb=10240,
        exclusive=True,
    ),
    task=Fargate(),
    long_phases=("run",),
)

VERIFY = Operation(
    "verify",
    "pgrunbook.operations.verify",
    "daily verification: freshness, checksums in both regions, database checks",
    Wording(
        "Database Backup Verification",
        "Backups may not be restorable, or the database has data-quality or security problems.",
    ),
    options=(
        Option(
            "recent_days",
            "verify every file of the backups this recent",
            default=7,
            kind="int",
            low=1,
            high=3650,
            flag="--recent-days",
        ),
        Option(
            "check_database",
            "check only the backups, not the live database",
            default=True,
            kind="bool",
            flag="--no-database",
            negate=True,
        ),
    ),
    metrics=(m.BACKUP_AGE, m.BACKUP_FAILURE_RATE, m.VERIFY_PROBLEMS, m.STORAGE_GROWTH),
    schedules=(Schedule("Daily", "verify", "cron(0 4 * * ? *)"),),
    grants=(
        listing("PrimaryBucket", "primary"),
        objects("PrimaryRead", "primary", BACKUP_FILES, ALL_REPORTS, read=True),
        key("PrimaryKey", "primary", encrypt=True, decrypt=True),
        listing("DrBucket", "dr"),
        objects("DrBackups", "dr", BACKUP_FILES, read=True),
        key("DrKey", "dr", decrypt=True),
        secret("DatabaseSecret", "database_secret_arn"),
    ),
    function=Lambda(
        "pgrunbook verify: freshness, checksums in both regions, database checks",
        memory_mb=1024,
        timeout_minutes=10,
    ),
)

DR_DRILL = Operation(
    "dr-drill",
    "pgrunbook.operations.dr_drill",
    "monthly DR drill: restore from the DR region only; measure RTO and RPO",
    Wording(
        "Disaster Recovery Drill",
        "Recovery from the DR region is slower, older or less complete than the targets allow.",
    ),
    options=(
        Option(
            "scenario",
            "what the drill assumes was lost",
            default="complete_data_loss",
            kind="choice",
            choices=("complete_data_loss",),
            flag="--scenario",
        ),
        Option(
            "attempts",
            "DR backups to try, newest first, before the drill fails",
            default=3,
            kind="int",
            low=1,
            high=100,
            flag="--attempts",
        ),
    ),
    metrics=(m.DRILL_RTO, m.DRILL_RPO, m.DRILL_INTEGRITY, m.RESTORE_TESTED),
    workflow="pgrunbook.workflows.restore.phases",
    schedules=(Schedule("Monthly", "dr_drill", "cron(0 6 ? * SUN#1 *)", {"scenario": "complete_data_loss"}),),
    grants=(
        listing("DrBucket", "dr"),
        objects("DrBackups", "dr", BACKUP_FILES, read=True),
        objects("DrReports", "dr", *reports_of("dr-drill"), read=True, write=True),
        objects("DrLeases", "dr", ALL_LEASES, write=True, delete=True),
        key("DrKey", "dr", encrypt=True, decrypt=True),
        secret("DrRestoreTargetSecret", "dr_restore_target_secret_arn"),
        # a copy of each drill report for the primary region's status and retention
        objects("PrimaryReports", "primary", *reports_of("dr-drill"), write=True),
        key("PrimaryKey", "primary", encrypt=True),
    ),
    function=Lambda(
        "pgrunbook dr-drill: restore from the DR region only; measure RTO and RPO",
        memory_mb=3008,
        timeout_minutes=15,
        ephemeral_mb=10240,
        exclusive=True,
    ),
    task=Fargate(),
    long_phases=("run",),
    region="dr",
)

RETENTION = Operation(
    "retention",
    "pgrunbook.operations.retention",
    "delete backups past their tier's retention, in both regions",
    Wording(
        "Backup Retention",
        "Backups may be kept too long (cost, compliance) or partial uploads left behind.",
    ),
    options=(
        Option("dry_run", "print the plan and change nothing", default=False, kind="bool", flag="--dry-run"),
    ),
    metrics=(m.RETENTION_DELETED, m.RETENTION_FREED),
    schedules=(Schedule("Daily", "retention", "cron(0 3 * * ? *)"),),
    grants=(
        listing("PrimaryBucket", "primary"),
        objects("PrimaryBackups", "primary", BACKUP_FILES, read=True, write=True, delete=True),
        objects("PrimaryLeases", "primary", ALL_LEASES, delete=True),
        objects("PrimaryReports", "primary", ALL_REPORTS, read=True),
        key("PrimaryKey", "primary", encrypt=True, decrypt=True),
        listing("DrBucket", "dr"),
        objects("DrBackups", "dr", BACKUP_FILES, read=True, write=True, delete=True),
        objects("DrLeases", "dr", ALL_LEASES, delete=True),
        key("DrKey", "dr", encrypt=True, decrypt=True),
    ),
    function=Lambda(
        "pgrunbook retention: grandfather-father-son by tier, both regions",
        memory_mb=512,
        timeout_minutes=10,
        exclusive=True,
    ),
)

HEALTH = Operation(
    "health",
    "pgrunbook.operations.health",
    "weekly health: slow queries, unused indexes, bloat, locks, statistics",
    Wording("Database Health", "Query performance or capacity is degrading."),
    metrics=(
        m.DATABASE_SIZE,
        m.CONNECTION_USE,
        m.UNUSED_INDEXES,
        m.WORST_BLOAT,
        m.BLOCKED_SESSIONS,
        m.SLOW_STATEMENTS,
    ),
    schedules=(Schedule("Weekly", "health", "cron(0 7 ? * MON *)"),),
    grants=(
        key("PrimaryKey", "primary", encrypt=True),
        secret("DatabaseSecret", "database_secret_arn"),
    ),
    function=Lambda(
        "pgrunbook health: slow queries, unused indexes, bloat, locks, statistics",
        memory_mb=512,
        timeout_minutes=5,
    ),
)

STATUS = Operation(
    "status",
    "pgrunbook.operations.status",
    "the morning check: tiers, last runs, drill trend, and the catalog",
    Wording("Database Backup Status"),
    kind="command",
    options=(
        Option("limit", "show only the newest N backups", kind="int", low=1, flag="--limit", event=False),
        Option(
            "html",
            "also write the status page (the morning check and 90 days of charts) to FILE",
            flag="--html",
            event=False,
            metavar="FILE",
        ),
    ),
    stores_report=False,
)

STATUS_PAGE = Operation(
    "status-page",
    "pgrunbook.operations.status_page",
    "the weekly status page: the morning check and 90 days of charts, written to S3",
    Wording("Weekly Backup Status Page"),
    schedules=(Schedule("Weekly", "status_page", "cron(30 7 ? * MON *)"),),
    grants=(
        listing("PrimaryBucket", "primary"),
        objects("PrimaryRead", "primary", BACKUP_FILES, ALL_REPORTS, read=True),
        objects("Pages", "primary", everything_under(PAGES), write=True),
        key("PrimaryKey", "primary", encrypt=True, decrypt=True),
        listing("DrBucket", "dr"),
        objects("DrRead", "dr", BACKUP_FILES, *reports_of("dr-drill"), read=True),
        key("DrKey", "dr", decrypt=True),
    ),
    function=Lambda(
        "pgrunbook status-page: the morning check and 90 days of charts, as one HTML page in S3",
        memory_mb=1024,
        timeout_minutes=5,
    ),
    needs_database=False,
)

CONFIG = Operation(
    "config",
    "pgrunbook.operations.config",
    "the effective configuration: every option, its value and where it came from",
    Wording("pgrunbook Configuration"),
    kind="command",
    stores_report=False,
    needs_database=False,
)

PITR = Operation(
    "pitr",
    "pgrunbook.workflows.pitr.phases",
    "point-in-time recovery: start, approve or reject, status, maintenance",
    Wording(
        "Database Point-in-Time Recovery",
        "The point-in-time recovery did not complete: the application stays in maintenance mode "
        "(writes refused) until an engineer finishes or reverses the recovery.",
        "from the engineer who takes over the recovery (pgrunbook pitr status shows where it stands)",
    ),
    kind="workflow",
    metrics=(m.PITR_DOWNTIME, m.PITR_DATA_LOSS),
    # the provider's own grants (and the secret's write access for a cutover) are added by
    # infra, which knows the configured provider
    grants=(key("PrimaryKey", "primary", encrypt=True, decrypt=True),),
    function=Lambda(
        "pgrunbook point-in-time recovery: every phase of the recovery workflow",
        memory_mb=3008,
        timeout_minutes=15,
        ephemeral_mb=10240,
    ),
    task=Fargate(),
    long_phases=("safety_point", "start"),
)

MIGRATE = Operation(
    "migrate",
    "pgrunbook.workflows.migrate.phases",
    "schema migrations: lint, status, plan, apply, rollback",
    Wording(
        "Schema Migration",
        "The schema migration did not complete: see which migrations were rolled back and which "
        "backup restores the database as it was before the run.",
        "from the engineer who takes over the migration (pgrunbook migrate status)",
    ),
    kind="workflow",
    includes=("backup",),
    grants=(
        objects("Leases", "primary", ALL_LEASES, write=True, delete=True),
        secret("RestoreTargetSecret", "restore_target_secret_arn"),
    ),
    function=Lambda(
        "pgrunbook schema migration: every phase of the migration workflow",
        memory_mb=3008,
        timeout_minutes=15,
        ephemeral_mb=10240,
    ),
    task=Fargate(),
    long_phases=("backup", "dry_run", "apply"),
)


def _table_list(label: str, value: str) -> None:
    from pgrunbook.domain.selection import parse_tables

    if not parse_tables(value):
        raise ConfigError(f"{label} must name at least one table (schema.table,...)")


def _schema_list(label: str, value: str) -> None:
    if not [s for s in value.split(",") if s.strip()]:
        raise ConfigError(f"{label} must name at least one schema")


def _schema_name(label: str, value: str) -> None:
    if not value.strip() or len(value) > 63 or value.startswith("pg_"):
        raise ConfigError(f"{label} {value!r} is not a schema name pgrunbook may create")


def _instant(label: str, value: str) -> None:
    from pgrunbook.operations.restore import parse_instant

    parse_instant(value)


def _role_map(label: str, value: str) -> None:
    from pgrunbook.operations.restore import parse_role_map

    if not parse_role_map(value):
        raise ConfigError(f"{label} must map at least one role (old=new)")


def _target_url(label: str, value: str) -> None:
    from pgrunbook.adapters.postgres.dburl import ConnInfo

    ConnInfo.parse(value, what="target URL")


def _choosing_a_backup(what: str, *, event: bool = False) -> tuple[Option, ...]:
    return (
        Option(
            "backup_id",
            f"the backup to {what} (default: the newest complete one)",
            flag="--backup-id",
            check=_backup_id,
            event=event,
        ),
        Option(
            "at",
            "the newest backup whose snapshot is at or before this time (ISO 8601 with a zone)",
            flag="--at",
            check=_instant,
            event=event,
        ),
        Option(
            "source",
            "the bucket to restore from",
            default="primary",
            kind="choice",
            choices=("primary", "dr"),
            flag="--from",
            event=event,
        ),
    )


TABLES = Option(
    "tables",
    "only these tables: schema.table,... (a partitioned table brings its partitions)",
    flag="--tables",
    check=_table_list,
    event=False,
)

RESTORE = Operation(
    "restore",
    "pgrunbook.operations.restore",
    "restore a backup, or chosen tables of it, into a new database or a new schema",
    Wording(
        "Database Recovery",
        "The restore did not complete: the database it was creating was dropped; the backup and the "
        "live database are unchanged.",
    ),
    kind="command",
    options=(
        Option(
            "target_url",
            "the server and the new (or empty) database to restore into: postgresql://.../newdb",
            flag="--target-url",
            check=_target_url,
            event=False,
        ),
        *_choosing_a_backup("restore"),
        TABLES,
        Option(
            "schemas",
            "only these schemas: s1,s2 (with everything in them)",
            flag="--schemas",
            check=_schema_list,
            event=False,
        ),
        Option(
            "into_schema",
            "put the chosen tables in this new schema of an existing database (the configured one "
            "unless --target-url), leaving the originals untouched",
            flag="--into-schema",
            check=_schema_name,
            event=False,
        ),
        Option(
            "role_map",
            "roles of the backup that are other roles on the target: old=new,...",
            flag="--role-map",
            check=_role_map,
            event=False,
        ),
    ),
)

DIFF = Operation(
    "diff",
    "pgrunbook.operations.diff",
    "which rows changed since a backup (deleted, inserted, changed), and the SQL that puts them back",
    Wording("Database Diff"),
    kind="command",
    options=(
        *_choosing_a_backup("compare with"),
        TABLES,
        Option(
            "repair_sql", "write the repair (one transaction) to this file", flag="--repair-sql", event=False
        ),
        Option(
            "include_inserted",
            "the repair also deletes rows inserted since the backup",
            default=False,
            kind="bool",
            flag="--include-inserted",
            event=False,
        ),
        Option(
            "apply_repair",
            "apply the repair (after typing the database name), then compare again",
            default=False,
            kind="bool",
            flag="--apply",
            event=False,
        ),
        Option("yes", "apply without asking", default=False, kind="bool", flag="--yes", event=False),
    ),
)

RECOVER_TABLES = Operation(
    "recover-tables",
    "pgrunbook.workflows.recover.phases",
    "data corruption response: chosen tables put back to a backup (restore, diff, approval, repair)",
    Wording(
        "Table Recovery",
        "The chosen tables were not (or not verifiably) put back to the backup: the corrupted rows may "
        "still be in the live database. The backup's copy of the tables stays in its side schema "
        "for investigation.",
        "from the engineer who takes over the recovery (pgrunbook recover-tables status)",
    ),
    kind="workflow",
    # the request's options (the CLI's flags of ``recover-tables start``, the state machine's input)
    options=(
        replace(
            TABLES,
            doc="the tables to put back: schema.table,... (a partitioned table brings its partitions)",
            event=True,
        ),
        *_choosing_a_backup("put the tables back to", event=True),
        Option(
            "include_inserted",
            "the repair also deletes rows inserted since the backup (default: they are kept)",
            default=False,
            kind="bool",
            flag="--include-inserted",
        ),
    ),
    grants=(
        listing("PrimaryBucket", "primary"),
        objects("PrimaryBackups", "primary", BACKUP_FILES, read=True),
        objects("PrimaryLeases", "primary", ALL_LEASES, write=True, delete=True),
        key("PrimaryKey", "primary", encrypt=True, decrypt=True),
        listing("DrBucket", "dr"),
        objects("DrBackups", "dr", BACKUP_FILES, read=True),
        objects("DrLeases", "dr", ALL_LEASES, write=True, delete=True),
        key("DrKey", "dr", encrypt=True, decrypt=True),
        # a long phase's runner is chosen from the last restore test (workflows/dispatch)
        objects("RestoreTestReports", "primary", *reports_of("restore-test"), read=True),
        secret("DatabaseSecret", "database_secret_arn"),
    ),
    function=Lambda(
        "pgrunbook table recovery: every phase of the table-recovery workflow",
        memory_mb=3008,
        timeout_minutes=15,
        ephemeral_mb=10240,
    ),
    task=Fargate(),
    long_phases=("restore", "apply"),
)

DOCTOR = Operation(
    "doctor",
    "pgrunbook.operations.doctor",
    "before the first deployment: what the jobs need from the database and the account, and what to fix",
    Wording("pgrunbook Doctor"),
    kind="command",
    stores_report=False,
)

DEMO = Operation(
    "demo",
    "pgrunbook.entrypoints.demo",
    "the whole story on the embedded database and moto",
    Wording("pgrunbook Demo"),
    kind="command",
    options=(
        Option(
            "tasks", "tasks in the sample", default=100_000, kind="int", low=1, flag="--tasks", event=False
        ),
        Option(
            "keep", "keep the demo's server and files", default=False, kind="bool", flag="--keep", event=False
        ),
        Option("html", "also write the status page to FILE", flag="--html", event=False, metavar="FILE"),
    ),
    stores_report=False,
)

OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        BACKUP,
        RESTORE_TEST,
        VERIFY,
        DR_DRILL,
        RETENTION,
        HEALTH,
        STATUS,
        STATUS_PAGE,
        CONFIG,
        RESTORE,
        DIFF,
        PITR,
        MIGRATE,
        RECOVER_TABLES,
        DOCTOR,
        DEMO,
    )
}


def get(name: str) -> Operation:
    try:
        return OPERATIONS[name]
    except KeyError:
        raise ConfigError(
            f"unknown operation {name!r}; choose from {', '.join(sorted(OPERATIONS))}"
        ) from None


def deployed() -> list[Operation]:
    """Operations the CDK app deploys as functions."""
    return [op for op in OPERATIONS.values() if op.function is not None]


def wording(name: str) -> Wording:
    op = OPERATIONS.get(name)
    return op.wording if op is not None else Wording(name)


def parse_options(op: Operation, given: dict[str, Any], *, source: str = "event") -> dict[str, Any]:
    """Check ``given`` (an event's keys, or the flags' values) against the operation's options;
    returns the keyword arguments of its ``run``, defaults filled in.  Raises ConfigError."""
    allowed = op.event_options if source == "event" else {o.name: o for o in op.options}
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) or "nothing"
        raise ConfigError(f"{op.name} does not take {', '.join(unknown)} (it takes {takes})")
    values: dict[str, Any] = {}
    for opt in op.options:
        raw = given.get(opt.name)
        values[opt.name] = opt.default if raw is None else opt.parse(raw)
    return values
