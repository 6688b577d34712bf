"""A changed byte or a missing file is caught before anything is restored, and named."""

from __future__ import annotations

import hashlib

import pytest

from pgrunbook.adapters.s3.store import b64
from pgrunbook.catalog.backups import Catalog
from pgrunbook.domain.status import exit_code
from pgrunbook.operations.backup import run_backup
from tests.conftest import scratch_databases

SQL = """
CREATE TABLE items (id int PRIMARY KEY, body text);
INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 5000) g;
CREATE TABLE other (id int PRIMARY KEY);
INSERT INTO other SELECT generate_series(1, 10);
"""


@pytest.fixture
def backed_up(new_db, make_settings):
    source = new_db(sql=SQL)
    settings = make_settings(source)
    report = run_backup(settings)
    assert report.status == "ok", report.error
    manifest = Catalog(settings.primary_store()).manifest(report.backup_id)
    biggest = max(manifest.files, key=lambda f: f.size)
    return settings, manifest, biggest


def _flip_a_byte(client, bucket: str, key: str) -> None:
    """Change one byte and store the object with a valid SHA-256 of the *new* content, so
    that S3 itself sees nothing wrong: only the manifest can tell."""
    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x01
    client.put_object(
        Bucket=bucket, Key=key, Body=bytes(body), ChecksumSHA256=b64(hashlib.sha256(body).digest())
    )


@pytest.mark.parametrize("which", ["primary", "dr"])
def test_a_changed_byte_is_caught_and_named(which, backed_up, s3, pg18):
    from pgrunbook.operations.restorer import run_restore_test

    settings, manifest, victim = backed_up
    store = settings.store(which)
    key = store.key(manifest.backup_id, victim.name)
    _flip_a_byte(s3.client(which), store.bucket, key)
    before = scratch_databases(pg18)

    report = run_restore_test(settings, backup_id=manifest.backup_id, source=which)

    assert report.status == "critical"
    assert exit_code(report.status) == 1
    assert "checksum mismatch" in report.error
    assert key in report.error
    assert report.scratch_database is None, "no restore may start from a corrupt backup"
    assert scratch_databases(pg18) == before
    assert report.integrity_pct is None  # not measured: nothing was restored


@pytest.mark.parametrize("which", ["primary", "dr"])
def test_a_missing_file_is_caught_and_named(which, backed_up, s3, pg18):
    from pgrunbook.operations.restorer import run_restore_test

    settings, manifest, victim = backed_up
    store = settings.store(which)
    key = store.key(manifest.backup_id, victim.name)
    s3.client(which).delete_object(Bucket=store.bucket, Key=key)
    before = scratch_databases(pg18)

    report = run_restore_test(settings, backup_id=manifest.backup_id, source=which)

    assert report.status == "critical"
    assert key in report.error and "missing" in report.error
    assert report.scratch_database is None
    assert scratch_databases(pg18) == before


def test_a_tampered_dr_copy_is_reported_by_the_store_check(backed_up, s3):
    """The S3-side check (stored checksum and size, no download) names the bad object."""
    settings, manifest, victim = backed_up
    dr = settings.dr_store()
    key = dr.key(manifest.backup_id, victim.name)
    _flip_a_byte(s3.client("dr"), dr.bucket, key)
    problem = dr.verify_object(key, victim)
    assert problem is not None and key in problem and "SHA-256" in problem
    ok = [f for f in manifest.files if f.name != victim.name]
    assert all(dr.verify_object(dr.key(manifest.backup_id, f.name), f) is None for f in ok)
