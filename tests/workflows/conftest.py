"""The recovery state machine as the CDK app synthesizes it, executed by moto's Step Functions
interpreter, each task calling the real ``functions/app.py`` handler (the pitr function) in this process.

What is patched is moto's, never pgrunbook's:
* ``LambdaFunction._invoke_lambda`` (moto would start a Docker container) calls the handler
  in-process and returns its result, or its exception as Lambda reports one
  (``{"errorType", "errorMessage"}``), which the state machine's Retry and Catch match;
* ``WaitFunction._wait_interval`` returns at once (the poll loop's waits);
* moto's user config turns state machine execution on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.core.config import default_user_config
from moto.core.responses import EmptyResult
from moto.stepfunctions.responses import StepFunctionResponse

from pgrunbook.adapters.postgres.connection import Database, quote_ident
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.settings.model import Settings
from tests.lambda_env import ACCOUNT, Context, Inbox, database_secret, load_handler

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
WORKFLOWS = ("pitr", "migrate", "recover-tables")
PASSWORD = "Pitr-Secret-pw-93c1d0"
APP = """
CREATE TABLE clients (id int PRIMARY KEY, name text NOT NULL,
                      created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE projects (id int PRIMARY KEY, client_id int NOT NULL REFERENCES clients(id),
                       user_id int NOT NULL, name text, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO clients (id, name) SELECT g, 'client ' || g FROM generate_series(1, 20) g;
INSERT INTO projects (id, client_id, user_id, name)
  SELECT g, 1 + g % 20, g % 7, 'project ' || g FROM generate_series(1, 200) g;
"""


def function_arn(workflow: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:pgrunbook-app-{workflow}"


def resolve_definition(template: dict[str, Any], workflow: str) -> str:
    """The DefinitionString of ``pgrunbook-app-<workflow>`` with the template's references filled in."""
    [machine] = [
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::StepFunctions::StateMachine"
        and r["Properties"]["StateMachineName"] == f"pgrunbook-app-{workflow}"
    ]
    functions = {
        logical_id
        for logical_id, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"].get("FunctionName") == f"pgrunbook-app-{workflow}"
    }
    definition = machine["Properties"]["DefinitionString"]
    parts = definition["Fn::Join"][1] if isinstance(definition, dict) else [definition]
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif part == {"Ref": "AWS::Partition"}:
            out.append("aws")
        elif "Fn::GetAtt" in part and part["Fn::GetAtt"][0] in functions and part["Fn::GetAtt"][1] == "Arn":
            out.append(function_arn(workflow))
        else:
            raise AssertionError(f"unexpected reference in the definition: {part}")
    return "".join(out)


def create_function(name: str, role: str, region: str = REGION) -> None:
    """A function in moto running functions/app.py (its invocations are patched to run it here)."""
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("app.py", (ROOT / "functions" / "app.py").read_text())
    boto3.client("lambda", region_name=region).create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": code.getvalue()},
    )


def run_to_end(machine: str, request: dict[str, Any], name: str | None = None, region: str = REGION):
    """Start an execution and wait for its end: (its description, the states it entered)."""
    sfn = boto3.client("stepfunctions", region_name=region)
    arn = sfn.start_execution(
        stateMachineArn=machine, name=name or f"run-{os.urandom(4).hex()}", input=json.dumps(request)
    )["executionArn"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            break
        time.sleep(0.1)
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
    return described, entered


def send_task_failure_with_cause(self):
    """moto's SendTaskFailure, passing on the ``cause`` (moto 5 drops it; AWS does not)."""
    self.stepfunction_backend.send_task_failure(
        self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
    )
    return EmptyResult()


def synthesize(tmp_path_factory, **changes) -> dict[str, Any]:
    """The primary stack's template as cdk.json configures it, with ``changes`` (bundling skipped)."""
    import os

    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.app import build
    from tests.shared import once

    context = json.loads((ROOT / "cdk.json").read_text())["context"]

    def produce(out: Path) -> None:
        app = cdk.App(
            outdir=str(out / "cdk.out"),
            context={
                **context,
                "pgrunbook": {**context["pgrunbook"], "account": ACCOUNT, **changes},
                "aws:cdk:bundling-stacks": [],
            },
        )
        primary, _ = build(app)
        (out / "primary.json").write_text(json.dumps(Template.from_stack(primary).to_json()))

    key = "synth-" + hashlib.sha256(json.dumps(changes, sort_keys=True).encode()).hexdigest()[:16]
    return dict(json.loads((once(tmp_path_factory, key, produce) / "primary.json").read_text()))


@pytest.fixture(scope="session")
def definitions(tmp_path_factory) -> dict[str, str]:
    """Every phase on Lambda (runner lambda for the workflows): the Fargate phases have their
    own tests (test_dispatch_workflow.py)."""
    template = synthesize(
        tmp_path_factory,
        runner={"default": "auto", "pitr": "lambda", "migrate": "lambda", "recover-tables": "lambda"},
    )
    return {workflow: resolve_definition(template, workflow) for workflow in WORKFLOWS}


@pytest.fixture(scope="session")
def fargate_template(tmp_path_factory) -> dict[str, Any]:
    """The primary stack with the workflows' long phases forced onto Fargate."""
    return synthesize(
        tmp_path_factory,
        runner={"default": "auto", "pitr": "fargate", "migrate": "fargate", "recover-tables": "fargate"},
    )


def on_fargate(flow: Workflow, template: dict[str, Any], monkeypatch, workflow: str, name: str):
    """``workflow``'s state machine with its long phases on Fargate (``template``: runner
    fargate), under moto with the ECS task run in this process (tests/ecs_env.py); the
    operator's commands find it.  Returns it and the containers it starts."""
    from tests import ecs_env

    containers = ecs_env.install(monkeypatch)
    cluster, subnets, group = ecs_env.network(REGION)
    ecs_env.register(template, workflow, REGION)
    definition = ecs_env.resolve(
        template, f"pgrunbook-app-{workflow}", function_arn(workflow), cluster, subnets, group
    )
    role = flow.sfn.describe_state_machine(stateMachineArn=flow.machines[workflow])["roleArn"]
    machine = flow.sfn.create_state_machine(name=name, definition=definition, roleArn=role)["stateMachineArn"]
    variable = {
        "pitr": "PGRUNBOOK_PITR_STATE_MACHINE_ARN",
        "migrate": "PGRUNBOOK_MIGRATION_STATE_MACHINE_ARN",
        "recover-tables": "PGRUNBOOK_RECOVER_TABLES_STATE_MACHINE_ARN",
    }
    monkeypatch.setenv(variable[workflow], machine)
    flow.machines[workflow] = machine
    return machine, containers


@dataclass
class Workflow:
    """The deployed-like workflows over one source database."""

    source: ConnInfo
    server: Any
    secret_arn: str
    inbox: Inbox
    machines: dict[str, str]

    @property
    def machine_arn(self) -> str:
        """The recovery state machine."""
        return self.machines["pitr"]

    unread: list[dict] = field(default_factory=list)  # read by approval_requested, not yet by a test

    def messages(self) -> list[dict]:
        """The notifications sent since the last call (each returned once)."""
        out, self.unread = [*self.unread, *self.inbox.messages()], []
        return out

    def approval_requested(self, timeout: float = 60.0) -> None:
        """Until the approval request has been sent: the approval task has run and its token
        is recorded, so approve/reject find it (on a loaded machine that takes a while)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.unread.extend(self.inbox.messages())
            if any(m.get("Subject", "").startswith("APPROVAL NEEDED") for m in self.unread):
                return
            time.sleep(0.1)
        raise AssertionError(f"no approval request after {timeout} s")

    @property
    def settings(self) -> Settings:
        return Settings.load()

    @property
    def sfn(self):
        return boto3.client("stepfunctions", region_name=REGION)

    def start(self, request: dict[str, Any], name: str = "run-1") -> str:
        return self.sfn.start_execution(
            stateMachineArn=self.machine_arn, name=name, input=json.dumps(request)
        )["executionArn"]

    def history(self, arn: str) -> list[dict]:
        return self.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]

    def entered(self, arn: str) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"]
            for e in self.history(arn)
            if "stateEnteredEventDetails" in e
        ]

    def wait_for(self, arn: str, *, state: str | None = None, timeout: float = 120.0) -> dict:
        """Until the execution ends, or (with ``state``) has entered that state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = self.sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                return described
            if state is not None and state in self.entered(arn):
                return described
            time.sleep(0.1)
        raise AssertionError(f"execution still running after {timeout} s; entered {self.entered(arn)}")

    def maintenance(self) -> Any:  # the parameter's JSON; None when there is none
        ssm = boto3.client("ssm", region_name=REGION)
        try:
            value = ssm.get_parameter(Name=f"/pgrunbook/{self.source.dbname}/maintenance")["Parameter"][
                "Value"
            ]
        except ssm.exceptions.ParameterNotFound:
            return None
        return json.loads(value)

    def secret(self) -> dict:
        sm = boto3.client("secretsmanager", region_name=REGION)
        return json.loads(sm.get_secret_value(SecretId=self.secret_arn)["SecretString"])

    def databases(self) -> list[str]:
        with Database.connect(self.server.conninfo) as db:
            return [r[0] for r in db.run("SELECT datname FROM pg_database ORDER BY 1")]

    def rows(self, dbname: str, sql: str) -> list:
        with Database.connect(self.source.with_dbname(dbname)) as db:
            return db.run(sql)


@pytest.fixture
def source_schema() -> tuple[tuple[str, ...], str]:
    """The source database of ``workflow``: files of tests/fixtures, then SQL (a test module
    overrides this fixture for another schema)."""
    return (), APP


@pytest.fixture
def workflow(s3, new_db, pg18, monkeypatch, tmp_path, definitions, source_schema) -> Iterator[Workflow]:
    files, sql = source_schema
    source = new_db(*files, sql=sql)
    monkeypatch.setitem(default_user_config, "stepfunctions", {"execute_state_machine": True})

    handlers = {f"pgrunbook-app-{w}": load_handler(w) for w in WORKFLOWS}

    def invoke_in_process(self, event=None):
        payload = json.loads(event) if isinstance(event, str | bytes) else event
        try:
            result = handlers[self.function_name](
                payload,
                Context(
                    function_name=self.function_name,
                    invoked_function_arn=self.function_arn,
                    log_group_name=f"/aws/lambda/{self.function_name}",
                ),
            )
        except Exception as exc:
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}), True, ""
        return json.dumps(result), False, ""

    monkeypatch.setattr("moto.awslambda.models.LambdaFunction._invoke_lambda", invoke_in_process)
    monkeypatch.setattr(StepFunctionResponse, "send_task_failure", send_task_failure_with_cause)
    monkeypatch.setattr(
        "moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function.WaitFunction._wait_interval",
        lambda self, env, wait_seconds: None,
    )

    arn = database_secret(source, PASSWORD, region=REGION)
    inbox = Inbox(REGION)

    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(
        RoleName="pitr-function",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    machines = {}
    for name in WORKFLOWS:
        create_function(f"pgrunbook-app-{name}", role)
        machines[name] = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name=f"pgrunbook-app-{name}", definition=definitions[name], roleArn=role
        )["stateMachineArn"]

    variables = {
        "PGRUNBOOK_DATABASE_SECRET_ARN": arn,
        **s3.variables(),
        "PGRUNBOOK_RESTORE_TARGET_URL": pg18.conninfo.libpq_uri(),
        "PGRUNBOOK_SNS_TOPIC_ARN": inbox.topic_arn,
        "PGRUNBOOK_PITR_STATE_MACHINE_ARN": machines["pitr"],
        "PGRUNBOOK_MIGRATION_STATE_MACHINE_ARN": machines["migrate"],
        "PGRUNBOOK_RECOVER_TABLES_STATE_MACHINE_ARN": machines["recover-tables"],
        "PGRUNBOOK_CRITICAL_TABLES": "public.clients,public.projects",
        "PGRUNBOOK_WORK_DIR": str(tmp_path),
        "PGRUNBOOK_HOME": str(tmp_path / "home"),
        "PGRUNBOOK_CREATED_BY": "pytest",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
        "POWERTOOLS_METRICS_NAMESPACE": "pgrunbook",
    }
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    flow = Workflow(source, pg18, arn, inbox, machines)
    yield flow
    with Database.connect(pg18.conninfo) as admin:
        for name in flow.databases():
            if name.startswith(f"{source.dbname}_pitr_"):
                admin.run(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
