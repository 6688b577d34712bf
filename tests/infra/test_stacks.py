"""The CDK app: what it deploys, synthesized once (bundling skipped) with cdk-nag on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk
from aws_cdk.assertions import Match, Template

from infra.app import build
from infra.config import ConfigurationError, DeploymentConfig

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"


CDK_CONTEXT = json.loads((ROOT / "cdk.json").read_text())["context"]


def context(**changes) -> dict:
    return {**CDK_CONTEXT["pgrunbook"], "account": ACCOUNT, **changes}


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(
        outdir=str(outdir),
        context={**CDK_CONTEXT, "pgrunbook": context(), "aws:cdk:bundling-stacks": []},
    )
    primary, dr = build(app)
    assembly = app.synth()  # raises when cdk-nag finds anything not acknowledged
    return {
        "primary": Template.from_stack(primary),
        "dr": Template.from_stack(dr),
        "outdir": Path(assembly.directory),
        "stacks": (primary, dr),
    }


def resources(template: Template, kind: str) -> dict:
    return template.find_resources(kind)


def function(template: Template, job: str) -> dict:
    [(logical_id, fn)] = [
        (k, v)
        for k, v in resources(template, "AWS::Lambda::Function").items()
        if v["Properties"].get("FunctionName") == f"pgrunbook-app-{job}"
    ]
    return {"id": logical_id, **fn["Properties"]}


def role_statements(template: Template, job: str) -> list[dict]:
    fn = function(template, job)
    role_id = fn["Role"]["Fn::GetAtt"][0]
    statements = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def actions_of(statements: list[dict]) -> set[str]:
    out = set()
    for s in statements:
        out.update([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    return out


# -- nag and lint ------------------------------------------------------------------------


def test_cdk_nag_reports_nothing_unacknowledged(synthesized):
    report = json.loads((synthesized["outdir"] / "validation-report.json").read_text())
    violations = [v for plugin in report["pluginReports"] for v in plugin.get("violations", [])]
    assert violations == []


def test_cfn_lint_finds_no_errors(synthesized):
    templates = sorted(synthesized["outdir"].glob("*.template.json"))
    assert len(templates) == 2
    result = subprocess.run(
        [sys.executable, "-m", "cfnlint", "--format", "json", *map(str, templates)],
        capture_output=True,
        text=True,
    )
    findings = json.loads(result.stdout or "[]")
    errors = [f for f in findings if f["Level"] == "Error"]
    assert errors == [], json.dumps(errors, indent=1)


# -- storage -----------------------------------------------------------------------------


@pytest.mark.parametrize(("stack", "region"), [("primary", "us-east-1"), ("dr", "us-west-2")])
def test_backup_buckets_are_locked_down(stack, region, synthesized):
    template = synthesized[stack]
    template.has_resource(
        "AWS::S3::Bucket",
        {
            "Properties": Match.object_like(
                {
                    "BucketName": {
                        "Fn::Join": ["", ["pgrunbook-app-backups-", {"Ref": "AWS::AccountId"}, f"-{region}"]]
                    },
                    "VersioningConfiguration": {"Status": "Enabled"},
                    "ObjectLockEnabled": True,
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True,
                        "BlockPublicPolicy": True,
                        "IgnorePublicAcls": True,
                        "RestrictPublicBuckets": True,
                    },
                    "BucketEncryption": {
                        "ServerSideEncryptionConfiguration": [
                            Match.object_like(
                                {
                                    "BucketKeyEnabled": True,
                                    "ServerSideEncryptionByDefault": Match.object_like(
                                        {"SSEAlgorithm": "aws:kms"}
                                    ),
                                }
                            )
                        ]
                    },
                    "LoggingConfiguration": Match.object_like({"LogFilePrefix": "backups/"}),
                    "LifecycleConfiguration": {
                        "Rules": Match.array_with(
                            [
                                Match.object_like(
                                    {
                                        "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2},
                                        "Status": "Enabled",
                                    }
                                ),
                                Match.object_like({"ExpiredObjectDeleteMarker": True, "Status": "Enabled"}),
                            ]
                        )
                    },
                }
            ),
            "DeletionPolicy": "Retain",
        },
    )
    template.has_resource_properties("AWS::KMS::Key", Match.object_like({"EnableKeyRotation": True}))
    template.has_resource_properties(
        "AWS::KMS::Alias", {"AliasName": "alias/pgrunbook-app-backups", "TargetKeyId": Match.any_value()}
    )
    policies = resources(template, "AWS::S3::BucketPolicy").values()
    denies_plain_http = [
        s
        for p in policies
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(denies_plain_http) >= 2  # the backup bucket and its access-log bucket


# -- functions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "job", "memory", "timeout", "ephemeral", "exclusive"),
    [
        ("primary", "backup", 3008, 900, 10240, True),
        ("primary", "restore-test", 3008, 900, 10240, True),
        ("primary", "retention", 512, 600, 512, True),
        ("primary", "verify", 1024, 600, 512, False),
        ("primary", "health", 512, 300, 512, False),
        ("dr", "dr-drill", 3008, 900, 10240, True),
    ],
)
def test_functions_are_sized_and_observed(stack, job, memory, timeout, ephemeral, exclusive, synthesized):
    template = synthesized[stack]
    fn = function(template, job)
    assert fn["Runtime"] == "python3.13" and fn["Handler"] == "app.handler"
    assert (fn["MemorySize"], fn["Timeout"], fn["EphemeralStorage"]["Size"]) == (memory, timeout, ephemeral)
    assert fn.get("ReservedConcurrentExecutions") == (1 if exclusive else None)
    assert fn["TracingConfig"] == {"Mode": "Active"}
    assert fn["LoggingConfig"]["LogFormat"] == "JSON"
    assert len(fn["Layers"]) == 2
    env = fn["Environment"]["Variables"]
    assert env["PGRUNBOOK_DATABASE_NAME"] == "app" and env["PGRUNBOOK_OBJECT_LOCK"] == "governance"
    assert json.loads(env["PGRUNBOOK_THRESHOLDS"])["backup_age_hours"] == [26, 48]
    template.has_resource_properties(
        "AWS::Logs::LogGroup", {"LogGroupName": f"/aws/lambda/pgrunbook-app-{job}", "RetentionInDays": 90}
    )
    template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        Match.object_like(
            {
                "FunctionName": {"Ref": fn["id"]},
                "DestinationConfig": {"OnFailure": {"Destination": Match.any_value()}},
            }
        ),
    )


def test_only_the_jobs_that_need_the_database_secret_can_read_it(synthesized):
    secret = context()["database_secret_arn"]
    for job in ("backup", "verify", "health", "restore-test", "retention"):
        readers = [
            s
            for s in role_statements(synthesized["primary"], job)
            if "secretsmanager:GetSecretValue" in actions_of([s]) and secret in json.dumps(s["Resource"])
        ]
        assert bool(readers) == (job in ("backup", "verify", "health")), job


# -- least privilege ---------------------------------------------------------------------


def test_no_role_has_wildcard_actions_or_managed_policies(synthesized):
    for template in (synthesized["primary"], synthesized["dr"]):
        for policy in resources(template, "AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                for action in actions_of([statement]):
                    assert "*" not in action or action in ("kms:GenerateDataKey*",), action
        for role in resources(template, "AWS::IAM::Role").values():
            if (
                role["Properties"]
                .get("AssumeRolePolicyDocument", {})
                .get("Statement", [{}])[0]
                .get("Principal", {})
                .get("Service")
                == "lambda.amazonaws.com"
            ):
                assert "ManagedPolicyArns" not in role["Properties"]


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        (
            "backup",
            {
                "s3:ListBucket",
                "s3:GetBucketObjectLockConfiguration",
                "s3:GetObject",
                "s3:PutObject",
                "s3:AbortMultipartUpload",
                "s3:DeleteObject",
                "s3:PutObjectRetention",
                "kms:GenerateDataKey",
                "kms:Decrypt",
                "secretsmanager:GetSecretValue",
            },
        ),
        (
            "verify",
            {
                "s3:ListBucket",
                "s3:GetObject",
                "s3:PutObject",
                "s3:AbortMultipartUpload",
                "kms:GenerateDataKey",
                "kms:Decrypt",
                "secretsmanager:GetSecretValue",
            },
        ),
        (
            "health",
            {
                "s3:PutObject",
                "s3:AbortMultipartUpload",
                "kms:GenerateDataKey",
                "secretsmanager:GetSecretValue",
            },
        ),
    ],
)
def test_each_job_gets_only_the_actions_it_calls(job, expected, synthesized):
    statements = role_statements(synthesized["primary"], job)
    common = {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "sns:Publish",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "kms:GenerateDataKey*",  # CDK's grant for the on-failure destination (the encrypted topic)
    }
    assert actions_of(statements) - common == expected - common


def test_object_permissions_are_scoped_to_the_databases_prefix(synthesized):
    for template, jobs in (
        (synthesized["primary"], ("backup", "verify", "retention", "restore-test", "health")),
        (synthesized["dr"], ("dr-drill",)),
    ):
        for job in jobs:
            for statement in role_statements(template, job):
                if not any(
                    a.startswith("s3:") and a != "s3:ListBucket" and "Bucket" not in a
                    for a in actions_of([statement])
                ):
                    continue
                text = json.dumps(statement["Resource"])
                assert "/pgrunbook/app/" in text, (job, text)
    # the health job writes only its own reports
    [write] = [
        s for s in role_statements(synthesized["primary"], "health") if "s3:PutObject" in actions_of([s])
    ]
    assert "/pgrunbook/app/reports/health/*" in json.dumps(write["Resource"])


def test_the_other_regions_key_is_granted_by_alias(synthesized):
    [statement] = [s for s in role_statements(synthesized["primary"], "backup") if s.get("Sid") == "DrKey"]
    assert statement["Condition"] == {
        "ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/pgrunbook-app-backups"}
    }
    assert ":us-west-2:" in json.dumps(statement["Resource"])


# -- schedules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "job", "expression", "event", "enabled"),
    [
        ("primary", "backup", "cron(0 2 * * ? *)", {}, True),
        ("primary", "backup", "cron(0 * * * ? *)", {"tier": "hourly"}, False),
        ("primary", "retention", "cron(0 3 * * ? *)", {}, True),
        ("primary", "verify", "cron(0 4 * * ? *)", {}, True),
        ("primary", "restore-test", "cron(0 5 ? * SUN *)", {"prefer_tier": "weekly"}, True),
        ("primary", "health", "cron(0 7 ? * MON *)", {}, True),
        ("dr", "dr-drill", "cron(0 6 ? * SUN#1 *)", {"scenario": "complete_data_loss"}, True),
    ],
)
def test_schedules_start_each_job_with_its_input(stack, job, expression, event, enabled, synthesized):
    template = synthesized[stack]
    fn_id = function(template, job)["id"]
    rules = [
        r["Properties"]
        for r in resources(template, "AWS::Events::Rule").values()
        if r["Properties"]["ScheduleExpression"] == expression
        and r["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": [fn_id, "Arn"]}
    ]
    assert len(rules) == 1, (job, expression)
    [rule] = rules
    assert rule["State"] == ("ENABLED" if enabled else "DISABLED")
    [target] = rule["Targets"]
    assert json.loads(target["Input"]) == event
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 7200, "MaximumRetryAttempts": 2}
    assert "DeadLetterConfig" in target


# -- monitoring --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "name", "metric", "threshold", "comparison", "missing"),
    [
        ("primary", "BackupAge-warning", "BackupAgeHours", 26, "GreaterThanThreshold", "breaching"),
        ("primary", "BackupAge-critical", "BackupAgeHours", 48, "GreaterThanThreshold", "breaching"),
        (
            "primary",
            "BackupFailureRate-warning",
            "BackupFailureRatePct",
            5,
            "GreaterThanThreshold",
            "notBreaching",
        ),
        (
            "primary",
            "BackupFailureRate-critical",
            "BackupFailureRatePct",
            15,
            "GreaterThanThreshold",
            "notBreaching",
        ),
        (
            "primary",
            "BackupDuration-warning",
            "BackupDurationSeconds",
            1800,
            "GreaterThanThreshold",
            "notBreaching",
        ),
        (
            "primary",
            "BackupDuration-critical",
            "BackupDurationSeconds",
            7200,
            "GreaterThanThreshold",
            "notBreaching",
        ),
        ("primary", "StorageGrowth-warning", "StorageGrowthPct", 50, "GreaterThanThreshold", "notBreaching"),
        (
            "primary",
            "StorageGrowth-critical",
            "StorageGrowthPct",
            100,
            "GreaterThanThreshold",
            "notBreaching",
        ),
        (
            "primary",
            "RestoreIntegrity-critical",
            "RestoreIntegrityPct",
            100,
            "LessThanThreshold",
            "notBreaching",
        ),
        ("dr", "DrillRto-warning", "DrillRtoSeconds", 6 * 3600, "GreaterThanThreshold", "notBreaching"),
        ("dr", "DrillRto-critical", "DrillRtoSeconds", 12 * 3600, "GreaterThanThreshold", "notBreaching"),
        ("dr", "DrillRpo-warning", "DrillRpoSeconds", 2 * 3600, "GreaterThanThreshold", "notBreaching"),
        ("dr", "DrillRpo-critical", "DrillRpoSeconds", 4 * 3600, "GreaterThanThreshold", "notBreaching"),
    ],
)
def test_alarms_follow_the_runbooks_thresholds(
    stack, name, metric, threshold, comparison, missing, synthesized
):
    synthesized[stack].has_resource_properties(
        "AWS::CloudWatch::Alarm",
        Match.object_like(
            {
                "AlarmName": f"pgrunbook-app-{name}",
                "MetricName": metric,
                "Namespace": "pgrunbook",
                "Dimensions": Match.array_with([{"Name": "Database", "Value": "app"}]),
                "Threshold": threshold,
                "ComparisonOperator": comparison,
                "TreatMissingData": missing,
                "AlarmActions": [Match.any_value()],
            }
        ),
    )


def test_every_function_has_error_and_throttle_alarms(synthesized):
    for stack, jobs in (
        ("primary", ("backup", "retention", "verify", "restore-test", "health")),
        ("dr", ("dr-drill",)),
    ):
        names = {
            a["Properties"]["AlarmName"]
            for a in resources(synthesized[stack], "AWS::CloudWatch::Alarm").values()
        }
        for job in jobs:
            assert {f"pgrunbook-app-{job}-errors", f"pgrunbook-app-{job}-throttles"} <= names


def test_one_encrypted_topic_with_the_alert_email_and_a_dashboard(synthesized):
    template = synthesized["primary"]
    template.resource_count_is("AWS::SNS::Topic", 1)
    template.has_resource_properties(
        "AWS::SNS::Topic", Match.object_like({"KmsMasterKeyId": Match.any_value()})
    )
    template.has_resource_properties(
        "AWS::SNS::Subscription",
        {"Protocol": "email", "Endpoint": "oncall@example.com", "TopicArn": Match.any_value()},
    )
    [dashboard] = resources(template, "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in (
        "BackupAgeHours",
        "BackupSizeBytes",
        "RestoreIntegrityPct",
        "RestoreDurationSeconds",
        "DrillRtoSeconds",
        "DrillRpoSeconds",
    ):
        assert metric in body


# -- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"database_secret_arn": ""}, "database_secret_arn"),
        ({"database_secret_arn": "not-an-arn"}, "not a Secrets Manager secret ARN"),
        ({"dr_region": "us-east-1"}, "must differ"),
        ({"dr_restore_target_secret_arn": context()["restore_target_secret_arn"]}, "in the DR region"),
        ({"object_lock_mode": "none"}, "governance or compliance"),
        ({"thresholds": {"backup_age_hours": [48, 26]}}, "warning <= critical"),
        ({"schedules": {"weekly": "cron(0 1 * * ? *)"}}, "unknown schedules"),
        ({"bogus": 1}, "unknown pgrunbook settings"),
        ({"database_name": "App_DB"}, "lowercase"),
    ],
)
def test_bad_configuration_is_refused_with_a_reason(changes, message):
    with pytest.raises(ConfigurationError, match=message):
        DeploymentConfig.from_context(context(**changes))


def test_functions_can_run_in_the_databases_vpc(tmp_path):
    """RDS in private subnets: every function gets the VPC placement; nag stays clean."""
    vpc = {
        "vpc_id": "vpc-0abc1234",
        "availability_zones": ["us-east-1a", "us-east-1b"],
        "subnet_ids": ["subnet-0aaa1111", "subnet-0bbb2222"],
        "security_group_ids": ["sg-0ccc3333"],
    }
    app = cdk.App(
        outdir=str(tmp_path),
        context={**CDK_CONTEXT, "pgrunbook": context(vpc=vpc), "aws:cdk:bundling-stacks": []},
    )
    primary, _ = build(app)
    app.synth()  # cdk-nag: the VPC access policy is acknowledged with its reason
    template = Template.from_stack(primary)
    for job in ("backup", "verify", "restore-test", "retention", "health"):
        assert function(template, job)["VpcConfig"] == {
            "SubnetIds": ["subnet-0aaa1111", "subnet-0bbb2222"],
            "SecurityGroupIds": ["sg-0ccc3333"],
        }
