"""The retention policy (pure): its invariants under hypothesis, then worked examples with
dates a reader can follow on a calendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pgrunbook.domain.ids import time_stamp
from pgrunbook.domain.retention import (
    DELETE,
    KEEP,
    BackupFacts,
    PartialFolder,
    RetentionPlan,
    plan_retention,
)
from pgrunbook.domain.tiers import FLOOR_DAYS, TIERS, RetentionPolicy, derive_tiers

NOW = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)  # a Monday, 03:00: the daily retention run
DAY = timedelta(days=1)


def backup(age: timedelta, tiers: tuple[str, ...] = ("daily",), n: int = 0, size: int = 100) -> BackupFacts:
    started = NOW - age
    return BackupFacts(f"{time_stamp(started)}-{n:06x}", started, tiers, size)


def partial(age: timedelta, n: int = 0) -> PartialFolder:
    return PartialFolder(f"{time_stamp(NOW - age)}-{n:06x}", size_bytes=10, objects=2)


def deleted_ids(plan: RetentionPlan) -> set[str]:
    return {d.backup_id for d in plan.decisions if d.deletes}


# -- scenarios for hypothesis ---------------------------------------------------------------

# Every drawn value is one choice from a precomputed menu: hypothesis spends its time per
# draw, and a history of two dozen backups is a lot of draws.
# Ages (in minutes): any day up to 1,200 days back, at two times of day (negative: a clock
# running ahead); right at an edge where decisions change (hourly retention, the floor, every
# default retention), give or take a few minutes; or any hour of the last weeks.
EDGE_DAYS = (0, 1, 2, 30, 90, 365, 1095)
ANY_AGE = tuple(day * 24 * 60 + minute for day in range(-2, 1201) for minute in (0, 611))
EDGE_AGE = tuple(day * 24 * 60 + minute for day in EDGE_DAYS for minute in (-120, -61, -1, 0, 1, 59, 120))
RECENT_AGE = tuple(hour * 60 for hour in range(-48, 45 * 24))  # hourly, up to 45 days back
minutes_old = st.one_of(st.sampled_from(ANY_AGE), st.sampled_from(EDGE_AGE), st.sampled_from(RECENT_AGE))
# Tier sets as bit masks over TIERS; a single tier half of the time, as most backups have.
SINGLE_TIERS = tuple(1 << bit for bit in range(len(TIERS)))
tier_masks = st.sampled_from(SINGLE_TIERS * 6 + tuple(range(1, 2 ** len(TIERS))))
policies = st.one_of(
    st.just(RetentionPolicy()),
    st.lists(st.sampled_from((1, 2, 7, 29, 30, 31, 90, 365)), min_size=len(TIERS), max_size=len(TIERS)).map(
        lambda days: RetentionPolicy(days=dict(zip(TIERS, days, strict=True)))
    ),
)


def tiers_of(mask: int) -> tuple[str, ...]:
    return tuple(tier for bit, tier in enumerate(TIERS) if mask >> bit & 1)


@st.composite
def scenarios(draw):
    size = draw(st.sampled_from(range(25)))  # uniform: hypothesis' own lists are mostly short
    drawn = draw(st.lists(st.tuples(minutes_old, tier_masks), min_size=size, max_size=size))
    backups = [
        backup(timedelta(minutes=m), tiers_of(mask), n, size=1000 + n) for n, (m, mask) in enumerate(drawn)
    ]
    partial_hours = draw(st.lists(st.sampled_from(range(-2, 5 * 24)), max_size=6))
    partials = [partial(timedelta(hours=h), 1000 + n) for n, h in enumerate(partial_hours)]
    ids = [b.backup_id for b in backups] + [p.backup_id for p in partials]
    every_subset = st.integers(min_value=0, max_value=2 ** len(ids) - 1)  # a bit per id
    held_bits, verified_bits = draw(every_subset), draw(every_subset)
    held = {i for bit, i in enumerate(ids) if held_bits >> bit & 1}
    verified = {i for bit, i in enumerate(ids) if verified_bits >> bit & 1}
    return {
        "backups": backups,
        "partials": partials,
        "held": held,
        "verified": verified,
        "policy": draw(policies),
    }


def plan_of(s: dict) -> RetentionPlan:
    return plan_retention(
        s["backups"], s["partials"], now=NOW, policy=s["policy"], held=s["held"], verified=s["verified"]
    )


def protected_by_rule(s: dict) -> set[str]:
    """The rule, written independently of the implementation: for every tier present, its
    newest verified backup, or its newest backup when none of it is verified."""
    kept = set()
    tiers = {t for b in s["backups"] for t in b.tiers}
    for tier in tiers:
        members = sorted(
            (b for b in s["backups"] if tier in b.tiers), key=lambda b: (b.started_at, b.backup_id)
        )
        verified = [b for b in members if b.backup_id in s["verified"]]
        kept.add((verified or members)[-1].backup_id)
    return kept


def expired(b: BackupFacts, policy: RetentionPolicy) -> bool:
    return policy.retention_until(b.started_at, b.tiers) <= NOW


# -- invariants -----------------------------------------------------------------------------

run = settings(max_examples=75, database=None, deadline=None)


@run
@given(scenarios())
def test_every_backup_and_partial_gets_exactly_one_decision_with_a_reason(s):
    plan = plan_of(s)
    assert sorted(d.backup_id for d in plan.backups) == sorted(b.backup_id for b in s["backups"])
    assert sorted(d.backup_id for d in plan.partials) == sorted(p.backup_id for p in s["partials"])
    assert all(d.action in (KEEP, DELETE) and d.reason for d in plan.decisions)


@run
@given(scenarios())
def test_never_deletes_a_held_backup_or_folder(s):
    plan = plan_of(s)
    assert not deleted_ids(plan) & s["held"]


@run
@given(scenarios())
def test_never_deletes_a_backup_before_its_expiry(s):
    plan = plan_of(s)
    by_id = {b.backup_id: b for b in s["backups"]}
    for d in plan.backups_to_delete:
        assert d.expires_at == s["policy"].retention_until(by_id[d.backup_id].started_at, d.tiers)
        assert d.expires_at <= NOW


@run
@given(scenarios())
def test_nothing_younger_than_the_floor_is_deleted_unless_it_is_only_hourly(s):
    plan = plan_of(s)
    for d in plan.backups_to_delete:
        if NOW - d.started_at < timedelta(days=FLOOR_DAYS):
            assert d.tiers == ("hourly",), d


@run
@given(scenarios())
def test_every_tier_keeps_its_newest_verified_backup_or_else_its_newest(s):
    plan = plan_of(s)
    kept = {d.backup_id for d in plan.backups_to_keep}
    for tier in {t for b in s["backups"] for t in b.tiers}:
        assert any(tier in d.tiers for d in plan.backups_to_keep), f"no {tier} backup left"
    assert protected_by_rule(s) <= kept


@run
@given(scenarios())
def test_the_policy_is_complete_every_expired_unprotected_unheld_backup_goes(s):
    plan = plan_of(s)
    must_go = {
        b.backup_id
        for b in s["backups"]
        if expired(b, s["policy"]) and b.backup_id not in s["held"] | protected_by_rule(s)
    }
    assert {d.backup_id for d in plan.backups_to_delete} == must_go


@run
@given(scenarios())
def test_applying_the_plan_and_planning_again_deletes_nothing_more(s):
    first = plan_of(s)
    gone = deleted_ids(first)
    after = {
        **s,
        "backups": [b for b in s["backups"] if b.backup_id not in gone],
        "partials": [p for p in s["partials"] if p.backup_id not in gone],
    }
    second = plan_of(after)
    assert deleted_ids(second) == set()
    assert [(d.backup_id, d.reason) for d in second.backups] == [
        (d.backup_id, d.reason) for d in first.backups_to_keep
    ]


@run
@given(scenarios())
def test_partials_younger_than_a_day_stay_older_unheld_ones_go(s):
    plan = plan_of(s)
    for d in plan.partials:
        age = NOW - d.started_at
        if age <= DAY or d.backup_id in s["held"]:
            assert d.action == KEEP, d
        else:
            assert d.action == DELETE, d


# -- worked examples --------------------------------------------------------------------------


def nightly(days: int, tiers=None) -> list[BackupFacts]:
    """One backup at 02:00 on each of the ``days`` days before NOW (2026-06-01 03:00)."""
    out = []
    for k in range(1, days + 1):
        started = NOW - timedelta(days=k, hours=1)
        out.append(
            BackupFacts(f"{time_stamp(started)}-{k:06x}", started, tiers or tuple(derive_tiers(started)))
        )
    return out


def test_120_daily_only_backups_lose_exactly_those_older_than_90_days():
    backups = nightly(120, tiers=("daily",))
    plan = plan_retention(backups, now=NOW, policy=RetentionPolicy())
    # 2026-03-03 02:00 is 90 days and 1 hour before NOW: it and the 30 before it go.
    assert deleted_ids(plan) == {
        b.backup_id for b in backups if b.started_at <= datetime(2026, 3, 3, 2, tzinfo=UTC)
    }
    assert len(plan.backups_to_delete) == 31
    oldest_kept = plan.backups_to_keep[-1]
    assert oldest_kept.started_at == datetime(2026, 3, 4, 2, tzinfo=UTC)
    assert oldest_kept.reason == "within retention until 2026-06-02 02:00 UTC (daily 90 d)"
    assert plan.decision(backups[89].backup_id).reason == "expired on 2026-06-01 02:00 UTC (daily 90 d)"


def test_120_calendar_backups_keep_their_sundays_for_a_year():
    backups = nightly(120)  # Sundays are weekly, first Sundays monthly too
    plan = plan_retention(backups, now=NOW, policy=RetentionPolicy())
    older_than_90_days = [b for b in backups if NOW - b.started_at > 90 * DAY]
    assert len(older_than_90_days) == 31
    assert deleted_ids(plan) == {b.backup_id for b in older_than_90_days if b.tiers == ("daily",)}
    assert len(plan.backups_to_delete) == 26
    sunday = plan.decision(
        next(b.backup_id for b in backups if b.started_at.date().isoformat() == "2026-02-22")
    )
    assert sunday.action == KEEP and "(weekly 365 d)" in sunday.reason
    first_sunday = plan.decision(
        next(b.backup_id for b in backups if b.started_at.day == 1 and b.started_at.month == 2)
    )
    assert first_sunday.action == KEEP and "(monthly 1095 d)" in first_sunday.reason


def test_the_only_verified_daily_backup_stays_after_it_expires():
    backups = nightly(120, tiers=("daily",))
    tested = backups[99]  # 2026-02-21, 100 days old: the last one a restore test passed
    plan = plan_retention(backups, now=NOW, policy=RetentionPolicy(), verified={tested.backup_id})
    decision = plan.decision(tested.backup_id)
    assert decision.action == KEEP and decision.reason == "newest verified daily backup"
    assert len(plan.backups_to_delete) == 30


def test_an_old_verified_weekly_outlives_newer_untested_ones_but_not_an_older_tested_one():
    tested_410 = backup(410 * DAY, ("weekly", "daily"), 1)
    tested_400 = backup(400 * DAY, ("weekly", "daily"), 2)
    untested = [backup((370 + 7 * n) * DAY, ("weekly", "daily"), 10 + n) for n in range(3)]
    recent = backup(3 * DAY, ("weekly", "daily"), 20)
    plan = plan_retention(
        [tested_410, tested_400, *untested, recent],
        now=NOW,
        policy=RetentionPolicy(),
        verified={tested_410.backup_id, tested_400.backup_id},
    )
    assert (
        plan.decision(tested_400.backup_id).reason
        == "newest verified weekly backup; newest verified daily backup"
    )
    assert deleted_ids(plan) == {tested_410.backup_id, *(b.backup_id for b in untested)}


def test_a_tier_without_any_verified_backup_keeps_its_newest():
    monthlies = [backup((1100 + 30 * n) * DAY, ("monthly",), n) for n in range(3)]
    plan = plan_retention(monthlies, now=NOW, policy=RetentionPolicy())
    assert [d.action for d in plan.backups] == [KEEP, DELETE, DELETE]
    assert plan.backups[0].reason == "newest monthly backup (no monthly backup verified yet)"


def test_hourly_backups_go_after_two_days_and_are_the_only_ones_under_the_floor():
    hourlies = [backup(timedelta(hours=k), ("hourly",), k) for k in range(1, 73)]
    plan = plan_retention(hourlies, now=NOW, policy=RetentionPolicy())
    assert deleted_ids(plan) == {b.backup_id for b in hourlies if NOW - b.started_at >= 2 * DAY}
    assert len(plan.backups_to_delete) == 25
    assert "(hourly 2 d)" in plan.backups_to_delete[0].reason


def test_a_shorter_configured_retention_still_respects_the_30_day_floor():
    policy = RetentionPolicy(days={"hourly": 2, "daily": 7, "weekly": 365, "monthly": 1095, "manual": 365})
    backups = nightly(40, tiers=("daily",))
    plan = plan_retention(backups, now=NOW, policy=policy)
    assert deleted_ids(plan) == {b.backup_id for b in backups if NOW - b.started_at >= 30 * DAY}
    assert len(plan.backups_to_delete) == 11
    assert "(daily 30 d)" in plan.backups_to_delete[0].reason


def test_a_backup_being_restored_is_kept_even_when_expired():
    old = backup(200 * DAY, ("daily",), 1)
    plan = plan_retention(
        [backup(DAY, ("daily",), 2), old], now=NOW, policy=RetentionPolicy(), held={old.backup_id}
    )
    decision = plan.decision(old.backup_id)
    assert decision.action == KEEP and decision.held
    assert decision.reason == "in use: a restore or drill holds a lease on it"


def test_a_tier_this_version_does_not_know_is_kept_for_a_person():
    future = backup(3000 * DAY, ("yearly",), 1)
    plan = plan_retention([future], now=NOW, policy=RetentionPolicy())
    assert plan.decision(future.backup_id).action == KEEP
    assert "a person decides" in plan.decision(future.backup_id).reason


def test_partial_folders_older_than_a_day_go_younger_or_held_ones_stay():
    uploading = partial(timedelta(hours=2), 1)
    abandoned = partial(timedelta(hours=25), 2)
    abandoned_but_held = partial(timedelta(days=3), 3)
    plan = plan_retention(
        [],
        [uploading, abandoned, abandoned_but_held],
        now=NOW,
        policy=RetentionPolicy(),
        held={abandoned_but_held.backup_id},
    )
    assert deleted_ids(plan) == {abandoned.backup_id}
    assert plan.decision(abandoned.backup_id).reason == "incomplete upload (no manifest), 25 h old"
    assert plan.decision(uploading.backup_id).reason == "incomplete, 2 h old: may be a backup still uploading"
    assert plan.bytes_to_free == 10
