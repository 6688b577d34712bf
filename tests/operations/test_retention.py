"""Retention under moto, in both regions: it deletes exactly what the policy says, never a
backup a restore holds, cleans up partial uploads, changes nothing in a dry run, and an
interrupted cleanup never leaves a backup listed as restorable with files missing.

Retention needs no database: the backups are fabricated directly in S3 (a few small files
and a valid manifest), at known ages before a fixed clock.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError

from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.adapters.s3.store import CLIENT_HOOKS, ObjectStore, b64
from pgrunbook.catalog.backups import Catalog
from pgrunbook.catalog.leases import Lease
from pgrunbook.catalog.reports import ReportStore
from pgrunbook.domain.errors import BucketUnavailable
from pgrunbook.domain.ids import new_backup_id
from pgrunbook.domain.manifest import FileEntry, Manifest
from pgrunbook.domain.results import Report
from pgrunbook.domain.tiers import RetentionPolicy
from pgrunbook.operations.context import OperationContext, run_operation
from pgrunbook.progress import NullProgress
from pgrunbook.settings.model import Settings

NOW = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)  # the daily run, 03:00 UTC
DAY = timedelta(days=1)
NOT_A_DATABASE = ConnInfo.parse("postgresql://app@db.invalid/shop")  # never connected to


@pytest.fixture
def settings(s3, tmp_path) -> Settings:
    """Like conftest's ``make_settings`` (both buckets), without its embedded PostgreSQL
    server: retention never connects to a database, and starting one costs seconds."""
    return Settings.load(
        env={},
        database_url=NOT_A_DATABASE.libpq_uri(),
        bucket=s3.primary,
        region=s3.primary_region,
        dr_bucket=s3.dr,
        dr_region=s3.dr_region,
        work_dir=str(tmp_path),
        home=str(tmp_path),
        created_by="pytest",
    )


@pytest.fixture
def stores(settings) -> dict[str, ObjectStore]:
    """Stores for the test's own writes, made before any fault hook is registered."""
    return {"primary": settings.primary_store(), "dr": settings.dr_store()}


def fabricate(
    targets: list[ObjectStore], age: timedelta, tiers: tuple[str, ...] = ("daily",), *, manifest: bool = True
) -> str:
    """A backup started ``age`` before NOW, with two small files, in every store of
    ``targets`` (a backup and its DR copy); without a manifest it is a partial upload."""
    started = NOW - age
    backup_id = new_backup_id(started)
    files = []
    for n in range(2):
        data = f"{backup_id} table data {n}\n".encode() * 20
        digest = hashlib.sha256(data).digest()
        files.append(FileEntry(f"{3000 + n}.dat.gz", len(data), digest.hex(), b64(digest)))
        for store in targets:
            store.put_bytes(store.key(backup_id, files[-1].name), data, "application/octet-stream")
    if manifest:
        document = Manifest(
            backup_id=backup_id,
            database=targets[0].database,
            tiers=list(tiers),
            created_by="pytest",
            started_at=started,
            completed_at=started + timedelta(minutes=3),
            retention_until=RetentionPolicy().retention_until(started, tiers),
            snapshot={"id": "00000003-00000002-1", "time": started.isoformat(), "lsn": "0/1000000"},
            server={"version": "18.0", "version_num": 180000},
            tools={"pg_dump": "18.0", "pgrunbook": "0.1.0"},
            options={"compression": 1, "jobs": 2},
            files=files,
            tables=[],
        ).to_json()
        for store in targets:
            store.put_bytes(store.manifest_key(backup_id), document)
    return backup_id


def store_report(
    store: ObjectStore, job: str, when: datetime, *, ok: bool = True, figures=None, detail=None
) -> None:
    """A report of another job, as that job would have stored it in the primary bucket."""
    report = Report.start(job, store.database, when)
    if job in ("restore-test", "dr-drill"):  # restoring jobs always report their integrity
        report.figures["integrity_pct"] = 100.0 if ok else 87.5
    report.figures.update(figures or {})
    report.detail.update(detail or {})
    report.add(job, "ok" if ok else "critical", "fabricated by the test")
    ReportStore(store).put(report)


def folders(store: ObjectStore) -> set[str]:
    return set(store.list_backup_ids())


def keys(store: ObjectStore, prefix: str | None = None) -> set[str]:
    """Every object under ``prefix`` (default: every backup folder) in ``store``."""
    return {obj["Key"] for obj in store.list_keys(prefix or store.backups_prefix)}


def restorable_but_broken(store: ObjectStore) -> list[str]:
    """Backups listed as restorable (they have a manifest) whose files are not all there."""
    broken = []
    for entry in Catalog(store).entries():
        if entry.manifest is not None:
            missing = [
                f.name for f in entry.manifest.files if store.head(store.key(entry.backup_id, f.name)) is None
            ]
            if missing:
                broken.append(f"{entry.backup_id}: {', '.join(missing)} missing")
    return broken


def retention(settings, *, dry_run: bool = False) -> Report:
    ctx = OperationContext(settings, clock=lambda: NOW, progress=NullProgress())
    return run_operation("retention", ctx, dry_run=dry_run)


def deleted_in(report: Report, region: str) -> set[str]:
    """What the report says it deleted in ``region`` (the plan's decisions and outcomes)."""
    return {
        d["backup_id"] for d in report.detail["plan"][region] if d.get("outcome", "").startswith("deleted")
    }


# -- what gets deleted ------------------------------------------------------------------------


def test_deletes_exactly_what_the_policy_says_in_each_region(settings, stores, s3):
    both = [stores["primary"], stores["dr"]]
    fresh = fabricate(both, 1 * DAY)
    daily_50 = fabricate(both, 50 * DAY)
    daily_95 = fabricate(both, 95 * DAY)  # expired; the DR copy was checked intact by verify
    daily_100 = fabricate(both, 100 * DAY)  # expired, but a restore test passed on it
    daily_110 = fabricate(both, 110 * DAY)  # expired, and its restore test failed
    weekly_100 = fabricate(both, 100 * DAY, ("weekly", "daily"))  # within its year
    weekly_400 = fabricate(both, 400 * DAY, ("weekly", "daily"))  # expired, newer weekly exists
    monthly_1100 = fabricate(both, 1100 * DAY, ("monthly", "weekly", "daily"))  # the only monthly
    hourly_3 = fabricate(both, 3 * DAY, ("hourly",))  # expired after 2 days...
    hourly_1 = fabricate(both, timedelta(hours=1), ("hourly",))  # ...this one is newer
    dr_only_200 = fabricate([stores["dr"]], 200 * DAY)  # the primary copy is already gone
    primary = stores["primary"]
    store_report(primary, "restore-test", NOW - 99 * DAY, figures={"backup_id": daily_100})
    store_report(primary, "dr-drill", NOW - 109 * DAY, ok=False, figures={"backup_id": daily_110})
    # Only the latest verification counts: the day before, it had listed daily_95 in primary.
    store_report(primary, "verify", NOW - 2 * DAY, detail={"verified_backups": {"primary": [daily_95]}})
    store_report(
        primary,
        "verify",
        NOW - 1 * DAY,
        detail={"verified_backups": {"primary": [], "dr": [daily_95]}},
    )
    before = {r: folders(stores[r]) for r in ("primary", "dr")}

    report = retention(settings)

    assert report.status == "ok", [f.message for f in report.problems()]
    # Primary: the newest verified daily backup is the one the restore test passed.
    expected_primary = {daily_95, daily_110, weekly_400, hourly_3}
    # DR: verify listed the DR copy of daily_95 as intact, newer than daily_100.
    expected_dr = {daily_100, daily_110, weekly_400, hourly_3, dr_only_200}
    assert folders(stores["primary"]) == before["primary"] - expected_primary
    assert folders(stores["dr"]) == before["dr"] - expected_dr
    assert deleted_in(report, "primary") == expected_primary
    assert deleted_in(report, "dr") == expected_dr
    deletion_findings = {
        (f.details["region"], f.details["backup_id"]) for f in report.findings if f.severity == "info"
    }
    assert deletion_findings == {("primary", b) for b in expected_primary} | {("dr", b) for b in expected_dr}
    for region in ("primary", "dr"):
        assert restorable_but_broken(stores[region]) == []
    kept = {fresh, daily_50, weekly_100, monthly_1100, hourly_1}
    assert kept <= folders(stores["primary"]) and kept <= folders(stores["dr"])
    # Whatever stays is whole: every object of a kept backup is still there.
    for store in stores.values():
        assert all(len(keys(store, store.backup_prefix(b))) == 3 for b in folders(store))

    size = Catalog(stores["primary"]).manifest(fresh).size_bytes
    assert report.figures["primary_backups_deleted"] == 4
    assert report.figures["primary_backups_kept"] == 6
    assert report.figures["dr_backups_deleted"] == 5
    assert report.figures["primary_bytes_freed"] == 4 * size
    assert report.figures["dr_partials_deleted"] == 0
    plan = {d["backup_id"]: d for d in report.detail["plan"]["primary"]}
    assert plan[daily_100]["action"] == "keep" and plan[daily_100]["reason"] == "newest verified daily backup"
    assert plan[monthly_1100]["reason"] == "newest monthly backup (no monthly backup verified yet)"
    assert (
        plan[weekly_400]["reason"].startswith("expired on")
        and plan[weekly_400]["outcome"] == "deleted 3 objects"
    )
    assert report.location and report.location.startswith(f"s3://{s3.primary}/")

    # Nothing more to do on the same day: re-running deletes nothing.
    again = retention(settings)
    assert again.status == "ok"
    assert again.figures["primary_backups_deleted"] == again.figures["dr_backups_deleted"] == 0


def test_a_leased_backup_is_untouched_while_an_identical_unleased_one_goes(settings, stores, s3):
    both = [stores["primary"], stores["dr"]]
    fabricate(both, 1 * DAY)
    being_restored = fabricate(both, 200 * DAY)
    identical = fabricate(both, 200 * DAY)
    keys_before = keys(stores["primary"], stores["primary"].backup_prefix(being_restored))

    with Lease(stores["primary"], being_restored, "restore-test 1", NOW):
        report = retention(settings)

    assert report.status == "ok"
    assert keys(stores["primary"], stores["primary"].backup_prefix(being_restored)) == keys_before
    assert Catalog(stores["primary"]).manifest(being_restored).backup_id == being_restored
    assert identical not in folders(stores["primary"])
    plan = {d["backup_id"]: d for d in report.detail["plan"]["primary"]}
    assert plan[being_restored]["reason"] == "in use: a restore or drill holds a lease on it"
    # The lease is on the primary copy only: the DR copies are not being read, both go.
    assert {being_restored, identical} <= deleted_in(report, "dr")


def test_partial_uploads_older_than_a_day_are_removed_younger_ones_kept(settings, stores, s3):
    both = [stores["primary"], stores["dr"]]
    complete = fabricate(both, 1 * DAY)
    abandoned = fabricate(both, timedelta(hours=30), manifest=False)
    uploading = fabricate([stores["primary"]], timedelta(hours=2), manifest=False)

    report = retention(settings)

    assert report.status == "ok"
    assert folders(stores["primary"]) == {complete, uploading}
    assert folders(stores["dr"]) == {complete}
    assert report.figures["primary_partials_deleted"] == report.figures["dr_partials_deleted"] == 1
    [finding] = [
        f
        for f in report.findings
        if f.details.get("backup_id") == abandoned and f.details["region"] == "primary"
    ]
    assert finding.severity == "info" and "incomplete upload (no manifest), 30 h old" in finding.message


def test_a_folder_whose_manifest_cannot_be_read_is_kept_and_reported(settings, stores):
    store = stores["primary"]
    fabricate([store], 1 * DAY)
    damaged = fabricate([store], 300 * DAY, manifest=False)
    store.put_bytes(store.manifest_key(damaged), b'{"format": "pgrunbook/2"}')

    report = retention(settings)

    assert damaged in folders(store)
    [warning] = report.problems()
    assert warning.severity == "warning" and damaged in warning.message
    assert "cannot be read" in warning.message


def test_dry_run_changes_nothing_and_reports_the_plan(settings, stores, s3):
    both = [stores["primary"], stores["dr"]]
    fabricate(both, 1 * DAY)
    expired = fabricate(both, 120 * DAY)
    abandoned = fabricate(both, 3 * DAY, manifest=False)
    before = {which: keys(store) for which, store in stores.items()}

    report = retention(settings, dry_run=True)

    assert {which: keys(store) for which, store in stores.items()} == before
    assert report.status == "ok" and report.figures["dry_run"] is True
    assert report.figures["primary_backups_deleted"] == report.figures["dr_backups_deleted"] == 1
    assert report.figures["primary_partials_deleted"] == 1
    messages = [f.message for f in report.findings if f.severity == "info"]
    assert any(f"would delete backup {expired}" in m for m in messages)
    assert any(f"would delete partial folder {abandoned}" in m for m in messages)
    decisions = {d["backup_id"]: d for d in report.detail["plan"]["primary"]}
    assert decisions[expired]["action"] == "delete" and decisions[expired]["outcome"] == "planned (dry run)"


# -- failures ---------------------------------------------------------------------------------


def fail_deletes_after(successes: int, bucket: str):
    """A client hook: every DeleteObjects in ``bucket`` after the first ``successes`` fails
    the way a connection dropped by S3 does."""
    calls = {"n": 0}

    def hook(client) -> None:
        def before(params, **kwargs):
            if params.get("Bucket") != bucket:
                return
            calls["n"] += 1
            if calls["n"] > successes:
                raise ConnectionClosedError(endpoint_url="https://injected-fault/DeleteObjects")

        client.meta.events.register("provide-client-params.s3.DeleteObjects", before)

    return hook, calls


# Each deletion is two DeleteObjects calls, the manifest and then the files: after 1 success
# the first backup has lost its manifest but not its files; after 3, one backup is gone and
# the second is caught in the same state.  Every later call fails too.
@pytest.mark.parametrize("successes", [1, 3])
def test_an_interrupted_cleanup_leaves_nothing_restorable_but_broken_and_a_rerun_finishes(
    settings, stores, s3, successes
):
    store = stores["primary"]
    keep = fabricate([store], 1 * DAY)
    expired = {fabricate([store], (100 + n) * DAY) for n in range(3)}
    hook, calls = fail_deletes_after(successes, s3.primary)
    CLIENT_HOOKS.append(hook)

    interrupted = retention(settings)
    CLIENT_HOOKS.clear()

    assert calls["n"] > successes, "the fault must have fired"
    assert interrupted.status == "warning"
    assert any("injected-fault" in f.message for f in interrupted.problems())
    assert restorable_but_broken(store) == []
    restorable = {e.backup_id for e in Catalog(store).entries() if e.complete}
    assert keep in restorable

    finished = retention(settings)
    assert finished.status == "ok", [f.message for f in finished.problems()]
    assert folders(store) == {keep}
    assert not (expired & folders(store))


def on_delete_objects(before=None, after=None):
    """A client hook calling ``before(keys)`` as a DeleteObjects request is about to go
    (returning a parsed response stands in for S3's answer) and ``after(keys)`` once S3 has
    answered it."""
    pending: list[list[str]] = []

    def hook(client) -> None:
        def note_keys(params, **kwargs):
            pending.append([o["Key"] for o in params["Delete"]["Objects"]])

        def answer(**kwargs):
            parsed = before(pending[-1]) if before else None
            if parsed is not None:
                return AWSResponse("https://injected/DeleteObjects", 200, {}, None), parsed
            return None

        def answered(**kwargs):
            if after:
                after(pending[-1])

        client.meta.events.register("provide-client-params.s3.DeleteObjects", note_keys)
        client.meta.events.register("before-call.s3.DeleteObjects", answer)
        client.meta.events.register("after-call.s3.DeleteObjects", answered)

    return hook


def refuse_deletes_under(prefix: str):
    """S3 answers AccessDenied for every key of a DeleteObjects that touches ``prefix`` (what
    a bucket policy or an Object Lock does: a 200 response listing per-key errors)."""

    def before(keys: list[str]):
        if any(k.startswith(prefix) for k in keys):
            return {"Errors": [{"Key": k, "Code": "AccessDenied", "Message": "Access Denied"} for k in keys]}
        return None

    return on_delete_objects(before=before)


def test_a_deletion_s3_refuses_is_a_warning_naming_the_backup_and_the_others_go(settings, stores, s3):
    store = stores["primary"]
    keep = fabricate([store], 1 * DAY)
    locked = fabricate([store], 150 * DAY)
    others = {fabricate([store], 160 * DAY), fabricate([store], 170 * DAY)}
    CLIENT_HOOKS.append(refuse_deletes_under(store.backup_prefix(locked)))

    report = retention(settings)
    CLIENT_HOOKS.clear()

    assert report.status == "warning"
    [warning] = report.problems()
    assert locked in warning.message and "refused" in warning.message and "intact" in warning.message
    assert folders(store) == {keep, locked}
    assert Catalog(store).manifest(locked).backup_id == locked  # still whole, still restorable
    assert restorable_but_broken(store) == []
    assert others <= deleted_in(report, "primary")


def test_a_lease_taken_while_the_manifest_goes_puts_the_manifest_back(settings, stores, s3):
    """The race the lease protocol exists for: a restore test leases the backup and reads
    its manifest just as retention deletes it.  Retention sees the lease on its second
    check, puts the manifest back and leaves every file alone."""
    store = stores["primary"]
    fabricate([store], 1 * DAY)
    contested = fabricate([store], 150 * DAY)
    manifest_key = store.manifest_key(contested)
    manifest_before = store.get_bytes(manifest_key)
    files_before = keys(store, store.backup_prefix(contested))
    leases: list[Lease] = []

    def restore_starts(keys: list[str]) -> None:
        if keys == [manifest_key] and not leases:
            leases.append(Lease(store, contested, "restore-test race", NOW).__enter__())

    hook = on_delete_objects(after=restore_starts)
    CLIENT_HOOKS.append(hook)
    report = retention(settings)
    CLIENT_HOOKS.clear()

    assert leases, "the lease must have been taken mid-deletion"
    assert store.get_bytes(manifest_key) == manifest_before
    assert keys(store, store.backup_prefix(contested)) == files_before
    assert report.status == "ok"
    assert contested not in deleted_in(report, "primary")
    assert any(
        "manifest put back" in f.message for f in report.findings if f.details.get("backup_id") == contested
    )
    assert report.figures["primary_backups_deleted"] == 0

    # Once the restore is done and its lease released, the next run deletes it.
    leases[0].__exit__(None, None, None)
    assert contested in deleted_in(retention(settings), "primary")
    assert contested not in folders(store)


def test_without_the_report_history_no_backup_is_deleted_but_partials_are(settings, stores, s3):
    """Which backup is the newest verified one is known only from the reports: if they
    cannot be read, deleting an expired backup could remove the one a tier must keep."""
    store = stores["primary"]
    fabricate([store], 1 * DAY)
    expired = fabricate([store], 120 * DAY)
    abandoned = fabricate([store], 3 * DAY, manifest=False)

    def hook(client) -> None:
        def before(params, **kwargs):
            if "/reports/" in params.get("Prefix", ""):
                raise ConnectionClosedError(endpoint_url="https://injected-fault/ListObjectsV2")

        client.meta.events.register("provide-client-params.s3.ListObjectsV2", before)

    CLIENT_HOOKS.append(hook)
    report = retention(settings)
    CLIENT_HOOKS.clear()

    assert report.status == "warning"
    assert "could not read the report history" in report.problems()[0].message
    assert expired in folders(store)
    assert abandoned not in folders(store)
    assert report.figures["primary_backups_deleted"] == 0 and report.figures["primary_partials_deleted"] == 1


def test_a_missing_dr_bucket_stops_the_run_before_anything_changes(settings, stores, s3):
    store = stores["primary"]
    fabricate([store], 1 * DAY)
    expired = fabricate([store], 120 * DAY)
    settings.dr_bucket = "pgrunbook-test-no-such-bucket"

    with pytest.raises(BucketUnavailable, match="does not exist"):
        retention(settings)
    assert expired in folders(store)


def test_a_complete_restore_verifies_a_backup_even_when_a_data_check_warned(settings, stores):
    """Integrity 100 % proves the backup; a warning about the data in it does not unprove it."""
    from pgrunbook.operations.retention import read_verified

    primary = stores["primary"]
    store_report(primary, "restore-test", NOW - DAY, ok=True, figures={"backup_id": "a"})
    warned = Report.start("restore-test", primary.database, NOW - DAY)
    warned.figures.update(backup_id="b", integrity_pct=100.0)
    warned.add("restored:orphaned_tasks", "critical", "2 rows violate orphaned_tasks")
    ReportStore(primary).put(warned)
    store_report(primary, "restore-test", NOW - DAY, ok=False, figures={"backup_id": "c"})
    assert read_verified(ReportStore(primary)).restored == {"a", "b"}


def test_expired_leases_are_swept(settings, stores):
    from pgrunbook.catalog.leases import held_backups

    primary = stores["primary"]
    Lease(primary, "old-run", "killed restore", NOW - 2 * DAY).__enter__()  # expired long ago
    live = Lease(primary, "running", "restore-test", NOW).__enter__()
    report = retention(settings)
    assert report.figures["primary_leases_swept"] == 1
    assert held_backups(primary, NOW) == {"running"}
    assert keys(primary, f"{primary.prefix}/{primary.database}/leases/") == {live.key}
