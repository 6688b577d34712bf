"""The deployment's configuration: the ``pgrunbook`` object in ``cdk.json``'s context.

Every value has the DESIGN.md default except what only the operator can know: the secrets
holding the database's and the restore targets' credentials, and the alert e-mail.  Override
any of them in ``cdk.json`` or on the command line (``cdk deploy -c pgrunbook='{...}'`` replaces
the whole object, so ``cdk.json`` is the usual place).

Names are derived, not configured, so that the two stacks (and the jobs) find each other's
resources without cross-region references: ``<prefix>-<database>-backups-<account>-<region>``
for the buckets, ``alias/<prefix>-<database>-backups`` for their keys.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from typing import Any

SCHEDULE_DEFAULTS = {
    "backup": "cron(0 2 * * ? *)",  # daily 02:00; the job derives weekly/monthly tiers from the date
    "retention": "cron(0 3 * * ? *)",
    "verify": "cron(0 4 * * ? *)",
    "restore_test": "cron(0 5 ? * SUN *)",
    "dr_drill": "cron(0 6 ? * SUN#1 *)",  # the first Sunday of the month
    "health": "cron(0 7 ? * MON *)",
    "hourly_backup": "cron(0 * * * ? *)",  # only when hourly_backups is true
}
THRESHOLD_DEFAULTS = {
    "backup_age_hours": [26, 48],
    "backup_failure_rate_pct": [5, 15],
    "backup_duration_minutes": [30, 120],
    "storage_growth_pct": [50, 100],
    "rto_hours": [6, 12],
    "rpo_hours": [2, 4],
    "rto_target_hours": 4,
    "rpo_target_hours": 1,
}
PITR_DEFAULTS: dict[str, Any] = {
    "provider": "logical",  # logical | supabase | rds
    "approval_timeout_minutes": 60,
    "deadline_minutes": 240,  # the RTO target
    "poll_seconds": 60,
    "critical_tables": [],
    "supabase_project_ref": None,
    "supabase_token_secret_arn": None,
    "rds_instance": None,
    "rds_cluster": None,
}
MIGRATIONS_DEFAULTS: dict[str, Any] = {
    "approval": True,  # the migration workflow waits for a person (pgrunbook migrate approve)
    "approval_timeout_minutes": 60,
    "lock_timeout": "5s",
    "statement_timeout": "15min",
}
RETENTION_DEFAULTS = {"daily": 90, "weekly": 365, "monthly": 1095, "hourly": 2, "manual": 365}
_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,20}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


class ConfigurationError(ValueError):
    """cdk.json's pgrunbook context is missing something or says something impossible."""


@dataclass(frozen=True)
class VpcPlacement:
    """Where the functions run when the database is in private subnets (RDS)."""

    vpc_id: str
    availability_zones: list[str]
    subnet_ids: list[str]
    security_group_ids: list[str]


@dataclass(frozen=True)
class DeploymentConfig:
    database_secret_arn: str
    restore_target_secret_arn: str
    dr_restore_target_secret_arn: str
    account: str | None = None
    primary_region: str = "us-east-1"
    dr_region: str = "us-west-2"
    prefix: str = "pgrunbook"
    database_name: str = "app"
    profile: str = "default"
    alert_email: str | None = None
    object_lock_mode: str = "governance"
    hourly_backups: bool = False
    schedules: dict[str, str] = field(default_factory=lambda: dict(SCHEDULE_DEFAULTS))
    thresholds: dict[str, Any] = field(default_factory=lambda: dict(THRESHOLD_DEFAULTS))
    retention_days: dict[str, int] = field(default_factory=lambda: dict(RETENTION_DEFAULTS))
    log_retention_days: int = 90
    noncurrent_version_days: int = 30
    vpc: VpcPlacement | None = None
    pitr: dict[str, Any] = field(default_factory=lambda: dict(PITR_DEFAULTS))
    migrations: dict[str, Any] = field(default_factory=lambda: dict(MIGRATIONS_DEFAULTS))

    @classmethod
    def from_context(cls, raw: Any) -> DeploymentConfig:
        if isinstance(raw, str):  # -c pgrunbook='{...}' arrives as a string
            try:
                raw = json.loads(raw)
            except ValueError as exc:
                raise ConfigurationError(f"the pgrunbook context is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigurationError('cdk.json needs a "pgrunbook" object in its "context"')
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigurationError(f"unknown pgrunbook settings: {', '.join(unknown)}")
        values = dict(raw)
        for name, defaults in (
            ("schedules", SCHEDULE_DEFAULTS),
            ("thresholds", THRESHOLD_DEFAULTS),
            ("retention_days", RETENTION_DEFAULTS),
            ("pitr", PITR_DEFAULTS),
            ("migrations", MIGRATIONS_DEFAULTS),
        ):
            given = values.get(name) or {}
            extra = sorted(set(given) - set(defaults))
            if extra:
                raise ConfigurationError(f"unknown {name}: {', '.join(extra)}")
            values[name] = {**defaults, **given}
        if values.get("vpc"):
            values["vpc"] = VpcPlacement(**values["vpc"])
        for required in ("database_secret_arn", "restore_target_secret_arn", "dr_restore_target_secret_arn"):
            if not values.get(required):
                raise ConfigurationError(
                    f"set pgrunbook.{required} in cdk.json (a Secrets Manager secret ARN)"
                )
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        for name in ("primary_region", "dr_region"):
            if not _REGION.match(getattr(self, name)):
                raise ConfigurationError(f"pgrunbook.{name} {getattr(self, name)!r} is not an AWS region")
        if self.primary_region == self.dr_region:
            raise ConfigurationError("the DR region must differ from the primary region")
        for name in ("database_secret_arn", "restore_target_secret_arn", "dr_restore_target_secret_arn"):
            if not _ARN.match(getattr(self, name)):
                raise ConfigurationError(f"pgrunbook.{name} is not a Secrets Manager secret ARN")
        if f":{self.dr_region}:" not in self.dr_restore_target_secret_arn:
            # the drill assumes the primary region is gone: its target's credentials must not be there
            raise ConfigurationError(
                "pgrunbook.dr_restore_target_secret_arn must be a secret in the DR region"
            )
        for name in ("prefix", "database_name"):
            if not _NAME.match(getattr(self, name)):
                raise ConfigurationError(
                    f"pgrunbook.{name} must be 1-21 lowercase letters, digits or '-', starting with a letter"
                )
        if self.object_lock_mode not in ("governance", "compliance"):
            raise ConfigurationError("pgrunbook.object_lock_mode must be governance or compliance")
        if self.profile not in ("default", "supabase"):
            raise ConfigurationError("pgrunbook.profile must be default or supabase")
        for name, value in self.thresholds.items():
            if isinstance(THRESHOLD_DEFAULTS[name], list):
                if not (isinstance(value, list) and len(value) == 2 and value[0] <= value[1]):
                    raise ConfigurationError(
                        f"threshold {name} must be [warning, critical] with warning <= critical"
                    )
        self._validate_pitr()
        self._validate_migrations()
        if self.account is not None and not re.fullmatch(r"\d{12}", str(self.account)):
            raise ConfigurationError("pgrunbook.account must be a 12-digit AWS account id (or null)")

    def _validate_migrations(self) -> None:
        m = self.migrations
        if not isinstance(m["approval"], bool):
            raise ConfigurationError("pgrunbook.migrations.approval must be true or false")
        value = m["approval_timeout_minutes"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 7 * 24 * 60:
            raise ConfigurationError("pgrunbook.migrations.approval_timeout_minutes must be from 1 to 10080")
        for name in ("lock_timeout", "statement_timeout"):
            if not re.fullmatch(r"\d+\s*(ms|s|min|h)?", str(m[name])):
                raise ConfigurationError(f"pgrunbook.migrations.{name} must be a duration like 5s or 15min")

    def migrations_environment(self) -> dict[str, str]:
        m = self.migrations
        return {
            "PGRUNBOOK_MIGRATION_APPROVAL": "on" if m["approval"] else "off",
            "PGRUNBOOK_PITR_APPROVAL_TIMEOUT": str(m["approval_timeout_minutes"] * 60),
            "PGRUNBOOK_LOCK_TIMEOUT": m["lock_timeout"],
            "PGRUNBOOK_STATEMENT_TIMEOUT": m["statement_timeout"],
        }

    def _validate_pitr(self) -> None:
        pitr = self.pitr
        if pitr["provider"] not in ("logical", "supabase", "rds"):
            raise ConfigurationError("pgrunbook.pitr.provider must be logical, supabase or rds")
        for name, low, high in (
            ("approval_timeout_minutes", 1, 7 * 24 * 60),
            ("deadline_minutes", 5, 7 * 24 * 60),
            ("poll_seconds", 5, 3600),
        ):
            value = pitr[name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigurationError(f"pgrunbook.pitr.{name} must be a whole number from {low} to {high}")
        if not isinstance(pitr["critical_tables"], list) or not all(
            isinstance(t, str) and t for t in pitr["critical_tables"]
        ):
            raise ConfigurationError(
                'pgrunbook.pitr.critical_tables must be a list of table names ("public.tasks")'
            )
        if pitr["provider"] == "supabase":
            if not re.fullmatch(r"[a-z0-9]{8,40}", str(pitr["supabase_project_ref"] or "")):
                raise ConfigurationError(
                    "pgrunbook.pitr.supabase_project_ref must be the project's reference"
                )
            if not _ARN.match(str(pitr["supabase_token_secret_arn"] or "")):
                raise ConfigurationError(
                    "pgrunbook.pitr.supabase_token_secret_arn must be the ARN of the secret holding the "
                    "Management API token"
                )
        if pitr["provider"] == "rds" and bool(pitr["rds_instance"]) == bool(pitr["rds_cluster"]):
            raise ConfigurationError("pgrunbook.pitr needs exactly one of rds_instance and rds_cluster")
        for name in ("rds_instance", "rds_cluster"):
            if pitr[name] and not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,62}", pitr[name]):
                raise ConfigurationError(f"pgrunbook.pitr.{name} is not an RDS identifier")

    @property
    def maintenance_parameter(self) -> str:
        return f"/{self.key_prefix}/{self.database_name}/maintenance"

    def pitr_environment(self) -> dict[str, str]:
        pitr = self.pitr
        env = {
            "PGRUNBOOK_PITR_PROVIDER": pitr["provider"],
            "PGRUNBOOK_MAINTENANCE_PARAMETER": self.maintenance_parameter,
            "PGRUNBOOK_PITR_APPROVAL_TIMEOUT": str(pitr["approval_timeout_minutes"] * 60),
            "PGRUNBOOK_PITR_DEADLINE": str(pitr["deadline_minutes"] * 60),
            "PGRUNBOOK_PITR_POLL_SECONDS": str(pitr["poll_seconds"]),
            "PGRUNBOOK_CRITICAL_TABLES": ",".join(pitr["critical_tables"]),
            "PGRUNBOOK_SUPABASE_PROJECT_REF": pitr["supabase_project_ref"] or "",
            "PGRUNBOOK_SUPABASE_TOKEN_SECRET_ARN": pitr["supabase_token_secret_arn"] or "",
            "PGRUNBOOK_RDS_INSTANCE": pitr["rds_instance"] or "",
            "PGRUNBOOK_RDS_CLUSTER": pitr["rds_cluster"] or "",
        }
        return {k: v for k, v in env.items() if v}

    # -- derived names -------------------------------------------------------------------

    @property
    def name(self) -> str:
        """``<prefix>-<database>``: the stem of every resource name."""
        return f"{self.prefix}-{self.database_name}"

    def bucket_name(self, account: str, region: str) -> str:
        return f"{self.name}-backups-{account}-{region}"

    @property
    def key_alias(self) -> str:
        return f"alias/{self.name}-backups"

    @property
    def key_prefix(self) -> str:
        """The S3 key prefix pgrunbook writes under (PGRUNBOOK_PREFIX)."""
        return self.prefix

    def threshold(self, name: str) -> tuple[float, float]:
        warning, critical = self.thresholds[name]
        return float(warning), float(critical)

    def job_environment(self) -> dict[str, str]:
        """What every function's PGRUNBOOK_* environment shares."""
        return {
            "PGRUNBOOK_PREFIX": self.key_prefix,
            "PGRUNBOOK_DATABASE_NAME": self.database_name,
            "PGRUNBOOK_PROFILE": self.profile,
            "PGRUNBOOK_THRESHOLDS": json.dumps(self.thresholds, sort_keys=True),
            "PGRUNBOOK_RETENTION_DAYS": json.dumps(self.retention_days, sort_keys=True),
            "PGRUNBOOK_OBJECT_LOCK": self.object_lock_mode,
            "PGRUNBOOK_WORK_DIR": "/tmp",  # noqa: S108 - Lambda's only writable place, sized by ephemeral storage
            "PGRUNBOOK_HOME": "/tmp/pgrunbook",  # noqa: S108
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
