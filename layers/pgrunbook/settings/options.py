"""The option table: every setting pgrunbook reads, declared once.

Each :class:`Option` says its environment variable, its command-line flag (if it has one, and
which commands offer it), its type and range, its default, which operations read it and what
it means.  Everything else derives from this table:

* :class:`pgrunbook.settings.model.Settings` loads and validates it (environment first, flags on
  top, defaults from here);
* the CLI's flags (:mod:`pgrunbook.entrypoints.cli.parser`) and their help text;
* the Lambda environment the CDK app sets (``infra/config.py`` calls :func:`environment`, which
  names and validates every variable, so a bad ``cdk.json`` value fails the synthesis);
* the README's configuration table (:func:`markdown_table`; a test fails when they drift);
* ``pgrunbook config``, which prints the effective value of each option and where it came from.

Operations' own options (``--tier``, ``--recent-days`` ...) are :class:`Option` objects too,
declared with their operation in :mod:`pgrunbook.operations.registry`: the CLI and the Lambda
handler parse them with the same :meth:`Option.parse`, so both refuse a bad value with the
same message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.ids import supabase_ref_problem
from pgrunbook.domain.profiles import PROFILES
from pgrunbook.domain.thresholds import Thresholds
from pgrunbook.domain.tiers import DEFAULT_RETENTION_DAYS

COMMON = "common"  # a flag every command offers

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_ADDRESS = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
LABEL = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,128}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_SSM_NAME = re.compile(r"^/?[A-Za-z0-9_.\-/]{1,1000}$")
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$")
_STATE_MACHINE_ARN = re.compile(r"^arn:aws[\w-]*:states:[\w-]+:\d{12}:stateMachine:[\w-]{1,80}$")
_SNS_ARN = re.compile(r"^arn:aws[\w-]*:sns:[\w-]+:\d{12}:[\w-]{1,256}$")
_DURATION = re.compile(r"^\d+\s*(us|ms|s|min|h|d)?$")

Check = Callable[[str, Any], None]  # (name, value): raises ConfigError


@dataclass(frozen=True)
class Option:
    """One option.  ``kind`` is ``text``, ``int``, ``bool`` or ``choice``; ``check`` validates
    a parsed value beyond its kind (a bucket name, a URL ...)."""

    name: str  # the Settings attribute, the event key and the keyword argument
    doc: str
    default: Any = None
    kind: str = "text"
    env: str | None = None
    flag: str | None = None
    flag_scope: tuple[str, ...] | str = ()  # COMMON, or the commands that offer the flag
    negate: bool = False  # a bool whose flag switches it off (--no-checks)
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()
    check: Check | None = None
    used_by: tuple[str, ...] = ()  # operations that read it ("*": all)
    secret: bool = False  # shown redacted by pgrunbook config
    event: bool = True  # an operation option a Lambda event may set
    metavar: str | None = None

    @property
    def label(self) -> str:
        """How messages name the option: its flag, with the event key when they differ."""
        if self.flag is None:
            return self.env or self.name
        if self.flag == "--" + self.name.replace("_", "-"):
            return self.flag
        return f"{self.name} ({self.flag})"

    def offered_by(self, command: str) -> bool:
        return self.flag is not None and (self.flag_scope == COMMON or command in self.flag_scope)

    def parse(self, raw: Any, *, label: str | None = None) -> Any:
        """A value from a flag, an event or the environment, checked; raises ConfigError.

        ``label`` names where the raw value came from (an environment variable, a flag) in
        type errors; value errors name a setting by its name and an operation's option by its
        flag, so the CLI and a Lambda event get the same message for the same value."""
        given = label or self.label
        named = self.name if self.env else self.label
        if raw is None:
            return None
        if self.kind == "int":
            value: Any = _integer(raw, given)
            self._range(named, value)
        elif self.kind == "bool":
            if not isinstance(raw, bool):
                raise ConfigError(f"{given} must be true or false, not {raw!r}")
            value = raw
        else:
            if not isinstance(raw, str):
                raise ConfigError(f"{given} must be text, not {raw!r}")
            value = raw
            if self.kind == "choice" and value not in self.choices:
                raise ConfigError(f"{named} must be one of {', '.join(self.choices)}, not {value!r}")
        if self.check is not None:
            self.check(named, value)
        return value

    def _range(self, label: str, value: int) -> None:
        if self.low is not None and self.high is not None and not self.low <= value <= self.high:
            raise ConfigError(f"{label} must be between {self.low} and {self.high}, not {value}")
        if self.low is not None and value < self.low:
            raise ConfigError(f"{label} must be at least {self.low}, not {value}")

    def describe_type(self) -> str:
        if self.kind == "int":
            if self.low is not None and self.high is not None:
                return f"integer {self.low}-{self.high}"
            return f"integer >= {self.low}" if self.low is not None else "integer"
        if self.kind == "choice":
            return " \\| ".join(self.choices)
        return self.kind


def _integer(raw: Any, label: str) -> int:
    if isinstance(raw, bool):
        raise ConfigError(f"{label} must be an integer, not {raw!r}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d+\s*", raw):
        return int(raw)
    raise ConfigError(f"{label} must be an integer, not {raw!r}")


# -- checks -------------------------------------------------------------------------------------


def _bucket(label: str, value: str) -> None:
    if not _BUCKET.match(value) or ".." in value or _IP_ADDRESS.match(value):
        raise ConfigError(f"{label} {value!r} is not a valid S3 bucket name")


def _region(label: str, value: str) -> None:
    if not _REGION.match(value):
        raise ConfigError(f"{label} {value!r} is not an AWS region name")


def _database_name(label: str, value: str) -> None:
    if not LABEL.match(value):
        raise ConfigError("database name may only use letters, digits, '.', '_' and '-'")


def _prefix(label: str, value: str) -> None:
    segments = value.strip("/").split("/")
    if not value.strip("/") or not all(LABEL.match(seg) for seg in segments):
        raise ConfigError(f"prefix {value!r} is not a valid key prefix")


def _url(what: str) -> Check:
    def check(label: str, value: str) -> None:
        from pgrunbook.adapters.postgres.dburl import ConnInfo

        ConnInfo.parse(value, what=what)

    return check


_RDS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._ -]{0,254}$")
_SECURITY_GROUPS = re.compile(r"^sg-[0-9a-f]{8,17}(,\s*sg-[0-9a-f]{8,17})*$")


def _pattern(pattern: re.Pattern[str], what: str) -> Check:
    def check(label: str, value: str) -> None:
        if not pattern.match(value):
            raise ConfigError(f"{label} {value!r} is not {what}")

    return check


def _supabase_ref(label: str, value: str) -> None:
    problem = supabase_ref_problem(value)
    if problem:
        raise ConfigError(f"{label}: {problem}")


def _secret_arn(label: str, value: str) -> None:
    if not _SECRET_ARN.match(value):
        raise ConfigError(f"{label} is not a Secrets Manager secret ARN")


def _thresholds(label: str, value: str) -> None:
    Thresholds.from_json(value)


def _retention_days(label: str, value: str) -> None:
    retention_days(value)


def retention_days(text: str | None) -> dict[str, int]:
    """``PGRUNBOOK_RETENTION_DAYS``: ``{"daily": 90, ...}`` over the defaults."""
    if not text:
        return dict(DEFAULT_RETENTION_DAYS)
    try:
        days = json.loads(text)
        if not isinstance(days, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise ConfigError(f"PGRUNBOOK_RETENTION_DAYS is not valid JSON: {exc}") from None
    for tier, value in days.items():
        if tier not in DEFAULT_RETENTION_DAYS or not isinstance(value, int) or value < 1:
            raise ConfigError(f"PGRUNBOOK_RETENTION_DAYS: {tier!r} must be a tier with a number of days")
    return {**DEFAULT_RETENTION_DAYS, **days}


def _profile(label: str, value: str) -> None:
    if value not in PROFILES:
        raise ConfigError(f"unknown profile {value!r}; choose from {', '.join(PROFILES)}")


def _compression(label: str, value: int) -> None:
    if not 0 <= value <= 9:
        raise ConfigError(f"compression must be a gzip level between 0 and 9, not {value}")


def _critical_tables(label: str, value: str) -> None:
    for name in split_list(value):
        if not re.fullmatch(r"[^\s.]+(\.[^\s.]+)?", name):
            raise ConfigError(f"critical table {name!r} is not a table name (schema.table)")


def _maintenance_parameter(label: str, value: str) -> None:
    if value != "off" and not _SSM_NAME.match(value):
        raise ConfigError(f"maintenance parameter {value!r} is not an SSM parameter name")


def _rds_identifier(what: str) -> Check:
    def check(label: str, value: str) -> None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,62}", value):
            raise ConfigError(f"{what} {value!r} is not an RDS identifier")

    return check


def _http_url(label: str, value: str) -> None:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ConfigError(f"Supabase API URL {value!r} is not an http(s) URL")


def _webhook_url(label: str, value: str) -> None:
    """https, or http to this machine only (a local receiver): notices carry database names."""
    parts = urlsplit(value)
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not parts.hostname or not (parts.scheme == "https" or loopback):
        raise ConfigError(f"{label} must be an https:// URL (plain http only to this machine)")


def _duration(label: str, value: str) -> None:
    if not _DURATION.match(value.strip()):
        raise ConfigError(f"{label} {value!r} is not a duration like 5s or 15min")


def split_list(text: str | None) -> list[str]:
    """A comma-separated option as a list, without blanks."""
    return [item.strip() for item in (text or "").split(",") if item.strip()]


# -- the table ----------------------------------------------------------------------------------

# Operations, as :mod:`pgrunbook.operations.registry` names them.
ALL = ("*",)
BACKING_UP = ("backup", "pitr", "migrate")  # the workflows take backups as one of their phases
# the table-recovery workflow restores chosen tables into a side schema of the live database
RESTORING = ("restore-test", "dr-drill", "pitr", "migrate", "restore", "diff", "recover-tables")
READING_BACKUPS = (
    *BACKING_UP,
    "restore-test",
    "verify",
    "retention",
    "status",
    "status-page",
    "restore",
    "diff",
    "recover-tables",
)
CONNECTING = (*BACKING_UP, "verify", "health", "restore", "diff", "recover-tables")

OPTIONS: tuple[Option, ...] = (
    # -- the database ------------------------------------------------------------------------
    Option(
        "database_url",
        "the database (libpq URI, unix sockets included); or use the secret below",
        env="PGRUNBOOK_DATABASE_URL",
        flag="--database-url",
        flag_scope=COMMON,
        check=_url("database URL"),
        used_by=CONNECTING,
        secret=True,
    ),
    Option(
        "database_secret_arn",
        "the database as a Secrets Manager secret (RDS JSON shape: host, port, username, password, dbname)",
        env="PGRUNBOOK_DATABASE_SECRET_ARN",
        check=_secret_arn,
        used_by=CONNECTING,
    ),
    Option(
        "database_name",
        "the database's name in the catalog and the S3 keys (default: the URI's database name)",
        env="PGRUNBOOK_DATABASE_NAME",
        flag="--database-name",
        flag_scope=COMMON,
        check=_database_name,
        used_by=ALL,
    ),
    Option(
        "profile",
        "what the dump leaves out: default (nothing) or supabase (the platform's schemas)",
        default="default",
        env="PGRUNBOOK_PROFILE",
        flag="--profile",
        flag_scope=("backup",),
        check=_profile,
        used_by=(*BACKING_UP, "verify"),
    ),
    # -- where backups go --------------------------------------------------------------------
    Option(
        "bucket",
        "the primary backup bucket",
        env="PGRUNBOOK_BUCKET",
        flag="--bucket",
        flag_scope=COMMON,
        check=_bucket,
        used_by=ALL,
    ),
    Option(
        "region",
        "the primary bucket's region (default AWS_REGION, AWS_DEFAULT_REGION)",
        env="PGRUNBOOK_REGION",
        flag="--region",
        flag_scope=COMMON,
        check=_region,
        used_by=ALL,
    ),
    Option(
        "dr_bucket",
        "the disaster-recovery bucket in the second region",
        env="PGRUNBOOK_DR_BUCKET",
        flag="--dr-bucket",
        flag_scope=COMMON,
        check=lambda label, value: _bucket("DR bucket", value),
        used_by=(*READING_BACKUPS, "dr-drill"),
    ),
    Option(
        "dr_region",
        "the DR bucket's region",
        env="PGRUNBOOK_DR_REGION",
        flag="--dr-region",
        flag_scope=COMMON,
        check=lambda label, value: _region("DR region", value),
        used_by=(*READING_BACKUPS, "dr-drill"),
    ),
    Option(
        "prefix",
        "key prefix in both buckets",
        default="pgrunbook",
        env="PGRUNBOOK_PREFIX",
        flag="--prefix",
        flag_scope=COMMON,
        check=_prefix,
        used_by=ALL,
    ),
    Option(
        "object_lock",
        "S3 Object Lock on complete backups: auto (governance where the bucket has Object Lock)",
        default="auto",
        kind="choice",
        choices=("auto", "governance", "compliance", "off"),
        env="PGRUNBOOK_OBJECT_LOCK",
        used_by=BACKING_UP,
    ),
    # -- how backups are taken ---------------------------------------------------------------
    Option(
        "jobs",
        "parallel pg_dump / pg_restore jobs and fingerprint sessions",
        default=2,
        kind="int",
        env="PGRUNBOOK_JOBS",
        flag="--jobs",
        flag_scope=("backup", "restore-test", "restore", "diff"),
        low=1,
        high=64,
        used_by=(*BACKING_UP, *RESTORING),
    ),
    Option(
        "compression",
        "gzip level of the dump, 0-9",
        default=1,
        kind="int",
        env="PGRUNBOOK_COMPRESSION",
        flag="--compression",
        flag_scope=("backup",),
        check=_compression,
        used_by=BACKING_UP,
    ),
    Option(
        "mirror",
        "the in-database backup_metadata mirror: auto, on or off",
        default="auto",
        kind="choice",
        choices=("auto", "on", "off"),
        env="PGRUNBOOK_MIRROR",
        flag="--mirror",
        flag_scope=("backup",),
        used_by=BACKING_UP,
    ),
    Option(
        "fingerprints",
        "how the backup fingerprints tables: dump (from the archive's own COPY data: the "
        "database is read once), or server (a second read in the database, an independent "
        "check of pg_dump: alongside or after pg_dump as auto chooses, or as named)",
        default="dump",
        kind="choice",
        choices=("dump", "server", "auto", "alongside", "after"),
        env="PGRUNBOOK_FINGERPRINTS",
        flag="--fingerprints",
        flag_scope=("backup",),
        used_by=BACKING_UP,
    ),
    Option(
        "retention_json",
        'JSON, days each tier is kept: {"daily": 90, "weekly": 365, ...}',
        env="PGRUNBOOK_RETENTION_DAYS",
        check=_retention_days,
        used_by=(*BACKING_UP, "retention"),
        metavar="JSON",
    ),
    Option(
        "pg_bin",
        "directory of pg_dump / pg_restore / psql to use (default: searched on PATH, the layer, the embedded server)",
        env="PGRUNBOOK_PG_BIN",
        used_by=(*BACKING_UP, *RESTORING),
    ),
    Option(
        "work_dir",
        "local scratch space for dump files (default: the temporary directory)",
        env="PGRUNBOOK_WORK_DIR",
        flag="--work-dir",
        flag_scope=COMMON,
        used_by=(*BACKING_UP, *RESTORING),
    ),
    Option(
        "home",
        "where embedded servers keep their data (default ~/.pgrunbook)",
        env="PGRUNBOOK_HOME",
        used_by=RESTORING,
    ),
    Option(
        "embedded_dir",
        "where the embedded PostgreSQL builds are installed (default: /var/lib/pgrunbook/postgres as root, else <home>/postgres)",
        env="PGRUNBOOK_EMBEDDED_DIR",
        used_by=RESTORING,
    ),
    Option(
        "created_by",
        "who made a backup, in its manifest (default pgrunbook-cli:<user>@<host>)",
        env="PGRUNBOOK_CREATED_BY",
        used_by=ALL,
    ),
    # -- restore targets ---------------------------------------------------------------------
    Option(
        "restore_target_url",
        "the server restore tests create scratch databases on (default: an embedded PostgreSQL)",
        env="PGRUNBOOK_RESTORE_TARGET_URL",
        flag="--restore-target-url",
        flag_scope=COMMON,
        check=_url("restore target URL"),
        used_by=("restore-test", "migrate"),
        secret=True,
    ),
    Option(
        "restore_target_secret_arn",
        "the restore target as a Secrets Manager secret",
        env="PGRUNBOOK_RESTORE_TARGET_SECRET_ARN",
        check=_secret_arn,
        used_by=("restore-test", "migrate"),
    ),
    Option(
        "dr_restore_target_url",
        "the server DR drills restore into (default: embedded)",
        env="PGRUNBOOK_DR_RESTORE_TARGET_URL",
        flag="--dr-restore-target-url",
        flag_scope=("dr-drill",),
        check=_url("DR restore target URL"),
        used_by=("dr-drill",),
        secret=True,
    ),
    Option(
        "dr_restore_target_secret_arn",
        "the DR restore target as a Secrets Manager secret (in the DR region)",
        env="PGRUNBOOK_DR_RESTORE_TARGET_SECRET_ARN",
        check=_secret_arn,
        used_by=("dr-drill",),
    ),
    Option(
        "restore_rds",
        "throwaway RDS restore targets: needed (when the embedded server cannot host a backup and "
        "a subnet group is set), always, or never",
        default="needed",
        kind="choice",
        choices=("needed", "always", "never"),
        env="PGRUNBOOK_RESTORE_RDS",
        flag="--restore-rds",
        flag_scope=("restore-test", "dr-drill"),
        used_by=("restore-test", "dr-drill"),
    ),
    Option(
        "restore_rds_subnet_group",
        "the DB subnet group throwaway RDS restore targets are created in",
        env="PGRUNBOOK_RESTORE_RDS_SUBNET_GROUP",
        check=_pattern(_RDS_NAME, "an RDS DB subnet group name"),
        used_by=("restore-test",),
    ),
    Option(
        "restore_rds_security_groups",
        "security groups of throwaway RDS restore targets (comma separated sg-...)",
        env="PGRUNBOOK_RESTORE_RDS_SECURITY_GROUPS",
        check=_pattern(_SECURITY_GROUPS, "a comma-separated list of security group ids"),
        used_by=("restore-test",),
    ),
    Option(
        "dr_restore_rds_subnet_group",
        "the DB subnet group (in the DR region) of the DR drill's throwaway RDS targets",
        env="PGRUNBOOK_DR_RESTORE_RDS_SUBNET_GROUP",
        check=_pattern(_RDS_NAME, "an RDS DB subnet group name"),
        used_by=("dr-drill",),
    ),
    Option(
        "dr_restore_rds_security_groups",
        "security groups (in the DR region) of the DR drill's throwaway RDS targets",
        env="PGRUNBOOK_DR_RESTORE_RDS_SECURITY_GROUPS",
        check=_pattern(_SECURITY_GROUPS, "a comma-separated list of security group ids"),
        used_by=("dr-drill",),
    ),
    Option(
        "restore_rds_instance_class",
        "the instance class of throwaway RDS targets (default: the smallest that fits the backup)",
        env="PGRUNBOOK_RESTORE_RDS_INSTANCE_CLASS",
        check=_pattern(re.compile(r"^db\.[a-z0-9]+\.[a-z0-9]+$"), "an RDS instance class (db.t4g.small)"),
        used_by=("restore-test", "dr-drill"),
    ),
    # -- checks and alerts -------------------------------------------------------------------
    Option(
        "sns_topic_arn",
        "where reports that are not ok are published",
        env="PGRUNBOOK_SNS_TOPIC_ARN",
        check=_pattern(_SNS_ARN, "an SNS topic ARN"),
        used_by=ALL,
    ),
    Option(
        "webhook_url",
        "an HTTPS endpoint that also gets every notice, as signed JSON (PagerDuty, Opsgenie, ...)",
        env="PGRUNBOOK_WEBHOOK_URL",
        check=_webhook_url,
        used_by=ALL,
        secret=True,
    ),
    Option(
        "webhook_secret_arn",
        "the webhook's HMAC key as a Secrets Manager secret (the string, or JSON with a secret key)",
        env="PGRUNBOOK_WEBHOOK_SECRET_ARN",
        check=_secret_arn,
        used_by=ALL,
    ),
    Option(
        "webhook_secret",
        "the webhook's HMAC key itself (instead of the secret ARN)",
        env="PGRUNBOOK_WEBHOOK_SECRET",
        used_by=ALL,
        secret=True,
    ),
    Option(
        "checks_dir",
        "a folder of your own data-quality checks (*.sql)",
        env="PGRUNBOOK_CHECKS_DIR",
        used_by=("verify", "restore-test", "pitr", "migrate"),
    ),
    Option(
        "exposed_schemas",
        "schemas an API exposes, which row-level security must guard (comma separated; default public)",
        env="PGRUNBOOK_EXPOSED_SCHEMAS",
        used_by=("verify",),
    ),
    Option(
        "thresholds_json",
        'JSON alert thresholds: {"backup_age_hours": [26, 48], ...} (see docs/architecture.md)',
        env="PGRUNBOOK_THRESHOLDS",
        check=_thresholds,
        used_by=("verify", "health", "dr-drill", "status", "status-page"),
        metavar="JSON",
    ),
    # -- point-in-time recovery --------------------------------------------------------------
    Option(
        "pitr_provider",
        "how a point-in-time recovery is done: logical (pgrunbook's backups), supabase or rds",
        default="logical",
        kind="choice",
        choices=("logical", "supabase", "rds"),
        env="PGRUNBOOK_PITR_PROVIDER",
        used_by=("pitr",),
    ),
    Option(
        "pitr_state_machine_arn",
        "the deployed recovery workflow pgrunbook pitr starts (the stack output PitrStateMachineArn)",
        env="PGRUNBOOK_PITR_STATE_MACHINE_ARN",
        flag="--state-machine-arn",
        flag_scope=("pitr",),
        check=_pattern(_STATE_MACHINE_ARN, "a Step Functions state machine ARN"),
        used_by=("pitr",),
    ),
    Option(
        "maintenance_parameter",
        "SSM parameter the application reads for maintenance mode (default /<prefix>/<database>/maintenance; off: none)",
        env="PGRUNBOOK_MAINTENANCE_PARAMETER",
        check=_maintenance_parameter,
        used_by=("pitr",),
    ),
    Option(
        "critical_tables",
        "tables a recovered database must have rows in (comma separated)",
        env="PGRUNBOOK_CRITICAL_TABLES",
        check=_critical_tables,
        used_by=("pitr",),
    ),
    Option(
        "created_at_columns",
        "creation-time columns checked after a recovery (comma separated)",
        default="created_at,inserted_at",
        env="PGRUNBOOK_CREATED_AT_COLUMNS",
        used_by=("pitr",),
    ),
    Option(
        "pitr_approval_timeout",
        "seconds a recovery, a migration or a table recovery waits for approval",
        default=3600,
        kind="int",
        env="PGRUNBOOK_PITR_APPROVAL_TIMEOUT",
        low=1,
        high=7 * 24 * 3600,
        used_by=("pitr", "migrate", "recover-tables"),
    ),
    Option(
        "pitr_deadline",
        "seconds a started recovery may take (the RTO target)",
        default=4 * 3600,
        kind="int",
        env="PGRUNBOOK_PITR_DEADLINE",
        low=60,
        high=7 * 24 * 3600,
        used_by=("pitr",),
    ),
    Option(
        "pitr_poll_seconds",
        "seconds between progress checks of a recovery",
        default=60,
        kind="int",
        env="PGRUNBOOK_PITR_POLL_SECONDS",
        low=1,
        high=3600,
        used_by=("pitr",),
    ),
    Option(
        "supabase_project_ref",
        "the Supabase project (supabase provider)",
        env="PGRUNBOOK_SUPABASE_PROJECT_REF",
        check=_supabase_ref,
        used_by=("pitr",),
    ),
    Option(
        "supabase_token_secret_arn",
        "secret holding the Supabase Management API token (else SUPABASE_ACCESS_TOKEN)",
        env="PGRUNBOOK_SUPABASE_TOKEN_SECRET_ARN",
        used_by=("pitr",),
    ),
    Option(
        "supabase_api_url",
        "the Supabase Management API",
        default="https://api.supabase.com",
        env="PGRUNBOOK_SUPABASE_API_URL",
        check=_http_url,
        used_by=("pitr",),
    ),
    Option(
        "rds_instance",
        "the RDS instance (rds provider)",
        env="PGRUNBOOK_RDS_INSTANCE",
        check=_rds_identifier("RDS instance"),
        used_by=("pitr",),
    ),
    Option(
        "rds_cluster",
        "the Aurora or Multi-AZ DB cluster (rds provider)",
        env="PGRUNBOOK_RDS_CLUSTER",
        check=_rds_identifier("RDS cluster"),
        used_by=("pitr",),
    ),
    # -- schema migrations -------------------------------------------------------------------
    Option(
        "migrations_dir",
        "the migration files (default: pgrunbook's sql/migrations)",
        env="PGRUNBOOK_MIGRATIONS_DIR",
        flag="--migrations-dir",
        flag_scope=("migrate",),
        used_by=("migrate",),
    ),
    Option(
        "lock_timeout",
        "lock_timeout of each migration",
        default="5s",
        env="PGRUNBOOK_LOCK_TIMEOUT",
        flag="--lock-timeout",
        flag_scope=("migrate apply",),
        check=_duration,
        used_by=("migrate",),
    ),
    Option(
        "statement_timeout",
        "statement_timeout of each migration",
        default="15min",
        env="PGRUNBOOK_STATEMENT_TIMEOUT",
        flag="--statement-timeout",
        flag_scope=("migrate apply",),
        check=_duration,
        used_by=("migrate",),
    ),
    Option(
        "migration_approval",
        "on or off: whether the migration workflow waits for approval (destructive migrations always do)",
        default="on",
        kind="choice",
        choices=("on", "off"),
        env="PGRUNBOOK_MIGRATION_APPROVAL",
        used_by=("migrate",),
    ),
    Option(
        "migration_state_machine_arn",
        "the deployed migration workflow (the stack output MigrationStateMachineArn)",
        env="PGRUNBOOK_MIGRATION_STATE_MACHINE_ARN",
        flag="--state-machine-arn",
        flag_scope=("migrate workflow",),
        check=_pattern(_STATE_MACHINE_ARN, "a Step Functions state machine ARN"),
        used_by=("migrate",),
    ),
    # -- table recovery ----------------------------------------------------------------------
    Option(
        "recover_tables_state_machine_arn",
        "the deployed table-recovery workflow (the stack output TableRecoveryStateMachineArn)",
        env="PGRUNBOOK_RECOVER_TABLES_STATE_MACHINE_ARN",
        flag="--state-machine-arn",
        flag_scope=("recover-tables",),
        check=_pattern(_STATE_MACHINE_ARN, "a Step Functions state machine ARN"),
        used_by=("recover-tables",),
    ),
    # -- where pgrunbook's own files are -----------------------------------------------------
    Option(
        "sql_dir",
        "pgrunbook's sql/ folder (default: next to the package, or the source checkout's)",
        env="PGRUNBOOK_SQL_DIR",
        used_by=ALL,
    ),
)

BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
BY_ENV: dict[str, Option] = {option.env: option for option in OPTIONS if option.env}


def option(name: str) -> Option:
    return BY_NAME[name]


def read_by(option_name: str, operations: tuple[str, ...]) -> bool:
    """Whether any of ``operations`` (an operation and those it runs as steps) reads the
    setting: what the CDK app gives a function, and what a test holds the code to."""
    used_by = BY_NAME[option_name].used_by
    return "*" in used_by or any(name in used_by for name in operations)


def environment(values: Mapping[str, Any]) -> dict[str, str]:
    """``PGRUNBOOK_*`` variables for ``values`` (option name -> value), each checked as
    :class:`~pgrunbook.settings.model.Settings` will check it; None and "" are left out.  What
    the CDK app gives every function (so a bad ``cdk.json`` value fails the synthesis)."""
    env: dict[str, str] = {}
    for name, value in values.items():
        opt = BY_NAME[name]
        if opt.env is None:
            raise KeyError(f"option {name} has no environment variable")
        if value is None or value == "":
            continue
        text = (
            value
            if isinstance(value, str)
            else json.dumps(value, sort_keys=True)
            if isinstance(value, dict)
            else str(value)
        )
        if not _is_token(text):
            opt.parse(text, label=opt.env)
        env[opt.env] = text
    return env


def _is_token(text: str) -> bool:
    """A CloudFormation token (``${Token[...]}``): known only at deploy time, checked there."""
    return "${Token[" in text


def markdown_table() -> str:
    """The README's configuration table."""
    lines = [
        "| variable | flag | type | default | read by | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for opt in OPTIONS:
        flag = f"`{opt.flag}`" if opt.flag else ""
        default = "" if opt.default is None else f"`{opt.default}`"
        used = "all" if opt.used_by == ALL else ", ".join(dict.fromkeys(opt.used_by))
        lines.append(f"| `{opt.env}` | {flag} | {opt.describe_type()} | {default} | {used} | {opt.doc} |")
    return "\n".join(lines)


def update_readme(path: str) -> bool:
    """Rewrite the configuration table between the README's markers; whether it changed
    (``make readme``; a test fails while the README and this table disagree)."""
    from pathlib import Path

    readme = Path(path)
    text = readme.read_text()
    begin, end = "<!-- options:begin -->", "<!-- options:end -->"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    if not rest or (not tail and end not in rest):
        raise SystemExit(f"{path} has no {begin} ... {end} markers")
    new = f"{head}{begin}\n{markdown_table()}\n{end}{tail}"
    readme.write_text(new)
    return new != text


if __name__ == "__main__":
    import sys

    changed = update_readme(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    print("README configuration table " + ("updated" if changed else "unchanged"))
