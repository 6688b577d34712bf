-- pgrunbook's in-database mirror of the backup catalog (the runbook's backup_metadata).
--
-- The catalog of record is the set of manifests in S3; this table mirrors it inside the
-- database for SQL dashboards.  Idempotent: pgrunbook runs it before every backup.
CREATE SCHEMA IF NOT EXISTS pgrunbook;
REVOKE ALL ON SCHEMA pgrunbook FROM PUBLIC;

CREATE TABLE IF NOT EXISTS pgrunbook.backup_metadata (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    backup_id         text        NOT NULL UNIQUE,
    backup_type       text        NOT NULL
        CHECK (backup_type IN ('hourly', 'daily', 'weekly', 'monthly', 'manual')),
    backup_location   text        NOT NULL,
    tables_included   text[]      NOT NULL DEFAULT '{}',
    status            text        NOT NULL
        CHECK (status IN ('in_progress', 'completed', 'failed')),
    started_at        timestamptz NOT NULL,
    completed_at      timestamptz,
    backup_size_bytes bigint,
    retention_until   timestamptz,
    created_by        text        NOT NULL,
    tiers             text[]      NOT NULL DEFAULT '{}',
    error_message     text
);

CREATE INDEX IF NOT EXISTS backup_metadata_started_at_idx
    ON pgrunbook.backup_metadata (started_at DESC);

-- Deny by default: only the owner (the role pgrunbook connects as) reads and writes it.
ALTER TABLE pgrunbook.backup_metadata ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON pgrunbook.backup_metadata FROM PUBLIC;
