"""The pure parts of the operation framework: thresholds, reports, notifications, events, secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pgrunbook.adapters.aws.secrets import conninfo_from_secret
from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.notices import critical_message, resolved_message, resolved_subject, subject
from pgrunbook.domain.results import JsonPayload, Report
from pgrunbook.domain.thresholds import Threshold, Thresholds
from pgrunbook.entrypoints.aws_lambda import BadEvent, job_options
from pgrunbook.operations import registry
from pgrunbook.operations.registry import wording

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)


# -- thresholds -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "ok"), (0, "ok"), (26, "ok"), (26.0001, "warning"), (48, "warning"), (48.0001, "critical")],
)
def test_a_threshold_is_crossed_only_above_it(value, expected):
    assert Threshold(26, 48).classify(value) == expected


def test_default_thresholds_are_the_runbooks():
    t = Thresholds()
    assert (t.backup_age_hours.warning, t.backup_age_hours.critical) == (26, 48)
    assert (t.backup_failure_rate_pct.warning, t.backup_failure_rate_pct.critical) == (5, 15)
    assert (t.backup_duration_minutes.warning, t.backup_duration_minutes.critical) == (30, 120)
    assert (t.storage_growth_pct.warning, t.storage_growth_pct.critical) == (50, 100)
    assert (t.rto_hours.warning, t.rto_hours.critical, t.rto_target_hours) == (6, 12, 4)
    assert (t.rpo_hours.warning, t.rpo_hours.critical, t.rpo_target_hours) == (2, 4, 1)


def test_thresholds_can_be_configured():
    t = Thresholds.from_json(json.dumps({"backup_age_hours": [2, 4], "rpo_target_hours": 0.5}))
    assert (t.backup_age_hours.warning, t.backup_age_hours.critical, t.rpo_target_hours) == (2, 4, 0.5)
    assert t.rto_hours.critical == 12  # untouched ones keep their defaults


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not valid JSON"),
        ('{"backup_age": [1, 2]}', "unknown threshold"),
        ('{"backup_age_hours": [48, 26]}', "above critical"),
        ('{"backup_age_hours": [1]}', r"must be \[warning, critical\]"),
        ('{"backup_age_hours": [true, 2]}', r"must be \[warning, critical\]"),
        ('{"rto_target_hours": "four"}', "must be a number"),
    ],
)
def test_bad_threshold_configuration_is_a_config_error(text, message):
    with pytest.raises(ConfigError, match=message):
        Thresholds.from_json(text)


# -- reports and notifications ------------------------------------------------------------


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


# -- events -------------------------------------------------------------------------------


def test_a_scheduled_event_carries_its_options_in_detail():
    event = {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {"tier": "weekly"}}
    assert job_options(registry.get("backup"), event) == {"tier": "weekly"}
    assert job_options(registry.get("backup"), None) == {"tier": None}


def test_the_restore_test_chooses_the_same_backup_from_the_cli_and_from_lambda():
    # One default, in the registry: the newest backup, unless the event or the flag names a
    # tier; the weekly schedule names it.
    restore_test = registry.get("restore-test")
    assert job_options(restore_test, {})["prefer_tier"] is None
    assert registry.parse_options(restore_test, {}, source="cli")["prefer_tier"] is None
    [weekly] = restore_test.schedules
    assert weekly.input == {"prefer_tier": "weekly"}


@pytest.mark.parametrize(
    ("job", "event", "message"),
    [
        ("verify", {"recent_days": True}, "--recent-days must be an integer"),
        ("verify", {"recent_days": 0}, "--recent-days must be between 1 and 3650"),
        ("retention", {"dry_run": "yes"}, "--dry-run must be true or false"),
        ("health", {"x": 1}, "takes nothing"),
        ("backup", ["tier"], "must be a JSON object"),
        ("restore-test", {"keep": True}, "does not take keep"),
    ],
)
def test_bad_events_are_refused(job, event, message):
    with pytest.raises(BadEvent, match=message):
        job_options(registry.get(job), event)


def test_an_unknown_operation_is_refused():
    with pytest.raises(ConfigError, match="unknown operation 'frobnicate'"):
        registry.get("frobnicate")


# -- secrets ------------------------------------------------------------------------------

SECRET = {
    "engine": "postgres",
    "host": "db.example.com",
    "port": 5432,
    "username": "app",
    "password": "pw-0s3cret",
}


def test_an_rds_secret_becomes_a_connection_that_requires_tls():
    info = conninfo_from_secret({**SECRET, "dbname": "orders"})
    assert (info.host, info.port, info.user, info.dbname) == ("db.example.com", 5432, "app", "orders")
    assert info.sslmode == "require"  # not local: TLS required unless the secret says otherwise
    assert "pw-0s3cret" not in info.libpq_uri() and "pw-0s3cret" not in info.display()


def test_the_secrets_sslmode_is_honoured():
    assert conninfo_from_secret({**SECRET, "sslmode": "verify-full"}).sslmode == "verify-full"
    assert conninfo_from_secret({**SECRET, "host": "localhost"}).sslmode == "prefer"
    assert conninfo_from_secret({**SECRET, "port": None}).port == 5432
    assert conninfo_from_secret(SECRET).dbname == "postgres"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host": ""}, "lacks host"),
        ({"password": None}, "lacks password"),
        ({"port": "five"}, "non-numeric port"),
        ({"sslmode": "sometimes"}, "unknown sslmode"),
    ],
)
def test_a_malformed_secret_is_a_config_error(change, message):
    with pytest.raises(ConfigError, match=message) as caught:
        conninfo_from_secret({**SECRET, **change})
    assert "pw-0s3cret" not in str(caught.value)
