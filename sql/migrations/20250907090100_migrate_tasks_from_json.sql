-- Task normalization, step 2 of 3 (schema 1.2.0): projects.tasks (JSONB arrays) -> tasks.
--
-- The runbook's "Data Backup and Migration" step.  Set-based: every array element is read
-- once by jsonb_array_elements WITH ORDINALITY into a staging table, judged there, and
-- inserted in two statements (tasks, then the log); no loop over rows.
--
-- What it does, in one transaction:
--   1. locks projects against writes (SHARE ROW EXCLUSIVE, within the lock_timeout of the
--      session: reads go on, writers wait, and so does a second migration) and refuses to
--      run where row-level security would hide projects from it;
--   2. opens a session (task_migration_sessions) and copies every project's tasks value,
--      exactly, into tasks_json_backup: NULLs, objects, strings, numbers, empty arrays;
--   3. migrates the elements of the backed-up arrays and logs, in task_migration_log, every
--      element (and every projects.tasks value) that was not migrated exactly as it was.
-- projects.tasks is left as it is: the runbook drops it only after 7 days of stable
-- operation.  Rollback (the down part) still puts every value back from the backup and
-- checks that each project's tasks equals it (jsonb equality, NULLs included).
--
-- Accounting, zero silent loss: every element of every projects.tasks array becomes either a
-- row of tasks (tasks.position = its 0-based index) or a log row with outcome
-- 'not_migrated'; never both, never neither (the verify part checks it, per element).
-- Elements migrated with a change also get a log row (outcome 'migrated', the task's id).
-- Log rows carry codes (for queries and tests), a reason (for people) and the source value.
--
-- Messy data, case by case:
--   projects.tasks NULL (SQL or JSON null)     nothing to migrate; one project-level log row
--                                               (source_index NULL), code tasks_null
--   projects.tasks an object, string, number,  not migrated (not even an object that looks
--     boolean (not an array)                    like a task: the application never showed it
--                                               as a list); project-level log row, code
--                                               tasks_not_array; the value stays in
--                                               tasks_json_backup and in the log row
--   element not an object (string, number,     not migrated; log row, code
--     null, nested array)                       element_not_object, with the element
--   element an object (even {})                migrated; each field as below
--   id missing or null                          new deterministic id
--                                               md5('pgrunbook-task:' || project_id || ':' || index)::uuid,
--                                               code id_missing
--   id not a uuid string (8-4-4-4-12 hex,      same new id, code id_invalid, the source id in
--     any case)                                 extra._original.id
--   id used twice (same project or another)   the first use keeps it (order: the project's
--                                               created_at, project id, index: the older
--                                               project is where a copied task came from);
--                                               later uses get the new id, code id_duplicate,
--                                               the reason names the first use, the source id
--                                               in extra._original.id.  Identical duplicate
--                                               objects are both kept: the user saw both.
--   title missing/null, blank, not a string   'Untitled task', code title_missing /
--                                               title_blank / title_invalid, source value in
--                                               extra._original.title (when there was one)
--   description not a string (null is fine)   NULL, code description_invalid, source value kept
--   status 'Done', ' in progress', 'IN-PROGRESS'  read lower case, trimmed, each space or dash
--                                               as _; when that gives a known status it is
--                                               used, code status_normalized, source value kept
--   status missing/null                        'todo', code status_missing
--   status unknown ('blocked', 3, {})          'todo', code status_unknown, source value kept
--   priority: same three rules                 default 'medium' (priority_normalized,
--                                               priority_missing, priority_unknown)
--   due_date missing/null                       NULL (no due date is normal; not logged)
--   due_date not a valid 'YYYY-MM-DD'          NULL, code due_date_invalid, source value kept:
--     ('2025-13-45', '2024-02-30', 'tomorrow',  words such as 'tomorrow' or 'today' would
--     '', 20250101, '2025-1-5', '05/01/2025')   read differently on every run, other layouts
--                                               depend on DateStyle: only ISO dates are read
--   created_at missing/null                     the project's created_at, code created_at_missing
--   created_at not ISO 8601                     the project's created_at, code
--     (YYYY-MM-DD[(T| )HH:MM[:SS[.f]][Z|+hh[:mm]]]) created_at_invalid, source value kept;
--                                               without an offset a time is read as UTC (not
--                                               logged: it is a valid timestamp)
--   updated_at missing/null                     created_at (the demo's tasks have none; not logged)
--   updated_at not ISO 8601                     created_at, code updated_at_invalid, source kept
--   any other key (tags, assignee...)          kept as is in extra (not logged)
--   a key named "_original" (ours in extra)    moved to extra._original._original, code
--                                               original_key_moved
-- user_id is the project's.  Nothing depends on the session's TimeZone or DateStyle, so the
-- same data always migrates to the same rows, ids and log included (only the session id and
-- the times differ).  Objects are inserted in (user, newest first) order, the order the
-- per-user query reads them in.  Fast on PostgreSQL 16 and newer (pg_input_is_valid); older
-- servers take a slower path with the same results (see the helpers below).

-- migrate:up

SET LOCAL work_mem = '128MB';  -- the staging sorts stay in memory at 100,000 tasks
LOCK TABLE projects IN SHARE ROW EXCLUSIVE MODE;

DO $$
BEGIN
    IF row_security_active('projects') THEN
        RAISE EXCEPTION 'row-level security hides projects from %: run the task migration as the table owner or a BYPASSRLS role', current_user;
    END IF;
END
$$;

INSERT INTO task_migration_replaced_versions (replaced_by, saved_row)
SELECT '1.2.0', to_jsonb(v) FROM schema_version AS v;
DELETE FROM schema_version AS v
WHERE to_jsonb(v) IN (SELECT saved_row FROM task_migration_replaced_versions WHERE replaced_by = '1.2.0');
INSERT INTO schema_version (current_version, applied_at) VALUES ('1.2.0', now());

INSERT INTO task_migration_sessions DEFAULT VALUES;

INSERT INTO tasks_json_backup (session_id, project_id, tasks, backed_up_at)
SELECT s.session_id, p.id, p.tasks, now()
FROM projects AS p
CROSS JOIN task_migration_sessions AS s
WHERE s.finished_at IS NULL;

-- Helpers for this transaction only (dropped below).  They never raise: a value they cannot
-- read exactly is NULL, and the caller logs it.  Plain SQL expressions the planner inlines
-- into the query (no call per element), LIKE and translate() check a layout, and
-- pg_input_is_valid() (PostgreSQL 16+) the value, before any cast: at 100,000 tasks a
-- regular expression per field is what would cost the most.  Before PostgreSQL 16 (or with
-- SET pgrunbook.task_migration_portable = on) the check is a cast in an exception block:
-- the same answers, more slowly.
DO $$
BEGIN
    IF current_setting('server_version_num')::integer >= 160000
       AND coalesce(current_setting('pgrunbook.task_migration_portable', true), '') <> 'on' THEN
        CREATE FUNCTION task_migration_valid(value text, type_name text) RETURNS boolean
        LANGUAGE sql STABLE AS 'SELECT pg_input_is_valid(value, type_name)';
    ELSE
        CREATE FUNCTION task_migration_valid(value text, type_name text) RETURNS boolean
        LANGUAGE plpgsql STABLE AS $body$
        BEGIN
            CASE type_name
                WHEN 'uuid' THEN PERFORM value::uuid;
                WHEN 'date' THEN PERFORM value::date;
                ELSE PERFORM value::timestamptz;
            END CASE;
            RETURN true;
        EXCEPTION WHEN data_exception THEN
            RETURN false;
        END
        $body$;
    END IF;
END
$$;

-- A JSON string holding a uuid in its canonical 8-4-4-4-12 form (any case).
CREATE FUNCTION task_migration_uuid(value jsonb) RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN jsonb_typeof(value) = 'string'
           THEN CASE WHEN value #>> '{}' LIKE '________-____-____-____-____________'
                          AND task_migration_valid(value #>> '{}', 'uuid')
                     THEN (value #>> '{}')::uuid END END
$$;

-- A JSON string YYYY-MM-DD naming a real calendar day (tomorrow is valid input for
-- PostgreSQL, and other layouts depend on DateStyle: only this one is read).
CREATE FUNCTION task_migration_date(value jsonb) RETURNS date
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN jsonb_typeof(value) = 'string'
           THEN CASE WHEN value #>> '{}' LIKE '____-__-__'
                          AND translate(value #>> '{}', '0123456789', '') = '--'
                          AND task_migration_valid(value #>> '{}', 'date')
                     THEN (value #>> '{}')::date END END
$$;

-- A JSON string holding an ISO 8601 timestamp, YYYY-MM-DD[(T| )HH:MM[:SS[.f]][Z|+hh[:mm]]],
-- without an offset, UTC.  The layouts of the application (...THH:MM:SS[.fff]Z) take a fast
-- path, the others go through a regular expression.
CREATE FUNCTION task_migration_timestamptz(value jsonb) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN jsonb_typeof(value) = 'string'
           THEN CASE WHEN CASE WHEN value #>> '{}' LIKE '____-__-__T__:__:__Z'
                                    OR value #>> '{}' LIKE '____-__-__T__:__:__.___Z'
                               THEN translate(value #>> '{}', '0123456789', '') IN ('--T::Z', '--T::.Z')
                               ELSE value #>> '{}' ~ ('^[0-9]{4}-[0-9]{2}-[0-9]{2}'
                                   '(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,9})?)?'
                                   '(?:Z|[+-](?:0[0-9]|1[0-4])(?::?[0-5][0-9])?)?)?$')
                          END
                          AND task_migration_valid(value #>> '{}', 'timestamptz')
                     THEN CASE WHEN right(value #>> '{}', 1) = 'Z'
                                    OR strpos(substr(value #>> '{}', 11), '+') > 0
                                    OR strpos(substr(value #>> '{}', 11), '-') > 0
                               THEN (value #>> '{}')::timestamptz
                               ELSE (value #>> '{}')::timestamp AT TIME ZONE 'UTC' END END END
$$;

-- status and priority: lower case, trimmed, spaces and dashes read as underscores
CREATE FUNCTION task_migration_word(value jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(value) = 'string'
           THEN translate(lower(btrim(value #>> '{}', E' \t\r\n')), ' -', '__') END
$$;

-- One row per array element, judged.  The expensive readings happen once, in the subquery
-- with the window (which the planner keeps as is), the outer layers only combine them.
CREATE TEMPORARY TABLE task_migration_stage ON COMMIT DROP AS
WITH parsed AS (
    SELECT b.session_id,
           b.project_id,
           p.user_id,
           p.created_at AS project_created_at,
           (e.ord - 1)::integer AS source_index,
           e.elem,
           jsonb_typeof(e.elem) = 'object' AS is_object,
           coalesce(e.elem -> 'id', 'null') = 'null' AS id_absent,
           CASE WHEN jsonb_typeof(e.elem) = 'object' THEN task_migration_uuid(e.elem -> 'id') END AS parsed_id,
           task_migration_word(e.elem -> 'status') AS status_read,
           task_migration_word(e.elem -> 'priority') AS priority_read,
           task_migration_date(e.elem -> 'due_date') AS due_date_read,
           task_migration_timestamptz(e.elem -> 'created_at') AS created_read,
           task_migration_timestamptz(e.elem -> 'updated_at') AS updated_read,
           -- the first use of an id keeps it
           row_number() OVER first_use AS id_use,
           first_value(b.project_id) OVER first_use AS id_first_project,
           first_value((e.ord - 1)::integer) OVER first_use AS id_first_index
    FROM tasks_json_backup AS b
    JOIN task_migration_sessions AS s ON s.session_id = b.session_id AND s.finished_at IS NULL
    JOIN projects AS p ON p.id = b.project_id
    CROSS JOIN LATERAL jsonb_array_elements(
        CASE WHEN jsonb_typeof(b.tasks) = 'array' THEN b.tasks ELSE '[]'::jsonb END
    ) WITH ORDINALITY AS e (elem, ord)
    WINDOW first_use AS (PARTITION BY CASE WHEN jsonb_typeof(e.elem) = 'object'
                                           THEN task_migration_uuid(e.elem -> 'id') END
                         ORDER BY p.created_at, b.project_id, e.ord)
),
judged AS (
    SELECT parsed.*,
           CASE WHEN id_absent THEN 'id_missing'
                WHEN parsed_id IS NULL THEN 'id_invalid'
                WHEN id_use > 1 THEN 'id_duplicate' END AS id_problem,
           CASE WHEN coalesce(elem -> 'title', 'null') = 'null' THEN 'title_missing'
                WHEN jsonb_typeof(elem -> 'title') <> 'string' THEN 'title_invalid'
                WHEN btrim(elem ->> 'title', E' \t\r\n') = '' THEN 'title_blank' END AS title_problem,
           CASE WHEN jsonb_typeof(elem -> 'description') NOT IN ('string', 'null')
                THEN 'description_invalid' END AS description_problem,
           CASE WHEN coalesce(elem -> 'status', 'null') = 'null' THEN 'status_missing'
                WHEN status_read IS NULL OR status_read NOT IN ('todo', 'in_progress', 'review', 'done')
                    THEN 'status_unknown'
                WHEN status_read <> elem ->> 'status' THEN 'status_normalized' END AS status_problem,
           CASE WHEN coalesce(elem -> 'priority', 'null') = 'null' THEN 'priority_missing'
                WHEN priority_read IS NULL OR priority_read NOT IN ('low', 'medium', 'high', 'urgent')
                    THEN 'priority_unknown'
                WHEN priority_read <> elem ->> 'priority' THEN 'priority_normalized' END AS priority_problem,
           CASE WHEN coalesce(elem -> 'due_date', 'null') <> 'null' AND due_date_read IS NULL
                THEN 'due_date_invalid' END AS due_date_problem,
           CASE WHEN coalesce(elem -> 'created_at', 'null') = 'null' THEN 'created_at_missing'
                WHEN created_read IS NULL THEN 'created_at_invalid' END AS created_problem,
           CASE WHEN coalesce(elem -> 'updated_at', 'null') <> 'null' AND updated_read IS NULL
                THEN 'updated_at_invalid' END AS updated_problem,
           CASE WHEN elem ? '_original' THEN 'original_key_moved' END AS original_key_problem
    FROM parsed
    OFFSET 0  -- evaluated once per element: the layers below use each column several times
),
mapped AS (
    SELECT judged.*,
           CASE WHEN id_problem IS NULL THEN parsed_id
                ELSE md5('pgrunbook-task:' || project_id || ':' || source_index)::uuid END AS task_id,
           CASE WHEN status_problem IS NULL OR status_problem = 'status_normalized'
                THEN status_read ELSE 'todo' END AS status,
           CASE WHEN priority_problem IS NULL OR priority_problem = 'priority_normalized'
                THEN priority_read ELSE 'medium' END AS priority,
           coalesce(created_read, project_created_at) AS created_at,
           array_remove(ARRAY[id_problem, title_problem, description_problem, status_problem, priority_problem,
                              due_date_problem, created_problem, updated_problem, original_key_problem],
                        NULL) AS codes,
           -- replaced values whose source value is kept in extra._original
           (id_problem IS NOT NULL AND elem ? 'id')
               OR (title_problem IS NOT NULL AND elem ? 'title')
               OR description_problem IS NOT NULL
               OR (status_problem IS NOT NULL AND elem ? 'status')
               OR (priority_problem IS NOT NULL AND elem ? 'priority')
               OR due_date_problem IS NOT NULL
               OR (created_problem IS NOT NULL AND elem ? 'created_at')
               OR updated_problem IS NOT NULL AS kept_originals
    FROM judged
    OFFSET 0
)
SELECT session_id, project_id, user_id, source_index, is_object,
       CASE WHEN is_object THEN task_id END AS task_id,
       CASE WHEN title_problem IS NULL THEN elem ->> 'title' ELSE 'Untitled task' END AS title,
       CASE WHEN jsonb_typeof(elem -> 'description') = 'string' THEN elem ->> 'description' END AS description,
       status,
       priority,
       due_date_read AS due_date,
       created_at,
       coalesce(updated_read, created_at) AS updated_at,
       CASE WHEN is_object THEN
           (elem - ARRAY['id', 'title', 'description', 'status', 'priority', 'due_date', 'created_at',
                         'updated_at', '_original'])
           || CASE WHEN kept_originals OR original_key_problem IS NOT NULL
                   THEN jsonb_build_object('_original',
                          CASE WHEN original_key_problem IS NOT NULL
                               THEN jsonb_build_object('_original', elem -> '_original') ELSE '{}' END
                       || CASE WHEN id_problem IS NOT NULL AND elem ? 'id'
                               THEN jsonb_build_object('id', elem -> 'id') ELSE '{}' END
                       || CASE WHEN title_problem IS NOT NULL AND elem ? 'title'
                               THEN jsonb_build_object('title', elem -> 'title') ELSE '{}' END
                       || CASE WHEN description_problem IS NOT NULL
                               THEN jsonb_build_object('description', elem -> 'description') ELSE '{}' END
                       || CASE WHEN status_problem IS NOT NULL AND elem ? 'status'
                               THEN jsonb_build_object('status', elem -> 'status') ELSE '{}' END
                       || CASE WHEN priority_problem IS NOT NULL AND elem ? 'priority'
                               THEN jsonb_build_object('priority', elem -> 'priority') ELSE '{}' END
                       || CASE WHEN due_date_problem IS NOT NULL
                               THEN jsonb_build_object('due_date', elem -> 'due_date') ELSE '{}' END
                       || CASE WHEN created_problem IS NOT NULL AND elem ? 'created_at'
                               THEN jsonb_build_object('created_at', elem -> 'created_at') ELSE '{}' END
                       || CASE WHEN updated_problem IS NOT NULL
                               THEN jsonb_build_object('updated_at', elem -> 'updated_at') ELSE '{}' END)
                   ELSE '{}' END
       END AS extra,
       CASE WHEN is_object THEN codes ELSE ARRAY['element_not_object'] END AS codes,
       CASE WHEN NOT is_object
            THEN format('array element is %s, not an object: not migrated',
                        CASE jsonb_typeof(elem) WHEN 'null' THEN 'null'
                                                WHEN 'array' THEN 'an array'
                                                ELSE 'a ' || jsonb_typeof(elem) END)
            WHEN cardinality(codes) > 0 THEN concat_ws('; ',
                CASE id_problem
                    WHEN 'id_missing' THEN format('no id: new id %s', task_id)
                    WHEN 'id_invalid' THEN format('id %s is not a uuid: new id %s', elem -> 'id', task_id)
                    WHEN 'id_duplicate' THEN format('id %s is already the id of project %s''s task %s: new id %s',
                                                    parsed_id, id_first_project, id_first_index, task_id)
                END,
                CASE title_problem
                    WHEN 'title_missing' THEN 'no title: "Untitled task"'
                    WHEN 'title_blank' THEN 'blank title: "Untitled task"'
                    WHEN 'title_invalid' THEN format('title %s is not a string: "Untitled task"', elem -> 'title')
                END,
                CASE WHEN description_problem IS NOT NULL
                     THEN format('description %s is not a string: NULL', elem -> 'description') END,
                CASE status_problem
                    WHEN 'status_missing' THEN 'no status: todo'
                    WHEN 'status_unknown' THEN format('unknown status %s: todo', elem -> 'status')
                    WHEN 'status_normalized' THEN format('status %s read as %s', elem -> 'status', status)
                END,
                CASE priority_problem
                    WHEN 'priority_missing' THEN 'no priority: medium'
                    WHEN 'priority_unknown' THEN format('unknown priority %s: medium', elem -> 'priority')
                    WHEN 'priority_normalized' THEN format('priority %s read as %s', elem -> 'priority', priority)
                END,
                CASE WHEN due_date_problem IS NOT NULL
                     THEN format('due_date %s is not a YYYY-MM-DD date: NULL', elem -> 'due_date') END,
                CASE created_problem
                    WHEN 'created_at_missing' THEN 'no created_at: the project''s created_at'
                    WHEN 'created_at_invalid'
                        THEN format('created_at %s is not an ISO 8601 timestamp: the project''s created_at',
                                    elem -> 'created_at')
                END,
                CASE WHEN updated_problem IS NOT NULL
                     THEN format('updated_at %s is not an ISO 8601 timestamp: created_at', elem -> 'updated_at') END,
                CASE WHEN original_key_problem IS NOT NULL
                     THEN 'the source key "_original" is kept as extra._original._original' END,
                CASE WHEN kept_originals THEN 'source values in extra._original' END)
       END AS reason,
       -- the log keeps the source element of every element it lists
       CASE WHEN NOT is_object OR cardinality(codes) > 0 THEN elem END AS source_value
FROM mapped;

-- The bulk-load recipe of PostgreSQL (Populating a Database): the foreign key and the secondary
-- indexes of the (new, still unused) tasks table go for the load and come back after it, one
-- validating join and two sorted builds instead of a check and two index insertions per task.
-- Same names and definitions as in 20250907090000_tasks_table.sql, all in this transaction.
ALTER TABLE tasks DROP CONSTRAINT tasks_project_id_fkey;
DROP INDEX tasks_user_created_idx;
DROP INDEX tasks_project_position_idx;

-- Stored in the order the per-user query reads them: the tasks of a user share pages.
INSERT INTO tasks (id, project_id, user_id, title, description, status, priority, due_date,
                   created_at, updated_at, position, extra)
SELECT task_id, project_id, user_id, title, description, status, priority, due_date,
       created_at, updated_at, source_index, extra
FROM task_migration_stage
WHERE is_object
ORDER BY user_id, created_at DESC, task_id;

CREATE INDEX tasks_user_created_idx ON tasks (user_id, created_at DESC, id);
CREATE INDEX tasks_project_position_idx ON tasks (project_id, position);
ALTER TABLE tasks ADD CONSTRAINT tasks_project_id_fkey
    FOREIGN KEY (project_id) REFERENCES projects (id) ON DELETE CASCADE;

INSERT INTO task_migration_log (session_id, project_id, source_index, task_id, outcome, codes, reason, source_value)
SELECT session_id, project_id, source_index, task_id,
       CASE WHEN is_object THEN 'migrated' ELSE 'not_migrated' END,
       codes, reason, source_value
FROM task_migration_stage
WHERE source_value IS NOT NULL OR NOT is_object
UNION ALL
SELECT b.session_id, b.project_id, NULL, NULL, 'not_migrated',
       CASE WHEN coalesce(b.tasks, 'null') = 'null' THEN ARRAY['tasks_null'] ELSE ARRAY['tasks_not_array'] END,
       CASE WHEN b.tasks IS NULL THEN 'projects.tasks is NULL: no tasks to migrate'
            WHEN b.tasks = 'null' THEN 'projects.tasks is JSON null: no tasks to migrate'
            ELSE format('projects.tasks is %s, not an array: not migrated (kept in tasks_json_backup)',
                        CASE jsonb_typeof(b.tasks) WHEN 'object' THEN 'an object' ELSE 'a ' || jsonb_typeof(b.tasks) END)
       END,
       b.tasks
FROM tasks_json_backup AS b
JOIN task_migration_sessions AS s ON s.session_id = b.session_id AND s.finished_at IS NULL
WHERE jsonb_typeof(b.tasks) IS DISTINCT FROM 'array';

UPDATE task_migration_sessions AS s
SET finished_at = clock_timestamp(),
    projects = (SELECT count(*) FROM tasks_json_backup AS b WHERE b.session_id = s.session_id),
    source_tasks = (SELECT count(*) FROM task_migration_stage),
    migrated = (SELECT count(*) FROM task_migration_stage WHERE is_object),
    migrated_with_changes = (SELECT count(*) FROM task_migration_stage WHERE is_object AND cardinality(codes) > 0),
    not_migrated = (SELECT count(*) FROM task_migration_stage WHERE NOT is_object),
    unusable_values = (SELECT count(*) FROM tasks_json_backup AS b
                       WHERE b.session_id = s.session_id AND jsonb_typeof(b.tasks) IS DISTINCT FROM 'array')
WHERE s.finished_at IS NULL;

DROP FUNCTION task_migration_word(jsonb);
DROP FUNCTION task_migration_timestamptz(jsonb);
DROP FUNCTION task_migration_date(jsonb);
DROP FUNCTION task_migration_uuid(jsonb);
DROP FUNCTION task_migration_valid(text, text);

ANALYZE tasks;

-- migrate:down

-- Put the tasks value of every project back from the backup of the first session, then
-- check it, project by project, before the backup goes.  Tasks created in the tasks table
-- after the migration are deleted with the rest: roll back before the application writes
-- to it.
LOCK TABLE projects IN SHARE ROW EXCLUSIVE MODE;

UPDATE projects AS p
SET tasks = b.tasks
FROM tasks_json_backup AS b
WHERE b.session_id = (SELECT session_id FROM task_migration_sessions ORDER BY started_at LIMIT 1)
  AND b.project_id = p.id
  AND p.tasks IS DISTINCT FROM b.tasks;

DO $$
DECLARE
    different bigint;
BEGIN
    SELECT count(*) INTO different
    FROM tasks_json_backup AS b
    JOIN projects AS p ON p.id = b.project_id
    WHERE b.session_id = (SELECT session_id FROM task_migration_sessions ORDER BY started_at LIMIT 1)
      AND p.tasks IS DISTINCT FROM b.tasks;
    IF different > 0 THEN
        RAISE EXCEPTION '% projects still differ from tasks_json_backup after the restore', different;
    END IF;
END
$$;

DELETE FROM tasks;
DELETE FROM task_migration_sessions;  -- and, by cascade, the log and the backup

DELETE FROM schema_version WHERE current_version = '1.2.0';
INSERT INTO schema_version
SELECT (jsonb_populate_record(NULL::schema_version, saved_row)).*
FROM task_migration_replaced_versions
WHERE replaced_by = '1.2.0';
DELETE FROM task_migration_replaced_versions WHERE replaced_by = '1.2.0';

-- migrate:verify

-- schema_version holds exactly one row, 1.2.0, and the stage moved on
SELECT 'schema_version is not 1.2.0' AS problem, current_version
FROM schema_version
WHERE current_version <> '1.2.0'
UNION ALL
SELECT 'schema_version has no 1.2.0 row', NULL
WHERE NOT EXISTS (SELECT 1 FROM schema_version WHERE current_version = '1.2.0')
UNION ALL
SELECT 'migration_status is not TASKS_MIGRATED', m.migration_stage
FROM (SELECT 1) AS one
LEFT JOIN migration_status AS m ON true
WHERE m.migration_stage IS DISTINCT FROM 'TASKS_MIGRATED';

-- the foreign key and the indexes the load set aside are back
SELECT 'missing: ' || name AS problem
FROM unnest(ARRAY['tasks_user_created_idx', 'tasks_project_position_idx']) AS name
WHERE to_regclass(name) IS NULL
UNION ALL
SELECT 'missing: tasks_project_id_fkey'
WHERE NOT EXISTS (SELECT 1 FROM pg_constraint
                  WHERE conrelid = 'tasks'::regclass AND conname = 'tasks_project_id_fkey'
                    AND contype = 'f' AND confrelid = 'projects'::regclass AND convalidated);

-- one finished session
SELECT 'expected one finished session' AS problem, count(*) AS sessions,
       count(*) FILTER (WHERE finished_at IS NULL) AS unfinished
FROM task_migration_sessions
HAVING count(*) <> 1 OR count(*) FILTER (WHERE finished_at IS NULL) > 0;

-- the backup holds the tasks value of every project exactly (jsonb equality, NULL included)
SELECT p.id AS project_id,
       CASE WHEN b.project_id IS NULL THEN 'no backup' ELSE 'backup differs' END AS problem
FROM projects AS p
LEFT JOIN tasks_json_backup AS b
       ON b.project_id = p.id
      AND b.session_id = (SELECT session_id FROM task_migration_sessions ORDER BY started_at DESC LIMIT 1)
WHERE b.project_id IS NULL OR b.tasks IS DISTINCT FROM p.tasks;

-- zero silent loss: each array element has exactly one outcome, a task at its position or
-- a not_migrated log row, and nothing else has one
WITH session AS (
    SELECT session_id FROM task_migration_sessions ORDER BY started_at DESC LIMIT 1
),
source AS (
    SELECT b.project_id, (e.ord - 1)::integer AS source_index
    FROM tasks_json_backup AS b
    CROSS JOIN LATERAL jsonb_array_elements(
        CASE WHEN jsonb_typeof(b.tasks) = 'array' THEN b.tasks ELSE '[]'::jsonb END
    ) WITH ORDINALITY AS e (elem, ord)
    WHERE b.session_id = (SELECT session_id FROM session)
),
outcomes AS (
    SELECT project_id, position AS source_index FROM tasks
    UNION ALL
    SELECT project_id, source_index
    FROM task_migration_log
    WHERE session_id = (SELECT session_id FROM session) AND outcome = 'not_migrated' AND source_index IS NOT NULL
)
SELECT project_id, source_index,
       count(*) FILTER (WHERE is_source) AS in_source,
       count(*) FILTER (WHERE NOT is_source) AS outcomes
FROM (SELECT project_id, source_index, true AS is_source FROM source
      UNION ALL
      SELECT project_id, source_index, false FROM outcomes) AS both_sides
GROUP BY project_id, source_index
HAVING count(*) FILTER (WHERE is_source) <> 1 OR count(*) FILTER (WHERE NOT is_source) <> 1;

-- every value of projects.tasks that is not an array has its project-level log row, and
-- only those
WITH session AS (
    SELECT session_id FROM task_migration_sessions ORDER BY started_at DESC LIMIT 1
),
unusable AS (
    SELECT project_id FROM tasks_json_backup
    WHERE session_id = (SELECT session_id FROM session) AND jsonb_typeof(tasks) IS DISTINCT FROM 'array'
),
logged AS (
    SELECT project_id FROM task_migration_log
    WHERE session_id = (SELECT session_id FROM session) AND source_index IS NULL
)
SELECT coalesce(u.project_id, l.project_id) AS project_id,
       CASE WHEN l.project_id IS NULL THEN 'not logged' ELSE 'logged but an array' END AS problem
FROM unusable AS u
FULL JOIN logged AS l ON l.project_id = u.project_id
WHERE u.project_id IS NULL OR l.project_id IS NULL;

-- a log row of a migrated element names its task, at the same place
SELECT l.log_id, l.project_id, l.source_index, l.task_id
FROM task_migration_log AS l
LEFT JOIN tasks AS t ON t.id = l.task_id
WHERE l.outcome = 'migrated'
  AND (t.id IS NULL OR t.project_id <> l.project_id OR t.position IS DISTINCT FROM l.source_index);

-- a task migrated without a log row holds exactly the values of its source element
WITH session AS (
    SELECT session_id FROM task_migration_sessions ORDER BY started_at DESC LIMIT 1
),
source AS (
    SELECT b.project_id, (e.ord - 1)::integer AS source_index, e.elem
    FROM tasks_json_backup AS b
    CROSS JOIN LATERAL jsonb_array_elements(
        CASE WHEN jsonb_typeof(b.tasks) = 'array' THEN b.tasks ELSE '[]'::jsonb END
    ) WITH ORDINALITY AS e (elem, ord)
    WHERE b.session_id = (SELECT session_id FROM session)
),
unlogged AS MATERIALIZED (
    SELECT t.*, s.elem
    FROM tasks AS t
    JOIN source AS s ON s.project_id = t.project_id AND s.source_index = t.position
    WHERE NOT EXISTS (SELECT 1 FROM task_migration_log AS l
                      WHERE l.session_id = (SELECT session_id FROM session)
                        AND l.project_id = t.project_id AND l.source_index = t.position)
)
SELECT id, project_id, position
FROM unlogged
WHERE id::text <> lower(elem ->> 'id')
   OR title IS DISTINCT FROM elem ->> 'title'
   OR description IS DISTINCT FROM elem ->> 'description'
   OR status IS DISTINCT FROM elem ->> 'status'
   OR priority IS DISTINCT FROM elem ->> 'priority'
   OR to_char(due_date, 'YYYY-MM-DD') IS DISTINCT FROM elem ->> 'due_date'
   OR extra IS DISTINCT FROM elem - ARRAY['id', 'title', 'description', 'status', 'priority', 'due_date',
                                          'created_at', 'updated_at']
   -- the layout of the application, the other valid ones are left to the parser
   OR CASE WHEN translate(elem ->> 'created_at', '0123456789', '9999999999') = '9999-99-99T99:99:99Z'
           THEN created_at IS DISTINCT FROM (elem ->> 'created_at')::timestamptz
           ELSE false END;

-- every task belongs to the user of its project
SELECT t.id, t.project_id, t.user_id, p.user_id AS project_user_id
FROM tasks AS t
JOIN projects AS p ON p.id = t.project_id
WHERE t.user_id IS DISTINCT FROM p.user_id;

-- the figures of the session agree with the tables
SELECT s.session_id, s.migrated, s.not_migrated, s.migrated_with_changes, s.unusable_values
FROM task_migration_sessions AS s
WHERE s.migrated <> (SELECT count(*) FROM tasks)
   OR s.not_migrated <> (SELECT count(*) FROM task_migration_log AS l
                         WHERE l.session_id = s.session_id AND l.outcome = 'not_migrated'
                           AND l.source_index IS NOT NULL)
   OR s.migrated_with_changes <> (SELECT count(*) FROM task_migration_log AS l
                                  WHERE l.session_id = s.session_id AND l.outcome = 'migrated')
   OR s.unusable_values <> (SELECT count(*) FROM task_migration_log AS l
                            WHERE l.session_id = s.session_id AND l.source_index IS NULL)
   OR s.source_tasks <> s.migrated + s.not_migrated;
