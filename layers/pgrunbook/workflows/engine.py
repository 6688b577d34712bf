"""What pgrunbook's Step Functions workflows share (point-in-time recovery, schema migration).

The phase side, in the Lambda function: :class:`Retry` policies, :func:`run_phase` (one phase as
a task runs it), :func:`request_approval` (the SNS notice of the ``Approval`` task) and
:func:`abort_reason` / :func:`error_message` (a Step Functions error as one line).

The operator side, in the CLI: :class:`Executions` starts an execution, finds the approval
task's token in its history (the ``Approval`` task passes it to the function, so it is in the
``TaskScheduled`` event), answers with ``SendTaskSuccess`` (``{"approved": true, "by", "at"}``)
or ``SendTaskFailure`` (error ``ApprovalRejected``), and says where an execution stands.
Execution names are ``<workflow>-<database>-<UTC time>``; a second execution is refused while
one runs.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pgrunbook.domain.errors import ConfigError, PgRunbookError
from pgrunbook.domain.redact import redact

APPROVAL_STATE = "Approval"  # the task-token state of every workflow (infra/workflows.py)
PhaseFunction = Callable[[Any, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Retry:
    """A phase's Retry clause: the error names it may retry, and how."""

    errors: tuple[str, ...]
    attempts: int = 3
    interval_seconds: int = 5
    backoff: float = 2.0


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h ({minutes:.0f} min)"


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
    text = redact(" ".join(str(cause).split()))
    return f"{name}: {text}" if text else str(name)


def abort_reason(state: dict[str, Any]) -> str:
    """Why the approval step ended without approval."""
    error = state.get("error") or {}
    name = error.get("Error", "")
    if name in ("States.Timeout", "ApprovalTimedOut"):
        return f"no approval within {duration(state.get('approval_timeout_seconds', 0))}"
    if name == "ApprovalRejected":
        return f"approval rejected: {error_message(error).split(': ', 1)[-1]}"
    return error_message(error)


def run_phase(
    phases: dict[str, PhaseFunction],
    ctx: Any,
    phase: str,
    state: Any,
    *,
    execution: str | None,
    what: str,
) -> dict[str, Any]:
    """One phase, as a Step Functions task runs it.  The execution's id goes into the state
    (``validate`` builds the state from the request, so it gets it in the request)."""
    if phase not in phases:
        raise ConfigError(f"unknown {what} phase {phase!r}; choose from {', '.join(phases)}")
    if not isinstance(state, dict):
        raise ConfigError(f"the {what} state must be a JSON object")
    if phase == "validate":
        return phases[phase](ctx, {**state, "execution": execution} if execution else state)
    if execution:
        state.setdefault("execution", execution)
    return phases[phase](ctx, state)


def with_retries(
    phases: dict[str, PhaseFunction],
    retries: dict[str, Retry],
    phase: str,
    ctx: Any,
    state: dict[str, Any],
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Run a phase in this process with the retries its state machine task has (``--local``)."""
    policy = retries[phase]
    interval = float(policy.interval_seconds)
    for attempt in range(policy.attempts + 1):
        try:
            return phases[phase](ctx, state)
        except PgRunbookError as exc:
            if type(exc).__name__ not in policy.errors or attempt == policy.attempts:
                raise
            sleep(interval)
            interval *= policy.backoff
    raise AssertionError("unreachable")


def local_approval(
    settings: Any, summary: Callable[[dict[str, Any]], list[str]], *, yes: bool
) -> Callable[[dict[str, Any]], tuple[bool, str]]:
    """The approval step of a ``--local`` run: ``--yes``, or a confirmation at the terminal.
    Returns ``(approved, who approved or why not)``."""

    def approve(state: dict[str, Any]) -> tuple[bool, str]:
        if yes or confirm_at_terminal(state["database"], "\n".join(summary(state))):
            return True, settings.creator
        return False, f"not approved at the terminal by {settings.creator}"

    return approve


def approved_locally(
    ctx: Any, state: dict[str, Any], approve: Callable[[dict[str, Any]], tuple[bool, str]]
) -> bool:
    """Ask ``approve`` (a ``--local`` run's approval step) and record the answer in the state
    as the state machine's approval task would: ``approval`` when approved, the
    ``ApprovalRejected`` error otherwise."""
    approved, answer = approve(state)
    if approved:
        state["approval"] = {"approved": True, "by": answer, "at": ctx.now().isoformat()}
    else:
        state["error"] = {"Error": "ApprovalRejected", "Cause": answer}
    return approved


def failed_in(state: dict[str, Any], phase: str, exc: Exception) -> dict[str, Any]:
    """The state a phase's catch hands to ``fail``: the error and the phase it came from."""
    state["error"] = {"Error": type(exc).__name__, "Cause": str(exc)}
    state["failed_phase"] = phase
    return state


def request_approval(
    ctx: Any,
    state: dict[str, Any],
    *,
    workflow: str,
    title: str,
    summary: list[str],
    without_answer: str,
) -> dict[str, Any]:
    """Send the approval request: ``summary`` lines, then how to answer and by when."""
    now = ctx.now()
    timeout_at = now + timedelta(seconds=state["approval_timeout_seconds"])
    who = state.get("execution") or state.get("recovery_id") or state.get("migration_id")
    message = "\n".join(
        [
            *summary,
            "",
            f"To approve:  pgrunbook {workflow} approve {who}",
            f'To reject:   pgrunbook {workflow} reject {who} --reason "..."',
            f"Without an answer by {timeout_at.isoformat(timespec='seconds')} {without_answer}",
        ]
    )
    ctx.notifier.notice(
        f"APPROVAL NEEDED - {title} - {state['database']} - {now.isoformat()[:19]}Z",
        message,
        job=workflow,
        database=state["database"],
        severity="approval",
    )
    state["approval_requested_at"] = now.isoformat()
    return state


def now_utc() -> datetime:
    return datetime.now(UTC)


class ExecutionError(PgRunbookError):
    """Talking to Step Functions failed."""


def _name(described: dict[str, Any]) -> str:
    return described.get("name") or described["executionArn"].rsplit(":", 1)[-1]


def _one_line(text: Any) -> str:
    return redact(" ".join(str(text).split()))


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
            if self.current_state(self.history(execution)) not in (None, self.validate_state):
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


# -- answering at a terminal ------------------------------------------------------------------


def confirm_at_terminal(database: str, summary: str) -> bool:
    """Show what will happen; approved only if the person types the database's name."""
    sys.stderr.write(summary + "\n\n")
    sys.stderr.write(f"Type the database name ({database}) to approve; anything else aborts: ")
    sys.stderr.flush()
    return sys.stdin.readline().strip() == database


def require_terminal_or_yes(yes: bool, what: str) -> None:
    """Checked before anything happens: without a terminal nobody can type the answer."""
    if not yes and not sys.stdin.isatty():
        raise ConfigError(f"{what} asks for confirmation at a terminal: pass --yes to approve without asking")


def answer(
    executions: Executions,
    command: str,
    execution: str,
    *,
    by: str,
    yes: bool = False,
    reason: str | None = None,
    summary: Callable[[dict[str, Any]], list[str]],
) -> dict[str, Any]:
    """``pgrunbook <workflow> approve|reject EXECUTION``.  Approving at a terminal shows
    ``summary(state)`` of the state the execution waits with and asks for the database name."""
    if command == "reject":
        if not reason or not reason.strip():
            raise ConfigError("--reason must say why")
        return executions.reject(execution, by=by, reason=reason.strip())
    require_terminal_or_yes(yes, f"pgrunbook {executions.workflow} approve")

    def confirm(state: dict[str, Any]) -> None:
        if not yes and not confirm_at_terminal(str(state.get("database")), "\n".join(summary(state))):
            raise ConfigError("not approved: the answer did not match the database name; nothing was sent")

    return executions.approve(execution, by=by, now=now_utc(), confirm=confirm)
