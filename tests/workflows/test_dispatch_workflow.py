"""The dispatch state machine as the CDK app synthesizes it (the backup's and the restore
test's), executed by moto's Step Functions interpreter, with the Fargate branch taken: the ECS
task runs the task entry point (pgrunbook.entrypoints.task) in this process, as the workflow
tests run the Lambda handler.

What is patched is moto's, never pgrunbook's: ECS and Step Functions' ECS integration as
tests/ecs_env.py completes them; Lambda invocations call ``functions/app.py`` in process; Wait
states return at once.
"""

from __future__ import annotations

import json

import boto3
import pytest
from moto.core.config import default_user_config

from pgrunbook.catalog.reports import ReportStore
from pgrunbook.operations.context import OperationContext, run_operation
from pgrunbook.settings.model import Settings
from tests import ecs_env
from tests.conftest import rewrite_manifest
from tests.lambda_env import Context, Inbox, load_handler
from tests.workflows.conftest import create_function, function_arn, run_to_end

REGION = "us-east-1"
SQL = """
CREATE TABLE invoices (id int PRIMARY KEY, amount numeric(12, 2));
INSERT INTO invoices SELECT g, g * 3.25 FROM generate_series(1, 2500) g;
"""
LIMITS = {"seconds": 900, "disk_bytes": 10240 * 1024 * 1024}


@pytest.fixture
def dispatch(synthesized, s3, new_db, pg18_target, monkeypatch, tmp_path):
    monkeypatch.setitem(default_user_config, "stepfunctions", {"execute_state_machine": True})
    containers = ecs_env.install(monkeypatch)
    monkeypatch.setattr(
        "moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function.WaitFunction._wait_interval",
        lambda self, env, wait_seconds: None,
    )
    handlers = {job: load_handler(job) for job in ("backup", "restore-test")}

    def invoke_in_process(self, event=None):
        payload = json.loads(event) if isinstance(event, str | bytes) else event
        job = self.function_name.removeprefix("pgrunbook-app-")
        try:
            result = handlers[job](payload, Context(function_name=self.function_name))
        except Exception as exc:
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}), True, ""
        return json.dumps(result), False, ""

    monkeypatch.setattr("moto.awslambda.models.LambdaFunction._invoke_lambda", invoke_in_process)

    inbox = Inbox(REGION)
    source = new_db(sql=SQL)
    variables = {
        **s3.variables(),
        "PGRUNBOOK_DATABASE_URL": source.libpq_uri(),
        "PGRUNBOOK_RESTORE_TARGET_URL": pg18_target.conninfo.libpq_uri(),
        "PGRUNBOOK_SNS_TOPIC_ARN": inbox.topic_arn,
        "PGRUNBOOK_WORK_DIR": str(tmp_path),
        "PGRUNBOOK_HOME": str(tmp_path / "home"),
        "PGRUNBOOK_CREATED_BY": "pytest",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "pgrunbook",
    }
    for key, value in variables.items():
        monkeypatch.setenv(key, value)

    cluster, subnets, group = ecs_env.network(REGION)
    template = synthesized["primary"].to_json()
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="dispatch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    machines = {}
    for job in ("backup", "restore-test"):
        ecs_env.register(template, job, REGION)
        create_function(f"pgrunbook-app-{job}", role)
        machines[job] = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name=f"pgrunbook-app-{job}",
            definition=ecs_env.resolve(
                template, f"pgrunbook-app-{job}", function_arn(job), cluster, subnets, group
            ),
            roleArn=role,
        )["stateMachineArn"]
    return machines, containers, inbox


def execute(
    machine: str, job: str, runner: str = "auto", options: dict | None = None
) -> tuple[dict, list[str]]:
    return run_to_end(
        machine, {"operation": job, "options": options or {}, "runner": runner, "lambda": LIMITS}
    )


def reports(job: str) -> list:
    return ReportStore(Settings.load().primary_store()).history(job)


def test_a_first_backup_runs_on_fargate_and_the_next_on_lambda(dispatch):
    machines, containers, inbox = dispatch
    done, entered = execute(machines["backup"], "backup")
    assert done["status"] == "SUCCEEDED", done.get("cause")
    assert entered == ["Choose", "Runner?", "TaskOverride", "RunOnFargate", "Done"]
    [run] = containers.runs
    assert run["exit"] == 0 and run["environment"]["PGRUNBOOK_OPERATION"] == "backup"
    task = json.loads(run["environment"]["PGRUNBOOK_TASK"])  # the override: options and the choice
    assert task["options"] == {} and task["runner"]["runner"] == "fargate"
    [report] = reports("backup")
    assert report.status == "ok" and report.runner["runner"] == "fargate"
    assert "no earlier run" in report.runner["why"]

    done, entered = execute(machines["backup"], "backup")  # sized by the first: small and quick
    assert done["status"] == "SUCCEEDED", done.get("cause")
    assert entered == ["Choose", "Runner?", "RunOnLambda", "Reported?", "DoneOnLambda"]
    assert len(containers.runs) == 1
    latest = reports("backup")[-1]
    assert latest.runner["runner"] == "lambda" and "well within Lambda's limits" in latest.runner["why"]
    assert inbox.messages() == []


def test_a_platform_stop_is_retried_and_then_runs(dispatch):
    machines, containers, inbox = dispatch
    containers.platform_stops.append("Capacity is unavailable at this time. Please try again later.")
    done, entered = execute(machines["backup"], "backup", runner="fargate")
    assert done["status"] == "SUCCEEDED", done.get("cause")
    assert entered == [
        "Choose", "Runner?", "TaskOverride", "RunOnFargate", "Examine", "PlatformStop?", "WaitToRetry",
        "RunOnFargate", "Done",
    ]  # fmt: skip
    assert [r["exit"] for r in containers.runs] == [None, 0]
    [report] = reports("backup")
    assert report.status == "ok" and report.runner["why"] == "configured: runner fargate"
    assert inbox.messages() == []


def test_a_task_that_never_runs_ends_in_one_critical_notice(dispatch):
    machines, containers, inbox = dispatch
    containers.platform_stops += ["Capacity is unavailable at this time."] * 3
    done, entered = execute(machines["backup"], "backup", runner="fargate")
    assert done["status"] == "FAILED" and done["error"] == "RunFailed"
    assert entered.count("RunOnFargate") == 3 and entered[-2:] == ["ReportFailure", "Failed"]
    [notice] = inbox.messages()
    assert notice["Subject"].startswith("CRITICAL - ")
    assert (
        "did not run to the end on fargate: the Fargate task stopped: Capacity is unavailable"
        in notice["Message"]
    )
    [report] = reports("backup")  # the run never started: the failure phase's report
    assert report.status == "critical"


def test_a_run_that_reports_its_own_failure_on_fargate_is_announced_once(dispatch, s3):
    """A corrupted backup: the restore test on Fargate finds it, stores and sends its CRITICAL
    report and exits 1; the state fails (as AWS fails it) without a second notice."""
    machines, containers, inbox = dispatch
    backup_id = run_operation("backup", OperationContext(Settings.load())).figures["backup_id"]
    inbox.messages()
    store = Settings.load().primary_store()
    key = next(k for k in s3.keys() if backup_id in k and k.endswith(".dat.gz"))
    store.client.put_object(Bucket=s3.primary, Key=key, Body=b"not the dump")
    done, entered = execute(machines["restore-test"], "restore-test", runner="fargate")
    assert done["status"] == "FAILED" and done["error"] == "RunFailed"
    assert (
        entered[-4:] == ["RunOnFargate", "Examine", "PlatformStop?", "ReportFailure"][-4:]
        or "ReportFailure" in entered
    )
    assert [r["exit"] for r in containers.runs] == [1]
    assert "reported a problem" in done["cause"]
    [notice] = inbox.messages()  # the run's own
    assert "RESTORE" in notice["Subject"].upper() and "Ran on: fargate" in notice["Message"]
    [report] = reports("restore-test")
    assert report.status == "critical" and report.runner["runner"] == "fargate"


def test_a_refusal_on_fargate_is_reported_by_the_dispatch(dispatch):
    machines, containers, inbox = dispatch
    done, _ = execute(machines["backup"], "backup", runner="fargate", options={"tier": "yearly"})
    # the choice checks the options first: refused before any task starts
    assert done["status"] == "FAILED" and containers.runs == []
    [notice] = inbox.messages()
    assert "yearly" in notice["Message"] and "did not run to the end" in notice["Message"]


def test_a_lambda_run_refused_for_disk_moves_to_fargate_in_the_same_execution(
    dispatch, pg18_target, monkeypatch
):
    """The choice said Lambda (its input claims a function with far more disk than this
    machine has); the run's own disk check refuses (DiskTooSmall, nothing downloaded), and
    the dispatch runs it on Fargate instead.  Here the task restores into a server, so its
    disk needs only the download: the function, on the embedded target, needs the whole
    restored database too."""
    machines, containers, inbox = dispatch
    settings = Settings.load()
    backup_id = run_operation("backup", OperationContext(settings)).figures["backup_id"]
    assert run_operation("restore-test", OperationContext(settings)).status == "ok"  # history: small, quick
    rewrite_manifest(settings, backup_id, lambda data: data["server"].update(database_bytes=10**15))
    monkeypatch.delenv("PGRUNBOOK_RESTORE_TARGET_URL")  # the function restores on its embedded server
    ecs = boto3.client("ecs", region_name=REGION)
    [container] = ecs.describe_task_definition(taskDefinition="pgrunbook-app-restore-test")["taskDefinition"][
        "containerDefinitions"
    ]
    container["environment"].append(
        {"name": "PGRUNBOOK_RESTORE_TARGET_URL", "value": pg18_target.conninfo.libpq_uri()}
    )
    ecs.register_task_definition(
        family="pgrunbook-app-restore-test",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="4096",
        memory="16384",
        containerDefinitions=[container],
    )
    inbox.messages()
    request = {
        "operation": "restore-test",
        "options": {},
        "runner": "auto",
        "lambda": {"seconds": 900, "disk_bytes": 10**17},
    }
    done, entered = run_to_end(machines["restore-test"], request)
    assert done["status"] == "SUCCEEDED", done.get("cause")
    assert entered == [
        "Choose",
        "Runner?",
        "RunOnLambda",
        "OnFargateInstead",
        "TaskOverride",
        "RunOnFargate",
        "Done",
    ]
    [run] = containers.runs
    assert run["exit"] == 0
    latest = reports("restore-test")[-1]
    assert latest.status == "ok" and latest.figures["integrity_pct"] == 100.0
    assert latest.runner["runner"] == "fargate"
    assert (
        latest.runner["why"].startswith("Lambda refused it: ")
        and "needs about 1100000.0 GB free" in latest.runner["why"]
    )
    assert inbox.messages() == []
