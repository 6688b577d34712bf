"""The DR copy: verified against the manifest, large files in parts, repaired when missing."""

from __future__ import annotations

from botocore.exceptions import ConnectionClosedError

from pgrunbook.adapters.s3.store import CLIENT_HOOKS, MiB, TransferSettings
from pgrunbook.catalog.backups import Catalog
from pgrunbook.domain.status import exit_code
from pgrunbook.entrypoints.cli.render import render_status
from pgrunbook.operations.backup import run_backup
from pgrunbook.operations.restorer import run_restore_test
from pgrunbook.operations.status import build_status

SMALL = "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g;"


def fail_dr_copies(dr_bucket: str):
    def hook(client) -> None:
        def before(params, **kwargs):
            if params.get("Bucket") == dr_bucket:
                raise ConnectionClosedError(endpoint_url="https://injected-fault/CopyObject")

        client.meta.events.register("provide-client-params.s3.CopyObject", before)

    return hook


def test_failed_dr_copy_is_reported_then_repaired(new_db, make_settings, s3):
    settings = make_settings(new_db(sql=SMALL))
    CLIENT_HOOKS.append(fail_dr_copies(s3.dr))
    first = run_backup(settings)
    CLIENT_HOOKS.clear()

    assert first.status == "critical" and exit_code(first.status) == 1
    assert first.dr["status"] == "failed" and "injected-fault" in first.dr["problem"]
    assert not [k for k in s3.keys("dr") if k.endswith("manifest.json")]
    # The primary copy is complete and restorable; only the DR copy is missing.
    status = build_status(settings)
    [line] = status.backups
    assert line.restorable and line.dr_copy is False
    assert "MISSING" in render_status(status)

    second = run_backup(settings)
    assert second.status == "ok", second.error
    assert second.repaired_dr == [first.backup_id]
    assert all(b.dr_copy for b in build_status(settings).backups)
    report = run_restore_test(settings, backup_id=first.backup_id, source="dr")
    assert report.status == "ok" and report.integrity_pct == 100.0


def test_large_files_go_up_and_across_in_parts(new_db, make_settings, s3):
    source = new_db(
        sql="""
        CREATE TABLE blobs (id int PRIMARY KEY, data bytea);
        -- 6 MB of random-looking bytes: about 12.6 MB as COPY's hex text
        INSERT INTO blobs SELECT g, decode(string_agg(md5(g::text || ':' || i), ''), 'hex')
        FROM generate_series(1, 3) g, generate_series(1, 131072) i GROUP BY g;
        """
    )
    transfer = TransferSettings(
        single_put_max=1 * MiB, part_size=5 * MiB, single_copy_max=6 * MiB, concurrency=4
    )
    settings = make_settings(source, compression=0)
    backup = run_backup(settings, transfer=transfer)
    assert backup.status == "ok", backup.error
    manifest = Catalog(settings.primary_store()).manifest(backup.backup_id)
    big = max(manifest.files, key=lambda f: f.size)
    assert 10 * MiB < big.size <= 15 * MiB
    assert big.parts == 3 and big.part_size == 5 * MiB and big.s3_checksum.endswith("-3")
    dr = settings.dr_store(transfer)
    assert dr.verify_object(dr.key(backup.backup_id, big.name), big) is None
    report = run_restore_test(settings, source="dr", transfer=transfer)
    assert report.status == "ok" and report.integrity_pct == 100.0


def test_without_a_dr_bucket_the_backup_warns(new_db, make_settings):
    settings = make_settings(new_db(sql=SMALL), dr_bucket=None, dr_region=None)
    settings.dr_bucket = settings.dr_region = None
    report = run_backup(settings)
    assert report.status == "warning" and exit_code(report.status) == 0
    assert any("one region only" in w for w in report.warnings)
    assert report.dr == {"status": "not_configured"}
    [line] = build_status(settings).backups
    assert line.dr_copy is None
