"""Comparing a restored database with its manifest (pure functions, no I/O).

The integrity score is the share of the manifest's tables whose row count and fingerprint
both match after the restore.  pgrunbook accepts nothing under 100 %: the runbook tolerates
> 95 %, but a backup that loses one table in twenty is not a backup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from pgrunbook.domain.manifest import TableEntry


@dataclass(frozen=True)
class TableCheck:
    table: str
    expected_rows: int
    actual_rows: int | None
    expected_fingerprint: str
    actual_fingerprint: str | None
    error: str | None = None

    @property
    def rows_match(self) -> bool:
        return self.actual_rows == self.expected_rows

    @property
    def fingerprint_match(self) -> bool:
        return self.actual_fingerprint == self.expected_fingerprint

    @property
    def match(self) -> bool:
        return self.error is None and self.rows_match and self.fingerprint_match

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
) -> list[TableCheck]:
    errors = errors or {}
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
