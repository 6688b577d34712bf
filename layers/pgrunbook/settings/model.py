"""Configuration: ``PGRUNBOOK_*`` environment variables, each overridable by a CLI flag.

=============================  ==============================================================
PGRUNBOOK_DATABASE_URL         the database to back up (libpq URI, unix sockets included)
PGRUNBOOK_DATABASE_NAME        its name in the catalog (default: the URI's database name)
PGRUNBOOK_BUCKET / _REGION     the primary backup bucket and its region
PGRUNBOOK_DR_BUCKET / _REGION  the disaster-recovery bucket in the second region
PGRUNBOOK_RESTORE_TARGET_URL   the server restore tests create scratch databases on
                               (default: an embedded PostgreSQL started on demand)
PGRUNBOOK_PREFIX               key prefix in both buckets (default ``pgrunbook``)
PGRUNBOOK_JOBS                 parallel pg_dump / pg_restore jobs (default 2)
PGRUNBOOK_COMPRESSION          gzip level of the dump, 0-9 (default 1)
PGRUNBOOK_PROFILE              ``default`` or ``supabase``
PGRUNBOOK_MIRROR               backup_metadata mirror: ``auto`` (default), ``on``, ``off``
PGRUNBOOK_WORK_DIR             local scratch space for dump files (default: the temp dir)
PGRUNBOOK_HOME                 where embedded servers keep their data (default ~/.pgrunbook)
PGRUNBOOK_PG_BIN               directory of pg_dump/pg_restore to use (default: searched)
PGRUNBOOK_FINGERPRINTS         ``auto`` (default), ``alongside`` or ``after`` pg_dump
PGRUNBOOK_DATABASE_SECRET_ARN  the database as a Secrets Manager secret (RDS JSON shape);
                               ``..._RESTORE_TARGET_SECRET_ARN``, ``..._DR_RESTORE_TARGET_...``
                               likewise for the restore-test and DR-drill targets
PGRUNBOOK_DR_RESTORE_TARGET_URL  the server DR drills restore into (default: embedded)
PGRUNBOOK_SNS_TOPIC_ARN        where reports that are not ok are published
PGRUNBOOK_CHECKS_DIR           a folder of your own data-quality checks (``*.sql``)
PGRUNBOOK_EXPOSED_SCHEMAS      schemas an API exposes, which RLS must guard (default public)
PGRUNBOOK_THRESHOLDS           JSON ``{"backup_age_hours": [26, 48], ...}`` (see thresholds.py)
PGRUNBOOK_RETENTION_DAYS       JSON ``{"daily": 90, "weekly": 365, ...}``
PGRUNBOOK_OBJECT_LOCK          ``auto`` (default: governance where the bucket has Object Lock),
                               ``governance``, ``compliance`` or ``off``
PGRUNBOOK_PITR_PROVIDER        point-in-time recovery: ``logical`` (default), ``supabase``, ``rds``
PGRUNBOOK_PITR_STATE_MACHINE_ARN  the deployed recovery workflow ``pgrunbook pitr`` starts
PGRUNBOOK_MAINTENANCE_PARAMETER  SSM parameter the application reads for maintenance mode
                               (default ``/pgrunbook/<database>/maintenance``; ``off``: none)
PGRUNBOOK_CRITICAL_TABLES      tables a recovered database must have rows in (comma separated)
PGRUNBOOK_CREATED_AT_COLUMNS   creation-time columns checked after a recovery
                               (default ``created_at,inserted_at``)
PGRUNBOOK_PITR_APPROVAL_TIMEOUT  seconds a recovery waits for approval (default 3600)
PGRUNBOOK_PITR_DEADLINE        seconds a started recovery may take (default 14400, the RTO)
PGRUNBOOK_PITR_POLL_SECONDS    seconds between progress checks (default 60)
PGRUNBOOK_SUPABASE_PROJECT_REF the Supabase project (supabase provider)
PGRUNBOOK_SUPABASE_TOKEN_SECRET_ARN  secret holding the Management API token (else the
                               ``SUPABASE_ACCESS_TOKEN`` variable)
PGRUNBOOK_SUPABASE_API_URL     default ``https://api.supabase.com``
PGRUNBOOK_RDS_INSTANCE / _CLUSTER  the RDS instance or Aurora cluster (rds provider)
PGRUNBOOK_MIGRATIONS_DIR       the migration files (default: pgrunbook's ``sql/migrations``)
PGRUNBOOK_LOCK_TIMEOUT         lock_timeout of each migration (default ``5s``)
PGRUNBOOK_STATEMENT_TIMEOUT    statement_timeout of each migration (default ``15min``)
PGRUNBOOK_MIGRATION_APPROVAL   ``on`` (default) or ``off``: the migration workflow's approval step
PGRUNBOOK_MIGRATION_STATE_MACHINE_ARN  the deployed migration workflow
=============================  ==============================================================

AWS credentials and endpoints come from boto3's standard chain (``AWS_PROFILE``,
``AWS_ENDPOINT_URL`` ...).  The region falls back to ``AWS_REGION``/``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from pgrunbook.adapters.aws.secrets import conninfo_from_arn
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.adapters.s3.store import ObjectStore, TransferSettings
from pgrunbook.catalog.metadata_mirror import MODES as MIRROR_MODES
from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.profiles import get_profile
from pgrunbook.domain.thresholds import Thresholds
from pgrunbook.domain.tiers import DEFAULT_RETENTION_DAYS, RetentionPolicy

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_ADDRESS = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_LABEL = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,128}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_SSM_NAME = re.compile(r"^/?[A-Za-z0-9_.\-/]{1,1000}$")


ENV_VARS = {
    "database_url": "PGRUNBOOK_DATABASE_URL",
    "database_name": "PGRUNBOOK_DATABASE_NAME",
    "bucket": "PGRUNBOOK_BUCKET",
    "region": "PGRUNBOOK_REGION",
    "dr_bucket": "PGRUNBOOK_DR_BUCKET",
    "dr_region": "PGRUNBOOK_DR_REGION",
    "restore_target_url": "PGRUNBOOK_RESTORE_TARGET_URL",
    "prefix": "PGRUNBOOK_PREFIX",
    "jobs": "PGRUNBOOK_JOBS",
    "compression": "PGRUNBOOK_COMPRESSION",
    "profile": "PGRUNBOOK_PROFILE",
    "mirror": "PGRUNBOOK_MIRROR",
    "work_dir": "PGRUNBOOK_WORK_DIR",
    "home": "PGRUNBOOK_HOME",
    "created_by": "PGRUNBOOK_CREATED_BY",
    "fingerprints": "PGRUNBOOK_FINGERPRINTS",
    "database_secret_arn": "PGRUNBOOK_DATABASE_SECRET_ARN",
    "restore_target_secret_arn": "PGRUNBOOK_RESTORE_TARGET_SECRET_ARN",
    "dr_restore_target_url": "PGRUNBOOK_DR_RESTORE_TARGET_URL",
    "dr_restore_target_secret_arn": "PGRUNBOOK_DR_RESTORE_TARGET_SECRET_ARN",
    "sns_topic_arn": "PGRUNBOOK_SNS_TOPIC_ARN",
    "checks_dir": "PGRUNBOOK_CHECKS_DIR",
    "exposed_schemas": "PGRUNBOOK_EXPOSED_SCHEMAS",
    "thresholds_json": "PGRUNBOOK_THRESHOLDS",
    "retention_json": "PGRUNBOOK_RETENTION_DAYS",
    "object_lock": "PGRUNBOOK_OBJECT_LOCK",
    "pitr_provider": "PGRUNBOOK_PITR_PROVIDER",
    "pitr_state_machine_arn": "PGRUNBOOK_PITR_STATE_MACHINE_ARN",
    "maintenance_parameter": "PGRUNBOOK_MAINTENANCE_PARAMETER",
    "critical_tables": "PGRUNBOOK_CRITICAL_TABLES",
    "created_at_columns": "PGRUNBOOK_CREATED_AT_COLUMNS",
    "pitr_approval_timeout": "PGRUNBOOK_PITR_APPROVAL_TIMEOUT",
    "pitr_deadline": "PGRUNBOOK_PITR_DEADLINE",
    "pitr_poll_seconds": "PGRUNBOOK_PITR_POLL_SECONDS",
    "supabase_project_ref": "PGRUNBOOK_SUPABASE_PROJECT_REF",
    "supabase_token_secret_arn": "PGRUNBOOK_SUPABASE_TOKEN_SECRET_ARN",
    "supabase_api_url": "PGRUNBOOK_SUPABASE_API_URL",
    "rds_instance": "PGRUNBOOK_RDS_INSTANCE",
    "rds_cluster": "PGRUNBOOK_RDS_CLUSTER",
    "migrations_dir": "PGRUNBOOK_MIGRATIONS_DIR",
    "lock_timeout": "PGRUNBOOK_LOCK_TIMEOUT",
    "statement_timeout": "PGRUNBOOK_STATEMENT_TIMEOUT",
    "migration_approval": "PGRUNBOOK_MIGRATION_APPROVAL",
    "migration_state_machine_arn": "PGRUNBOOK_MIGRATION_STATE_MACHINE_ARN",
}

# Integer settings and their allowed ranges.
_INTEGERS = {
    "jobs": (1, 64),
    "compression": (0, 9),
    "pitr_approval_timeout": (1, 7 * 24 * 3600),
    "pitr_deadline": (60, 7 * 24 * 3600),
    "pitr_poll_seconds": (1, 3600),
}


@dataclass
class Settings:
    database_url: str | None = None
    database_name: str | None = None
    bucket: str | None = None
    region: str | None = None
    dr_bucket: str | None = None
    dr_region: str | None = None
    restore_target_url: str | None = None
    prefix: str = "pgrunbook"
    jobs: int = 2
    compression: int = 1
    profile: str = "default"
    mirror: str = "auto"
    work_dir: str | None = None
    home: str | None = None
    created_by: str | None = None
    fingerprints: str = "auto"  # auto | alongside | after (see pgrunbook.operations.backup)
    database_secret_arn: str | None = None
    restore_target_secret_arn: str | None = None
    dr_restore_target_url: str | None = None
    dr_restore_target_secret_arn: str | None = None
    sns_topic_arn: str | None = None
    checks_dir: str | None = None
    exposed_schemas: str | None = None  # comma separated; default: public
    thresholds_json: str | None = None
    retention_json: str | None = None
    object_lock: str = "auto"  # auto | governance | compliance | off
    pitr_provider: str = "logical"  # logical | supabase | rds
    pitr_state_machine_arn: str | None = None
    maintenance_parameter: str | None = None  # default /pgrunbook/<database>/maintenance
    critical_tables: str | None = None  # comma separated
    created_at_columns: str = "created_at,inserted_at"
    pitr_approval_timeout: int = 3600
    pitr_deadline: int = 4 * 3600  # the RTO target
    pitr_poll_seconds: int = 60
    supabase_project_ref: str | None = None
    supabase_token_secret_arn: str | None = None
    supabase_api_url: str = "https://api.supabase.com"
    rds_instance: str | None = None
    rds_cluster: str | None = None
    migrations_dir: str | None = None
    lock_timeout: str = "5s"
    statement_timeout: str = "15min"
    migration_approval: str = "on"  # on | off: the migration workflow's approval step
    migration_state_machine_arn: str | None = None

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Environment first, then non-None ``overrides`` (CLI flags) on top; validated."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            name = ENV_VARS.get(f.name)
            if name and env.get(name) not in (None, ""):
                values[f.name] = env[name]
        if "region" not in values:
            fallback = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
            if fallback:
                values["region"] = fallback
        values.update({k: v for k, v in overrides.items() if v is not None})
        for key in _INTEGERS:
            if key in values:
                try:
                    values[key] = int(str(values[key]))
                except ValueError:
                    raise ConfigError(f"{ENV_VARS[key]} must be an integer, not {values[key]!r}") from None
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 1 <= self.jobs <= 64:
            raise ConfigError(f"jobs must be between 1 and 64, not {self.jobs}")
        if not 0 <= self.compression <= 9:
            raise ConfigError(f"compression must be a gzip level between 0 and 9, not {self.compression}")
        for key, (low, high) in _INTEGERS.items():
            value = getattr(self, key)
            if not low <= value <= high:
                raise ConfigError(f"{ENV_VARS[key]} must be between {low} and {high}, not {value}")
        if self.migration_approval not in ("on", "off"):
            raise ConfigError(
                f"PGRUNBOOK_MIGRATION_APPROVAL must be on or off, not {self.migration_approval!r}"
            )
        if self.pitr_provider not in ("logical", "supabase", "rds"):
            raise ConfigError(f"PITR provider must be logical, supabase or rds, not {self.pitr_provider!r}")
        if self.maintenance_parameter not in (None, "off") and not _SSM_NAME.match(
            self.maintenance_parameter
        ):
            raise ConfigError(
                f"maintenance parameter {self.maintenance_parameter!r} is not an SSM parameter name"
            )
        if self.supabase_project_ref is not None and not re.fullmatch(
            r"[a-z0-9]{8,40}", self.supabase_project_ref
        ):
            raise ConfigError(
                f"Supabase project ref {self.supabase_project_ref!r} is not a project reference"
            )
        if not re.match(r"^https?://[^\s/]+", self.supabase_api_url):
            raise ConfigError(f"Supabase API URL {self.supabase_api_url!r} is not an http(s) URL")
        for label, ident in (("RDS instance", self.rds_instance), ("RDS cluster", self.rds_cluster)):
            if ident is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,62}", ident):
                raise ConfigError(f"{label} {ident!r} is not an RDS identifier")
        for name in self.critical_table_list:
            if not re.fullmatch(r"[^\s.]+(\.[^\s.]+)?", name):
                raise ConfigError(f"critical table {name!r} is not a table name (schema.table)")
        get_profile(self.profile)
        if self.fingerprints not in ("auto", "alongside", "after"):
            raise ConfigError(f"fingerprints must be auto, alongside or after, not {self.fingerprints!r}")
        if self.object_lock not in ("auto", "governance", "compliance", "off"):
            raise ConfigError(
                f"object lock must be auto, governance, compliance or off, not {self.object_lock!r}"
            )
        if self.mirror not in MIRROR_MODES:
            raise ConfigError(f"mirror must be one of {', '.join(MIRROR_MODES)}, not {self.mirror!r}")
        for label, bucket in (("bucket", self.bucket), ("DR bucket", self.dr_bucket)):
            if bucket is not None and (
                not _BUCKET.match(bucket) or ".." in bucket or _IP_ADDRESS.match(bucket)
            ):
                raise ConfigError(f"{label} {bucket!r} is not a valid S3 bucket name")
        for label, region in (("region", self.region), ("DR region", self.dr_region)):
            if region is not None and not _REGION.match(region):
                raise ConfigError(f"{label} {region!r} is not an AWS region name")
        if self.database_name is not None and not _LABEL.match(self.database_name):
            raise ConfigError("database name may only use letters, digits, '.', '_' and '-'")
        segments = self.prefix.strip("/").split("/")
        if not self.prefix.strip("/") or not all(_LABEL.match(seg) for seg in segments):
            raise ConfigError(f"prefix {self.prefix!r} is not a valid key prefix")
        if self.database_url is not None:
            ConnInfo.parse(self.database_url, what="database URL")
        for url, what in (
            (self.restore_target_url, "restore target URL"),
            (self.dr_restore_target_url, "DR restore target URL"),
        ):
            if url is not None:
                ConnInfo.parse(url, what=what)
        _ = self.thresholds  # validates PGRUNBOOK_THRESHOLDS
        _ = self.retention_policy  # validates PGRUNBOOK_RETENTION_DAYS

    # -- derived -------------------------------------------------------------------------

    def conninfo(self) -> ConnInfo:
        """The database: its URL, or else its Secrets Manager secret (RDS shape)."""
        if self.database_url:
            return ConnInfo.parse(self.database_url, what="database URL")
        if self.database_secret_arn:
            return conninfo_from_arn(self.database_secret_arn)
        raise ConfigError(
            "no database: set PGRUNBOOK_DATABASE_URL or PGRUNBOOK_DATABASE_SECRET_ARN, or pass --database-url"
        )

    def restore_target(self) -> ConnInfo | None:
        """Where restore tests create scratch databases (None: the embedded server)."""
        if self.restore_target_url:
            return ConnInfo.parse(self.restore_target_url, what="restore target URL")
        if self.restore_target_secret_arn:
            return conninfo_from_arn(self.restore_target_secret_arn, what="restore target secret")
        return None

    def dr_restore_target(self) -> ConnInfo | None:
        """Where DR drills restore (the DR region's server; None: the embedded server)."""
        if self.dr_restore_target_url:
            return ConnInfo.parse(self.dr_restore_target_url, what="DR restore target URL")
        if self.dr_restore_target_secret_arn:
            return conninfo_from_arn(self.dr_restore_target_secret_arn, what="DR restore target secret")
        return None

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds.from_json(self.thresholds_json)

    @property
    def retention_policy(self) -> RetentionPolicy:
        if not self.retention_json:
            return RetentionPolicy()
        try:
            days = json.loads(self.retention_json)
            if not isinstance(days, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise ConfigError(f"PGRUNBOOK_RETENTION_DAYS is not valid JSON: {exc}") from None
        for tier, value in days.items():
            if tier not in DEFAULT_RETENTION_DAYS or not isinstance(value, int) or value < 1:
                raise ConfigError(f"PGRUNBOOK_RETENTION_DAYS: {tier!r} must be a tier with a number of days")
        return RetentionPolicy(days={**DEFAULT_RETENTION_DAYS, **days})

    @property
    def exposed_schema_list(self) -> list[str]:
        """Schemas an API exposes to clients (PostgREST on Supabase): RLS must guard them."""
        if self.exposed_schemas is None:
            return ["public"]
        return [s.strip() for s in self.exposed_schemas.split(",") if s.strip()]

    @property
    def critical_table_list(self) -> list[str]:
        return [t.strip() for t in (self.critical_tables or "").split(",") if t.strip()]

    @property
    def created_at_column_list(self) -> list[str]:
        return [c.strip() for c in self.created_at_columns.split(",") if c.strip()]

    @property
    def maintenance_parameter_name(self) -> str | None:
        """The SSM parameter of maintenance mode (None: switched off by configuration)."""
        if self.maintenance_parameter == "off":
            return None
        return self.maintenance_parameter or f"/pgrunbook/{self.database_label}/maintenance"

    @property
    def database_label(self) -> str:
        if self.database_name:
            return self.database_name
        if self.database_url or self.database_secret_arn:
            name = self.conninfo().dbname
            if _LABEL.match(name):
                return name
            raise ConfigError(
                f"database name {name!r} cannot name a catalog folder; set PGRUNBOOK_DATABASE_NAME"
            )
        raise ConfigError(
            "no database: set PGRUNBOOK_DATABASE_URL, PGRUNBOOK_DATABASE_SECRET_ARN or PGRUNBOOK_DATABASE_NAME"
        )

    @property
    def has_dr(self) -> bool:
        return bool(self.dr_bucket)

    def primary_store(self, transfer: TransferSettings | None = None) -> ObjectStore:
        if not self.bucket:
            raise ConfigError("no bucket: set PGRUNBOOK_BUCKET or pass --bucket")
        if not self.region:
            raise ConfigError("no region: set PGRUNBOOK_REGION or pass --region")
        return ObjectStore(self.bucket, self.region, self.prefix, self.database_label, transfer=transfer)

    def dr_store(self, transfer: TransferSettings | None = None) -> ObjectStore:
        if not self.dr_bucket:
            raise ConfigError("no DR bucket: set PGRUNBOOK_DR_BUCKET or pass --dr-bucket")
        if not self.dr_region:
            raise ConfigError("no DR region: set PGRUNBOOK_DR_REGION or pass --dr-region")
        return ObjectStore(
            self.dr_bucket, self.dr_region, self.prefix, self.database_label, transfer=transfer
        )

    def store(self, source: str, transfer: TransferSettings | None = None) -> ObjectStore:
        if source == "primary":
            return self.primary_store(transfer)
        if source == "dr":
            return self.dr_store(transfer)
        raise ConfigError(f"source must be 'primary' or 'dr', not {source!r}")

    @property
    def work_path(self) -> Path:
        return Path(self.work_dir or tempfile.gettempdir())

    @property
    def home_path(self) -> Path:
        return Path(self.home or Path.home() / ".pgrunbook")

    @property
    def creator(self) -> str:
        if self.created_by:
            return self.created_by
        try:
            user = getpass.getuser()
        except Exception:
            user = "unknown"
        return f"pgrunbook-cli:{user}@{socket.gethostname()}"

    @property
    def migrations_path(self) -> Path:
        """Where the migration files are: PGRUNBOOK_MIGRATIONS_DIR, else pgrunbook's own."""
        if self.migrations_dir:
            return Path(self.migrations_dir)
        from pgrunbook.resources import sql_dir

        return sql_dir() / "migrations"
