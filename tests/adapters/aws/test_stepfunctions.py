"""Executions.wait_past_validation against the interleavings Step Functions shows."""

from __future__ import annotations

from typing import Any

from pgrunbook.adapters.aws.stepfunctions import Executions

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:pgrunbook-app-pitr"


class Client:
    """Step Functions as seen by one poll after another: ``polls`` of (status, events)."""

    def __init__(self, polls: list[tuple[str, list[str]]], ending: dict[str, str] | None = None):
        self.polls, self.ending, self.calls = polls, ending or {}, 0

    def _now(self) -> tuple[str, list[str]]:
        return self.polls[min(self.calls, len(self.polls) - 1)]

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        status, _ = self._now()
        return {"status": status, **(self.ending if status != "RUNNING" else {})}

    def get_execution_history(self, executionArn: str, maxResults: int) -> dict[str, Any]:
        _, entered = self._now()
        self.calls += 1
        return {
            "events": [
                {"type": "FailStateEntered" if name == "Rejected" else "TaskStateEntered",
                 "stateEnteredEventDetails": {"name": name}}
                for name in entered
            ]
        }  # fmt: skip


def wait(client: Client) -> dict[str, Any]:
    runs = Executions(ARN, workflow="pitr", client=client)
    return runs.wait_past_validation("run-1", sleep=lambda _: None)


def test_a_refusal_seen_before_the_execution_says_failed_is_not_a_validation_passed():
    """The Fail state (Rejected) is entered a moment before the execution's status is FAILED:
    the answer waits for the end, and the CLI refuses with exit 2 (it said "validated")."""
    client = Client(
        [("RUNNING", ["Validate", "Rejected"]), ("FAILED", ["Validate", "Rejected"])],
        ending={"error": "InvalidTarget", "cause": '{"errorMessage": "outside the window"}'},
    )
    found = wait(client)
    assert found["validated"] is False and found["status"] == "FAILED" and found["error"] == "InvalidTarget"


def test_a_request_past_validation_is_validated():
    assert (
        wait(Client([("RUNNING", ["Validate"]), ("RUNNING", ["Validate", "Prepare"])]))["validated"] is True
    )
