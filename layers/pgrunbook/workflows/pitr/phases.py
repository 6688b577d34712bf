"""The recovery workflow: the runbook's SEV-1 procedure as phases over one JSON state.

Each phase is a function ``(OperationContext, state) -> state``.  The Step Functions state machine
(``infra/workflows.py``) calls them one Lambda invocation at a time, passing the state along;
``pgrunbook pitr start --local`` calls them one after the other in-process.  The order::

    validate -> prepare -> safety_point -> request_approval -> start -> poll (until done)
             -> verify -> cutover -> finish

* ``validate`` checks the request and changes nothing: the target time has a time zone, is
  not in the future, lies inside the provider's recovery window, and no other recovery holds
  maintenance mode.  A request that fails here never reaches the other phases.
* ``prepare`` switches maintenance mode on (:mod:`pgrunbook.workflows.pitr.maintenance`) and counts
  the sessions still connected (the runbook's "verify no active connections").
* ``safety_point`` makes the current state of the database restorable (a provider backup).
* ``request_approval`` sends what will happen and how to answer; a person answers with
  ``pgrunbook pitr approve|reject EXECUTION``; no answer before the timeout aborts.
* ``start`` asks the provider to recover; ``poll`` follows it until done, failed or past
  the deadline (the RTO target by default).
* ``verify`` checks the recovered database (:mod:`pgrunbook.checks.recovered`): nothing is put
  into service that fails.
* ``cutover`` points the application at the recovered database (a provider that recovers in
  place has nothing to do); ``finish`` switches maintenance mode off and sends the runbook's
  "RESOLVED - Database Recovery Completed" notice with the measured downtime and data loss.

Two phases end a recovery that did not complete.  ``abort`` (approval rejected or timed out):
nothing was changed, maintenance mode goes back to what it was.  ``fail`` (any phase after
validation failed): the "CRITICAL" notice names the phase, and maintenance mode stays on,
because a half-recovered database must not take writes until someone has looked at it.

:data:`RETRIES` says which errors each phase may retry: only those that prove the request
did not happen (throttling) or that hit a read or an idempotent write.  The state machine's
``Retry`` clauses and the local runner both come from it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pgrunbook.checks.recovered import verify_recovery
from pgrunbook.checks.sql import check_dirs, load_checks
from pgrunbook.domain import metrics
from pgrunbook.domain.errors import (
    ConfigError,
    ConnectionLost,
    DatabaseUnreachable,
    InvalidTarget,
    PgRunbookError,
    ProviderThrottled,
    ProviderUnavailable,
    RecoveryFailed,
    RecoveryTimedOut,
    TransientNotifyError,
    TransientStorageError,
    VerificationFailed,
)
from pgrunbook.domain.ids import new_report_id
from pgrunbook.domain.notices import Notice, resolved_message, resolved_subject
from pgrunbook.domain.profiles import get_profile
from pgrunbook.domain.results import Report
from pgrunbook.operations.context import OperationContext, store_report
from pgrunbook.workflows import engine as workflows
from pgrunbook.workflows.engine import Retry, abort_reason, duration, error_message
from pgrunbook.workflows.pitr.maintenance import MaintenanceMode, active_connections
from pgrunbook.workflows.pitr.providers import PROVIDERS, Provider, get_provider

REQUEST_KEYS = {
    "target_time": "the time to recover to, ISO 8601 with a time zone (2025-09-07T14:30:00Z)",
    "provider": "logical | supabase | rds (default PGRUNBOOK_PITR_PROVIDER)",
    "requested_by": "who asked (shown in the approval request and the report)",
    "reason": "why (the incident)",
    "approval_timeout_seconds": "how long to wait for approval",
    "deadline_seconds": "how long the recovery itself may take",
    "poll_seconds": "seconds between progress checks",
}

# Phase titles as people read them in notifications.
PHASE_TITLES = {
    "validate": "validation",
    "prepare": "preparation (maintenance mode on, connections counted)",
    "safety_point": "safety point",
    "request_approval": "approval",
    "start": "recovery start",
    "poll": "recovery progress",
    "verify": "verification",
    "cutover": "cutover",
    "finish": "service restoration (maintenance mode off)",
}


# Throttling proves the request was refused; transient storage errors hit SSM or S3 writes
# that are idempotent (the maintenance parameter, reports); provider reads are safe to repeat.
# Lambda's own throttling is retried everywhere (Retry.service_errors).
_REPORTING = (ProviderThrottled, TransientStorageError, TransientNotifyError)
_DATABASE = (DatabaseUnreachable, ConnectionLost)
RETRIES: dict[str, Retry] = {
    "validate": Retry((ProviderThrottled, ProviderUnavailable)),
    "prepare": Retry((ProviderThrottled, TransientStorageError)),
    "safety_point": Retry((ProviderThrottled,)),
    "request_approval": Retry((ProviderThrottled, TransientNotifyError)),
    "start": Retry(
        (ProviderThrottled,), attempts=5, interval_seconds=10
    ),  # never on anything that may have started it
    "poll": Retry((ProviderThrottled, ProviderUnavailable, *_DATABASE), attempts=6, interval_seconds=10),
    "verify": Retry((*_DATABASE, ProviderThrottled), attempts=3, interval_seconds=15),
    "cutover": Retry((ProviderThrottled,)),
    "finish": Retry(_REPORTING),
    "abort": Retry(_REPORTING),
    "fail": Retry(_REPORTING),
}


# -- helpers -----------------------------------------------------------------------------


def parse_target_time(text: Any) -> datetime:
    """An ISO 8601 time with a time zone (``Z``, ``+02:00`` or the runbook's `` UTC``), in UTC."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidTarget("the target time is missing: pass --target-time 2025-09-07T14:30:00Z")
    value = text.strip()
    if value.upper().endswith(" UTC"):
        value = value[:-4] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidTarget(
            f"target time {text!r} is not an ISO 8601 time (e.g. 2025-09-07T14:30:00Z)"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidTarget(
            f"target time {text!r} has no time zone: add Z or an offset (2025-09-07T14:30:00+02:00)"
        )
    return parsed.astimezone(UTC)


def check_target(text: Any, now: datetime) -> datetime:
    """The target time, in UTC: with a time zone, and not in the future."""
    target = parse_target_time(text)
    if target > now:
        raise InvalidTarget(
            f"target time {target.isoformat()} is in the future (now {now.isoformat(timespec='seconds')})"
        )
    return target


def _time(state: dict[str, Any], key: str) -> datetime:
    return datetime.fromisoformat(state[key])


def _bounded(request: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = request.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{key} must be a whole number of seconds between {low} and {high}")
    return value


def provider_for(ctx: OperationContext, state: dict[str, Any]) -> Provider:
    return get_provider(state["provider"], ctx.settings, progress=ctx.progress, clock=ctx.clock)


def maintenance_for(ctx: OperationContext) -> MaintenanceMode | None:
    name = ctx.settings.maintenance_parameter_name
    return MaintenanceMode(name, ctx.settings.region) if name else None


# -- the phases ------------------------------------------------------------------------------


def validate(ctx: OperationContext, request: dict[str, Any]) -> dict[str, Any]:
    """Check the request; change nothing.  Returns the workflow's state."""
    if not isinstance(request, dict):
        raise ConfigError("a recovery request must be a JSON object with target_time")
    unknown = sorted(set(request) - set(REQUEST_KEYS) - {"execution"})
    if unknown:
        raise ConfigError(f"a recovery request does not take {', '.join(unknown)}")
    settings = ctx.settings
    now = ctx.now()
    target = check_target(request.get("target_time"), now)
    name = request.get("provider") or settings.pitr_provider
    if name not in PROVIDERS:
        raise ConfigError(f"unknown recovery provider {name!r}; choose from {', '.join(PROVIDERS)}")
    approval = _bounded(request, "approval_timeout_seconds", settings.pitr_approval_timeout, 1, 7 * 24 * 3600)
    deadline = _bounded(request, "deadline_seconds", settings.pitr_deadline, 60, 7 * 24 * 3600)
    poll = _bounded(request, "poll_seconds", settings.pitr_poll_seconds, 1, 3600)
    state: dict[str, Any] = {
        "recovery_id": new_report_id(now),
        "database": settings.database_label,
        "provider": name,
        "target_time": target.isoformat(),
        "requested_by": str(request.get("requested_by") or settings.creator)[:200],
        "reason": str(request.get("reason") or "")[:500],
        "started_at": now.isoformat(),
        "approval_timeout_seconds": approval,
        "deadline_seconds": deadline,
        "poll_seconds": poll,
        "execution": request.get("execution"),
        "warnings": [],
    }
    provider = provider_for(ctx, state)
    window = provider.window()
    if not window.earliest <= target <= window.latest:
        raise InvalidTarget(
            f"target time {target.isoformat()} is outside the {name} recovery window "
            f"{window.earliest.isoformat(timespec='seconds')} .. {window.latest.isoformat(timespec='seconds')}"
        )
    state["window"] = window.to_dict()
    state["plan"] = provider.plan(state)
    maintenance = maintenance_for(ctx)
    if maintenance is not None:
        current = maintenance.read()
        if current and current.get("enabled") and current.get("recovery_id"):
            raise ConfigError(
                f"recovery {current['recovery_id']} holds maintenance mode ({maintenance.parameter}) since "
                f"{current.get('since')}: finish or abort it first (pgrunbook pitr status)"
            )
    return state


def prepare(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """Maintenance mode on, then count who is still connected."""
    now = ctx.now()
    maintenance = maintenance_for(ctx)
    if maintenance is None:
        state["maintenance"] = {"parameter": None, "enabled_at": now.isoformat()}
        state["warnings"].append(
            "maintenance mode is switched off by configuration: make sure the application is stopped"
        )
    else:
        previous = maintenance.enable(
            reason=f"point-in-time recovery {state['recovery_id']} to {state['target_time']}",
            recovery_id=state["recovery_id"],
            now=now,
        )
        if previous and previous.get("recovery_id") == state["recovery_id"]:  # a repeated phase
            previous = (state.get("maintenance") or {}).get("previous")
        state["maintenance"] = {
            "parameter": maintenance.parameter,
            "enabled_at": (state.get("maintenance") or {}).get("enabled_at") or now.isoformat(),
            "previous": previous,
        }
    try:
        sessions = active_connections(ctx.settings.conninfo())
        state["connections"] = {
            "by_state": sessions,
            "total": sum(sessions.values()),
            "counted_at": now.isoformat(),
        }
        if sessions.get("active"):
            state["warnings"].append(
                f"{sessions['active']} sessions were still active after maintenance mode went on"
            )
    except PgRunbookError as exc:  # the database may be what is broken: count later by hand
        state["connections"] = {"error": str(exc), "counted_at": now.isoformat()}
        state["warnings"].append(f"could not count connections: {exc}")
    return state


def safety_point(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    ctx.progress.step("taking the safety point")
    state["safety_point"] = {
        **provider_for(ctx, state).safety_point(state),
        "taken_at": ctx.now().isoformat(),
    }
    if state["safety_point"].get("fallback_reason"):  # the approver and the final notice are told
        state.setdefault("warnings", []).append(f"the safety point is {state['safety_point']['summary']}")
    return state


def describe_safety_point(point: dict[str, Any] | None) -> str:
    """The safety point in one line: the provider's own summary (which says what it is and,
    when it is a fallback, why), then the details."""
    if not point:
        return "none"
    details = json.dumps({k: v for k, v in point.items() if k != "summary"}, default=str, sort_keys=True)
    return f"{point['summary']} {details}" if point.get("summary") else details


def approval_summary(state: dict[str, Any]) -> list[str]:
    """What the person approving is told: what will happen, what is lost, what is kept."""
    plan = state.get("plan") or {}
    connections = state.get("connections") or {}
    lines = [
        f"Summary: point-in-time recovery of {state['database']} to {state['target_time']} is waiting for approval",
        f"Requested by: {state.get('requested_by')}"
        + (f" ({state['reason']})" if state.get("reason") else ""),
        f"Provider: {state['provider']}: {plan.get('description', '')}",
        f"Recovery point: {plan.get('recovery_point', state['target_time'])}",
        "Data loss: every change after the recovery point is not in the recovered database"
        + (f"; {plan['data_loss_note']}" if plan.get("data_loss_note") else ""),
        f"Maintenance mode: ON since {state['maintenance'].get('enabled_at')} "
        f"({state['maintenance'].get('parameter') or 'not configured'})",
        f"Connections: {connections.get('by_state', connections.get('error', 'not counted'))}",
        f"Safety point: {describe_safety_point(state.get('safety_point'))}",
    ]
    return lines + [f"Warning: {w}" for w in state.get("warnings", [])]


def request_approval(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """Tell people what will happen and how to answer (the answer comes from the CLI)."""
    return workflows.request_approval(
        ctx,
        state,
        workflow="pitr",
        title="Point-in-Time Recovery",
        summary=approval_summary(state),
        without_answer="the recovery is aborted and maintenance mode switched back off; nothing will "
        "have changed.",
    )


def start(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    now = ctx.now()
    ctx.progress.step(f"starting the {state['provider']} recovery to {state['target_time']}")
    recovery = provider_for(ctx, state).start(state)
    state["recovery"] = {**recovery, "requested_at": now.isoformat()}
    state["deadline"] = (now + timedelta(seconds=state["deadline_seconds"])).isoformat()
    state["recovery_done"] = False
    return state


def poll(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    status = provider_for(ctx, state).status(state)  # may record what it saw in state["recovery"]
    now = ctx.now()
    polls = int((state.get("recovery_status") or {}).get("polls", 0)) + 1
    state["recovery_status"] = {
        "status": status.status,
        "detail": status.detail,
        "polls": polls,
        "checked_at": now.isoformat(),
    }
    if status.failed:
        raise RecoveryFailed(
            f"the {state['provider']} recovery failed: {status.status} {status.detail}".strip()
        )
    state["recovery_done"] = status.done
    if not status.done and now > _time(state, "deadline"):
        raise RecoveryTimedOut(
            f"the recovery did not finish by its deadline {state['deadline']} "
            f"({duration(state['deadline_seconds'])}); last status {status.status}"
        )
    return state


def verify(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    provider = provider_for(ctx, state)
    info = provider.endpoint(state)
    point = provider.recovery_point(state)
    settings = ctx.settings
    ctx.progress.step(f"verifying the recovered database {info.display()}")
    result = verify_recovery(
        info,
        recovery_point=point,
        critical_tables=settings.critical_table_list,
        created_columns=settings.created_at_column_list,
        checks=load_checks(check_dirs(settings.checks_dir)),
        exclude_schemas=get_profile(settings.profile).exclude_schemas,
    )
    counts = result["row_counts"]
    critical = [t if "." in t else f"public.{t}" for t in settings.critical_table_list]
    state["recovery_point"] = point.isoformat()
    state["verification"] = {
        "database": info.display(),
        "tables": len(counts),
        "rows": sum(counts.values()),
        "critical_tables": {t: counts.get(t) for t in critical},
        "rows_after_recovery_point": result["rows_after_recovery_point"],
        "orphaned_references": result["orphaned_references"],
        "checks": result["checks"][:50],
        "problems": result["problems"][:50],
        "verified_at": ctx.now().isoformat(),
    }
    problems = result["problems"]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise VerificationFailed(
            f"the recovered database {info.display()} failed verification: {'; '.join(problems[:3])}{more}"
        )
    return state


def cutover(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    state["cutover"] = {**provider_for(ctx, state).cutover(state), "at": ctx.now().isoformat()}
    return state


def _restore_maintenance(ctx: OperationContext, state: dict[str, Any]) -> str:
    maintenance = maintenance_for(ctx)
    held = state.get("maintenance") or {}
    if maintenance is None or not held.get("parameter"):
        return "not configured"
    maintenance.disable(recovery_id=state["recovery_id"], now=ctx.now(), previous=held.get("previous"))
    previous = held.get("previous")
    return "back to the operator's setting (on)" if previous and previous.get("enabled") else "off"


def _report(ctx: OperationContext, state: dict[str, Any]) -> Report:
    report = Report.start("pitr", state["database"], _time(state, "started_at"))
    report.report_id = state["recovery_id"]
    keep = (
        "recovery_id",
        "provider",
        "target_time",
        "requested_by",
        "reason",
        "execution",
        "window",
        "plan",
        "maintenance",
        "connections",
        "safety_point",
        "approval",
        "recovery",
        "recovery_status",
        "recovery_point",
        "verification",
        "cutover",
        "warnings",
    )
    report.detail["recovery"] = {k: state[k] for k in keep if k in state}
    return report


def finish(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """Maintenance mode off; the RESOLVED notice with the measured downtime and data loss."""
    maintenance_now = _restore_maintenance(ctx, state)
    ended = ctx.now()
    enabled_at = _time(state["maintenance"], "enabled_at")
    target = _time(state, "target_time")
    point = _time(state, "recovery_point")
    downtime_s = (ended - enabled_at).total_seconds()
    lost_s = max(0.0, (enabled_at - point).total_seconds())  # not in the recovered database
    before_target_s = max(0.0, (target - point).total_seconds())  # of which before the target
    verification = state.get("verification") or {}
    data_loss = (
        f"{duration(lost_s)}: changes from {point.isoformat()} (the recovery point) until writes stopped at "
        f"{enabled_at.isoformat()} are not in the recovered database"
    )
    if before_target_s > 0:
        data_loss += (
            f"; {duration(before_target_s)} of them before the target {target.isoformat()}, because the "
            f"newest restorable point at or before the target was {point.isoformat()}"
        )
    else:
        data_loss += f"; nothing before the target {target.isoformat()} was lost"
    lessons = list(state.get("warnings", []))
    if before_target_s > 3600:
        lessons.append("backups are points in time: hourly backups (or provider PITR) shrink this gap")
    fields = {
        "summary": f"{state['database']} recovered to {target.isoformat()} by the {state['provider']} provider "
        f"(recovery {state['recovery_id']}); {state.get('cutover', {}).get('note') or 'now in service'}",
        "downtime": f"{duration(downtime_s)} (maintenance mode from {enabled_at.isoformat()} to {ended.isoformat()})",
        "data_loss": data_loss,
        "validation": f"{verification.get('tables', 0)} tables, {verification.get('rows', 0)} rows; critical tables "
        f"{verification.get('critical_tables') or 'not configured'}; no row newer than the recovery point; "
        f"no orphaned references; {len(verification.get('checks', []))} data-quality checks passed",
        "lessons_learned": "; ".join(lessons)
        or "none recorded automatically: complete the post-mortem within 24 hours",
    }
    report = _report(ctx, state)
    report.add("recovery", "ok", fields["summary"])
    report.figures.update(
        downtime_seconds=round(downtime_s, 3),
        data_loss_seconds=round(lost_s, 3),
        lost_before_target_seconds=round(before_target_s, 3),
        recovery_point=point.isoformat(),
        target_time=target.isoformat(),
        provider=state["provider"],
    )
    notice = {
        "subject": resolved_subject(state["database"], ended.isoformat()),
        "message": resolved_message(fields),
    }
    report.detail.update(resolved=fields, resolved_notice=notice)
    report.finished_at = ended.isoformat()
    report.measure(metrics.PITR_DOWNTIME, downtime_s)
    report.measure(metrics.PITR_DATA_LOSS, lost_s)
    if ctx.store_reports:
        store_report(ctx, report)
    ctx.send(
        Notice(
            notice["subject"],
            notice["message"],
            {"job": "pitr", "database": state["database"], "severity": "resolved"},
        )
    )
    state.update(
        metrics=report.metrics,  # emitted by the Lambda handler (pgrunbook.entrypoints.aws_lambda.handle_phase)
        outcome="recovered",
        maintenance_after=maintenance_now,
        resolved=fields,
        figures=report.figures,
        report=report.location,
        finished_at=ended.isoformat(),
    )
    return state


def abort(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """Approval refused or never given: put maintenance mode back; nothing else changed."""
    reason = abort_reason(state)
    maintenance_now = _restore_maintenance(ctx, state)
    report = _report(ctx, state)
    report.add(
        "recovery",
        "warning",
        f"point-in-time recovery of {state['database']} to {state['target_time']} was not started ({reason}); "
        f"nothing was changed and maintenance mode is {maintenance_now}",
        safety_point=state.get("safety_point"),
    )
    report.finished_at = ctx.now().isoformat()
    if ctx.store_reports:
        store_report(ctx, report)
    ctx.publish(report)
    state.update(
        outcome="aborted", abort_reason=reason, maintenance_after=maintenance_now, report=report.location
    )
    return state


def fail(ctx: OperationContext, state: dict[str, Any]) -> dict[str, Any]:
    """A phase after validation failed: say which, leave maintenance mode on, notify CRITICAL."""
    phase = state.get("failed_phase") or "unknown"
    message = error_message(state.get("error"))
    title = PHASE_TITLES.get(phase, phase)
    held = state.get("maintenance") or {}
    report = _report(ctx, state)
    parameter = held.get("parameter")
    report.add(
        f"pitr:{phase}",
        "critical",
        f"point-in-time recovery {state['recovery_id']} of {state['database']} failed in the {title} phase: {message}",
        phase=phase,
        error=state.get("error", {}).get("Error"),
    )
    report.add(
        "maintenance",
        "critical",
        f"maintenance mode stays ON ({parameter}): the application refuses writes until an engineer decides; "
        f"switch it off with pgrunbook pitr maintenance off"
        if parameter
        else "maintenance mode is not configured: keep the application stopped until an engineer decides",
    )
    if state.get("safety_point"):
        report.add(
            "safety_point",
            "info",
            f"the database as it was before the recovery: {describe_safety_point(state['safety_point'])}",
        )
    if state.get("recovery"):
        report.add(
            "recovered_copy",
            "info",
            f"what the provider recovered so far: {json.dumps(state['recovery'], default=str, sort_keys=True)}",
        )
    report.finished_at = ctx.now().isoformat()
    if ctx.store_reports:
        store_report(ctx, report)
    ctx.publish(report)
    state.update(
        outcome="failed",
        failure_message=f"{title} failed: {message}"[:1000],
        report=report.location,
        maintenance_after="on" if parameter else "not configured",
    )
    return state


PHASES: dict[str, Callable[[OperationContext, dict[str, Any]], dict[str, Any]]] = {
    "validate": validate,
    "prepare": prepare,
    "safety_point": safety_point,
    "request_approval": request_approval,
    "start": start,
    "poll": poll,
    "verify": verify,
    "cutover": cutover,
    "finish": finish,
    "abort": abort,
    "fail": fail,
}


def run_phase(
    ctx: OperationContext, phase: str, state: dict[str, Any], *, execution: str | None = None
) -> dict[str, Any]:
    """One phase, as a Step Functions task runs it."""
    return workflows.run_phase(PHASES, ctx, phase, state, execution=execution, what="recovery")


# -- the same phases on a laptop -----------------------------------------------------------


def run_local(
    ctx: OperationContext,
    request: dict[str, Any],
    *,
    approve: Callable[[dict[str, Any]], tuple[bool, str]],
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Every phase in this process: what ``pgrunbook pitr start --local`` runs.

    ``approve(state)`` is asked after the safety point and returns ``(approved, who or why
    not)``.  A validation error is raised (nothing changed); any later failure runs the
    ``fail`` phase and returns its state, as the state machine does.
    """

    def step(phase: str, state: dict[str, Any]) -> dict[str, Any]:
        return workflows.with_retries(PHASES, RETRIES, phase, ctx, state, sleep)

    state = step("validate", request)
    phase = "prepare"
    try:
        for phase in ("prepare", "safety_point"):
            state = step(phase, state)
        phase = "request_approval"
        if not workflows.approved_locally(ctx, state, approve):
            return abort(ctx, state)
        phase = "start"
        state = step("start", state)
        while True:
            phase = "poll"
            state = step("poll", state)
            if state["recovery_done"]:
                break
            sleep(state["poll_seconds"])
        for phase in ("verify", "cutover", "finish"):
            state = step(phase, state)
        return state
    except Exception as exc:  # every failure after validation must be reported
        return fail(ctx, workflows.failed_in(state, phase, exc))
