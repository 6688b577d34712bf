-- check: orphaned_tasks
-- severity: critical
-- requires: tasks, projects
-- description: Tasks whose project does not exist, or that have no project at all (project_id NULL), as the runbook's orphaned_tasks query counts them.
--
-- The runbook's "orphaned_tasks" query (troubleshooting, migration validation failures).
-- Like the runbook's LEFT JOIN ... WHERE p.id IS NULL, a task whose project_id is NULL
-- counts as orphaned too: the normalization migration creates every task from a
-- project's JSONB array, so a task without a project is a damaged row, not a valid state.
-- NOT EXISTS rather than a join keeps NULL handling explicit and each task listed once.
SELECT t.id AS task_id,
       t.project_id,
       CASE WHEN t.project_id IS NULL THEN 'no project_id' ELSE 'project missing' END AS problem
FROM tasks AS t
WHERE NOT EXISTS (SELECT 1 FROM projects AS p WHERE p.id = t.project_id)
ORDER BY t.id
