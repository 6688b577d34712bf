-- The migrations applied to this database (pgrunbook migrate).  Idempotent: pgrunbook runs
-- it before every apply.  One row per applied migration; a rollback deletes its row.
CREATE SCHEMA IF NOT EXISTS pgrunbook;
REVOKE ALL ON SCHEMA pgrunbook FROM PUBLIC;

CREATE TABLE IF NOT EXISTS pgrunbook.schema_migrations (
    version     text        PRIMARY KEY CHECK (version ~ '^[0-9]{14}$'),
    name        text        NOT NULL,
    sha256      text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    applied_at  timestamptz NOT NULL,
    duration_ms integer     NOT NULL,
    applied_by  text        NOT NULL
);

ALTER TABLE pgrunbook.schema_migrations ENABLE ROW LEVEL SECURITY;
