"""The workflow engine: what pgrunbook's Step Functions workflows share (point-in-time recovery,
schema migration), on the side of the phases.

:class:`Retry` policies, :func:`run_phase` (one phase as a task runs it), :func:`with_retries`
and the local approval helpers (the same phases in this process, ``--local``),
:func:`request_approval` (the notice of the ``Approval`` task) and :func:`abort_reason` /
:func:`error_message` (a Step Functions error as one line).

The operator's side is :mod:`pgrunbook.workflows.operator` (answering at a terminal) and
:class:`pgrunbook.adapters.aws.stepfunctions.Executions` (the Step Functions API).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pgrunbook.adapters.aws.stepfunctions import error_message
from pgrunbook.domain.errors import ConfigError, PgRunbookError, error_names
from pgrunbook.domain.notices import Notice
from pgrunbook.workflows.operator import confirm_at_terminal

PhaseFunction = Callable[[Any, dict[str, Any]], dict[str, Any]]
Phases = Mapping[str, PhaseFunction]


# Lambda's own throttling: the invocation never started, so every phase may retry it.
SERVICE_THROTTLING = ("Lambda.TooManyRequestsException",)


@dataclass(frozen=True)
class Retry:
    """A phase's Retry clause: the errors it may retry (classes: each matches its subclasses,
    in this process and, through :func:`~pgrunbook.domain.errors.error_names`, in the state
    machine), and how often."""

    errors: tuple[type[PgRunbookError], ...] = ()
    attempts: int = 3
    interval_seconds: int = 5
    backoff: float = 2.0
    service_errors: tuple[str, ...] = SERVICE_THROTTLING

    def names(self) -> list[str]:
        """The ``ErrorEquals`` of the state machine's Retry clause."""
        return [*self.service_errors, *error_names(self.errors)]

    def matches(self, error: BaseException) -> bool:
        return isinstance(error, self.errors)


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h ({minutes:.0f} min)"


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
    phases: Phases,
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
    phases: Phases,
    retries: Mapping[str, Retry],
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
            if not policy.matches(exc) or attempt == policy.attempts:
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
    ctx.send(
        Notice(
            f"APPROVAL NEEDED - {title} - {state['database']} - {now.isoformat()[:19]}Z",
            message,
            {"job": workflow, "database": state["database"], "severity": "approval"},
        )
    )
    state["approval_requested_at"] = now.isoformat()
    return state
