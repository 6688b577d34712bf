"""Each operation reads only the settings the option table says it reads.

The CDK app gives each function the settings its operation reads, per the table
(``used_by``); a setting the code reads but the table does not list would be missing in
Lambda, and the operation would quietly run with its default.  Here every deployed job runs
against the real database and moto with settings that record which of them are read.
"""

from __future__ import annotations

import dataclasses

import pytest

from pgrunbook.operations import registry
from pgrunbook.operations.context import OperationContext, run_operation
from pgrunbook.settings.model import Settings
from pgrunbook.settings.options import BY_NAME, read_by


class RecordingSettings(Settings):
    """Settings that remember which options were read."""

    def __getattribute__(self, name: str):
        if name in BY_NAME:
            object.__getattribute__(self, "read").add(name)
        return object.__getattribute__(self, name)


def recording(settings: Settings) -> RecordingSettings:
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    copy = RecordingSettings(**values)
    object.__setattr__(copy, "read", set())
    return copy


@pytest.mark.parametrize(
    ("operation", "options"),
    [
        ("backup", {}),
        ("restore-test", {}),
        ("verify", {}),
        ("retention", {"dry_run": True}),
        ("health", {}),
        ("dr-drill", {}),
    ],
)
def test_an_operation_reads_only_what_the_table_says(operation, options, new_db, make_settings, s3, pg18):
    info = new_db(sql="CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 50);")
    # as deployed: the database's name is set for every function (only some have its URL)
    base = make_settings(info, database_name=info.dbname, dr_restore_target_url=pg18.conninfo.libpq_uri())
    run_operation("backup", OperationContext(base))  # something to restore, verify, keep
    settings = recording(base)
    report = run_operation(operation, OperationContext(settings), **options)
    assert report.status in ("ok", "warning"), report.findings
    op = registry.get(operation)
    unlisted = {name for name in settings.read if not read_by(name, (op.name, *op.includes))}
    assert unlisted == set(), f"{operation} reads {sorted(unlisted)}, which the option table does not list"
    assert "prefix" in settings.read  # the recording works


def test_the_table_recovery_reads_only_what_the_table_says(new_db, make_settings, s3, pg18):
    """A workflow: every phase of a table recovery, in this process (as --local runs them)."""
    from pgrunbook.adapters.postgres.connection import Database
    from pgrunbook.workflows.recover.phases import run_local

    info = new_db(
        sql="CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, 50) g;"
    )
    base = make_settings(info, database_name=info.dbname)
    run_operation("backup", OperationContext(base))
    with Database.connect(info) as db:
        db.run("UPDATE t SET v = 'w' WHERE id = 3")
    settings = recording(base)
    state = run_local(
        OperationContext(settings), {"tables": "public.t"}, approve=lambda state: (True, "pytest")
    )
    assert state["outcome"] == "repaired", state.get("failure_message")
    unlisted = {name for name in settings.read if not read_by(name, ("recover-tables",))}
    assert unlisted == set(), f"recover-tables reads {sorted(unlisted)}, which the option table does not list"
    assert {"jobs", "pitr_approval_timeout", "work_dir"} <= settings.read
