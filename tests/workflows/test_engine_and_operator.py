"""The recovery workflow's pure parts: target times, error messages, retry policy, and how
the CLI reads an execution's history."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pgrunbook.adapters.aws.stepfunctions import Executions, error_message
from pgrunbook.domain import errors
from pgrunbook.domain.errors import ConfigError, InvalidTarget
from pgrunbook.domain.redact import register_secret
from pgrunbook.entrypoints.cli import migrate as migrate_command
from pgrunbook.entrypoints.cli import pitr as control
from pgrunbook.entrypoints.cli.pitr import validate_request
from pgrunbook.settings.model import Settings
from pgrunbook.workflows.engine import abort_reason, duration
from pgrunbook.workflows.pitr.phases import PHASES, RETRIES, parse_target_time

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:pgrunbook-app-pitr"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-09-07T14:30:00Z", datetime(2025, 9, 7, 14, 30, tzinfo=UTC)),
        ("2025-09-07T16:30:00+02:00", datetime(2025, 9, 7, 14, 30, tzinfo=UTC)),
        ("2025-09-07 14:30:00 UTC", datetime(2025, 9, 7, 14, 30, tzinfo=UTC)),  # the runbook's form
        ("2025-09-07T14:30:00.250-05:00", datetime(2025, 9, 7, 19, 30, 0, 250000, tzinfo=UTC)),
    ],
)
def test_target_times_with_a_time_zone(text, expected):
    parsed = parse_target_time(text)
    assert parsed == expected and parsed.tzinfo == UTC


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2025-09-07T14:30:00", "has no time zone"),
        ("2025-09-07", "has no time zone"),
        ("yesterday", "is not an ISO 8601 time"),
        ("", "is missing"),
        (None, "is missing"),
        (1757255400, "is missing"),
    ],
)
def test_target_times_without_a_time_zone_are_refused(text, message):
    with pytest.raises(InvalidTarget, match=message):
        parse_target_time(text)


def test_request_checked_before_anything_starts():
    now = datetime(2025, 9, 7, 15, tzinfo=UTC)
    settings = Settings.load(env={})
    assert validate_request(settings, {"target_time": "2025-09-07T14:30:00Z", "provider": None}, now=now) == {
        "target_time": "2025-09-07T14:30:00Z"
    }
    with pytest.raises(InvalidTarget, match="in the future"):
        validate_request(settings, {"target_time": "2025-09-07T15:00:01Z"}, now=now)
    with pytest.raises(ConfigError, match="does not take target"):
        validate_request(settings, {"target": "2025-09-07T14:30:00Z"}, now=now)


def test_error_message_reads_lambda_causes_and_redacts():
    register_secret("s3cr3t-in-an-error")
    cause = json.dumps(
        {"errorType": "ProviderError", "errorMessage": "login failed for s3cr3t-in-an-error\nretry"}
    )
    message = error_message({"Error": "ProviderError", "Cause": cause})
    assert message.startswith("ProviderError: login failed for ") and "s3cr3t" not in message
    assert "\n" not in message
    assert error_message({"Error": "States.Timeout"}) == "States.Timeout"
    assert (
        error_message({"Error": "ApprovalRejected", "Cause": "wrong time"}) == "ApprovalRejected: wrong time"
    )
    assert error_message(None) == "unknown error"


def test_durations_read_like_people_write_them():
    assert duration(42) == "42 s"
    assert duration(600) == "10 min"
    assert duration(3 * 3600) == "3.0 h (180 min)"
    assert duration(-5) == "0 s"


def test_retries_name_real_errors_and_never_retry_what_may_have_happened():
    assert set(RETRIES) == set(PHASES)
    for phase, policy in RETRIES.items():
        for error in policy.errors:
            assert issubclass(error, errors.PgRunbookError), (phase, error)
        assert all(name.startswith("Lambda.") for name in policy.service_errors), phase
    # a recovery request that may have reached the provider is never sent twice
    assert set(RETRIES["start"].names()) == {"ProviderThrottled", "Lambda.TooManyRequestsException"}
    retried = {name for p in RETRIES.values() for name in p.names()}
    assert "ProviderError" not in retried and "RecoveryFailed" not in retried


def test_a_retry_rule_matches_subclasses_here_and_in_the_state_machine():
    class Throttled429(errors.ProviderThrottled):
        pass

    policy = RETRIES["start"]
    assert policy.matches(Throttled429("slow down")) and not policy.matches(errors.ProviderError("?"))
    assert "Throttled429" in policy.names()  # Step Functions matches the exact class name


def test_a_connection_lost_while_polling_or_verifying_is_retried():
    for phase in ("poll", "verify"):
        assert RETRIES[phase].matches(errors.ConnectionLost("lost the connection"))
        assert RETRIES[phase].matches(errors.DatabaseUnreachable("cannot connect"))


def events(*items: tuple[str, dict]) -> list[dict]:
    out = []
    for i, (kind, details) in enumerate(items, 1):
        event = {"id": i, "type": kind}
        if kind.endswith("StateEntered"):
            event["stateEnteredEventDetails"] = details
        elif kind.endswith("StateExited"):
            event["stateExitedEventDetails"] = details
        elif kind == "TaskScheduled":
            event["taskScheduledEventDetails"] = details
        out.append(event)
    return out


def scheduled(token: str) -> tuple[str, dict]:
    payload = {"phase": "request_approval", "state": {"database": "app"}, "task_token": token}
    return ("TaskScheduled", {"parameters": json.dumps({"FunctionName": "f", "Payload": payload})})


def test_pending_approval_is_found_only_while_the_approval_task_waits():
    waiting = events(
        ("TaskStateEntered", {"name": "SafetyPoint"}),
        ("TaskStateExited", {"name": "SafetyPoint"}),
        ("TaskStateEntered", {"name": "Approval"}),
        scheduled("token-1"),
        ("TaskStarted", {}),
    )
    pending = Executions.pending_approval(waiting)
    assert pending == {"task_token": "token-1", "state": {"database": "app"}}
    assert Executions.current_state(waiting) == "Approval"

    answered = [*waiting, *events(("TaskSucceeded", {}))]
    assert Executions.pending_approval(answered) is None
    moved_on = [
        *waiting,
        *events(("TaskStateExited", {"name": "Approval"}), ("TaskStateEntered", {"name": "StartRecovery"})),
    ]
    assert Executions.pending_approval(moved_on) is None
    assert Executions.current_state(moved_on) == "StartRecovery"
    # a retried approval task: the newest token counts
    retried = [*waiting, *events(("TaskFailed", {}), scheduled("token-2"))]
    assert Executions.pending_approval(retried)["task_token"] == "token-2"
    assert Executions.pending_approval([]) is None


def test_executions_are_named_or_given_by_arn():
    executions = control.executions(Settings.load(env={"PGRUNBOOK_PITR_STATE_MACHINE_ARN": MACHINE}))
    assert executions.execution_arn("pitr-app-20250907T150000Z") == (
        "arn:aws:states:us-east-1:123456789012:execution:pgrunbook-app-pitr:pitr-app-20250907T150000Z"
    )
    arn = "arn:aws:states:us-east-1:123456789012:execution:pgrunbook-app-pitr:x"
    assert executions.execution_arn(arn) == arn
    for bad in ("arn:aws:states:us-east-1:123456789012:stateMachine:x", "name with spaces", "a/b"):
        with pytest.raises(ConfigError):
            executions.execution_arn(bad)
    with pytest.raises(ConfigError, match="PGRUNBOOK_PITR_STATE_MACHINE_ARN"):
        control.executions(Settings.load(env={}))
    with pytest.raises(ConfigError, match="PGRUNBOOK_MIGRATION_STATE_MACHINE_ARN"):
        migrate_command.executions(Settings.load(env={}))
    with pytest.raises(ConfigError, match="is not a Step Functions state machine ARN"):
        control.executions(Settings.load(env={"PGRUNBOOK_PITR_STATE_MACHINE_ARN": "arn:aws:lambda:x"}))


def test_abort_reasons_say_why_nothing_happened():
    assert abort_reason({"error": {"Error": "States.Timeout"}, "approval_timeout_seconds": 3600}) == (
        "no approval within 60 min"
    )
    assert abort_reason(
        {"error": {"Error": "ApprovalRejected", "Cause": "wrong time (rejected by ann)"}}
    ) == ("approval rejected: wrong time (rejected by ann)")
