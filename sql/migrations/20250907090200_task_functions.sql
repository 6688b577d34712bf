-- Task normalization, step 3 of 3 (schema 1.3.0): the functions the runbook calls, and the
-- triggers that keep tasks.user_id equal to its project's user_id.
--
--   validate_task_migration()                   the runbook's "Validation and Cutover" check:
--                                               (validation_check, expected_count,
--                                               actual_count, status 'PASS' | 'FAIL')
--       total_tasks                  source array elements vs tasks + elements logged as
--                                    not migrated (zero silent loss)
--       projects_with_count_mismatch projects whose own figures disagree (expected 0)
--       unusable_values_logged       projects whose tasks is NULL or not an array vs those
--                                    with their project-level log row
--       orphaned_tasks               tasks without their project (expected 0)
--       user_mismatches              tasks whose user_id is not their project's (expected 0)
--       projects_changed_since_backup projects whose tasks differs from the backup, or that
--                                    the migration never saw (expected 0: the JSON moved on
--                                    and the tasks table did not follow)
--       migration_sessions           finished sessions (expected 1)
--     The source is the backup the migration read (the live projects.tasks for a project it
--     never saw).  Run it at migration time, before the application writes to tasks.
--
--   get_user_tasks_with_context(user, limit)    a user's tasks, newest first (created_at
--                                               DESC, id), with their project and client:
--                                               tasks_user_created_idx read up to the limit.
--                                               PL/pgSQL rather than an inlined SQL function:
--                                               its plan is made once per connection (an
--                                               inlined one is planned on every call, and
--                                               planning cost more than running it).
--                                               SECURITY INVOKER: row-level security applies
--                                               to the caller.
--
--   triggers                                    a task takes its project's user_id (insert,
--                                               or a move to another project); a project's
--                                               new owner takes its tasks along; an update
--                                               that does not set updated_at sets it to now().

-- migrate:up

INSERT INTO task_migration_replaced_versions (replaced_by, saved_row)
SELECT '1.3.0', to_jsonb(v) FROM schema_version AS v;
DELETE FROM schema_version AS v
WHERE to_jsonb(v) IN (SELECT saved_row FROM task_migration_replaced_versions WHERE replaced_by = '1.3.0');
INSERT INTO schema_version (current_version, applied_at) VALUES ('1.3.0', now());

CREATE FUNCTION validate_task_migration()
RETURNS TABLE (validation_check text, expected_count bigint, actual_count bigint, status text)
LANGUAGE sql STABLE
AS $$
WITH session AS (
    SELECT session_id FROM task_migration_sessions
    WHERE finished_at IS NOT NULL
    ORDER BY started_at
    LIMIT 1
),
source AS (
    SELECT p.id AS project_id,
           CASE WHEN b.project_id IS NULL THEN p.tasks ELSE b.tasks END AS tasks,
           b.project_id IS NOT NULL AND b.tasks IS NOT DISTINCT FROM p.tasks AS unchanged
    FROM projects AS p
    LEFT JOIN tasks_json_backup AS b
           ON b.project_id = p.id AND b.session_id = (SELECT session_id FROM session)
),
migrated AS (
    SELECT project_id, count(*) AS tasks FROM tasks GROUP BY project_id
),
logged AS (
    SELECT project_id,
           count(*) FILTER (WHERE source_index IS NOT NULL) AS elements,
           count(*) FILTER (WHERE source_index IS NULL) AS project_level
    FROM task_migration_log
    WHERE session_id = (SELECT session_id FROM session) AND outcome = 'not_migrated'
    GROUP BY project_id
),
per_project AS (
    SELECT s.project_id,
           CASE WHEN jsonb_typeof(s.tasks) = 'array' THEN jsonb_array_length(s.tasks) ELSE 0 END AS source_tasks,
           jsonb_typeof(s.tasks) IS DISTINCT FROM 'array' AS unusable,
           s.unchanged,
           coalesce(m.tasks, 0) AS migrated,
           coalesce(l.elements, 0) AS not_migrated,
           coalesce(l.project_level, 0) AS project_level
    FROM source AS s
    LEFT JOIN migrated AS m ON m.project_id = s.project_id
    LEFT JOIN logged AS l ON l.project_id = s.project_id
),
checks (ord, validation_check, expected_count, actual_count) AS (
    SELECT 1, 'total_tasks', sum(source_tasks)::bigint, sum(migrated + not_migrated)::bigint
    FROM per_project
    UNION ALL
    SELECT 2, 'projects_with_count_mismatch', 0,
           count(*) FILTER (WHERE source_tasks <> migrated + not_migrated)
    FROM per_project
    UNION ALL
    SELECT 3, 'unusable_values_logged', count(*) FILTER (WHERE unusable),
           count(*) FILTER (WHERE unusable AND project_level = 1)
    FROM per_project
    UNION ALL
    SELECT 4, 'orphaned_tasks', 0,
           (SELECT count(*) FROM tasks AS t WHERE NOT EXISTS (SELECT 1 FROM projects AS p WHERE p.id = t.project_id))
    UNION ALL
    SELECT 5, 'user_mismatches', 0,
           (SELECT count(*) FROM tasks AS t JOIN projects AS p ON p.id = t.project_id
            WHERE t.user_id IS DISTINCT FROM p.user_id)
    UNION ALL
    SELECT 6, 'projects_changed_since_backup', 0, count(*) FILTER (WHERE NOT unchanged)
    FROM per_project
    UNION ALL
    SELECT 7, 'migration_sessions', 1, (SELECT count(*) FROM task_migration_sessions WHERE finished_at IS NOT NULL)
)
SELECT validation_check, expected_count, actual_count,
       CASE WHEN expected_count IS NOT DISTINCT FROM actual_count THEN 'PASS' ELSE 'FAIL' END
FROM checks
ORDER BY ord
$$;
COMMENT ON FUNCTION validate_task_migration() IS 'The task migration''s completeness checks: every row should say PASS.';

CREATE FUNCTION get_user_tasks_with_context(p_user_id uuid, p_limit integer DEFAULT 50)
RETURNS TABLE (
    task_id        uuid,
    title          text,
    description    text,
    status         text,
    priority       text,
    due_date       date,
    created_at     timestamptz,
    updated_at     timestamptz,
    tags           jsonb,
    project_id     uuid,
    project_name   text,
    project_status text,
    client_id      uuid,
    client_name    text,
    client_email   text
)
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT t.id, t.title, t.description, t.status, t.priority, t.due_date, t.created_at, t.updated_at,
           t.extra -> 'tags',
           p.id, p.name, p.status,
           c.id, c.name, c.email
    FROM tasks AS t
    JOIN projects AS p ON p.id = t.project_id
    LEFT JOIN clients AS c ON c.id = p.client_id
    WHERE t.user_id = p_user_id
    ORDER BY t.created_at DESC, t.id
    LIMIT p_limit;
END
$$;
COMMENT ON FUNCTION get_user_tasks_with_context(uuid, integer) IS 'A user''s tasks, newest first, with project and client.';

CREATE FUNCTION tasks_user_from_project() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- a task whose project does not exist keeps its value and fails on the foreign key
    NEW.user_id := coalesce((SELECT p.user_id FROM projects AS p WHERE p.id = NEW.project_id), NEW.user_id);
    RETURN NEW;
END
$$;

CREATE TRIGGER tasks_user_from_project
    BEFORE INSERT OR UPDATE OF project_id, user_id ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_user_from_project();

-- SECURITY DEFINER: once a project changes owner, row-level security would hide its tasks
-- from the role that made the change, and they would stay behind.
CREATE FUNCTION tasks_follow_project_owner() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
BEGIN
    UPDATE tasks SET user_id = NEW.user_id
    WHERE project_id = NEW.id AND user_id IS DISTINCT FROM NEW.user_id;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION tasks_follow_project_owner() FROM PUBLIC;

CREATE TRIGGER tasks_follow_project_owner
    AFTER UPDATE OF user_id ON projects
    FOR EACH ROW WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION tasks_follow_project_owner();

CREATE FUNCTION tasks_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER tasks_touch_updated_at
    BEFORE UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_touch_updated_at();

-- migrate:down

DROP TRIGGER tasks_touch_updated_at ON tasks;
DROP TRIGGER tasks_follow_project_owner ON projects;
DROP TRIGGER tasks_user_from_project ON tasks;
DROP FUNCTION tasks_touch_updated_at();
DROP FUNCTION tasks_follow_project_owner();
DROP FUNCTION tasks_user_from_project();
DROP FUNCTION get_user_tasks_with_context(uuid, integer);
DROP FUNCTION validate_task_migration();

DELETE FROM schema_version WHERE current_version = '1.3.0';
INSERT INTO schema_version
SELECT (jsonb_populate_record(NULL::schema_version, saved_row)).*
FROM task_migration_replaced_versions
WHERE replaced_by = '1.3.0';
DELETE FROM task_migration_replaced_versions WHERE replaced_by = '1.3.0';

-- migrate:verify

-- schema_version holds exactly one row, 1.3.0, and the stage moved on
SELECT 'schema_version is not 1.3.0' AS problem, current_version
FROM schema_version
WHERE current_version <> '1.3.0'
UNION ALL
SELECT 'schema_version has no 1.3.0 row', NULL
WHERE NOT EXISTS (SELECT 1 FROM schema_version WHERE current_version = '1.3.0')
UNION ALL
SELECT 'migration_status is not READY_FOR_VALIDATION', m.migration_stage
FROM (SELECT 1) AS one
LEFT JOIN migration_status AS m ON true
WHERE m.migration_stage IS DISTINCT FROM 'READY_FOR_VALIDATION';

-- the validation of the runbook passes
SELECT * FROM validate_task_migration() WHERE status <> 'PASS';

-- the triggers are in place
SELECT 'missing trigger ' || name AS problem
FROM unnest(ARRAY['tasks_user_from_project', 'tasks_follow_project_owner', 'tasks_touch_updated_at']) AS name
WHERE NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = name AND NOT tgisinternal);

-- get_user_tasks_with_context() returns the newest tasks of the busiest user, only theirs, in order
WITH busiest AS (
    SELECT user_id FROM tasks GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1
),
got AS (
    SELECT g.*, row_number() OVER () AS n
    FROM busiest AS u, get_user_tasks_with_context(u.user_id, 20) AS g
),
expected AS (
    SELECT t.id, row_number() OVER (ORDER BY t.created_at DESC, t.id) AS n
    FROM tasks AS t
    WHERE t.user_id = (SELECT user_id FROM busiest)
    ORDER BY t.created_at DESC, t.id
    LIMIT 20
)
SELECT coalesce(g.n, e.n) AS n, g.task_id, e.id AS expected_task_id
FROM got AS g
FULL JOIN expected AS e ON e.n = g.n
WHERE g.task_id IS DISTINCT FROM e.id
   OR g.project_id NOT IN (SELECT id FROM projects WHERE user_id = (SELECT user_id FROM busiest));
