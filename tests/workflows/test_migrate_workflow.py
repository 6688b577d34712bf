"""The migration state machine (as synthesized), executed under moto with the real handler,
against the embedded PostgreSQL: lint, pre-migration backup, dry run on a restored copy,
approval, apply, verify, and rollback of what the run applied when it fails."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import pytest

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.catalog.backups import Catalog
from pgrunbook.catalog.reports import ReportStore
from pgrunbook.entrypoints.cli import main
from pgrunbook.workflows.migrate.phases import run_local
from tests.workflows.conftest import Workflow, on_fargate

PRIORITY = """-- migrate:up
ALTER TABLE projects ADD COLUMN priority int NOT NULL DEFAULT 0;
-- migrate:down
ALTER TABLE projects DROP COLUMN priority;
-- migrate:verify
SELECT id FROM projects WHERE priority IS NULL;
"""
UNIQUE_NAME = """-- migrate:up
CREATE UNIQUE INDEX projects_name_key ON projects (name);
-- migrate:down
DROP INDEX projects_name_key;
"""


@pytest.fixture
def migrations(workflow: Workflow, tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "20250907090000_project_priority.sql").write_text(PRIORITY)
    (folder / "20250907090100_unique_project_names.sql").write_text(UNIQUE_NAME)
    monkeypatch.setenv("PGRUNBOOK_MIGRATIONS_DIR", str(folder))
    return folder


def cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    out = "".join(line for line in out.splitlines(keepends=True) if not line.startswith('{"level":'))
    return code, out, err


def run(flow: Workflow, name: str = "migrate-1") -> str:
    return flow.sfn.start_execution(stateMachineArn=flow.machines["migrate"], name=name, input="{}")[
        "executionArn"
    ]


def applied(flow: Workflow) -> list[str] | None:
    with Database.connect(flow.source) as db:
        if db.run("SELECT to_regclass('pgrunbook.schema_migrations') IS NULL")[0][0]:
            return None
        return [r[0] for r in db.run("SELECT version FROM pgrunbook.schema_migrations ORDER BY 1")]


def columns(flow: Workflow) -> list[str]:
    with Database.connect(flow.source) as db:
        return [
            r[0]
            for r in db.run(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'projects'::regclass AND attnum > 0 ORDER BY attnum"
            )
        ]


def scratch_databases(flow: Workflow) -> list[str]:
    return [d for d in flow.databases() if d.startswith("pgrunbook_restore_")]


def backups(flow: Workflow) -> list:
    return [e.manifest for e in Catalog(flow.settings.primary_store()).entries() if e.manifest]


def test_happy_path_backs_up_rehearses_waits_for_approval_and_applies(workflow: Workflow, migrations, capsys):
    flow = workflow
    code, out, err = cli(capsys, "migrate", "start", "--reason", "release 42")
    assert code == 0, err
    [execution] = flow.sfn.list_executions(stateMachineArn=flow.machines["migrate"])["executions"]
    arn = execution["executionArn"]
    flow.wait_for(arn, state="Approval")
    flow.approval_requested()
    assert applied(flow) is None and "priority" not in columns(flow)  # only rehearsed so far

    [manifest] = backups(flow)
    assert manifest.tiers == ["manual"]
    assert manifest.labels["migrations"] == "20250907090000,20250907090100"
    [request] = [
        m for m in flow.messages() if m.get("Subject", "").startswith("APPROVAL NEEDED - Schema Migration")
    ]
    assert "20250907090000_project_priority, 20250907090100_unique_project_names" in request["Message"]
    assert manifest.backup_id in request["Message"] and "Dry run on a restored copy: ok" in request["Message"]
    assert f"pgrunbook migrate approve {arn}" in request["Message"]
    assert scratch_databases(flow) == []  # the rehearsal's copy is gone

    code, out, err = cli(capsys, "migrate", "approve", execution["name"], "--yes")
    assert code == 0 and "the migrations are applied now" in out, err
    done = flow.wait_for(arn)
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    assert applied(flow) == ["20250907090000", "20250907090100"]
    assert "priority" in columns(flow)
    result = json.loads(done["output"])
    assert result["outcome"] == "applied" and result["dry_run"]["ok"] is True
    assert [e for e in flow.entered(arn) if not e.endswith("?")] == [
        "Lint", "Backup", "DryRun", "Approval", "Apply", "Verify", "Finish", "Applied",
    ]  # fmt: skip
    assert any(
        m.get("Subject", "").startswith("RESOLVED - Schema Migration Applied") for m in flow.messages()
    )

    # nothing pending: the next run ends at once, without a backup
    again = run(flow, "migrate-2")
    assert flow.wait_for(again)["status"] == "SUCCEEDED"
    assert flow.entered(again)[-1] == "NothingPending" and len(backups(flow)) == 1


def test_long_phases_on_fargate_hand_their_state_over_and_back(
    workflow: Workflow, migrations, fargate_template, capsys, monkeypatch
):
    """runner fargate for migrations: the backup, the dry run and the apply each run as a
    Fargate task (the task entry point in this process, tests/ecs_env.py), their state handed
    over through S3 and collected back; the approval and everything else stay in Lambda."""
    flow = workflow
    machine, containers = on_fargate(flow, fargate_template, monkeypatch, "migrate", "migrate-on-fargate")
    code, _, err = cli(capsys, "migrate", "start", "--reason", "release 43")
    assert code == 0, err
    [execution] = flow.sfn.list_executions(stateMachineArn=machine)["executions"]
    flow.wait_for(execution["executionArn"], state="Approval")
    flow.approval_requested()
    assert applied(flow) is None  # rehearsed on Fargate, not applied
    code, _, err = cli(capsys, "migrate", "approve", execution["name"], "--yes")
    assert code == 0, err
    done = flow.wait_for(execution["executionArn"])
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    assert applied(flow) == ["20250907090000", "20250907090100"] and "priority" in columns(flow)
    entered = [e for e in flow.entered(execution["executionArn"]) if not e.endswith("?")]
    assert entered == [
        "Lint",
        "ChooseBackup", "BackupTask", "BackupOnFargate", "CollectBackup",
        "ChooseDryRun", "DryRunTask", "DryRunOnFargate", "CollectDryRun",
        "Approval",
        "ChooseApply", "ApplyTask", "ApplyOnFargate", "CollectApply",
        "Verify", "Finish", "Applied",
    ]  # fmt: skip
    phases = [json.loads(run["environment"]["PGRUNBOOK_TASK"])["phase"] for run in containers.runs]
    assert phases == ["backup", "dry_run", "apply"] and {r["exit"] for r in containers.runs} == {0}
    result = json.loads(done["output"])
    assert result["dry_run"]["ok"] is True and "handoff" not in result
    assert result["runner_choice"] == {"runner": "fargate", "why": "configured: runner fargate"}
    [manifest] = backups(flow)  # the pre-migration backup, taken on Fargate
    [report] = ReportStore(flow.settings.primary_store()).history("backup")
    assert (
        report.runner is not None
        and report.runner["runner"] == "fargate"
        and manifest.labels["reason"] == "pre-migration"
    )
    root = flow.settings.primary_store().layout.root
    keys = boto3.client("s3").list_objects_v2(Bucket=flow.settings.bucket, Prefix=f"{root}/runs/")
    assert keys.get("KeyCount", 0) == 0  # every handoff collected and deleted


def test_a_phase_that_fails_on_fargate_fails_the_workflow_as_on_lambda(
    workflow: Workflow, migrations, fargate_template, capsys, monkeypatch
):
    """A migration that fails on the restored copy: the dry run's error (DryRunFailed) comes
    back from the task by name, and the workflow reports it as it would from the function."""
    flow = workflow
    (migrations / "20250907090100_unique_project_names.sql").write_text(
        UNIQUE_NAME.replace("CREATE UNIQUE INDEX projects_name_key ON projects (name)", "SELECT 1/0")
    )
    machine, _ = on_fargate(flow, fargate_template, monkeypatch, "migrate", "migrate-fails")
    arn = flow.sfn.start_execution(stateMachineArn=machine, name="m-1", input="{}")["executionArn"]
    done = flow.wait_for(arn)
    assert done["status"] == "FAILED" and done["error"] == "MigrationFailed"
    entered = flow.entered(arn)
    assert entered[-4:] == ["CollectDryRun", "DryRunFailed", "ReportFailure", "Failed"]
    # the error by the name the phase raised it with, as the function would have raised it
    assert (
        "dry run on a restored copy failed: DryRunFailed: the migrations failed on a restored copy"
        in done["cause"]
    )
    assert applied(flow) is None and "priority" not in columns(flow)  # the real database untouched
    [notice] = [m for m in flow.messages() if m.get("Subject", "").startswith("CRITICAL")]
    assert "dry run" in notice["Message"].lower()


def test_lint_failure_stops_before_the_backup(workflow: Workflow, migrations):
    flow = workflow
    (migrations / "20250907090200_index.sql").write_text(
        "-- migrate:up\nCREATE INDEX CONCURRENTLY projects_user_idx ON projects (user_id);\n"
        "-- migrate:down\nDROP INDEX projects_user_idx;\n"
    )
    arn = run(flow)
    done = flow.wait_for(arn)
    assert done["status"] == "FAILED" and done["error"] == "LintFailed"
    assert (
        "20250907090200_index.sql:2: error: CREATE INDEX CONCURRENTLY cannot run inside a transaction block"
        in done["cause"]
    )
    assert flow.entered(arn) == ["Lint", "Rejected"]
    assert backups(flow) == [] and applied(flow) is None and flow.messages() == []


def test_dry_run_failure_stops_before_the_real_database_is_touched(workflow: Workflow, migrations):
    flow = workflow
    (migrations / "20250907090200_small_users.sql").write_text(
        "-- migrate:up\nUPDATE projects SET user_id = user_id + 1 WHERE id <= 10;\n"
        "-- migrate:down\nUPDATE projects SET user_id = user_id - 1 WHERE id <= 10;\n"
        "-- migrate:verify\nSELECT id, user_id FROM projects WHERE user_id > 6;\n"
    )
    arn = run(flow)
    done = flow.wait_for(arn)
    assert done["status"] == "FAILED" and done["error"] == "MigrationFailed"
    assert done["cause"].startswith(
        "dry run on a restored copy failed: DryRunFailed: the migrations failed on a restored copy"
    )
    assert "20250907090200_small_users.sql:6: verify failed" in done["cause"]
    assert "Approval" not in flow.entered(arn) and "Apply" not in flow.entered(arn)
    assert applied(flow) is None and "priority" not in columns(flow)
    [critical] = [m for m in flow.messages() if "CRITICAL" in m.get("Subject", "")]
    assert "the real database was not touched" in critical["Message"]
    assert scratch_databases(flow) == []


def test_apply_failure_rolls_back_what_this_run_applied(workflow: Workflow, migrations, capsys):
    flow = workflow
    arn = run(flow)
    flow.wait_for(arn, state="Approval")
    flow.approval_requested()
    # the real database changed after the backup the dry run used: a duplicate name
    with Database.connect(flow.source) as db:
        db.run("INSERT INTO projects (id, client_id, user_id, name) VALUES (9999, 1, 1, 'project 1')")
    code, out, err = cli(capsys, "migrate", "approve", arn, "--yes")
    assert code == 0 and out.startswith("approved"), err
    done = flow.wait_for(arn)
    assert done["status"] == "FAILED" and done["error"] == "MigrationFailed"
    assert done["cause"].startswith(
        "apply failed: MigrationFailed: 20250907090100_unique_project_names.sql:2"
    )
    entered = flow.entered(arn)
    assert entered[entered.index("Apply") :] == [
        "Apply",
        "AllApplied?",
        "Rollback",
        "ReportFailure",
        "Failed",
    ]
    assert applied(flow) == [] and "priority" not in columns(flow)  # the first one was rolled back
    # the durable record: the report names what ran, what failed and what was undone
    report = ReportStore(flow.settings.primary_store()).latest("migrate")
    assert report is not None and report.status == "critical"
    migration = report.detail["migration"]
    assert [(st["version"], st["status"]) for st in migration["apply"]["steps"]] == [
        ("20250907090000", "ok"), ("20250907090100", "failed"),
    ]  # fmt: skip
    assert [(st["version"], st["status"]) for st in migration["rollback"]["steps"]] == [
        ("20250907090000", "ok")
    ]
    [critical] = [m for m in flow.messages() if "CRITICAL" in m.get("Subject", "")]
    [manifest] = backups(flow)
    assert "failed in the apply phase" in critical["Message"]
    assert "rolled back 20250907090000" in critical["Message"]
    assert (
        f"backup {manifest.backup_id} (taken before this run) restores the database as it was"
        in critical["Message"]
    )


def test_rejected_migration_changes_nothing(workflow: Workflow, migrations, capsys):
    flow = workflow
    arn = run(flow)
    flow.wait_for(arn, state="Approval")
    flow.approval_requested()
    code, out, err = cli(capsys, "migrate", "reject", arn, "--reason", "not during the sale")
    assert code == 0 and "nothing is applied" in out, err
    done = flow.wait_for(arn)
    assert done["status"] == "FAILED" and done["error"] == "MigrationAborted"
    assert done["cause"] == "approval rejected: not during the sale (rejected by pytest)"
    assert applied(flow) is None


# -- the same phases in this process: migrate start --local -----------------------------------


def test_local_run_lints_backs_up_rehearses_and_applies_without_step_functions(
    workflow: Workflow, migrations, capsys, monkeypatch
):
    flow = workflow
    monkeypatch.delenv("PGRUNBOOK_MIGRATION_STATE_MACHINE_ARN")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: --yes is required
    code, out, err = cli(capsys, "migrate", "start", "--local")
    assert code == 2 and "pass --yes" in err
    assert applied(flow) is None and backups(flow) == []  # refused before anything ran

    code, out, err = cli(capsys, "migrate", "start", "--local", "--yes", "--reason", "release 42")
    assert code == 0, err + out
    assert applied(flow) == ["20250907090000", "20250907090100"] and "priority" in columns(flow)
    [manifest] = backups(flow)
    assert manifest.tiers == ["manual"] and manifest.labels["migrations"] == "20250907090000,20250907090100"
    assert scratch_databases(flow) == []  # the dry run's copy is gone
    assert (
        f"backup        {manifest.backup_id}" in out and "applied       20250907090000, 20250907090100" in out
    )
    assert "approved by   pytest" in out
    [resolved] = [
        m for m in flow.messages() if m.get("Subject", "").startswith("RESOLVED - Schema Migration")
    ]
    assert manifest.backup_id in resolved["Message"]
    report = ReportStore(flow.settings.primary_store()).latest("migrate")
    assert (
        report is not None and report.status == "ok" and report.detail["migration"]["dry_run"]["ok"] is True
    )
    assert report.detail["migration"]["reason"] == "release 42"

    # nothing pending: ends at once, no second backup, and no terminal needed without approval
    code, out, err = cli(capsys, "migrate", "start", "--local", "--approval", "off", "--json")
    assert code == 0, err
    assert json.loads(out)["payload"]["outcome"] == "nothing-pending" and len(backups(flow)) == 1


def test_local_run_refuses_yes_without_local_and_a_lint_error_before_the_backup(
    workflow: Workflow, migrations, capsys
):
    flow = workflow
    code, _, err = cli(capsys, "migrate", "start", "--yes")
    assert code == 2 and "--local only" in err
    (migrations / "20250907090200_vacuum_projects.sql").write_text("-- migrate:up\nVACUUM projects;\n")
    code, _, err = cli(capsys, "migrate", "start", "--local", "--yes")
    assert code == 2 and "VACUUM cannot run inside a transaction block" in err, err
    assert applied(flow) is None and backups(flow) == []


def local_context(flow: Workflow):
    from pgrunbook.operations.context import OperationContext

    return OperationContext(flow.settings)


def test_local_apply_failure_rolls_back_what_this_run_applied(workflow: Workflow, migrations):
    flow = workflow

    def approve_after_a_conflicting_write(state):
        # the real database changes after the backup the dry run used: a duplicate name
        with Database.connect(flow.source) as db:
            db.run("INSERT INTO projects (id, client_id, user_id, name) VALUES (9999, 1, 1, 'project 1')")
        return True, "pytest"

    state = run_local(
        local_context(flow), {}, approve=approve_after_a_conflicting_write, sleep=lambda s: None
    )

    assert state["outcome"] == "failed" and state["failed_phase"] == "apply"
    assert state["applied"] == ["20250907090000"] and state["rolled_back"] == ["20250907090000"]
    assert applied(flow) == [] and "priority" not in columns(flow)
    [critical] = [m for m in flow.messages() if "CRITICAL" in m.get("Subject", "")]
    assert (
        "failed in the apply phase" in critical["Message"]
        and "rolled back 20250907090000" in critical["Message"]
    )
    [manifest] = backups(flow)
    assert f"backup {manifest.backup_id} (taken before this run)" in critical["Message"]


def test_local_rejection_changes_nothing(workflow: Workflow, migrations):
    flow = workflow
    state = run_local(local_context(flow), {}, approve=lambda state: (False, "not during the sale"))
    assert state["outcome"] == "aborted" and "not during the sale" in state["abort_reason"]
    assert applied(flow) is None and "priority" not in columns(flow)
    assert not [m for m in flow.messages() if "CRITICAL" in m.get("Subject", "")]
