"""What the handler tests share: a database behind a Secrets Manager secret, both buckets, an
SNS topic whose messages a test reads, and the environment a deployed function has."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pgrunbook.settings.model import Settings
from tests.lambda_env import Inbox, database_secret

PASSWORD = "Lambda-Secret-pw-4f1e77"
APP = """
CREATE TABLE projects (id int PRIMARY KEY, user_id int NOT NULL, name text);
CREATE TABLE tasks (id int PRIMARY KEY, project_id int NOT NULL, user_id int NOT NULL, title text);
INSERT INTO projects SELECT g, g % 10, 'p' || g FROM generate_series(1, 50) g;
INSERT INTO tasks SELECT g, 1 + g % 50, (1 + g % 50) % 10, 't' || g FROM generate_series(1, 500) g;
ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
ANALYZE;
"""


@dataclass
class Env:
    source: object
    secret_arn: str
    inbox: Inbox
    settings: Settings

    def messages(self) -> list[dict]:
        return self.inbox.messages()


@pytest.fixture
def env(s3, new_db, pg18, monkeypatch, tmp_path) -> Env:
    source = new_db(sql=APP)
    arn = database_secret(source, PASSWORD, name="pgrunbook/test-db")
    inbox = Inbox()
    topic = inbox.topic_arn
    variables = {
        "PGRUNBOOK_DATABASE_SECRET_ARN": arn,
        **s3.variables(),
        "PGRUNBOOK_RESTORE_TARGET_URL": pg18.conninfo.libpq_uri(),
        "PGRUNBOOK_DR_RESTORE_TARGET_URL": pg18.conninfo.libpq_uri(),
        "PGRUNBOOK_SNS_TOPIC_ARN": topic,
        "PGRUNBOOK_WORK_DIR": str(tmp_path),
        "PGRUNBOOK_HOME": str(tmp_path / "home"),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
    }
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    return Env(source, arn, inbox, Settings.load())
