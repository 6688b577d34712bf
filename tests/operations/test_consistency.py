"""A backup taken while the application writes is exactly one point in time."""

from __future__ import annotations

import threading
import time

import pytest

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.catalog.backups import Catalog
from pgrunbook.operations.backup import run_backup
from pgrunbook.operations.restorer import run_restore_test
from tests.conftest import fingerprints_now

SCHEMA = """
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text);
CREATE TABLE ledger (id bigserial PRIMARY KEY, account int NOT NULL, delta bigint NOT NULL,
                     at timestamptz NOT NULL DEFAULT clock_timestamp());
INSERT INTO accounts SELECT g, 1000, repeat('x', 50) FROM generate_series(1, 20000) g;
INSERT INTO ledger (account, delta) SELECT 1 + g % 20000, 1 FROM generate_series(1, 200000) g;
"""


class Writer(threading.Thread):
    """Inserts, updates and deletes in small transactions until stopped."""

    def __init__(self, info):
        super().__init__(daemon=True)
        self.info = info
        self.stop = threading.Event()
        self.commits = 0
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with Database.connect(self.info) as db:
                i = 0
                while not self.stop.is_set():
                    i += 1
                    account = 1 + (i * 7919) % 20000
                    db.run("BEGIN")
                    db.run("UPDATE accounts SET balance = balance - 1 WHERE id = :a", a=account)
                    db.run("INSERT INTO ledger (account, delta) VALUES (:a, -1)", a=account)
                    db.run("DELETE FROM ledger WHERE id = (SELECT min(id) FROM ledger)")
                    if i % 5 == 0:
                        db.run("INSERT INTO accounts VALUES (:id, 0, 'new')", id=100000 + i)
                    db.run("COMMIT")
                    self.commits += 1
        except Exception as exc:  # surfaced by the test
            self.error = exc


@pytest.mark.parametrize("fingerprints", ["dump", "server"])
def test_backup_under_concurrent_writes_is_consistent(new_db, make_settings, fingerprints):
    """Either method fingerprints the snapshot pg_dump dumped: from the dump's own data, or
    server-side in the same snapshot."""
    source = new_db(sql=SCHEMA)
    settings = make_settings(source, jobs=2, fingerprints=fingerprints)
    writer = Writer(source)
    writer.start()
    try:
        time.sleep(0.3)
        commits_before = writer.commits
        backup = run_backup(settings)
        commits_during = writer.commits - commits_before
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None, writer.error
    assert backup.status == "ok", backup.error
    assert commits_during > 10, "the writer must really write while the backup runs"

    manifest = Catalog(settings.primary_store()).manifest(backup.backup_id)
    recorded = {t.qualified: (t.rows, t.fingerprint) for t in manifest.tables if t.schema == "public"}
    # The live data moved on after the snapshot: the manifest is not simply "now".
    public = [t for t in manifest.tables if t.schema == "public"]
    assert fingerprints_now(source, public) != recorded
    # Money is conserved in the snapshot: every -1 on a balance has its -1 ledger row.
    report = run_restore_test(settings, backup_id=backup.backup_id, keep=True)
    try:
        assert report.status == "ok", report.restore_errors
        assert report.integrity_pct == 100.0
        restored = source.with_dbname(report.scratch_database)
        assert fingerprints_now(restored, public) == recorded
        with Database.connect(restored) as db:
            spent = db.scalar("SELECT sum(1000 - balance) FROM accounts WHERE id <= 20000")
            logged = db.scalar("SELECT count(*) FROM ledger WHERE delta = -1")
            assert spent == logged
    finally:
        with Database.connect(source.with_dbname("postgres")) as admin:
            admin.run(f'DROP DATABASE IF EXISTS "{report.scratch_database}" WITH (FORCE)')
