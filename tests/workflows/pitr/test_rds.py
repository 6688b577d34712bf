"""The RDS point-in-time-recovery provider against moto's RDS and Secrets Manager.

moto keeps the instances, clusters, snapshots, tags and secrets the provider creates, so the
tests assert what AWS ends up with (``describe_db_instances``, ``list_tags_for_resource``,
the secret's value) and, through a botocore handler on the provider's client, the parameters
RDS receives.  Answers moto never gives (throttling, 5xx, a refused restore, a dropped
connection) are stubbed at the botocore level; pgrunbook's own code is never mocked.

What moto 5 does not do, and how the tests get around it:

* ``DescribeDBInstanceAutomatedBackups`` reports neither ``RestoreWindow`` nor
  ``DbiResourceId`` (only the identifier and active/retained), so against moto the
  instance window comes from the provider's fallback: the oldest automated snapshot and the
  instance's ``LatestRestorableTime``.  The ``RestoreWindow`` path, and backups left behind
  by a deleted namesake, are tested with botocore's Stubber.
* moto creates everything ``available`` at once and does not check the restore time: the
  statuses in between and the terminal ones are set on moto's backend objects, and RDS
  refusing a restore time (``InvalidRestoreFault``) is stubbed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.rds.models import rds_backends

from pgrunbook.adapters.aws.rds import MAX_IDENTIFIER, rds_identifier
from pgrunbook.domain.errors import (
    ConfigError,
    InvalidTarget,
    PitrNotEnabled,
    ProviderError,
    ProviderThrottled,
    ProviderUnavailable,
    RecoveryFailed,
)
from pgrunbook.settings.model import Settings
from pgrunbook.workflows.pitr.providers import get_provider
from pgrunbook.workflows.pitr.rds import (
    KIND_AURORA,
    KIND_INSTANCE,
    KIND_MULTI_AZ_CLUSTER,
    PURPOSE_TAG,
    RECOVERY_TAG,
    SOURCE_TAG,
    TARGET_TAG,
    RdsProvider,
)
from tests import aws_model

REGION = "us-east-1"
SOURCE = "app-db"
CLUSTER = "app-cluster"
PASSWORD = "s3cret-Pass-42"
DATABASE_URL = f"postgresql://app:{PASSWORD}@app-db.example.com:5433/app?sslmode=verify-full"
NOW = datetime(2025, 3, 7, 0, 5, tzinfo=UTC)
STARTED_AT = "2025-03-07T00:01:00+00:00"
TARGET = "2025-03-06T12:00:00+00:00"
TARGET_TIME = datetime(2025, 3, 6, 12, tzinfo=UTC)
NEW_INSTANCE = "app-db-pitr-20250307-000100"
NEW_CLUSTER = "app-cluster-pitr-20250307-000100"
NEW_WRITER = "app-cluster-pitr-20250307-000100-1"
IDENTIFIER = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


# The tests' own clients come from one session, which reads botocore's service models once
# (moto intercepts the clients of any session).  The provider makes its own client.
AWS = boto3.session.Session()


class Clock:
    def __init__(self, now: datetime = NOW):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rds(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's RDS (and everything else in AWS), empty for every test."""
    # RDS puts instances in the default VPC's security group: moto then builds an EC2 backend,
    # and without this loads thousands of AMIs for it, in every test (0.3 s each).
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    with mock_aws():
        yield AWS.client("rds", region_name=REGION)


def moto_rds() -> Any:
    """moto's RDS backend, to set what the API cannot (an instance's status)."""
    return rds_backends[DEFAULT_ACCOUNT_ID][REGION]


def settings_for(**extra: str) -> Settings:
    env = {
        "PGRUNBOOK_DATABASE_URL": DATABASE_URL,
        "PGRUNBOOK_PITR_PROVIDER": "rds",
        "PGRUNBOOK_REGION": REGION,
        **extra,
    }
    return Settings.load(env=env)


# Every request any provider in this module sends, checked against the service model (see
# tests/aws_model.py): the operations checked, and what was wrong.
CHECKED: set[str] = set()
# The last test checks what the others sent: the whole module must run in one xdist worker,
# in file order (`make test` uses --dist loadfile).
WRONG: list[str] = []


def check_against_the_model(params: dict[str, Any], model: Any, **_: Any) -> None:
    CHECKED.add(model.name)
    WRONG.extend(aws_model.problems("rds", model.name, params))


@pytest.fixture(autouse=True)
def requests_match_the_service_model():
    WRONG.clear()
    yield
    assert WRONG == [], "requests AWS would refuse"


def provider_for(clock: Clock, **extra: str) -> RdsProvider:
    made = get_provider("rds", settings_for(**extra), clock=clock)
    assert isinstance(made, RdsProvider)
    made.client.meta.events.register("before-parameter-build.rds", check_against_the_model)
    return made


def create_instance(rds: Any, name: str = SOURCE, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "DBInstanceIdentifier": name,
        "Engine": "postgres",
        "DBInstanceClass": "db.m6g.large",
        "MasterUsername": "app",
        "MasterUserPassword": PASSWORD,
        "AllocatedStorage": 100,
        "StorageType": "gp3",
        "BackupRetentionPeriod": 7,
        "Tags": [{"Key": "team", "Value": "payments"}],
        **extra,
    }
    return rds.create_db_instance(**params)["DBInstance"]


def create_cluster(
    rds: Any, name: str = CLUSTER, *, writer: str | None = "db.r6g.large", **extra: Any
) -> None:
    rds.create_db_cluster(
        DBClusterIdentifier=name,
        Engine="aurora-postgresql",
        MasterUsername="app",
        MasterUserPassword=PASSWORD,
        BackupRetentionPeriod=extra.pop("BackupRetentionPeriod", 7),
        Tags=[{"Key": "team", "Value": "payments"}],
        **extra,
    )
    if writer:
        rds.create_db_instance(
            DBInstanceIdentifier=f"{name}-1",
            DBClusterIdentifier=name,
            Engine="aurora-postgresql",
            DBInstanceClass=writer,
        )


@pytest.fixture
def provider(rds, clock) -> RdsProvider:
    create_instance(rds)
    return provider_for(clock, PGRUNBOOK_RDS_INSTANCE=SOURCE)


@pytest.fixture
def aurora(rds, clock) -> RdsProvider:
    create_cluster(rds)
    return provider_for(clock, PGRUNBOOK_RDS_CLUSTER=CLUSTER)


def a_state(**extra: Any) -> dict[str, Any]:
    return {"recovery_id": "r42", "started_at": STARTED_AT, "target_time": TARGET, **extra}


def record_requests(provider: RdsProvider) -> list[tuple[str, dict[str, Any]]]:
    """Every request the provider's client sends from now on: (operation, parameters)."""
    sent: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        sent.append((model.name, dict(params)))

    provider.client.meta.events.register("before-parameter-build.rds", record)
    return sent


def of(sent: list[tuple[str, dict[str, Any]]], operation: str) -> list[dict[str, Any]]:
    return [params for name, params in sent if name == operation]


def aws_answers(
    provider: RdsProvider,
    operation: str,
    code: str,
    status: int = 400,
    *,
    when: Callable[[dict[str, Any]], bool] = lambda params: True,
) -> None:
    """The next call of ``operation`` (whose parameters satisfy ``when``) gets an error from
    "RDS" instead of reaching moto: what botocore's Stubber does, for one call amid moto's."""
    left = [1]

    def answer(params: dict[str, Any], **_: Any) -> Any:
        # ``params`` is the serialized request: for RDS (a query API), ``body`` holds the
        # request parameters.
        if left[0] <= 0 or not when(params.get("body") or {}):
            return None
        left[0] -= 1
        return AWSResponse("https://rds.amazonaws.com/", status, HTTPHeaders(), None), {
            "Error": {"Code": code, "Message": f"stubbed {code}"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    provider.client.meta.events.register(f"before-call.rds.{operation}", answer)


def tags_of(rds: Any, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=arn)["TagList"]}


def describe(rds: Any, instance: str) -> dict[str, Any]:
    return rds.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"][0]


def is_utc(moment: datetime) -> bool:
    return moment.tzinfo is UTC


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [{}, {"PGRUNBOOK_RDS_INSTANCE": SOURCE, "PGRUNBOOK_RDS_CLUSTER": CLUSTER}],
    ids=["neither", "both"],
)
def test_exactly_one_of_instance_or_cluster(clock, extra):
    with pytest.raises(ConfigError, match="exactly one of PGRUNBOOK_RDS_INSTANCE"):
        provider_for(clock, **extra)


def test_identifiers_are_used_lower_case(rds, clock):
    create_instance(rds)
    made = provider_for(clock, PGRUNBOOK_RDS_INSTANCE="App-DB")
    assert made.source == SOURCE
    assert made.window().earliest <= made.window().latest


# -- the window ------------------------------------------------------------------------------


def test_window_of_an_instance_with_automated_backups(provider, rds):
    before = datetime.now(UTC)
    window = provider.window()
    assert is_utc(window.earliest) and is_utc(window.latest)
    assert window.earliest <= window.latest
    # moto has no RestoreWindow: replay begins at the oldest automated snapshot (taken when
    # moto created the instance) and ends at the instance's LatestRestorableTime (now).
    [automated] = rds.describe_db_snapshots(DBInstanceIdentifier=SOURCE, SnapshotType="automated")[
        "DBSnapshots"
    ]
    assert window.earliest == automated["SnapshotCreateTime"]
    assert before - timedelta(minutes=1) <= window.latest <= datetime.now(UTC) + timedelta(minutes=1)
    assert f"instance {SOURCE}" in window.note and "new instance" in window.note
    json.dumps(window.to_dict())


def test_window_is_the_restore_window_of_the_instance_own_backups(rds, clock):
    """What real RDS reports: RestoreWindow per automated backup.  A namesake deleted earlier
    leaves its backups behind (retained, another DbiResourceId); they do not count."""
    provider = provider_for(clock, PGRUNBOOK_RDS_INSTANCE=SOURCE)
    plus2 = timezone(timedelta(hours=2))
    earliest = datetime(2025, 2, 28, 3, 0, tzinfo=UTC)
    latest = datetime(2025, 3, 6, 23, 55, tzinfo=UTC)
    with Stubber(provider.client) as stub:
        stub.add_response(
            "describe_db_instances",
            {
                "DBInstances": [
                    {
                        "DBInstanceIdentifier": SOURCE,
                        "DBInstanceClass": "db.m6g.large",
                        "DBInstanceStatus": "available",
                        "BackupRetentionPeriod": 7,
                        "DbiResourceId": "db-NEW",
                        "LatestRestorableTime": latest - timedelta(minutes=3),
                    }
                ]
            },
            {"DBInstanceIdentifier": SOURCE},
        )
        stub.add_response(
            "describe_db_instance_automated_backups",
            {
                "DBInstanceAutomatedBackups": [
                    {
                        "DBInstanceIdentifier": SOURCE,
                        "DbiResourceId": "db-OLD",
                        "Status": "retained",
                        "RestoreWindow": {
                            "EarliestTime": datetime(2025, 1, 1, tzinfo=UTC),
                            "LatestTime": datetime(2025, 3, 7, tzinfo=UTC),
                        },
                    },
                    {
                        "DBInstanceIdentifier": SOURCE,
                        "DbiResourceId": "db-NEW",
                        "Status": "active",
                        "RestoreWindow": {
                            "EarliestTime": earliest.astimezone(plus2),
                            "LatestTime": latest,
                        },
                    },
                ]
            },
            {"DBInstanceIdentifier": SOURCE},
        )
        window = provider.window()
        stub.assert_no_pending_responses()
    assert (window.earliest, window.latest) == (earliest, latest)
    assert is_utc(window.earliest) and is_utc(window.latest)


def test_backup_retention_zero_is_pitr_not_enabled(rds, clock):
    create_instance(rds, BackupRetentionPeriod=0)
    with pytest.raises(PitrNotEnabled) as caught:
        provider_for(clock, PGRUNBOOK_RDS_INSTANCE=SOURCE).window()
    assert f"RDS instance {SOURCE} has automated backups switched off" in str(caught.value)
    assert "retention period of 1 to 35 days" in str(caught.value)


def test_an_instance_that_does_not_exist_is_a_configuration_error(rds, clock):
    create_instance(rds, "some-other-db")
    with pytest.raises(ConfigError) as caught:
        provider_for(clock, PGRUNBOOK_RDS_INSTANCE=SOURCE).window()
    assert type(caught.value) is ConfigError
    assert str(caught.value) == (
        f"RDS instance {SOURCE} does not exist in region {REGION} (PGRUNBOOK_RDS_INSTANCE)"
    )


def test_an_instance_of_a_cluster_names_the_cluster(rds, clock):
    create_cluster(rds)
    with pytest.raises(ConfigError) as caught:
        provider_for(clock, PGRUNBOOK_RDS_INSTANCE=f"{CLUSTER}-1").window()
    assert type(caught.value) is ConfigError
    assert f"belongs to cluster {CLUSTER}" in str(caught.value)
    assert f"set PGRUNBOOK_RDS_CLUSTER={CLUSTER}" in str(caught.value)


def test_window_of_a_cluster(aurora, rds):
    window = aurora.window()
    [cluster] = rds.describe_db_clusters(DBClusterIdentifier=CLUSTER)["DBClusters"]
    assert window.earliest == cluster["EarliestRestorableTime"]  # moto answers in local time
    assert is_utc(window.earliest) and is_utc(window.latest)
    assert window.earliest <= window.latest
    assert f"cluster {CLUSTER}" in window.note and "new cluster" in window.note


def test_cluster_problems(rds, clock):
    create_cluster(rds, BackupRetentionPeriod=0)
    with pytest.raises(PitrNotEnabled, match=f"DB cluster {CLUSTER} has automated backups switched off"):
        provider_for(clock, PGRUNBOOK_RDS_CLUSTER=CLUSTER).window()
    with pytest.raises(ConfigError) as caught:
        provider_for(clock, PGRUNBOOK_RDS_CLUSTER="no-such-cluster").window()
    assert type(caught.value) is ConfigError
    assert "DB cluster no-such-cluster does not exist in region us-east-1" in str(caught.value)


# -- the safety point ------------------------------------------------------------------------


def test_safety_point_is_a_tagged_manual_snapshot(provider, rds):
    point = provider.safety_point(a_state())
    [snapshot] = rds.describe_db_snapshots(DBInstanceIdentifier=SOURCE, SnapshotType="manual")["DBSnapshots"]
    assert snapshot["DBSnapshotIdentifier"] == "app-db-pre-pitr-r42"
    tags = tags_of(rds, snapshot["DBSnapshotArn"])
    assert tags[RECOVERY_TAG] == "r42" and "point-in-time recovery" in tags[PURPOSE_TAG]

    assert point["kind"] == "rds snapshot" and point["snapshot_type"] == "db snapshot"
    assert point["snapshot"] == "app-db-pre-pitr-r42" and point["source"] == SOURCE
    assert point["arn"] == snapshot["DBSnapshotArn"]
    assert point["already_existed"] is False
    assert point["requested_at"] == NOW.isoformat()
    assert datetime.fromisoformat(point["snapshot_time"]) == snapshot["SnapshotCreateTime"]
    json.dumps(point)


def test_safety_point_twice_adopts_the_snapshot(provider, rds):
    sent = record_requests(provider)
    first = provider.safety_point(a_state())
    again = provider.safety_point(a_state())
    assert again["already_existed"] is True
    assert again["snapshot"] == first["snapshot"] and again["arn"] == first["arn"]
    assert len(of(sent, "CreateDBSnapshot")) == 2  # the second one refused: already exists
    manual = rds.describe_db_snapshots(DBInstanceIdentifier=SOURCE, SnapshotType="manual")["DBSnapshots"]
    assert len(manual) == 1


def test_a_snapshot_of_another_source_under_that_name_is_refused(provider, rds):
    create_instance(rds, "other-db")
    rds.create_db_snapshot(DBInstanceIdentifier="other-db", DBSnapshotIdentifier="app-db-pre-pitr-r42")
    with pytest.raises(ProviderError) as caught:
        provider.safety_point(a_state())
    assert "snapshot app-db-pre-pitr-r42 already exists but is of other-db, not app-db" in str(caught.value)
    assert rds.describe_db_snapshots(DBInstanceIdentifier=SOURCE, SnapshotType="manual")["DBSnapshots"] == []


def test_a_workflow_recovery_id_is_kept_whole_in_the_tag(provider, rds):
    recovery_id = "20250307T000100.123Z-3fa9c1"  # what the workflow uses (tiers.new_backup_id)
    point = provider.safety_point(a_state(recovery_id=recovery_id))
    name = point["snapshot"]
    assert name.startswith("app-db-pre-pitr-2025") and len(name) <= MAX_IDENTIFIER
    assert IDENTIFIER.fullmatch(name)
    assert tags_of(rds, point["arn"])[RECOVERY_TAG] == recovery_id
    assert provider.safety_point(a_state(recovery_id=recovery_id))["already_existed"] is True


def test_safety_point_of_a_cluster(aurora, rds):
    point = aurora.safety_point(a_state())
    assert point["snapshot"] == "app-cluster-pre-pitr-r42" and point["snapshot_type"] == "db cluster snapshot"
    [snapshot] = rds.describe_db_cluster_snapshots(DBClusterIdentifier=CLUSTER, SnapshotType="manual")[
        "DBClusterSnapshots"
    ]
    assert snapshot["DBClusterSnapshotArn"] == point["arn"]
    assert tags_of(rds, point["arn"])[RECOVERY_TAG] == "r42"
    assert aurora.safety_point(a_state())["already_existed"] is True


# -- starting: an instance ---------------------------------------------------------------------


@pytest.fixture
def production(rds, clock) -> tuple[RdsProvider, dict[str, Any]]:
    """A source with settings a restore would not carry over by itself, and tags from a
    recovery it came out of itself."""
    rds.create_db_parameter_group(
        DBParameterGroupName="app-pg16", DBParameterGroupFamily="postgres16", Description="app"
    )
    source = create_instance(
        rds,
        Port=5433,
        DBParameterGroupName="app-pg16",
        Iops=3000,
        StorageThroughput=125,
        MultiAZ=True,
        DeletionProtection=True,
        CopyTagsToSnapshot=True,
        EnableIAMDatabaseAuthentication=True,
        EnableCloudwatchLogsExports=["postgresql"],
        Tags=[
            {"Key": "team", "Value": "payments"},
            {"Key": "aws:cloudformation:stack-name", "Value": "app"},
            {"Key": RECOVERY_TAG, "Value": "an-earlier-recovery"},
        ],
    )
    return provider_for(clock, PGRUNBOOK_RDS_INSTANCE=SOURCE), source


def test_start_restores_into_a_new_instance_with_the_source_settings(production, rds):
    provider, source = production
    sent = record_requests(provider)
    recovery = provider.start(a_state())

    [request] = of(sent, "RestoreDBInstanceToPointInTime")
    security_groups = [g["VpcSecurityGroupId"] for g in source["VpcSecurityGroups"]]
    pgrunbook_tags = {RECOVERY_TAG: "r42", TARGET_TAG: TARGET, SOURCE_TAG: SOURCE}
    # the source's own tags (it is meant to become production), not AWS's nor an earlier recovery's
    assert {t["Key"]: t["Value"] for t in request["Tags"]} == {"team": "payments", **pgrunbook_tags}
    assert {k: v for k, v in request.items() if k != "Tags"} == {
        "SourceDBInstanceIdentifier": SOURCE,
        "TargetDBInstanceIdentifier": NEW_INSTANCE,
        "RestoreTime": TARGET_TIME,
        "DBInstanceClass": "db.m6g.large",
        "MultiAZ": True,
        "PubliclyAccessible": False,
        "CopyTagsToSnapshot": True,
        "DeletionProtection": True,
        "AutoMinorVersionUpgrade": True,
        "EnableIAMDatabaseAuthentication": True,
        "VpcSecurityGroupIds": security_groups,
        "DBParameterGroupName": "app-pg16",
        "Port": 5433,
        "StorageType": "gp3",
        "BackupRetentionPeriod": 7,
        "EnableCloudwatchLogsExports": ["postgresql"],
        "CACertificateIdentifier": source["CACertificateIdentifier"],
    }

    new = describe(rds, NEW_INSTANCE)
    assert new["DBInstanceClass"] == "db.m6g.large" and new["MultiAZ"] is True
    assert new["DeletionProtection"] is True and new["Endpoint"]["Port"] == 5433
    assert [g["DBParameterGroupName"] for g in new["DBParameterGroups"]] == ["app-pg16"]
    assert [g["VpcSecurityGroupId"] for g in new["VpcSecurityGroups"]] == security_groups
    assert tags_of(rds, new["DBInstanceArn"]) == {"team": "payments", **pgrunbook_tags}

    assert recovery == {
        "kind": KIND_INSTANCE,
        "source": SOURCE,
        "instance": NEW_INSTANCE,
        "restore_time": TARGET,
        "requested_at": NOW.isoformat(),
        "settings": {
            k: v
            for k, v in request.items()
            if k not in ("Tags", "RestoreTime", "SourceDBInstanceIdentifier", "TargetDBInstanceIdentifier")
        },
        "already_started": False,
    }
    json.dumps(recovery)  # the workflow keeps it in its JSON state
    # the damaged source is left exactly as it was
    assert describe(rds, SOURCE)["DBInstanceStatus"] == "available"
    assert tags_of(rds, source["DBInstanceArn"])[RECOVERY_TAG] == "an-earlier-recovery"


def test_provisioned_iops_are_copied_where_rds_accepts_them(rds, clock):
    """io1/io2 need their IOPS; gp3 takes IOPS and throughput from 400 GiB only (below, RDS
    refuses them).  The production source above is a gp3 of 100 GiB: neither is sent."""
    create_instance(rds, "big-gp3", AllocatedStorage=400, Iops=12000, StorageThroughput=500)
    create_instance(rds, "io1", StorageType="io1", Iops=1000)
    expected = {"big-gp3": {"Iops": 12000, "StorageThroughput": 500}, "io1": {"Iops": 1000}}
    for name, storage in expected.items():
        provider = provider_for(clock, PGRUNBOOK_RDS_INSTANCE=name)
        sent = record_requests(provider)
        provider.start(a_state())
        [request] = of(sent, "RestoreDBInstanceToPointInTime")
        assert {k: request[k] for k in ("Iops", "StorageThroughput") if k in request} == storage


def test_names_come_from_the_start_time_in_utc(provider):
    state = a_state(started_at="2025-03-07T01:01:00+01:00")
    assert provider.target_identifiers(state) == {"target": NEW_INSTANCE}
    assert provider.target_identifiers(a_state(started_at="2025-03-07T00:01:00")) == {"target": NEW_INSTANCE}


def test_a_target_without_time_zone_is_utc(provider):
    sent = record_requests(provider)
    recovery = provider.start(a_state(target_time="2025-03-06T12:00:00"))
    assert of(sent, "RestoreDBInstanceToPointInTime")[0]["RestoreTime"] == TARGET_TIME
    assert recovery["restore_time"] == TARGET


def test_a_second_start_adopts_the_instance(provider, rds):
    state = a_state()
    sent = record_requests(provider)
    state["recovery"] = provider.start(state)
    again = provider.start(state)
    assert again["already_started"] is True and again["instance"] == NEW_INSTANCE
    assert len(of(sent, "RestoreDBInstanceToPointInTime")) == 1
    identifiers = sorted(i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"])
    assert identifiers == [SOURCE, NEW_INSTANCE]


def test_a_start_racing_an_earlier_attempt_adopts_its_instance(provider, rds):
    """The instance appears between the check and the restore (an earlier attempt, acted on
    by RDS after all): RDS answers DBInstanceAlreadyExists, and it is ours."""
    provider.start(a_state())
    sent = record_requests(provider)
    aws_answers(
        provider,
        "DescribeDBInstances",
        "DBInstanceNotFound",
        404,
        when=lambda params: params.get("DBInstanceIdentifier") == NEW_INSTANCE,
    )
    again = provider.start(a_state())
    assert again["already_started"] is True
    assert len(of(sent, "RestoreDBInstanceToPointInTime")) == 1  # refused by RDS: already exists
    assert len(rds.describe_db_instances()["DBInstances"]) == 2


def test_start_leaves_alone_what_it_did_not_create(provider, rds):
    provider.start(a_state())
    sent = record_requests(provider)
    with pytest.raises(ProviderError) as caught:
        provider.start(a_state(recovery_id="r43"))
    assert f"RDS instance {NEW_INSTANCE} already exists and was not created by recovery r43" in str(
        caught.value
    )
    with pytest.raises(ProviderError, match=f"was restored to {re.escape(TARGET)}, not 2025-03-06T11:00:00"):
        provider.start(a_state(target_time="2025-03-06T11:00:00+00:00"))
    assert of(sent, "RestoreDBInstanceToPointInTime") == []

    rds.create_db_instance(  # someone's instance under that name, without pgrunbook's tags
        DBInstanceIdentifier="app-db-pitr-20250308-000000",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="x",
        MasterUserPassword=PASSWORD,
        AllocatedStorage=20,
    )
    with pytest.raises(ProviderError, match="already exists and was not created by recovery r42"):
        provider.start(a_state(started_at="2025-03-08T00:00:00+00:00"))


def test_a_refused_restore_time_is_an_invalid_target(provider, rds):
    # moto restores to any time at all: RDS's refusal is stubbed.
    aws_answers(provider, "RestoreDBInstanceToPointInTime", "InvalidRestoreFault")
    with pytest.raises(InvalidTarget) as caught:
        provider.start(a_state())
    assert f"RDS refused to restore {SOURCE} to {TARGET}: InvalidRestoreFault" in str(caught.value)
    assert len(rds.describe_db_instances()["DBInstances"]) == 1


def test_a_throttled_start_started_nothing_and_can_be_retried(provider, rds):
    aws_answers(provider, "RestoreDBInstanceToPointInTime", "Throttling")
    with pytest.raises(ProviderThrottled, match="nothing was done"):
        provider.start(a_state())
    assert len(rds.describe_db_instances()["DBInstances"]) == 1
    assert provider.start(a_state())["already_started"] is False  # what the workflow does: retry
    describe(rds, NEW_INSTANCE)


# -- starting: Aurora and Multi-AZ DB clusters ---------------------------------------------------


def test_aurora_restores_the_cluster_then_status_adds_the_writer(aurora, rds):
    state = a_state()
    sent = record_requests(aurora)
    state["recovery"] = aurora.start(state)

    [request] = of(sent, "RestoreDBClusterToPointInTime")
    assert request["SourceDBClusterIdentifier"] == CLUSTER
    assert request["DBClusterIdentifier"] == NEW_CLUSTER
    assert request["RestoreType"] == "full-copy"
    assert request["RestoreToTime"] == TARGET_TIME
    assert {t["Key"]: t["Value"] for t in request["Tags"]} == {
        "team": "payments",
        RECOVERY_TAG: "r42",
        TARGET_TAG: TARGET,
        SOURCE_TAG: CLUSTER,
    }
    assert of(sent, "CreateDBInstance") == []  # RDS refuses a writer before the cluster is available
    recovery = state["recovery"]
    assert recovery["kind"] == KIND_AURORA and recovery["engine"] == "aurora-postgresql"
    assert (recovery["cluster"], recovery["instance"]) == (NEW_CLUSTER, NEW_WRITER)
    assert recovery["instance_created"] is False and recovery["already_started"] is False
    assert recovery["instance_settings"]["DBInstanceClass"] == "db.r6g.large"  # the source writer's
    json.dumps(recovery)
    [cluster] = rds.describe_db_clusters(DBClusterIdentifier=NEW_CLUSTER)["DBClusters"]
    assert tags_of(rds, cluster["DBClusterArn"])[RECOVERY_TAG] == "r42"

    # moto answers "creating" once after it is set, then "available"
    moto_rds().clusters[NEW_CLUSTER].status = "creating"
    result = aurora.status(state)
    assert (result.done, result.failed) == (False, False)
    assert result.status == "cluster creating, instance not created yet"
    assert of(sent, "CreateDBInstance") == []
    with pytest.raises(rds.exceptions.DBInstanceNotFoundFault):
        describe(rds, NEW_WRITER)

    result = aurora.status(state)  # the cluster is available: the writer is created
    [create] = of(sent, "CreateDBInstance")
    assert create["DBInstanceIdentifier"] == NEW_WRITER and create["DBClusterIdentifier"] == NEW_CLUSTER
    assert create["Engine"] == "aurora-postgresql" and create["DBInstanceClass"] == "db.r6g.large"
    writer = describe(rds, NEW_WRITER)
    assert writer["DBClusterIdentifier"] == NEW_CLUSTER and writer["DBInstanceClass"] == "db.r6g.large"
    assert tags_of(rds, writer["DBInstanceArn"]) == {RECOVERY_TAG: "r42", SOURCE_TAG: CLUSTER}
    assert state["recovery"]["instance_created"] is True
    assert state["recovery"]["instance_requested_at"] == NOW.isoformat()
    assert result.done is True and result.status == "cluster available, instance available"

    moto_rds().databases[NEW_WRITER].status = "configuring-enhanced-monitoring"
    result = aurora.status(state)
    assert (
        result.done is False
        and result.status == "cluster available, instance configuring-enhanced-monitoring"
    )
    moto_rds().databases[NEW_WRITER].status = "available"
    assert aurora.status(state).done is True
    assert len(of(sent, "CreateDBInstance")) == 1  # created once, found by its tag afterwards
    assert state["recovery"]["polls"] == 4
    [members] = [
        c["DBClusterMembers"] for c in rds.describe_db_clusters(DBClusterIdentifier=NEW_CLUSTER)["DBClusters"]
    ]
    assert [m["DBInstanceIdentifier"] for m in members] == [NEW_WRITER]

    assert aurora.start(state)["already_started"] is True  # a retried start adopts the cluster
    assert len(of(sent, "RestoreDBClusterToPointInTime")) == 1

    endpoint = aurora.endpoint(state)
    assert endpoint.host == cluster["Endpoint"] and endpoint.port == cluster["Port"]


def test_aurora_writer_problems(aurora, rds):
    state = a_state()
    state["recovery"] = aurora.start(state)
    rds.create_db_instance(  # not created by this recovery
        DBInstanceIdentifier=NEW_WRITER,
        DBClusterIdentifier=NEW_CLUSTER,
        Engine="aurora-postgresql",
        DBInstanceClass="db.r6g.large",
    )
    with pytest.raises(
        RecoveryFailed, match=f"RDS instance {NEW_WRITER} exists and was not created by recovery r42"
    ):
        aurora.status(state)

    rds.delete_db_instance(DBInstanceIdentifier=NEW_WRITER, SkipFinalSnapshot=True)
    assert aurora.status(state).done is True  # now created by this recovery
    rds.delete_db_instance(DBInstanceIdentifier=NEW_WRITER, SkipFinalSnapshot=True)
    with pytest.raises(RecoveryFailed, match=f"the recovered writer instance {NEW_WRITER} no longer exists"):
        aurora.status(state)

    moto_rds().clusters[NEW_CLUSTER].status = "inaccessible-encryption-credentials"
    with pytest.raises(
        RecoveryFailed, match=f"DB cluster {NEW_CLUSTER} is inaccessible-encryption-credentials"
    ):
        aurora.status(state)
    rds.delete_db_cluster(DBClusterIdentifier=NEW_CLUSTER, SkipFinalSnapshot=True)
    with pytest.raises(RecoveryFailed, match=f"the recovered DB cluster {NEW_CLUSTER} no longer exists"):
        aurora.status(state)


def test_a_cluster_without_instances_has_no_writer_class_to_copy(rds, clock):
    create_cluster(rds, writer=None)
    with pytest.raises(ConfigError, match="has no instance to copy the instance class from"):
        provider_for(clock, PGRUNBOOK_RDS_CLUSTER=CLUSTER).start(a_state())


def test_a_multi_az_db_cluster_is_restored_with_its_instance_class(rds, clock):
    rds.create_db_cluster(
        DBClusterIdentifier=CLUSTER,
        Engine="postgres",
        MasterUsername="app",
        MasterUserPassword=PASSWORD,
        BackupRetentionPeriod=3,
        DBClusterInstanceClass="db.m6gd.large",
        AllocatedStorage=100,
        Iops=3000,
        StorageType="io1",
        VpcSecurityGroupIds=["sg-0a1b2c3d"],
        DeletionProtection=True,
    )
    provider = provider_for(clock, PGRUNBOOK_RDS_CLUSTER=CLUSTER)
    sent = record_requests(provider)
    state = a_state()
    state["recovery"] = provider.start(state)
    [request] = of(sent, "RestoreDBClusterToPointInTime")
    assert request["DBClusterInstanceClass"] == "db.m6gd.large"
    assert (request["StorageType"], request["Iops"], request["PubliclyAccessible"]) == ("io1", 3000, False)
    # what clusters and instances carry over alike
    assert request["BackupRetentionPeriod"] == 3 and request["VpcSecurityGroupIds"] == ["sg-0a1b2c3d"]
    assert (request["DeletionProtection"], request["EnableIAMDatabaseAuthentication"]) == (True, False)
    assert state["recovery"]["kind"] == KIND_MULTI_AZ_CLUSTER and "instance" not in state["recovery"]

    result = provider.status(state)  # RDS creates the three instances itself
    assert (result.done, result.status) == (True, "available")
    assert of(sent, "CreateDBInstance") == []


# -- progress ----------------------------------------------------------------------------------


@pytest.fixture
def started(provider) -> tuple[RdsProvider, dict[str, Any]]:
    state = a_state()
    state["recovery"] = provider.start(state)
    return provider, state


def test_status_available_is_done(started):
    provider, state = started
    moto_rds().databases[NEW_INSTANCE].status = "creating"
    result = provider.status(state)
    assert (result.done, result.failed, result.status) == (False, False, "creating")
    moto_rds().databases[NEW_INSTANCE].status = "available"
    result = provider.status(state)
    assert (result.done, result.failed, result.status) == (True, False, "available")
    assert result.detail == f"RDS instance {NEW_INSTANCE}"
    recovery = state["recovery"]
    assert recovery["polls"] == 2 and recovery["last_status"] == "available"
    assert recovery["last_polled_at"] == NOW.isoformat()


@pytest.mark.parametrize("status", ["incompatible-restore", "storage-full", "stopped"])
def test_a_terminal_status_fails_the_recovery(started, status):
    provider, state = started
    moto_rds().databases[NEW_INSTANCE].status = status
    with pytest.raises(RecoveryFailed) as caught:
        provider.status(state)
    assert str(caught.value) == f"the point-in-time restore failed: RDS instance {NEW_INSTANCE} is {status}"


def test_the_recovered_instance_deleted_fails_the_recovery(started, rds):
    provider, state = started
    rds.delete_db_instance(DBInstanceIdentifier=NEW_INSTANCE, SkipFinalSnapshot=True)
    with pytest.raises(RecoveryFailed, match=f"the recovered RDS instance {NEW_INSTANCE} no longer exists"):
        provider.status(state)
    with pytest.raises(RecoveryFailed):
        provider.endpoint(state)


# -- the recovered database ----------------------------------------------------------------------


def test_endpoint_is_the_new_instance_with_the_source_credentials(production, rds):
    provider, _ = production
    state = a_state()
    state["recovery"] = provider.start(state)
    endpoint = provider.endpoint(state)
    new = describe(rds, NEW_INSTANCE)["Endpoint"]
    assert (endpoint.host, endpoint.port) == (new["Address"], 5433)
    assert endpoint.host.startswith(f"{NEW_INSTANCE}.")
    live = provider.settings.conninfo()
    assert (endpoint.user, endpoint.password, endpoint.dbname) == (live.user, live.password, live.dbname)
    assert (endpoint.user, endpoint.password, endpoint.dbname) == ("app", PASSWORD, "app")
    assert endpoint.sslmode == "verify-full"
    assert provider.recovery_point(state) == TARGET_TIME


def rds_secret(rds: Any, host: str, **extra: Any) -> str:
    secrets = AWS.client("secretsmanager", region_name=REGION)
    value = {
        "engine": "postgres",
        "host": host,
        "port": 5432,
        "username": "app",
        "password": PASSWORD,
        "dbname": "app",
        **extra,
    }
    return secrets.create_secret(Name=f"rds!{SOURCE}", SecretString=json.dumps(value))["ARN"]


def secret_value(arn: str) -> dict[str, Any]:
    return json.loads(
        AWS.client("secretsmanager", region_name=REGION).get_secret_value(SecretId=arn)["SecretString"]
    )


def test_cutover_points_the_secret_at_the_new_instance(rds, clock):
    source = create_instance(rds)
    old_host = source["Endpoint"]["Address"]
    arn = rds_secret(rds, old_host, dbInstanceIdentifier=SOURCE)
    provider = provider_for(clock, PGRUNBOOK_RDS_INSTANCE=SOURCE, PGRUNBOOK_DATABASE_SECRET_ARN=arn)
    state = a_state()
    state["recovery"] = provider.start(state)
    result = provider.cutover(state)

    new_host = describe(rds, NEW_INSTANCE)["Endpoint"]["Address"]
    assert secret_value(arn) == {
        "engine": "postgres",
        "host": new_host,
        "port": 5432,
        "username": "app",
        "password": PASSWORD,
        "dbname": "app",
        "dbInstanceIdentifier": NEW_INSTANCE,
    }
    assert result["secret"] == arn
    assert result["changed"] == {
        "host": {"from": old_host, "to": new_host},
        "port": {"from": 5432, "to": 5432},
        "dbInstanceIdentifier": {"from": SOURCE, "to": NEW_INSTANCE},
    }
    assert (result["endpoint"], result["new"], result["kept"]) == (f"{new_host}:5432", NEW_INSTANCE, SOURCE)
    assert f"RDS instance {NEW_INSTANCE}" in result["note"] and f"old RDS instance {SOURCE}" in result["note"]
    assert PASSWORD not in json.dumps(result)
    assert describe(rds, SOURCE)["DBInstanceStatus"] == "available"  # kept for investigation


def test_cutover_of_aurora_names_the_new_cluster_in_the_secret(aurora, rds):
    arn = rds_secret(rds, "old.cluster.example.com", dbClusterIdentifier=CLUSTER)
    aurora.settings.database_secret_arn = arn
    state = a_state()
    state["recovery"] = aurora.start(state)
    aurora.status(state)
    result = aurora.cutover(state)
    [cluster] = rds.describe_db_clusters(DBClusterIdentifier=NEW_CLUSTER)["DBClusters"]
    value = secret_value(arn)
    assert (value["host"], value["port"], value["dbClusterIdentifier"]) == (
        cluster["Endpoint"],
        cluster["Port"],
        NEW_CLUSTER,
    )
    assert value["password"] == PASSWORD and "dbInstanceIdentifier" not in value
    assert set(result["changed"]) == {"host", "port", "dbClusterIdentifier"}
    assert PASSWORD not in json.dumps(result)


def test_cutover_without_a_secret_is_a_note(started, rds):
    provider, state = started
    result = provider.cutover(state)
    host = describe(rds, NEW_INSTANCE)["Endpoint"]["Address"]
    assert set(result) == {"endpoint", "new", "kept", "note"}
    assert result["endpoint"] == f"{host}:5432" and result["new"] == NEW_INSTANCE and result["kept"] == SOURCE
    assert result["note"].startswith(f"point the application at {host}:5432 (RDS instance {NEW_INSTANCE})")
    assert "left untouched" in result["note"]


# -- RDS failures, by kind -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [("Throttling", 400), ("RequestLimitExceeded", 400), ("", 429)],
)
def test_throttling_is_retryable(rds, clock, code, status):
    provider = provider_for(clock, PGRUNBOOK_RDS_INSTANCE=SOURCE)
    with Stubber(provider.client) as stub:
        stub.add_client_error("describe_db_instances", code, "Rate exceeded", status)
        with pytest.raises(ProviderThrottled) as caught:
            provider.window()
        stub.assert_no_pending_responses()
    assert "RDS throttled the request" in str(caught.value) and "nothing was done" in str(caught.value)


@pytest.mark.parametrize(("code", "status"), [("InternalFailure", 500), ("", 503)])
def test_server_errors_on_reads_are_transient(started, code, status):
    provider, state = started
    with Stubber(provider.client) as stub:
        stub.add_client_error("describe_db_instances", code, "try again", status)
        stub.add_client_error("describe_db_instances", code, "try again", status)
        with pytest.raises(ProviderUnavailable, match="describing RDS instance app-db failed"):
            provider.window()
        with pytest.raises(ProviderUnavailable, match=f"describing RDS instance {NEW_INSTANCE} failed"):
            provider.status(state)
        stub.assert_no_pending_responses()


def test_a_server_error_on_a_write_leaves_it_unknown(provider, rds):
    with Stubber(provider.client) as stub:
        stub.add_client_error("create_db_snapshot", "InternalFailure", "internal error", 500)
        with pytest.raises(ProviderError) as caught:
            provider.safety_point(a_state())
        stub.assert_no_pending_responses()
    assert type(caught.value) is ProviderError
    message = str(caught.value)
    assert "creating DB snapshot app-db-pre-pitr-r42 of app-db failed with a server error" in message
    assert "whether RDS acted on it is unknown: InternalFailure: internal error" in message


def test_a_server_error_on_the_restore_leaves_it_unknown(provider, rds):
    aws_answers(provider, "RestoreDBInstanceToPointInTime", "InternalFailure", 500)
    with pytest.raises(ProviderError, match="whether RDS acted on it is unknown") as caught:
        provider.start(a_state())
    assert type(caught.value) is ProviderError


def test_other_refusals_are_provider_errors(provider):
    with Stubber(provider.client) as stub:
        stub.add_client_error(
            "describe_db_instances",
            "AccessDenied",
            "User is not authorized to perform rds:DescribeDBInstances",
            403,
        )
        with pytest.raises(ProviderError) as caught:
            provider.window()
    assert type(caught.value) is ProviderError
    assert str(caught.value) == (
        "describing RDS instance app-db failed: AccessDenied: "
        "User is not authorized to perform rds:DescribeDBInstances"
    )


def test_a_dropped_connection_is_transient_for_reads_and_unknown_for_writes(provider):
    def refuse(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://rds.us-east-1.amazonaws.com/")

    client = provider.client
    client.meta.events.unregister("needs-retry.rds", unique_id="retry-config-rds")  # no backoff sleeps
    client.meta.events.register_first("before-send.rds", refuse)
    with pytest.raises(ProviderUnavailable, match="Could not connect to the endpoint URL"):
        provider.window()
    with pytest.raises(ProviderError, match="whether RDS acted on it is unknown") as caught:
        provider.safety_point(a_state())
    assert type(caught.value) is ProviderError


# -- identifiers -------------------------------------------------------------------------------


def test_identifier_examples():
    assert rds_identifier("app-db", "pitr-20250307-000100") == NEW_INSTANCE
    assert rds_identifier("App_DB", "Pre PITR r42") == "app-db-pre-pitr-r42"
    assert rds_identifier("42-db", "x") == "db-42-db-x"
    assert rds_identifier("---", "x") == "db-x"
    long_source = "a" * 63
    name = rds_identifier(long_source, "pitr-20250307-000100")
    assert len(name) == MAX_IDENTIFIER and name.endswith("-pitr-20250307-000100")
    long_id = "pre-pitr-20250307T000100.123Z-3fa9c1"
    assert rds_identifier(SOURCE, long_id) != rds_identifier(SOURCE, long_id.replace("c1", "c2"))


NORMALIZED = st.from_regex(r"[a-z0-9]{1,7}(-[a-z0-9]{1,7}){0,3}", fullmatch=True)  # at most 31


# Any text at all, and text made of what identifiers are made of (where the edge cases are).
NAMES = st.one_of(st.text(max_size=80), st.text(alphabet="aZ09-_. ", max_size=80))


@settings(max_examples=100, database=None, deadline=None)
@given(base=NAMES, suffix=NAMES)
def test_identifiers_are_valid_rds_names(base, suffix):
    name = rds_identifier(base, suffix)
    assert len(name) <= MAX_IDENTIFIER
    assert IDENTIFIER.fullmatch(name), name  # a letter first; no double or trailing hyphen
    assert name == rds_identifier(base, suffix)


@settings(max_examples=100, database=None, deadline=None)
@given(base=NAMES, suffix=NORMALIZED)
def test_identifiers_keep_the_suffix_whole(base, suffix):
    name = rds_identifier(base, suffix)
    assert len(name) <= MAX_IDENTIFIER and IDENTIFIER.fullmatch(name)
    assert name.endswith(f"-{suffix}")


# -- the service model -------------------------------------------------------------------------


def test_the_model_check_refuses_what_aws_would():
    """The check the module's requests pass is not vacuous."""
    good = {"SourceDBInstanceIdentifier": "app-db", "TargetDBInstanceIdentifier": "app-db-pitr-1"}
    assert aws_model.problems("rds", "RestoreDBInstanceToPointInTime", good) == []
    wrong = [
        {**good, "TargetDbInstanceIdentifier": "x"},  # a name the model does not have
        {**good, "Port": "5432"},  # a string for an integer
        {**good, "TargetDBInstanceIdentifier": "app-db--pitr"},  # RDS naming
        {**good, "TargetDBInstanceIdentifier": "a" * 64},
        {**good, "RestoreTime": datetime(2025, 3, 1, 12)},  # no time zone
        {**good, "RestoreTime": datetime(2025, 3, 1, 12, tzinfo=UTC), "UseLatestRestorableTime": True},
        {"TargetDBInstanceIdentifier": "app-db-pitr-1"},  # no source
        {**good, "Tags": [{"Key": "aws:owner", "Value": "x"}]},
        {**good, "DBCapacityReservationIdentifier": "Not_A_Pattern"},  # the model's pattern
    ]
    for params in wrong:
        assert aws_model.problems("rds", "RestoreDBInstanceToPointInTime", params), params
    assert aws_model.problems(
        "rds",
        "CreateDBInstance",
        {
            "DBInstanceIdentifier": "a",
            "DBInstanceClass": "x",
            "Engine": "postgres",
            "DatabaseInsightsMode": "deluxe",
        },
    )  # an enum


def test_every_rds_operation_the_provider_uses_was_checked_against_the_model():
    """Runs last in this module: each RDS operation named in the provider's source has been
    sent, and checked, by the tests above."""
    import pgrunbook.workflows.pitr.rds as source

    names = boto3.client("rds", region_name=REGION).meta.method_to_api_mapping
    text = Path(source.__file__).read_text()
    used = {api for method, api in names.items() if f'"{method}"' in text}
    assert len(used) >= 10, used
    if not CHECKED:
        pytest.skip("run with the rest of this module")
    assert used - CHECKED == set()
