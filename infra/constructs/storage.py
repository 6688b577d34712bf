"""Backup storage in one region: a KMS key, the backup bucket and its access-log bucket.

The backup bucket is where a backup's evidence lives, so it is built to be hard to lose:

* versioning and S3 Object Lock enabled: the backup job locks each object of a complete
  backup until its retention date (governance mode by default, compliance as an option), so
  no one, not even the retention job, can destroy a backup early; partial uploads are never
  locked, so cleanup can remove them;
* SSE-KMS with a customer-managed key (rotated yearly) and S3 Bucket Keys;
* public access blocked, TLS-only bucket policy, server access logs to a separate bucket;
* lifecycle: noncurrent versions (what deletions leave behind in a versioned bucket) expire
  after ``noncurrent_version_days`` (Object Lock still holds locked ones until their date),
  expired delete markers are removed, incomplete multipart uploads aborted after 2 days;
* retained when the stack is deleted: tearing the stack down never deletes a backup.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct


class BackupStorage(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket_name: str,
        key_alias: str,
        noncurrent_version_days: int,
        handoffs_prefixes: dict[str, str] | None = None,
    ) -> None:
        """``handoffs_prefixes``: each database's ``runs/`` prefix, by its name ("" for the
        single-database form's rule, whose id stays as it was)."""
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            alias=key_alias,
            description=f"Encrypts the pgrunbook backups in {bucket_name}",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            bucket_name=f"{bucket_name}-logs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # the only encryption S3 log delivery supports
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(365),
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(2),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        Validations.of(self.access_logs).acknowledge(
            Acknowledgment(
                id="AwsSolutions-S1",
                reason="This is the access-log bucket of the backup bucket; logging it into itself would loop.",
            )
        )
        self.bucket = s3.Bucket(
            self,
            "Backups",
            bucket_name=bucket_name,
            versioned=True,
            object_lock_enabled=True,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="backups/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(noncurrent_version_days),
                    abort_incomplete_multipart_upload_after=Duration.days(2),
                ),
                s3.LifecycleRule(id="expired-delete-markers", expired_object_delete_marker=True),
                # a workflow phase's state handed to a Fargate task: deleted once collected;
                # what a failed run left is gone after 7 days
                *(
                    s3.LifecycleRule(
                        id="-".join(filter(None, ("expire-phase-handoffs", database))),
                        prefix=prefix,
                        expiration=Duration.days(7),
                    )
                    for database, prefix in (handoffs_prefixes or {}).items()
                ),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
