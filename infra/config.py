"""The deployment's configuration: the ``pgrunbook`` object in ``cdk.json``'s context.

Every value has the library's default (the registry, the option table, the domain's
thresholds and retention) except what only the operator can know: the secrets
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

from pgrunbook.domain.ids import supabase_ref_problem
from pgrunbook.domain.layout import Layout
from pgrunbook.domain.profiles import PROFILES
from pgrunbook.domain.thresholds import Threshold, Thresholds
from pgrunbook.domain.tiers import DEFAULT_RETENTION_DAYS
from pgrunbook.operations import registry
from pgrunbook.settings.options import option

# Defaults come from the library: the registry's schedules, the thresholds and retention of
# the domain, the options' defaults.  cdk.json overrides any of them.
SCHEDULE_DEFAULTS = {
    schedule.key: schedule.expression for op in registry.deployed() for schedule in op.schedules
}
THRESHOLD_DEFAULTS: dict[str, Any] = {
    f.name: ([value.warning, value.critical] if isinstance(value, Threshold) else value)
    for f in fields(Thresholds)
    for value in [getattr(Thresholds(), f.name)]
}
PROVIDERS = option("pitr_provider").choices
PITR_DEFAULTS: dict[str, Any] = {
    "provider": option("pitr_provider").default,
    "approval_timeout_minutes": option("pitr_approval_timeout").default // 60,
    "deadline_minutes": option("pitr_deadline").default // 60,  # the RTO target
    "poll_seconds": option("pitr_poll_seconds").default,
    "critical_tables": [],
    "supabase_project_ref": None,
    "supabase_token_secret_arn": None,
    "rds_instance": None,
    "rds_cluster": None,
}
MIGRATIONS_DEFAULTS: dict[str, Any] = {
    "approval": option("migration_approval").default == "on",  # the workflow waits for a person
    "approval_timeout_minutes": option("pitr_approval_timeout").default // 60,
    "lock_timeout": option("lock_timeout").default,
    "statement_timeout": option("statement_timeout").default,
}
RETENTION_DEFAULTS = dict(DEFAULT_RETENTION_DAYS)
# Where restore tests and drills restore (pgrunbook.operations.targets): by default the
# embedded server inside the function; a throwaway RDS instance in a region whose subnet
# group is set (that region's functions then run in its VPC placement).
RESTORE_TARGET_DEFAULTS: dict[str, Any] = {
    "rds": option("restore_rds").default,  # needed | always | never
    "subnet_group": None,
    "security_groups": [],
    "dr_subnet_group": None,
    "dr_security_groups": [],
    "instance_class": None,
}
# Where the long jobs run (pgrunbook.domain.runners): ``runner`` is one mode for every job
# that can run on Fargate, or an object with a ``default`` and a mode per operation.
RUNNABLE = tuple(op.name for op in registry.deployed() if op.task is not None)
RUNNER_MODES = ("auto", "lambda", "fargate")
# The Fargate task: its size, and its network.  "public": a VPC of the stack's own with
# public subnets, the task with a public IP and a security group without ingress (no NAT to
# pay for; reaches a database with a public endpoint, such as Supabase's).  "vpc": the
# subnets and security groups of pgrunbook.vpc / dr_vpc (a database in private subnets: the
# subnets need a NAT gateway or VPC endpoints for S3, Secrets Manager, SNS, CloudWatch and
# Step Functions).
# An HTTPS endpoint that gets every notice too, signed with the secret's key (issue 17).
WEBHOOK_DEFAULTS: dict[str, Any] = {"url": None, "secret_arn": None}
# AWS Chatbot channels that show the notices: Slack {workspace_id, channel_id}, Microsoft
# Teams {team_id, channel_id, tenant_id}.
CHAT_DEFAULTS: dict[str, Any] = {"slack": [], "teams": []}
_CHAT_KEYS = {"slack": ("workspace_id", "channel_id"), "teams": ("team_id", "channel_id", "tenant_id")}
FARGATE_DEFAULTS: dict[str, Any] = {
    "cpu": registry.Fargate().cpu,
    "memory_mib": registry.Fargate().memory_mib,
    "network": "public",
}
_FARGATE_SIZES = {
    256: (512, 2048),
    512: (1024, 4096),
    1024: (2048, 8192),
    2048: (4096, 16384),
    4096: (8192, 30720),
    8192: (16384, 61440),
    16384: (32768, 122880),
}
SECTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "schedules": SCHEDULE_DEFAULTS,
    "thresholds": THRESHOLD_DEFAULTS,
    "retention_days": RETENTION_DEFAULTS,
    "pitr": PITR_DEFAULTS,
    "migrations": MIGRATIONS_DEFAULTS,
    "restore_targets": RESTORE_TARGET_DEFAULTS,
    "fargate": FARGATE_DEFAULTS,
    "webhook": WEBHOOK_DEFAULTS,
    "chat": CHAT_DEFAULTS,
}
# The ``databases`` list form (issue 17): these settings build what the databases share (the
# buckets and their keys, the alerts topic and its chat channels, the Fargate network, the
# functions' VPC placement, the webhook) and are set once, at the top level.  Every other
# setting is a database's own; its value at the top level is every database's default, and
# an object (schedules, thresholds, pitr, ...) is merged key by key.
SHARED_SETTINGS = (
    "account",
    "primary_region",
    "dr_region",
    "prefix",
    "alert_email",
    "noncurrent_version_days",
    "vpc",
    "dr_vpc",
    "fargate",
    "webhook",
    "chat",
)
# ... and these only a database can say
OWN_SETTINGS = ("database_name", "database_secret_arn")
# A stack has at most 200 outputs, and the primary stack has 4 per database (its workflows'
# ARNs, its maintenance parameter); each database's resources are a nested stack of their own.
MAX_DATABASES = 40
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
    # a standing server to restore into (optional: by default the embedded server, or a
    # throwaway RDS instance, needs no secret but the database's)
    restore_target_secret_arn: str | None = None
    dr_restore_target_secret_arn: str | None = None
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
    dr_vpc: VpcPlacement | None = None  # the DR region's functions' placement (throwaway DR targets)
    restore_targets: dict[str, Any] = field(default_factory=lambda: dict(RESTORE_TARGET_DEFAULTS))
    pitr: dict[str, Any] = field(default_factory=lambda: dict(PITR_DEFAULTS))
    migrations: dict[str, Any] = field(default_factory=lambda: dict(MIGRATIONS_DEFAULTS))
    runner: Any = "auto"  # a mode, or {"default": mode, "<operation>": mode, ...}
    fargate: dict[str, Any] = field(default_factory=lambda: dict(FARGATE_DEFAULTS))
    webhook: dict[str, Any] = field(default_factory=lambda: dict(WEBHOOK_DEFAULTS))
    chat: dict[str, Any] = field(default_factory=lambda: dict(CHAT_DEFAULTS))
    # set by Deployment, not by cdk.json: one of the databases of the ``databases`` list form
    listed: bool = False

    @classmethod
    def from_context(cls, raw: Any) -> DeploymentConfig:
        """The single-database form (no ``databases`` list): one database, the stems as before."""
        deployment = Deployment.from_context(raw)
        if deployment.listed:
            raise ConfigurationError("this pgrunbook context lists several databases: use Deployment")
        return deployment.databases[0]

    @classmethod
    def build(
        cls, raw: dict[str, Any], *, listed: bool = False, where: str = "pgrunbook"
    ) -> DeploymentConfig:
        """One database's configuration from its settings (``raw``: cdk.json's names)."""
        known = {f.name for f in fields(cls)} - {"listed"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigurationError(f"unknown {where} settings: {', '.join(unknown)}")
        values = dict(raw)
        for name, defaults in SECTION_DEFAULTS.items():
            given = values.get(name) or {}
            if not isinstance(given, dict):
                raise ConfigurationError(f"{where}.{name} must be an object")
            extra = sorted(set(given) - set(defaults))
            if extra:
                raise ConfigurationError(f"unknown {name}: {', '.join(extra)}")
            values[name] = {**defaults, **given}
        for placement in ("vpc", "dr_vpc"):
            if values.get(placement):
                values[placement] = VpcPlacement(**values[placement])
        if not values.get("database_secret_arn"):
            raise ConfigurationError(
                f"set {where}.database_secret_arn in cdk.json (a Secrets Manager secret ARN)"
            )
        config = cls(**values, listed=listed)
        config.validate()
        return config

    def validate(self) -> None:
        self._validate_webhook()
        self._validate_chat()
        for name in ("primary_region", "dr_region"):
            if not _REGION.match(getattr(self, name)):
                raise ConfigurationError(f"pgrunbook.{name} {getattr(self, name)!r} is not an AWS region")
        if self.primary_region == self.dr_region:
            raise ConfigurationError("the DR region must differ from the primary region")
        for name in ("database_secret_arn", "restore_target_secret_arn", "dr_restore_target_secret_arn"):
            value = getattr(self, name)
            if value is not None and not _ARN.match(value):
                raise ConfigurationError(f"pgrunbook.{name} is not a Secrets Manager secret ARN")
        if (
            self.dr_restore_target_secret_arn
            and f":{self.dr_region}:" not in self.dr_restore_target_secret_arn
        ):
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
        if self.profile not in PROFILES:
            raise ConfigurationError(f"pgrunbook.profile must be one of {', '.join(PROFILES)}")
        for name, value in self.thresholds.items():
            if isinstance(THRESHOLD_DEFAULTS[name], list):
                if not (isinstance(value, list) and len(value) == 2 and value[0] <= value[1]):
                    raise ConfigurationError(
                        f"threshold {name} must be [warning, critical] with warning <= critical"
                    )
        self._validate_pitr()
        self._validate_migrations()
        self._validate_restore_targets()
        self._validate_runners()
        if self.account is not None and not re.fullmatch(r"\d{12}", str(self.account)):
            raise ConfigurationError("pgrunbook.account must be a 12-digit AWS account id (or null)")

    def _validate_restore_targets(self) -> None:
        targets = self.restore_targets
        if targets["rds"] not in option("restore_rds").choices:
            raise ConfigurationError(
                f"pgrunbook.restore_targets.rds must be one of {', '.join(option('restore_rds').choices)}"
            )
        for region, placement, placement_name in (("", self.vpc, "vpc"), ("dr_", self.dr_vpc, "dr_vpc")):
            group = targets[f"{region}subnet_group"]
            groups = targets[f"{region}security_groups"]
            if not isinstance(groups, list) or not all(
                re.fullmatch(r"sg-[0-9a-f]{8,17}", str(g)) for g in groups
            ):
                raise ConfigurationError(
                    f"pgrunbook.restore_targets.{region}security_groups must be a list of sg-... ids"
                )
            if group is None:
                continue
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9._ -]{0,254}", str(group)):
                raise ConfigurationError(
                    f"pgrunbook.restore_targets.{region}subnet_group is not a DB subnet group name"
                )
            if placement is None:
                raise ConfigurationError(
                    f"pgrunbook.restore_targets.{region}subnet_group needs pgrunbook.{placement_name}: the restore "
                    "function must run in that VPC to reach the instances it creates"
                )
        if targets["rds"] == "always" and not (targets["subnet_group"] and targets["dr_subnet_group"]):
            raise ConfigurationError(
                "pgrunbook.restore_targets.rds is always: set subnet_group and dr_subnet_group (and vpc, dr_vpc)"
            )
        cls = targets["instance_class"]
        if cls is not None and not re.fullmatch(r"db\.[a-z0-9]+\.[a-z0-9]+", str(cls)):
            raise ConfigurationError("pgrunbook.restore_targets.instance_class is not an RDS instance class")

    def _validate_runners(self) -> None:
        runner = self.runner
        modes = runner if isinstance(runner, dict) else {"default": runner}
        unknown = sorted(set(modes) - {"default", *RUNNABLE})
        if unknown:
            raise ConfigurationError(
                f"pgrunbook.runner names {', '.join(unknown)}: it takes default and {', '.join(RUNNABLE)} "
                "(the other jobs are short and always run in Lambda)"
            )
        for name, mode in modes.items():
            if mode not in RUNNER_MODES:
                where = "pgrunbook.runner" + ("" if not isinstance(runner, dict) else f".{name}")
                raise ConfigurationError(f"{where} must be one of {', '.join(RUNNER_MODES)}, not {mode!r}")
        f = self.fargate
        cpu, memory = f["cpu"], f["memory_mib"]
        if cpu not in _FARGATE_SIZES:
            raise ConfigurationError(
                f"pgrunbook.fargate.cpu must be one of {', '.join(map(str, _FARGATE_SIZES))} (1024 = 1 vCPU)"
            )
        low, high = _FARGATE_SIZES[cpu]
        if (
            isinstance(memory, bool)
            or not isinstance(memory, int)
            or not low <= memory <= high
            or memory % 1024
        ):
            raise ConfigurationError(
                f"pgrunbook.fargate.memory_mib must be a multiple of 1024 from {low} to {high} for cpu {cpu}"
            )
        if f["network"] not in ("public", "vpc"):
            raise ConfigurationError("pgrunbook.fargate.network must be public or vpc")
        if f["network"] == "vpc" and any(self.runner_mode(op) != "lambda" for op in RUNNABLE):
            for op in RUNNABLE:
                role = "dr" if registry.get(op).region == "dr" else "primary"
                if self.runner_mode(op) != "lambda" and self.placement(role) is None:
                    raise ConfigurationError(
                        f"pgrunbook.fargate.network is vpc: set pgrunbook.{'dr_vpc' if role == 'dr' else 'vpc'} "
                        f"(where {op}'s task runs), or use network public"
                    )

    def runner_mode(self, operation: str) -> str:
        """auto | lambda | fargate for ``operation`` (lambda for the jobs that cannot move)."""
        if operation not in RUNNABLE:
            return "lambda"
        runner = self.runner
        if isinstance(runner, dict):
            return str(runner.get(operation, runner.get("default", "auto")))
        return str(runner)

    def rds_targets(self, region_role: str) -> bool:
        """Whether that region's restore runs may create throwaway RDS instances."""
        prefix = "dr_" if region_role == "dr" else ""
        return self.restore_targets["rds"] != "never" and bool(self.restore_targets[f"{prefix}subnet_group"])

    def placement(self, region_role: str) -> VpcPlacement | None:
        return self.dr_vpc if region_role == "dr" else self.vpc

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

    def _validate_pitr(self) -> None:
        pitr = self.pitr
        if pitr["provider"] not in PROVIDERS:
            raise ConfigurationError(f"pgrunbook.pitr.provider must be one of {', '.join(PROVIDERS)}")
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
            problem = supabase_ref_problem(str(pitr["supabase_project_ref"] or ""))
            if problem:
                raise ConfigurationError(f"pgrunbook.pitr.supabase_project_ref: {problem}")
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
        return Layout(self.key_prefix, self.database_name).maintenance_parameter

    # -- derived names -------------------------------------------------------------------

    @property
    def name(self) -> str:
        """``<prefix>-<database>``: the stem of the database's own resources' names (its
        functions, state machines, task families, alarms)."""
        return f"{self.prefix}-{self.database_name}"

    @property
    def stem(self) -> str:
        """The stem of what the deployment's databases share (the stacks, buckets and their
        keys, the alerts topic, the dashboard): ``<prefix>-<database>`` in the single-database
        form (as before the list form existed), ``<prefix>`` in the ``databases`` list form."""
        return self.prefix if self.listed else self.name

    def bucket_name(self, account: str, region: str) -> str:
        return f"{self.stem}-backups-{account}-{region}"

    @property
    def key_alias(self) -> str:
        return f"alias/{self.stem}-backups"

    @property
    def key_prefix(self) -> str:
        """The S3 key prefix pgrunbook writes under (PGRUNBOOK_PREFIX)."""
        return self.prefix

    def threshold(self, name: str) -> tuple[float, float]:
        warning, critical = self.thresholds[name]
        return float(warning), float(critical)

    def _validate_chat(self) -> None:
        for platform, keys in _CHAT_KEYS.items():
            channels = self.chat[platform]
            if not isinstance(channels, list):
                raise ConfigurationError(f"pgrunbook.chat.{platform} must be a list of channels")
            for channel in channels:
                if not isinstance(channel, dict) or set(channel) != set(keys):
                    raise ConfigurationError(
                        f"each pgrunbook.chat.{platform} channel needs exactly {', '.join(keys)}"
                    )
                if not all(
                    isinstance(channel[k], str) and re.fullmatch(r"[A-Za-z0-9:_.@%-]{1,256}", channel[k])
                    for k in keys
                ):
                    raise ConfigurationError(f"a pgrunbook.chat.{platform} channel has an invalid id")

    def _validate_webhook(self) -> None:
        url, arn = self.webhook["url"], self.webhook["secret_arn"]
        if url is None and arn is None:
            return
        if not url or not str(url).startswith("https://"):
            raise ConfigurationError("pgrunbook.webhook.url must be an https:// URL")
        if not arn or not _ARN.match(str(arn)):
            raise ConfigurationError(
                "pgrunbook.webhook.secret_arn must be the Secrets Manager secret ARN of the webhook's key"
            )

    def settings(self, *, bucket: str, dr_bucket: str, sns_topic_arn: str) -> dict[str, Any]:
        """The deployment's settings, by option name (:mod:`pgrunbook.settings.options`): each
        function gets those its operation reads, as ``PGRUNBOOK_*`` variables."""
        pitr, migrations = self.pitr, self.migrations
        return {
            "database_secret_arn": self.database_secret_arn,
            "database_name": self.database_name,
            "profile": self.profile,
            "bucket": bucket,
            "region": self.primary_region,
            "dr_bucket": dr_bucket,
            "dr_region": self.dr_region,
            "prefix": self.key_prefix,
            "object_lock": self.object_lock_mode,
            "retention_json": json.dumps(self.retention_days, sort_keys=True),
            "thresholds_json": json.dumps(self.thresholds, sort_keys=True),
            "work_dir": "/tmp",  # noqa: S108 - Lambda's only writable place, sized by ephemeral storage
            "home": "/tmp/pgrunbook",  # noqa: S108
            "restore_target_secret_arn": self.restore_target_secret_arn,
            "dr_restore_target_secret_arn": self.dr_restore_target_secret_arn,
            "restore_rds": self.restore_targets["rds"],
            "restore_rds_subnet_group": self.restore_targets["subnet_group"],
            "restore_rds_security_groups": ",".join(self.restore_targets["security_groups"]),
            "dr_restore_rds_subnet_group": self.restore_targets["dr_subnet_group"],
            "dr_restore_rds_security_groups": ",".join(self.restore_targets["dr_security_groups"]),
            "restore_rds_instance_class": self.restore_targets["instance_class"],
            "sns_topic_arn": sns_topic_arn,
            "webhook_url": self.webhook["url"],
            "webhook_secret_arn": self.webhook["secret_arn"],
            "pitr_provider": pitr["provider"],
            "maintenance_parameter": self.maintenance_parameter,
            "pitr_approval_timeout": (
                pitr["approval_timeout_minutes"] * 60  # the migration function's comes from migrations
            ),
            "pitr_deadline": pitr["deadline_minutes"] * 60,
            "pitr_poll_seconds": pitr["poll_seconds"],
            "critical_tables": ",".join(pitr["critical_tables"]),
            "supabase_project_ref": pitr["supabase_project_ref"],
            "supabase_token_secret_arn": pitr["supabase_token_secret_arn"],
            "rds_instance": pitr["rds_instance"],
            "rds_cluster": pitr["rds_cluster"],
            "migration_approval": "on" if migrations["approval"] else "off",
            "lock_timeout": migrations["lock_timeout"],
            "statement_timeout": migrations["statement_timeout"],
        }

    def approval_timeout_seconds(self, workflow: str) -> int:
        section = self.migrations if workflow == "migrate" else self.pitr
        return int(section["approval_timeout_minutes"]) * 60


def output_stem(database_name: str) -> str:
    """How a database of the list form names its outputs in the parent stack: ``billing-eu``
    gives ``BillingEu`` (``BillingEuPitrStateMachineArn``)."""
    return "".join(part.title() for part in database_name.split("-"))


@dataclass(frozen=True)
class Deployment:
    """What one ``cdk.json`` deploys: one database (its settings at the top level, the form
    every deployment had before issue 17), or the ``databases`` list: one primary and one DR
    stack whose buckets, keys, topic and network are shared, each database's jobs, workflows,
    alarms and grants its own (a nested stack per database: see infra/stacks.py)."""

    databases: tuple[DeploymentConfig, ...]
    listed: bool = False

    @property
    def shared(self) -> DeploymentConfig:
        """The settings every database has the same (SHARED_SETTINGS): the first one's."""
        return self.databases[0]

    @property
    def stem(self) -> str:
        return self.shared.stem

    @classmethod
    def from_context(cls, raw: Any) -> Deployment:
        if isinstance(raw, str):  # -c pgrunbook='{...}' arrives as a string
            try:
                raw = json.loads(raw)
            except ValueError as exc:
                raise ConfigurationError(f"the pgrunbook context is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigurationError('cdk.json needs a "pgrunbook" object in its "context"')
        if "databases" not in raw:
            return cls((DeploymentConfig.build(raw),))
        entries = raw["databases"]
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            raise ConfigurationError("pgrunbook.databases must be a list of objects, one per database")
        if len(entries) > MAX_DATABASES:
            raise ConfigurationError(
                f"pgrunbook.databases lists {len(entries)}: a deployment takes at most {MAX_DATABASES} databases "
                "(CloudFormation's 200 outputs per stack); split them over deployments with different prefixes"
            )
        top = {k: v for k, v in raw.items() if k != "databases"}
        unknown = sorted(set(top) - ({f.name for f in fields(DeploymentConfig)} - {"listed"}))
        if unknown:
            raise ConfigurationError(f"unknown pgrunbook settings: {', '.join(unknown)}")
        misplaced = sorted(set(top) & set(OWN_SETTINGS))
        if misplaced:
            raise ConfigurationError(
                f"pgrunbook.{misplaced[0]} belongs in each entry of pgrunbook.databases, not at the top level"
            )
        databases = []
        for i, entry in enumerate(entries):
            where = f"pgrunbook.databases[{i}]"
            shared = sorted(set(entry) & set(SHARED_SETTINGS))
            if shared:
                raise ConfigurationError(
                    f"{where}.{shared[0]} is shared by every database of the deployment: set it at the top level"
                )
            merged = {**top, **entry}
            for name in SECTION_DEFAULTS:
                if isinstance(top.get(name), dict) and isinstance(entry.get(name), dict):
                    merged[name] = {**top[name], **entry[name]}
            databases.append(DeploymentConfig.build(merged, listed=True, where=where))
        names = [d.database_name for d in databases]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigurationError(f"pgrunbook.databases lists {twice[0]} more than once")
        stems: dict[str, str] = {}
        for name in names:  # the parent stack's outputs are named after the database (BillingPitr...)
            other = stems.setdefault(output_stem(name), name)
            if other != name:
                raise ConfigurationError(
                    f"pgrunbook.databases: {other} and {name} would name their stack outputs the same; rename one"
                )
        secrets = [d.database_secret_arn for d in databases]
        if len(set(secrets)) != len(secrets):
            raise ConfigurationError(
                "two entries of pgrunbook.databases have the same database_secret_arn: each database needs its own"
            )
        return cls(tuple(databases), listed=True)
