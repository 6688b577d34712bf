"""One pgrunbook operation as a Lambda function: its function, role, logs, schedules and
failure path, all from the operation's entry in :mod:`pgrunbook.operations.registry`.

* The function runs the one shared handler (``functions/app.py``; ``PGRUNBOOK_OPERATION`` says
  which operation) on the library and PostgreSQL-tools layers, with X-Ray tracing and JSON
  logs in a log group with a retention.
* Its role holds exactly the operation's grants (see :mod:`infra.constructs.access`) plus its own logs,
  X-Ray and the alerts topic: no managed policies.
* EventBridge rules start it in UTC with a constant input (``{"tier": "hourly"}`` ...).
  Delivery is retried and what cannot be delivered lands in a dead-letter queue; an
  invocation that fails (an exception, not a report with problems: those notify by
  themselves) goes to the alerts topic through the on-failure destination.
* Jobs that must never overlap (a backup, retention, a restore, a drill) get a reserved
  concurrency of 1: a second start waits instead of running alongside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_cdk import Acknowledgment, Aws, Duration, RemovalPolicy, Size, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import VpcPlacement
from infra.constructs.access import Grants, acknowledge_wildcards, cfn, nag
from pgrunbook.entrypoints.aws_lambda import OPERATION_VARIABLE
from pgrunbook.operations.registry import Operation

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
# The newest CPython the library layer is built and import-tested for (tests/infra/test_layers.py
# runs the handler from the built layer under a real CPython of this version); raise it
# together with infra/bundling/layers.py's DEFAULT_PYTHON.
RUNTIME = lambda_.Runtime.PYTHON_3_13


@dataclass(frozen=True)
class Schedule:
    """A schedule as deployed: the registry's, with cdk.json's expression and switch."""

    id: str
    expression: str  # cron(...) or rate(...), UTC
    input: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True


# CloudWatch Logs' retention periods, in days.
_RETENTION = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    3653: "TEN_YEARS",
}


def _retention(days: int) -> logs.RetentionDays:
    if days not in _RETENTION:
        raise ValueError(
            f"CloudWatch Logs cannot keep logs for {days} days; choose one of {sorted(_RETENTION)}"
        )
    return getattr(logs.RetentionDays, _RETENTION[days])


class OperationFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        operation: Operation,
        schedules: list[Schedule],
        function_name: str,
        layers: Sequence[lambda_.ILayerVersion],
        environment: dict[str, str],
        grants: Grants,
        topic: sns.ITopic,
        topic_key: kms.IKey,
        dead_letters: sqs.IQueue,
        log_retention_days: int,
        vpc: VpcPlacement | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.operation = operation
        spec = operation.function
        assert spec is not None, f"{operation.name} is not deployed as a function"
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=_retention(log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,  # the durable record is the reports in S3
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"pgrunbook {operation.name}: only what the operation calls",
        )
        for statement in grants.statements:
            self.role.add_to_policy(statement)
        streams = (
            "arn:{partition}:logs:{region}:{account}:log-group:/aws/lambda/" + function_name + ":log-stream:*"
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="OwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn, cfn(streams)],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="Tracing", actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"], resources=["*"]
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
        placement: dict[str, Any] = {}
        if vpc is not None:
            network = ec2.Vpc.from_vpc_attributes(
                self,
                "Vpc",
                vpc_id=vpc.vpc_id,
                availability_zones=vpc.availability_zones,
                private_subnet_ids=vpc.subnet_ids,
            )
            placement = {
                "vpc": network,
                "vpc_subnets": ec2.SubnetSelection(
                    subnets=[
                        ec2.Subnet.from_subnet_id(self, f"Subnet{i}", s) for i, s in enumerate(vpc.subnet_ids)
                    ]
                ),
                "security_groups": [
                    ec2.SecurityGroup.from_security_group_id(self, f"Sg{i}", g)
                    for i, g in enumerate(vpc.security_group_ids)
                ],
            }
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            description=spec.description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler="app.handler",
            code=lambda_.Code.from_asset(str(FUNCTIONS), exclude=["__pycache__"]),
            layers=layers,
            role=self.role,
            memory_size=spec.memory_mb,
            timeout=Duration.minutes(spec.timeout_minutes),
            ephemeral_storage_size=Size.mebibytes(spec.ephemeral_mb),
            reserved_concurrent_executions=1 if spec.exclusive else None,
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            log_group=self.log_group,
            environment={
                **environment,
                OPERATION_VARIABLE: operation.name,
                "POWERTOOLS_SERVICE_NAME": "pgrunbook",
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
            **placement,
        )
        self.function.configure_async_invoke(
            on_failure=destinations.SnsDestination(topic),
            max_event_age=Duration.hours(6),
            retry_attempts=1,
        )
        self.rules = []
        for schedule in schedules:
            rule = schedule_rule(self, schedule.id, schedule, f"pgrunbook {operation.name}")
            rule.add_target(
                targets.LambdaFunction(
                    self.function,
                    event=events.RuleTargetInput.from_object(schedule.input),
                    retry_attempts=2,
                    max_event_age=Duration.hours(2),
                    dead_letter_queue=dead_letters,
                )
            )
            self.rules.append(rule)
        acknowledgments = {
            "Resource::*": "X-Ray's PutTraceSegments and PutTelemetryRecords take no resource",
            f"Resource::{nag(streams)}": "Lambda names the log streams of the function's own log group at run time",
            "Action::kms:GenerateDataKey*": "CDK's grant for the on-failure destination to publish to the "
            "encrypted alerts topic",
        }
        acknowledge_wildcards(self.role, grants, acknowledgments)
        Validations.of(self.function).acknowledge(
            Acknowledgment(
                id="AwsSolutions-L1",
                reason="python3.13 is the newest runtime the library layer's compiled wheels are built and "
                "import-tested for; 3.14 follows once the tests can run it",
            )
        )
        if vpc is not None:
            Validations.of(self.role).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-IAM4",
                    reason="AWSLambdaVPCAccessExecutionRole is how Lambda manages the function's network "
                    "interfaces in the database's VPC.",
                )
            )

    @property
    def function_arn(self) -> str:
        return self.function.function_arn

    @property
    def account(self) -> str:
        return Aws.ACCOUNT_ID


def schedule_rule(scope: Construct, construct_id: str, schedule: Schedule, what: str) -> events.Rule:
    """The EventBridge rule of one schedule (its target is the caller's: a function or a
    state machine)."""
    return events.Rule(
        scope,
        construct_id,
        description=f"{what}: {schedule.expression} UTC",
        schedule=events.Schedule.expression(schedule.expression),
        enabled=schedule.enabled,
    )
