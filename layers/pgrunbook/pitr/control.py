"""The operator's side of a recovery: start it, answer its approval request, see where it stands.

``pgrunbook pitr start`` starts an execution of the deployed state machine
(``PGRUNBOOK_PITR_STATE_MACHINE_ARN``) and waits until its validation has passed or failed, so
that a target outside the window is reported at once, with exit status 2.  ``--local`` runs the
same phases in this process instead (:func:`pgrunbook.pitr.workflow.run_local`).

``pgrunbook pitr approve|reject EXECUTION`` finds the approval task's token in the execution's
history (the ``Approval`` task passes it to the function, so it is in the ``TaskScheduled``
event) and answers with ``SendTaskSuccess`` (``{"approved": true, "by", "at"}``) or
``SendTaskFailure`` (error ``ApprovalRejected``).  EXECUTION is the execution's ARN or its name.

Execution names are ``pitr-<database>-<UTC time>``; a second recovery of the same database is
refused while one is running.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from ..config import Settings
from ..errors import ConfigError, PgRunbookError
from ..redact import redact
from .maintenance import MaintenanceMode
from .workflow import PHASE_TITLES, REQUEST_KEYS, error_message, parse_target_time

APPROVAL_STATE = "Approval"
# State names of infra/workflows.py, as people read them.
STATE_TITLES = {
    "Validate": "validating the request",
    "Prepare": "switching maintenance mode on",
    "SafetyPoint": "taking the safety point",
    "Approval": "waiting for approval",
    "StartRecovery": "starting the recovery",
    "WaitForRecovery": "recovering (waiting between progress checks)",
    "CheckProgress": "recovering (checking progress)",
    "RecoveryDone?": "recovering",
    "Verify": "verifying the recovered database",
    "Cutover": "switching the application over",
    "Finish": "switching maintenance mode off",
    "Recovered": "recovered",
    "Abort": "aborting (approval rejected or timed out)",
    "Aborted": "aborted: nothing was changed",
    "ReportFailure": "reporting a failure",
    "Failed": "FAILED: maintenance mode stays on",
    "Rejected": "rejected before anything changed",
}


class ExecutionError(PgRunbookError):
    """Talking to Step Functions failed."""


def _name(described: dict[str, Any]) -> str:
    return described.get("name") or described["executionArn"].rsplit(":", 1)[-1]


def _one_line(text: Any) -> str:
    return redact(" ".join(str(text).split()))


class Executions:
    """The recovery state machine's executions, through the Step Functions API."""

    def __init__(self, settings: Settings, *, client: Any = None, workflow: str = "pitr"):
        if workflow == "pitr":
            arn = settings.pitr_state_machine_arn
            missing = (
                "no recovery state machine: set PGRUNBOOK_PITR_STATE_MACHINE_ARN (the stack's output "
                "PitrStateMachineArn) or pass --local to run the recovery in this process"
            )
        else:
            arn = settings.migration_state_machine_arn
            missing = (
                "no migration state machine: set PGRUNBOOK_MIGRATION_STATE_MACHINE_ARN (the stack's output "
                "MigrationStateMachineArn)"
            )
        if not arn:
            raise ConfigError(missing)
        self.workflow = workflow
        if not re.fullmatch(r"arn:aws[\w-]*:states:[\w-]+:\d{12}:stateMachine:[\w-]{1,80}", arn):
            raise ConfigError(f"{arn!r} is not a Step Functions state machine ARN")
        self.settings = settings
        self.arn = arn
        self.region = arn.split(":")[3]
        self.client = client or boto3.session.Session().client("stepfunctions", region_name=self.region)

    def _call(self, operation: str, **params: Any) -> Any:
        try:
            return getattr(self.client, operation)(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            if code in ("ExecutionDoesNotExist", "StateMachineDoesNotExist", "InvalidArn", "InvalidName"):
                raise ConfigError(_one_line(f"{code}: {error.get('Message', '')}")) from None
            if code in ("TaskDoesNotExist", "TaskTimedOut", "InvalidToken"):
                raise ConfigError(
                    _one_line(f"the approval request is no longer open ({code}: {error.get('Message', '')})")
                ) from None
            raise ExecutionError(
                _one_line(f"Step Functions {operation} failed: {code} {error.get('Message', '')}")
            ) from None
        except BotoCoreError as exc:
            raise ExecutionError(_one_line(f"Step Functions {operation} failed: {exc}")) from None

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

    def start(self, request: dict[str, Any], *, now: datetime) -> dict[str, Any]:
        running = self.running()
        if running:
            names = ", ".join(e["name"] for e in running)
            raise ConfigError(
                f"a {self.workflow} execution is already running ({names}): answer or wait for it "
                f"(pgrunbook {self.workflow} status)"
            )
        label = re.sub(r"[^A-Za-z0-9_-]+", "-", self.settings.database_label)[:40].strip("-") or "db"
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
            if self.current_state(self.history(execution)) not in (None, "Validate"):
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
        if described["status"] != "RUNNING":
            raise ConfigError(
                f"execution {described['name']} is {described['status']}: there is nothing to answer"
            )
        pending = self.pending_approval(self.history(execution))
        if pending is None:
            where = STATE_TITLES.get(self.current_state(self.history(execution)) or "", "starting")
            raise ConfigError(f"execution {described['name']} is not waiting for approval (it is {where})")
        return {**pending, "name": _name(described), "arn": described["executionArn"]}

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
            "where": STATE_TITLES.get(state or "", state or "starting"),
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
                f"pgrunbook pitr approve {described['name']}",
                f'pgrunbook pitr reject {_name(described)} --reason "..."',
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
        request = described.get("input")
        if request:
            try:
                data = json.loads(request)
                out["target_time"] = data.get("target_time")
                out["provider"] = data.get("provider")
            except ValueError:
                pass
        return out


def validate_request(settings: Settings, request: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    """What can be checked before anything starts: the keys, the time's form, not in the future."""
    unknown = sorted(set(request) - set(REQUEST_KEYS))
    if unknown:
        raise ConfigError(f"a recovery request does not take {', '.join(unknown)}")
    target = parse_target_time(request.get("target_time"))
    if target > now:
        from ..errors import InvalidTarget

        raise InvalidTarget(
            f"target time {target.isoformat()} is in the future (now {now.isoformat(timespec='seconds')})"
        )
    return {k: v for k, v in request.items() if v is not None}


def maintenance(settings: Settings) -> MaintenanceMode:
    name = settings.maintenance_parameter_name
    if not name:
        raise ConfigError(
            "maintenance mode is switched off by configuration (PGRUNBOOK_MAINTENANCE_PARAMETER=off)"
        )
    return MaintenanceMode(name, settings.region)


# -- rendering ------------------------------------------------------------------------------


def render_outcome(state: dict[str, Any]) -> str:
    outcome = state.get("outcome", "unknown")
    lines = [
        f"pgrunbook pitr  {state.get('database')}  recovery {state.get('recovery_id')}  {outcome.upper()}"
    ]
    lines.append(f"  target        {state.get('target_time')}  (provider {state.get('provider')})")
    recovery = state.get("recovery") or {}
    where = recovery.get("database") or recovery.get("cluster") or recovery.get("instance")
    if where or recovery.get("project_ref"):
        lines.append(f"  recovered     {where or 'project ' + recovery['project_ref'] + ' in place'}")
    if recovery.get("backup_id"):
        lines.append(f"  from backup   {recovery['backup_id']} (snapshot {recovery.get('snapshot_time')})")
    if outcome == "recovered":
        for key, value in (state.get("resolved") or {}).items():
            lines.append(f"  {key.replace('_', ' '):<13} {value}")
    elif outcome == "aborted":
        lines.append(f"  reason        {state.get('abort_reason')}")
        lines.append(f"  maintenance   {state.get('maintenance_after')}")
    else:
        lines.append(f"  failed        {state.get('failure_message')}")
        lines.append(
            f"  maintenance   {state.get('maintenance_after')}: switch it off with pgrunbook pitr maintenance off"
        )
    if state.get("report"):
        lines.append(f"  report        {state['report']}")
    return "\n".join(lines)


def render_status(status: dict[str, Any]) -> str:
    lines = ["pgrunbook pitr status"]
    if status.get("maintenance") is not None:
        m = status["maintenance"]
        if m.get("parameter"):
            value = m.get("value")
            on = bool(value and value.get("enabled"))
            since = f" since {value.get('since')} ({value.get('reason')})" if on and value else ""
            lines.append(f"  maintenance   {'ON' if on else 'off'}{since}  [{m['parameter']}]")
        else:
            lines.append("  maintenance   not configured")
    if status.get("execution"):
        lines.append(f"  execution     {status['name']}  {status['status']}")
        lines.append(
            f"  target        {status.get('target_time')}  (provider {status.get('provider') or 'default'})"
        )
        lines.append(f"  now           {status['where']}")
        for command in status.get("answer", []):
            lines.append(f"  answer with   {command}")
        if status.get("reason"):
            lines.append(f"  reason        {status['reason']}")
        for key, value in (status.get("resolved") or {}).items():
            lines.append(f"  {key.replace('_', ' '):<13} {value}")
    elif "executions" in status:
        lines.append("  executions    none yet")
    if status.get("executions"):
        lines.append("  recent executions:")
        for e in status["executions"]:
            lines.append(f"    {e['name']:<48} {e['status']:<10} {e['started']}")
    if status.get("last_report"):
        r = status["last_report"]
        lines.append(f"  last report   {r['status']}  {r['finished_at']}  {r['location']}")
        for finding in r.get("findings", [])[:4]:
            lines.append(f"    {finding}")
    return "\n".join(lines)


def now_utc() -> datetime:
    return datetime.now(UTC)


__all__ = [
    "PHASE_TITLES",
    "Executions",
    "maintenance",
    "render_outcome",
    "render_status",
    "validate_request",
]
