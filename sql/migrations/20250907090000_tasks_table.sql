-- Task normalization, step 1 of 3 (schema 1.1.0): the normalized schema, still empty.
--
-- The runbook's "Task Migration Guide", step 1 ("Schema Preparation"): after this file
-- migration_status reports migration_stage = 'READY_FOR_TASK_MIGRATION'.  No data moves
-- here; 20250907090100_migrate_tasks_from_json.sql fills the tables, and
-- 20250907090200_task_functions.sql adds validate_task_migration(),
-- get_user_tasks_with_context() and the triggers that keep tasks.user_id consistent.
--
-- Objects created (all removed by the down part):
--   tasks                             one row per task, FK to projects (ON DELETE CASCADE, as
--                                     deleting a project deleted its JSONB array), the
--                                     per-user index get_user_tasks_with_context() reads,
--                                     row-level security derived from projects (below)
--   task_migration_sessions           one row per run of the data migration, with its counts
--   task_migration_log                per session: every source task or projects.tasks value
--                                     that was not migrated as is, with codes and a reason
--   tasks_json_backup                 per session: every project's original projects.tasks value
--   task_migration_replaced_versions  the schema_version rows each step replaced, so that
--                                     every down part restores schema_version exactly
--   migration_status                  the view the runbook queries (migration_stage)
--
-- Row-level security: tasks gets RLS with one policy, "a task is visible (and writable)
-- when its project is": the policy's subquery on projects runs under projects' own
-- policies, whatever they are (the demo's per-user policy, Supabase's auth.uid() ones).
-- Every role that holds privileges on projects gets the same privileges on tasks.  The
-- bookkeeping tables get RLS without any policy: only their owner (the migration's role)
-- reads them.
--
-- schema_version: the demo keeps one row (SELECT current_version FROM schema_version).
-- Each step saves the rows it replaces (whole rows, as jsonb, whatever the columns) and
-- leaves one row with its own version; its down part puts the saved rows back.

-- migrate:up

CREATE TABLE task_migration_replaced_versions (
    replaced_by text        NOT NULL,
    saved_row   jsonb       NOT NULL,
    saved_at    timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE task_migration_replaced_versions ENABLE ROW LEVEL SECURITY;

INSERT INTO task_migration_replaced_versions (replaced_by, saved_row)
SELECT '1.1.0', to_jsonb(v) FROM schema_version AS v;
DELETE FROM schema_version AS v
WHERE to_jsonb(v) IN (SELECT saved_row FROM task_migration_replaced_versions WHERE replaced_by = '1.1.0');
INSERT INTO schema_version (current_version, applied_at) VALUES ('1.1.0', now());

CREATE TABLE tasks (
    id          uuid        PRIMARY KEY,
    project_id  uuid        NOT NULL CONSTRAINT tasks_project_id_fkey REFERENCES projects (id) ON DELETE CASCADE,
    user_id     uuid        NOT NULL,
    title       text        NOT NULL,
    description text,
    status      text        NOT NULL DEFAULT 'todo'
                            CHECK (status IN ('todo', 'in_progress', 'review', 'done')),
    priority    text        NOT NULL DEFAULT 'medium'
                            CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
    due_date    date,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- The position of the task in the list of its project (the JSONB array was ordered), 0-based as in
    -- projects.tasks -> position.  NULL for tasks created after the migration.
    position    integer,
    -- What the columns cannot hold: the JSON keys they do not map (tags, anything else),
    -- and under "_original" the source values that were replaced (see the next file).
    extra       jsonb       NOT NULL DEFAULT '{}'::jsonb
);
COMMENT ON TABLE tasks IS 'Tasks normalized out of projects.tasks (JSONB) by the task-normalization migrations.';
COMMENT ON COLUMN tasks.extra IS 'Unmapped JSON keys of the source task; "_original" holds source values that were replaced.';

-- get_user_tasks_with_context(): the tasks of a user, newest first (id breaks ties).
CREATE INDEX tasks_user_created_idx ON tasks (user_id, created_at DESC, id);
-- The tasks of a project (the cascade of the FK, per-project counts, the project page).
CREATE INDEX tasks_project_position_idx ON tasks (project_id, position);

ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
CREATE POLICY tasks_via_project ON tasks
    USING (EXISTS (SELECT 1 FROM projects AS p WHERE p.id = tasks.project_id));

-- The roles that may use projects may use tasks, with the same privileges.
DO $$
DECLARE
    grant_row record;
BEGIN
    FOR grant_row IN
        SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee,
               string_agg(DISTINCT a.privilege_type, ', ') AS privileges
        FROM pg_class AS c
        CROSS JOIN LATERAL aclexplode(c.relacl) AS a
        WHERE c.oid = 'projects'::regclass
          AND a.grantee <> c.relowner
          AND a.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
        GROUP BY 1
    LOOP
        EXECUTE format('GRANT %s ON tasks TO %s', grant_row.privileges, grant_row.grantee);
    END LOOP;
END
$$;

CREATE TABLE task_migration_sessions (
    session_id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    started_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at           timestamptz,
    projects              integer,   -- projects backed up
    source_tasks          integer,   -- elements of the projects.tasks arrays
    migrated              integer,   -- rows inserted into tasks
    migrated_with_changes integer,   -- of which logged with a change (new id, default status...)
    not_migrated          integer,   -- array elements logged as not migrated
    unusable_values       integer    -- projects whose tasks was NULL or not an array
);
-- One session at a time runs (its finished_at is NULL while it does).
CREATE UNIQUE INDEX task_migration_sessions_running_idx ON task_migration_sessions ((true))
    WHERE finished_at IS NULL;
ALTER TABLE task_migration_sessions ENABLE ROW LEVEL SECURITY;

CREATE TABLE tasks_json_backup (
    session_id   uuid        NOT NULL REFERENCES task_migration_sessions (session_id) ON DELETE CASCADE,
    project_id   uuid        NOT NULL,  -- no FK: the backup outlives a deleted project
    tasks        jsonb,                 -- projects.tasks exactly as it was, NULL included
    backed_up_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, project_id)
);
ALTER TABLE tasks_json_backup ENABLE ROW LEVEL SECURITY;

CREATE TABLE task_migration_log (
    log_id       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id   uuid        NOT NULL REFERENCES task_migration_sessions (session_id) ON DELETE CASCADE,
    project_id   uuid        NOT NULL,
    source_index integer,               -- 0-based index in projects.tasks, NULL: the whole value
    task_id      uuid,                  -- the task it became, NULL when not migrated
    outcome      text        NOT NULL CHECK (outcome IN ('migrated', 'not_migrated')),
    codes        text[]      NOT NULL,  -- machine-readable: id_missing, status_unknown...
    reason       text        NOT NULL,  -- the same, for people
    source_value jsonb,                 -- the source element (or projects.tasks value)
    logged_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((outcome = 'migrated') = (task_id IS NOT NULL))
);
CREATE UNIQUE INDEX task_migration_log_source_idx
    ON task_migration_log (session_id, project_id, coalesce(source_index, -1));
ALTER TABLE task_migration_log ENABLE ROW LEVEL SECURITY;

-- The stage follows the schema version each step sets, the figures are those of the latest session.
CREATE VIEW migration_status AS
SELECT v.current_version AS schema_version,
       CASE v.current_version
           WHEN '1.1.0' THEN 'READY_FOR_TASK_MIGRATION'
           WHEN '1.2.0' THEN 'TASKS_MIGRATED'
           WHEN '1.3.0' THEN 'READY_FOR_VALIDATION'
           ELSE 'UNKNOWN'
       END AS migration_stage,
       s.session_id,
       s.started_at,
       s.finished_at,
       s.projects,
       s.source_tasks,
       s.migrated,
       s.migrated_with_changes,
       s.not_migrated,
       s.unusable_values
FROM (SELECT current_version FROM schema_version ORDER BY applied_at DESC LIMIT 1) AS v
LEFT JOIN LATERAL (
    SELECT * FROM task_migration_sessions ORDER BY started_at DESC LIMIT 1
) AS s ON true;

-- migrate:down

DROP VIEW migration_status;
DROP TABLE task_migration_log;
DROP TABLE tasks_json_backup;
DROP TABLE task_migration_sessions;
DROP TABLE tasks;

DELETE FROM schema_version WHERE current_version = '1.1.0';
INSERT INTO schema_version
SELECT (jsonb_populate_record(NULL::schema_version, saved_row)).*
FROM task_migration_replaced_versions
WHERE replaced_by = '1.1.0';
DROP TABLE task_migration_replaced_versions;

-- migrate:verify

-- schema_version holds exactly one row, 1.1.0
SELECT 'schema_version is not 1.1.0' AS problem, current_version
FROM schema_version
WHERE current_version <> '1.1.0'
UNION ALL
SELECT 'schema_version has no 1.1.0 row', NULL
WHERE NOT EXISTS (SELECT 1 FROM schema_version WHERE current_version = '1.1.0');

-- the stage the runbook checks before moving data
SELECT 'migration_status is not READY_FOR_TASK_MIGRATION' AS problem, m.migration_stage
FROM (SELECT 1) AS one
LEFT JOIN migration_status AS m ON true
WHERE m.migration_stage IS DISTINCT FROM 'READY_FOR_TASK_MIGRATION';

-- every object in place, the tasks table empty and protected by RLS
SELECT 'missing: ' || name AS problem
FROM unnest(ARRAY['tasks', 'tasks_user_created_idx', 'tasks_project_position_idx', 'task_migration_sessions',
                  'tasks_json_backup', 'task_migration_log', 'migration_status']) AS name
WHERE to_regclass(name) IS NULL
UNION ALL
SELECT 'tasks is not empty' WHERE EXISTS (SELECT 1 FROM tasks)
UNION ALL
SELECT 'row-level security is off on ' || c.relname
FROM pg_class AS c
WHERE c.oid IN ('tasks'::regclass, 'task_migration_log'::regclass, 'tasks_json_backup'::regclass,
                'task_migration_sessions'::regclass)
  AND NOT c.relrowsecurity;

-- the replaced schema_version rows are saved, so the down part can put them back
SELECT 'replaced schema_version rows not saved' AS problem
WHERE (SELECT count(*) FROM task_migration_replaced_versions WHERE replaced_by = '1.1.0') = 0;
