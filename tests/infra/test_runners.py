"""The runners as deployed: each long job's Fargate task definition and the dispatch state
machine its schedules start (the template, synthesized with cdk-nag on)."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk
from aws_cdk.assertions import Template

from infra.app import build
from infra.config import ConfigurationError, DeploymentConfig
from infra.constructs.runners import IMAGE, USER, bootstrap_source
from pgrunbook.domain.metrics import NAMESPACE
from tests.infra.test_stacks import (
    CDK_CONTEXT,
    actions_of,
    context,
    function,
    resources,
    role_statements,
    state_machine,
)

LONG_JOBS = (("primary", "backup"), ("primary", "restore-test"), ("dr", "dr-drill"))


def task_definition(template: Template, job: str) -> dict:
    [definition] = [
        d["Properties"]
        for d in resources(template, "AWS::ECS::TaskDefinition").values()
        if d["Properties"]["Family"] == f"pgrunbook-app-{job}"
    ]
    return definition


def task_role_statements(template: Template, job: str) -> list[dict]:
    role_id = task_definition(template, job)["TaskRoleArn"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def definition(template: Template, job: str) -> dict:
    parts = state_machine(template, job)[1]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "X" for p in parts))


def synth(tmp_path, **changes) -> tuple[Template, Template]:
    app = cdk.App(
        outdir=str(tmp_path),
        context={**CDK_CONTEXT, "pgrunbook": context(**changes), "aws:cdk:bundling-stacks": []},
    )
    primary, dr = build(app)
    app.synth()  # cdk-nag: raises on any finding not acknowledged with its reason
    return Template.from_stack(primary), Template.from_stack(dr)


@pytest.mark.parametrize(("stack", "job"), LONG_JOBS)
def test_each_long_job_has_a_fargate_task_on_a_stock_image_with_200_gib(stack, job, synthesized):
    template = synthesized[stack]
    task = task_definition(template, job)
    assert (task["Cpu"], task["Memory"]) == ("4096", "16384")
    assert task["EphemeralStorage"] == {"SizeInGiB": 200}
    assert task["RequiresCompatibilities"] == ["FARGATE"] and task["NetworkMode"] == "awsvpc"
    assert task["RuntimePlatform"] == {"CpuArchitecture": "X86_64", "OperatingSystemFamily": "LINUX"}
    [container] = task["ContainerDefinitions"]
    assert container["Image"] == IMAGE  # no image is built
    assert container["EntryPoint"] == ["python3", "-c"] and container["Command"] == [bootstrap_source()]
    assert container["User"] == USER  # not root: the embedded server runs as this user
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["PGRUNBOOK_OPERATION"] == job
    layers = env["PGRUNBOOK_LAYERS"]
    assert layers.count("s3://") == 2  # the two layer archives the functions use (CDK assets)
    # the same settings as the function's, the work directory on the task's ephemeral storage
    fn_env = function(template, job)["Environment"]["Variables"]
    for name, value in fn_env.items():
        if name.startswith("PGRUNBOOK_") and name not in ("PGRUNBOOK_WORK_DIR", "PGRUNBOOK_HOME"):
            assert env[name] == value, name
    assert env["PGRUNBOOK_WORK_DIR"].startswith("/tmp/") and env["PGRUNBOOK_LAYER_ROOT"].startswith("/tmp/")
    assert not [k for k in env if "PASSWORD" in k or k == "PGRUNBOOK_DATABASE_URL"]
    logging = container["LogConfiguration"]
    assert logging["LogDriver"] == "awslogs"
    group_id = logging["Options"]["awslogs-group"]["Ref"]
    group = resources(template, "AWS::Logs::LogGroup")[group_id]["Properties"]
    assert group["LogGroupName"] == f"/pgrunbook/tasks/pgrunbook-app-{job}" and group["RetentionInDays"] == 90


@pytest.mark.parametrize(("stack", "job"), LONG_JOBS)
def test_the_task_role_has_the_functions_grants_and_nothing_broader(stack, job, synthesized):
    template = synthesized[stack]
    task = task_role_statements(template, job)
    function_actions = actions_of(role_statements(template, job))
    # the function's own: its logs, X-Ray, and CDK's grant for its on-failure destination
    own = {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "kms:GenerateDataKey*",
    }
    assert actions_of(task) == (function_actions - own) | {"s3:GetObject", "cloudwatch:PutMetricData"}
    [layers] = [s for s in task if s.get("Sid") == "Layers"]
    assert len(layers["Resource"]) == 2  # exactly the two archives, not the asset bucket
    for resource in layers["Resource"]:
        assert "/*" not in json.dumps(resource)
    [metrics] = [s for s in task if s.get("Sid") == "Metrics"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": NAMESPACE}}
    roles = resources(template, "AWS::IAM::Role")
    role_id = task_definition(template, job)["TaskRoleArn"]["Fn::GetAtt"][0]
    assert "ManagedPolicyArns" not in roles[role_id]["Properties"]
    assert roles[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "ecs-tasks.amazonaws.com"
    }


@pytest.mark.parametrize(("stack", "job"), LONG_JOBS)
def test_the_dispatch_chooses_retries_platform_stops_and_reports_failures(stack, job, synthesized):
    states = definition(synthesized[stack], job)
    flow = states["States"]
    assert states["StartAt"] == "Choose"
    assert flow["Choose"]["Next"] == "Runner?"
    [when] = flow["Runner?"]["Choices"]
    assert when == {"Variable": "$.choice.runner", "StringEquals": "fargate", "Next": "TaskOverride"}
    assert flow["Runner?"]["Default"] == "RunOnLambda"
    fargate = flow["RunOnFargate"]
    assert fargate["Resource"].endswith(":states:::ecs:runTask.sync")
    [override] = fargate["Parameters"]["Overrides"]["ContainerOverrides"]
    assert override["Environment"] == [{"Name": "PGRUNBOOK_TASK", "Value.$": "States.JsonToString($.task)"}]
    assert fargate["Parameters"]["LaunchType"] == "FARGATE"
    assert fargate["Parameters"]["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "ENABLED"
    [retry] = fargate["Retry"]
    assert retry["ErrorEquals"] == [
        "ECS.AmazonECSException",
        "ECS.ServerException",
        "ECS.LimitExceededException",
    ]
    assert [c["Next"] for c in fargate["Catch"]] == ["Examine"]
    assert flow["Examine"]["Next"] == "PlatformStop?"
    [again] = flow["PlatformStop?"]["Choices"]
    assert again["Next"] == "WaitToRetry" and flow["PlatformStop?"]["Default"] == "ReportFailure"
    assert flow["WaitToRetry"]["Next"] == "RunOnFargate"
    on_lambda = flow["RunOnLambda"]
    assert on_lambda["Parameters"] == {"options.$": "$.options", "runner.$": "$.choice"}
    assert [(c["ErrorEquals"], c["Next"]) for c in on_lambda["Catch"]] == [
        (["DiskTooSmall"], "OnFargateInstead"),
        (["States.ALL"], "ReportFailure"),
    ]
    assert flow["OnFargateInstead"]["Next"] == "TaskOverride"
    assert flow["Reported?"]["Default"] == "ReportFailure"
    assert flow["ReportFailure"]["Next"] == "Failed"
    for phase, title in (("choose", "Choose"), ("examine", "Examine"), ("fail", "ReportFailure")):
        assert flow[title]["Parameters"]["phase"] == phase
        assert flow[title]["Parameters"]["workflow"] == "dispatch"


def test_the_tasks_network_has_no_ingress_and_no_nat_by_default(synthesized):
    template = synthesized["primary"]
    assert resources(template, "AWS::EC2::NatGateway") == {}
    [group] = [
        g["Properties"]
        for g in resources(template, "AWS::EC2::SecurityGroup").values()
        if g["Properties"]["GroupDescription"].startswith("pgrunbook tasks")
    ]
    assert "SecurityGroupIngress" not in group
    assert len(resources(template, "AWS::EC2::FlowLog")) == 1
    assert len(resources(template, "AWS::ECS::Cluster")) == 1  # one per region, both jobs' tasks


def test_runner_lambda_per_operation_and_a_private_network(tmp_path):
    """runner per operation: only restore-test is dispatched (forced onto Fargate); the other
    jobs are scheduled straight to their functions.  network vpc: the task runs in the
    database's subnets without a public IP, and the stack makes no VPC of its own."""
    vpc = {
        "vpc_id": "vpc-0abc1234",
        "availability_zones": ["us-east-1a", "us-east-1b"],
        "subnet_ids": ["subnet-0aaa1111", "subnet-0bbb2222"],
        "security_group_ids": ["sg-0ccc3333"],
    }
    primary, dr = synth(
        tmp_path,
        vpc=vpc,
        runner={"default": "lambda", "restore-test": "fargate"},
        fargate={"network": "vpc", "cpu": 8192, "memory_mib": 32768},
    )
    machines = {
        m["Properties"]["StateMachineName"]
        for m in resources(primary, "AWS::StepFunctions::StateMachine").values()
    }
    assert "pgrunbook-app-restore-test" in machines and "pgrunbook-app-backup" not in machines
    assert resources(dr, "AWS::ECS::TaskDefinition") == {}  # the drill stays on Lambda
    assert (
        task_definition(primary, "restore-test")["Cpu"],
        task_definition(primary, "restore-test")["Memory"],
    ) == (
        "8192",
        "32768",
    )
    network = definition(primary, "restore-test")["States"]["RunOnFargate"]["Parameters"][
        "NetworkConfiguration"
    ]
    assert network["AwsvpcConfiguration"]["Subnets"] == ["subnet-0aaa1111", "subnet-0bbb2222"]
    assert network["AwsvpcConfiguration"]["SecurityGroups"] == ["sg-0ccc3333"]
    assert network["AwsvpcConfiguration"].get("AssignPublicIp", "DISABLED") == "DISABLED"
    assert resources(primary, "AWS::EC2::VPC") == {}
    [rule] = [
        r["Properties"]
        for r in resources(primary, "AWS::Events::Rule").values()
        if r["Properties"]["ScheduleExpression"] == "cron(0 5 ? * SUN *)"
    ]
    assert json.loads(rule["Targets"][0]["Input"])["runner"] == "fargate"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"runner": "sometimes"}, "runner must be one of auto, lambda, fargate"),
        ({"runner": {"verify": "fargate"}}, "runner names verify"),
        ({"runner": {"backup": "big"}}, "runner.backup must be one of"),
        ({"fargate": {"cpu": 3000}}, "fargate.cpu must be one of"),
        (
            {"fargate": {"cpu": 1024, "memory_mib": 16384}},
            "memory_mib must be a multiple of 1024 from 2048 to 8192",
        ),
        ({"fargate": {"network": "vpc"}}, "set pgrunbook.vpc"),
        ({"fargate": {"disk": 500}}, "unknown fargate"),
    ],
)
def test_bad_runner_configuration_is_refused_with_a_reason(changes, message):
    with pytest.raises(ConfigurationError, match=message):
        DeploymentConfig.from_context(context(**changes))


@pytest.mark.parametrize("stack", ["primary", "dr"])
def test_phase_handoffs_a_failed_run_left_expire(stack, synthesized):
    """Collect deletes a phase's handoff; a run that died before it leaves it 7 days at most."""
    [bucket] = [
        b["Properties"]
        for b in resources(synthesized[stack], "AWS::S3::Bucket").values()
        if b["Properties"].get("ObjectLockEnabled")
    ]
    [rule] = [r for r in bucket["LifecycleConfiguration"]["Rules"] if r["Id"] == "expire-phase-handoffs"]
    assert rule == {
        "Id": "expire-phase-handoffs",
        "Prefix": "pgrunbook/app/runs/",
        "ExpirationInDays": 7,
        "Status": "Enabled",
    }
