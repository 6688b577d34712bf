"""What a Lambda event may say: the operation's options, checked as the CLI checks its flags."""

from __future__ import annotations

import pytest

from pgrunbook.domain.errors import ConfigError
from pgrunbook.entrypoints.aws_lambda import BadEvent, job_options
from pgrunbook.operations import registry


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
