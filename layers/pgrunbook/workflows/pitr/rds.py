"""Point-in-time recovery on Amazon RDS for PostgreSQL and Aurora PostgreSQL.

RDS keeps the database's WAL for the backup retention period and can replay it to any
second of its restore window, but only into a **new** instance (or, for Aurora and Multi-AZ
DB clusters, a new cluster).  That suits the runbook: the damaged database stays exactly as
it was, for investigation (what went wrong, what was written after the target time), and
the recovered copy is checked before anyone uses it.  pgrunbook never modifies or deletes
the old instance; deleting it, when the investigation is over, is a person's decision.

The phases, as the workflow runs them:

* ``window()``: the restore window RDS reports.  Automated backups switched off (retention
  0) means there is no WAL to replay: :class:`~pgrunbook.domain.errors.PitrNotEnabled`.
* ``safety_point()``: a manual snapshot of the source, ``<source>-pre-pitr-<recovery id>``.
  A snapshot reflects the moment it was requested, so the workflow does not wait for it to
  become available.  Manual snapshots outlive the instance and its retention period.
* ``start()``: ``RestoreDBInstanceToPointInTime`` into ``<source>-pitr-<started at>``,
  with the source's class, network, parameter group, port, storage and protection
  settings: RDS would otherwise restore into the default security group and storage type,
  and the restored database is meant to become production after the cutover.  For Aurora,
  ``RestoreDBClusterToPointInTime`` as a ``full-copy`` (a ``copy-on-write`` clone cannot
  be restored to a past time, and a full copy does not share storage with the damaged
  cluster, which may be deleted once investigated); its writer instance, with the source
  writer's class, is created once the cluster is available (RDS refuses it before that),
  by ``status()``.  Every resource is tagged ``pgrunbook:recovery-id`` so that a retried
  start recognizes what an earlier attempt created instead of failing or making a second
  copy.
* ``status()``: RDS's status of the new instance (and cluster); terminal failures such as
  ``incompatible-restore`` or ``storage-full`` raise :class:`~pgrunbook.domain.errors.RecoveryFailed`.
* ``endpoint()``: the new endpoint, with the credentials of the source.  Roles and
  passwords come back as they were at the target time: if a password was rotated after it,
  verification fails to log in, and an operator resets it before trying again.
* ``cutover()``: only after verification, the database secret's ``host`` and ``port`` are
  pointed at the new endpoint, so everything that reads the secret moves over.  An
  application that connects through its own DNS name or an RDS Proxy must be repointed
  there as well.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

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
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.domain.errors import (
    ConfigError,
    InvalidTarget,
    PitrNotEnabled,
    ProviderError,
    ProviderThrottled,
    ProviderUnavailable,
    RecoveryFailed,
)
from pgrunbook.domain.redact import one_line
from pgrunbook.settings.model import Settings
from pgrunbook.workflows.pitr.provider import Provider, RecoveryStatus, RecoveryWindow

RECOVERY_TAG = "pgrunbook:recovery-id"
TARGET_TAG = "pgrunbook:target-time"
SOURCE_TAG = "pgrunbook:source"
PURPOSE_TAG = "pgrunbook:purpose"

INVALID_RESTORE_CODES = frozenset({"InvalidRestoreFault", "InvalidRestore"})
CLUSTER_EXISTS = ("DBClusterAlreadyExistsFault", "DBClusterAlreadyExists")
CLUSTER_MISSING = ("DBClusterNotFoundFault", "DBClusterNotFound")
SNAPSHOT_EXISTS = ("DBSnapshotAlreadyExists", "DBSnapshotAlreadyExistsFault")
CLUSTER_SNAPSHOT_EXISTS = ("DBClusterSnapshotAlreadyExistsFault", "DBClusterSnapshotAlreadyExists")

# How to describe one DB instance or DB cluster: operation, identifier parameter, result
# key, the error codes that mean "no such thing", and what a message calls it.
_DESCRIBE = {
    "instance": (
        "describe_db_instances",
        "DBInstanceIdentifier",
        "DBInstances",
        INSTANCE_MISSING,
        "RDS instance",
    ),
    "cluster": ("describe_db_clusters", "DBClusterIdentifier", "DBClusters", CLUSTER_MISSING, "DB cluster"),
}

DONE_STATUSES = frozenset({"available"})
# Statuses a restore does not come back from by itself: waiting would only burn the RTO.
FAILED_STATUSES = frozenset(
    {
        "failed",
        "incompatible-restore",
        "incompatible-parameters",
        "incompatible-network",
        "incompatible-option-group",
        "incompatible-credentials",
        "storage-full",
        "inaccessible-encryption-credentials",
        "inaccessible-encryption-credentials-recoverable",
        "insufficient-capacity",
        "restore-error",
        "cloning-failed",
        "migration-failed",
        "delete-precheck",
        "deleting",
        "stopping",
        "stopped",
    }
)

KIND_INSTANCE = "rds instance"
KIND_AURORA = "aurora cluster"
KIND_MULTI_AZ_CLUSTER = "rds multi-az cluster"


def stamp(started_at: str) -> str:
    """The recovery's start time as it appears in the new resources' names."""
    return _utc(datetime.fromisoformat(started_at)).strftime("%Y%m%d-%H%M%S")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class RdsProvider(Provider):
    """Point-in-time restore of an RDS instance or an Aurora / Multi-AZ DB cluster into a
    new one (``PGRUNBOOK_RDS_INSTANCE`` or ``PGRUNBOOK_RDS_CLUSTER``)."""

    name = "rds"

    def __init__(self, settings: Settings, **kwargs: Any):
        super().__init__(settings, **kwargs)
        if bool(settings.rds_instance) == bool(settings.rds_cluster):
            raise ConfigError(
                "the rds recovery provider needs exactly one of PGRUNBOOK_RDS_INSTANCE "
                "(an RDS instance) or PGRUNBOOK_RDS_CLUSTER (an Aurora or Multi-AZ DB cluster)"
            )
        self.instance: str | None = settings.rds_instance.lower() if settings.rds_instance else None
        self.cluster: str | None = settings.rds_cluster.lower() if settings.rds_cluster else None

    @property
    def source(self) -> str:
        return self.instance or self.cluster or ""

    @cached_property
    def client(self) -> Any:
        """The RDS client (public so that instrumentation can register botocore handlers)."""
        config = Config(region_name=self.settings.region, retries={"mode": "standard", "max_attempts": 5})
        return boto3.session.Session().client("rds", config=config)

    # -- calling RDS ---------------------------------------------------------------------

    def _call(
        self, operation: str, what: str, *, write: bool = False, expect: tuple[str, ...] = (), **params: Any
    ) -> dict[str, Any]:
        """One RDS call, its failures as named errors.  Error codes in ``expect`` are raised
        as the original ``ClientError`` for the caller to handle (not found, already exists).

        Throttling is always safe to retry: RDS refused the request.  A server error or a
        dropped connection is safe to retry for a read, but after a write nobody knows
        whether RDS acted on it, hence :class:`ProviderError` (retried starts are recognized
        by their tags)."""
        try:
            return getattr(self.client, operation)(**params)
        except ClientError as exc:
            code = error_code(exc)
            if code in expect:
                raise
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if code in THROTTLING_CODES or status == 429:
                raise ProviderThrottled(
                    f"{what}: RDS throttled the request ({code or status}); nothing was done, retry later"
                ) from None
            if code in SERVER_ERROR_CODES or status >= 500:
                if write:
                    raise ProviderError(
                        f"{what} failed with a server error, and whether RDS acted on it is unknown: {describe_error(exc)}"
                    ) from None
                raise ProviderUnavailable(f"{what} failed: {describe_error(exc)}") from None
            raise ProviderError(f"{what} failed: {describe_error(exc)}") from None
        except (NoCredentialsError, PartialCredentialsError, NoRegionError) as exc:
            raise ConfigError(f"{what}: {one_line(exc)}") from None
        except (BotoConnectionError, HTTPClientError) as exc:
            if write:
                raise ProviderError(
                    f"{what} failed, and whether RDS acted on it is unknown: {one_line(exc)}"
                ) from None
            raise ProviderUnavailable(f"{what} failed: {one_line(exc)}") from None
        except BotoCoreError as exc:
            raise ProviderError(f"{what} failed: {one_line(exc)}") from None

    def _find(self, kind: str, identifier: str) -> dict[str, Any] | None:
        """The DB instance or DB cluster (``kind``) with this identifier, or None."""
        operation, parameter, key, missing, label = _DESCRIBE[kind]
        try:
            params: dict[str, Any] = {parameter: identifier}
            found = self._call(operation, f"describing {label} {identifier}", expect=missing, **params)[key]
        except ClientError:
            return None
        return found[0] if found else None

    def _source_instance(self) -> dict[str, Any]:
        assert self.instance
        found = self._find("instance", self.instance)
        if found is None:
            raise ConfigError(
                f"RDS instance {self.instance} does not exist in {self._region_label} (PGRUNBOOK_RDS_INSTANCE)"
            )
        if found.get("DBClusterIdentifier"):
            raise ConfigError(
                f"RDS instance {self.instance} belongs to cluster {found['DBClusterIdentifier']}: "
                f"set PGRUNBOOK_RDS_CLUSTER={found['DBClusterIdentifier']} instead of PGRUNBOOK_RDS_INSTANCE"
            )
        if not found.get("BackupRetentionPeriod"):
            raise PitrNotEnabled(
                f"RDS instance {self.instance} has automated backups switched off (backup retention 0), "
                "so it cannot be restored to a point in time; set a retention period of 1 to 35 days"
            )
        return found

    def _source_cluster(self) -> dict[str, Any]:
        assert self.cluster
        found = self._find("cluster", self.cluster)
        if found is None:
            raise ConfigError(
                f"DB cluster {self.cluster} does not exist in {self._region_label} (PGRUNBOOK_RDS_CLUSTER)"
            )
        if not found.get("BackupRetentionPeriod"):
            raise PitrNotEnabled(
                f"DB cluster {self.cluster} has automated backups switched off (backup retention 0), "
                "so it cannot be restored to a point in time"
            )
        return found

    @property
    def _region_label(self) -> str:
        return f"region {self.client.meta.region_name}"

    # -- the window ------------------------------------------------------------------------

    def window(self) -> RecoveryWindow:
        if self.cluster:
            cluster = self._source_cluster()
            earliest, latest = cluster.get("EarliestRestorableTime"), cluster.get("LatestRestorableTime")
            if not earliest or not latest:
                raise InvalidTarget(f"DB cluster {self.cluster} has no restorable backup yet")
            return RecoveryWindow(
                _utc(earliest),
                _utc(latest),
                note=f"RDS replays the WAL of cluster {self.cluster} to the exact second, into a new cluster; "
                "the latest restorable time trails the present by about five minutes",
            )
        source = self._source_instance()
        earliest, latest = self._instance_window(source)
        return RecoveryWindow(
            earliest,
            latest,
            note=f"RDS replays the WAL of instance {self.instance} to the exact second, into a new instance; "
            "the latest restorable time trails the present by about five minutes",
        )

    def _instance_window(self, source: dict[str, Any]) -> tuple[datetime, datetime]:
        """The automated backups' restore window.  Backups a deleted namesake left behind
        (status ``retained``, another resource id) do not count."""
        assert self.instance
        backups = self._call(
            "describe_db_instance_automated_backups",
            f"reading the automated backups of RDS instance {self.instance}",
            DBInstanceIdentifier=self.instance,
        ).get("DBInstanceAutomatedBackups", [])
        resource_id = source.get("DbiResourceId")
        ours = [
            b
            for b in backups
            if (b.get("DbiResourceId") == resource_id if b.get("DbiResourceId") and resource_id else True)
            and b.get("Status", "active") != "retained"
        ]
        windows = [b["RestoreWindow"] for b in ours if b.get("RestoreWindow")]
        earliest_times = [w["EarliestTime"] for w in windows if w.get("EarliestTime")]
        latest_times = [w["LatestTime"] for w in windows if w.get("LatestTime")]
        if not earliest_times:
            # No RestoreWindow reported: the oldest automated snapshot is where replay can begin.
            snapshots = self._call(
                "describe_db_snapshots",
                f"listing the automated snapshots of RDS instance {self.instance}",
                DBInstanceIdentifier=self.instance,
                SnapshotType="automated",
            ).get("DBSnapshots", [])
            earliest_times = [
                s["SnapshotCreateTime"]
                for s in snapshots
                if s.get("SnapshotCreateTime") and (s.get("DbiResourceId") in (None, resource_id))
            ]
        if not latest_times and source.get("LatestRestorableTime"):
            latest_times = [source["LatestRestorableTime"]]
        if not earliest_times or not latest_times:
            raise InvalidTarget(
                f"RDS instance {self.instance} has no restorable automated backup yet "
                "(the first one is taken shortly after backups are switched on)"
            )
        return _utc(min(earliest_times)), _utc(max(latest_times))

    # -- the safety point ------------------------------------------------------------------

    def safety_point(self, state: dict[str, Any]) -> dict[str, Any]:
        recovery_id = str(state["recovery_id"])
        snapshot = rds_identifier(self.source, f"pre-pitr-{recovery_id}")
        tags = [
            {"Key": RECOVERY_TAG, "Value": tag_value(recovery_id)},
            {"Key": PURPOSE_TAG, "Value": "safety point before a point-in-time recovery"},
        ]
        if self.cluster:
            kind, noun, source_key = "db cluster snapshot", "DBClusterSnapshot", "DBClusterIdentifier"
            create, describe = "create_db_cluster_snapshot", "describe_db_cluster_snapshots"
            exists = CLUSTER_SNAPSHOT_EXISTS
        else:
            kind, noun, source_key = "db snapshot", "DBSnapshot", "DBInstanceIdentifier"
            create, describe = "create_db_snapshot", "describe_db_snapshots"
            exists = SNAPSHOT_EXISTS
        what = f"{kind.replace('db', 'DB', 1)} {snapshot} of {self.source}"
        adopted = False
        try:
            made = self._call(
                create,
                f"creating {what}",
                write=True,
                expect=exists,
                **{source_key: self.source, f"{noun}Identifier": snapshot},
                Tags=tags,
            )[noun]
        except ClientError:  # an earlier attempt made it: take it if it is of this source
            which: dict[str, Any] = {f"{noun}Identifier": snapshot}
            made = self._call(describe, f"describing {what}", **which)[f"{noun}s"][0]
            adopted = True
        source_of_snapshot = made.get(source_key)
        if adopted and str(source_of_snapshot or "").lower() != self.source:
            raise ProviderError(
                f"snapshot {snapshot} already exists but is of {source_of_snapshot}, not {self.source}"
            )
        created = made.get("SnapshotCreateTime")
        return {
            "kind": "rds snapshot",
            "snapshot": snapshot,
            "snapshot_type": kind,
            "source": self.source,
            "arn": made.get("DBClusterSnapshotArn") or made.get("DBSnapshotArn"),
            "status": made.get("Status"),
            "requested_at": self.clock().isoformat(),
            "snapshot_time": _utc(created).isoformat() if created else None,
            "already_existed": adopted,
            "note": "a manual snapshot of the database as it was before the recovery; "
            "it is kept until someone deletes it",
            "summary": f"RDS {kind} {snapshot} of {self.source} ({made.get('Status') or 'status unknown'}): "
            "the database as it was before the recovery, kept until someone deletes it",
        }

    # -- starting the restore ----------------------------------------------------------------

    def target_identifiers(self, state: dict[str, Any]) -> dict[str, str]:
        """The names of what the recovery creates: ``<source>-pitr-<started at>``."""
        when = stamp(state["started_at"])
        names = {"target": rds_identifier(self.source, f"pitr-{when}")}
        if self.cluster:
            names["instance"] = rds_identifier(self.source, f"pitr-{when}-1")
        return names

    def _recovery_tags(
        self, state: dict[str, Any], target: datetime, inherited: list[dict[str, str]] | None
    ) -> list:
        """The source's own tags (cost allocation, ownership, backup plans: the recovered
        database is meant to become production), plus pgrunbook's."""
        tags = {k: v for k, v in tags_of(inherited).items() if not k.startswith(("aws:", "pgrunbook:"))}
        tags[RECOVERY_TAG] = tag_value(state["recovery_id"])
        tags[TARGET_TAG] = tag_value(target.isoformat())
        tags[SOURCE_TAG] = tag_value(self.source)
        return [{"Key": k, "Value": v} for k, v in list(tags.items())[-50:]]

    def _ours(self, resource: dict[str, Any], state: dict[str, Any]) -> bool:
        return tags_of(resource.get("TagList")).get(RECOVERY_TAG) == tag_value(state["recovery_id"])

    def start(self, state: dict[str, Any]) -> dict[str, Any]:
        target = _utc(datetime.fromisoformat(state["target_time"]))
        if self.cluster:
            return self._start_cluster(state, target)
        return self._start_instance(state, target)

    def _start_instance(self, state: dict[str, Any], target: datetime) -> dict[str, Any]:
        source = self._source_instance()
        new = self.target_identifiers(state)["target"]
        record = {
            "kind": KIND_INSTANCE,
            "source": self.instance,
            "instance": new,
            "restore_time": target.isoformat(),
            "requested_at": self.clock().isoformat(),
        }
        params = self._instance_restore_params(source)
        return self._restore_once(
            state,
            record,
            params,
            what=f"RDS instance {new}",
            find=lambda: self._find("instance", new),
            operation="restore_db_instance_to_point_in_time",
            exists=INSTANCE_EXISTS,
            SourceDBInstanceIdentifier=self.instance,
            TargetDBInstanceIdentifier=new,
            RestoreTime=target,
            Tags=self._recovery_tags(state, target, source.get("TagList")),
        )

    def _restore_once(
        self,
        state: dict[str, Any],
        record: dict[str, Any],
        params: dict[str, Any],
        *,
        what: str,
        find: Any,
        operation: str,
        exists: tuple[str, ...],
        **request: Any,
    ) -> dict[str, Any]:
        """Ask RDS for the restore, unless an earlier attempt of this recovery already did
        (found by name and adopted by tag): ``start`` may be retried after a throttled or
        lost request, and must never restore twice.  A restore time RDS refuses is an
        :class:`InvalidTarget`."""
        existing = find()
        if existing is not None:
            return self._adopt(existing, state, record, what)
        source = record["source"]
        try:
            self._call(
                operation,
                f"restoring {source} to {record['restore_time']} as {what}",
                write=True,
                expect=exists + tuple(INVALID_RESTORE_CODES),
                **request,
                **params,
            )
        except ClientError as exc:
            if error_code(exc) in INVALID_RESTORE_CODES:
                raise InvalidTarget(
                    f"RDS refused to restore {source} to {record['restore_time']}: {describe_error(exc)}"
                ) from None
            existing = find()
            if existing is None:
                raise ProviderError(f"restoring {source} as {what} failed: {describe_error(exc)}") from None
            return self._adopt(existing, state, record, what)
        record["settings"] = params
        record["already_started"] = False
        return record

    def _adopt(
        self, existing: dict[str, Any], state: dict[str, Any], record: dict[str, Any], what: str
    ) -> dict[str, Any]:
        """A retried start: what an earlier attempt of this recovery created counts as started;
        anything else with that name is someone else's and is left alone."""
        if not self._ours(existing, state):
            raise ProviderError(
                f"{what} already exists and was not created by recovery {state['recovery_id']}: nothing was restored"
            )
        recorded = tags_of(existing.get("TagList")).get(TARGET_TAG)
        if recorded and recorded != tag_value(record["restore_time"]):
            raise ProviderError(
                f"{what} of recovery {state['recovery_id']} was restored to {recorded}, not {record['restore_time']}"
            )
        record["already_started"] = True
        return record

    @staticmethod
    def _shared_restore_params(source: dict[str, Any]) -> dict[str, Any]:
        """What instances and clusters carry over alike: tags to snapshots, deletion
        protection, IAM authentication, security groups, backup retention, log exports."""
        params: dict[str, Any] = {
            "CopyTagsToSnapshot": bool(source.get("CopyTagsToSnapshot")),
            "DeletionProtection": bool(source.get("DeletionProtection")),
            "EnableIAMDatabaseAuthentication": bool(source.get("IAMDatabaseAuthenticationEnabled")),
        }
        security_groups = [
            g["VpcSecurityGroupId"]
            for g in source.get("VpcSecurityGroups") or []
            if g.get("VpcSecurityGroupId")
        ]
        if security_groups:
            params["VpcSecurityGroupIds"] = security_groups
        if source.get("BackupRetentionPeriod"):
            params["BackupRetentionPeriod"] = int(source["BackupRetentionPeriod"])
        if source.get("EnabledCloudwatchLogsExports"):
            params["EnableCloudwatchLogsExports"] = list(source["EnabledCloudwatchLogsExports"])
        return params

    @classmethod
    def _instance_restore_params(cls, source: dict[str, Any]) -> dict[str, Any]:
        """The source's settings a point-in-time restore would not carry over by itself."""
        params = cls._shared_restore_params(source)
        params.update(
            DBInstanceClass=source["DBInstanceClass"],
            MultiAZ=bool(source.get("MultiAZ")),
            PubliclyAccessible=bool(source.get("PubliclyAccessible")),
            AutoMinorVersionUpgrade=bool(source.get("AutoMinorVersionUpgrade", True)),
        )
        subnet_group = (source.get("DBSubnetGroup") or {}).get("DBSubnetGroupName")
        if subnet_group:
            params["DBSubnetGroupName"] = subnet_group
        parameter_groups = [g["DBParameterGroupName"] for g in source.get("DBParameterGroups") or []]
        if parameter_groups:
            params["DBParameterGroupName"] = parameter_groups[0]
        option_groups = [g["OptionGroupName"] for g in source.get("OptionGroupMemberships") or []]
        if option_groups and not option_groups[0].startswith("default:"):
            params["OptionGroupName"] = option_groups[0]
        port = (source.get("Endpoint") or {}).get("Port") or source.get("DbInstancePort")
        if port:
            params["Port"] = int(port)
        storage = source.get("StorageType")
        if storage:
            params["StorageType"] = storage
            # Provisioned IOPS: required for io1/io2, settable for gp3 only from 400 GiB.
            big_gp3 = storage == "gp3" and int(source.get("AllocatedStorage") or 0) >= 400
            if source.get("Iops") and (storage in ("io1", "io2") or big_gp3):
                params["Iops"] = int(source["Iops"])
            if source.get("StorageThroughput") and big_gp3:
                params["StorageThroughput"] = int(source["StorageThroughput"])
        if source.get("MaxAllocatedStorage"):
            params["MaxAllocatedStorage"] = int(source["MaxAllocatedStorage"])
        if source.get("CACertificateIdentifier"):
            params["CACertificateIdentifier"] = source["CACertificateIdentifier"]
        return params

    def _start_cluster(self, state: dict[str, Any], target: datetime) -> dict[str, Any]:
        source = self._source_cluster()
        names = self.target_identifiers(state)
        new = names["target"]
        aurora = str(source.get("Engine", "")).startswith("aurora")
        record: dict[str, Any] = {
            "kind": KIND_AURORA if aurora else KIND_MULTI_AZ_CLUSTER,
            "source": self.cluster,
            "cluster": new,
            "engine": source.get("Engine"),
            "restore_time": target.isoformat(),
            "requested_at": self.clock().isoformat(),
        }
        if aurora:
            # Created by status() once the cluster is available; recorded now so that a
            # change to the source's writer during the restore does not change the plan.
            record["instance"] = names["instance"]
            record["instance_settings"] = self._writer_settings(source)
            record["instance_created"] = False
        return self._restore_once(
            state,
            record,
            self._cluster_restore_params(source, aurora),
            what=f"DB cluster {new}",
            find=lambda: self._find("cluster", new),
            operation="restore_db_cluster_to_point_in_time",
            exists=CLUSTER_EXISTS,
            SourceDBClusterIdentifier=self.cluster,
            DBClusterIdentifier=new,
            RestoreToTime=target,
            # A full copy: a copy-on-write clone cannot be restored to a past time, and it
            # would share storage with the damaged cluster.
            RestoreType="full-copy",
            Tags=self._recovery_tags(state, target, source.get("TagList")),
        )

    def _writer_settings(self, cluster: dict[str, Any]) -> dict[str, Any]:
        """The source writer's class and instance-level settings, for the new writer."""
        members = cluster.get("DBClusterMembers") or []
        writer = next((m for m in members if m.get("IsClusterWriter")), members[0] if members else None)
        if writer is None:
            raise ConfigError(f"DB cluster {self.cluster} has no instance to copy the instance class from")
        found = self._find("instance", writer["DBInstanceIdentifier"])
        if found is None:
            raise ProviderError(
                f"the writer {writer['DBInstanceIdentifier']} of {self.cluster} vanished while it was read"
            )
        settings: dict[str, Any] = {
            "DBInstanceClass": found["DBInstanceClass"],
            "PubliclyAccessible": bool(found.get("PubliclyAccessible")),
            "AutoMinorVersionUpgrade": bool(found.get("AutoMinorVersionUpgrade", True)),
        }
        parameter_groups = [g["DBParameterGroupName"] for g in found.get("DBParameterGroups") or []]
        if parameter_groups:
            settings["DBParameterGroupName"] = parameter_groups[0]
        if found.get("CACertificateIdentifier"):
            settings["CACertificateIdentifier"] = found["CACertificateIdentifier"]
        if found.get("MonitoringInterval") and found.get("MonitoringRoleArn"):
            settings["MonitoringInterval"] = int(found["MonitoringInterval"])
            settings["MonitoringRoleArn"] = found["MonitoringRoleArn"]
        if found.get("PerformanceInsightsEnabled"):
            settings["EnablePerformanceInsights"] = True
        return settings

    @classmethod
    def _cluster_restore_params(cls, source: dict[str, Any], aurora: bool) -> dict[str, Any]:
        params = cls._shared_restore_params(source)
        if source.get("DBSubnetGroup"):
            params["DBSubnetGroupName"] = source["DBSubnetGroup"]
        if source.get("DBClusterParameterGroup"):
            params["DBClusterParameterGroupName"] = source["DBClusterParameterGroup"]
        if source.get("Port"):
            params["Port"] = int(source["Port"])
        if source.get("StorageType"):
            params["StorageType"] = source["StorageType"]
        scaling = source.get("ServerlessV2ScalingConfiguration")
        if scaling:  # needed by db.serverless writers
            params["ServerlessV2ScalingConfiguration"] = dict(scaling)
        if not aurora:  # a Multi-AZ DB cluster: RDS creates its three instances itself
            if source.get("DBClusterInstanceClass"):
                params["DBClusterInstanceClass"] = source["DBClusterInstanceClass"]
            if source.get("Iops"):
                params["Iops"] = int(source["Iops"])
            params["PubliclyAccessible"] = bool(source.get("PubliclyAccessible"))
        return params

    # -- progress ----------------------------------------------------------------------------

    def status(self, state: dict[str, Any]) -> RecoveryStatus:
        recovery = state["recovery"]
        recovery["polls"] = int(recovery.get("polls", 0)) + 1
        recovery["last_polled_at"] = self.clock().isoformat()
        if recovery["kind"] == KIND_INSTANCE:
            instance = self._recovered_instance(recovery["instance"])
            status = instance.get("DBInstanceStatus", "unknown")
            recovery["last_status"] = status
            self._fail_if_terminal(f"RDS instance {recovery['instance']}", status)
            return RecoveryStatus(
                done=status in DONE_STATUSES,
                failed=False,
                status=status,
                detail=f"RDS instance {recovery['instance']}",
            )
        cluster = self._find("cluster", recovery["cluster"])
        if cluster is None:
            raise RecoveryFailed(f"the recovered DB cluster {recovery['cluster']} no longer exists")
        cluster_status = cluster.get("Status", "unknown")
        self._fail_if_terminal(f"DB cluster {recovery['cluster']}", cluster_status)
        if recovery["kind"] != KIND_AURORA:
            recovery["last_status"] = cluster_status
            return RecoveryStatus(
                done=cluster_status in DONE_STATUSES,
                failed=False,
                status=cluster_status,
                detail=f"DB cluster {recovery['cluster']}",
            )
        instance_status = "not created yet"
        if cluster_status in DONE_STATUSES or recovery.get("instance_created"):
            instance = self._ensure_writer(state)
            instance_status = instance.get("DBInstanceStatus", "unknown")
            self._fail_if_terminal(f"RDS instance {recovery['instance']}", instance_status)
        status = f"cluster {cluster_status}, instance {instance_status}"
        recovery["last_status"] = status
        return RecoveryStatus(
            done=cluster_status in DONE_STATUSES and instance_status in DONE_STATUSES,
            failed=False,
            status=status,
            detail=f"DB cluster {recovery['cluster']} with writer {recovery['instance']}",
        )

    @staticmethod
    def _fail_if_terminal(what: str, status: str) -> None:
        if status in FAILED_STATUSES:
            raise RecoveryFailed(f"the point-in-time restore failed: {what} is {status}")

    def _recovered_instance(self, identifier: str) -> dict[str, Any]:
        found = self._find("instance", identifier)
        if found is None:
            raise RecoveryFailed(f"the recovered RDS instance {identifier} no longer exists")
        return found

    def _ensure_writer(self, state: dict[str, Any]) -> dict[str, Any]:
        """The new cluster's writer, created on the first poll that finds the cluster
        available (RDS accepts it no earlier); a retried poll finds it by its tag."""
        recovery = state["recovery"]
        identifier = recovery["instance"]
        existing = self._find("instance", identifier)
        if existing is not None:
            if not self._ours(existing, state):
                raise RecoveryFailed(
                    f"RDS instance {identifier} exists and was not created by recovery {state['recovery_id']}"
                )
            recovery["instance_created"] = True
            return existing
        if recovery.get("instance_created"):
            raise RecoveryFailed(f"the recovered writer instance {identifier} no longer exists")
        tags = [
            {"Key": RECOVERY_TAG, "Value": tag_value(state["recovery_id"])},
            {"Key": SOURCE_TAG, "Value": tag_value(self.source)},
        ]
        try:
            made = self._call(
                "create_db_instance",
                f"creating writer {identifier} in DB cluster {recovery['cluster']}",
                write=True,
                expect=INSTANCE_EXISTS,
                DBInstanceIdentifier=identifier,
                DBClusterIdentifier=recovery["cluster"],
                Engine=recovery["engine"],
                Tags=tags,
                **recovery["instance_settings"],
            )["DBInstance"]
        except ClientError:
            # Created meanwhile (a concurrent or retried poll): it must be ours.
            existing = self._find("instance", identifier)
            if existing is None or not self._ours(existing, state):
                raise ProviderError(
                    f"RDS instance {identifier} exists and was not created by this recovery"
                ) from None
            recovery["instance_created"] = True
            return existing
        recovery["instance_created"] = True
        recovery["instance_requested_at"] = self.clock().isoformat()
        return made

    # -- the recovered database ------------------------------------------------------------

    def _address(self, recovery: dict[str, Any]) -> tuple[str, int]:
        if recovery["kind"] == KIND_INSTANCE:
            found = self._recovered_instance(recovery["instance"])
            endpoint = found.get("Endpoint") or {}
            host, port = endpoint.get("Address"), endpoint.get("Port")
            what = f"RDS instance {recovery['instance']}"
        else:
            cluster = self._find("cluster", recovery["cluster"])
            if cluster is None:
                raise RecoveryFailed(f"the recovered DB cluster {recovery['cluster']} no longer exists")
            host, port = cluster.get("Endpoint"), cluster.get("Port")
            what = f"DB cluster {recovery['cluster']}"
        if not host or not port:
            raise ProviderError(
                f"{what} has no endpoint yet (status {found.get('DBInstanceStatus') or found.get('Status')})"
            )
        return str(host), int(port)

    def endpoint(self, state: dict[str, Any]) -> ConnInfo:
        """The recovered database, with the source's user, password, database and TLS mode."""
        host, port = self._address(state["recovery"])
        return replace(self.settings.conninfo(), host=host, port=port)

    def cutover(self, state: dict[str, Any]) -> dict[str, Any]:
        recovery = state["recovery"]
        host, port = self._address(recovery)
        new = recovery.get("cluster") or recovery["instance"]
        what = "DB cluster" if recovery.get("cluster") else "RDS instance"
        kept = (
            f"the old {what} {self.source} is left untouched, for investigation: delete it "
            "(deletion protection permitting) when the investigation is over"
        )
        arn = self.settings.database_secret_arn
        if not arn:
            return {
                "endpoint": f"{host}:{port}",
                "new": new,
                "kept": self.source,
                "note": f"point the application at {host}:{port} ({what} {new}); {kept}",
            }
        from pgrunbook.adapters.aws.secrets import fetch_secret, update_secret

        before = fetch_secret(arn)
        changes: dict[str, Any] = {"host": host, "port": port}
        # RDS-shaped secrets may name the resource; keep that coherent with host and port.
        if "dbInstanceIdentifier" in before and recovery["kind"] == KIND_INSTANCE:
            changes["dbInstanceIdentifier"] = recovery["instance"]
        if "dbClusterIdentifier" in before and recovery.get("cluster"):
            changes["dbClusterIdentifier"] = recovery["cluster"]
        update_secret(arn, changes)
        return {
            "secret": arn,
            "changed": {key: {"from": before.get(key), "to": value} for key, value in changes.items()},
            "endpoint": f"{host}:{port}",
            "new": new,
            "kept": self.source,
            "note": f"the database secret now points at {what} {new}; {kept}",
        }
