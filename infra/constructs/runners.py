"""Where the long jobs run: a job's Fargate task, and the dispatch state machine that picks Lambda
or Fargate for each run (:mod:`pgrunbook.workflows.dispatch.phases`, :mod:`pgrunbook.domain.runners`).

* :class:`TaskNetwork`: where the region's tasks run.  ``public`` (the default): a VPC of the
  stack's own, two public subnets, no NAT gateway; the task gets a public IP and a security
  group without ingress.  ``vpc``: the subnets and security groups of ``pgrunbook.vpc``
  (``dr_vpc`` in the DR region), for a database in private subnets.
* :class:`FargateJob`: the job's task definition.  No image is built: the stock Lambda Python
  base image from ECR Public runs :mod:`pgrunbook.entrypoints.task_bootstrap` (its source is
  the container's command), which fetches the two layer archives the stack already builds
  (their asset objects, and only those, are readable by the task) and runs the same operation
  code as the function, with the same environment, as an unprivileged user.  200 GiB of
  ephemeral storage, a log group with the deployment's retention, and a task role with exactly
  the operation's grants (the same statements as its function's role).
* :class:`Dispatch`: Choose → RunOnLambda | RunOnFargate (``ecs:runTask.sync``), retries for
  Fargate's capacity and platform-retirement stops (Examine → Wait → RunOnFargate), the same
  CRITICAL notice (ReportFailure) when a run failed without reporting it.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.config import VpcPlacement
from infra.constructs.access import Grants, acknowledge_wildcards
from infra.constructs.workflows import add_retry, logged_state_machine
from pgrunbook.domain.metrics import NAMESPACE
from pgrunbook.entrypoints import task_bootstrap
from pgrunbook.entrypoints.aws_lambda import OPERATION_VARIABLE
from pgrunbook.entrypoints.task import TASK_VARIABLE
from pgrunbook.operations.registry import Fargate, Operation
from pgrunbook.workflows.dispatch.phases import RETRIES

IMAGE = "public.ecr.aws/lambda/python:3.13"  # AWS-maintained; Python 3.13 and boto3, as the functions
USER = "nobody"  # the image has no useradd: the embedded server runs as this process's user
LAYER_ROOT = "/tmp/pgrunbook/opt"  # noqa: S108 - writable for that user, on the ephemeral storage
# ECS API errors of RunTask worth another try: throttling, a service hiccup, no capacity now.
ECS_RETRY = ["ECS.AmazonECSException", "ECS.ServerException", "ECS.LimitExceededException"]


def _family_revisions(definition: ecs.TaskDefinition) -> str:
    """The task definition's ``<family ARN>:*`` as cdk-nag renders it in a finding id."""
    stack = Stack.of(definition)
    ref = {"Ref": stack.resolve(stack.get_logical_id(definition.node.default_child))}  # type: ignore[arg-type]

    def part(i: int) -> str:
        return json.dumps({"Fn::Select": [i, {"Fn::Split": [":", ref]}]}, separators=(",", ":"))

    def family(i: int) -> str:
        return json.dumps(
            {"Fn::Select": [i, {"Fn::Split": ["/", json.loads(part(5))]}]}, separators=(",", ":")
        )

    return f"arn:{part(1)}:{part(2)}:{part(3)}:{part(4)}:{family(0)}/{family(1)}:*"


def dispatch_task(
    scope: Construct, title: str, function: lambda_.IFunction, phase: str, state: object = None
) -> tasks.LambdaInvoke:
    """A Lambda task running one of the dispatch's own phases
    (:mod:`pgrunbook.workflows.dispatch.phases`) on ``state`` (default: the whole state), with
    that phase's retries."""
    task = tasks.LambdaInvoke(
        scope,
        title,
        lambda_function=function,
        payload=sfn.TaskInput.from_object(
            {
                "phase": phase,
                "workflow": "dispatch",
                "execution": sfn.JsonPath.execution_id,
                "state": sfn.JsonPath.entire_payload if state is None else state,
            }
        ),
        payload_response_only=True,
        retry_on_service_exceptions=False,
    )
    add_retry(task, RETRIES[phase])
    return task


def bootstrap_source() -> str:
    """What the container runs: the bootstrap module's source (standard library and boto3)."""
    return inspect.getsource(task_bootstrap)


class TaskNetwork(Construct):
    """Subnets and security groups for the region's tasks."""

    def __init__(
        self, scope: Construct, construct_id: str, *, network: str, placement: VpcPlacement | None
    ) -> None:
        super().__init__(scope, construct_id)
        self.public = network == "public"
        if self.public:
            self.vpc: ec2.IVpc = ec2.Vpc(
                self,
                "Vpc",
                max_azs=2,
                nat_gateways=0,
                subnet_configuration=[
                    ec2.SubnetConfiguration(name="tasks", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24)
                ],
                gateway_endpoints={
                    "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
                },
                restrict_default_security_group=False,
            )
            flow_logs = logs.LogGroup(
                self,
                "FlowLogs",
                retention=logs.RetentionDays.THREE_MONTHS,
                removal_policy=RemovalPolicy.DESTROY,
            )
            self.vpc.add_flow_log(
                "FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs)
            )
            group = ec2.SecurityGroup(
                self,
                "Tasks",
                vpc=self.vpc,
                description="pgrunbook tasks: outbound only (the database, S3 and the AWS APIs)",
                allow_all_outbound=True,
            )
            self.security_groups: list[ec2.ISecurityGroup] = [group]
            self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC)
            Validations.of(self.vpc).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-EC23",
                    reason="the tasks' security group has no ingress rule at all; egress only",
                )
            )
        else:
            assert placement is not None, "network vpc needs a VPC placement (checked by the config)"
            self.vpc = ec2.Vpc.from_vpc_attributes(
                self,
                "Vpc",
                vpc_id=placement.vpc_id,
                availability_zones=placement.availability_zones,
                private_subnet_ids=placement.subnet_ids,
            )
            self.subnets = ec2.SubnetSelection(
                subnets=[
                    ec2.Subnet.from_subnet_id(self, f"Subnet{i}", s)
                    for i, s in enumerate(placement.subnet_ids)
                ]
            )
            self.security_groups = [
                ec2.SecurityGroup.from_security_group_id(self, f"Sg{i}", g)
                for i, g in enumerate(placement.security_group_ids)
            ]
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=self.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )


class FargateJob(Construct):
    """One job's task definition (see the module's docstring)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        operation: Operation,
        size: Fargate,
        grants: Grants,
        environment: dict[str, str],
        layers: list[tuple[str, str]],  # (bucket, key) of each layer archive
        topic: sns.ITopic,
        topic_key: kms.IKey,
        log_retention: logs.RetentionDays,
        family: str,
        network: TaskNetwork,
    ) -> None:
        super().__init__(scope, construct_id)
        self.operation, self.network = operation, network
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/pgrunbook/tasks/{family}",
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"pgrunbook {operation.name} on Fargate: only what the operation calls",
        )
        for statement in grants.statements:
            self.role.add_to_policy(statement)
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="Layers",
                actions=["s3:GetObject"],
                resources=[f"arn:{Stack.of(self).partition}:s3:::{bucket}/{key}" for bucket, key in layers],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(sid="Alerts", actions=["sns:Publish"], resources=[topic.topic_arn])
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="AlertsKey", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[topic_key.key_arn]
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="Metrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": NAMESPACE}},
            )
        )
        self.definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            family=family,
            cpu=size.cpu,
            memory_limit_mib=size.memory_mib,
            ephemeral_storage_gib=size.ephemeral_gib,
            task_role=self.role,
            runtime_platform=ecs.RuntimePlatform(
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
                cpu_architecture=ecs.CpuArchitecture.X86_64,
            ),
        )
        self.container = self.definition.add_container(
            "pgrunbook",
            image=ecs.ContainerImage.from_registry(IMAGE),
            entry_point=["python3", "-c"],
            command=[bootstrap_source()],
            user=USER,
            memory_limit_mib=size.memory_mib,
            environment={
                **environment,
                OPERATION_VARIABLE: operation.name,
                "PGRUNBOOK_LAYERS": ",".join(f"s3://{bucket}/{key}" for bucket, key in layers),
                "PGRUNBOOK_LAYER_ROOT": LAYER_ROOT,
                "PGRUNBOOK_WORK_DIR": "/tmp/pgrunbook/work",  # noqa: S108 - on the ephemeral storage
                "PGRUNBOOK_HOME": "/tmp/pgrunbook/home",  # noqa: S108
                "AWS_DEFAULT_REGION": Stack.of(self).region,
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix=operation.name, log_group=self.log_group),
            essential=True,
            readonly_root_filesystem=False,
        )
        acknowledge_wildcards(
            self.role,
            grants,
            {
                "Resource::*": "PutMetricData takes no resource; the condition holds it to pgrunbook's namespace"
            },
        )
        Validations.of(self.definition).acknowledge(
            Acknowledgment(
                id="AwsSolutions-ECS2",
                reason="the environment holds the same non-secret settings as the function's (names, buckets, "
                "secret ARNs); credentials are read from Secrets Manager at run time",
            )
        )


@dataclass(frozen=True)
class PhaseRunner:
    """What a workflow needs to run its long phases on Fargate: the mode (auto or fargate),
    the workflow's task, the region's network, and its function's limits for the choice."""

    operation: str
    mode: str
    job: FargateJob
    network: TaskNetwork
    limits: dict[str, int]


class DispatchedPhase(sfn.StateMachineFragment):
    """One long phase of a workflow, on the runner chosen for this run::

        Choose<Title> ─(lambda)→ <Title> (the phase's own Lambda task)
                      └(fargate)→ <Title>Task → <Title>OnFargate (ecs:runTask.sync) → Collect<Title>
                                                   └ failed → Examine<Title> ─(platform, never ran)→ wait, again
                                                                            └→ ``failed``

    ``on_lambda`` is the caller's task (with its retries and catch); ``failed`` is where any
    other failure goes (the workflow's marker for this phase, then its failure path)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        phase: str,
        title: str,
        function: lambda_.IFunction,
        runner: PhaseRunner,
        on_lambda: sfn.TaskStateBase,
        failed: sfn.IChainable,
    ) -> None:
        super().__init__(scope, construct_id)
        choose = dispatch_task(
            self,
            f"Choose{title}",
            function,
            "choose_phase",
            {
                "workflow_state": sfn.JsonPath.entire_payload,
                "operation": runner.operation,
                "for_phase": phase,
                "runner": runner.mode,
                "lambda": runner.limits,
            },
        )
        choose.add_catch(failed, errors=["States.ALL"], result_path="$.error")
        collect = dispatch_task(self, f"Collect{title}", function, "collect")
        collect.add_catch(failed, errors=["States.ALL"], result_path="$.error")
        override = sfn.Pass(
            self,
            f"{title}Task",
            parameters={
                "phase": phase,
                "in.$": "$.handoff.in",
                "out.$": "$.handoff.out",
                "runner.$": "$.runner_choice",
                "execution.$": "$$.Execution.Id",
            },
            result_path="$.phase_task",
        )
        on_fargate = run_task(self, f"{title}OnFargate", runner.job, runner.network, "$.phase_task")
        examine = dispatch_task(self, f"Examine{title}", function, "examine")
        examine.add_catch(failed, errors=["States.ALL"], result_path="$.examine_error")
        on_fargate.add_catch(examine, errors=["States.ALL"], result_path="$.error")
        wait = sfn.Wait(self, f"WaitToRetry{title}", time=sfn.WaitTime.seconds_path("$.retry_seconds"))
        wait.next(on_fargate)
        examine.next(
            sfn.Choice(self, f"PlatformStop{title}?")
            .when(sfn.Condition.boolean_equals("$.fargate_retry", True), wait)
            .otherwise(failed)
        )
        override.next(on_fargate)
        on_fargate.next(collect)
        where = sfn.Choice(self, f"{title}Runner?")
        where.when(sfn.Condition.string_equals("$.runner_choice.runner", "fargate"), override)
        where.otherwise(on_lambda)
        choose.next(where)
        self._start = choose
        self._ends = [collect, on_lambda]

    @property
    def start_state(self) -> sfn.State:
        return self._start

    @property
    def end_states(self) -> list[sfn.INextable]:
        return self._ends  # type: ignore[return-value]


def run_task(
    scope: Construct, title: str, job: FargateJob, network: TaskNetwork, task_path: str
) -> tasks.EcsRunTask:
    """``ecs:runTask.sync`` of ``job``, its ``PGRUNBOOK_TASK`` override the JSON at ``task_path``;
    RunTask's own throttling and server errors retried."""
    task = tasks.EcsRunTask(
        scope,
        title,
        integration_pattern=sfn.IntegrationPattern.RUN_JOB,
        cluster=network.cluster,
        task_definition=job.definition,
        launch_target=tasks.EcsFargateLaunchTarget(platform_version=ecs.FargatePlatformVersion.LATEST),
        assign_public_ip=network.public,
        subnets=network.subnets,
        security_groups=network.security_groups,
        container_overrides=[
            tasks.ContainerOverride(
                container_definition=job.container,
                environment=[
                    tasks.TaskEnvironmentVariable(
                        name=TASK_VARIABLE,
                        value=sfn.JsonPath.json_to_string(sfn.JsonPath.object_at(task_path)),
                    )
                ],
            )
        ],
        result_path=sfn.JsonPath.DISCARD,
        task_timeout=sfn.Timeout.duration(Duration.hours(12)),
    )
    task.add_retry(errors=ECS_RETRY, max_attempts=3, interval=Duration.seconds(60), backoff_rate=2)
    return task


def acknowledge_run_task(state_machine: sfn.StateMachine, job: FargateJob) -> None:
    Validations.of(state_machine).acknowledge(
        Acknowledgment(
            id=f"AwsSolutions-IAM5[Resource::{_family_revisions(job.definition)}]",
            reason="ecs:RunTask on every revision of this operation's own task definition family (CDK's grant)",
        ),
    )


class Dispatch(Construct):
    """The state machine a job's schedules start (see the module's docstring)::

    Choose ─(lambda)→ RunOnLambda ─(exit 0)→ Done
           │              ├─(exit ≠ 0)→ ReportFailure → Failed   (the run reported it: no 2nd notice)
           │              └─ DiskTooSmall → OnFargateInstead → TaskOverride → RunOnFargate
           └(fargate)→ TaskOverride → RunOnFargate ─→ Done
                           └─ failed → Examine ─(platform stop, < 3 runs)→ WaitToRetry → RunOnFargate
                                               └→ ReportFailure → Failed
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        operation: Operation,
        function: lambda_.IFunction,
        task: FargateJob,
        network: TaskNetwork,
        state_machine_name: str,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = function
        fail = dispatch_task(self, "ReportFailure", function, "fail")
        fail.add_catch(
            sfn.Fail(
                self,
                "FailedUnreported",
                error="RunFailed",
                cause="the run failed and its CRITICAL notice could not be sent: see this execution's history",
            ),
            errors=["States.ALL"],
            result_path="$.report_error",
        )
        fail.next(sfn.Fail(self, "Failed", error="RunFailed", cause_path="$.failure_message"))

        choose = dispatch_task(self, "Choose", function, "choose")
        choose.add_catch(fail, errors=["States.ALL"], result_path="$.error")

        on_fargate = run_task(self, "RunOnFargate", task, network, "$.task")
        examine = dispatch_task(self, "Examine", function, "examine")
        examine.add_catch(fail, errors=["States.ALL"], result_path="$.examine_error")
        on_fargate.add_catch(examine, errors=["States.ALL"], result_path="$.error")
        wait = sfn.Wait(self, "WaitToRetry", time=sfn.WaitTime.seconds_path("$.retry_seconds"))
        wait.next(on_fargate)
        examine.next(
            sfn.Choice(self, "PlatformStop?")
            .when(sfn.Condition.boolean_equals("$.fargate_retry", True), wait)
            .otherwise(fail)
        )
        done = sfn.Succeed(self, "Done")
        on_fargate.next(done)
        # the container override the task reads: its options, and where it runs and why
        override = sfn.Pass(
            self,
            "TaskOverride",
            parameters={"options.$": "$.options", "runner.$": "$.choice"},
            result_path="$.task",
        )
        override.next(on_fargate)

        on_lambda = tasks.LambdaInvoke(
            self,
            "RunOnLambda",
            lambda_function=function,
            payload=sfn.TaskInput.from_object(
                {"options": sfn.JsonPath.object_at("$.options"), "runner": sfn.JsonPath.object_at("$.choice")}
            ),
            payload_response_only=True,
            result_selector={
                "status.$": "$.status",
                "exit_code.$": "$.exit_code",
                "location.$": "$.location",
            },
            result_path="$.result",
            retry_on_service_exceptions=False,
        )
        on_lambda.add_retry(
            errors=["Lambda.TooManyRequestsException", "Lambda.ServiceException"],
            max_attempts=3,
            interval=Duration.seconds(30),
            backoff_rate=2,
        )
        instead = sfn.Pass(
            self,
            "OnFargateInstead",
            parameters={
                "runner": "fargate",
                "why.$": "States.Format('Lambda refused it: {}', $.error.Cause)",
            },
            result_path="$.choice",
        )
        instead.next(override)
        on_lambda.add_catch(instead, errors=["DiskTooSmall"], result_path="$.error")
        on_lambda.add_catch(fail, errors=["States.ALL"], result_path="$.error")
        on_lambda.next(
            sfn.Choice(self, "Reported?")
            .when(sfn.Condition.number_equals("$.result.exit_code", 0), sfn.Succeed(self, "DoneOnLambda"))
            .otherwise(fail)
        )
        where = sfn.Choice(self, "Runner?")
        where.when(sfn.Condition.string_equals("$.choice.runner", "fargate"), override)
        where.otherwise(on_lambda)

        self.log_group, self.state_machine = logged_state_machine(
            self,
            function,
            state_machine_name=state_machine_name,
            comment=f"pgrunbook {operation.name}: on Lambda or on Fargate, chosen per run",
            body=choose.next(where),
            timeout=Duration.hours(24),
            log_retention=log_retention,
        )
        Validations.of(self.state_machine).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="Step Functions' log delivery and X-Ray APIs, and ecs:StopTask / ecs:DescribeTasks of "
                ".sync (tasks are named at run time), take no narrower resource",
            ),
        )
        acknowledge_run_task(self.state_machine, task)
