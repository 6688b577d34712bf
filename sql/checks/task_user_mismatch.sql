-- check: task_user_mismatch
-- severity: warning
-- requires: tasks, projects
-- description: Tasks whose user_id differs from their project's user_id (a NULL on one side included): under per-user row-level security the owner may not see them.
--
-- The runbook's "user_mismatch" query.  The runbook compares with !=, which is never
-- true when either side is NULL; IS DISTINCT FROM also catches a task that lost its user
-- (or a project without one), which is exactly the row RLS would hide.  Tasks without an
-- existing project are the orphaned_tasks check's business and are not repeated here.
SELECT t.id AS task_id,
       t.project_id,
       t.user_id AS task_user_id,
       p.user_id AS project_user_id
FROM tasks AS t
JOIN projects AS p ON p.id = t.project_id
WHERE t.user_id IS DISTINCT FROM p.user_id
ORDER BY t.id
