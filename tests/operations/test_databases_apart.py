"""Two databases of one deployment share the buckets (issue 17's ``databases`` list): each
one's backups, reports and restore tests stay under its own ``<prefix>/<database>/``."""

from __future__ import annotations

from pgrunbook.catalog.backups import Catalog
from pgrunbook.catalog.reports import ReportStore
from pgrunbook.operations.context import OperationContext, run_operation
from pgrunbook.progress import NullProgress


def run(name: str, settings):
    return run_operation(name, OperationContext(settings, progress=NullProgress()))


def test_two_databases_in_one_bucket_see_only_their_own_backups(new_db, make_settings, s3):
    app = make_settings(
        new_db(
            sql="CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 50);"
        ),
        database_name="app",
    )
    billing = make_settings(
        new_db(
            sql="CREATE TABLE invoices (id int PRIMARY KEY); INSERT INTO invoices SELECT generate_series(1, 7);"
        ),
        database_name="billing",
    )
    first = run("backup", billing)
    second = run("backup", app)  # the newer backup in the bucket is app's
    assert first.status == second.status == "ok"
    billing_id, app_id = first.figures["backup_id"], second.figures["backup_id"]

    for which in ("primary", "dr"):
        keys = s3.keys(which)
        assert keys and all(k.startswith(("pgrunbook/app/", "pgrunbook/billing/")) for k in keys), keys
    assert [e.backup_id for e in Catalog(app.primary_store()).entries()] == [app_id]
    assert [e.backup_id for e in Catalog(billing.primary_store()).entries()] == [billing_id]

    # billing's restore test takes billing's newest backup, not the bucket's newest
    report = run("restore-test", billing)
    assert report.status == "ok", report.error
    assert report.figures["backup_id"] == billing_id and report.figures["integrity_pct"] == 100.0
    [stored] = ReportStore(billing.primary_store()).history("restore-test")
    assert stored.report_id == report.report_id
    assert ReportStore(app.primary_store()).history("restore-test") == []
