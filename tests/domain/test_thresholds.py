"""Alert thresholds and targets (the runbook's table)."""

from __future__ import annotations

import json

import pytest

from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.thresholds import Threshold, Thresholds


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
