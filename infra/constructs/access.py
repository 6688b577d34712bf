"""Least-privilege grants on a backup location: named actions on named key prefixes.

Each operation gets exactly what its code calls, as its entry in
:mod:`pgrunbook.operations.registry` declares (:meth:`Grants.declared` turns those records into
policy statements), on the paths it touches under ``<prefix>/<database>/`` (the key layout of
:mod:`pgrunbook.domain.layout`): ``backups/`` (the backups), ``reports/<operation>/`` (its own
reports), ``leases/`` (restores announcing what they read).  The bucket's KMS key is granted by ARN
in the same stack; the other region's key, which this stack cannot reference, by its alias
(``kms:ResourceAliases``), so that the two regional stacks need no cross-region references.

Object keys are named at run time (by backup id), so object grants end in ``*`` under the
database's prefix.  cdk-nag flags every such wildcard, and each one is acknowledged
individually with its reason: ARNs are built from templates so that both the
CloudFormation value and the form cdk-nag reports (``arn:<AWS::Partition>:...``) are known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aws_cdk import Aws
from aws_cdk import aws_iam as iam

from pgrunbook.operations.registry import Grant

_PSEUDO = ("partition", "account", "region")


def cfn(template: str) -> str:
    """``{partition}``/``{account}``/``{region}`` as CloudFormation pseudo parameters."""
    return template.format(partition=Aws.PARTITION, account=Aws.ACCOUNT_ID, region=Aws.REGION)


def nag(template: str) -> str:
    """The same ARN as cdk-nag renders it in a finding id."""
    return template.format(partition="<AWS::Partition>", account="<AWS::AccountId>", region="<AWS::Region>")


@dataclass
class BackupLocation:
    """One backup bucket as the jobs see it."""

    bucket_template: str  # e.g. "pgrunbook-app-backups-{account}-us-east-1"
    root: str  # "<prefix>/<database>": everything pgrunbook writes is under it
    key_arn: str | None = None  # the bucket's key, when it is in this stack
    key_alias: str | None = None  # else its alias ...
    key_region: str | None = None  # ... and region

    @property
    def bucket_name(self) -> str:
        return cfn(self.bucket_template)

    @property
    def bucket_arn_template(self) -> str:
        return "arn:{partition}:s3:::" + self.bucket_template

    def objects_template(self, path: str) -> str:
        return f"{self.bucket_arn_template}/{self.root}/{path}"


@dataclass
class Grants:
    """Collects the statements of one function's role, and the wildcards they need."""

    statements: list[iam.PolicyStatement] = field(default_factory=list)
    wildcards: dict[str, str] = field(default_factory=dict)  # nag form -> why
    buckets: set[str] = field(default_factory=set)  # the bucket templates it touches

    def reaches(self, location: BackupLocation) -> bool:
        return location.bucket_template in self.buckets

    def declared(
        self,
        grants: Iterable[Grant],
        location: Callable[[str], BackupLocation],
        secret_arn: Callable[[str], str],
    ) -> Grants:
        """The registry's grant records as statements: ``location`` resolves ``primary`` /
        ``dr`` to this stack's bucket or the other region's, ``secret_arn`` a setting's ARN.
        A record whose sid is already here is left out (an operation's own record wins over
        one it takes from an operation it includes)."""
        present = {s.sid for s in self.statements}
        for grant in grants:
            if grant.sid in present:
                continue
            present.add(grant.sid)
            if grant.kind == "list":
                self.bucket(grant.sid, location(grant.bucket), lock=grant.lock, uploads=grant.uploads)
            elif grant.kind == "objects":
                self.objects(
                    grant.sid,
                    location(grant.bucket),
                    list(grant.paths),
                    read=grant.read,
                    write=grant.write,
                    delete=grant.delete,
                    lock=grant.lock,
                )
            elif grant.kind == "key":
                self.key(grant.sid, location(grant.bucket), encrypt=grant.encrypt, decrypt=grant.decrypt)
            elif grant.kind == "secret":
                if not secret_arn(grant.setting):
                    continue  # the deployment has no such secret (an optional restore target)
                actions = ["secretsmanager:GetSecretValue"]
                if grant.write:
                    actions.append("secretsmanager:PutSecretValue")
                self.add(grant.sid, actions, [secret_arn(grant.setting)])
            else:
                raise ValueError(f"unknown grant kind {grant.kind!r}")
        return self

    def include(self, other: Grants, *, without: tuple[str, ...] = ()) -> Grants:
        """Another job's grants (a workflow that runs that job as one of its phases), except
        the statements whose sid is in ``without``."""
        self.statements += [s for s in other.statements if s.sid not in without]
        self.wildcards.update(other.wildcards)
        self.buckets |= other.buckets
        return self

    def add(
        self,
        sid: str,
        actions: list[str],
        templates: list[str],
        conditions: dict | None = None,
        *,
        why: str = "",
    ) -> Grants:
        for template in templates:
            if template.endswith("*"):
                self.wildcards[nag(template)] = why or "objects are named at run time under this prefix"
        self.statements.append(
            iam.PolicyStatement(
                sid=sid, actions=sorted(actions), resources=[cfn(t) for t in templates], conditions=conditions
            )
        )
        return self

    def bucket(
        self, sid: str, location: BackupLocation, *, lock: bool = False, uploads: bool = False
    ) -> Grants:
        """List the database's prefix of the bucket (pgrunbook's catalog is a listing: the
        ``s3:prefix`` condition keeps it to ``<prefix>/<database>/``, so that a database's jobs
        cannot even list another database's backups in a shared bucket); for locking jobs,
        read its Object Lock setting; for the backup, list the multipart uploads a killed run
        left (S3 has no prefix condition for that listing: it shows the keys of any open
        upload in the bucket, and the objects grants still limit aborting them to the
        database's prefix)."""
        self.buckets.add(location.bucket_template)
        self.add(
            sid,
            ["s3:ListBucket"],
            [location.bucket_arn_template],
            {"StringLike": {"s3:prefix": [f"{location.root}/*"]}},
        )
        actions = []
        if lock:
            actions.append("s3:GetBucketObjectLockConfiguration")
        if uploads:
            actions.append("s3:ListBucketMultipartUploads")
        if actions:
            self.add(f"{sid}Settings", actions, [location.bucket_arn_template])
        return self

    def objects(
        self,
        sid: str,
        location: BackupLocation,
        paths: list[str],
        *,
        read: bool = False,
        write: bool = False,
        delete: bool = False,
        lock: bool = False,
    ) -> Grants:
        self.buckets.add(location.bucket_template)
        actions = []
        if read:
            actions.append("s3:GetObject")
        if write:
            actions += ["s3:PutObject", "s3:AbortMultipartUpload"]
        if delete:
            actions.append("s3:DeleteObject")
        if lock:
            actions.append("s3:PutObjectRetention")
        return self.add(
            sid,
            actions,
            [location.objects_template(p) for p in paths],
            why="backups, reports and leases are named by time stamp at run time under the database's prefix",
        )

    def key(
        self, sid: str, location: BackupLocation, *, encrypt: bool = False, decrypt: bool = False
    ) -> Grants:
        """Use the location's KMS key: encrypt (uploads, copies in) and/or decrypt (reads,
        copies out, multipart completion)."""
        actions = []
        if encrypt:
            actions.append("kms:GenerateDataKey")
        if decrypt:
            actions.append("kms:Decrypt")
        if location.key_arn is not None:
            self.statements.append(
                iam.PolicyStatement(sid=sid, actions=actions, resources=[location.key_arn])
            )
            return self
        return self.add(
            sid,
            actions,
            [f"arn:{{partition}}:kms:{location.key_region}:{{account}}:key/*"],
            {"ForAnyValue:StringEquals": {"kms:ResourceAliases": location.key_alias}},
            why="the other region's key, which this stack cannot reference, is granted by its alias "
            "(kms:ResourceAliases condition), not by a wildcard",
        )


def acknowledge_wildcards(role: iam.IRole, grants: Grants, reasons: dict[str, str]) -> None:
    """cdk-nag's IAM5 finding for each wildcard of ``role``: the grants' own (each with its
    reason) and ``reasons`` (finding -> reason: ``Resource::...`` or ``Action::...``)."""
    from aws_cdk import Acknowledgment, Validations

    findings = {**reasons, **{f"Resource::{resource}": why for resource, why in grants.wildcards.items()}}
    for finding, reason in findings.items():
        Validations.of(role).acknowledge(Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=reason))
