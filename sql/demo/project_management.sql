-- The runbook's project-management application, with a deterministic sample.
--
-- clients -> projects, each project holding its tasks as a JSONB array (the shape the
-- runbook's task-normalization migration starts from).  Sizes come from two settings the
-- caller sets first:  SET pgrunbook.demo_projects = '2000';  SET pgrunbook.demo_avg_tasks = '50';
-- Every value derives from generate_series and md5, so two runs produce identical data.

CREATE TABLE IF NOT EXISTS schema_version (
    current_version text        PRIMARY KEY,
    applied_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE clients (
    id         uuid PRIMARY KEY,
    user_id    uuid        NOT NULL,
    name       text        NOT NULL,
    email      text,
    created_at timestamptz NOT NULL
);

CREATE TABLE projects (
    id         uuid PRIMARY KEY,
    client_id  uuid        NOT NULL REFERENCES clients (id),
    user_id    uuid        NOT NULL,
    name       text        NOT NULL,
    status     text        NOT NULL DEFAULT 'active',
    budget     numeric(12, 2),
    tasks      jsonb       NOT NULL DEFAULT '[]'::jsonb,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

INSERT INTO schema_version (current_version, applied_at) VALUES ('1.0.0', timestamptz '2024-01-01 00:00:00+00');

INSERT INTO clients (id, user_id, name, email, created_at)
SELECT md5('client-' || c)::uuid,
       md5('user-' || (c % 200))::uuid,
       'Client ' || c,
       'client' || c || '@example.com',
       timestamptz '2024-01-01 00:00:00+00' + c * interval '1 hour'
FROM generate_series(1, greatest(1, current_setting('pgrunbook.demo_projects')::int / 5)) AS c;

INSERT INTO projects (id, client_id, user_id, name, status, budget, tasks, created_at, updated_at)
SELECT md5('project-' || p)::uuid,
       md5('client-' || cl)::uuid,
       md5('user-' || (cl % 200))::uuid,
       'Project ' || p,
       (ARRAY['active', 'on_hold', 'completed'])[1 + p % 3],
       ((p * 7919) % 1000000) / 100.0,
       (SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'id', md5('task-' || p || '-' || t)::uuid,
                   'title', 'Task ' || t || ' of project ' || p,
                   'description', repeat('Lorem ipsum dolor sit amet. ', 1 + (p * t) % 4),
                   'status', (ARRAY['todo', 'in_progress', 'review', 'done'])[1 + (p + t) % 4],
                   'priority', (ARRAY['low', 'medium', 'high', 'urgent'])[1 + (p * 7 + t) % 4],
                   'due_date', to_char(date '2025-01-01' + (p * 13 + t * 7) % 400, 'YYYY-MM-DD'),
                   'created_at', to_char(timestamptz '2024-06-01 00:00:00+00' + (p * 61 + t) * interval '1 minute',
                                         'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                   'tags', jsonb_build_array('tag' || (t % 7), 'tag' || (p % 11))
               ) ORDER BY t), '[]'::jsonb)
        FROM generate_series(1, (p * 37) % (2 * current_setting('pgrunbook.demo_avg_tasks')::int + 1)) AS t),
       timestamptz '2024-03-01 00:00:00+00' + p * interval '10 minutes',
       timestamptz '2024-09-01 00:00:00+00' + p * interval '10 minutes'
FROM generate_series(1, current_setting('pgrunbook.demo_projects')::int) AS p,
     LATERAL (SELECT 1 + p % greatest(1, current_setting('pgrunbook.demo_projects')::int / 5) AS cl) AS x;

-- The usual indexes: per-user lookups, the client join, task search inside the JSONB.
CREATE INDEX clients_user_id_idx ON clients (user_id);
CREATE INDEX projects_user_id_idx ON projects (user_id);
CREATE INDEX projects_client_id_idx ON projects (client_id);
CREATE INDEX projects_tasks_gin_idx ON projects USING gin (tasks jsonb_path_ops);

-- Row-level security: an application role sees only its user's rows.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pm_app_user') THEN
        CREATE ROLE pm_app_user NOLOGIN;
    END IF;
END $$;
GRANT SELECT, INSERT, UPDATE, DELETE ON clients, projects TO pm_app_user;
ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE clients ENABLE ROW LEVEL SECURITY;
ALTER TABLE schema_version ENABLE ROW LEVEL SECURITY;
CREATE POLICY projects_owner ON projects TO pm_app_user
    USING (user_id = nullif(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY clients_owner ON clients TO pm_app_user
    USING (user_id = nullif(current_setting('app.user_id', true), '')::uuid);

-- (The loader runs ANALYZE in a statement of its own: statistics counters of this script's
-- inserts are flushed when it ends, after any ANALYZE it would run itself.)
