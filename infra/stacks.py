"""The two stacks: they only assemble constructs, one function per deployed operation of
:mod:`pgrunbook.operations.registry` (its size, schedules, environment and grants come from
its entry there).

* ``PrimaryStack``, in the primary region: the primary backup bucket, the daily and weekly
  jobs (backup, retention, verify, restore test, health), the recovery, migration and
  table-recovery workflows, alerts and the dashboard.
* ``DrStack``, in the second region: the DR bucket the backup job copies into, and the
  monthly DR drill, which assumes the primary region is gone and so runs here, with its own
  alerts, restoring into the DR region's restore target.

Deploy the DR stack first (the backup job in the primary region copies into its bucket).

A stack holds what the deployment's databases share (the bucket and its key, the layers, the
alerts topic, the Fargate network) and, for each database, a :class:`DatabaseJobs`: its
functions, schedules, workflows, grants and alarms.  In the single-database form those are
the stack's own constructs, with the construct ids they always had (a changed logical id
would make CloudFormation replace a deployed function).  In the ``databases`` list form each
database's are a nested stack of their own: a stack may hold 500 resources, and one
database's jobs take about 150 of them.  A database's grants reach its own prefix
(``<prefix>/<database>/``) of the shared buckets and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_cdk import Aws, CfnOutput, Duration, NestedStack, Stack, Tags
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import Deployment, DeploymentConfig, output_stem
from infra.constructs.access import BackupLocation, Grants
from infra.constructs.function import RUNTIME, OperationFunction, Schedule, _retention, schedule_rule
from infra.constructs.layers import (
    DEFAULT_MAJORS,
    archive_location,
    library_layer,
    pgrunbook_layer_code,
    pgtools_layer_code,
    tools_layer,
)
from infra.constructs.monitoring import Alerts, Monitoring
from infra.constructs.runners import Dispatch, FargateJob, PhaseRunner, TaskNetwork
from infra.constructs.storage import BackupStorage
from infra.constructs.workflows import (
    MigrationWorkflow,
    PhaseWorkflow,
    PitrWorkflow,
    RestoreWorkflow,
    TableRecoveryWorkflow,
)
from pgrunbook.adapters.aws.rds_targets import PURPOSE, PURPOSE_TAG
from pgrunbook.domain.layout import REPORTS, RUNS, Layout, everything_under
from pgrunbook.operations import registry
from pgrunbook.operations.registry import Fargate, Operation
from pgrunbook.settings.options import environment, read_by

WORKFLOW_CONSTRUCTS: dict[str, type[PhaseWorkflow]] = {
    "pitr": PitrWorkflow,
    "migrate": MigrationWorkflow,
    "recover-tables": TableRecoveryWorkflow,
}
# each workflow's construct id (the state machine's logical id derives from it: keep them)
WORKFLOW_IDS = {
    "pitr": "PitrWorkflow",
    "migrate": "MigrationWorkflow",
    "recover-tables": "TableRecoveryWorkflow",
}
# minutes an execution may take besides its approval's wait and two hours: a recovery's
# deadline; a table recovery's restore and repair of large tables on Fargate
EXTRA_MINUTES = {"recover-tables": 240}
DR_SETTINGS = ("dr_bucket", "dr_region")


def reads(op: Operation, option: str) -> bool:
    """Whether ``op`` (or an operation it runs as a step) reads the setting ``option``."""
    return read_by(option, (op.name, *op.includes))


class _PgRunbookStack(Stack):
    """What the region's part of the deployment shares, and a :class:`DatabaseJobs` per database."""

    region_role = "primary"
    jobs_class: type[DatabaseJobs]

    def __init__(self, scope: Construct, construct_id: str, *, deployment: Deployment, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.deployment = deployment
        shared = deployment.shared
        self.storage = BackupStorage(
            self,
            "Storage",
            bucket_name=shared.bucket_name(Aws.ACCOUNT_ID, self.region),
            key_alias=shared.key_alias,
            noncurrent_version_days=shared.noncurrent_version_days,
            handoffs_prefixes={
                (config.database_name if deployment.listed else ""): (
                    f"{Layout(config.key_prefix, config.database_name).root}/{RUNS}/"
                )
                for config in deployment.databases
            },
        )
        codes = [pgrunbook_layer_code(RUNTIME), pgtools_layer_code()]
        self.layers = [
            library_layer(self, "Library", RUNTIME, codes[0]),
            tools_layer(self, "PgTools", DEFAULT_MAJORS, codes[1]),
        ]
        # the same archives, for the Fargate tasks (which fetch them at start)
        self.layer_archives = [
            archive_location(layer, code) for layer, code in zip(self.layers, codes, strict=True)
        ]
        self.network: TaskNetwork | None = None
        self.alerts = Alerts(self, "Alerts", config=shared, dead_letters=not deployment.listed)
        self.dashboard: cw.Dashboard | None = None
        if deployment.listed and self.region_role == "primary":
            self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{shared.stem}-backups")
        self.databases: dict[str, DatabaseJobs] = {}
        for config in deployment.databases:
            if deployment.listed:
                where: Construct = NestedStack(
                    self,
                    f"Database-{config.database_name}",
                    description=f"pgrunbook {config.database_name}: its jobs, workflows and alarms",
                )
                Tags.of(where).add("database", config.database_name)
            else:
                where = self
            self.databases[config.database_name] = self.jobs_class(self, where, config)

    def task_network(self, config: DeploymentConfig) -> TaskNetwork:
        """The region's network for Fargate tasks, made with the first task of any database."""
        if self.network is None:
            self.network = TaskNetwork(
                self, "Tasks", network=config.fargate["network"], placement=config.placement(self.region_role)
            )
        return self.network


class DatabaseJobs:
    """One database's functions, schedules, workflows and alarms in one region, as constructs
    of ``scope`` (the stack itself, or the database's nested stack)."""

    def __init__(self, stack: _PgRunbookStack, scope: Construct, config: DeploymentConfig) -> None:
        self.stack = stack
        self.scope = scope
        self.config = config
        self.functions: dict[str, OperationFunction] = {}
        self.restore_workflows: dict[str, RestoreWorkflow] = {}
        self.dispatches: dict[str, Dispatch] = {}
        if stack.deployment.listed:
            # the schedules' dead letters: a queue of the database's own (EventBridge's rule
            # and the queue policy naming it must be in the same stack)
            self.dead_letters: sqs.IQueue = stack.alerts.dead_letter_queue(scope, config)
        else:
            assert stack.alerts.dead_letters is not None
            self.dead_letters = stack.alerts.dead_letters
        self.here = self.location(here=True)
        self.other = self.location(here=False)
        primary, dr = (self.here, self.other) if self.region_role == "primary" else (self.other, self.here)
        self.locations = {"primary": primary, "dr": dr}
        self.settings = config.settings(
            bucket=primary.bucket_name, dr_bucket=dr.bucket_name, sns_topic_arn=stack.alerts.topic.topic_arn
        )

    @property
    def region_role(self) -> str:
        return self.stack.region_role

    def location(self, *, here: bool) -> BackupLocation:
        """This stack's bucket (``here``) or the other region's."""
        config, region = self.config, self.stack.region
        root = Layout(config.key_prefix, config.database_name).root
        if here:
            # by name, not by reference: the grants' ARNs are then the same strings in both
            # stacks, and cdk-nag's findings about them can be acknowledged by exact id
            return BackupLocation(
                config.bucket_name("{account}", region), root, key_arn=self.stack.storage.key.key_arn
            )
        other = config.dr_region if region == config.primary_region else config.primary_region
        return BackupLocation(
            config.bucket_name("{account}", other), root, key_alias=config.key_alias, key_region=other
        )

    def monitor(self, metrics: tuple[str, ...], workflows: dict[str, object]) -> Monitoring:
        config = self.config
        return Monitoring(
            self.scope,
            "Monitoring",
            config=config,
            alerts=self.stack.alerts,
            dead_letters=self.dead_letters,
            functions={name: f.function for name, f in self.functions.items()},
            dr_region=config.dr_region if "backup" in metrics else None,
            metrics=metrics,
            workflows={
                **workflows,
                **{name: w.state_machine for name, w in self.restore_workflows.items()},
                **{name: d.state_machine for name, d in self.dispatches.items()},
            },
            dashboard=self.stack.dashboard,
        )

    def output(self, output_id: str, value: str, description: str) -> None:
        """A stack output (the parent stack's, for a database of the list form, named after it)."""
        if self.stack.deployment.listed:
            output_id = f"{output_stem(self.config.database_name)}{output_id}"
            description = f"{self.config.database_name}: {description}"
        CfnOutput(self.stack, output_id, value=value, description=description)

    # -- one operation ----------------------------------------------------------------------

    def grants(self, op: Operation) -> Grants:
        """The operation's declared grants, those of the operations it runs as steps, and
        writing its own reports (a primary-region operation's, under reports/<operation>/).
        An operation the dispatch may send to Fargate (``task``) also reads the reports the
        choice is made from: its own, the last backup's and the last restore test's
        (workflows/dispatch/phases: ``choose``, ``choose_phase``)."""
        grants = Grants()
        if op.stores_report and op.region == "primary":
            paths = [everything_under(REPORTS, name) for name in (op.name, *op.includes)]
            grants.objects("OwnReports", self.locations["primary"], paths, write=True)
        if op.task is not None and op.region == "primary":
            sized_by = dict.fromkeys((op.name, *op.includes, "backup", "restore-test"))
            paths = [everything_under(REPORTS, name) for name in sized_by]
            grants.objects("DispatchReads", self.locations["primary"], paths, read=True)
        declared = [*op.grants, *(g for name in op.includes for g in registry.get(name).grants)]
        # every function may send a notice: the webhook's key, when the deployment has one
        declared.append(registry.secret("WebhookSecret", "webhook_secret_arn"))
        return grants.declared(declared, self.locations.__getitem__, self.secret_arn)

    def secret_arn(self, setting: str) -> str:
        """A secret setting's ARN; "" when the deployment does not set it."""
        value = self.settings.get(setting)
        return str(value) if value else ""

    def function_environment(self, op: Operation, grants: Grants) -> dict[str, str]:
        """The settings ``op`` reads, named and checked by the option table; the DR bucket
        only for an operation that has access to it."""
        dr_access = grants.reaches(self.locations["dr"])
        values = {
            name: value
            for name, value in self.settings.items()
            if reads(op, name) and (dr_access or name not in DR_SETTINGS)
        }
        if op.name == "migrate":
            values["pitr_approval_timeout"] = self.config.approval_timeout_seconds("migrate")
        return environment(values)

    def schedules(self, op: Operation) -> list[Schedule]:
        return [
            Schedule(
                s.id,
                self.config.schedules.get(s.key, s.expression),
                s.input,
                enabled=bool(getattr(self.config, s.enabled_by)) if s.enabled_by else True,
            )
            for s in op.schedules
        ]

    def add_function(
        self, op: Operation, grants: Grants | None = None, *, scheduled: bool = True
    ) -> OperationFunction:
        grants = grants or self.grants(op)
        function = OperationFunction(
            self.scope,
            op.name.title().replace("-", ""),
            operation=op,
            schedules=self.schedules(op) if scheduled else [],
            function_name=f"{self.config.name}-{op.name}",
            layers=self.stack.layers,
            environment=self.function_environment(op, grants),
            grants=grants,
            topic=self.stack.alerts.topic,
            topic_key=self.stack.alerts.key,
            dead_letters=self.dead_letters,
            log_retention_days=self.config.log_retention_days,
            vpc=self.config.placement(self.region_role),
        )
        self.functions[op.name] = function
        return function

    def add_jobs(self) -> None:
        """A function (and its schedules) for every job of the registry in this stack's region;
        a restore job whose region may use throwaway RDS targets gets its workflow too."""
        for op in registry.deployed():
            if op.region != self.region_role or op.kind != "job":
                continue
            if op.workflow and self.config.rds_targets(self.region_role):
                self.add_restore_workflow(op)
            elif op.task is not None and self.config.runner_mode(op.name) != "lambda":
                self.add_dispatch(op)
            else:
                self.add_function(op)

    def fargate_job(self, op: Operation, grants: Grants) -> FargateJob:
        """The operation's Fargate task (the region's network made with the first one): the
        function's settings and ``grants``, cdk.json's size, Fargate's largest disk."""
        config = self.config
        assert op.task is not None
        return FargateJob(
            self.scope,
            f"{op.name.title().replace('-', '')}Task",
            operation=op,
            size=Fargate(config.fargate["cpu"], config.fargate["memory_mib"], op.task.ephemeral_gib),
            grants=grants,
            environment=self.function_environment(op, grants),
            layers=self.stack.layer_archives,
            topic=self.stack.alerts.topic,
            topic_key=self.stack.alerts.key,
            log_retention=_retention(config.log_retention_days),
            family=f"{config.name}-{op.name}",
            network=self.stack.task_network(config),
        )

    @staticmethod
    def lambda_limits(op: Operation) -> dict[str, int]:
        """The function's own timeout and /tmp, for the runner's choice."""
        assert op.function is not None
        return {
            "seconds": op.function.timeout_minutes * 60,
            "disk_bytes": op.function.ephemeral_mb * 1024 * 1024,
        }

    def add_dispatch(self, op: Operation) -> Dispatch:
        """The job's function (not scheduled), its Fargate task, and the dispatch state machine
        its schedules start: each run goes to Lambda or Fargate as cdk.json's runner says (auto:
        from the database's history)."""
        config, name = self.config, op.name.title().replace("-", "")
        assert op.function is not None and op.task is not None
        function = self.add_function(op, scheduled=False)
        job = self.fargate_job(op, self.grants(op))
        dispatch = Dispatch(
            self.scope,
            f"{name}Dispatch",
            operation=op,
            function=function.function,
            task=job,
            network=job.network,
            state_machine_name=f"{config.name}-{op.name}",
            log_retention=_retention(config.log_retention_days),
        )
        limits = self.lambda_limits(op)
        for schedule in self.schedules(op):
            rule = schedule_rule(
                self.scope, f"{name}{schedule.id}", schedule, f"pgrunbook {op.name} (dispatch)"
            )
            rule.add_target(
                targets.SfnStateMachine(
                    dispatch.state_machine,
                    input=events.RuleTargetInput.from_object(
                        {
                            "operation": op.name,
                            "options": schedule.input,
                            "runner": config.runner_mode(op.name),
                            "lambda": limits,
                        }
                    ),
                    retry_attempts=2,
                    max_event_age=Duration.hours(2),
                    dead_letter_queue=self.dead_letters,
                )
            )
        self.dispatches[op.name] = dispatch
        return dispatch

    def add_restore_workflow(self, op: Operation) -> RestoreWorkflow:
        """The job's function (in the region's VPC, allowed to create and delete its throwaway
        targets) and a state machine that its schedules start instead of the function."""
        make = lambda: self.restore_target_grants(self.grants(op))  # noqa: E731
        runner = self.phase_runner(op, make, op.long_phases)
        grants = self.with_handoffs(op, make()) if runner else make()
        function = self.add_function(op, grants, scheduled=False)
        workflow = RestoreWorkflow(
            self.scope,
            f"{op.name.title().replace('-', '')}Workflow",
            operation=op.name,
            function=function.function,
            state_machine_name=f"{self.config.name}-{op.name}",
            log_retention=_retention(self.config.log_retention_days),
            runner=runner,
        )
        for schedule in self.schedules(op):
            rule = schedule_rule(
                self.scope,
                f"{op.name.title().replace('-', '')}{schedule.id}",
                schedule,
                f"pgrunbook {op.name} (restore workflow)",
            )
            rule.add_target(
                targets.SfnStateMachine(
                    workflow.state_machine,
                    input=events.RuleTargetInput.from_object(
                        {"operation": op.name, "options": schedule.input}
                    ),
                    retry_attempts=2,
                    max_event_age=Duration.hours(2),
                    dead_letter_queue=self.dead_letters,
                )
            )
        self.restore_workflows[op.name] = workflow
        return workflow

    def restore_target_grants(self, grants: Grants) -> Grants:
        """Create, watch and delete this database's throwaway RDS restore targets (named
        ``pgrunbook-<database>-rt-*`` and tagged ``pgrunbook:purpose=restore-target``), read the
        master secret RDS keeps for them, and nothing else in RDS."""
        targets = self.config.restore_targets
        group = targets["dr_subnet_group" if self.region_role == "dr" else "subnet_group"]
        rt = f"arn:{{partition}}:rds:{{region}}:{{account}}:db:pgrunbook-{self.config.database_name}-rt-*"
        purpose = {PURPOSE_TAG: PURPOSE}
        why = "a throwaway target is named by the run that creates it"
        grants.add(
            "RestoreTargetCreate",
            ["rds:CreateDBInstance", "rds:AddTagsToResource"],
            [
                rt,
                f"arn:{{partition}}:rds:{{region}}:{{account}}:subgrp:{group}",
                "arn:{partition}:rds:{region}:{account}:pg:default.*",
                "arn:{partition}:rds:{region}:{account}:og:default:*",
            ],
            {"StringEquals": {f"aws:RequestTag/{k}": v for k, v in purpose.items()}},
            why=why + "; RDS's default parameter and option groups are named by engine version",
        )
        grants.add(
            "RestoreTargetDelete",
            ["rds:DeleteDBInstance"],
            [rt],
            {"StringEquals": {f"rds:db-tag/{k}": v for k, v in purpose.items()}},
            why=why,
        )
        grants.add(
            "RestoreTargetDescribe",
            ["rds:DescribeDBInstances", "rds:ListTagsForResource"],
            ["arn:{partition}:rds:{region}:{account}:db:*"],
            why="the sweep lists the region's instances to find leftover targets by their tags",
        )
        grants.add(
            "RestoreTargetSecret",
            ["secretsmanager:CreateSecret", "secretsmanager:TagResource", "secretsmanager:GetSecretValue"],
            ["arn:{partition}:secretsmanager:{region}:{account}:secret:rds!db-*"],
            why="RDS names the master secret it manages for a new instance (rds!db-<id>)",
        )
        grants.add(
            "RdsServiceLinkedRole",
            ["iam:CreateServiceLinkedRole"],
            ["arn:{partition}:iam::{account}:role/aws-service-role/rds.amazonaws.com/AWSServiceRoleForRDS"],
            {"StringEquals": {"iam:AWSServiceName": "rds.amazonaws.com"}},
        )
        return grants

    def add_workflow(self, op: Operation, make_grants: Callable[[], Grants] | None = None) -> PhaseWorkflow:
        make = make_grants or (lambda: self.grants(op))
        long_phases = self.long_phases(op)
        runner = self.phase_runner(op, make, long_phases)
        grants = self.with_handoffs(op, make()) if runner else make()
        function = self.add_function(op, grants)
        config = self.config
        extra = config.pitr["deadline_minutes"] if op.name == "pitr" else EXTRA_MINUTES.get(op.name, 0)
        return WORKFLOW_CONSTRUCTS[op.name](
            self.scope,
            WORKFLOW_IDS[op.name],
            function=function.function,
            state_machine_name=f"{config.name}-{op.name}",
            timeout=Duration.minutes(config.approval_timeout_seconds(op.name) // 60 + extra + 120),
            log_retention=_retention(config.log_retention_days),
            runner=runner,
            long_phases=long_phases,
        )

    def long_phases(self, op: Operation) -> tuple[str, ...]:
        """The phases that may outgrow a Lambda invocation with this deployment's provider: a
        recovery through RDS or Supabase is API calls (Supabase's safety point may be a backup)."""
        if op.name != "pitr":
            return op.long_phases
        return {"logical": op.long_phases, "supabase": ("safety_point",)}.get(
            self.config.pitr["provider"], ()
        )

    def with_handoffs(self, op: Operation, grants: Grants) -> Grants:
        """Handing a phase's state to its task and back: objects under ``runs/`` only."""
        location = self.locations["dr" if op.region == "dr" else "primary"]
        return grants.objects(
            "Handoffs", location, [everything_under(RUNS)], read=True, write=True, delete=True
        )

    def phase_runner(
        self, op: Operation, make_grants: Callable[[], Grants], long_phases: tuple[str, ...]
    ) -> PhaseRunner | None:
        """The Fargate task of a workflow whose long phases may run there (None: Lambda only)."""
        mode = self.config.runner_mode(op.name)
        if mode == "lambda" or not long_phases or op.task is None or op.function is None:
            return None
        job = self.fargate_job(op, self.with_handoffs(op, make_grants()))
        return PhaseRunner(op.name, mode, job, job.network, self.lambda_limits(op))


class PrimaryJobs(DatabaseJobs):
    """A database's daily and weekly jobs, its recovery, migration and table-recovery
    workflows, their outputs, alarms and dashboard widgets."""

    def __init__(self, stack: _PgRunbookStack, scope: Construct, config: DeploymentConfig) -> None:
        super().__init__(stack, scope, config)
        self.add_jobs()
        self.pitr = self.add_workflow(registry.get("pitr"), self.pitr_grants)
        self.migrations = self.add_workflow(registry.get("migrate"))
        self.table_recovery = self.add_workflow(registry.get("recover-tables"))
        self.output(
            "TableRecoveryStateMachineArn",
            self.table_recovery.state_machine.state_machine_arn,
            "PGRUNBOOK_RECOVER_TABLES_STATE_MACHINE_ARN for pgrunbook recover-tables "
            "start|status|approve|reject",
        )
        self.output(
            "MigrationStateMachineArn",
            self.migrations.state_machine.state_machine_arn,
            "PGRUNBOOK_MIGRATION_STATE_MACHINE_ARN for pgrunbook migrate start|approve|reject",
        )
        self.output(
            "PitrStateMachineArn",
            self.pitr.state_machine.state_machine_arn,
            "PGRUNBOOK_PITR_STATE_MACHINE_ARN for pgrunbook pitr start|status|approve|reject",
        )
        self.output(
            "MaintenanceParameter",
            self.config.maintenance_parameter,
            "the SSM parameter the application reads for maintenance mode",
        )
        self.monitoring = self.monitor(
            ("backup",),
            {
                "pitr": self.pitr.state_machine,
                "migrate": self.migrations.state_machine,
                "recover-tables": self.table_recovery.state_machine,
            },
        )

    def pitr_grants(self) -> Grants:
        """The recovery function's grants: the registry's, and the configured provider's."""
        config = self.config
        provider = config.pitr["provider"]
        grants = Grants().add(
            "MaintenanceMode",
            ["ssm:GetParameter", "ssm:PutParameter"],
            ["arn:{partition}:ssm:{region}:{account}:parameter" + config.maintenance_parameter],
        )
        grants = self.grants(registry.get("pitr")).include(grants)
        secret = [config.database_secret_arn]
        if provider == "supabase":  # recovers in place: the secret is only read
            grants.add("DatabaseSecret", ["secretsmanager:GetSecretValue"], secret)
            grants.add(
                "ApiToken", ["secretsmanager:GetSecretValue"], [config.pitr["supabase_token_secret_arn"]]
            )
        else:  # cutover points the database secret at the recovered database
            grants.add(
                "DatabaseSecret", ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"], secret
            )
        if provider in ("logical", "supabase"):
            # logical: the safety point is a backup (both regions), the recovery a restore on the
            # live server.  supabase: a backup is the safety point when the restore-point endpoint
            # (x-internal) is unavailable.
            primary = self.locations["primary"]
            grants.declared(registry.get("backup").grants, self.locations.__getitem__, self.secret_arn)
            grants.objects("BackupReports", primary, [everything_under(REPORTS, "backup")], write=True)
            grants.objects("Leases", primary, [registry.ALL_LEASES], write=True, delete=True)
        if provider == "rds":
            grants = self._rds_grants(grants)
        return grants

    def _rds_grants(self, grants: Grants) -> Grants:
        pitr = self.config.pitr
        why = "the recovered instance, its snapshot and the groups it is placed in are named at run time"
        if pitr["rds_cluster"]:
            source = pitr["rds_cluster"]
            resources = [
                f"arn:{{partition}}:rds:{{region}}:{{account}}:cluster:{source}",
                f"arn:{{partition}}:rds:{{region}}:{{account}}:cluster:{source}-pitr-*",
                f"arn:{{partition}}:rds:{{region}}:{{account}}:cluster-snapshot:{source}-pre-pitr-*",
                f"arn:{{partition}}:rds:{{region}}:{{account}}:db:{source}-pitr-*",
                "arn:{partition}:rds:{region}:{account}:db:*",
                "arn:{partition}:rds:{region}:{account}:subgrp:*",
                "arn:{partition}:rds:{region}:{account}:cluster-pg:*",
                "arn:{partition}:rds:{region}:{account}:pg:*",
            ]
            actions = [
                "rds:DescribeDBClusters",
                "rds:DescribeDBInstances",
                "rds:CreateDBClusterSnapshot",
                "rds:DescribeDBClusterSnapshots",
                "rds:RestoreDBClusterToPointInTime",
                "rds:CreateDBInstance",
                "rds:AddTagsToResource",
                "rds:ListTagsForResource",
            ]
        else:
            source = pitr["rds_instance"]
            resources = [
                f"arn:{{partition}}:rds:{{region}}:{{account}}:db:{source}",
                f"arn:{{partition}}:rds:{{region}}:{{account}}:db:{source}-pitr-*",
                f"arn:{{partition}}:rds:{{region}}:{{account}}:snapshot:{source}-pre-pitr-*",
                "arn:{partition}:rds:{region}:{account}:auto-backup:*",
                "arn:{partition}:rds:{region}:{account}:subgrp:*",
                "arn:{partition}:rds:{region}:{account}:pg:*",
                "arn:{partition}:rds:{region}:{account}:og:*",
            ]
            actions = [
                "rds:DescribeDBInstances",
                "rds:DescribeDBInstanceAutomatedBackups",
                "rds:CreateDBSnapshot",
                "rds:DescribeDBSnapshots",
                "rds:RestoreDBInstanceToPointInTime",
                "rds:AddTagsToResource",
                "rds:ListTagsForResource",
            ]
        return grants.add("RdsRecovery", actions, resources, why=why)


class DrJobs(DatabaseJobs):
    """A database's monthly DR drill in the DR region, and its alarms."""

    def __init__(self, stack: _PgRunbookStack, scope: Construct, config: DeploymentConfig) -> None:
        super().__init__(stack, scope, config)
        self.add_jobs()
        self.monitoring = self.monitor(("drill",), {})


class PrimaryStack(_PgRunbookStack):
    region_role = "primary"
    jobs_class = PrimaryJobs


class DrStack(_PgRunbookStack):
    region_role = "dr"
    jobs_class = DrJobs
