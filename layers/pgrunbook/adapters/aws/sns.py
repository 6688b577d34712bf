"""Notifications in the runbook's templates, through one SNS topic.

A report that is not ok is published with the runbook's critical-issue template::

    SUBJECT: CRITICAL - Database Backup Failure - 2026-11-22T02:00:00Z
    Summary / Impact / Current Status / ETA for Resolution / Next Update
    [detailed technical information: every finding]

(a warning uses the same template with ``WARNING`` in the subject).  A completed recovery
(a DR drill or a point-in-time recovery) uses the recovery-completion template:
``RESOLVED - Database Recovery Completed`` with Summary, Downtime, Data Loss, Validation and
Lessons Learned.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pgrunbook.catalog.reports import JobReport
from pgrunbook.domain.errors import PgRunbookError

log = logging.getLogger(__name__)

IMPACT = {
    "backup": "No new restorable backup was made: changes since the last good backup are not protected.",
    "verify": "Backups may not be restorable, or the database has data-quality or security problems.",
    "restore-test": "The tested backup did not restore completely: it cannot be trusted for recovery.",
    "dr-drill": "Recovery from the DR region is slower, older or less complete than the targets allow.",
    "retention": "Backups may be kept too long (cost, compliance) or partial uploads left behind.",
    "health": "Query performance or capacity is degrading.",
    "migrate": "The schema migration did not complete: see which migrations were rolled back and which "
    "backup restores the database as it was before the run.",
    "pitr": "The point-in-time recovery did not complete: the application stays in maintenance mode "
    "(writes refused) until an engineer finishes or reverses the recovery.",
}
NEXT_UPDATE = {
    "migrate": "from the engineer who takes over the migration (pgrunbook migrate status)",
    "pitr": "from the engineer who takes over the recovery (pgrunbook pitr status shows where it stands)",
}


class TransientNotifyError(PgRunbookError):
    """SNS refused or could not be reached."""


def subject(report: JobReport, severity: str | None = None) -> str:
    word = (severity or report.status).upper()
    stamp = report.finished_at or report.started_at
    text = f"{word} - {report.title} - {report.database} - {stamp[:19]}Z"
    return text[:100]  # SNS subject limit


def critical_message(report: JobReport) -> str:
    problems = report.problems()
    worst = [f for f in problems if f.severity == "critical"] or problems
    summary = worst[0].message if worst else f"{report.job} needs attention"
    if len(problems) > 1:
        summary += f" (and {len(problems) - 1} more finding{'s' if len(problems) > 2 else ''})"
    lines = [
        f"Summary: {summary}",
        f"Impact: {IMPACT.get(report.job, 'See the findings below.')}",
        f"Current Status: automated {report.job} run {report.report_id} on {report.database} finished with "
        f"status {report.status}; report stored at {report.location or 'not stored'}",
        "ETA for Resolution: needs an on-call engineer; follow the runbook section for this check",
        f"Next Update: {NEXT_UPDATE.get(report.job, f'the next scheduled {report.job} run')}",
        "",
        "Findings:",
    ]
    for finding in problems:
        lines.append(f"- [{finding.severity.upper()}] {finding.check}: {finding.message}")
        if finding.details:
            lines.append("  " + json.dumps(finding.details, default=str, sort_keys=True)[:2000])
    if report.figures:
        lines += ["", "Figures:", json.dumps(report.figures, default=str, sort_keys=True)]
    return "\n".join(lines)


def resolved_subject(database: str, when: str) -> str:
    return f"RESOLVED - Database Recovery Completed - {database} - {when[:19]}Z"[:100]


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


class Notifier(Protocol):
    def publish(self, report: JobReport) -> str | None: ...

    def notice(self, subject: str, message: str, **attributes: str) -> str | None: ...


class NullNotifier:
    """No topic configured (a laptop run): nothing is sent."""

    def publish(self, report: JobReport) -> str | None:
        return None

    def notice(self, subject: str, message: str, **attributes: str) -> str | None:
        return None


class SnsNotifier:
    def __init__(self, topic_arn: str, region: str | None = None):
        self.topic_arn = topic_arn
        region = region or topic_arn.split(":")[3]
        self.client = boto3.session.Session().client("sns", region_name=region)

    def publish(self, report: JobReport) -> str | None:
        """Publish a report that is not ok; returns the message id."""
        if report.status in ("ok", "skipped"):
            return None
        return self.notice(
            subject(report),
            critical_message(report),
            job=report.job,
            database=report.database,
            severity=report.status,
        )

    def notice(self, subject: str, message: str, **attributes: str) -> str | None:
        """Publish any message (a RESOLVED notice, an approval request); returns its id."""
        try:
            response = self.client.publish(
                TopicArn=self.topic_arn,
                Subject=subject[:100],
                Message=message,
                MessageAttributes={
                    k: {"DataType": "String", "StringValue": v} for k, v in attributes.items() if v
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise TransientNotifyError(f"SNS publish to {self.topic_arn} failed: {exc}") from None
        return response.get("MessageId")
