"""moto's ECS and Step Functions, completed where they fall short of AWS, for the tests that run
a state machine's Fargate branch (../shared/notes/moto-ecs.md).  Only moto is patched:

* ``StateTaskService._normalise_parameters`` / ``_normalise_response`` are no-ops in moto, so
  the state machine's PascalCase ``RunTask`` parameters would reach botocore unchanged: they
  are filled in from botocore's service model with moto's own converters;
* AWS fails an ``ecs:runTask.sync`` state when an essential container exits non-zero (moto
  never checks): the sync resolver is wrapped to raise ``States.TaskFailed`` with the stopped
  task as its cause, as AWS does;
* ECS ``run_task`` creates the task as moto does, then runs the container in process (the
  task entry point, pgrunbook.entrypoints.task, with the task definition's environment and
  the state machine's override) and records its exit code; a test can make the platform stop
  a task before it runs instead (``Containers.platform_stops``).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
import botocore.session
from moto.ecs import models as ecs_models
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
    StateTaskService,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_ecs import (
    StateTaskServiceEcs,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

from pgrunbook.entrypoints import task as task_entry

_BOTO = botocore.session.get_session()


def _operation_model(service: str, action: str):
    model = _BOTO.get_service_model(service)
    [name] = [n for n in model.operation_names if botocore.xform_name(n) == action]
    return model.operation_model(name)


def _normalise_parameters(self, parameters, boto_service_name=None, service_action_name=None):
    op = _operation_model(
        self._get_boto_service_name(boto_service_name), self._get_boto_service_action(service_action_name)
    )
    self._to_boto_request(parameters, op.input_shape)


def _normalise_response(self, response, boto_service_name=None, service_action_name=None):
    op = _operation_model(
        self._get_boto_service_name(boto_service_name), self._get_boto_service_action(service_action_name)
    )
    self._from_boto_response(response, op.output_shape)


_original_sync = StateTaskServiceEcs._build_sync_resolver


def _sync_fails_on_a_nonzero_exit(self, env, resource_runtime_part, normalised_parameters, state_credentials):
    resolve = _original_sync(self, env, resource_runtime_part, normalised_parameters, state_credentials)

    def resolver():
        stopped = resolve()
        if stopped is None:
            return None
        codes = [c.get("ExitCode") for c in stopped.get("Containers", [])]
        if codes and all(code == 0 for code in codes):
            return stopped
        raise FailureEventException(
            FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(
                    taskFailedEventDetails=TaskFailedEventDetails(
                        resource=self._get_sfn_resource(),
                        resourceType=self._get_sfn_resource_type(),
                        error=StatesErrorNameType.StatesTaskFailed.to_name(),
                        cause=to_json_str(stopped),
                    )
                ),
            )
        )

    return resolver


class Containers:
    """The ECS side: each run_task runs the container in process (or is stopped by the
    platform when a test queues a stop)."""

    def __init__(self) -> None:
        self.runs: list[dict] = []
        self.platform_stops: list[str] = []
        self.lock = threading.Lock()

    def run(self, task) -> None:
        container = task.containers[0]
        override = next(iter(task.overrides.get("containerOverrides") or [{}]))
        environment = {e["name"]: e["value"] for e in (container.environment or [])}
        environment.update({e["name"]: e["value"] for e in override.get("environment") or []})
        if self.platform_stops:
            reason = self.platform_stops.pop(0)
            task.stopped_reason = reason
            container.exitCode = None
            self.runs.append({"environment": environment, "exit": None, "stopped": reason})
            return
        with self.lock:
            saved = {k: os.environ.get(k) for k in environment}
            os.environ.update(environment)
            try:
                code = task_entry.main()
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        container.exitCode = code
        self.runs.append({"environment": environment, "exit": code})


def install(monkeypatch) -> Containers:
    """Every patch above; the containers that run_task starts."""
    monkeypatch.setattr(StateTaskService, "_normalise_parameters", _normalise_parameters)
    monkeypatch.setattr(StateTaskService, "_normalise_response", _normalise_response)
    monkeypatch.setattr(StateTaskServiceEcs, "_build_sync_resolver", _sync_fails_on_a_nonzero_exit)
    containers = Containers()
    original_run_task = ecs_models.EC2ContainerServiceBackend.run_task

    def run_task(self, *args, **kwargs):
        tasks = original_run_task(self, *args, **kwargs)
        for task in tasks:
            containers.run(task)
        return tasks

    monkeypatch.setattr(ecs_models.EC2ContainerServiceBackend, "run_task", run_task)
    return containers


def network(region: str) -> tuple[str, list[str], str]:
    """(cluster ARN, subnets, security group): what Fargate tasks need in moto (a VPC with DNS
    host names)."""
    ec2 = boto3.client("ec2", region_name=region)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=f"{region}{z}")["Subnet"][
            "SubnetId"
        ]
        for i, z in ((1, "a"), (2, "b"))
    ]
    group = ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc)["GroupId"]
    cluster = boto3.client("ecs", region_name=region).create_cluster(clusterName="pgrunbook-tasks")[
        "cluster"
    ]["clusterArn"]
    return cluster, subnets, group


def register(template: dict, operation: str, region: str, environment: dict[str, str] | None = None) -> None:
    """The operation's task definition, as synthesized, in moto: its size and image, with the
    container's environment naming only the operation (the deployment's variables name its own
    buckets; the test's process environment names the test's)."""
    [task] = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ECS::TaskDefinition"
        and r["Properties"]["Family"] == f"pgrunbook-app-{operation}"
    ]
    [container] = task["ContainerDefinitions"]
    variables = {"PGRUNBOOK_OPERATION": operation, **(environment or {})}
    boto3.client("ecs", region_name=region).register_task_definition(
        family=task["Family"],
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu=task["Cpu"],
        memory=task["Memory"],
        containerDefinitions=[
            {
                "name": container["Name"],
                "image": container["Image"],
                "memory": int(task["Memory"]),  # moto wants it per container
                "essential": True,
                "environment": [{"name": k, "value": v} for k, v in variables.items()],
            }
        ],
    )


def resolve(
    template: dict, machine_name: str, function: str, cluster: str, subnets: list[str], group: str
) -> str:
    """A state machine's DefinitionString with the template's references filled in."""
    [machine] = [
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::StepFunctions::StateMachine"
        and r["Properties"]["StateMachineName"] == machine_name
    ]
    resources = template["Resources"]
    subnet_of: dict[str, str] = {}  # each subnet of the template, the test's in the same order
    out: list[Any] = []
    for part in machine["Properties"]["DefinitionString"]["Fn::Join"][1]:
        if isinstance(part, str):
            out.append(part)
            continue
        if part == {"Ref": "AWS::Partition"}:
            out.append("aws")
            continue
        logical = part.get("Ref") or part["Fn::GetAtt"][0]
        kind = resources[logical]["Type"]
        value = {
            "AWS::Lambda::Function": function,
            "AWS::ECS::Cluster": cluster,
            "AWS::EC2::SecurityGroup": group,
        }.get(kind)
        if kind == "AWS::EC2::Subnet":
            value = subnet_of.setdefault(logical, subnets[len(subnet_of) % len(subnets)])
        assert value, f"unexpected reference in the definition: {part}"
        out.append(value)
    return "".join(out)
