"""The restore workflow (a scheduled restore test on a throwaway RDS target) as the CDK app
synthesizes it, executed by moto's Step Functions with the real handler in this process.

The instance moto creates is served by the embedded target server (its endpoint patched, as
in tests/operations/test_rds_targets.py): the restore and verification are real, and so is
the teardown the state machine must reach on success and on failure.
"""

from __future__ import annotations

import json

import boto3
import pytest
from moto.core.config import default_user_config
from moto.rds import models as rds_models

from pgrunbook.catalog.reports import ReportStore
from pgrunbook.operations.context import OperationContext, run_operation
from pgrunbook.settings.model import Settings
from tests.lambda_env import ACCOUNT, Context, Inbox, load_handler
from tests.rds_env import restore_network, serve_instances_from
from tests.workflows.conftest import ROOT, create_function, function_arn, run_to_end

REGION = "us-east-1"
SQL = """
CREATE TABLE invoices (id int PRIMARY KEY, amount numeric(12, 2));
INSERT INTO invoices SELECT g, g * 3.25 FROM generate_series(1, 2500) g;
"""
VPC = {
    "vpc_id": "vpc-0abc1234",
    "availability_zones": ["us-east-1a", "us-east-1b"],
    "subnet_ids": ["subnet-0aaa1111", "subnet-0bbb2222"],
    "security_group_ids": ["sg-0ccc3333"],
}


@pytest.fixture(scope="module")
def definition(tmp_path_factory) -> str:
    """The restore-test state machine of a deployment with throwaway RDS targets."""
    import aws_cdk as cdk

    from infra.app import build

    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    app = cdk.App(
        outdir=str(tmp_path_factory.mktemp("cdk.out")),
        context={
            **context,
            "pgrunbook": {
                **context["pgrunbook"],
                "account": ACCOUNT,
                "vpc": VPC,
                "restore_targets": {
                    "subnet_group": "restore-targets",
                    "security_groups": ["sg-0123456789abcdef0"],
                },
                "runner": {"default": "auto", "restore-test": "lambda"},  # the restore itself in Lambda
            },
            "aws:cdk:bundling-stacks": [],
        },
    )
    primary, _ = build(app)
    template = cdk.assertions.Template.from_stack(primary).to_json()
    [machine] = [
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::StepFunctions::StateMachine"
        and r["Properties"]["StateMachineName"] == "pgrunbook-app-restore-test"
    ]
    functions = {
        k
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"].get("FunctionName") == "pgrunbook-app-restore-test"
    }
    out = []
    for part in machine["Properties"]["DefinitionString"]["Fn::Join"][1]:
        if isinstance(part, str):
            out.append(part)
        elif part == {"Ref": "AWS::Partition"}:
            out.append("aws")
        elif "Fn::GetAtt" in part and part["Fn::GetAtt"][0] in functions:
            out.append(function_arn("restore-test"))
        else:
            raise AssertionError(f"unexpected reference in the definition: {part}")
    return "".join(out)


@pytest.fixture(scope="module")
def fargate_template(tmp_path_factory) -> dict:
    """The same deployment with the restore itself on Fargate (runner fargate)."""
    from tests.workflows.conftest import synthesize

    return synthesize(
        tmp_path_factory,
        vpc=VPC,
        restore_targets={"subnet_group": "restore-targets", "security_groups": ["sg-0123456789abcdef0"]},
        runner={"default": "auto", "restore-test": "fargate"},
    )


@pytest.fixture
def flow(definition, s3, new_db, pg18_target, monkeypatch, tmp_path):
    monkeypatch.setitem(default_user_config, "stepfunctions", {"execute_state_machine": True})
    handler = load_handler("restore-test")

    def invoke_in_process(self, event=None):
        payload = json.loads(event) if isinstance(event, str | bytes) else event
        try:
            result = handler(payload, Context(function_name=self.function_name))
        except Exception as exc:
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}), True, ""
        return json.dumps(result), False, ""

    monkeypatch.setattr("moto.awslambda.models.LambdaFunction._invoke_lambda", invoke_in_process)
    monkeypatch.setattr(
        "moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function.WaitFunction._wait_interval",
        lambda self, env, wait_seconds: None,
    )
    serve_instances_from(pg18_target, monkeypatch)  # the instances moto creates answer there
    restore_network(REGION, monkeypatch)
    inbox = Inbox(REGION)
    source = new_db(sql=SQL)
    variables = {
        **s3.variables(),
        "PGRUNBOOK_DATABASE_URL": source.libpq_uri(),
        "PGRUNBOOK_SNS_TOPIC_ARN": inbox.topic_arn,
        "PGRUNBOOK_RESTORE_RDS": "always",
        "PGRUNBOOK_RESTORE_RDS_SUBNET_GROUP": "restore-targets",
        "PGRUNBOOK_WORK_DIR": str(tmp_path),
        "PGRUNBOOK_HOME": str(tmp_path / "home"),
        "PGRUNBOOK_CREATED_BY": "pytest",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "pgrunbook",
    }
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    assert run_operation("backup", OperationContext(Settings.load())).status == "ok"
    inbox.messages()

    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="restore-test-function", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    create_function("pgrunbook-app-restore-test", role)
    machine = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
        name="pgrunbook-app-restore-test", definition=definition, roleArn=role
    )["stateMachineArn"]
    return machine, inbox


def execute(machine: str, options: dict) -> tuple[dict, list[str]]:
    return run_to_end(machine, {"operation": "restore-test", "options": options})


def instances() -> dict[str, str]:
    rds = boto3.client("rds", region_name=REGION)
    return {
        i["DBInstanceIdentifier"]: i["DBInstanceStatus"] for i in rds.describe_db_instances()["DBInstances"]
    }


def test_a_scheduled_restore_test_on_a_throwaway_target_restores_and_deletes_it(flow):
    machine, inbox = flow
    done, entered = execute(machine, {"prefer_tier": "weekly"})
    assert done["status"] == "SUCCEEDED", done.get("cause")
    assert [s for s in entered if s in ("Plan", "Provision", "CheckTarget", "Run", "Teardown", "Tested")] == [
        "Plan", "Provision", "CheckTarget", "Run", "Teardown", "Tested",
    ]  # fmt: skip
    assert set(instances().values()) <= {"deleting"}  # the one it made, on its way out
    output = json.loads(done["output"])
    assert output["report"]["status"] == "ok" and output["target"]["deleted"] in ("deleting", "gone")
    [report] = ReportStore(Settings.load().primary_store()).history("restore-test")
    assert report.status == "ok" and report.figures["integrity_pct"] == 100.0
    assert inbox.messages() == []  # nothing to say: it passed


def test_a_run_that_fails_on_its_target_still_deletes_it_and_reports(flow, monkeypatch):
    machine, inbox = flow
    # the instance answers nowhere: the restore cannot connect
    monkeypatch.setattr(rds_models.DBInstance, "address", property(lambda self: "/nonexistent-socket-dir"))
    done, entered = execute(machine, {})
    assert done["status"] == "FAILED" and done["error"] == "RestoreWorkflowFailed"
    assert [s for s in entered if s in ("Run", "RunFailed", "TeardownAfterFailure", "ReportFailure", "Failed")] == [
        "Run", "RunFailed", "TeardownAfterFailure", "ReportFailure", "Failed",
    ]  # fmt: skip
    assert set(instances().values()) <= {"deleting"}
    [notice] = inbox.messages()
    assert notice["Subject"].startswith("CRITICAL - ")
    assert "did not run to the end: run failed" in notice["Message"]
    assert "was deleted" in notice["Message"]


def test_on_fargate_the_restore_runs_as_a_task_and_the_target_is_still_deleted(
    flow, fargate_template, monkeypatch
):
    """runner fargate: the restore itself (the Run phase) is a Fargate task (in this process,
    tests/ecs_env.py) that restores into the throwaway instance; Teardown deletes it."""
    from tests import ecs_env

    machine, inbox = flow
    containers = ecs_env.install(monkeypatch)
    cluster, subnets, group = ecs_env.network(REGION)
    ecs_env.register(fargate_template, "restore-test", REGION)
    definition = ecs_env.resolve(
        fargate_template, "pgrunbook-app-restore-test", function_arn("restore-test"), cluster, subnets, group
    )
    sfn = boto3.client("stepfunctions", region_name=REGION)
    role = sfn.describe_state_machine(stateMachineArn=machine)["roleArn"]
    on_fargate = sfn.create_state_machine(name="restore-on-fargate", definition=definition, roleArn=role)[
        "stateMachineArn"
    ]
    done, entered = execute(on_fargate, {"prefer_tier": "weekly"})
    assert done["status"] == "SUCCEEDED", done.get("cause")
    assert [s for s in entered if not s.endswith("?") and s not in ("WaitForTarget",)] == [
        "Plan", "Provision", "CheckTarget", "ChooseRun", "RunTask", "RunOnFargate", "CollectRun", "Teardown", "Tested",
    ]  # fmt: skip
    [run] = containers.runs
    assert run["exit"] == 0 and json.loads(run["environment"]["PGRUNBOOK_TASK"])["phase"] == "run"
    assert set(instances().values()) <= {"deleting"}
    [report] = ReportStore(Settings.load().primary_store()).history("restore-test")
    assert report.status == "ok" and report.figures["integrity_pct"] == 100.0
    assert report.runner["runner"] == "fargate"
    assert inbox.messages() == []
