"""Throwaway RDS PostgreSQL instances to restore backups into, created for one restore test or
DR drill and always deleted after it.

What the embedded server cannot host (PostGIS, TimescaleDB ...), or every restore when the
deployment says so, is restored into an instance made for that run:

* engine ``postgres`` of the backup's major version (RDS picks the default minor);
* the smallest class that fits the data (:func:`size_for`, from the manifest's size), gp3
  storage sized from it, encrypted (the account's ``aws/rds`` key, or the configured one),
  not publicly accessible, in the configured DB subnet group and security groups, no
  automated backups, no deletion protection, the master password managed by RDS in Secrets
  Manager (never seen by pgrunbook's configuration);
* tagged ``pgrunbook:purpose=restore-target`` with the database, the run and the creation
  time, so that :meth:`RdsTargets.sweep` can find and delete what a run that died left
  behind (older than :data:`SWEEP_AFTER`), and nothing else.

Deleting skips the final snapshot and deletes automated backups: the instance held a copy
of a backup that is still in S3, nothing more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pgrunbook.adapters.aws.rds import (
    INSTANCE_EXISTS,
    INSTANCE_MISSING,
    SERVER_ERROR_CODES,
    THROTTLING_CODES,
    describe_error,
    error_code,
    rds_identifier,
    tag_value,
    tags_of,
)
from pgrunbook.adapters.aws.secrets import conninfo_from_secret, fetch_secret
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.domain.errors import ConfigError, RestoreFailed, TransientStorageError
from pgrunbook.domain.redact import one_line

PURPOSE_TAG = "pgrunbook:purpose"
PURPOSE = "restore-target"
DATABASE_TAG = "pgrunbook:database"
RUN_TAG = "pgrunbook:run"
CREATED_TAG = "pgrunbook:created"
SWEEP_AFTER = timedelta(hours=6)  # longer than any restore run may take
MASTER_USER = "pgrunbook"
READY = "available"
# statuses an instance being created does not come back from
BROKEN = frozenset(
    {
        "failed",
        "incompatible-network",
        "incompatible-parameters",
        "incompatible-option-group",
        "inaccessible-encryption-credentials",
        "insufficient-capacity",
        "storage-full",
        "deleting",
    }
)
# (compressed dump size up to, instance class): a dump is about a fifth of the data it holds
CLASSES = (
    (2 * 1024**3, "db.t4g.small"),
    (20 * 1024**3, "db.t4g.medium"),
    (100 * 1024**3, "db.m6g.large"),
    (400 * 1024**3, "db.m6g.xlarge"),
)
LARGEST = "db.m6g.2xlarge"


@dataclass(frozen=True)
class Sizing:
    instance_class: str
    storage_gb: int


def size_for(dump_bytes: int, instance_class: str | None = None) -> Sizing:
    """The smallest class and gp3 storage that fit a restore of a dump of ``dump_bytes``
    (restored data with indexes is taken as 5x the compressed dump, plus half again for
    headroom; gp3's minimum is 20 GB)."""
    chosen = instance_class or next((c for limit, c in CLASSES if dump_bytes <= limit), LARGEST)
    storage = max(20, math.ceil(dump_bytes * 5 * 1.5 / 1024**3) + 5)
    return Sizing(chosen, storage)


@dataclass
class TargetState:
    name: str
    status: str  # RDS's DBInstanceStatus, or "gone"
    host: str | None = None
    port: int | None = None
    secret_arn: str | None = None


class RdsTargets:
    """Create, watch, connect to and delete throwaway restore targets in one region."""

    def __init__(
        self,
        *,
        region: str,
        subnet_group: str | None,
        security_groups: tuple[str, ...] = (),
        kms_key: str | None = None,
        database: str,
    ):
        self.region = region
        self.subnet_group = subnet_group
        self.security_groups = security_groups
        self.kms_key = kms_key
        self.database = database

    @cached_property
    def client(self) -> Any:
        """The RDS client (public so that instrumentation can register botocore handlers)."""
        import boto3

        config = Config(region_name=self.region, retries={"mode": "standard", "max_attempts": 5})
        return boto3.session.Session().client("rds", config=config)

    def _call(
        self, operation: str, what: str, *, expect: tuple[str, ...] = (), **params: Any
    ) -> dict[str, Any]:
        try:
            return getattr(self.client, operation)(**params)
        except ClientError as exc:
            code = error_code(exc)
            if code in expect:
                raise
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if code in THROTTLING_CODES or code in SERVER_ERROR_CODES or status == 429 or status >= 500:
                raise TransientStorageError(f"{what}: RDS failed ({describe_error(exc)}); retry") from None
            raise RestoreFailed(f"{what}: {describe_error(exc)}") from None
        except BotoCoreError as exc:
            raise TransientStorageError(f"{what}: RDS could not be reached ({one_line(str(exc))})") from None

    @staticmethod
    def name_for(database: str, run_id: str) -> str:
        """``pgrunbook-<database>-rt-<run id>``, a valid RDS identifier."""
        return rds_identifier(f"pgrunbook-{database}", f"rt-{run_id}")

    # -- create ------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        major: int,
        dump_bytes: int,
        run_id: str,
        now: datetime,
        instance_class: str | None = None,
    ) -> dict[str, Any]:
        """Ask RDS for the instance; an instance of that name that is already ours (a retried
        step) is taken as it is."""
        if not self.subnet_group:
            raise ConfigError(
                "a throwaway RDS restore target needs a DB subnet group: set PGRUNBOOK_RESTORE_RDS_SUBNET_GROUP "
                "(and PGRUNBOOK_RESTORE_RDS_SECURITY_GROUPS)"
            )
        sizing = size_for(dump_bytes, instance_class)
        params: dict[str, Any] = {
            "DBInstanceIdentifier": name,
            "Engine": "postgres",
            "EngineVersion": str(major),
            "DBInstanceClass": sizing.instance_class,
            "AllocatedStorage": sizing.storage_gb,
            "StorageType": "gp3",
            "StorageEncrypted": True,
            "PubliclyAccessible": False,
            "MultiAZ": False,
            "DBSubnetGroupName": self.subnet_group,
            "MasterUsername": MASTER_USER,
            "ManageMasterUserPassword": True,
            "BackupRetentionPeriod": 0,
            "DeletionProtection": False,
            "AutoMinorVersionUpgrade": False,
            "CopyTagsToSnapshot": False,
            "Tags": [
                {"Key": PURPOSE_TAG, "Value": PURPOSE},
                {"Key": DATABASE_TAG, "Value": tag_value(self.database)},
                {"Key": RUN_TAG, "Value": tag_value(run_id)},
                {"Key": CREATED_TAG, "Value": now.isoformat(timespec="seconds")},
            ],
        }
        if self.security_groups:
            params["VpcSecurityGroupIds"] = list(self.security_groups)
        if self.kms_key:
            params["KmsKeyId"] = self.kms_key
        try:
            made = self._call(
                "create_db_instance", f"creating the restore target {name}", expect=INSTANCE_EXISTS, **params
            )
            instance = made["DBInstance"]
        except ClientError:  # a retried step: take it if it is ours
            instance = self._instance(name)
            if instance is None or tags_of(instance.get("TagList")).get(PURPOSE_TAG) != PURPOSE:
                raise RestoreFailed(
                    f"an RDS instance {name} exists and is not a pgrunbook restore target"
                ) from None
        return {
            "name": name,
            "region": self.region,
            "engine_version": instance.get("EngineVersion"),
            "instance_class": sizing.instance_class,
            "storage_gb": sizing.storage_gb,
            "created_at": now.isoformat(),
        }

    # -- watch and connect ------------------------------------------------------------------

    def _instance(self, name: str) -> dict[str, Any] | None:
        try:
            found = self._call(
                "describe_db_instances",
                f"describing the restore target {name}",
                expect=INSTANCE_MISSING,
                DBInstanceIdentifier=name,
            )
        except ClientError:
            return None
        instances = found.get("DBInstances") or []
        return instances[0] if instances else None

    def state(self, name: str) -> TargetState:
        instance = self._instance(name)
        if instance is None:
            return TargetState(name, "gone")
        endpoint = instance.get("Endpoint") or {}
        secret = (instance.get("MasterUserSecret") or {}).get("SecretArn")
        return TargetState(
            name, str(instance.get("DBInstanceStatus")), endpoint.get("Address"), endpoint.get("Port"), secret
        )

    def conninfo(self, target: TargetState) -> ConnInfo:
        """How to reach a ready target: its endpoint, and the master credentials RDS keeps in
        Secrets Manager (the password is registered for redaction as it is read)."""
        if target.status != READY or not target.host or not target.secret_arn:
            raise RestoreFailed(f"the restore target {target.name} is {target.status}, not ready")
        secret = fetch_secret(target.secret_arn)
        return conninfo_from_secret(
            {
                "host": target.host,
                "port": target.port or 5432,
                "username": secret.get("username") or MASTER_USER,
                "password": secret.get("password"),
                "dbname": "postgres",
            },
            what=f"the master secret of the restore target {target.name}",
        )

    # -- delete -------------------------------------------------------------------------------

    def delete(self, name: str) -> str:
        """Delete the instance (idempotent): ``deleting``, or ``gone`` when there is none."""
        instance = self._instance(name)
        if instance is None:
            return "gone"
        if tags_of(instance.get("TagList")).get(PURPOSE_TAG) != PURPOSE:
            raise RestoreFailed(f"RDS instance {name} is not a pgrunbook restore target: not deleting it")
        if instance.get("DBInstanceStatus") == "deleting":
            return "deleting"
        try:
            self._call(
                "delete_db_instance",
                f"deleting the restore target {name}",
                expect=INSTANCE_MISSING,
                DBInstanceIdentifier=name,
                SkipFinalSnapshot=True,
                DeleteAutomatedBackups=True,
            )
        except ClientError:
            return "gone"
        return "deleting"

    def sweep(
        self, now: datetime, *, keep: str | None = None, older_than: timedelta = SWEEP_AFTER
    ) -> list[str]:
        """Delete this database's restore targets that runs which died left behind: tagged as
        pgrunbook's for this database and created more than ``older_than`` ago (never ``keep``)."""
        deleted = []
        paginator = self.client.get_paginator("describe_db_instances")
        try:
            pages = list(paginator.paginate())
        except (ClientError, BotoCoreError) as exc:
            raise TransientStorageError(
                f"listing RDS instances for leftover restore targets: {one_line(str(exc))}"
            ) from None
        for page in pages:
            for instance in page.get("DBInstances", []):
                tags = tags_of(instance.get("TagList"))
                name = instance["DBInstanceIdentifier"]
                if tags.get(PURPOSE_TAG) != PURPOSE or tags.get(DATABASE_TAG) != tag_value(self.database):
                    continue
                if name == keep or instance.get("DBInstanceStatus") == "deleting":
                    continue
                try:
                    created = datetime.fromisoformat(tags.get(CREATED_TAG, ""))
                except ValueError:
                    continue  # not ours to judge
                if now - created >= older_than and self.delete(name) == "deleting":
                    deleted.append(name)
        return deleted


def problem_with(state: TargetState) -> str | None:
    """Why a target being created will not become ready, or None while it may."""
    if state.status == "gone":
        return f"the restore target {state.name} disappeared before it was ready"
    if state.status in BROKEN:
        return f"the restore target {state.name} is {state.status}"
    return None
