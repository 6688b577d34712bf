"""A restore target lost in the middle of a restore is a problem found, not bad configuration.

The target's postmaster is shut down (SIGQUIT: immediate, as a crash would) the moment the
restore test starts pg_restore.  The run must end with exit status 1 and a critical report that
is stored and says what happened, never with exit status 2 ("bad input, nothing written"),
which is kept for a target that is unreachable when the run starts.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from pgrunbook.adapters.postgres.embedded import start
from pgrunbook.domain.errors import DatabaseUnreachable
from pgrunbook.operations.context import OperationContext, run_operation
from pgrunbook.progress import Progress


class ShutDownTargetOnRestore(Progress):
    """Progress that stops the target server once pg_restore is about to run."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.stopped = False

    def step(self, message: str) -> None:
        if message.startswith("restoring with") and not self.stopped:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)
            self.stopped = True
            time.sleep(0.5)


@pytest.fixture
def doomed_target(tmp_path):
    server = start(tmp_path / "target", 18, cleanup="delete")
    yield server
    server.stop()


def test_a_target_lost_mid_restore_is_a_stored_critical_report(doomed_target, new_db, make_settings, s3):
    info = new_db(
        sql="CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g;"
    )
    settings = make_settings(info, restore_target_url=doomed_target.conninfo.libpq_uri())
    assert run_operation("backup", OperationContext(settings)).status == "ok"

    progress = ShutDownTargetOnRestore(doomed_target.data_dir)
    report = run_operation("restore-test", OperationContext(settings, progress=progress))
    assert progress.stopped
    assert report.status == "critical" and report.exit_code == 1
    [finding] = [f for f in report.findings if f.severity == "critical"]
    assert "could not be restored" in finding.message
    assert report.location is not None  # stored: the failure is on record
    stored = [k for k in s3.keys("primary") if "/reports/restore-test/" in k]
    assert len(stored) == 1


def test_a_target_unreachable_at_the_start_is_refused_with_nothing_written(
    doomed_target, new_db, make_settings, s3
):
    info = new_db(sql="CREATE TABLE t (id int PRIMARY KEY);")
    settings = make_settings(info, restore_target_url=doomed_target.conninfo.libpq_uri())
    assert run_operation("backup", OperationContext(settings)).status == "ok"
    doomed_target.stop()
    before = s3.keys("primary")
    with pytest.raises(DatabaseUnreachable) as refused:
        run_operation("restore-test", OperationContext(settings))
    assert refused.value.exit_code == 2
    assert s3.keys("primary") == before  # no report, no lease left behind
