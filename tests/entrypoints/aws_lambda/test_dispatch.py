"""The dispatch's phases and the runner a run records, through the real handler (functions/app.py)
and the task entry point, against the embedded PostgreSQL and moto."""

from __future__ import annotations

import json

import boto3
import pytest

from pgrunbook.catalog.reports import ReportStore
from pgrunbook.domain.errors import ConfigError, DiskTooSmall
from pgrunbook.entrypoints import task
from pgrunbook.settings.model import Settings
from tests.conftest import rewrite_manifest
from tests.lambda_env import Context, load_handler

LIMITS = {"seconds": 900, "disk_bytes": 10240 * 1024 * 1024}


def phase(job: str, name: str, state: dict) -> dict:
    event = {
        "phase": name,
        "workflow": "dispatch",
        "state": state,
        "execution": "arn:aws:states:x:1:execution:m:run-1",
    }
    return load_handler(job)(event, Context())


def choose(job: str, **state) -> dict:
    return phase(
        job, "choose", {"operation": job, "options": {}, "runner": "auto", "lambda": LIMITS, **state}
    )


def stored(job: str) -> list:
    return ReportStore(Settings.load().primary_store()).history(job)


def test_a_dispatched_run_records_where_it_ran_and_why(env):
    why = "the last run (on lambda) took 0.1 min of Lambda's 15.0 min"
    report = load_handler("backup")(
        {"options": {"tier": "daily"}, "runner": {"runner": "lambda", "why": why}}, Context()
    )
    assert report["status"] == "ok"
    assert report["runner"]["runner"] == "lambda" and report["runner"]["why"] == why
    assert report["runner"]["cpus"] >= 1
    [kept] = stored("backup")
    assert kept.runner == report["runner"]  # in the stored report, which the next choice reads
    direct = load_handler("backup")({}, Context())
    assert direct["runner"]["why"].startswith("invoked directly")


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"options": {}, "runner": {"runner": "fargate", "why": "x"}}, "runner is"),
        ({"options": {}, "runner": {"runner": "lambda"}, "extra": 1}, "does not take extra"),
        ({"options": {"tier": "yearly"}, "runner": {"runner": "lambda", "why": "x"}}, "yearly"),
    ],
)
def test_a_bad_dispatched_event_is_refused_before_anything_runs(env, event, message):
    with pytest.raises(ConfigError, match=message):
        load_handler("backup")(event, Context())
    assert stored("backup") == []


def test_choose_sizes_the_next_run_by_the_last(env):
    first = choose("backup")
    assert first["choice"]["runner"] == "fargate" and "no earlier run" in first["choice"]["why"]
    assert (
        load_handler("backup")({"options": {}, "runner": first["choice"] | {"runner": "lambda"}}, Context())[
            "status"
        ]
        == "ok"
    )
    second = choose("backup")
    assert second["choice"]["runner"] == "lambda" and "well within Lambda's limits" in second["choice"]["why"]
    # a function deployed with a much shorter timeout than the backup took: Fargate
    took = stored("backup")[-1].figures["duration_s"]
    short = choose("backup", **{"lambda": {"seconds": took * 1.2, "disk_bytes": LIMITS["disk_bytes"]}})
    assert short["choice"]["runner"] == "fargate" and "over 60%" in short["choice"]["why"]
    assert choose("backup", runner="lambda")["choice"] == {
        "runner": "lambda",
        "why": "configured: runner lambda",
    }


def test_choose_refuses_options_the_job_would_refuse(env):
    with pytest.raises(ConfigError, match="does not take colour"):
        choose("backup", options={"colour": "blue"})
    with pytest.raises(ConfigError, match="runner must be one of"):
        choose("backup", runner="sometimes")


def test_a_restore_that_needs_more_disk_than_lambda_has_goes_to_fargate_first(env, monkeypatch):
    """From the backup's manifest, before any restore-test ran; and the function, asked
    anyway, refuses with DiskTooSmall, the error the state machine catches by name."""
    monkeypatch.delenv("PGRUNBOOK_RESTORE_TARGET_URL")  # the embedded target
    backup_id = load_handler("backup")({}, Context())["figures"]["backup_id"]
    assert choose("restore-test")["choice"]["runner"] == "fargate"  # no history yet
    settings = Settings.load()
    rewrite_manifest(settings, backup_id, lambda data: data["server"].update(database_bytes=12 * 1024**3))
    choice = choose("restore-test")["choice"]
    assert choice["runner"] == "fargate" and "needs 13.2 GiB of local disk" in choice["why"]
    rewrite_manifest(settings, backup_id, lambda data: data["server"].update(database_bytes=10**15))
    with pytest.raises(DiskTooSmall, match="needs about"):
        load_handler("restore-test")({"options": {}, "runner": {"runner": "lambda", "why": "x"}}, Context())


def ecs_cause(exit_code: int | None, reason: str = "Essential container in task exited", **more) -> str:
    container = {
        "Name": "pgrunbook",
        "LastStatus": "STOPPED",
        **({"ExitCode": exit_code} if exit_code is not None else {}),
    }
    return json.dumps({"Containers": [container], "StoppedReason": reason, "LastStatus": "STOPPED", **more})


def test_fail_sends_the_critical_notice_of_a_run_that_could_not_report(env):
    state = {
        "operation": "backup",
        "choice": {"runner": "fargate", "why": "no earlier run"},
        "error": {"Error": "States.TaskFailed", "Cause": ecs_cause(70)},
    }
    out = phase("backup", "fail", state)
    assert "could not start or crashed outside the operation (exit 70)" in out["failure_message"]
    [notice] = env.messages()
    assert notice["Subject"].startswith("CRITICAL - ")
    assert "did not run to the end on fargate" in notice["Message"]
    assert "Ran on: fargate (no earlier run)" in notice["Message"]
    [report] = stored("backup")
    assert report.status == "critical" and report.runner["runner"] == "fargate"


def test_fail_does_not_announce_twice_what_the_run_reported_itself(env):
    reported = {
        "operation": "backup",
        "choice": {"runner": "fargate", "why": "x"},
        "error": {"Error": "States.TaskFailed", "Cause": ecs_cause(1)},
    }
    assert "reported a problem" in phase("backup", "fail", reported)["failure_message"]
    on_lambda = {
        "operation": "backup",
        "choice": {"runner": "lambda", "why": "x"},
        "result": {"status": "critical", "exit_code": 1},
    }
    assert "reported a problem" in phase("backup", "fail", on_lambda)["failure_message"]
    assert env.messages() == [] and stored("backup") == []


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            {
                "Error": "DiskTooSmall",
                "Cause": json.dumps({"errorType": "Unreachable", "errorMessage": "cannot connect"}),
            },
            "Unreachable: cannot connect",
        ),
        ({"Error": "Sandbox.Timedout", "Cause": "Task timed out after 900.00 seconds"}, "timed out"),
        (
            {"Error": "States.TaskFailed", "Cause": ecs_cause(137, "OutOfMemoryError: Container killed")},
            "exit status 137",
        ),
        ({"Error": "States.TaskFailed", "Cause": ecs_cause(2)}, "refused (exit 2"),
    ],
)
def test_fail_says_what_happened(env, error, said):
    out = phase(
        "backup", "fail", {"operation": "backup", "choice": {"runner": "lambda", "why": "x"}, "error": error}
    )
    assert said in out["failure_message"]
    assert len(env.messages()) == 1


@pytest.mark.parametrize(
    ("cause", "retry"),
    [
        (ecs_cause(None, "Capacity is unavailable at this time. Please try again later"), True),
        (ecs_cause(None, "ResourceInitializationError: unable to pull secrets or registry auth"), True),
        (ecs_cause(143, "Task is being retired: the underlying host requires maintenance"), True),
        (ecs_cause(1), False),  # the run failed and reported it
        (ecs_cause(137, "OutOfMemoryError: Container killed due to memory usage"), False),
    ],
)
def test_examine_starts_again_only_what_the_platform_stopped(env, cause, retry):
    state = {"operation": "backup", "error": {"Error": "States.TaskFailed", "Cause": cause}}
    out = phase("backup", "examine", state)
    assert out["fargate_retry"] is retry
    if retry:  # twice more at most, waiting longer each time
        assert out["retry_seconds"] == 120
        again = phase("backup", "examine", out)
        assert again["fargate_retry"] is True and again["retry_seconds"] == 240
        assert phase("backup", "examine", again)["fargate_retry"] is False


def test_the_task_entry_point_runs_the_job_with_the_tasks_cpus(env, monkeypatch, capsys):
    monkeypatch.setenv("PGRUNBOOK_OPERATION", "backup")
    monkeypatch.delenv("PGRUNBOOK_JOBS", raising=False)
    monkeypatch.setenv(
        "PGRUNBOOK_TASK",
        json.dumps({"options": {"tier": "weekly"}, "runner": {"runner": "fargate", "why": "y"}}),
    )
    monkeypatch.setattr(task, "cpus", lambda: 3)
    assert task.main() == 0
    [report] = stored("backup")
    assert report.status == "ok" and report.figures["tiers"] == ["weekly"]
    assert report.runner["runner"] == "fargate" and report.runner["why"] == "y"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert lines[0]["jobs"] == 3 and lines[-1]["status"] == "ok" and lines[-1]["exit_code"] == 0
    metrics = boto3.client("cloudwatch", region_name="us-east-1").list_metrics(Namespace="pgrunbook")[
        "Metrics"
    ]
    assert {m["MetricName"] for m in metrics} >= {"BackupSucceeded", "BackupSizeBytes"}


@pytest.mark.parametrize(
    ("operation", "task_json", "said"),
    [
        ("backup", "{not json", "PGRUNBOOK_TASK is not JSON"),
        ("backup", json.dumps({"options": {"tier": "yearly"}}), "yearly"),
        ("backup", json.dumps({"colour": 1}), "does not take colour"),
        ("status", "{}", "not an operation a task runs"),
    ],
)
def test_the_task_entry_point_refuses_bad_input_with_exit_2(
    env, monkeypatch, capsys, operation, task_json, said
):
    monkeypatch.setenv("PGRUNBOOK_OPERATION", operation)
    monkeypatch.setenv("PGRUNBOOK_TASK", task_json)
    assert task.main() == 2
    [line] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert line["status"] == "refused" and said in line["message"]
    assert stored("backup") == []


def choose_phase(workflow: str, phase: str, state: dict, runner: str = "auto") -> dict:
    request = {
        "workflow_state": state,
        "operation": workflow,
        "for_phase": phase,
        "runner": runner,
        "lambda": LIMITS,
    }
    return load_handler(workflow)(
        {
            "phase": "choose_phase",
            "workflow": "dispatch",
            "state": request,
            "execution": "arn:aws:states:x:1:execution:m:run-9",
        },
        Context(),
    )


def test_a_workflows_long_phase_is_sized_by_the_history_it_resembles(env, s3):
    """The pre-migration backup by the last backup; the dry run by its backup's manifest and
    the last restore test; the apply by the dry run's own apply time."""
    state = {"migration_id": "m1", "pending": []}
    first = choose_phase("migrate", "backup", state)
    assert first["runner_choice"]["runner"] == "fargate"  # no backup yet to size it by
    handoff = first["handoff"]
    assert handoff["in"].endswith("/runs/run-9/backup-in.json") and handoff["out"].endswith(
        "/runs/run-9/backup-out.json"
    )
    handed = json.loads(Settings.load().primary_store().get_bytes(handoff["in"]))
    assert handed["migration_id"] == "m1" and handed["runner_choice"]["runner"] == "fargate"

    backup_id = load_handler("backup")({}, Context())["figures"]["backup_id"]
    assert choose_phase("migrate", "backup", state)["runner_choice"]["runner"] == "lambda"
    dry = choose_phase("migrate", "dry_run", {**state, "backup": {"backup_id": backup_id}})
    assert dry["runner_choice"]["runner"] == "fargate" and "no earlier run" in dry["runner_choice"]["why"]
    assert "handoff" in dry
    quick = choose_phase("migrate", "apply", {**state, "dry_run": {"apply_seconds": 1.5}})
    assert quick["runner_choice"]["runner"] == "lambda" and "handoff" not in quick
    slow = choose_phase("migrate", "apply", {**state, "dry_run": {"apply_seconds": 700}})
    assert slow["runner_choice"]["runner"] == "fargate"
    assert (
        choose_phase("migrate", "apply", state, runner="lambda")["runner_choice"]["why"]
        == "configured: runner lambda"
    )


def test_a_table_recoverys_long_phases_are_sized_by_the_restore_test_and_its_diff(env, s3):
    """The restore by the last restore test (and its backup's download, from the request's
    bucket); the apply by the diff's own estimate."""
    backup_id = load_handler("backup")({}, Context())["figures"]["backup_id"]
    state = {"recovery_id": "r1", "backup_id": backup_id, "source": "dr"}
    restore = choose_phase("recover-tables", "restore", state)
    assert (
        restore["runner_choice"]["runner"] == "fargate"
        and "no earlier run" in restore["runner_choice"]["why"]
    )
    assert restore["handoff"]["in"].endswith("/runs/run-9/restore-in.json")
    quick = choose_phase("recover-tables", "apply", {**state, "apply_estimate_seconds": 2.0})
    assert quick["runner_choice"]["runner"] == "lambda" and "handoff" not in quick
    slow = choose_phase("recover-tables", "apply", {**state, "apply_estimate_seconds": 800.0})
    assert slow["runner_choice"]["runner"] == "fargate"


def test_collect_says_when_a_task_handed_nothing_back(env):
    state = choose_phase("migrate", "backup", {"migration_id": "m2"}, runner="fargate")
    event = {"phase": "collect", "workflow": "dispatch", "state": state, "execution": "x"}
    with pytest.raises(Exception, match="stopped without handing back its state") as failed:
        load_handler("migrate")(event, Context())
    assert type(failed.value).__name__ == "OperationFailed"
