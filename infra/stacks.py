"""The two stacks: they only assemble the constructs (storage, layers, jobs, monitoring).

* ``PrimaryStack``, in the primary region: the primary backup bucket, the daily and weekly
  jobs (backup, retention, verify, restore test, health), alerts and the dashboard.
* ``DrStack``, in the second region: the DR bucket the backup job copies into, and the
  monthly DR drill, which assumes the primary region is gone and so runs here, with its own
  alerts, restoring into the DR region's restore target.

Deploy the DR stack first (the backup job in the primary region copies into its bucket).
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Duration, Stack
from constructs import Construct

from .access import BackupLocation, Grants
from .config import DeploymentConfig
from .layers import pgrunbook_layer, pgtools_layer
from .monitoring import Alerts, Monitoring
from .scheduled_job import RUNTIME, JobSpec, Schedule, ScheduledJob, _retention
from .storage import BackupStorage
from .workflows import MigrationWorkflow, PitrWorkflow


def primary_jobs(config: DeploymentConfig) -> list[JobSpec]:
    s = config.schedules
    backup_schedules = [Schedule("Daily", s["backup"])]
    backup_schedules.append(
        Schedule("Hourly", s["hourly_backup"], {"tier": "hourly"}, enabled=config.hourly_backups)
    )
    return [
        JobSpec(
            "backup",
            "pgrunbook backup: snapshot, pg_dump, fingerprints, upload, DR copy (tiers from the date)",
            memory_mb=3008,
            timeout_minutes=15,
            ephemeral_mb=10240,
            exclusive=True,
            schedules=tuple(backup_schedules),
        ),
        JobSpec(
            "retention",
            "pgrunbook retention: grandfather-father-son by tier, both regions",
            memory_mb=512,
            timeout_minutes=10,
            exclusive=True,
            schedules=(Schedule("Daily", s["retention"]),),
        ),
        JobSpec(
            "verify",
            "pgrunbook verify: freshness, checksums in both regions, database checks",
            memory_mb=1024,
            timeout_minutes=10,
            schedules=(Schedule("Daily", s["verify"]),),
        ),
        JobSpec(
            "restore-test",
            "pgrunbook restore-test: the latest weekly backup restored and proven complete",
            memory_mb=3008,
            timeout_minutes=15,
            ephemeral_mb=10240,
            exclusive=True,
            schedules=(Schedule("Weekly", s["restore_test"], {"prefer_tier": "weekly"}),),
        ),
        JobSpec(
            "health",
            "pgrunbook health: slow queries, unused indexes, bloat, locks, statistics",
            memory_mb=512,
            timeout_minutes=5,
            schedules=(Schedule("Weekly", s["health"]),),
        ),
    ]


def drill_job(config: DeploymentConfig) -> JobSpec:
    return JobSpec(
        "dr-drill",
        "pgrunbook dr-drill: restore from the DR region only; measure RTO and RPO",
        memory_mb=3008,
        timeout_minutes=15,
        ephemeral_mb=10240,
        exclusive=True,
        schedules=(Schedule("Monthly", config.schedules["dr_drill"], {"scenario": "complete_data_loss"}),),
    )


class _PgRunbookStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.storage = BackupStorage(
            self,
            "Storage",
            bucket_name=config.bucket_name(Aws.ACCOUNT_ID, self.region),
            key_alias=config.key_alias,
            noncurrent_version_days=config.noncurrent_version_days,
        )
        self.layers = [pgrunbook_layer(self, "Library", runtime=RUNTIME), pgtools_layer(self, "PgTools")]
        self.alerts = Alerts(self, "Alerts", config=config)
        self.jobs: dict[str, ScheduledJob] = {}

    def location(self, *, here: bool) -> BackupLocation:
        """This stack's bucket (``here``) or the other region's."""
        config = self.config
        root = f"{config.key_prefix}/{config.database_name}"
        if here:
            # by name, not by reference: the grants' ARNs are then the same strings in both
            # stacks, and cdk-nag's findings about them can be acknowledged by exact id
            return BackupLocation(
                config.bucket_name("{account}", self.region), root, key_arn=self.storage.key.key_arn
            )
        other = config.dr_region if self.region == config.primary_region else config.primary_region
        return BackupLocation(
            config.bucket_name("{account}", other), root, key_alias=config.key_alias, key_region=other
        )

    def add_job(self, spec: JobSpec, grants: Grants, environment: dict[str, str]) -> ScheduledJob:
        job = ScheduledJob(
            self,
            spec.folder.title().replace("_", ""),
            spec=spec,
            function_name=f"{self.config.name}-{spec.job}",
            layers=self.layers,
            environment={
                **self.config.job_environment(),
                **environment,
                "PGRUNBOOK_SNS_TOPIC_ARN": self.alerts.topic.topic_arn,
            },
            grants=grants,
            topic=self.alerts.topic,
            topic_key=self.alerts.key,
            dead_letters=self.alerts.dead_letters,
            log_retention_days=self.config.log_retention_days,
            vpc=self.config.vpc,
        )
        self.jobs[spec.job] = job
        return job


class PrimaryStack(_PgRunbookStack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, config=config, **kwargs)
        primary, dr = self.location(here=True), self.location(here=False)
        buckets = {
            "PGRUNBOOK_BUCKET": primary.bucket_name,
            "PGRUNBOOK_REGION": config.primary_region,
            "PGRUNBOOK_DR_BUCKET": dr.bucket_name,
            "PGRUNBOOK_DR_REGION": config.dr_region,
        }
        database = {"PGRUNBOOK_DATABASE_SECRET_ARN": config.database_secret_arn}
        secret = [config.database_secret_arn]
        specs = {spec.job: spec for spec in primary_jobs(config)}

        def reports(grants: Grants, job: str) -> Grants:
            return grants.objects("OwnReports", primary, [f"reports/{job}/*"], write=True)

        backup = (
            Grants()
            .bucket("PrimaryBucket", primary, lock=True)
            .objects("PrimaryBackups", primary, ["backups/*"], read=True, write=True, delete=True, lock=True)
            .key("PrimaryKey", primary, encrypt=True, decrypt=True)
            .bucket("DrBucket", dr, lock=True)
            .objects("DrBackups", dr, ["backups/*"], read=True, write=True, delete=True, lock=True)
            .key("DrKey", dr, encrypt=True, decrypt=True)
            .add("DatabaseSecret", ["secretsmanager:GetSecretValue"], secret)
        )
        self.add_job(specs["backup"], reports(backup, "backup"), {**buckets, **database})

        retention = (
            Grants()
            .bucket("PrimaryBucket", primary)
            .objects("PrimaryBackups", primary, ["backups/*"], read=True, write=True, delete=True)
            .objects("PrimaryLeases", primary, ["leases/*"], delete=True)
            .objects("PrimaryReports", primary, ["reports/*"], read=True)
            .key("PrimaryKey", primary, encrypt=True, decrypt=True)
            .bucket("DrBucket", dr)
            .objects("DrBackups", dr, ["backups/*"], read=True, write=True, delete=True)
            .objects("DrLeases", dr, ["leases/*"], delete=True)
            .key("DrKey", dr, encrypt=True, decrypt=True)
        )
        self.add_job(specs["retention"], reports(retention, "retention"), buckets)

        verify = (
            Grants()
            .bucket("PrimaryBucket", primary)
            .objects("PrimaryRead", primary, ["backups/*", "reports/*"], read=True)
            .key("PrimaryKey", primary, encrypt=True, decrypt=True)
            .bucket("DrBucket", dr)
            .objects("DrBackups", dr, ["backups/*"], read=True)
            .key("DrKey", dr, decrypt=True)
            .add("DatabaseSecret", ["secretsmanager:GetSecretValue"], secret)
        )
        self.add_job(specs["verify"], reports(verify, "verify"), {**buckets, **database})

        restore = (
            Grants()
            .bucket("PrimaryBucket", primary)
            .objects("PrimaryBackups", primary, ["backups/*"], read=True)
            .objects("PrimaryLeases", primary, ["leases/*"], write=True, delete=True)
            .key("PrimaryKey", primary, encrypt=True, decrypt=True)
            .add("RestoreTargetSecret", ["secretsmanager:GetSecretValue"], [config.restore_target_secret_arn])
        )
        self.add_job(
            specs["restore-test"],
            reports(restore, "restore-test"),
            {
                "PGRUNBOOK_BUCKET": primary.bucket_name,
                "PGRUNBOOK_REGION": config.primary_region,
                "PGRUNBOOK_RESTORE_TARGET_SECRET_ARN": config.restore_target_secret_arn,
            },
        )

        health = (
            Grants()
            .key("PrimaryKey", primary, encrypt=True)
            .add("DatabaseSecret", ["secretsmanager:GetSecretValue"], secret)
        )
        self.add_job(
            specs["health"],
            reports(health, "health"),
            {"PGRUNBOOK_BUCKET": primary.bucket_name, "PGRUNBOOK_REGION": config.primary_region, **database},
        )
        self.pitr = self.add_pitr(primary, dr, buckets, database, backup)
        self.migrations = self.add_migrations(primary, buckets, database, backup)
        CfnOutput(
            self,
            "MigrationStateMachineArn",
            value=self.migrations.state_machine.state_machine_arn,
            description="PGRUNBOOK_MIGRATION_STATE_MACHINE_ARN for pgrunbook migrate start|approve|reject",
        )
        CfnOutput(
            self,
            "PitrStateMachineArn",
            value=self.pitr.state_machine.state_machine_arn,
            description="PGRUNBOOK_PITR_STATE_MACHINE_ARN for pgrunbook pitr start|status|approve|reject",
        )
        CfnOutput(
            self,
            "MaintenanceParameter",
            value=self.config.maintenance_parameter,
            description="the SSM parameter the application reads for maintenance mode",
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            alerts=self.alerts,
            functions={job: j.function for job, j in self.jobs.items()},
            dr_region=config.dr_region,
            metrics=("backup",),
            workflows={"pitr": self.pitr.state_machine, "migrate": self.migrations.state_machine},
        )

    def add_pitr(
        self,
        primary: BackupLocation,
        dr: BackupLocation,
        buckets: dict[str, str],
        database: dict[str, str],
        backup: Grants,
    ) -> PitrWorkflow:
        """The recovery workflow and its function, with the grants of the configured provider."""
        config = self.config
        pitr = config.pitr
        grants = (
            Grants()
            .add(
                "MaintenanceMode",
                ["ssm:GetParameter", "ssm:PutParameter"],
                ["arn:{partition}:ssm:{region}:{account}:parameter" + config.maintenance_parameter],
            )
            .objects("OwnReports", primary, ["reports/pitr/*"], write=True)
            .key("PrimaryKey", primary, encrypt=True, decrypt=True)
        )
        secret = [config.database_secret_arn]
        if pitr["provider"] == "supabase":  # recovers in place: the secret is only read
            grants.add("DatabaseSecret", ["secretsmanager:GetSecretValue"], secret)
            grants.add("ApiToken", ["secretsmanager:GetSecretValue"], [pitr["supabase_token_secret_arn"]])
        else:  # cutover points the database secret at the recovered database
            grants.add(
                "DatabaseSecret", ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"], secret
            )
        if pitr["provider"] == "logical":
            # the safety point is a backup (both regions), the recovery a restore on the live server
            grants.include(backup, without=("DatabaseSecret", "PrimaryKey", "OwnReports"))
            grants.objects("BackupReports", primary, ["reports/backup/*"], write=True)
            grants.objects("Leases", primary, ["leases/*"], write=True, delete=True)
        if pitr["provider"] == "rds":
            grants = self._rds_grants(grants)
        spec = JobSpec(
            "pitr",
            "pgrunbook point-in-time recovery: every phase of the recovery workflow",
            memory_mb=3008,
            timeout_minutes=15,
            ephemeral_mb=10240,
            schedules=(),
        )
        job = self.add_job(spec, grants, {**buckets, **database, **config.pitr_environment()})
        return PitrWorkflow(
            self,
            "PitrWorkflow",
            function=job.function,
            state_machine_name=f"{config.name}-pitr",
            timeout=Duration.minutes(pitr["approval_timeout_minutes"] + pitr["deadline_minutes"] + 120),
            log_retention=_retention(config.log_retention_days),
        )

    def add_migrations(
        self, primary: BackupLocation, buckets: dict[str, str], database: dict[str, str], backup: Grants
    ) -> MigrationWorkflow:
        """The migration workflow: it takes a backup (the backup job's grants), restores it for
        the dry run (the restore target), and migrates the database (its secret, read only)."""
        config = self.config
        grants = Grants().include(backup, without=("OwnReports",))
        grants.objects("OwnReports", primary, ["reports/migrate/*", "reports/backup/*"], write=True)
        grants.objects("Leases", primary, ["leases/*"], write=True, delete=True)
        grants.add(
            "RestoreTargetSecret", ["secretsmanager:GetSecretValue"], [config.restore_target_secret_arn]
        )
        spec = JobSpec(
            "migrate",
            "pgrunbook schema migration: every phase of the migration workflow",
            memory_mb=3008,
            timeout_minutes=15,
            ephemeral_mb=10240,
            schedules=(),
        )
        job = self.add_job(
            spec,
            grants,
            {
                **buckets,
                **database,
                "PGRUNBOOK_RESTORE_TARGET_SECRET_ARN": config.restore_target_secret_arn,
                **config.migrations_environment(),
            },
        )
        return MigrationWorkflow(
            self,
            "MigrationWorkflow",
            function=job.function,
            state_machine_name=f"{config.name}-migrate",
            timeout=Duration.minutes(config.migrations["approval_timeout_minutes"] + 120),
            log_retention=_retention(config.log_retention_days),
        )

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


class DrStack(_PgRunbookStack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, config=config, **kwargs)
        dr, primary = self.location(here=True), self.location(here=False)
        drill = (
            Grants()
            .bucket("DrBucket", dr)
            .objects("DrBackups", dr, ["backups/*"], read=True)
            .objects("DrReports", dr, ["reports/dr-drill/*"], read=True, write=True)
            .objects("DrLeases", dr, ["leases/*"], write=True, delete=True)
            .key("DrKey", dr, encrypt=True, decrypt=True)
            .add(
                "DrRestoreTargetSecret",
                ["secretsmanager:GetSecretValue"],
                [config.dr_restore_target_secret_arn],
            )
            # a copy of each drill report for the primary region's status and retention
            .objects("PrimaryReports", primary, ["reports/dr-drill/*"], write=True)
            .key("PrimaryKey", primary, encrypt=True)
        )
        self.add_job(
            drill_job(config),
            drill,
            {
                "PGRUNBOOK_DR_BUCKET": dr.bucket_name,
                "PGRUNBOOK_DR_REGION": config.dr_region,
                "PGRUNBOOK_DR_RESTORE_TARGET_SECRET_ARN": config.dr_restore_target_secret_arn,
                "PGRUNBOOK_BUCKET": primary.bucket_name,
                "PGRUNBOOK_REGION": config.primary_region,
            },
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            alerts=self.alerts,
            functions={job: j.function for job, j in self.jobs.items()},
            metrics=("drill",),
        )
