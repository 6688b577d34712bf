"""Alerts: one KMS-encrypted SNS topic, the runbook's thresholds as alarms, a dashboard.

The jobs publish their own reports to the topic when something is wrong (with the
runbook's templates); the alarms here watch the figures they emit as CloudWatch metrics
(namespace ``pgrunbook``, dimensions ``Database`` and ``service``), so that a job that stops
running is noticed too:

=====================  ========================  =======  ========  ======================
metric                 emitted by                warning  critical  missing data
=====================  ========================  =======  ========  ======================
BackupAgeHours         verify (daily)            > 26 h   > 48 h    breaching: no verify
                                                                     run is news too
BackupFailureRatePct   verify                    > 5 %    > 15 %    ignored
BackupDurationSeconds  backup                    > 30 min > 2 h     ignored
StorageGrowthPct       verify                    > 50 %   > 100 %   ignored
RestoreIntegrityPct    restore-test (weekly)     -        < 100 %   ignored
DrillRtoSeconds        dr-drill (DR region)      > 6 h    > 12 h    ignored
DrillRpoSeconds        dr-drill (DR region)      > 2 h    > 4 h     ignored
=====================  ========================  =======  ========  ======================

plus, for every function, Errors and Throttles; for the recovery workflow, executions that
timed out or were stopped by hand; and messages in the schedules' dead-letter queue.  Alarm thresholds come from ``cdk.json`` like the jobs' own.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_chatbot as chatbot
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import DeploymentConfig
from pgrunbook.domain import metrics as m
from pgrunbook.domain.metrics import DIMENSION, NAMESPACE

DAY = Duration.days(1)


class Alerts(Construct):
    """The topic every job, alarm and failed invocation reports to, and the dead-letter queue."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, dead_letters: bool = True
    ) -> None:
        """``dead_letters``: the schedules' dead-letter queue here (the single-database form;
        in the list form each database has its own: :meth:`dead_letter_queue`)."""
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description=f"Encrypts {config.stem}'s alerts and dead letters",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # Alarms and EventBridge deliver into the encrypted topic and queue.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsAndSchedules",
                principals=[
                    iam.ServicePrincipal("cloudwatch.amazonaws.com"),
                    iam.ServicePrincipal("events.amazonaws.com"),
                ],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            topic_name=f"{config.stem}-alerts",
            display_name=f"pgrunbook {config.prefix if config.listed else config.database_name}",
            master_key=self.key,
            enforce_ssl=True,
        )
        if config.alert_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alert_email))
        self.dead_letters: sqs.Queue | None = self.dead_letter_queue(self, config) if dead_letters else None
        self.chat_channels = self._chat(config)

    def dead_letter_queue(self, scope: Construct, config: DeploymentConfig) -> sqs.Queue:
        """A database's queue for its schedules' undeliverable events, encrypted with the
        alerts key: ``<prefix>-<database>-schedule-dead-letters``."""
        queue = sqs.Queue(
            scope,
            "DeadLetters",
            queue_name=f"{config.name}-schedule-dead-letters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        Validations.of(queue).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason="This queue is itself the dead-letter queue of the job schedules.",
            )
        )
        return queue

    def _chat(self, config: DeploymentConfig) -> list:
        """cdk.json's ``chat``: AWS Chatbot channel configurations subscribed to this topic.
        They only show notices: the channel role has no permissions, and the guardrail denies
        every action, so nobody can run an AWS command from the channel."""
        slack, teams = config.chat["slack"], config.chat["teams"]
        if not slack and not teams:
            return []
        region = Stack.of(self).region
        role = iam.Role(
            self,
            "ChatRole",
            assumed_by=iam.ServicePrincipal("chatbot.amazonaws.com"),
            description="pgrunbook's chat channels: notices only, no permissions",
        )
        guardrail = iam.ManagedPolicy(
            self,
            "ChatGuardrail",
            description="pgrunbook's chat channels may run nothing",
            statements=[iam.PolicyStatement(effect=iam.Effect.DENY, actions=["*"], resources=["*"])],
        )
        made: list = []
        for i, channel in enumerate(slack):
            made.append(
                chatbot.CfnSlackChannelConfiguration(
                    self,
                    f"Slack{i}",
                    configuration_name=f"{config.stem}-{region}-slack-{i}",
                    iam_role_arn=role.role_arn,
                    slack_workspace_id=channel["workspace_id"],
                    slack_channel_id=channel["channel_id"],
                    sns_topic_arns=[self.topic.topic_arn],
                    guardrail_policies=[guardrail.managed_policy_arn],
                    logging_level="ERROR",
                )
            )
        for i, channel in enumerate(teams):
            made.append(
                chatbot.CfnMicrosoftTeamsChannelConfiguration(
                    self,
                    f"Teams{i}",
                    configuration_name=f"{config.stem}-{region}-teams-{i}",
                    iam_role_arn=role.role_arn,
                    team_id=channel["team_id"],
                    teams_channel_id=channel["channel_id"],
                    teams_tenant_id=channel["tenant_id"],
                    sns_topic_arns=[self.topic.topic_arn],
                    guardrail_policies=[guardrail.managed_policy_arn],
                    logging_level="ERROR",
                )
            )
        return made


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        alerts: Alerts,
        dead_letters: sqs.IQueue,
        functions: dict[str, object],
        dr_region: str | None = None,
        metrics: tuple[str, ...] = (),
        workflows: dict[str, object] | None = None,
        dashboard: cw.Dashboard | None = None,
    ) -> None:
        """``dashboard``: the deployment's, where this database's widgets go under its name
        (the list form); without it, the database's own dashboard."""
        super().__init__(scope, construct_id)
        self.config = config
        self.action = cw_actions.SnsAction(alerts.topic)
        self.alarms: dict[str, cw.Alarm] = {}
        thresholds = config.thresholds
        wanted = set(metrics)
        if "backup" in wanted:
            age_w, age_c = thresholds["backup_age_hours"]
            self._pair(
                "BackupAge",
                m.BACKUP_AGE.name,
                age_w,
                age_c,
                "the newest restorable backup is {} hours old",
                missing=cw.TreatMissingData.BREACHING,
            )
            rate_w, rate_c = thresholds["backup_failure_rate_pct"]
            self._pair(
                "BackupFailureRate",
                m.BACKUP_FAILURE_RATE.name,
                rate_w,
                rate_c,
                "{} % of backup runs failed in 7 days",
            )
            dur_w, dur_c = thresholds["backup_duration_minutes"]
            self._pair(
                "BackupDuration",
                m.BACKUP_DURATION.name,
                dur_w * 60,
                dur_c * 60,
                "a backup took more than {} seconds",
            )
            growth_w, growth_c = thresholds["storage_growth_pct"]
            self._pair(
                "StorageGrowth", m.STORAGE_GROWTH.name, growth_w, growth_c, "backups grew {} % in a month"
            )
            self._daily_minimum_below(
                "RestoreIntegrity-critical",
                m.RESTORE_INTEGRITY.name,
                100,
                "CRITICAL: the weekly restore test restored less than 100 % of the tables",
            )
            self._daily_minimum_below(
                "RestoreTested-critical",
                m.RESTORE_TESTED.name,
                1,
                "CRITICAL: the restore test could not test a backup (Backup Not Tested: the restore "
                "target cannot host it, or the restore did not complete)",
            )
        if "drill" in wanted:
            rto_w, rto_c = thresholds["rto_hours"]
            self._pair(
                "DrillRto",
                m.DRILL_RTO.name,
                rto_w * 3600,
                rto_c * 3600,
                "the DR drill's RTO passed {} seconds",
            )
            self._daily_minimum_below(
                "DrillTested-critical",
                m.RESTORE_TESTED.name,
                1,
                "CRITICAL: the DR drill could not test any DR backup (the DR target cannot host it, "
                "or no restore completed)",
            )
            rpo_w, rpo_c = thresholds["rpo_hours"]
            self._pair(
                "DrillRpo",
                m.DRILL_RPO.name,
                rpo_w * 3600,
                rpo_c * 3600,
                "the DR drill's RPO passed {} seconds",
            )
        five_minutes = Duration.minutes(5)
        for job, fn in functions.items():
            for name in ("Errors", "Throttles"):
                self._any(
                    f"{job}-{name}",
                    f"CRITICAL: the {job} function reported {name.lower()}",
                    fn.metric(name, period=five_minutes, statistic="Sum"),  # type: ignore[attr-defined]
                )
        for name, machine in (workflows or {}).items():
            # Failures inside the workflow send their own CRITICAL notice; an execution that
            # timed out or was stopped by hand did not, and may have left maintenance mode on.
            for metric_name, what in (
                ("ExecutionsTimedOut", "timed out"),
                ("ExecutionsAborted", "was stopped"),
            ):
                consequence = {
                    "restore-test": "its throwaway RDS target may still exist (the next run's sweep deletes it)",
                    "dr-drill": "its throwaway RDS target may still exist (the next run's sweep deletes it)",
                    "backup": "its run may have left no report (pgrunbook status shows it unfinished)",
                    "recover-tables": "the backup's copy of the tables may remain in its side schema "
                    "(pgrunbook recover-tables status)",
                }.get(name, "maintenance mode may still be on (pgrunbook pitr status)")
                self._any(
                    f"{name}-{metric_name}",
                    f"CRITICAL: a {name} execution {what} without finishing: {consequence}",
                    machine.metric(metric_name, period=five_minutes, statistic="Sum"),  # type: ignore[attr-defined]
                )
        self._any(
            "DeadLetters",
            "CRITICAL: a scheduled job could not be started (see the dead-letter queue)",
            dead_letters.metric_approximate_number_of_messages_visible(period=five_minutes),
            alarm_name=f"{config.name}-schedule-dead-letters",
        )
        if "backup" in wanted:
            if dashboard is None:
                self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{config.name}-backups")
            else:
                self.dashboard = dashboard
                dashboard.add_widgets(
                    cw.TextWidget(markdown=f"## {config.database_name}", width=24, height=1)
                )
            for row in self.widgets(dr_region):
                self.dashboard.add_widgets(*row)

    # -- alarms ----------------------------------------------------------------------------

    def _any(self, alarm_id: str, description: str, metric: cw.IMetric, *, alarm_name: str = "") -> cw.Alarm:
        """An alarm on anything at all (errors, throttles, stopped executions, dead letters)."""
        alarm = cw.Alarm(
            self,
            alarm_id,
            alarm_name=alarm_name or f"{self.config.name}-{alarm_id.lower()}",
            alarm_description=description,
            metric=metric,
            threshold=0,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self.action)
        self.alarms[alarm_id] = alarm
        return alarm

    def metric(
        self, name: str, *, statistic: str = "Maximum", period: Duration = DAY, region: str | None = None
    ):
        return cw.Metric(
            namespace=NAMESPACE,
            metric_name=name,
            dimensions_map={DIMENSION: self.config.database_name, "service": "pgrunbook"},
            statistic=statistic,
            period=period,
            region=region,
        )

    def _alarm(
        self,
        alarm_id: str,
        metric_name: str,
        threshold: float,
        description: str,
        *,
        comparison: cw.ComparisonOperator = cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
        missing: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING,
        statistic: str = "Maximum",
        period: Duration = DAY,
    ) -> cw.Alarm:
        alarm = cw.Alarm(
            self,
            alarm_id,
            alarm_name=f"{self.config.name}-{alarm_id}",
            alarm_description=description,
            metric=self.metric(metric_name, statistic=statistic, period=period),
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=comparison,
            treat_missing_data=missing,
        )
        alarm.add_alarm_action(self.action)
        return alarm

    def _daily_minimum_below(
        self, alarm_id: str, metric_name: str, threshold: float, description: str
    ) -> None:
        """A critical alarm on a metric published once a run (weekly, monthly): the day's
        lowest value under ``threshold``."""
        self.alarms[alarm_id] = self._alarm(
            alarm_id,
            metric_name,
            threshold,
            description,
            comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            statistic="Minimum",
            period=Duration.days(1),
        )

    def _pair(
        self,
        name: str,
        metric_name: str,
        warning: float,
        critical: float,
        what: str,
        *,
        missing: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING,
    ) -> None:
        for severity, value in (("warning", warning), ("critical", critical)):
            alarm_id = f"{name}-{severity}"
            self.alarms[alarm_id] = self._alarm(
                alarm_id,
                metric_name,
                value,
                f"{severity.upper()}: {what.format(f'{value:g}')} ({metric_name} > {value:g})",
                missing=missing,
            )

    # -- dashboard -------------------------------------------------------------------------

    def widgets(self, dr_region: str | None) -> list[list[cw.IWidget]]:
        """The database's rows of the dashboard."""
        hourly = Duration.hours(1)
        return [
            [
                cw.GraphWidget(
                    title="Age of the newest restorable backup (h)",
                    left=[self.metric(m.BACKUP_AGE.name, period=hourly)],
                    left_annotations=[
                        cw.HorizontalAnnotation(value=v, label=f"{s} {v} h")
                        for s, v in zip(
                            ("warning", "critical"), self.config.thresholds["backup_age_hours"], strict=True
                        )
                    ],
                ),
                cw.GraphWidget(
                    title="Backup size (bytes)",
                    left=[self.metric(m.BACKUP_SIZE.name, period=DAY)],
                ),
            ],
            [
                cw.GraphWidget(
                    title="Weekly restore test: integrity (%) and duration (s)",
                    left=[self.metric(m.RESTORE_INTEGRITY.name, statistic="Minimum")],
                    right=[self.metric(m.RESTORE_DURATION.name)],
                ),
                cw.GraphWidget(
                    title="Monthly DR drill: RTO and RPO (s)",
                    left=[
                        self.metric(m.DRILL_RTO.name, region=dr_region),
                        self.metric(m.DRILL_RPO.name, region=dr_region),
                    ],
                ),
            ],
        ]
