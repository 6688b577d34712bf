"""An operation that exists only for the test that adds it: one module, one registry entry."""

from __future__ import annotations

from pgrunbook.domain.metrics import Metric
from pgrunbook.domain.results import Report
from pgrunbook.operations.context import OperationContext

COUNTED = Metric("SampleCount", "Count")


def run(ctx: OperationContext, report: Report, *, count: int = 1) -> None:
    report.figures["count"] = count
    report.add("sample", "ok", f"counted to {count} for {ctx.settings.database_label}")
    report.measure(COUNTED, count)
