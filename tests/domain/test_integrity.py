"""Comparing a restored database with its manifest, and the integrity score."""

from __future__ import annotations

from pgrunbook.domain.integrity import compare, integrity_pct
from pgrunbook.domain.manifest import TableEntry

EXPECTED = [
    TableEntry("public", "tasks", 1000, "00000000000000a1", "record", (("id", "hash"),)),
    TableEntry("public", "users", 20, "00000000000000b2", "record", (("id", "hash"),)),
    TableEntry("audit", "events", 0, "0000000000000000", "record", (("id", "hash"),)),
    TableEntry("public", "tags", 7, "00000000000000c3", "text", (("name", "text"),)),
]
ALL_MATCH = {
    "public.tasks": (1000, "00000000000000a1"),
    "public.users": (20, "00000000000000b2"),
    "audit.events": (0, "0000000000000000"),
    "public.tags": (7, "00000000000000c3"),
}


def by_table(checks):
    return {c.table: c for c in checks}


def test_everything_matches():
    checks = compare(EXPECTED, ALL_MATCH)
    assert [c.table for c in checks] == ["public.tasks", "public.users", "audit.events", "public.tags"]
    assert all(c.match and c.error is None for c in checks)
    assert integrity_pct(checks) == 100.0


def test_one_row_count_mismatch():
    actual = {**ALL_MATCH, "public.users": (19, "00000000000000b2")}
    checks = by_table(compare(EXPECTED, actual))
    users = checks["public.users"]
    assert not users.match
    assert not users.rows_match
    assert users.fingerprint_match
    assert (users.expected_rows, users.actual_rows) == (20, 19)
    assert sum(c.match for c in checks.values()) == 3
    assert integrity_pct(list(checks.values())) == 75.0


def test_one_fingerprint_mismatch_with_equal_row_counts():
    # Same number of rows, different content: only the fingerprint can tell.
    actual = {**ALL_MATCH, "public.tasks": (1000, "ffffffffffffffa1")}
    checks = by_table(compare(EXPECTED, actual))
    tasks = checks["public.tasks"]
    assert tasks.rows_match
    assert not tasks.fingerprint_match
    assert not tasks.match
    assert tasks.error is None
    assert integrity_pct(list(checks.values())) == 75.0


def test_missing_table_is_reported_as_not_restored():
    actual = {k: v for k, v in ALL_MATCH.items() if k != "audit.events"}
    checks = by_table(compare(EXPECTED, actual))
    events = checks["audit.events"]
    assert not events.match
    assert events.actual_rows is None
    assert events.actual_fingerprint is None
    assert events.error == "table not restored"
    assert integrity_pct(list(checks.values())) == 75.0


def test_missing_empty_table_still_fails_even_though_zero_rows_were_expected():
    actual = {k: v for k, v in ALL_MATCH.items() if k != "audit.events"}
    assert not by_table(compare(EXPECTED, actual))["audit.events"].match


def test_per_table_error_fails_the_table_even_when_numbers_match():
    errors = {"public.tags": 'ERROR: permission denied for table "tags"'}
    checks = by_table(compare(EXPECTED, ALL_MATCH, errors))
    tags = checks["public.tags"]
    assert tags.rows_match and tags.fingerprint_match
    assert not tags.match
    assert tags.error == 'ERROR: permission denied for table "tags"'
    assert integrity_pct(list(checks.values())) == 75.0


def test_error_for_a_table_that_could_not_be_fingerprinted_is_kept():
    actual = {k: v for k, v in ALL_MATCH.items() if k != "public.tags"}
    errors = {"public.tags": 'ERROR: relation "public.tags" does not exist'}
    tags = by_table(compare(EXPECTED, actual, errors))["public.tags"]
    assert tags.error == 'ERROR: relation "public.tags" does not exist'


def test_extra_restored_tables_do_not_count():
    actual = {**ALL_MATCH, "public.surprise": (5, "0000000000000005")}
    checks = compare(EXPECTED, actual)
    assert len(checks) == len(EXPECTED)
    assert integrity_pct(checks) == 100.0


def test_empty_manifest_scores_100():
    assert compare([], {}) == []
    assert integrity_pct([]) == 100.0


def test_score_is_rounded_to_two_decimals():
    actual = {**ALL_MATCH, "public.tasks": (0, "0000000000000000")}
    checks = compare(EXPECTED[:3], actual)
    assert integrity_pct(checks) == 66.67


def test_nothing_matches_scores_zero():
    assert integrity_pct(compare(EXPECTED, {})) == 0.0


def test_to_dict_carries_the_verdicts():
    actual = {**ALL_MATCH, "public.users": (19, "00000000000000b2")}
    data = by_table(compare(EXPECTED, actual))["public.users"].to_dict()
    assert data["table"] == "public.users"
    assert data["rows_match"] is False
    assert data["fingerprint_match"] is True
    assert data["match"] is False
    assert data["actual_rows"] == 19


def _h(n: int) -> str:
    return f"{n % (1 << 64):016x}"


COLUMNS = (("id", "copy"), ("mood", "copy"))


def _leaf(name: str, rows: int, fingerprint: int, columns=COLUMNS) -> TableEntry:
    return TableEntry("public", name, rows, _h(fingerprint), "copy", columns)


def test_rows_that_moved_between_partitions_match_within_their_root():
    """Hash partitions over an enum: the restore may put rows in the other partition.  The
    partitions together hold exactly the dumped rows (fingerprints are sums), so they match
    within the root; a table outside the tree is not affected."""
    a, b = (1 << 63) + 5, (1 << 63) + 9  # the sums wrap around 2^64
    expected = [_leaf("visits_0", 10, a + b), _leaf("visits_1", 20, 7), _leaf("other", 3, 1)]
    actual = {
        "public.visits_0": (20, _h(a + 7)),
        "public.visits_1": (10, _h(b)),
        "public.other": (3, _h(1)),
    }
    trees = {"public.visits_0": "public.visits", "public.visits_1": "public.visits"}
    checks = compare(expected, actual, trees=trees)
    assert [c.match for c in checks] == [True, True, True]
    assert [c.moved_within for c in checks] == ["public.visits", "public.visits", None]
    assert integrity_pct(checks) == 100.0
    assert [c.match for c in compare(expected, actual)] == [False, False, True]  # without the tree


def test_a_partition_tree_that_lost_or_changed_a_row_still_fails():
    expected = [_leaf("visits_0", 10, 100), _leaf("visits_1", 20, 200)]
    trees = {"public.visits_0": "public.visits", "public.visits_1": "public.visits"}
    changed = {"public.visits_0": (20, _h(250)), "public.visits_1": (10, _h(51))}  # 301, not 300
    lost = {"public.visits_0": (19, _h(250)), "public.visits_1": (10, _h(50))}
    missing = {"public.visits_0": (30, _h(300))}
    for actual in (changed, lost, missing):
        checks = compare(expected, actual, trees=trees)
        assert not all(c.match for c in checks)
        assert all(c.moved_within is None for c in checks)
    other_columns = [
        _leaf("visits_0", 10, 100),
        _leaf("visits_1", 20, 200, (("mood", "copy"), ("id", "copy"))),
    ]
    moved = {"public.visits_0": (20, _h(200)), "public.visits_1": (10, _h(100))}
    assert not all(c.match for c in compare(other_columns, moved, trees=trees))
