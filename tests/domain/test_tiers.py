"""Backup tiers, retention dates and backup ids."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.ids import backup_time, is_backup_id, new_backup_id
from pgrunbook.domain.tiers import RetentionPolicy, derive_tiers, parse_tiers, primary_tier

WEDNESDAY = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)
FIRST_SUNDAY = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
SECOND_SUNDAY = datetime(2026, 3, 8, 2, 0, tzinfo=UTC)


def test_calendar_of_the_fixtures():
    # The dates below are only meaningful if they are the weekdays they claim to be.
    assert WEDNESDAY.strftime("%A") == "Wednesday"
    assert FIRST_SUNDAY.strftime("%A") == "Sunday"
    assert SECOND_SUNDAY.strftime("%A") == "Sunday"


# -- derive_tiers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "tiers"),
    [
        (datetime(2026, 3, 2, 2, 0, tzinfo=UTC), ["daily"]),  # Monday
        (WEDNESDAY, ["daily"]),
        (datetime(2026, 3, 7, 23, 59, tzinfo=UTC), ["daily"]),  # Saturday night
        (FIRST_SUNDAY, ["monthly", "weekly", "daily"]),  # Sunday the 1st
        (datetime(2026, 6, 7, 2, 0, tzinfo=UTC), ["monthly", "weekly", "daily"]),  # Sunday the 7th
        (SECOND_SUNDAY, ["weekly", "daily"]),  # Sunday the 8th
        (datetime(2026, 3, 29, 2, 0, tzinfo=UTC), ["weekly", "daily"]),  # last Sunday of March
        (datetime(2026, 11, 1, 0, 0, tzinfo=UTC), ["monthly", "weekly", "daily"]),  # first Sunday, midnight
    ],
)
def test_derive_tiers(when, tiers):
    assert derive_tiers(when) == tiers


def test_derive_tiers_judges_the_day_in_utc():
    # Sunday 00:30 in UTC+2 is still Saturday in UTC: no weekly tier.
    assert derive_tiers(datetime(2026, 3, 8, 0, 30, tzinfo=timezone(timedelta(hours=2)))) == ["daily"]
    # Saturday 20:00 in UTC-5 is already Sunday the 1st in UTC: monthly.
    saturday_evening = datetime(2026, 2, 28, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert derive_tiers(saturday_evening) == ["monthly", "weekly", "daily"]


def test_every_sunday_of_a_year_is_weekly_and_exactly_one_per_month_is_monthly():
    day = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    monthly_by_month: dict[int, int] = {}
    while day.year == 2026:
        tiers = derive_tiers(day)
        assert ("weekly" in tiers) == (day.weekday() == 6)
        if "monthly" in tiers:
            monthly_by_month[day.month] = monthly_by_month.get(day.month, 0) + 1
        day += timedelta(days=1)
    assert monthly_by_month == dict.fromkeys(range(1, 13), 1)


# -- parse_tiers ----------------------------------------------------------------------------


def test_parse_tiers_without_text_derives_from_the_date():
    assert parse_tiers(None, FIRST_SUNDAY) == ["monthly", "weekly", "daily"]
    assert parse_tiers("", WEDNESDAY) == ["daily"]


def test_parse_tiers_explicit_tiers_win_over_the_date():
    assert parse_tiers("manual", FIRST_SUNDAY) == ["manual"]
    assert parse_tiers("hourly", WEDNESDAY) == ["hourly"]


def test_parse_tiers_sorts_most_durable_first_and_removes_duplicates():
    assert parse_tiers(" daily, monthly,daily ,weekly", WEDNESDAY) == ["monthly", "weekly", "daily"]


@pytest.mark.parametrize("text", ["yearly", "daily,yearly", "Daily", ",", " , "])
def test_parse_tiers_rejects_unknown_or_empty_tiers(text):
    with pytest.raises(ConfigError) as caught:
        parse_tiers(text, WEDNESDAY)
    message = str(caught.value)
    assert "monthly, weekly, daily, hourly, manual" in message
    assert "\n" not in message


def test_parse_tiers_names_the_unknown_tier():
    with pytest.raises(ConfigError, match="yearly"):
        parse_tiers("daily,yearly", WEDNESDAY)


def test_primary_tier_is_the_most_durable():
    assert primary_tier(["daily", "monthly", "weekly"]) == "monthly"
    assert primary_tier(["hourly", "daily"]) == "daily"
    assert primary_tier(["hourly"]) == "hourly"


# -- retention ------------------------------------------------------------------------------

START = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tiers", "days"),
    [
        (["daily"], 90),
        (["weekly", "daily"], 365),
        (["monthly", "weekly", "daily"], 1095),
        (["hourly"], 2),
        (["hourly", "daily"], 90),
        (["manual"], 365),
    ],
)
def test_default_retention_uses_the_longest_tier(tiers, days):
    assert RetentionPolicy().retention_until(START, tiers) == START + timedelta(days=days)


def test_the_30_day_floor_applies_to_every_tier_but_hourly():
    policy = RetentionPolicy(days={"hourly": 1, "daily": 7, "weekly": 14, "monthly": 2, "manual": 0})
    for tier in ("daily", "weekly", "monthly", "manual"):
        assert policy.retention_until(START, [tier]) == START + timedelta(days=30), tier
    assert policy.retention_until(START, ["hourly"]) == START + timedelta(days=1)
    assert policy.retention_until(START, ["hourly", "daily"]) == START + timedelta(days=30)


def test_longer_configured_retention_is_kept_above_the_floor():
    policy = RetentionPolicy(days={"daily": 45})
    assert policy.retention_until(START, ["daily"]) == START + timedelta(days=45)
    # Tiers the policy does not mention keep their defaults.
    assert policy.retention_until(START, ["weekly", "daily"]) == START + timedelta(days=365)


def test_custom_floor():
    policy = RetentionPolicy(days={"daily": 10, "hourly": 3}, floor_days=60)
    assert policy.days_for("daily") == 60
    assert policy.days_for("hourly") == 3


# -- backup ids -----------------------------------------------------------------------------


def test_backup_id_format():
    backup_id = new_backup_id(datetime(2026, 11, 21, 2, 0, 0, 123456, tzinfo=UTC))
    assert re.fullmatch(r"20261121T020000\.123Z-[0-9a-f]{6}", backup_id)
    assert is_backup_id(backup_id)


def test_backup_id_is_in_utc():
    backup_id = new_backup_id(datetime(2026, 11, 21, 3, 0, 0, tzinfo=timezone(timedelta(hours=1))))
    assert backup_id.startswith("20261121T020000.000Z-")


def test_backup_ids_of_the_same_instant_differ():
    when = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
    assert len({new_backup_id(when) for _ in range(5)}) == 5


def test_backup_time_round_trips_to_the_millisecond():
    when = datetime(2026, 11, 21, 2, 3, 4, 567890, tzinfo=UTC)
    assert backup_time(new_backup_id(when)) == datetime(2026, 11, 21, 2, 3, 4, 567000, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "manifest.json",
        "",
        "20261121T020000.123Z",
        "20261121T020000.123Z-3FA9C1",
        "20261121T020000.123Z-3fa9c",
        "20261121T020000Z-3fa9c1",
        "20261121T020000.123Z-3fa9c1/",
        " 20261121T020000.123Z-3fa9c1",
        "2026-11-21T02:00:00.123Z-3fa9c1",
    ],
)
def test_not_backup_ids(text):
    assert not is_backup_id(text)
    with pytest.raises(ConfigError, match="not a pgrunbook backup id"):
        backup_time(text)


@pytest.mark.parametrize(
    "text", ["20261399T020000.123Z-3fa9c1", "20260230T020000.123Z-3fa9c1", "20261121T250000.123Z-3fa9c1"]
)
def test_backup_id_with_an_impossible_date_is_a_config_error(text):
    # Regression: strptime's ValueError escaped for a well-shaped id with an impossible date.
    with pytest.raises(ConfigError, match="not a pgrunbook backup id"):
        backup_time(text)
    assert not is_backup_id(text)


def test_backup_id_with_a_trailing_newline_is_not_a_backup_id():
    # Regression: the pattern ended in '$', which also matches before a trailing newline.
    assert not is_backup_id("20261121T020000.123Z-3fa9c1\n")


_ZONES = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@settings(max_examples=100, database=None, deadline=None)
@given(
    start=st.datetimes(
        min_value=datetime(2001, 1, 1), max_value=datetime(2900, 1, 1), timezones=st.just(UTC)
    ),
    gaps=st.lists(st.integers(min_value=1_000, max_value=400 * 86_400 * 1_000_000), min_size=1, max_size=12),
    zones=st.lists(_ZONES, min_size=13, max_size=13),
)
def test_backup_ids_sort_like_their_start_times(start, gaps, zones):
    """Ids made at instants at least 1 ms apart, in any time zone, sort in time order."""
    instants = [start]
    for gap in gaps:
        instants.append(instants[-1] + timedelta(microseconds=gap))
    local_times = [t.astimezone(zone) for t, zone in zip(instants, zones, strict=False)]
    ids = [new_backup_id(t) for t in local_times]
    assert sorted(ids) == ids
    for backup_id, instant in zip(ids, instants, strict=True):
        assert is_backup_id(backup_id)
        parsed = backup_time(backup_id)
        assert timedelta(0) <= instant - parsed < timedelta(milliseconds=1)
