"""The one result model, and the notifications made from it in the runbook's templates."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pgrunbook.domain.notices import critical_message, resolved_message, resolved_subject, subject
from pgrunbook.domain.results import JsonPayload, Report
from pgrunbook.operations.registry import wording

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)


def report_with(*severities: str, job: str = "verify") -> Report:
    report = Report.start(job, "app", NOW)
    for i, severity in enumerate(severities):
        report.add(f"check{i}", severity, f"finding {i} is {severity}", key=f"s3://b/k{i}")
    report.finished_at = NOW.isoformat()
    return report


@pytest.mark.parametrize(
    ("severities", "status", "exit_code"),
    [
        ((), "ok", 0),
        (("ok", "info"), "ok", 0),
        (("ok", "warning"), "warning", 0),
        (("warning", "critical", "ok"), "critical", 1),
    ],
)
def test_a_report_is_as_bad_as_its_worst_finding(severities, status, exit_code):
    report = report_with(*severities)
    assert report.status == status and report.exit_code == exit_code


def test_a_skipped_report_is_skipped_whatever_its_findings():
    report = report_with("critical")
    report.skipped = "another backup is running"
    assert report.status == "skipped"


def test_reports_round_trip_through_json():
    report = report_with("ok", "critical")
    report.figures = {"age": 3.5}
    report.metrics = {"BackupAgeHours": ("Count", 3.5)}
    report.payload = JsonPayload({"backup_id": "b1"})
    data = json.loads(report.to_json())
    assert data["status"] == "critical" and data["exit_code"] == 1 and data["payload"] == {"backup_id": "b1"}
    again = Report.from_dict(data)
    assert again.to_dict() == report.to_dict()


def test_reports_stored_before_the_operation_key_still_read():
    data = report_with("warning").to_dict()
    data["job"] = data.pop("operation")
    assert Report.from_dict(data).operation == "verify"


def test_a_finding_message_is_one_line():
    report = Report.start("verify", "app", NOW)
    finding = report.add("x", "warning", "two\nlines   and  spaces")
    assert finding.message == "two lines and spaces"
    with pytest.raises(ValueError):
        report.add("x", "fatal", "no such severity")


def test_the_critical_notification_follows_the_runbook_template():
    report = report_with("ok", "critical", "warning")
    report.location = "s3://bucket/pgrunbook/app/reports/verify/x.json"
    assert subject(report, wording("verify").title) == (
        "CRITICAL - Database Backup Verification - app - 2026-11-22T04:00:00Z"
    )
    message = critical_message(report, wording("verify"))
    lines = message.splitlines()
    assert lines[0] == "Summary: finding 1 is critical (and 1 more finding)"
    for prefix in ("Impact: ", "Current Status: ", "ETA for Resolution: ", "Next Update: "):
        assert any(line.startswith(prefix) for line in lines), prefix
    assert "finding 0 is ok" not in message  # ok findings are not news
    assert "[WARNING] check2: finding 2 is warning" in message and "s3://b/k1" in message
    assert report.location in message


def test_a_warning_uses_the_same_template_and_subjects_fit_sns():
    report = report_with("warning", job="backup")
    report.database = "x" * 200
    title = wording("backup").title
    assert subject(report, title).startswith("WARNING - Database Backup Failure - ")
    assert len(subject(report, title)) <= 100


def test_the_recovery_notice_has_the_runbooks_fields():
    fields = {
        "summary": "recovered",
        "downtime": "0.50 h",
        "data_loss": "1.00 h",
        "validation": "integrity 100 %",
        "lessons_learned": "none",
    }
    message = resolved_message(fields)
    assert [line.split(":")[0] for line in message.splitlines()[:5]] == [
        "Summary",
        "Downtime",
        "Data Loss",
        "Validation",
        "Lessons Learned",
    ]
    assert (
        resolved_subject("app", NOW.isoformat())
        == "RESOLVED - Database Recovery Completed - app - 2026-11-22T04:00:00Z"
    )
