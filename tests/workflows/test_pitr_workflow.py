"""The recovery state machine, executed under moto with the real handler, against the embedded
PostgreSQL (see conftest.py for what is patched: moto's Lambda runner and waits only)."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.catalog.backups import Catalog
from pgrunbook.domain.manifest import Manifest
from pgrunbook.entrypoints.cli import main
from pgrunbook.operations.context import OperationContext, run_operation
from pgrunbook.workflows.pitr.supabase import restore_point_name
from tests.supabase_api import REF, TOKEN, serve
from tests.workflows.conftest import REGION, Workflow, on_fargate


def backup(flow: Workflow) -> Manifest:
    report = run_operation("backup", OperationContext(flow.settings), tier="manual")
    assert report.status == "ok", report.findings
    return Catalog(flow.settings.primary_store()).manifest(report.figures["backup_id"])


def insert(flow: Workflow, first: int, last: int) -> None:
    with Database.connect(flow.source) as db:
        db.run(
            "INSERT INTO projects (id, client_id, user_id, name) "
            f"SELECT g, 1 + g % 20, g % 7, 'project ' || g FROM generate_series({first}, {last}) g"
        )


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """The command's exit status and output (without the JSON log lines the handler, running
    in moto's execution thread, writes to the same stdout)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    out = "".join(line for line in out.splitlines(keepends=True) if not line.startswith('{"level":'))
    return code, out, err


def subjects(messages: list[dict]) -> list[str]:
    return [m.get("Subject", "") for m in messages]


def test_logical_recovery_end_to_end(workflow: Workflow, capsys):
    flow = workflow
    backup(flow)  # B1: 200 projects
    insert(flow, 201, 260)  # rows A, written before the target
    b2 = backup(flow)  # B2: 260 projects
    time.sleep(1.1)
    target = datetime.now(UTC).replace(microsecond=0)
    time.sleep(1.1)
    insert(flow, 261, 300)  # rows C, written after the target

    code, out, err = cli(
        capsys, "pitr", "start", "--target-time", target.isoformat(), "--reason", "bad deploy"
    )
    assert code == 0, err
    assert "validated" in out
    [execution] = flow.sfn.list_executions(stateMachineArn=flow.machine_arn)["executions"]
    arn = execution["executionArn"]
    assert out.startswith(f"pgrunbook pitr  started {execution['name']}")
    assert f"answer with pgrunbook pitr approve {execution['name']} (or reject)" in out
    flow.wait_for(arn, state="Approval")
    flow.approval_requested()

    # the approval request went out, with how to answer
    [approval] = [m for m in flow.messages() if m.get("Subject", "").startswith("APPROVAL NEEDED")]
    assert f"pgrunbook pitr approve {arn}" in approval["Message"]
    assert b2.backup_id in approval["Message"]
    assert flow.maintenance()["enabled"] is True

    code, out, err = cli(capsys, "pitr", "status")
    assert code == 0, err
    assert "waiting for approval" in out and "maintenance   ON" in out

    code, out, err = cli(capsys, "pitr", "approve", execution["name"], "--yes")
    assert code == 0, err
    done = flow.wait_for(arn, timeout=180)
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"), flow.entered(arn))
    result = json.loads(done["output"])

    # the recovered database: rows before the target are back, rows after it are not
    recovered = result["recovery"]["database"]
    assert recovered.startswith(f"{flow.source.dbname}_pitr_") and recovered in flow.databases()
    assert flow.rows(recovered, "SELECT count(*), max(id) FROM projects") == [[260, 260]]
    assert flow.rows(flow.source.dbname, "SELECT count(*) FROM projects") == [
        [300]
    ]  # the damaged one is kept
    assert result["recovery"]["backup_id"] == b2.backup_id

    # the data-loss window: from B2's snapshot; (target - snapshot) of it before the target
    figures = result["figures"]
    expected = (target - b2.snapshot_time).total_seconds()
    assert figures["lost_before_target_seconds"] == pytest.approx(expected, abs=0.01)
    assert figures["recovery_point"] == b2.snapshot_time.isoformat()
    enabled_at = datetime.fromisoformat(result["maintenance"]["enabled_at"])
    assert figures["data_loss_seconds"] == pytest.approx(
        (enabled_at - b2.snapshot_time).total_seconds(), abs=0.01
    )
    assert 0 < figures["downtime_seconds"] < 180

    # verified, cut over, maintenance off, RESOLVED sent with the runbook's fields
    assert result["verification"]["critical_tables"] == {"public.clients": 20, "public.projects": 260}
    assert result["verification"]["rows_after_recovery_point"] == {}
    assert flow.secret()["dbname"] == recovered and flow.secret()["password"] == "Pitr-Secret-pw-93c1d0"
    assert flow.maintenance()["enabled"] is False
    [resolved] = [m for m in flow.messages() if m.get("Subject", "").startswith("RESOLVED")]
    for field in ("Downtime", "Data Loss", "Validation"):
        assert field.lower() in resolved["Message"].lower()
    assert "Pitr-Secret" not in json.dumps(result) and "Pitr-Secret" not in resolved["Message"]

    # the order the runbook asks for, each phase once
    assert [s for s in flow.entered(arn) if s not in ("WaitForRecovery", "RecoveryDone?")] == [
        "Validate", "Prepare", "SafetyPoint", "Approval", "StartRecovery", "CheckProgress",
        "Verify", "Cutover", "Finish", "Recovered",
    ]  # fmt: skip

    code, out, err = cli(capsys, "pitr", "status", "--json")
    status = json.loads(out)["payload"]
    assert status["status"] == "SUCCEEDED" and status["maintenance"]["value"]["enabled"] is False
    assert status["last_report"]["status"] == "ok"


def test_a_logical_recovery_restores_on_fargate(workflow: Workflow, fargate_template, capsys, monkeypatch):
    """runner fargate for pitr: the safety point (a backup) and the restore (start) each run
    as a Fargate task, their state handed over and collected back; the recovery completes."""
    flow = workflow
    machine, containers = on_fargate(flow, fargate_template, monkeypatch, "pitr", "pitr-on-fargate")
    b1 = backup(flow)
    time.sleep(1.1)
    target = datetime.now(UTC).replace(microsecond=0)
    time.sleep(1.1)
    insert(flow, 201, 230)  # after the target
    code, _, err = cli(capsys, "pitr", "start", "--target-time", target.isoformat(), "--reason", "on fargate")
    assert code == 0, err
    [execution] = flow.sfn.list_executions(stateMachineArn=machine)["executions"]
    flow.wait_for(execution["executionArn"], state="Approval")
    flow.approval_requested()
    code, _, err = cli(capsys, "pitr", "approve", execution["name"], "--yes")
    assert code == 0, err
    done = flow.wait_for(execution["executionArn"], timeout=180)
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    result = json.loads(done["output"])
    assert result["recovery"]["backup_id"] == b1.backup_id
    assert flow.rows(result["recovery"]["database"], "SELECT count(*) FROM projects") == [[200]]
    entered = flow.entered(execution["executionArn"])
    for phase in ("SafetyPoint", "StartRecovery"):
        assert [f"{phase}Task", f"{phase}OnFargate", f"Collect{phase}"] == [
            s for s in entered if s in (f"{phase}Task", f"{phase}OnFargate", f"Collect{phase}")
        ]
    phases = [json.loads(run["environment"]["PGRUNBOOK_TASK"])["phase"] for run in containers.runs]
    assert phases == ["safety_point", "start"] and {r["exit"] for r in containers.runs} == {0}
    assert flow.maintenance()["enabled"] is False


def no_recovered_databases(flow: Workflow) -> bool:
    return not [d for d in flow.databases() if d.startswith(f"{flow.source.dbname}_pitr_")]


def test_rejected_approval_aborts_and_changes_nothing(workflow: Workflow, capsys):
    flow = workflow
    backup(flow)
    secret_before = flow.secret()
    target = datetime.now(UTC)
    code, out, err = cli(capsys, "pitr", "start", "--target-time", target.isoformat())
    assert code == 0, err
    [execution] = flow.sfn.list_executions(stateMachineArn=flow.machine_arn)["executions"]
    flow.wait_for(execution["executionArn"], state="Approval")
    flow.approval_requested()

    code, out, err = cli(capsys, "pitr", "reject", execution["name"], "--reason", "wrong target time")
    assert code == 0, err
    assert out.startswith(f"rejected {execution['name']}")
    done = flow.wait_for(execution["executionArn"])
    assert done["status"] == "FAILED" and done["error"] == "RecoveryAborted"
    assert "approval rejected: wrong target time" in done["cause"]
    assert "StartRecovery" not in flow.entered(execution["executionArn"])
    assert flow.maintenance()["enabled"] is False
    assert flow.secret() == secret_before and no_recovered_databases(flow)
    notices = flow.messages()
    assert any("APPROVAL NEEDED" in s for s in subjects(notices))
    [warning] = [m for m in notices if "WARNING" in m.get("Subject", "")]
    assert "nothing was changed" in warning["Message"]

    # answering twice is a clear error, not a crash
    code, _out, err = cli(capsys, "pitr", "approve", execution["name"], "--yes")
    assert code == 2 and "FAILED: there is nothing to answer" in err


def test_approval_timeout_aborts(workflow: Workflow):
    flow = workflow
    backup(flow)
    target = datetime.now(UTC).isoformat()
    arn = flow.start({"target_time": target, "approval_timeout_seconds": 1})
    done = flow.wait_for(arn)
    assert done["status"] == "FAILED" and done["error"] == "RecoveryAborted"
    assert done["cause"] == "no approval within 1 s"
    assert flow.maintenance()["enabled"] is False and no_recovered_databases(flow)


def test_target_outside_the_window_is_refused_before_anything_changes(workflow: Workflow, capsys):
    flow = workflow
    before_backups = datetime.now(UTC) - timedelta(minutes=5)
    backup(flow)
    keys = sorted(flow_keys(flow))

    code, _out, err = cli(capsys, "pitr", "start", "--target-time", before_backups.isoformat())
    assert code == 2
    [error] = [line for line in err.splitlines() if line.startswith("pgrunbook: ")]
    assert "outside the logical recovery window" in error
    [execution] = flow.sfn.list_executions(stateMachineArn=flow.machine_arn)["executions"]
    assert flow.entered(execution["executionArn"]) == ["Validate", "Rejected"]
    assert flow.maintenance() is None and flow.messages() == []
    assert sorted(flow_keys(flow)) == keys  # no safety point, no report


def test_target_in_the_future_is_refused(workflow: Workflow, capsys):
    flow = workflow
    backup(flow)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    code, out, err = cli(capsys, "pitr", "start", "--target-time", future)
    assert code == 2 and "is in the future" in err and out == ""
    assert flow.sfn.list_executions(stateMachineArn=flow.machine_arn)["executions"] == []

    # the state machine refuses it too, when started by other means
    arn = flow.start({"target_time": future})
    done = flow.wait_for(arn)
    assert (
        done["status"] == "FAILED" and done["error"] == "InvalidTarget" and "in the future" in done["cause"]
    )
    assert flow.maintenance() is None

    code, _out, err = cli(capsys, "pitr", "start", "--target-time", "2025-09-07 14:30")
    assert code == 2 and "no time zone" in err


def flow_keys(flow: Workflow) -> list[str]:
    s3 = boto3.client("s3", region_name=REGION)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=flow.settings.bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def use_supabase(monkeypatch, url: str) -> None:
    """The recovery's provider settings for the fake Management API at ``url``."""
    for key, value in {
        "PGRUNBOOK_SUPABASE_PROJECT_REF": REF,
        "PGRUNBOOK_SUPABASE_API_URL": url,
        "SUPABASE_ACCESS_TOKEN": TOKEN,
        "NO_PROXY": "127.0.0.1,localhost",
    }.items():
        monkeypatch.setenv(key, value)


def test_provider_failure_mid_recovery_is_critical_and_keeps_maintenance_on(
    workflow: Workflow, capsys, monkeypatch
):
    flow = workflow
    with serve() as (fake, url):
        use_supabase(monkeypatch, url)
        # the project is healthy when the restore is asked for, restores, then fails
        fake.statuses = ["ACTIVE_HEALTHY", "RESTORING", "RESTORING", "RESTORE_FAILED"]
        arn = flow.start({"target_time": "2025-03-06T12:00:00Z", "provider": "supabase"})
        flow.wait_for(arn, state="Approval")
        flow.approval_requested()
        code, out, err = cli(capsys, "pitr", "approve", arn, "--yes")
        assert code == 0, err
        done = flow.wait_for(arn)

    assert done["status"] == "FAILED" and done["error"] == "RecoveryFailed"
    assert done["cause"].startswith("recovery progress failed: RecoveryFailed: Supabase project")
    assert "RESTORE_FAILED" in done["cause"]
    assert [s for s in flow.entered(arn) if s in ("CheckProgressFailed", "ReportFailure", "Failed")] == [
        "CheckProgressFailed", "ReportFailure", "Failed",
    ]  # fmt: skip
    assert flow.entered(arn).count("CheckProgress") == 3

    # what Supabase received: the safety point, then one recovery request, with the token
    [point] = fake.of("POST", "/database/backups/restore-point")
    assert point.body == {"name": restore_point_name(recovery_id(flow, arn))}
    [restore] = fake.of("POST", "/database/backups/restore-pitr")
    assert restore.body == {"recovery_time_target_unix": 1741262400}
    assert {r.headers["Authorization"] for r in fake.requests} == {f"Bearer {TOKEN}"}

    # CRITICAL, naming the phase; maintenance mode stays on
    notices = flow.messages()
    [critical] = [m for m in notices if m.get("Subject", "").startswith("CRITICAL")]
    assert "failed in the recovery progress phase" in critical["Message"]
    assert "maintenance mode stays ON" in critical["Message"]
    assert TOKEN not in json.dumps(notices)
    assert flow.maintenance()["enabled"] is True

    code, out, err = cli(capsys, "pitr", "status")
    assert "FAILED" in out and "maintenance   ON" in out and "RESTORE_FAILED" in out
    code, out, err = cli(capsys, "pitr", "maintenance", "off")
    assert code == 0 and "maintenance   off" in out
    assert flow.maintenance()["enabled"] is False


def test_a_supabase_recovery_without_a_restore_point_has_a_backup_as_its_safety_point(
    workflow: Workflow, capsys, monkeypatch
):
    """The restore-point endpoint is x-internal and may answer "unavailable": the approver is
    told that the safety point is a pgrunbook backup instead, and why."""
    flow = workflow
    with serve() as (fake, url):
        use_supabase(monkeypatch, url)
        fake.restore_point_unavailable = True
        arn = flow.start({"target_time": "2025-03-06T12:00:00Z", "provider": "supabase"})
        flow.wait_for(arn, state="Approval")
        flow.approval_requested()
        code, _out, err = cli(capsys, "pitr", "reject", arn, "--reason", "checking the safety point")
        assert code == 0, err
        flow.wait_for(arn)
    assert fake.of("POST", "/database/backups/restore-pitr") == []
    [manual] = [
        m.backup_id for m in (e.manifest for e in Catalog(flow.settings.primary_store()).entries()) if m
    ]
    [approval] = [m for m in flow.messages() if m.get("Subject", "").startswith("APPROVAL NEEDED")]
    text = approval["Message"]
    assert f"Safety point: pgrunbook backup {manual} (tier manual" in text
    assert "not a Supabase restore point: " in text and "This endpoint is unavailable at the moment" in text
    assert f"Warning: the safety point is pgrunbook backup {manual}" in text
    assert TOKEN not in json.dumps(flow.messages())


def test_local_recovery_runs_the_same_phases(workflow: Workflow, capsys, monkeypatch):
    flow = workflow
    monkeypatch.delenv("PGRUNBOOK_PITR_STATE_MACHINE_ARN")
    b1 = backup(flow)
    time.sleep(1.1)
    target = datetime.now(UTC)
    insert(flow, 201, 230)

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: --yes is required
    code, out, err = cli(capsys, "pitr", "start", "--local", "--target-time", target.isoformat())
    assert code == 2 and "pass --yes" in err
    assert flow.maintenance() is None

    code, out, err = cli(capsys, "pitr", "start", "--local", "--yes", "--target-time", target.isoformat())
    assert code == 0, err
    assert "RECOVERED" in out and "data loss" in out
    [recovered] = [d for d in flow.databases() if d.startswith(f"{flow.source.dbname}_pitr_")]
    assert flow.rows(recovered, "SELECT count(*) FROM projects") == [[200]]
    assert flow.maintenance()["enabled"] is False
    assert flow.secret()["dbname"] == recovered
    assert any(m.get("Subject", "").startswith("RESOLVED") for m in flow.messages())
    assert f"recovered     {recovered}" in out and f"from backup   {b1.backup_id}" in out


def recovery_id(flow: Workflow, arn: str) -> str:
    """The recovery id the Validate task gave the execution."""
    for event in flow.history(arn):
        if event.get("stateExitedEventDetails", {}).get("name") == "Validate":
            return json.loads(event["stateExitedEventDetails"]["output"])["recovery_id"]
    raise AssertionError("the execution never left Validate")
