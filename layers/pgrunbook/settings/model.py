"""Settings: the options of :mod:`pgrunbook.settings.options`, loaded and checked.

Environment first (``PGRUNBOOK_*``), then command-line flags on top, then each option's
default; every value is checked by its option before anything runs.  ``sources`` says where
each value came from (``default``, ``env`` or ``flag``), for ``pgrunbook config``.

AWS credentials and endpoints come from boto3's standard chain (``AWS_PROFILE``,
``AWS_ENDPOINT_URL`` ...).  The region falls back to ``AWS_REGION``/``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

import getpass
import os
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pgrunbook.adapters.aws.secrets import conninfo_from_arn, webhook_key_from_arn
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.adapters.s3.store import ObjectStore, TransferSettings
from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.layout import Layout
from pgrunbook.domain.thresholds import Thresholds
from pgrunbook.domain.tiers import RetentionPolicy
from pgrunbook.settings.options import LABEL, OPTIONS, retention_days, split_list


@dataclass
class Settings:
    database_url: str | None
    database_name: str | None
    bucket: str | None
    region: str | None
    dr_bucket: str | None
    dr_region: str | None
    restore_target_url: str | None
    prefix: str
    jobs: int
    compression: int
    profile: str
    mirror: str
    work_dir: str | None
    home: str | None
    embedded_dir: str | None  # default: pgrunbook.adapters.postgres.builds.default_dir
    created_by: str | None
    fingerprints: str  # dump | server | auto | alongside | after (see pgrunbook.operations.backup)
    pg_bin: str | None
    sql_dir: str | None
    database_secret_arn: str | None
    restore_target_secret_arn: str | None
    dr_restore_target_url: str | None
    dr_restore_target_secret_arn: str | None
    restore_rds: str  # needed | always | never
    restore_rds_subnet_group: str | None
    restore_rds_security_groups: str | None  # comma separated
    dr_restore_rds_subnet_group: str | None
    dr_restore_rds_security_groups: str | None
    restore_rds_instance_class: str | None
    sns_topic_arn: str | None
    webhook_url: str | None
    webhook_secret_arn: str | None
    webhook_secret: str | None
    checks_dir: str | None
    exposed_schemas: str | None  # comma separated; default: public
    thresholds_json: str | None
    retention_json: str | None
    object_lock: str  # auto | governance | compliance | off
    pitr_provider: str  # logical | supabase | rds
    pitr_state_machine_arn: str | None
    maintenance_parameter: str | None  # default /pgrunbook/<database>/maintenance
    critical_tables: str | None  # comma separated
    created_at_columns: str
    pitr_approval_timeout: int
    pitr_deadline: int
    pitr_poll_seconds: int
    supabase_project_ref: str | None
    supabase_token_secret_arn: str | None
    supabase_api_url: str
    rds_instance: str | None
    rds_cluster: str | None
    migrations_dir: str | None
    lock_timeout: str
    statement_timeout: str
    migration_approval: str  # on | off: the migration workflow's approval step
    migration_state_machine_arn: str | None
    recover_tables_state_machine_arn: str | None
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Environment first, then non-None ``overrides`` (CLI flags) on top; checked."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        sources: dict[str, str] = {}
        for opt in OPTIONS:
            if opt.name in overrides and overrides[opt.name] is not None:
                values[opt.name] = opt.parse(overrides[opt.name], label=opt.name)
                sources[opt.name] = "flag"
            elif opt.env and env.get(opt.env) not in (None, ""):
                values[opt.name] = opt.parse(env[opt.env], label=opt.env)
                sources[opt.name] = "env"
            elif opt.name == "region" and (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")):
                values[opt.name] = opt.parse(env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"))
                sources[opt.name] = "env"
            else:
                values[opt.name] = opt.default
                sources[opt.name] = "default"
        unknown = sorted(set(overrides) - set(values))
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(unknown)}")
        settings = cls(**values, sources=sources)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """What no single option can check: values that depend on each other."""
        _ = self.thresholds  # PGRUNBOOK_THRESHOLDS, parsed
        _ = self.retention_policy
        if self.webhook_url and not (self.webhook_secret or self.webhook_secret_arn):
            # an unsigned notice could be forged
            raise ConfigError(
                "PGRUNBOOK_WEBHOOK_URL needs PGRUNBOOK_WEBHOOK_SECRET_ARN (or PGRUNBOOK_WEBHOOK_SECRET)"
            )

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
        return self._server(self.restore_target_url, self.restore_target_secret_arn, "restore target")

    def dr_restore_target(self) -> ConnInfo | None:
        """Where DR drills restore (the DR region's server; None: the embedded server)."""
        return self._server(
            self.dr_restore_target_url, self.dr_restore_target_secret_arn, "DR restore target"
        )

    def webhook_key(self) -> str:
        """The webhook's HMAC key: from the environment, or the secret (its string, or the
        ``secret`` of a JSON object); :meth:`validate` made sure there is one of them."""
        if self.webhook_secret:
            return self.webhook_secret
        if not self.webhook_secret_arn:
            raise ConfigError("no webhook key: set PGRUNBOOK_WEBHOOK_SECRET_ARN or PGRUNBOOK_WEBHOOK_SECRET")
        return webhook_key_from_arn(self.webhook_secret_arn)

    @staticmethod
    def _server(url: str | None, secret_arn: str | None, what: str) -> ConnInfo | None:
        if url:
            return ConnInfo.parse(url, what=f"{what} URL")
        if secret_arn:
            return conninfo_from_arn(secret_arn, what=f"{what} secret")
        return None

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds.from_json(self.thresholds_json)

    @property
    def retention_policy(self) -> RetentionPolicy:
        return RetentionPolicy(days=retention_days(self.retention_json))

    @property
    def exposed_schema_list(self) -> list[str]:
        """Schemas an API exposes to clients (PostgREST on Supabase): RLS must guard them."""
        if self.exposed_schemas is None:
            return ["public"]
        return split_list(self.exposed_schemas)

    @property
    def critical_table_list(self) -> list[str]:
        return split_list(self.critical_tables)

    @property
    def created_at_column_list(self) -> list[str]:
        return split_list(self.created_at_columns)

    @property
    def maintenance_parameter_name(self) -> str | None:
        """The SSM parameter of maintenance mode (None: switched off by configuration)."""
        if self.maintenance_parameter == "off":
            return None
        return (
            self.maintenance_parameter
            or Layout(self.prefix.strip("/"), self.database_label).maintenance_parameter
        )

    @property
    def database_label(self) -> str:
        if self.database_name:
            return self.database_name
        if self.database_url or self.database_secret_arn:
            name = self.conninfo().dbname
            if LABEL.match(name):
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
    def embedded_path(self) -> Path:
        """Where the embedded PostgreSQL builds are installed (PGRUNBOOK_EMBEDDED_DIR)."""
        if self.embedded_dir:
            return Path(self.embedded_dir)
        from pgrunbook.adapters.postgres.builds import default_dir  # only where a restore runs

        return default_dir(self.home_path)

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
        from pgrunbook.settings.files import sql_dir

        return sql_dir(self.sql_dir) / "migrations"
