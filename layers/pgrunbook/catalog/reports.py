"""The report history of one database in one bucket: ``<prefix>/<database>/reports/<operation>/``.

Every run's :class:`~pgrunbook.domain.results.Report` is stored there as JSON, a durable record
of every check ever run; report ids sort by time like backup ids, so the newest reports are
the last keys of a listing.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from pgrunbook.adapters.s3.store import ObjectStore
from pgrunbook.domain.ids import time_stamp
from pgrunbook.domain.results import Report


class ReportStore:
    def __init__(self, store: ObjectStore):
        self.store = store

    def prefix(self, operation: str) -> str:
        return self.store.layout.reports_prefix(operation)

    def key(self, report: Report) -> str:
        return self.store.layout.report_key(report.operation, report.report_id)

    def put(self, report: Report) -> str:
        key = self.key(report)
        report.location = self.store.uri(key)
        self.store.put_bytes(key, report.to_json())
        return report.location

    def history(
        self, operation: str, *, since: datetime | None = None, limit: int | None = None
    ) -> list[Report]:
        """Reports of ``operation``, oldest first (since ``since``; the newest ``limit``)."""
        # Keys start with the report's time stamp, so listing can start right at ``since``.
        start_after = self.prefix(operation) + time_stamp(since) if since is not None else None
        keys = [
            obj["Key"]
            for obj in self.store.list_keys(self.prefix(operation), start_after=start_after)
            if obj["Key"].endswith(".json")
        ]
        keys.sort()
        if limit is not None:
            keys = keys[-limit:]
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(keys)))) as pool:
            found = list(pool.map(self._read, keys))  # months of hourly backups: thousands of GETs
        return [report for report in found if report is not None]

    def _read(self, key: str) -> Report | None:
        raw = self.store.get_bytes(key)
        if raw is None:
            return None
        try:
            return Report.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            return None  # a damaged report is not a reason to fail a job

    def latest(self, operation: str) -> Report | None:
        reports = self.history(operation, limit=1)
        return reports[-1] if reports else None
