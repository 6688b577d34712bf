"""The CloudWatch metrics pgrunbook emits, named once for the library (which emits them as
embedded metric format from the Lambda handlers) and for the CDK app (whose alarms and
dashboard watch them).  Namespace ``pgrunbook``, dimension ``Database``."""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE = "pgrunbook"
DIMENSION = "Database"


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str  # a CloudWatch unit: Count, Seconds, Bytes, Percent


BACKUP_SIZE = Metric("BackupSizeBytes", "Bytes")
BACKUP_DURATION = Metric("BackupDurationSeconds", "Seconds")
BACKUP_SUCCEEDED = Metric("BackupSucceeded", "Count")
BACKUP_AGE = Metric("BackupAgeHours", "Count")
BACKUP_FAILURE_RATE = Metric("BackupFailureRatePct", "Percent")
VERIFY_PROBLEMS = Metric("VerifyProblems", "Count")
STORAGE_GROWTH = Metric("StorageGrowthPct", "Percent")
RESTORE_INTEGRITY = Metric("RestoreIntegrityPct", "Percent")
RESTORE_DURATION = Metric("RestoreDurationSeconds", "Seconds")
# 1 when a restore test or drill measured a backup's integrity, 0 when it could not test one
# (the target cannot host it, or the restore did not complete)
RESTORE_TESTED = Metric("RestoreTested", "Count")
DRILL_RTO = Metric("DrillRtoSeconds", "Seconds")
DRILL_RPO = Metric("DrillRpoSeconds", "Seconds")
DRILL_INTEGRITY = Metric("DrillIntegrityPct", "Percent")
RETENTION_DELETED = Metric("RetentionBackupsDeleted", "Count")
RETENTION_FREED = Metric("RetentionBytesFreed", "Bytes")
DATABASE_SIZE = Metric("DatabaseSizeBytes", "Bytes")
CONNECTION_USE = Metric("ConnectionUsePct", "Percent")
UNUSED_INDEXES = Metric("UnusedIndexes", "Count")
WORST_BLOAT = Metric("WorstBloatPct", "Percent")
BLOCKED_SESSIONS = Metric("BlockedSessions", "Count")
SLOW_STATEMENTS = Metric("SlowStatements", "Count")
PITR_DOWNTIME = Metric("PitrDowntimeSeconds", "Seconds")
PITR_DATA_LOSS = Metric("PitrDataLossSeconds", "Seconds")
