"""Notifications in the runbook's templates (pure: text only; the SNS adapter sends them).

A report that is not ok is sent with the runbook's critical-issue template::

    SUBJECT: CRITICAL - Database Backup Failure - <database> - 2026-11-22T02:00:00Z
    Summary / Impact / Current Status / ETA for Resolution / Next Update
    [detailed technical information: every finding]

(a warning uses the same template with ``WARNING`` in the subject).  A completed recovery
(a DR drill or a point-in-time recovery) uses the recovery-completion template:
``RESOLVED - Database Recovery Completed`` with Summary, Downtime, Data Loss, Validation and
Lessons Learned.  What each operation is called and what its failure means (title, impact,
next update) comes from its entry in :mod:`pgrunbook.operations.registry`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pgrunbook.domain.results import Report

SUBJECT_LIMIT = 100  # SNS's limit


@dataclass(frozen=True)
class Notice:
    subject: str
    message: str
    attributes: dict[str, str] = field(default_factory=dict)
    # for chat (AWS Chatbot's custom notifications): the summary, each finding, what to do
    summary: str = ""
    findings: tuple[str, ...] = ()
    next_steps: tuple[str, ...] = ()


@dataclass(frozen=True)
class Wording:
    """How notices speak of one operation."""

    title: str  # "Database Backup Failure"
    impact: str = "See the findings below."
    next_update: str = ""  # default: the next scheduled run


def subject(report: Report, title: str, severity: str | None = None) -> str:
    word = (severity or report.status).upper()
    stamp = report.finished_at or report.started_at
    return f"{word} - {title} - {report.database} - {stamp[:19]}Z"[:SUBJECT_LIMIT]


def critical_message(report: Report, wording: Wording) -> str:
    problems = report.problems()
    worst = [f for f in problems if f.severity == "critical"] or problems
    summary = worst[0].message if worst else f"{report.operation} needs attention"
    if report.status == "untested" and report.untested:
        summary = report.untested
    if len(problems) > 1:
        summary += f" (and {len(problems) - 1} more finding{'s' if len(problems) > 2 else ''})"
    next_update = wording.next_update or f"the next scheduled {report.operation} run"
    lines = [
        f"Summary: {summary}",
        f"Impact: {wording.impact}",
        f"Current Status: automated {report.operation} run {report.report_id} on {report.database} finished with "
        f"status {report.status}; report stored at {report.location or 'not stored'}",
        "ETA for Resolution: needs an on-call engineer; follow the runbook section for this check",
        f"Next Update: {next_update}",
        "",
        "Findings:",
    ]
    for finding in problems:
        lines.append(f"- [{finding.severity.upper()}] {finding.check}: {finding.message}")
        if finding.details:
            lines.append("  " + json.dumps(finding.details, default=str, sort_keys=True)[:2000])
    if report.figures:
        lines += ["", "Figures:", json.dumps(report.figures, default=str, sort_keys=True)]
    if report.runner:
        lines += ["", f"Ran on: {report.runner.get('runner')} ({report.runner.get('why')})"]
    return "\n".join(lines)


# A backup the restore target could not host: its own subject, so that nobody mistakes it
# for a broken backup (or learns to ignore restore-test failures).
UNTESTED = Wording(
    "Backup Not Tested",
    "Nothing is known about whether this backup restores: the restore target cannot host what it "
    "needs (see the findings). The backup itself may be fine; until a target that can host it "
    "tests it, it is unproven.",
)


def report_notice(report: Report, wording: Wording) -> Notice | None:
    """The notice for a report that is not ok (None: nothing to send)."""
    if report.status in ("ok", "skipped"):
        return None
    if report.status == "untested":
        wording = Wording(UNTESTED.title, UNTESTED.impact, wording.next_update)
    problems = report.problems()
    text = critical_message(report, wording)
    steps = []
    if report.location:
        steps.append(f"Read the report: {report.location}")
    steps.append(f"Check the whole picture: `pgrunbook status` (database {report.database})")
    if problems:
        steps.append(f"Follow the runbook section for `{problems[0].check}`; it needs an on-call engineer")
    steps.append(f"Next update: {wording.next_update or f'the next scheduled {report.operation} run'}")
    return Notice(
        subject(report, wording.title),
        text,
        {"job": report.operation, "database": report.database, "severity": report.status},
        summary=text.split("\n", 1)[0].removeprefix("Summary: "),
        findings=tuple(f"[{f.severity.upper()}] {f.check}: {f.message}" for f in problems),
        next_steps=tuple(steps),
    )


# AWS Chatbot (Amazon Q Developer in chat applications) renders these; pgrunbook keeps each
# part short enough for Slack and Teams.
CHAT_TITLE_LIMIT = 250
CHAT_DESCRIPTION_LIMIT = 3000
CHAT_STEP_LIMIT = 300


def chat_message(notice: Notice) -> str:
    """``notice`` as an AWS Chatbot custom notification (version 1.0, source custom): the
    subject as the title, the summary and the findings as the description, the next steps;
    each database's job threads its notices together."""
    job, database = notice.attributes.get("job", ""), notice.attributes.get("database", "")
    severity = notice.attributes.get("severity", "")
    lines = [f"*Summary:* {notice.summary or notice.subject}", "", "*Findings:*"]
    lines += [f"• {finding}" for finding in notice.findings] or ["• (none)"]
    description = "\n".join(lines)
    if len(description) > CHAT_DESCRIPTION_LIMIT:
        description = description[: CHAT_DESCRIPTION_LIMIT - 1] + "…"
    event = {
        "version": "1.0",
        "source": "custom",
        "content": {
            "textType": "client-markdown",
            "title": notice.subject[:CHAT_TITLE_LIMIT],
            "description": description,
            "nextSteps": [step[:CHAT_STEP_LIMIT] for step in notice.next_steps],
            "keywords": [k for k in (severity, job, database) if k],
        },
        "metadata": {
            "threadId": f"pgrunbook-{database}-{job}",
            "summary": notice.subject[:CHAT_TITLE_LIMIT],
            "eventType": f"pgrunbook.{job}.{severity}",
            "additionalContext": {"database": database, "job": job, "severity": severity},
        },
    }
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def resolved_subject(database: str, when: str) -> str:
    return f"RESOLVED - Database Recovery Completed - {database} - {when[:19]}Z"[:SUBJECT_LIMIT]


def resolved_message(fields: dict[str, Any]) -> str:
    """The runbook's recovery-completion notice from a drill's or a recovery's figures."""
    return "\n".join(
        [
            f"Summary: {fields['summary']}",
            f"Downtime: {fields['downtime']}",
            f"Data Loss: {fields['data_loss']}",
            f"Validation: {fields['validation']}",
            f"Lessons Learned: {fields['lessons_learned']}",
            "",
            "Full incident report will be available within 24 hours.",
        ]
    )
