"""The operator's side of a recovery: start it, answer its approval request, see where it stands.

``pgrunbook pitr start`` starts an execution of the deployed state machine
(``PGRUNBOOK_PITR_STATE_MACHINE_ARN``) and waits until its validation has passed or failed, so
that a target outside the window is reported at once, with exit status 2.  ``--local`` runs the
same phases in this process instead (:func:`pgrunbook.workflows.pitr.phases.run_local`).
``pgrunbook pitr approve|reject EXECUTION`` answers through :class:`pgrunbook.workflows.engine.Executions`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgrunbook.domain.errors import ConfigError
from pgrunbook.settings.model import Settings
from pgrunbook.workflows.engine import Executions
from pgrunbook.workflows.pitr.maintenance import MaintenanceMode
from pgrunbook.workflows.pitr.phases import REQUEST_KEYS, check_target

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


def executions(settings: Settings) -> Executions:
    if not settings.pitr_state_machine_arn:
        raise ConfigError(
            "no recovery state machine: set PGRUNBOOK_PITR_STATE_MACHINE_ARN (the stack's output "
            "PitrStateMachineArn) or pass --local to run the recovery in this process"
        )
    return Executions(settings.pitr_state_machine_arn, workflow="pitr", titles=STATE_TITLES)


def validate_request(settings: Settings, request: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    """What can be checked before anything starts: the keys, the time's form, not in the future."""
    unknown = sorted(set(request) - set(REQUEST_KEYS))
    if unknown:
        raise ConfigError(f"a recovery request does not take {', '.join(unknown)}")
    check_target(request.get("target_time"), now)
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
        request = status.get("request") or {}
        lines.append(
            f"  target        {request.get('target_time')}  (provider {request.get('provider') or 'default'})"
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
