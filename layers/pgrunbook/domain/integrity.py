"""Comparing a restored database with its manifest (pure functions, no I/O).

The integrity score is the share of the manifest's tables whose row count and fingerprint
both match after the restore.  pgrunbook accepts nothing under 100 %: the runbook tolerates
> 95 %, but a backup that loses one table in twenty is not a backup.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

from pgrunbook.domain.manifest import TableEntry


@dataclass(frozen=True)
class TableCheck:
    table: str
    expected_rows: int
    actual_rows: int | None
    expected_fingerprint: str
    actual_fingerprint: str | None
    error: str | None = None
    # the partitioned table whose partitions, together, hold exactly the dumped rows while this
    # partition alone does not: the restore put some rows in another partition (hash
    # partitioning on an enum hashes its OIDs, which a restore renumbers)
    moved_within: str | None = None

    @property
    def rows_match(self) -> bool:
        return self.actual_rows == self.expected_rows

    @property
    def fingerprint_match(self) -> bool:
        return self.actual_fingerprint == self.expected_fingerprint

    @property
    def match(self) -> bool:
        return self.error is None and (
            (self.rows_match and self.fingerprint_match) or self.moved_within is not None
        )

    def to_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "rows_match": self.rows_match,
            "fingerprint_match": self.fingerprint_match,
            "match": self.match,
        }


def compare(
    expected: Sequence[TableEntry],
    actual: Mapping[str, tuple[int, str]],
    errors: Mapping[str, str] | None = None,
    trees: Mapping[str, str] | None = None,
) -> list[TableCheck]:
    """Each table's check.  ``trees`` maps a partition to its partitioned root (on the
    restored database): when the partitions of one root do not match one by one but do as a
    whole (the same rows in all, the same columns in each, fingerprints being sums), the rows
    only moved between partitions, and those partitions match ``moved_within`` the root."""
    checks = _checks(expected, actual, errors or {})
    by_root: dict[str, list[int]] = {}
    for i, table in enumerate(expected):
        root = (trees or {}).get(table.qualified)
        if root is not None:
            by_root.setdefault(root, []).append(i)
    for root, members in by_root.items():
        group = [checks[i] for i in members]
        if all(c.match for c in group) or any(c.error or c.actual_fingerprint is None for c in group):
            continue
        if len({expected[i].columns for i in members}) != 1:
            continue  # a row's text (or hash) would differ from one partition to the other
        if sum(c.expected_rows for c in group) != sum(c.actual_rows or 0 for c in group):
            continue
        if _sum(c.expected_fingerprint for c in group) != _sum(c.actual_fingerprint or "0" for c in group):
            continue
        for i in members:
            if not checks[i].match:
                checks[i] = replace(checks[i], moved_within=root)
    return checks


def _sum(fingerprints: Iterable[str]) -> int:
    return sum(int(f, 16) for f in fingerprints) % (1 << 64)


def _checks(
    expected: Sequence[TableEntry], actual: Mapping[str, tuple[int, str]], errors: Mapping[str, str]
) -> list[TableCheck]:
    checks = []
    for table in expected:
        rows, fingerprint = actual.get(table.qualified, (None, None))
        checks.append(
            TableCheck(
                table=table.qualified,
                expected_rows=table.rows,
                actual_rows=rows,
                expected_fingerprint=table.fingerprint,
                actual_fingerprint=fingerprint,
                error=errors.get(table.qualified) or (None if rows is not None else "table not restored"),
            )
        )
    return checks


def integrity_pct(checks: Sequence[TableCheck]) -> float:
    """Matching tables / tables, in percent (a backup with no tables scores 100)."""
    if not checks:
        return 100.0
    return round(100.0 * sum(1 for c in checks if c.match) / len(checks), 2)
