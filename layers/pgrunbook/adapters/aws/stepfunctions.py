"""Step Functions, as the operator's commands use it: a workflow's executions.

:class:`Executions` starts an execution, finds the approval task's token in its history (the
``Approval`` task passes it to the function, so it is in the ``TaskScheduled`` event), answers
with ``SendTaskSuccess`` (``{"approved": true, "by", "at"}``) or ``SendTaskFailure`` (error
``ApprovalRejected``), and says where an execution stands.  Execution names are
``<workflow>-<database>-<UTC time>``; a second execution is refused while one runs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pgrunbook.domain.errors import ConfigError, ExecutionError
from pgrunbook.domain.redact import one_line

APPROVAL_STATE = "Approval"  # the task-token state of every workflow (infra/workflows.py)


def error_message(error: dict[str, Any] | None) -> str:
    """The one-line message of a Step Functions error (a Lambda's ``Cause`` is its JSON)."""
    if not error:
        return "unknown error"
    cause = error.get("Cause") or ""
    try:
        data = json.loads(cause)
        if isinstance(data, dict) and data.get("errorMessage"):
            cause = str(data["errorMessage"])
    except ValueError:
        pass
    name = error.get("Error") or "Error"
    text = one_line(cause)
    return f"{name}: {text}" if text else str(name)


def _name(described: dict[str, Any]) -> str:
    return described.get("name") or described["executionArn"].rsplit(":", 1)[-1]


# history events after which an execution only ends: it is failing, not past its validation
ENDING_EVENTS = ("FailStateEntered", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut")


class Executions:
    """A workflow's executions, through the Step Functions API.

    ``workflow`` is the command word (``pitr``, ``migrate``: execution names start with it and
    answers are ``pgrunbook <workflow> approve``); ``titles`` says each state name as people read
    it; ``validate_state`` is the state whose end means the request was accepted."""

    def __init__(
        self,
        arn: str,
        *,
        workflow: str,
        titles: dict[str, str] | None = None,
        validate_state: str = "Validate",
        client: Any = None,
    ):
        if not re.fullmatch(r"arn:aws[\w-]*:states:[\w-]+:\d{12}:stateMachine:[\w-]{1,80}", arn):
            raise ConfigError(f"{arn!r} is not a Step Functions state machine ARN")
        self.arn = arn
        self.workflow = workflow
        self.titles = titles or {}
        self.validate_state = validate_state
        self.region = arn.split(":")[3]
        self.client = client or boto3.session.Session().client("stepfunctions", region_name=self.region)

    def where(self, state: str | None) -> str:
        return self.titles.get(state or "", state or "starting")

    def _call(self, operation: str, **params: Any) -> Any:
        try:
            return getattr(self.client, operation)(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            if code in ("ExecutionDoesNotExist", "StateMachineDoesNotExist", "InvalidArn", "InvalidName"):
                raise ConfigError(one_line(f"{code}: {error.get('Message', '')}")) from None
            if code in ("TaskDoesNotExist", "TaskTimedOut", "InvalidToken"):
                raise ConfigError(
                    one_line(f"the approval request is no longer open ({code}: {error.get('Message', '')})")
                ) from None
            raise ExecutionError(
                one_line(f"Step Functions {operation} failed: {code} {error.get('Message', '')}")
            ) from None
        except BotoCoreError as exc:
            raise ExecutionError(one_line(f"Step Functions {operation} failed: {exc}")) from None

    def execution_arn(self, execution: str) -> str:
        """An execution's ARN from its ARN or its name."""
        if execution.startswith("arn:"):
            if ":execution:" not in execution:
                raise ConfigError(f"{execution!r} is not a Step Functions execution ARN")
            return execution
        if not re.fullmatch(r"[\w-]{1,80}", execution):
            raise ConfigError(f"{execution!r} is neither an execution ARN nor an execution name")
        return self.arn.replace(":stateMachine:", ":execution:", 1) + ":" + execution

    def running(self) -> list[dict[str, Any]]:
        return self._call("list_executions", stateMachineArn=self.arn, statusFilter="RUNNING", maxResults=10)[
            "executions"
        ]

    def recent(self, limit: int = 5) -> list[dict[str, Any]]:
        return self._call("list_executions", stateMachineArn=self.arn, maxResults=limit)["executions"]

    def describe(self, execution: str) -> dict[str, Any]:
        return self._call("describe_execution", executionArn=self.execution_arn(execution))

    def history(self, execution: str) -> list[dict[str, Any]]:
        """The whole history, oldest first."""
        events: list[dict[str, Any]] = []
        params: dict[str, Any] = {"executionArn": self.execution_arn(execution), "maxResults": 1000}
        while True:
            page = self._call("get_execution_history", **params)
            events += page.get("events", [])
            if not page.get("nextToken"):
                return events
            params["nextToken"] = page["nextToken"]

    # -- starting ------------------------------------------------------------------------

    def start(self, request: dict[str, Any], *, database: str, now: datetime) -> dict[str, Any]:
        running = self.running()
        if running:
            names = ", ".join(e["name"] for e in running)
            raise ConfigError(
                f"a {self.workflow} execution is already running ({names}): answer or wait for it "
                f"(pgrunbook {self.workflow} status)"
            )
        label = re.sub(r"[^A-Za-z0-9_-]+", "-", database)[:40].strip("-") or "db"
        name = f"{self.workflow}-{label}-{now.strftime('%Y%m%dT%H%M%SZ')}"
        started = self._call(
            "start_execution", stateMachineArn=self.arn, name=name, input=json.dumps(request, sort_keys=True)
        )
        return {"execution": started["executionArn"], "name": name, "started_at": now.isoformat()}

    def wait_past_validation(
        self, execution: str, *, timeout: float = 120.0, sleep: Callable[[float], None] = time.sleep
    ) -> dict[str, Any]:
        """Wait until the execution has left validation: ``{"validated": True}``, or the
        execution's end (``status`` and ``error``/``cause``)."""
        deadline = time.monotonic() + timeout
        while True:
            described = self.describe(execution)
            if described["status"] != "RUNNING":
                return {
                    "validated": False,
                    "status": described["status"],
                    "error": described.get("error"),
                    "reason": error_message(
                        {"Error": described.get("error"), "Cause": described.get("cause")}
                    ),
                }
            events = self.history(execution)
            # A refused request enters a Fail state (Rejected) while the execution still says
            # RUNNING for a moment: that is no validation passed, and its end is a poll away.
            ending = any(e.get("type") in ENDING_EVENTS for e in events)
            if not ending and self.current_state(events) not in (None, self.validate_state):
                return {"validated": True, "status": "RUNNING"}
            if time.monotonic() > deadline:
                return {"validated": None, "status": "RUNNING"}
            sleep(1.0)

    # -- where it stands -----------------------------------------------------------------

    @staticmethod
    def current_state(events: list[dict[str, Any]]) -> str | None:
        """The state the execution is in (or last entered)."""
        for event in reversed(events):
            details = event.get("stateEnteredEventDetails")
            if details and details.get("name"):
                return str(details["name"])
        return None

    @staticmethod
    def pending_approval(events: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The open approval request: ``{"task_token", "state"}``, or None if there is none."""
        inside = False
        scheduled: dict[str, Any] | None = None
        for event in events:
            entered = event.get("stateEnteredEventDetails")
            exited = event.get("stateExitedEventDetails")
            if entered:
                inside = entered.get("name") == APPROVAL_STATE
                scheduled = None if inside else scheduled
            elif exited and exited.get("name") == APPROVAL_STATE:
                inside, scheduled = False, None
            elif inside and event.get("type") == "TaskScheduled":
                try:
                    parameters = json.loads(event["taskScheduledEventDetails"]["parameters"])
                except (KeyError, ValueError, TypeError):
                    continue
                payload = parameters.get("Payload") or {}
                if isinstance(payload, dict) and payload.get("task_token"):
                    scheduled = {"task_token": payload["task_token"], "state": payload.get("state") or {}}
            elif inside and event.get("type") in ("TaskSucceeded", "TaskFailed", "TaskTimedOut"):
                scheduled = None
        return scheduled if inside else None

    def _approval(self, execution: str) -> dict[str, Any]:
        described = self.describe(execution)
        name = _name(described)
        if described["status"] != "RUNNING":
            raise ConfigError(f"execution {name} is {described['status']}: there is nothing to answer")
        events = self.history(execution)
        pending = self.pending_approval(events)
        if pending is None:
            where = self.where(self.current_state(events))
            raise ConfigError(f"execution {name} is not waiting for approval (it is {where})")
        return {**pending, "name": name, "arn": described["executionArn"]}

    def approve(
        self, execution: str, *, by: str, now: datetime, confirm: Callable[[dict], None] | None = None
    ) -> dict:
        pending = self._approval(execution)
        if confirm is not None:
            confirm(pending["state"])
        answer = {"approved": True, "by": by, "at": now.isoformat()}
        self._call("send_task_success", taskToken=pending["task_token"], output=json.dumps(answer))
        return {"execution": pending["arn"], "name": pending["name"], **answer}

    def reject(self, execution: str, *, by: str, reason: str) -> dict:
        pending = self._approval(execution)
        cause = f"{reason} (rejected by {by})"[:32000]
        self._call(
            "send_task_failure", taskToken=pending["task_token"], error="ApprovalRejected", cause=cause
        )
        return {
            "execution": pending["arn"],
            "name": pending["name"],
            "approved": False,
            "by": by,
            "reason": reason,
        }

    def status(self, execution: str | None = None) -> dict[str, Any]:
        recent = self.recent()
        if execution is None and not recent:
            return {"state_machine": self.arn, "executions": []}
        chosen = execution or recent[0]["executionArn"]
        described = self.describe(chosen)
        events = self.history(chosen)
        state = self.current_state(events)
        out: dict[str, Any] = {
            "state_machine": self.arn,
            "execution": described["executionArn"],
            "name": _name(described),
            "status": described["status"],
            "started": described["startDate"],
            "stopped": described.get("stopDate"),
            "state": state,
            "where": self.where(state),
            "executions": [
                {
                    "name": e["name"],
                    "status": e["status"],
                    "started": e["startDate"],
                    "stopped": e.get("stopDate"),
                }
                for e in recent
            ],
        }
        if described["status"] == "RUNNING" and self.pending_approval(events) is not None:
            out["answer"] = [
                f"pgrunbook {self.workflow} approve {_name(described)}",
                f'pgrunbook {self.workflow} reject {_name(described)} --reason "..."',
            ]
        if described.get("error") or described.get("cause"):
            out["error"] = described.get("error")
            out["reason"] = error_message({"Error": described.get("error"), "Cause": described.get("cause")})
        if described.get("output"):
            try:
                result = json.loads(described["output"])
                out["resolved"] = result.get("resolved")
                out["figures"] = result.get("figures")
                out["report"] = result.get("report")
            except ValueError:
                pass
        try:
            out["request"] = json.loads(described.get("input") or "{}")
        except ValueError:
            out["request"] = {}
        return out
