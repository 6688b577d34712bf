"""S3 Object Lock: once its manifest is written, no one can destroy a backup early."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from pgrunbook.adapters.s3.store import CLIENT_HOOKS
from pgrunbook.catalog.backups import Catalog
from pgrunbook.operations.backup import run_backup

SQL = "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g;"


@pytest.fixture
def locked_buckets(s3):
    """Buckets created with Object Lock (and so versioning) enabled, as the CDK app makes them."""
    boto3.client("s3", region_name=s3.primary_region).create_bucket(
        Bucket="locked-primary", ObjectLockEnabledForBucket=True
    )
    boto3.client("s3", region_name=s3.dr_region).create_bucket(
        Bucket="locked-dr",
        ObjectLockEnabledForBucket=True,
        CreateBucketConfiguration={"LocationConstraint": s3.dr_region},
    )
    return {"bucket": "locked-primary", "dr_bucket": "locked-dr"}


def versions(client, bucket: str, key: str) -> list[str]:
    return [
        v["VersionId"] for v in client.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    ]


@pytest.mark.parametrize("mode", ["auto", "compliance"])
def test_a_complete_backup_cannot_be_destroyed_early(mode, new_db, make_settings, locked_buckets, s3):
    settings = make_settings(new_db(sql=SQL), object_lock=mode, **locked_buckets)
    report = run_backup(settings)
    assert report.status == "ok", report.error
    expected = "governance" if mode == "auto" else "compliance"
    assert report.object_lock == {"primary": expected, "dr": expected}
    manifest = Catalog(settings.primary_store()).manifest(report.backup_id)
    for store, region in ((settings.primary_store(), s3.primary_region), (settings.dr_store(), s3.dr_region)):
        client = boto3.client("s3", region_name=region)
        keys = [store.key(report.backup_id, f.name) for f in manifest.files] + [
            store.manifest_key(report.backup_id)
        ]
        for key in keys:
            head = client.head_object(Bucket=store.bucket, Key=key)
            assert head["ObjectLockMode"] == expected.upper()
            assert head["ObjectLockRetainUntilDate"] == manifest.retention_until
            [version] = versions(client, store.bucket, key)
            with pytest.raises(ClientError, match="AccessDenied"):
                client.delete_object(Bucket=store.bucket, Key=key, VersionId=version)
        # a plain delete (what retention does) only hides the object behind a delete marker
        manifest_key = store.manifest_key(report.backup_id)
        client.delete_object(Bucket=store.bucket, Key=manifest_key)
        assert len(versions(client, store.bucket, manifest_key)) == 1


def test_a_partial_upload_is_never_locked(new_db, make_settings, locked_buckets, s3):
    settings = make_settings(new_db(sql=SQL), **locked_buckets)

    def fail_the_manifest(client) -> None:
        def before(params, **kwargs):
            if params.get("Key", "").endswith("manifest.json"):
                raise ConnectionClosedError(endpoint_url="https://injected-fault/PutObject")

        client.meta.events.register("provide-client-params.s3.PutObject", before)

    CLIENT_HOOKS.append(fail_the_manifest)
    report = run_backup(settings)
    CLIENT_HOOKS.clear()
    assert report.status == "critical" and report.object_lock == {}
    client = boto3.client("s3", region_name=s3.primary_region)
    left = client.list_object_versions(Bucket="locked-primary").get("Versions", [])
    assert left, "the failed upload's versions are still there (behind delete markers)"
    for version in left:  # ...and every one of them can be removed for good
        client.delete_object(Bucket="locked-primary", Key=version["Key"], VersionId=version["VersionId"])


def test_without_object_lock_on_the_bucket_nothing_is_locked(new_db, make_settings):
    report = run_backup(make_settings(new_db(sql=SQL)))
    assert report.status == "ok" and report.object_lock == {}
