"""Throwaway RDS restore targets under moto, for the tests of the targets and their workflow.

moto creates the instance (engine, version, class, storage, subnet group, security groups,
tags, the RDS-managed master secret) but serves no PostgreSQL: :func:`serve_instances_from`
points every instance's endpoint at a real embedded server, so the restore, the
verification and the cleanup are all real."""

from __future__ import annotations

import boto3
import pytest
from moto.rds import models as rds_models

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.embedded import EmbeddedServer

SUBNET_GROUP = "restore-targets"


def serve_instances_from(server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every moto RDS instance answers on ``server`` (its address, a property, is the server's
    socket directory); the master secret's user (moto's is ``admin``) is a superuser there."""
    monkeypatch.setattr(rds_models.DBInstance, "address", property(lambda self: server.conninfo.host))
    original = rds_models.DBInstance.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.port = server.conninfo.port

    monkeypatch.setattr(rds_models.DBInstance, "__init__", init)
    with Database.connect(server.conninfo) as db:
        if not db.scalar("SELECT 1 FROM pg_roles WHERE rolname = 'admin'"):
            db.run("CREATE ROLE admin LOGIN SUPERUSER")


def restore_network(region: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A VPC with two subnets, the DB subnet group ``restore-targets`` and a security group."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    ec2 = boto3.client("ec2", region_name=region)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{region}{z}")["Subnet"][
            "SubnetId"
        ]
        for i, z in ((1, "a"), (2, "b"))
    ]
    group = ec2.create_security_group(GroupName="restore", Description="restore targets", VpcId=vpc)[
        "GroupId"
    ]
    boto3.client("rds", region_name=region).create_db_subnet_group(
        DBSubnetGroupName=SUBNET_GROUP, DBSubnetGroupDescription="restore targets", SubnetIds=subnets
    )
    return {"subnet_group": SUBNET_GROUP, "security_group": group, "subnets": subnets}
