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
from infra.stacks import reads
from pgrunbook.operations import registry
from pgrunbook.settings.options import OPTIONS

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"


CDK_CONTEXT = json.loads((ROOT / "cdk.json").read_text())["context"]


def context(**changes) -> dict:
    return {**CDK_CONTEXT["pgrunbook"], "account": ACCOUNT, **changes}


def resources(template: Template, kind: str) -> dict:
    return dict(template.find_resources(kind))


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
    out: set[str] = set()
    for s in statements:
        out.update([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    return out


VPC = {
    "vpc_id": "vpc-0abc1234",
    "availability_zones": ["us-east-1a", "us-east-1b"],
    "subnet_ids": ["subnet-0aaa1111", "subnet-0bbb2222"],
    "security_group_ids": ["sg-0ccc3333"],
}
DR_VPC = {
    "vpc_id": "vpc-0def5678",
    "availability_zones": ["us-west-2a", "us-west-2b"],
    "subnet_ids": ["subnet-0ddd4444", "subnet-0eee5555"],
    "security_group_ids": ["sg-0fff6666"],
}
HOOK_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hook-AbCdEf"
HOOK = {"url": "https://events.example.com/v2/enqueue", "secret_arn": HOOK_SECRET}
CHAT = {
    "slack": [{"workspace_id": "T0123ABCD", "channel_id": "C0456EFGH"}],
    "teams": [
        {
            "team_id": "19a0b1c2-d3e4-f5a6-b7c8-d9e0f1a2b3c4",
            "channel_id": "19:abc123@thread.tacv2",
            "tenant_id": "a1b2c3d4-e5f6-a7b8-c9d0-e1f2a3b4c5d6",
        }
    ],
}
RDS_TARGETS = {
    "subnet_group": "restore-targets",
    "security_groups": ["sg-0123456789abcdef0"],
    "dr_subnet_group": "dr-restore-targets",
    "dr_security_groups": ["sg-0fedcba9876543210"],
}


@pytest.fixture(scope="module")
def variant(tmp_path_factory) -> dict[str, Template]:
    """One synthesis, with cdk-nag on, of every optional part that can go together: chat
    channels and a webhook, the functions in the database's VPC (both regions), throwaway
    RDS restore targets, migrations without approval, recovery through RDS.  (A synthesis
    costs 10-15 s of a core: the tests of these parts share it.)"""
    app = cdk.App(
        outdir=str(tmp_path_factory.mktemp("variant")),
        context={
            **CDK_CONTEXT,
            "pgrunbook": context(
                chat=CHAT,
                webhook=HOOK,
                vpc=VPC,
                dr_vpc=DR_VPC,
                restore_targets=RDS_TARGETS,
                migrations={"approval": False},
                pitr={"provider": "rds", "rds_instance": "app-db"},
            ),
            "aws:cdk:bundling-stacks": [],
        },
    )
    primary, dr = build(app)
    app.synth()  # cdk-nag: raises on any finding not acknowledged with its reason
    return {"primary": Template.from_stack(primary), "dr": Template.from_stack(dr)}


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


def test_the_app_runs_as_cdk_json_runs_it(synthesized):
    """`cdk synth` runs `.venv/bin/python infra/app.py`: the session's synthesis does the same
    (tests/conftest.py), so its two templates are what `cdk synth` writes."""
    assert sorted(p.name for p in synthesized["outdir"].glob("*.template.json")) == [
        "pgrunbook-app-dr.template.json",
        "pgrunbook-app-primary.template.json",
    ]


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
        ("primary", "status-page", 1024, 300, 512, False),
        ("dr", "dr-drill", 3008, 900, 10240, True),
        ("primary", "recover-tables", 3008, 900, 10240, False),
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
    assert env["PGRUNBOOK_OPERATION"] == job and env["PGRUNBOOK_DATABASE_NAME"] == "app"
    # the settings the operation reads, as the option table names them, and no others
    op = registry.get(job)
    assert {o.env for o in OPTIONS if o.env in env} == {
        o.env for o in OPTIONS if o.env in env and reads(op, o.name)
    }
    if reads(op, "object_lock"):
        assert env["PGRUNBOOK_OBJECT_LOCK"] == "governance"
    if reads(op, "thresholds_json"):
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
                "s3:ListBucketMultipartUploads",  # a killed run's open uploads, aborted
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
        (
            "status-page",  # reads the catalog and the reports, writes pages/: no database, no secret
            {
                "s3:ListBucket",
                "s3:GetObject",
                "s3:PutObject",
                "s3:AbortMultipartUpload",
                "kms:GenerateDataKey",
                "kms:Decrypt",
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
    # the status page: its pages and its own reports, nothing else
    writes = [
        s for s in role_statements(synthesized["primary"], "status-page") if "s3:PutObject" in actions_of([s])
    ]
    written = json.dumps([s["Resource"] for s in writes])
    assert "/pgrunbook/app/pages/*" in written and "/pgrunbook/app/reports/status-page/*" in written
    assert "/backups/" not in written
    # every listing is held to the database's prefix
    for template in (synthesized["primary"], synthesized["dr"]):
        for statement in [
            s
            for p in resources(template, "AWS::IAM::Policy").values()
            for s in p["Properties"]["PolicyDocument"]["Statement"]
        ]:
            if "s3:ListBucket" in actions_of([statement]):
                assert actions_of([statement]) == {"s3:ListBucket"}
                assert statement["Condition"] == {"StringLike": {"s3:prefix": ["pgrunbook/app/*"]}}


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
    """Short jobs: the schedule invokes the function.  The jobs that may outgrow Lambda (the
    default runner is auto): the schedule starts their dispatch state machine, with the
    function's own limits for the choice."""
    template = synthesized[stack]
    spec = registry.get(job).function
    if registry.get(job).task is None:
        target_arn = {"Fn::GetAtt": [function(template, job)["id"], "Arn"]}
        expected = event
    else:
        target_arn = {"Ref": state_machine(template, job)[0]}
        expected = {
            "operation": job,
            "options": event,
            "runner": "auto",
            "lambda": {"seconds": spec.timeout_minutes * 60, "disk_bytes": spec.ephemeral_mb * 1024 * 1024},
        }
    rules = [
        r["Properties"]
        for r in resources(template, "AWS::Events::Rule").values()
        if r["Properties"]["ScheduleExpression"] == expression
        and r["Properties"]["Targets"][0]["Arn"] == target_arn
    ]
    assert len(rules) == 1, (job, expression)
    [rule] = rules
    assert rule["State"] == ("ENABLED" if enabled else "DISABLED")
    [target] = rule["Targets"]
    assert json.loads(target["Input"]) == expected
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 7200, "MaximumRetryAttempts": 2}
    assert "DeadLetterConfig" in target


def state_machine(template: Template, job: str) -> tuple[str, dict]:
    """(logical id, properties) of ``pgrunbook-app-<job>``."""
    [(logical_id, machine)] = [
        (k, m)
        for k, m in resources(template, "AWS::StepFunctions::StateMachine").items()
        if m["Properties"]["StateMachineName"] == f"pgrunbook-app-{job}"
    ]
    return logical_id, machine["Properties"]


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
        ("primary", "RestoreTested-critical", "RestoreTested", 1, "LessThanThreshold", "notBreaching"),
        ("dr", "DrillTested-critical", "RestoreTested", 1, "LessThanThreshold", "notBreaching"),
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
        (
            {
                "dr_restore_target_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rt-AbCdEf"
            },
            "in the DR region",
        ),
        ({"restore_targets": {"subnet_group": "restore-targets"}}, "needs pgrunbook.vpc"),
        ({"restore_targets": {"rds": "sometimes"}}, "restore_targets.rds must be one of"),
        ({"restore_targets": {"security_groups": ["default"]}}, "list of sg-"),
        ({"restore_targets": {"zone": "a"}}, "unknown restore_targets"),
        ({"object_lock_mode": "none"}, "governance or compliance"),
        ({"thresholds": {"backup_age_hours": [48, 26]}}, "warning <= critical"),
        ({"schedules": {"weekly": "cron(0 1 * * ? *)"}}, "unknown schedules"),
        ({"bogus": 1}, "unknown pgrunbook settings"),
        ({"database_name": "App_DB"}, "lowercase"),
        ({"webhook": {"url": "http://hooks.example.com/x"}}, "webhook.url must be an https"),
        ({"webhook": {"url": "https://hooks.example.com/x"}}, "webhook.secret_arn must be"),
        ({"webhook": {"token": "x"}}, "unknown webhook"),
        ({"chat": {"slack": [{"workspace_id": "T0123"}]}}, "needs exactly workspace_id, channel_id"),
        ({"chat": {"teams": {"team_id": "x"}}}, "must be a list of channels"),
        ({"chat": {"discord": []}}, "unknown chat"),
    ],
)
def test_bad_configuration_is_refused_with_a_reason(changes, message):
    with pytest.raises(ConfigurationError, match=message):
        DeploymentConfig.from_context(context(**changes))


def test_chat_channels_and_a_webhook_get_what_they_need_and_nothing_else(variant, synthesized):
    """cdk.json's chat: a Chatbot configuration per channel on each stack's alerts topic; the
    channel role has no permissions and the guardrail denies every action (CloudFormation's
    default guardrail would be AdministratorAccess).  cdk.json's webhook: every function gets
    its URL and secret ARN and may read that one secret.  Without them (the default
    template) there is neither."""
    arn, hook = HOOK_SECRET, HOOK
    for template in (variant["primary"], variant["dr"]):
        [slack] = resources(template, "AWS::Chatbot::SlackChannelConfiguration").values()
        [teams] = resources(template, "AWS::Chatbot::MicrosoftTeamsChannelConfiguration").values()
        assert slack["Properties"]["SlackChannelId"] == "C0456EFGH"
        assert teams["Properties"]["TeamsTenantId"] == "a1b2c3d4-e5f6-a7b8-c9d0-e1f2a3b4c5d6"
        topics = list(resources(template, "AWS::SNS::Topic"))
        assert slack["Properties"]["SnsTopicArns"] == [{"Ref": topics[0]}]
        [guardrail] = resources(template, "AWS::IAM::ManagedPolicy").values()
        assert guardrail["Properties"]["PolicyDocument"]["Statement"] == [
            {"Action": "*", "Effect": "Deny", "Resource": "*"}
        ]
        for configuration in (slack, teams):
            assert len(configuration["Properties"]["GuardrailPolicies"]) == 1
        roles = [
            r
            for r in resources(template, "AWS::IAM::Role").values()
            if "chatbot.amazonaws.com" in json.dumps(r["Properties"]["AssumeRolePolicyDocument"])
        ]
        assert len(roles) == 1 and "Policies" not in roles[0]["Properties"]
        assert "ManagedPolicyArns" not in roles[0]["Properties"]
    template = variant["primary"]
    for job in ("backup", "verify", "restore-test", "retention", "health"):
        env = function(template, job)["Environment"]["Variables"]
        assert env["PGRUNBOOK_WEBHOOK_URL"] == hook["url"] and env["PGRUNBOOK_WEBHOOK_SECRET_ARN"] == arn
        readers = [s for s in role_statements(template, job) if s.get("Sid") == "WebhookSecret"]
        assert [r["Resource"] for r in readers] == [arn]
        assert actions_of(readers) == {"secretsmanager:GetSecretValue"}
    default = synthesized["primary"]
    assert resources(default, "AWS::Chatbot::SlackChannelConfiguration") == {}
    assert "PGRUNBOOK_WEBHOOK_URL" not in function(default, "backup")["Environment"]["Variables"]
    assert not [s for s in role_statements(default, "backup") if s.get("Sid") == "WebhookSecret"]


def test_functions_can_run_in_the_databases_vpc(variant):
    """RDS in private subnets: every function gets the VPC placement; nag stays clean."""
    for job in ("backup", "verify", "restore-test", "retention", "health"):
        assert function(variant["primary"], job)["VpcConfig"] == {
            "SubnetIds": ["subnet-0aaa1111", "subnet-0bbb2222"],
            "SecurityGroupIds": ["sg-0ccc3333"],
        }


# -- point-in-time recovery -------------------------------------------------------------------


def pitr_definition(template: Template) -> dict:
    [machine] = [
        m
        for m in resources(template, "AWS::StepFunctions::StateMachine").values()
        if m["Properties"]["StateMachineName"] == "pgrunbook-app-pitr"
    ]
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "FUNCTION" for p in parts)
    return {"machine": machine["Properties"], "definition": json.loads(text)}


def test_recovery_state_machine_orders_the_runbooks_phases(synthesized):
    found = pitr_definition(synthesized["primary"])
    machine, states = found["machine"], found["definition"]["States"]
    assert machine["StateMachineName"] == "pgrunbook-app-pitr"
    assert machine["TracingConfiguration"] == {"Enabled": True}
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert (
        machine["LoggingConfiguration"]["IncludeExecutionData"] is False
    )  # states carry no secrets, but keep it so
    chain, name = [], found["definition"]["StartAt"]
    while name in states and (states[name]["Type"] == "Task" or name.endswith("Runner?")):
        chain.append(name)
        # a long phase: the runner's choice, then (its Default) the phase on Lambda
        name = states[name]["Default"] if name.endswith("Runner?") else states[name]["Next"]
    assert chain == [
        "Validate", "Prepare",
        "ChooseSafetyPoint", "SafetyPointRunner?", "SafetyPoint",
        "Approval",
        "ChooseStartRecovery", "StartRecoveryRunner?", "StartRecovery",
    ]  # fmt: skip
    for phase in ("SafetyPoint", "StartRecovery"):  # or on Fargate, handed back by Collect
        [fargate] = states[f"{phase}Runner?"]["Choices"]
        assert fargate["Next"] == f"{phase}Task" and states[f"{phase}Task"]["Next"] == f"{phase}OnFargate"
        assert states[f"{phase}OnFargate"]["Resource"].endswith(":states:::ecs:runTask.sync")
        assert states[f"{phase}OnFargate"]["Next"] == f"Collect{phase}"
        assert states[f"Collect{phase}"]["Next"] == states[phase]["Next"]
        for state in (f"Choose{phase}", f"Collect{phase}", f"Examine{phase}"):
            assert states[state]["Catch"][0]["Next"] == f"{phase}Failed"
    approval = states["Approval"]
    assert approval["Resource"].endswith(":states:::lambda:invoke.waitForTaskToken")
    assert approval["TimeoutSecondsPath"] == "$.approval_timeout_seconds"
    assert approval["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"
    assert [c["ErrorEquals"] for c in approval["Catch"]] == [
        ["States.Timeout", "ApprovalRejected"],
        ["States.ALL"],
    ]
    assert states[approval["Catch"][0]["Next"]]["Next"] == "Aborted"
    # validation failures end before anything changed; later ones report and fail
    assert states[states["Validate"]["Catch"][0]["Next"]]["Type"] == "Fail"
    for task in ("Prepare", "SafetyPoint", "StartRecovery", "CheckProgress", "Verify", "Cutover", "Finish"):
        marker = states[states[task]["Catch"][0]["Next"]]
        assert marker["Type"] == "Pass" and marker["Next"] == "ReportFailure", task
    assert states["ReportFailure"]["Next"] == "Failed"
    assert states["Failed"] == {"Type": "Fail", "Error": "RecoveryFailed", "CausePath": "$.failure_message"}
    # the poll loop
    assert states["WaitForRecovery"]["SecondsPath"] == "$.poll_seconds"
    assert states["RecoveryDone?"]["Choices"][0]["Next"] == "Verify"
    assert states["RecoveryDone?"]["Default"] == "WaitForRecovery"


def test_recovery_start_retries_only_refusals(synthesized):
    states = pitr_definition(synthesized["primary"])["definition"]["States"]
    [retry] = states["StartRecovery"]["Retry"]
    assert sorted(retry["ErrorEquals"]) == ["Lambda.TooManyRequestsException", "ProviderThrottled"]
    for name, state in states.items():
        for rule in state.get("Retry", []):
            assert not {"States.ALL", "States.TaskFailed", "ProviderError", "RecoveryFailed"} & set(
                rule["ErrorEquals"]
            ), name


def test_recovery_function_grants(synthesized):
    template = synthesized["primary"]
    fn = function(template, "pitr")
    assert fn["Timeout"] == 900 and fn["EphemeralStorage"] == {"Size": 10240}
    env = fn["Environment"]["Variables"]
    assert env["PGRUNBOOK_MAINTENANCE_PARAMETER"] == "/pgrunbook/app/maintenance"
    assert env["PGRUNBOOK_PITR_PROVIDER"] == "logical"
    statements = role_statements(template, "pitr")
    [ssm] = [s for s in statements if any(a.startswith("ssm:") for a in actions_of([s]))]
    assert set(actions_of([ssm])) == {"ssm:GetParameter", "ssm:PutParameter"}
    assert json.dumps(ssm["Resource"]).endswith(':parameter/pgrunbook/app/maintenance"]]}')
    [secret] = [s for s in statements if "secretsmanager:PutSecretValue" in actions_of([s])]
    assert secret["Resource"] == context()["database_secret_arn"]
    assert not [a for a in actions_of(statements) if a.startswith("rds:")]
    # the state machine may invoke the recovery function and nothing else
    [machine_role] = [
        p for p in resources(template, "AWS::IAM::Policy").values()
        if "PitrWorkflowStateMachine" in json.dumps(p["Properties"]["Roles"]) and "lambda:InvokeFunction" in json.dumps(p)
    ]  # fmt: skip
    invoke = [
        s
        for s in machine_role["Properties"]["PolicyDocument"]["Statement"]
        if "lambda:InvokeFunction" in json.dumps(s)
    ]
    assert {json.dumps(r) for s in invoke for r in s["Resource"]} == {
        json.dumps({"Fn::GetAtt": [fn["id"], "Arn"]}),
        json.dumps({"Fn::Join": ["", [{"Fn::GetAtt": [fn["id"], "Arn"]}, ":*"]]}),
    }


def test_recovery_alarms_and_outputs(synthesized):
    template = synthesized["primary"]
    alarms = {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
    }
    for name in ("pgrunbook-app-pitr-executionstimedout", "pgrunbook-app-pitr-executionsaborted"):
        assert alarms[name]["Threshold"] == 0 and alarms[name]["Namespace"] == "AWS/States"
    outputs = template.to_json()["Outputs"]
    assert (
        "PitrStateMachineArn" in outputs
        and outputs["MaintenanceParameter"]["Value"] == "/pgrunbook/app/maintenance"
    )


@pytest.mark.parametrize(
    ("pitr", "message"),
    [
        ({"provider": "pgbackrest"}, "provider must be one of logical, supabase, rds"),
        ({"provider": "supabase"}, "supabase_project_ref"),
        ({"provider": "supabase", "supabase_project_ref": "abcdefgh12"}, "not a Supabase project reference"),
        (
            {"provider": "supabase", "supabase_project_ref": "abcdefghijklmnopqrst"},
            "supabase_token_secret_arn",
        ),
        ({"provider": "rds"}, "exactly one of rds_instance and rds_cluster"),
        ({"provider": "rds", "rds_instance": "a", "rds_cluster": "b"}, "exactly one"),
        ({"approval_timeout_minutes": 0}, "approval_timeout_minutes"),
        ({"critical_tables": "tasks"}, "critical_tables"),
    ],
)
def test_recovery_configuration_is_validated(pitr, message):
    with pytest.raises(ConfigurationError, match=message):
        DeploymentConfig.from_context(context(pitr=pitr))


def test_supabase_recovery_grants_read_the_token_and_can_back_up(tmp_path):
    token = "arn:aws:secretsmanager:us-east-1:123456789012:secret:pgrunbook/supabase-token-AbCdEf"
    pitr = {
        "provider": "supabase",
        "supabase_project_ref": "abcdefghijklmnopqrst",
        "supabase_token_secret_arn": token,
    }
    app = cdk.App(
        outdir=str(tmp_path),
        context={**CDK_CONTEXT, "pgrunbook": context(pitr=pitr), "aws:cdk:bundling-stacks": []},
    )
    primary, _ = build(app)
    statements = role_statements(Template.from_stack(primary), "pitr")
    [api] = [s for s in statements if s["Resource"] == token]
    assert actions_of([api]) == {"secretsmanager:GetSecretValue"}
    # in place: the database secret is only read
    assert "secretsmanager:PutSecretValue" not in actions_of(statements)
    # the fallback safety point is a pgrunbook backup: its files and its report may be written
    writes = [s for s in statements if "s3:PutObject" in actions_of([s])]
    text = json.dumps(writes)
    assert "/backups/" in text and "/reports/backup/" in text
    assert not [a for a in actions_of(statements) if a.startswith("rds:")]


def test_rds_recovery_grants_name_the_source(variant):
    statements = role_statements(variant["primary"], "pitr")  # pitr: provider rds, rds_instance app-db
    [rds] = [s for s in statements if any(a.startswith("rds:") for a in actions_of([s]))]
    assert "rds:RestoreDBInstanceToPointInTime" in actions_of([rds])
    assert not {"rds:DeleteDBInstance", "rds:ModifyDBInstance"} & actions_of([rds])
    text = json.dumps(rds["Resource"])
    assert ":db:app-db" in text and ":db:app-db-pitr-*" in text and ":snapshot:app-db-pre-pitr-*" in text


# -- schema migrations ---------------------------------------------------------------------------


def machine_definition(template: Template, name: str) -> dict:
    [machine] = [
        m
        for m in resources(template, "AWS::StepFunctions::StateMachine").values()
        if m["Properties"]["StateMachineName"] == name
    ]
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "X" for p in parts))


def test_migration_state_machine_rehearses_before_it_applies(synthesized):
    states = machine_definition(synthesized["primary"], "pgrunbook-app-migrate")["States"]
    assert states["Lint"]["Next"] == "AnythingPending?"
    # the long phases (backup, dry run, apply) start with the choice of their runner
    assert states["AnythingPending?"]["Default"] == "ChooseBackup"
    assert states["BackupRunner?"]["Default"] == "Backup"
    assert states["Backup"]["Next"] == states["CollectBackup"]["Next"] == "ChooseDryRun"
    assert states["DryRun"]["Next"] == states["CollectDryRun"]["Next"] == "ApprovalRequired?"
    assert {c["Next"] for c in states["ApprovalRequired?"]["Choices"]} == {"Approval"}
    assert states["ApprovalRequired?"]["Default"] == "ChooseApply"
    assert states["Approval"]["Next"] == "ChooseApply"
    assert states["Apply"]["Next"] == states["CollectApply"]["Next"] == "AllApplied?"
    for name in ("Backup", "DryRun", "Apply"):  # a phase on Fargate is never started twice
        assert states[f"PlatformStop{name}?"]["Default"] == f"{name}Failed"
    assert states["Approval"]["Resource"].endswith(":states:::lambda:invoke.waitForTaskToken")
    assert states["AllApplied?"]["Default"] == "Rollback" and states["Verified?"]["Default"] == "Rollback"
    assert states["Rollback"]["Next"] == "ReportFailure"
    # a migration that may have run is never run again by a retry
    for name in ("Apply", "Rollback", "Backup", "DryRun"):
        assert [r["ErrorEquals"] for r in states[name].get("Retry", [])] == [
            ["Lambda.TooManyRequestsException"]
        ], name


def test_migration_function_grants_and_settings(synthesized):
    template = synthesized["primary"]
    fn = function(template, "migrate")
    env = fn["Environment"]["Variables"]
    assert env["PGRUNBOOK_MIGRATION_APPROVAL"] == "on" and env["PGRUNBOOK_LOCK_TIMEOUT"] == "5s"
    statements = role_statements(template, "migrate")
    actions = actions_of(statements)
    assert "secretsmanager:PutSecretValue" not in actions and not [a for a in actions if a.startswith("ssm:")]
    secrets = {
        json.dumps(s["Resource"]) for s in statements if "secretsmanager:GetSecretValue" in actions_of([s])
    }
    # a default deployment restores into the embedded server: no restore-target secret
    assert secrets == {json.dumps(context()["database_secret_arn"])}


def test_migration_approval_can_be_switched_off_in_context(variant):
    variables = function(variant["primary"], "migrate")["Environment"]["Variables"]
    assert variables["PGRUNBOOK_MIGRATION_APPROVAL"] == "off"
    with pytest.raises(ConfigurationError, match="lock_timeout"):
        DeploymentConfig.from_context(context(migrations={"lock_timeout": "soon"}))
    with pytest.raises(ConfigurationError, match="unknown migrations"):
        DeploymentConfig.from_context(context(migrations={"aproval": False}))


# -- table recovery ------------------------------------------------------------------------------


def test_table_recovery_state_machine_repairs_only_after_approval(synthesized):
    template = synthesized["primary"]
    states = machine_definition(template, "pgrunbook-app-recover-tables")["States"]
    assert states["Validate"]["Next"] == "ChooseRestore"  # a long phase: its runner's choice first
    assert states[states["Validate"]["Catch"][0]["Next"]] == {
        "Type": "Fail",
        "ErrorPath": "$.error.Error",
        "CausePath": "$.error.Cause",
    }
    assert states["RestoreRunner?"]["Default"] == "Restore"
    assert states["Restore"]["Next"] == states["CollectRestore"]["Next"] == "Diff"
    assert states["Diff"]["Next"] == "AnythingToRepair?"
    [repair] = states["AnythingToRepair?"]["Choices"]
    assert repair["Variable"] == "$.repair_needed" and repair["Next"] == "Approval"
    assert states["AnythingToRepair?"]["Default"] == "Finish"  # nothing to repair: no approval
    approval = states["Approval"]
    assert approval["Resource"].endswith(":states:::lambda:invoke.waitForTaskToken")
    assert approval["TimeoutSecondsPath"] == "$.approval_timeout_seconds"
    assert approval["Catch"][0]["ErrorEquals"] == ["States.Timeout", "ApprovalRejected"]
    assert states[approval["Catch"][0]["Next"]]["Next"] == "Aborted"  # Abort drops the copy
    assert approval["Next"] == "ChooseApply"
    assert states["Apply"]["Next"] == states["CollectApply"]["Next"] == "Verify"
    assert states["Verify"]["Next"] == "Finish" and states["Finish"]["Next"] == "Repaired?"
    for task in ("Restore", "Diff", "Apply", "Verify", "Finish", "ChooseRestore", "CollectApply"):
        marker = states[states[task]["Catch"][0]["Next"]]
        assert marker["Type"] == "Pass" and marker["Next"] == "ReportFailure", task
    assert states["Failed"] == {
        "Type": "Fail",
        "Error": "TableRecoveryFailed",
        "CausePath": "$.failure_message",
    }
    # what restores or writes the live tables is never run twice by a retry
    for name in ("Restore", "Apply"):
        assert [r["ErrorEquals"] for r in states[name]["Retry"]] == [["Lambda.TooManyRequestsException"]]
        assert states[f"PlatformStop{name}?"]["Default"] == f"{name}Failed"
    assert "ConnectionLost" in states["Diff"]["Retry"][0]["ErrorEquals"]
    outputs = template.to_json()["Outputs"]
    assert "TableRecoveryStateMachineArn" in outputs
    assert (
        "PGRUNBOOK_RECOVER_TABLES_STATE_MACHINE_ARN" in outputs["TableRecoveryStateMachineArn"]["Description"]
    )
    alarms = {a["Properties"]["AlarmName"] for a in resources(template, "AWS::CloudWatch::Alarm").values()}
    assert "pgrunbook-app-recover-tables-executionstimedout" in alarms


def test_table_recovery_function_grants_are_least_privilege(synthesized):
    template = synthesized["primary"]
    env = function(template, "recover-tables")["Environment"]["Variables"]
    assert env["PGRUNBOOK_PITR_APPROVAL_TIMEOUT"] == "3600" and env["PGRUNBOOK_DR_BUCKET"]
    assert not [k for k in env if "MIGRATION" in k or "MAINTENANCE" in k or "PITR_PROVIDER" in k]
    statements = role_statements(template, "recover-tables")
    actions = actions_of(statements)
    assert actions - {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "sns:Publish",
        "kms:GenerateDataKey*",
    } == {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "kms:GenerateDataKey",
        "kms:Decrypt",
        "secretsmanager:GetSecretValue",
    }
    # the database's secret, read only; nothing of RDS, SSM, Object Lock
    secrets = [s for s in statements if "secretsmanager:GetSecretValue" in actions_of([s])]
    assert [s["Resource"] for s in secrets] == [context()["database_secret_arn"]]

    def paths(action: str) -> set[str]:
        found = set()
        for s in statements:
            if action in actions_of([s]):
                for r in s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]:
                    text = json.dumps(r)
                    found.add(text[text.index("/pgrunbook/app/") + len("/pgrunbook/app/") :].split('"')[0])
        return found

    # backups are read in both regions, never written or deleted
    assert paths("s3:GetObject") == {
        "backups/*",
        "reports/backup/*",
        "reports/recover-tables/*",
        "reports/restore-test/*",
        "runs/*",
    }
    assert paths("s3:PutObject") == {"leases/*", "reports/recover-tables/*", "runs/*"}
    assert paths("s3:DeleteObject") == {"leases/*", "runs/*"}
    backups = [s for s in statements if s.get("Sid") in ("PrimaryBackups", "DrBackups")]
    assert len(backups) == 2 and {tuple(actions_of([s])) for s in backups} == {("s3:GetObject",)}
    assert ":us-west-2:" in json.dumps([s for s in statements if s.get("Sid") == "DrKey"])


# -- restore targets ----------------------------------------------------------------------------


def test_a_default_deployment_needs_no_restore_target_secret(synthesized):
    """Only the database's secret: restore tests and drills use the embedded server."""
    for stack, job in (("primary", "restore-test"), ("dr", "dr-drill")):
        template = synthesized[stack]
        statements = role_statements(template, job)
        secrets = [s for s in statements if any(a.startswith("secretsmanager:") for a in actions_of([s]))]
        assert secrets == [], job  # neither the database's nor a restore target's
        env = function(template, job)["Environment"]["Variables"]
        assert not [k for k in env if "RESTORE_TARGET" in k or "RESTORE_RDS_SUBNET" in k]
        assert not [a for a in actions_of(statements) if a.startswith("rds:")]
        states = restore_machine(template, job)["States"]
        assert "Provision" not in states and "RunOnFargate" in states  # the dispatch, no RDS target


def restore_machine(template: Template, job: str) -> dict:
    [machine] = [
        m for m in resources(template, "AWS::StepFunctions::StateMachine").values()
        if m["Properties"]["StateMachineName"] == f"pgrunbook-app-{job}"
    ]  # fmt: skip
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "X" for p in parts))


def test_throwaway_rds_targets_deploy_a_restore_workflow_that_always_deletes(variant):
    # the variant's synthesis ran cdk-nag: every wildcard is acknowledged with its reason
    for template, job, group, vpc in (
        (variant["primary"], "restore-test", "restore-targets", VPC),
        (variant["dr"], "dr-drill", "dr-restore-targets", DR_VPC),
    ):
        states = restore_machine(template, job)["States"]
        # every failure after provisioning goes through the teardown before it is reported
        for task in ("Provision", "CheckTarget", "Run"):
            marker = states[states[task]["Catch"][0]["Next"]]
            assert marker["Type"] == "Pass" and marker["Next"] == "TeardownAfterFailure", task
        assert states["TeardownAfterFailure"]["Next"] == "ReportFailure"
        assert states["Run"]["Next"] == "Teardown" and states["Teardown"]["Next"] == "Tested"
        assert states["ThrowawayTarget?"]["Default"] == "ChooseRunHere"
        assert states["RunHereRunner?"]["Default"] == "RunHere"
        assert states["CollectRun"]["Next"] == "Teardown"  # the restore on Fargate: teardown too
        assert [r["ErrorEquals"] for r in states["Run"].get("Retry", [])] == [
            ["Lambda.TooManyRequestsException"]
        ]
        # the schedules start the state machine, with the operation and its options
        rules = [r["Properties"] for r in resources(template, "AWS::Events::Rule").values()]
        [rule] = [r for r in rules if job in r.get("Description", "")]
        [target] = rule["Targets"]
        assert json.loads(target["Input"])["operation"] == job and "DeadLetterConfig" in target
        fn = function(template, job)
        assert fn["VpcConfig"]["SubnetIds"] == vpc["subnet_ids"]
        env = fn["Environment"]["Variables"]
        prefix = "PGRUNBOOK_DR_" if job == "dr-drill" else "PGRUNBOOK_"
        assert env[f"{prefix}RESTORE_RDS_SUBNET_GROUP"] == group
        statements = {s.get("Sid", str(i)): s for i, s in enumerate(role_statements(template, job))}
        create = statements["RestoreTargetCreate"]
        assert create["Condition"] == {"StringEquals": {"aws:RequestTag/pgrunbook:purpose": "restore-target"}}
        assert "db:pgrunbook-app-rt-*" in json.dumps(create["Resource"]) and f"subgrp:{group}" in json.dumps(
            create["Resource"]
        )
        delete = statements["RestoreTargetDelete"]
        assert delete["Condition"] == {"StringEquals": {"rds:db-tag/pgrunbook:purpose": "restore-target"}}
        assert actions_of([delete]) == {"rds:DeleteDBInstance"}
        every = actions_of(list(statements.values()))
        assert (
            not {"rds:ModifyDBInstance", "rds:RestoreDBInstanceToPointInTime", "rds:DeleteDBCluster"} & every
        )
        assert "secret:rds!db-*" in json.dumps(statements["RestoreTargetSecret"]["Resource"])


@pytest.mark.parametrize("operation", ["backup", "restore-test", "migrate", "pitr", "recover-tables"])
def test_a_dispatched_operation_can_read_the_reports_its_runner_is_chosen_from(synthesized, operation):
    """The dispatch's choose (a job) and choose_phase (a workflow's long phase) run in the
    operation's own function and read the last report of the operation, of the backup or of
    the restore test (moto does not enforce IAM: this is where a missing grant shows)."""
    statements = role_statements(synthesized["primary"], operation)
    readable = set()
    for s in statements:
        if "s3:GetObject" in actions_of([s]):
            for r in s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]:
                text = json.dumps(r)
                if "/reports/" in text:
                    readable.add(text[text.index("/reports/") + 1 :].split('"')[0])
    assert {f"reports/{operation}/*", "reports/backup/*", "reports/restore-test/*"} <= readable, readable
    assert "s3:ListBucket" in actions_of(statements)
