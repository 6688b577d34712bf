"""Throwaway RDS restore targets under moto: created as the backup needs, always deleted.

moto creates the instance; a real embedded server answers on its endpoint
(tests/rds_env.py), so the restore, the verification and the cleanup are all real.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto.rds import models as rds_models

from pgrunbook.adapters.aws.rds_targets import (
    CREATED_TAG,
    DATABASE_TAG,
    PURPOSE,
    PURPOSE_TAG,
    RdsTargets,
    size_for,
)
from pgrunbook.catalog.backups import Catalog
from pgrunbook.domain.needs import Extension
from pgrunbook.operations.context import OperationContext, run_operation
from pgrunbook.operations.targets import plan_target
from tests.aws_model import problems
from tests.conftest import rewrite_manifest
from tests.rds_env import restore_network, serve_instances_from

SQL = """
CREATE TABLE orders (id int PRIMARY KEY, total numeric(10, 2), note text);
INSERT INTO orders SELECT g, g * 1.5, md5(g::text) FROM generate_series(1, 3000) g;
"""
REGION = "us-east-1"


@pytest.fixture
def network(s3, monkeypatch):
    """A VPC with a DB subnet group and a security group, in moto."""
    return restore_network(REGION, monkeypatch)


@pytest.fixture
def served_by(pg18_target, monkeypatch):
    serve_instances_from(pg18_target, monkeypatch)
    return pg18_target


def rds():
    return boto3.client("rds", region_name=REGION)


def instances() -> list[dict]:
    return rds().describe_db_instances()["DBInstances"]


def record_requests(monkeypatch) -> list[tuple[str, dict]]:
    """Every RDS request pgrunbook's targets make, as RDS receives it."""
    sent: list[tuple[str, dict]] = []
    original = RdsTargets.client.func  # type: ignore[attr-defined]

    def client(self):
        made = original(self)
        made.meta.events.register(
            "before-parameter-build.rds", lambda params, model, **_: sent.append((model.name, dict(params)))
        )
        return made

    monkeypatch.setattr(RdsTargets, "client", property(client))
    return sent


def settings_for(make_settings, info, network, **extra):
    return make_settings(
        info,
        restore_target_url=None,
        restore_rds="always",
        restore_rds_subnet_group=network["subnet_group"],
        restore_rds_security_groups=network["security_group"],
        **extra,
    )


def test_a_restore_on_a_throwaway_instance_creates_it_as_the_backup_needs_and_deletes_it(
    new_db, make_settings, network, served_by, monkeypatch
):
    settings = settings_for(make_settings, new_db(sql=SQL), network)
    assert run_operation("backup", OperationContext(settings)).status == "ok"
    sent = record_requests(monkeypatch)

    report = run_operation("restore-test", OperationContext(settings))
    assert report.status == "ok", report.findings
    assert report.figures["integrity_pct"] == 100.0
    result = report.payload
    assert result.target_plan["kind"] == "rds"
    assert [e["event"] for e in result.rds_target] == ["created", "ready", "deleted"]
    assert instances() == [] or all(i["DBInstanceStatus"] == "deleting" for i in instances())

    [(_, create)] = [(op, p) for op, p in sent if op == "CreateDBInstance"]
    assert create["Engine"] == "postgres" and create["EngineVersion"] == "18"
    assert create["DBInstanceClass"] == "db.t4g.small" and create["AllocatedStorage"] == 20
    assert create["StorageEncrypted"] is True and create["PubliclyAccessible"] is False
    assert create["DBSubnetGroupName"] == "restore-targets"
    assert create["VpcSecurityGroupIds"] == [network["security_group"]]
    assert create["ManageMasterUserPassword"] is True and "MasterUserPassword" not in create
    tags = {t["Key"]: t["Value"] for t in create["Tags"]}
    assert tags[PURPOSE_TAG] == PURPOSE and tags[DATABASE_TAG] == settings.database_label
    [(_, delete)] = [(op, p) for op, p in sent if op == "DeleteDBInstance"]
    assert delete == {
        "DBInstanceIdentifier": create["DBInstanceIdentifier"],
        "SkipFinalSnapshot": True,
        "DeleteAutomatedBackups": True,
    }
    for operation, params in sent:  # AWS would take every one of them
        assert problems("rds", operation, params) == [], (operation, params)
    assert "P@55w0rd!" not in json.dumps(report.to_dict())  # moto's master password, never shown


def test_a_failed_restore_still_deletes_the_instance(new_db, make_settings, network, served_by, s3):
    settings = settings_for(make_settings, new_db(sql=SQL), network)
    backup_id = run_operation("backup", OperationContext(settings)).figures["backup_id"]
    store = settings.primary_store()
    data = next(f for f in Catalog(store).manifest(backup_id).files if f.name != "toc.dat")
    store.put_bytes(store.key(backup_id, data.name), b"not what was dumped")  # a corrupt file

    report = run_operation("restore-test", OperationContext(settings))
    assert report.status == "critical" and report.exit_code == 1
    assert [e["event"] for e in report.payload.rds_target] == ["created", "ready", "deleted"]
    assert all(i["DBInstanceStatus"] == "deleting" for i in instances())


def test_a_failed_verification_still_deletes_the_instance(new_db, make_settings, network, served_by, s3):
    settings = settings_for(make_settings, new_db(sql=SQL), network)
    backup_id = run_operation("backup", OperationContext(settings)).figures["backup_id"]

    def one_more_order(manifest):
        for table in manifest["tables"]:
            if table["name"] == "orders":
                table["rows"] += 1  # the restored copy will not match

    rewrite_manifest(settings, backup_id, one_more_order)

    report = run_operation("restore-test", OperationContext(settings))
    assert report.status == "critical" and report.figures["integrity_pct"] < 100
    assert [e["event"] for e in report.payload.rds_target] == ["created", "ready", "deleted"]
    assert all(i["DBInstanceStatus"] == "deleting" for i in instances())


def test_an_instance_that_never_becomes_ready_is_deleted_and_reported(
    new_db, make_settings, network, served_by, monkeypatch
):
    settings = settings_for(make_settings, new_db(sql=SQL), network)
    run_operation("backup", OperationContext(settings))
    original = rds_models.DBInstance.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.status = "incompatible-network"

    monkeypatch.setattr(rds_models.DBInstance, "__init__", init)
    report = run_operation("restore-test", OperationContext(settings))
    assert report.status == "critical"
    assert "is incompatible-network" in report.payload.error
    assert [e["event"] for e in report.payload.rds_target] == ["created", "deleted"]
    assert all(i["DBInstanceStatus"] == "deleting" for i in instances())


def test_the_sweep_deletes_old_leftovers_of_this_database_and_nothing_else(network):
    targets = RdsTargets(
        region=REGION,
        subnet_group=network["subnet_group"],
        security_groups=(network["security_group"],),
        database="app",
    )
    now = datetime.now(UTC)

    def make(name, tags):
        rds().create_db_instance(
            DBInstanceIdentifier=name,
            Engine="postgres",
            DBInstanceClass="db.t4g.small",
            AllocatedStorage=20,
            MasterUsername="x",
            MasterUserPassword="not-used-123",
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )

    ours = {PURPOSE_TAG: PURPOSE, DATABASE_TAG: "app"}
    make("old-leftover", {**ours, CREATED_TAG: (now - timedelta(hours=7)).isoformat()})
    make("running-now", {**ours, CREATED_TAG: (now - timedelta(minutes=20)).isoformat()})
    make(
        "other-database",
        {PURPOSE_TAG: PURPOSE, DATABASE_TAG: "billing", CREATED_TAG: (now - timedelta(days=2)).isoformat()},
    )
    make("production", {"team": "payments"})
    assert targets.sweep(now) == ["old-leftover"]
    states = {i["DBInstanceIdentifier"]: i["DBInstanceStatus"] for i in instances()}
    assert states.get("old-leftover", "gone") in ("deleting", "gone")
    assert {k: v for k, v in states.items() if k != "old-leftover"} == {
        "running-now": "available",
        "other-database": "available",
        "production": "available",
    }


def test_the_plan_uses_rds_only_for_what_the_embedded_server_cannot_host(new_db, make_settings, network):
    info = new_db(sql=SQL)
    settings = make_settings(info, restore_target_url=None, restore_rds_subnet_group=network["subnet_group"])
    backup_id = run_operation("backup", OperationContext(settings)).figures["backup_id"]
    manifest = Catalog(settings.primary_store()).manifest(backup_id)
    assert plan_target(settings, manifest).kind == "embedded"
    manifest.needs.extensions.append(Extension("postgis", "3.4.2", "public"))
    plan = plan_target(settings, manifest)
    assert (plan.kind, plan.major) == ("rds", 18) and "postgis" in plan.reason
    # no subnet group: the embedded server, which will report the backup untested
    settings.restore_rds_subnet_group = None
    plan = plan_target(settings, manifest)
    assert plan.kind == "embedded" and "PGRUNBOOK_RESTORE_RDS_SUBNET_GROUP is not set" in plan.reason
    settings.restore_rds_subnet_group, settings.restore_rds = network["subnet_group"], "never"
    assert plan_target(settings, manifest).kind == "embedded"


def test_sizes_follow_the_dump():
    assert size_for(100 * 1024**2) == size_for(0) and size_for(0).instance_class == "db.t4g.small"
    assert size_for(10 * 1024**3).instance_class == "db.t4g.medium"
    assert size_for(10 * 1024**3).storage_gb == 80
    assert size_for(1024**4).instance_class == "db.m6g.2xlarge"
    assert size_for(1024**3, "db.r6g.large").instance_class == "db.r6g.large"
