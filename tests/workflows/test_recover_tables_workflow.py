"""The table-recovery workflow (the runbook's data corruption response for chosen tables):
``--local`` in this process, and the state machine as synthesized, executed under moto with
the real handler, against the embedded PostgreSQL and the realistic music store.

The incident is tests/operations/test_recovery.py's: rows deleted, changed and inserted in a
foreign-key chain, a composite key, a table without a key and a partition, after a backup."""

from __future__ import annotations

import io
import json

import pytest

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.catalog.backups import Catalog
from pgrunbook.catalog.reports import ReportStore
from pgrunbook.entrypoints.cli import main
from pgrunbook.operations.backup import run_backup
from tests.conftest import fingerprints_now
from tests.operations.test_recovery import CHAIN_TRACKS, INCIDENT
from tests.workflows.conftest import Workflow

ALL_TABLES = "public.album,public.track,public.playlist_track,public.play_log,public.events"
# the leaf tables those are in the manifest (a partitioned table brings its partitions)
REPAIRED = ("album", "track", "playlist_track", "play_log", "events_2025", "events_2026")


@pytest.fixture
def source_schema() -> tuple[tuple[str, ...], str]:
    return ("music_store.sql",), ""


@pytest.fixture
def incident(workflow: Workflow) -> tuple[Workflow, str]:
    """The music store backed up, then the incident; returns the workflow and the backup id."""
    backup = run_backup(workflow.settings)
    assert backup.status == "ok" and backup.backup_id, backup.error
    with Database.connect(workflow.source) as db:
        db.run(INCIDENT)
    return workflow, backup.backup_id


def cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    out = "".join(line for line in out.splitlines(keepends=True) if not line.startswith('{"level":'))
    return code, out, err


def start(flow: Workflow, request: dict, name: str = "recover-1") -> str:
    return flow.sfn.start_execution(
        stateMachineArn=flow.machines["recover-tables"], name=name, input=json.dumps(request)
    )["executionArn"]


def side_schemas(flow: Workflow) -> list[str]:
    with Database.connect(flow.source) as db:
        return [
            r[0]
            for r in db.run(
                "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'pgrunbook_recover_%' ORDER BY 1"
            )
        ]


def scalar(flow: Workflow, sql: str):
    with Database.connect(flow.source) as db:
        return db.scalar(sql)


def live_fingerprints(flow: Workflow, backup_id: str, names: tuple[str, ...]) -> tuple[dict, dict]:
    """(the live tables' rows and fingerprints, the manifest's) for ``names``."""
    manifest = Catalog(flow.settings.primary_store()).manifest(backup_id)
    wanted = [t for t in manifest.tables if t.schema == "public" and t.name in names]
    assert len(wanted) == len(names)

    return fingerprints_now(flow.source, wanted), {t.qualified: (t.rows, t.fingerprint) for t in wanted}


def subjects(messages: list[dict]) -> list[str]:
    return [m.get("Subject", "") for m in messages]


# -- the same phases in this process: recover-tables start --local --------------------------------


def test_local_run_puts_the_tables_back_and_keeps_later_changes_elsewhere(incident, capsys, monkeypatch):
    flow, backup_id = incident
    with Database.connect(flow.source) as db:  # a later, unrelated change the repair must not undo
        db.run("INSERT INTO audit (msg) SELECT 'after' FROM generate_series(1, 5)")
    monkeypatch.delenv("PGRUNBOOK_RECOVER_TABLES_STATE_MACHINE_ARN")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: --yes is required
    code, _, err = cli(capsys, "recover-tables", "start", "--local", "--tables", ALL_TABLES)
    assert code == 2 and "pass --yes" in err
    assert side_schemas(flow) == []  # refused before anything ran

    code, out, err = cli(
        capsys,
        "recover-tables", "start", "--local", "--yes", "--tables", ALL_TABLES, "--include-inserted",
        "--reason", "incident 7",
    )  # fmt: skip
    assert code == 0, err + out
    now, backed_up = live_fingerprints(flow, backup_id, REPAIRED)
    assert now == backed_up  # every chosen table back to the backup's rows
    assert scalar(flow, "SELECT count(*) FROM audit WHERE msg = 'after'") == 5  # the later change stays
    assert side_schemas(flow) == []  # the backup's copy is gone
    assert "repaired      re-inserted 56, put back 6, deleted 3 inserted rows" in out
    assert "approved by   pytest" in out
    [resolved] = [
        m for m in flow.messages() if m["Subject"].startswith("RESOLVED - Database Recovery Completed")
    ]
    assert resolved["Subject"].startswith(f"RESOLVED - Database Recovery Completed - {flow.source.dbname} - ")
    message = resolved["Message"]
    assert f"put back to backup {backup_id}" in message
    assert (
        "re-inserted 56 deleted rows, put back 6 changed rows, deleted 3 rows inserted since the backup"
        in message
    )
    assert (
        "Validation: compared again after the repair: 0 deleted, 0 changed, 0 inserted rows in 6 tables"
        in message
    )
    report = ReportStore(flow.settings.primary_store()).latest("recover-tables")
    assert report.status == "ok" and report.detail["recovery"]["reason"] == "incident 7"
    assert report.figures["deleted_repaired"] == 56 and report.figures["tables_repaired"] == 5


def test_local_run_refuses_bad_input_before_anything_changes(incident, capsys, monkeypatch):
    flow, backup_id = incident
    base = ["recover-tables", "start", "--local", "--yes"]
    code, _, err = cli(capsys, *base)
    assert code == 2 and "--tables is required" in err
    code, _, err = cli(capsys, *base, "--tables", "public.nope")
    assert code == 2 and "public.nope is not in the live database" in err
    with Database.connect(flow.source) as db:  # in the live database, not in the backup
        db.run("CREATE TABLE late (id int PRIMARY KEY)")
    code, _, err = cli(capsys, *base, "--tables", "public.late")
    assert code == 2 and f"public.late is not in backup {backup_id}" in err
    code, _, err = cli(capsys, *base, "--tables", "nope")
    assert code == 2 and "not schema.table" in err
    code, _, err = cli(
        capsys, *base, "--tables", "public.track", "--backup-id", backup_id, "--at", "2026-01-01T00:00:00Z"
    )
    assert code == 2 and "not both" in err
    code, _, err = cli(capsys, *base, "--tables", "public.track", "--from", "elsewhere")
    assert code == 2 and "source (--from) must be one of primary, dr" in err
    code, _, err = cli(capsys, "recover-tables", "start", "--yes", "--tables", "public.track")
    assert code == 2 and "--local only" in err
    assert side_schemas(flow) == [] and flow.messages() == []
    assert scalar(flow, "SELECT count(*) FROM track WHERE album_id = 8") == 0  # the incident, untouched


# -- the state machine under moto ------------------------------------------------------------------


def test_state_machine_restores_diffs_waits_for_approval_and_repairs(incident, capsys):
    flow, backup_id = incident
    code, out, err = cli(capsys, "recover-tables", "start", "--tables", "public.album,public.track")
    assert code == 0 and "validated" in out, err + out
    [execution] = flow.sfn.list_executions(stateMachineArn=flow.machines["recover-tables"])["executions"]
    arn = execution["executionArn"]
    assert f"answer with pgrunbook recover-tables approve {execution['name']} (or reject)" in out
    assert "  tables        public.album,public.track" in out
    flow.wait_for(arn, state="Approval")
    flow.approval_requested()
    [side] = side_schemas(flow)  # the backup's copy, beside the live tables
    assert scalar(flow, f"SELECT count(*) FROM {side}.track WHERE album_id = 8") == 25
    assert scalar(flow, "SELECT count(*) FROM track WHERE album_id = 8") == 0  # not repaired yet

    [request] = [m for m in flow.messages() if m["Subject"].startswith("APPROVAL NEEDED - Table Recovery")]
    message = request["Message"]
    assert f"2 of 2 tables differ from backup {backup_id}" in message
    assert (
        "public.album: 1 deleted, 0 inserted, 1 changed (backup 200 rows, now 199; key album_id)" in message
    )
    assert (
        "public.track: 25 deleted, 2 inserted, 3 changed (backup 5000 rows, now 4977; key track_id)"
        in message
    )
    [deleted] = [line for line in message.splitlines() if line.startswith("  deleted: 7")]
    assert len(deleted.split(": ", 1)[1].split(" (")[0].split(", ")) == 20 and "(and 5 more)" in deleted
    assert set(deleted.split(": ", 1)[1].split(" (")[0].split(", ")) <= set(CHAIN_TRACKS)
    assert "  changed: 11, 12, 13" in message and "  inserted: 900001, 900002" in message
    assert "keep rows inserted since the backup" in message
    assert f"pgrunbook recover-tables approve {arn}" in message
    assert f'pgrunbook recover-tables reject {arn} --reason "..."' in message

    code, out, err = cli(capsys, "recover-tables", "status")
    assert (
        code == 0 and "waiting for approval" in out and f"recover-tables approve {execution['name']}" in out
    )

    code, out, err = cli(capsys, "recover-tables", "approve", execution["name"], "--yes")
    assert code == 0 and "the tables are compared again and repaired now" in out, err
    done = flow.wait_for(arn)
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    assert [e for e in flow.entered(arn) if not e.endswith("?")] == [
        "Validate", "Restore", "Diff", "Approval", "Apply", "Verify", "Finish", "Repaired",
    ]  # fmt: skip
    result = json.loads(done["output"])
    assert result["outcome"] == "repaired"
    assert result["repair"]["totals"] == {"deleted": 26, "changed": 4, "inserted": 0}
    assert result["verification"]["totals"] == {"deleted": 0, "changed": 0, "inserted": 2}  # kept
    now, backed_up = live_fingerprints(flow, backup_id, ("album",))
    assert now == backed_up
    assert scalar(flow, "SELECT count(*) FROM track WHERE album_id = 8") == 25
    assert scalar(flow, "SELECT name FROM track WHERE track_id = 12") == "track 12"
    assert scalar(flow, "SELECT count(*) FROM track WHERE track_id > 900000") == 2
    assert side_schemas(flow) == []
    [resolved] = [
        m for m in flow.messages() if m["Subject"].startswith("RESOLVED - Database Recovery Completed")
    ]
    assert "kept 2 rows inserted since the backup" in resolved["Message"]
    code, out, err = cli(capsys, "recover-tables", "status")
    assert code == 0 and "SUCCEEDED  (repaired)" in out


def test_rejected_recovery_repairs_nothing_and_drops_the_copy(incident, capsys):
    flow, _ = incident
    arn = start(flow, {"tables": "public.track", "include_inserted": True})
    flow.wait_for(arn, state="Approval")
    flow.approval_requested()
    assert len(side_schemas(flow)) == 1
    code, out, err = cli(capsys, "recover-tables", "reject", arn, "--reason", "the app team fixes it")
    assert code == 0 and "nothing is repaired" in out, err
    done = flow.wait_for(arn)
    assert done["status"] == "FAILED" and done["error"] == "TableRecoveryAborted"
    assert done["cause"] == "approval rejected: the app team fixes it (rejected by pytest)"
    assert flow.entered(arn)[-2:] == ["Abort", "Aborted"]
    assert side_schemas(flow) == []
    # the live table as the incident left it
    assert scalar(flow, "SELECT count(*) FROM track WHERE album_id = 8") == 0
    assert scalar(flow, "SELECT count(*) FROM track WHERE track_id > 900000") == 2
    assert scalar(flow, "SELECT name FROM track WHERE track_id = 12") == "renamed"
    [warning] = [m for m in flow.messages() if m["Subject"].startswith("WARNING - Table Recovery")]
    assert "were not repaired (approval rejected: the app team fixes it" in warning["Message"]


def test_a_database_that_moved_after_the_approval_is_not_repaired(incident, capsys):
    flow, _ = incident
    arn = start(flow, {"tables": "public.album,public.track"})
    flow.wait_for(arn, state="Approval")
    flow.approval_requested()
    with Database.connect(flow.source) as db:  # a row the repair would put back changes again
        db.run("UPDATE track SET name = 'changed again' WHERE track_id = 12")
    code, _, err = cli(capsys, "recover-tables", "approve", arn, "--yes")
    assert code == 0, err
    done = flow.wait_for(arn)
    assert done["status"] == "FAILED" and done["error"] == "TableRecoveryFailed"
    assert done["cause"].startswith("apply failed: DatabaseMoved: the tables changed since the approval")
    assert flow.entered(arn)[-4:] == ["Apply", "ApplyFailed", "ReportFailure", "Failed"]
    [critical] = [m for m in flow.messages() if m["Subject"].startswith("CRITICAL - Table Recovery")]
    message = critical["Message"]
    assert "failed in the apply phase: DatabaseMoved" in message
    assert "the same counts, but other rows or other row versions" in message
    assert "the live tables are as they were" in message
    [side] = side_schemas(flow)  # kept for investigation, and the notice says where
    assert f"stays in schema {side} of the live database for investigation" in message
    # nothing repaired: the live tables as they were before the apply
    assert scalar(flow, "SELECT name FROM track WHERE track_id = 12") == "changed again"
    assert scalar(flow, "SELECT count(*) FROM track WHERE album_id = 8") == 0
    assert scalar(flow, "SELECT count(*) FROM album WHERE album_id = 8") == 0
    report = ReportStore(flow.settings.primary_store()).latest("recover-tables")
    assert report.status == "critical" and report.findings[0].check == "recover-tables:apply"


def test_bad_requests_are_rejected_and_nothing_to_repair_ends_at_the_diff(incident, capsys):
    flow, _ = incident
    code, _, err = cli(capsys, "recover-tables", "start", "--tables", "public.nope")
    assert code == 2 and "refused before anything changed" in err and "public.nope" in err
    [execution] = flow.sfn.list_executions(stateMachineArn=flow.machines["recover-tables"])["executions"]
    assert flow.entered(execution["executionArn"]) == ["Validate", "Rejected"]
    arn = start(
        flow,
        {"tables": "public.track", "backup_id": "20250101T000000.000Z-abcdef", "at": "2026-01-01T00:00:00Z"},
    )
    done = flow.wait_for(arn)
    assert done["status"] == "FAILED" and done["error"] == "ConfigError" and "not both" in done["cause"]
    arn = start(flow, {}, name="recover-3")
    done = flow.wait_for(arn)
    assert done["status"] == "FAILED" and "--tables is required" in done["cause"]
    assert side_schemas(flow) == [] and flow.messages() == []

    # artist did not change since the backup: nothing to repair, no approval asked
    arn = start(flow, {"tables": "public.artist"}, name="recover-4")
    done = flow.wait_for(arn)
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    assert [e for e in flow.entered(arn) if not e.endswith("?")] == [
        "Validate", "Restore", "Diff", "Finish", "NothingToRepair",
    ]  # fmt: skip
    assert json.loads(done["output"])["outcome"] == "nothing-to-repair"
    assert side_schemas(flow) == [] and flow.messages() == []


def test_no_answer_in_time_aborts_and_drops_the_copy(incident):
    flow, _ = incident
    arn = start(flow, {"tables": "public.album", "approval_timeout_seconds": 1}, name="recover-timeout")
    done = flow.wait_for(arn)
    assert done["status"] == "FAILED" and done["error"] == "TableRecoveryAborted"
    assert done["cause"] == "no approval within 1 s"
    assert flow.entered(arn)[-2:] == ["Abort", "Aborted"]
    assert side_schemas(flow) == []
    assert scalar(flow, "SELECT count(*) FROM album WHERE album_id = 8") == 0  # not repaired
