"""The runbook's task normalization (sql/migrations/), on a real PostgreSQL: the demo
dataset plus tests/fixtures/messy_tasks.sql, migrated, validated, queried, rolled back to
the exact original JSON, and migrated again.

Until pgrunbook's migration engine runs them, a small runner here reads the dbmate-style
files (``-- migrate:up`` / ``-- migrate:down`` / ``-- migrate:verify``), runs each up part
and its verify queries in one transaction (a verify query returns violating rows: any row
fails the file), and each down part in a transaction of its own."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgrunbook.adapters.postgres.connection import Database, quote_ident
from pgrunbook.checks.sql import load_checks, run_checks
from pgrunbook.domain.errors import SqlError
from pgrunbook.entrypoints.demo import load_demo_dataset
from pgrunbook.settings.files import sql_dir
from pgrunbook.workflows.migrate.engine import Migrator
from pgrunbook.workflows.migrate.files import MigrationFile, discover
from pgrunbook.workflows.migrate.lint import lint_all

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures"
MESSY_SQL = (FIXTURES / "messy_tasks.sql").read_text()
DEMO_SIZE = {"projects": 300, "avg_tasks": 20}

# -- running the files: pgrunbook's engine, and its parts by hand where a test needs them --------

MIGRATIONS = discover(sql_dir() / "migrations")


class VerificationFailed(AssertionError):
    pass


def apply_up(db: Database, migration: MigrationFile) -> None:
    """The up part, then its verify queries, in one transaction."""
    db.run("BEGIN")
    try:
        for statement in migration.up.statements:
            db.run(statement.text)
        for query in migration.verify.statements:
            rows = db.rows(query.text)
            if rows:
                raise VerificationFailed(f"{migration.path.name}:{query.line}: -> {rows[:5]}")
        db.run("COMMIT")
    except BaseException:
        db.run("ROLLBACK")
        raise


def apply_down(db: Database, migration: MigrationFile) -> None:
    db.run("BEGIN")
    try:
        for statement in migration.down.statements:
            db.run(statement.text)
        db.run("COMMIT")
    except BaseException:
        db.run("ROLLBACK")
        raise


def engine(db: Database) -> Migrator:
    return Migrator(db.info, sql_dir() / "migrations", applied_by="pytest")


def migrate(db: Database) -> None:
    """All three, through pgrunbook's engine (one transaction each, verify parts included)."""
    result = engine(db).apply()
    assert result.ok and len(result.done) == len(MIGRATIONS), result.to_dict()


def roll_back(db: Database) -> None:
    result = engine(db).rollback(steps=len(MIGRATIONS))
    assert result.ok and len(result.done) == len(MIGRATIONS), result.to_dict()


def verify_rows(db: Database, migration: MigrationFile) -> list[dict[str, Any]]:
    return [row for query in migration.verify.statements for row in db.rows(query.text)]


# -- the data -------------------------------------------------------------------------------------


def messy_project(n: int) -> uuid.UUID:
    return uuid.UUID(f"eeeeeeee-0000-4000-8000-0000000000{n:02d}")


def messy_user(n: int) -> uuid.UUID:
    return uuid.UUID(f"aaaaaaaa-0000-4000-8000-00000000000{n}")


def md5_uuid(text: str) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(text.encode()).hexdigest())  # noqa: S324 - PostgreSQL's md5(...)::uuid


def generated_id(project: uuid.UUID, index: int) -> uuid.UUID:
    return md5_uuid(f"pgrunbook-task:{project}:{index}")


def utc(year: int, month: int, day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=dt.UTC)


def create_demo(admin: Database, *, messy: bool) -> str:
    name = f"t_tasks_{secrets.token_hex(4)}"
    load_demo_dataset(admin, name, **DEMO_SIZE)
    if messy:
        with Database.connect(admin.info.with_dbname(name)) as db:
            db.run(MESSY_SQL)
            db.run("ANALYZE")
    return name


@pytest.fixture(scope="module")
def admin(pg18) -> Iterator[Database]:
    with Database.connect(pg18.conninfo) as db:
        yield db


@pytest.fixture
def fresh_db(admin) -> Iterator:
    """Factory: a new demo database (with the messy projects or without), dropped afterwards."""
    made = []

    def make(*, messy: bool = True) -> Database:
        name = create_demo(admin, messy=messy)
        db = Database.connect(admin.info.with_dbname(name))
        made.append((name, db))
        return db

    yield make
    for name, db in made:
        db.close()
        admin.run(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


@pytest.fixture(scope="module")
def migrated(admin) -> Iterator[Database]:
    """The demo plus the messy projects, all three migrations applied.  Tests that change
    anything do it in a transaction they roll back."""
    name = create_demo(admin, messy=True)
    with Database.connect(admin.info.with_dbname(name)) as db:
        migrate(db)
        yield db
    admin.run(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


def source_element_count(db: Database, table: str = "projects") -> int:
    return int(
        db.scalar(
            f"SELECT coalesce(sum(jsonb_array_length(tasks)), 0) FROM {table} "
            "WHERE jsonb_typeof(tasks) = 'array'"
        )
    )


def catalog(db: Database) -> dict[str, Any]:
    """What a rollback must leave exactly as it found it."""
    return {
        "relations": db.run(
            "SELECT c.relname, c.relkind, c.relrowsecurity FROM pg_class AS c "
            "WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1"
        ),
        "columns": db.run(
            "SELECT attrelid::regclass::text, attname, atttypid::regtype::text, attnotnull FROM pg_attribute "
            "WHERE attrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace "
            "AND relkind = 'r') AND attnum > 0 AND NOT attisdropped ORDER BY 1, 2"
        ),
        "functions": db.run(
            "SELECT oid::regprocedure::text FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1"
        ),
        "triggers": db.run("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1"),
        "policies": db.run("SELECT tablename, policyname FROM pg_policies ORDER BY 1, 2"),
        "grants": db.run("SELECT relname, relacl::text FROM pg_class WHERE relname = 'projects'"),
        "schema_version": db.run("SELECT to_jsonb(v)::text FROM schema_version AS v ORDER BY 1"),
    }


# -- the files ---------------------------------------------------------------------------------


def test_the_files_are_ordered_dbmate_migrations_with_all_three_parts_and_lint_clean():
    names = [m.path.name for m in MIGRATIONS]
    assert len(MIGRATIONS) == 3 and names == sorted(names)
    for migration in MIGRATIONS:
        assert re.fullmatch(r"\d{14}_[a-z0-9_]+\.sql", migration.path.name)
        assert migration.transaction
        assert not (migration.up.empty or migration.down.empty or migration.verify.empty), migration.path.name
    # nothing destructive, nothing that cannot run in a transaction, every down part present
    assert lint_all(MIGRATIONS) == []


# -- migrate and validate --------------------------------------------------------------------


def test_validation_passes_and_nothing_is_lost(migrated):
    db = migrated
    validation = db.rows("SELECT * FROM validate_task_migration()")
    assert [r["validation_check"] for r in validation] == [
        "total_tasks",
        "projects_with_count_mismatch",
        "unusable_values_logged",
        "orphaned_tasks",
        "user_mismatches",
        "projects_changed_since_backup",
        "migration_sessions",
    ]
    assert all(r["status"] == "PASS" for r in validation), validation

    elements = source_element_count(db)
    migrated_count = db.scalar("SELECT count(*) FROM tasks")
    not_migrated = db.scalar(
        "SELECT count(*) FROM task_migration_log WHERE outcome = 'not_migrated' AND source_index IS NOT NULL"
    )
    assert elements == migrated_count + not_migrated
    assert not_migrated == 4  # project 11's four elements that are not objects
    totals = {r["validation_check"]: r for r in validation}
    assert totals["total_tasks"]["expected_count"] == elements == totals["total_tasks"]["actual_count"]
    assert totals["unusable_values_logged"]["expected_count"] == 6  # projects 4 to 9

    status = db.rows("SELECT * FROM migration_status")
    assert len(status) == 1
    assert status[0]["migration_stage"] == "READY_FOR_VALIDATION"
    assert status[0]["schema_version"] == "1.3.0"
    assert status[0]["source_tasks"] == elements
    assert status[0]["migrated"] == migrated_count
    assert status[0]["not_migrated"] == 4
    assert status[0]["unusable_values"] == 6
    assert db.run("SELECT current_version FROM schema_version") == [["1.3.0"]]

    # the demo's own tasks are clean: every log row is about a messy project
    assert (
        db.scalar("SELECT count(*) FROM task_migration_log WHERE project_id::text NOT LIKE 'eeeeeeee-%'") == 0
    )
    # the original JSON is still there (the runbook drops it only after 7 days)
    assert (
        db.scalar(
            "SELECT count(*) FROM projects AS p JOIN tasks_json_backup AS b ON b.project_id = p.id "
            "WHERE p.tasks IS DISTINCT FROM b.tasks"
        )
        == 0
    )
    assert db.scalar("SELECT count(*) FROM tasks_json_backup") == db.scalar("SELECT count(*) FROM projects")


def test_the_runbooks_checks_find_nothing(migrated):
    checks = [
        c for c in load_checks([sql_dir() / "checks"]) if c.name in ("orphaned_tasks", "task_user_mismatch")
    ]
    assert len(checks) == 2
    results = run_checks(migrated, checks)
    assert [(r.name, r.severity, r.count) for r in results] == [(c.name, "ok", 0) for c in checks], [
        r.message for r in results
    ]


def test_a_demo_task_migrates_field_by_field(migrated):
    db = migrated
    project = md5_uuid("project-7")
    source = db.scalar("SELECT tasks -> 2 FROM projects WHERE id = :p", p=project)
    row = db.rows("SELECT * FROM tasks WHERE project_id = :p AND position = 2", p=project)[0]
    assert row["id"] == uuid.UUID(source["id"]) == md5_uuid("task-7-3")
    assert row["user_id"] == db.scalar("SELECT user_id FROM projects WHERE id = :p", p=project)
    assert (row["title"], row["description"], row["status"], row["priority"]) == (
        source["title"],
        source["description"],
        source["status"],
        source["priority"],
    )
    assert row["due_date"] == dt.date.fromisoformat(source["due_date"])
    assert row["created_at"] == row["updated_at"] == dt.datetime.fromisoformat(source["created_at"])
    assert row["extra"] == {"tags": source["tags"]}


# -- the messy cases, one by one -----------------------------------------------------------------


def outcome(db: Database, project: int, index: int | None) -> tuple[dict | None, dict | None]:
    """(the log row, the task) of one source element; index None: the project-level row."""
    logs = db.rows(
        "SELECT outcome, codes, reason, task_id, source_value, source_value IS NULL AS sql_null "
        "FROM task_migration_log WHERE project_id = :p AND source_index IS NOT DISTINCT FROM :i",
        p=messy_project(project),
        i=index,
    )
    assert len(logs) <= 1
    tasks = (
        db.rows(
            "SELECT * FROM tasks WHERE project_id = :p AND position = :i", p=messy_project(project), i=index
        )
        if index is not None
        else []
    )
    assert len(tasks) <= 1
    return (logs[0] if logs else None), (tasks[0] if tasks else None)


def migrated_with(db: Database, project: int, index: int, codes: list[str]) -> dict:
    log, task = outcome(db, project, index)
    assert task is not None, f"project {project} [{index}] was not migrated"
    assert log is not None, f"project {project} [{index}] has no log row"
    assert (log["outcome"], log["codes"], log["task_id"]) == ("migrated", codes, task["id"]), log
    return task


def migrated_clean(db: Database, project: int, index: int) -> dict:
    log, task = outcome(db, project, index)
    assert log is None, log
    assert task is not None
    return task


def test_ids_missing_invalid_and_duplicate(migrated):
    db = migrated
    p1 = messy_project(1)
    first = migrated_clean(db, 1, 0)
    assert first["id"] == uuid.UUID("bbbbbbbb-0000-4000-8000-000000000001")
    assert first["extra"] == {"tags": ["x"]}

    no_key = migrated_with(db, 1, 1, ["id_missing"])
    assert no_key["id"] == generated_id(p1, 1)
    assert "_original" not in no_key["extra"]
    null_id = migrated_with(
        db, 1, 2, ["id_missing", "status_missing", "priority_missing", "created_at_missing"]
    )
    assert null_id["id"] == generated_id(p1, 2)
    assert (null_id["status"], null_id["priority"]) == ("todo", "medium")
    assert null_id["created_at"] == utc(2030, 1, 1, 1)  # project 1's created_at
    assert null_id["extra"] == {"_original": {"id": None}}

    assert migrated_with(db, 1, 3, ["id_invalid"])["extra"] == {"_original": {"id": "not-a-uuid"}}
    number = migrated_with(db, 1, 4, ["id_invalid"])
    assert (number["id"], number["extra"]) == (generated_id(p1, 4), {"_original": {"id": 42}})

    again = migrated_with(db, 1, 5, ["id_duplicate"])
    assert again["id"] == generated_id(p1, 5) and again["title"] == "Same id as the first"
    log, _ = outcome(db, 1, 5)
    assert f"project {p1}'s task 0" in log["reason"]
    assert again["extra"] == {"_original": {"id": "bbbbbbbb-0000-4000-8000-000000000001"}}

    # an upper-case uuid is a uuid: kept (and it is the same id as [7]'s)
    assert migrated_clean(db, 1, 6)["id"] == uuid.UUID("bbbbbbbb-0000-4000-8000-000000000002")
    assert migrated_with(db, 1, 7, ["id_duplicate"])["id"] == generated_id(p1, 7)

    # across projects: the older project keeps the id
    copied = migrated_with(db, 1, 8, ["id_duplicate"])
    assert copied["id"] == generated_id(p1, 8)
    demo_task = db.rows("SELECT project_id, position FROM tasks WHERE id = :i", i=md5_uuid("task-1-1"))
    assert demo_task == [{"project_id": md5_uuid("project-1"), "position": 0}]
    assert f"project {md5_uuid('project-1')}'s task 0" in outcome(db, 1, 8)[0]["reason"]

    # an exact copy is a second task, as the user saw it
    copy = migrated_with(db, 1, 9, ["id_duplicate"])
    assert (copy["title"], copy["description"], copy["due_date"]) == (
        "Clean one",
        "first",
        dt.date(2025, 5, 1),
    )

    assert migrated_clean(db, 2, 0)["id"] == uuid.UUID("bbbbbbbb-0000-4000-8000-000000000003")
    second = migrated_with(db, 3, 0, ["id_duplicate"])
    assert (second["id"], second["user_id"]) == (generated_id(messy_project(3), 0), messy_user(2))


@pytest.mark.parametrize(
    ("project", "code", "sql_null"),
    [(4, "tasks_null", True), (5, "tasks_null", False)]
    + [(n, "tasks_not_array", False) for n in (6, 7, 8, 9)],
)
def test_tasks_null_or_not_an_array_is_logged_per_project(migrated, project, code, sql_null):
    log, _ = outcome(migrated, project, None)
    assert log is not None
    assert (log["outcome"], log["codes"], log["task_id"], log["sql_null"]) == (
        "not_migrated",
        [code],
        None,
        sql_null,
    )
    assert migrated.scalar("SELECT count(*) FROM tasks WHERE project_id = :p", p=messy_project(project)) == 0
    # the value itself stays in the backup, and in projects.tasks
    assert migrated.scalar(
        "SELECT b.tasks IS NOT DISTINCT FROM p.tasks AND (b.tasks IS NULL) = :n FROM tasks_json_backup AS b "
        "JOIN projects AS p ON p.id = b.project_id WHERE b.project_id = :p",
        p=messy_project(project),
        n=sql_null,
    )


def test_an_empty_array_needs_nothing(migrated):
    assert (
        migrated.scalar("SELECT count(*) FROM task_migration_log WHERE project_id = :p", p=messy_project(10))
        == 0
    )
    assert migrated.scalar("SELECT count(*) FROM tasks WHERE project_id = :p", p=messy_project(10)) == 0


def test_elements_that_are_not_objects_are_logged_not_migrated(migrated):
    db = migrated
    for index, value, kind in (
        (0, "just a string", "a string"),
        (1, 17, "a number"),
        (2, None, "null"),
        (3, ["nested"], "an array"),
    ):
        log, task = outcome(db, 11, index)
        assert task is None
        assert (log["outcome"], log["codes"], log["task_id"], log["source_value"]) == (
            "not_migrated",
            ["element_not_object"],
            None,
            value,
        )
        assert f"is {kind}, not an object" in log["reason"]
    assert migrated_clean(db, 11, 4)["title"] == "Clean among junk"
    empty = migrated_with(
        db, 11, 5, ["id_missing", "title_missing", "status_missing", "priority_missing", "created_at_missing"]
    )
    assert (empty["title"], empty["status"], empty["priority"], empty["extra"]) == (
        "Untitled task",
        "todo",
        "medium",
        {},
    )


PROJECT_12_CREATED = utc(2030, 1, 1, 12)
CASE_CREATED = utc(2025, 4, 1)

# index: (codes, {column: value}, extra); extra None: no "_original" key
VALUE_CASES: dict[int, tuple[list[str], dict[str, Any], Any]] = {
    0: (["status_unknown"], {"status": "todo"}, {"status": "blocked"}),
    1: (["status_normalized"], {"status": "done"}, {"status": "DONE"}),
    2: (["status_normalized"], {"status": "in_progress"}, {"status": " in progress "}),
    3: (["status_unknown"], {"status": "todo"}, {"status": 5}),
    4: (["status_missing"], {"status": "todo"}, None),
    5: (["priority_unknown"], {"priority": "medium"}, {"priority": "critical"}),
    6: (["priority_normalized"], {"priority": "high"}, {"priority": "High"}),
    7: (["due_date_invalid"], {"due_date": None}, {"due_date": "2025-13-45"}),
    8: (["due_date_invalid"], {"due_date": None}, {"due_date": "tomorrow"}),
    9: (["due_date_invalid"], {"due_date": None}, {"due_date": ""}),
    10: (["due_date_invalid"], {"due_date": None}, {"due_date": "2024-02-30"}),
    11: ([], {"due_date": dt.date(2024, 2, 29)}, None),
    12: (["due_date_invalid"], {"due_date": None}, {"due_date": 20250101}),
    13: ([], {"due_date": None}, None),
    14: (["created_at_invalid"], {"created_at": PROJECT_12_CREATED}, {"created_at": "yesterday"}),
    15: (["created_at_missing"], {"created_at": PROJECT_12_CREATED, "updated_at": PROJECT_12_CREATED}, None),
    16: ([], {"created_at": utc(2024, 6, 1, 10)}, None),
    17: ([], {"created_at": utc(2024, 6, 1, 8)}, None),
    18: (["title_missing"], {"title": "Untitled task"}, None),
    19: (["title_blank"], {"title": "Untitled task"}, {"title": ""}),
    20: (["title_blank"], {"title": "Untitled task"}, {"title": "   "}),
    21: (["title_invalid"], {"title": "Untitled task"}, {"title": 42}),
    22: (["title_missing"], {"title": "Untitled task"}, {"title": None}),
    23: (["description_invalid"], {"description": None}, {"description": 123}),
    24: (["updated_at_invalid"], {"updated_at": CASE_CREATED}, {"updated_at": "garbage"}),
    25: ([], {"updated_at": utc(2025, 4, 2)}, None),
    26: ([], {}, None),
    27: (["original_key_moved"], {}, {"_original": "mine"}),
    28: (
        ["id_missing", "status_unknown", "due_date_invalid"],
        {"status": "todo", "due_date": None},
        {"status": "blocked", "due_date": "tomorrow"},
    ),
    29: (["due_date_invalid"], {"due_date": None}, {"due_date": "2025-1-5"}),
}


@pytest.mark.parametrize("index", sorted(VALUE_CASES))
def test_bad_values_get_defaults_and_keep_the_original(migrated, index):
    codes, columns, original = VALUE_CASES[index]
    task = migrated_with(migrated, 12, index, codes) if codes else migrated_clean(migrated, 12, index)
    expected = {
        "id": generated_id(messy_project(12), index)
        if "id_missing" in codes
        else md5_uuid(f"messy-value-{index}"),
        "user_id": messy_user(1),
        "title": f"Value case {index}",
        "description": None,
        "status": "todo",
        "priority": "medium",
        "due_date": None,
        "created_at": CASE_CREATED,
        "updated_at": columns.get("created_at", CASE_CREATED),
    } | columns
    assert {k: task[k] for k in expected} == expected
    extra = {k: v for k, v in task["extra"].items() if k != "_original"}
    assert extra == ({"assignee": "bob", "tags": ["a", "b"], "estimate": 3} if index == 26 else {})
    assert task["extra"].get("_original") == original
    if codes:
        log, _ = outcome(migrated, 12, index)
        assert log["source_value"] == migrated.scalar(
            "SELECT tasks -> CAST(:i AS integer) FROM projects WHERE id = :p", i=index, p=messy_project(12)
        )


# -- the functions --------------------------------------------------------------------------------


def expected_user_tasks(db: Database, user: uuid.UUID, limit: int) -> list[tuple]:
    """The answer computed in Python from the JSON arrays themselves."""
    tasks = []
    for project, name, client in db.run(
        "SELECT p.tasks, p.name, c.name FROM projects AS p JOIN clients AS c ON c.id = p.client_id "
        "WHERE p.user_id = :u",
        u=user,
    ):
        for task in project:
            created = dt.datetime.fromisoformat(task["created_at"])
            tasks.append((created, uuid.UUID(task["id"]), task["title"], task["status"], name, client))
    tasks.sort(key=lambda t: (-t[0].timestamp(), str(t[1])))
    return [t[1:] for t in tasks[:limit]]


def test_get_user_tasks_with_context_returns_the_users_newest_tasks(migrated):
    db = migrated
    for user_number in (7, 23):
        user = md5_uuid(f"user-{user_number}")
        rows = db.rows("SELECT * FROM get_user_tasks_with_context(:u, 10)", u=user)
        got = [(r["task_id"], r["title"], r["status"], r["project_name"], r["client_name"]) for r in rows]
        assert len(got) == 10
        assert got == [(t[0], t[1], t[2], t[3], t[4]) for t in expected_user_tasks(db, user, 10)]
        assert {r["tags"] is not None for r in rows} == {True}

    # the messy user: all their migrated tasks, nothing else, newest first
    everything = db.rows("SELECT * FROM get_user_tasks_with_context(:u, 1000)", u=messy_user(1))
    assert len(everything) == db.scalar("SELECT count(*) FROM tasks WHERE user_id = :u", u=messy_user(1))
    assert {r["client_name"] for r in everything} == {"Messy Client One"}
    keys = [(r["created_at"], r["task_id"]) for r in everything]
    assert keys == sorted(keys, key=lambda k: (-k[0].timestamp(), str(k[1])))
    assert db.rows("SELECT * FROM get_user_tasks_with_context(:u, 5)", u=uuid.uuid4()) == []


def test_the_per_user_query_reads_the_index(migrated):
    db = migrated
    scans = (
        "SELECT pg_stat_get_xact_numscans('tasks_user_created_idx'::regclass), "
        "pg_stat_get_xact_numscans('tasks'::regclass)"
    )  # this backend's counts not yet flushed: compare before and after
    db.run("BEGIN")
    try:
        before = db.run(scans)[0]
        for number in range(8):  # custom plans first, then the cached generic one
            db.run("SELECT * FROM get_user_tasks_with_context(:u, 10)", u=md5_uuid(f"user-{number + 1}"))
        after = db.run(scans)[0]
    finally:
        db.run("ROLLBACK")
    assert (after[0] - before[0], after[1] - before[1]) == (8, 0)  # index scans, sequential scans


def test_row_level_security_follows_the_projects(migrated):
    db = migrated
    user = md5_uuid("user-7")
    db.run("BEGIN")
    try:
        db.run("SET LOCAL ROLE pm_app_user")
        db.run("SELECT set_config('app.user_id', :u, true)", u=str(user))
        assert db.scalar("SELECT count(DISTINCT user_id) FROM tasks") == 1
        assert db.scalar("SELECT count(*) FROM get_user_tasks_with_context(:u, 5)", u=user) == 5
        assert db.scalar("SELECT count(*) FROM get_user_tasks_with_context(:u, 5)", u=messy_user(1)) == 0
    finally:
        db.run("ROLLBACK")


def test_triggers_keep_the_user_consistent(migrated):
    db = migrated
    project = md5_uuid("project-7")
    db.run("BEGIN")
    try:
        db.run("UPDATE projects SET user_id = :u WHERE id = :p", u=messy_user(2), p=project)
        assert db.run("SELECT DISTINCT user_id FROM tasks WHERE project_id = :p", p=project) == [
            [messy_user(2)]
        ]
        db.run(
            "INSERT INTO tasks (id, project_id, user_id, title) VALUES (:i, :p, :u, 'new')",
            i=uuid.UUID(int=1),
            p=project,
            u=messy_user(1),
        )
        assert db.scalar("SELECT user_id FROM tasks WHERE id = :i", i=uuid.UUID(int=1)) == messy_user(2)
        other = md5_uuid("task-8-1")  # not touched yet in this transaction (now() is the same)
        before = db.scalar("SELECT updated_at FROM tasks WHERE id = :i", i=other)
        db.run("UPDATE tasks SET title = 'renamed' WHERE id = :i", i=other)
        assert db.scalar("SELECT updated_at FROM tasks WHERE id = :i", i=other) > before
        # (the check's query itself: run_checks() would commit this transaction)
        mismatch = next(c for c in load_checks([sql_dir() / "checks"]) if c.name == "task_user_mismatch")
        assert db.rows(mismatch.query) == []
    finally:
        db.run("ROLLBACK")


def test_verification_and_validation_catch_a_lost_task(migrated):
    db = migrated
    data_migration = MIGRATIONS[1]
    db.run("BEGIN")
    try:
        db.run("DELETE FROM tasks WHERE id = :i", i=md5_uuid("task-7-1"))
        problems = verify_rows(db, data_migration)
        assert {
            "project_id": md5_uuid("project-7"),
            "source_index": 0,
            "in_source": 1,
            "outcomes": 0,
        } in problems
        failed = {
            r["validation_check"]
            for r in db.rows("SELECT * FROM validate_task_migration() WHERE status = 'FAIL'")
        }
        assert failed == {"total_tasks", "projects_with_count_mismatch"}
    finally:
        db.run("ROLLBACK")
    db.run("BEGIN")
    try:
        db.run(
            'UPDATE projects SET tasks = tasks || \'[{"title": "added later"}]\' WHERE id = :p',
            p=md5_uuid("project-8"),
        )
        assert any(r.get("problem") == "backup differs" for r in verify_rows(db, data_migration))
        failed = {
            r["validation_check"]
            for r in db.rows("SELECT * FROM validate_task_migration() WHERE status = 'FAIL'")
        }
        # the tasks came from the backup: the counts still agree, and the drift shows
        assert failed == {"projects_changed_since_backup"}
    finally:
        db.run("ROLLBACK")


# -- rollback and again ---------------------------------------------------------------------------

TASKS_SNAPSHOT = "SELECT to_jsonb(t)::text FROM tasks AS t ORDER BY id"
LOG_SNAPSHOT = (
    "SELECT project_id, source_index, task_id, outcome, codes, reason, source_value::text "
    "FROM task_migration_log ORDER BY project_id, source_index NULLS FIRST"
)


def test_rollback_restores_the_json_exactly_and_migrating_again_gives_the_same_result(fresh_db):
    db = fresh_db(messy=True)
    db.run("CREATE TEMPORARY TABLE original AS SELECT id, tasks FROM projects")
    before = catalog(db)
    stages = []

    for migration in MIGRATIONS:
        apply_up(db, migration)
        stages.append(db.scalar("SELECT migration_stage FROM migration_status"))
    assert stages == ["READY_FOR_TASK_MIGRATION", "TASKS_MIGRATED", "READY_FOR_VALIDATION"]
    first_tasks, first_log = db.run(TASKS_SNAPSHOT), db.run(LOG_SNAPSHOT)
    assert len(first_tasks) == db.scalar("SELECT count(*) FROM tasks") > 6000

    versions = []
    for migration in reversed(MIGRATIONS):
        apply_down(db, migration)
        versions.append(db.scalar("SELECT current_version FROM schema_version"))
    assert versions == ["1.2.0", "1.1.0", "1.0.0"]

    differences = db.scalar(
        "SELECT count(*) FROM original AS o FULL JOIN projects AS p ON p.id = o.id "
        "WHERE o.id IS NULL OR p.id IS NULL OR o.tasks IS DISTINCT FROM p.tasks"
    )
    assert differences == 0
    assert db.scalar("SELECT count(*) FROM projects WHERE tasks IS NULL") == 1  # SQL NULL stayed NULL
    assert db.scalar("SELECT count(*) FROM projects WHERE tasks = 'null'") == 1  # and JSON null, JSON null
    assert catalog(db) == before

    migrate(db)
    assert db.run(TASKS_SNAPSHOT) == first_tasks
    assert db.run(LOG_SNAPSHOT) == first_log
    roll_back(db)
    assert catalog(db) == before


def test_rollback_restores_changed_json_from_the_backup(fresh_db):
    db = fresh_db(messy=True)
    db.run("CREATE TEMPORARY TABLE original AS SELECT id, tasks FROM projects")
    migrate(db)
    db.run(
        "UPDATE projects SET tasks = '[]' WHERE id IN (:a, :b)", a=md5_uuid("project-3"), b=messy_project(7)
    )
    db.run("UPDATE projects SET tasks = NULL WHERE id = :p", p=messy_project(12))
    roll_back(db)
    assert (
        db.scalar(
            "SELECT count(*) FROM original AS o JOIN projects AS p ON p.id = o.id WHERE o.tasks IS DISTINCT FROM p.tasks"
        )
        == 0
    )


@pytest.mark.parametrize("version", [18, 16])
def test_the_plain_demo_migrates_with_an_empty_log(request, version):
    server = request.getfixturevalue(f"pg{version}")
    with Database.connect(server.conninfo) as server_admin:
        name = create_demo(server_admin, messy=False)
        try:
            with Database.connect(server.conninfo.with_dbname(name)) as db:
                before = catalog(db)
                assert db.scalar(
                    "SELECT attnotnull FROM pg_attribute "
                    "WHERE attrelid = 'projects'::regclass AND attname = 'tasks'"
                )
                migrate(db)
                assert db.scalar("SELECT count(*) FROM tasks") == source_element_count(db) > 5000
                assert db.scalar("SELECT count(*) FROM task_migration_log") == 0
                assert all(r[3] == "PASS" for r in db.run("SELECT * FROM validate_task_migration()"))
                roll_back(db)
                assert catalog(db) == before
        finally:
            server_admin.run(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


def test_the_path_for_servers_before_16_gives_the_same_result(fresh_db):
    """Without pg_input_is_valid() (PostgreSQL 15), every value is checked by a cast in an
    exception block: slower, and the same tasks and log."""
    db = fresh_db(messy=True)
    migrate(db)
    fast = db.run(TASKS_SNAPSHOT), db.run(LOG_SNAPSHOT)
    roll_back(db)
    db.run("SET pgrunbook.task_migration_portable = 'on'")
    apply_up(db, MIGRATIONS[0])
    db.run("BEGIN")
    try:
        for statement in MIGRATIONS[1].up.statements:
            db.run(statement.text)
            if db.scalar("SELECT to_regprocedure('task_migration_valid(text, text)') IS NOT NULL"):
                break
        language = db.scalar(
            "SELECT l.lanname FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang "
            "WHERE p.oid = 'task_migration_valid(text, text)'::regprocedure"
        )
    finally:
        db.run("ROLLBACK")
    assert language == "plpgsql"
    for migration in MIGRATIONS[1:]:
        apply_up(db, migration)
    assert (db.run(TASKS_SNAPSHOT), db.run(LOG_SNAPSHOT)) == fast


def test_the_data_migration_refuses_to_run_where_row_level_security_hides_projects(fresh_db):
    db = fresh_db(messy=False)
    apply_up(db, MIGRATIONS[0])
    db.run("BEGIN")
    try:
        db.run("SET LOCAL ROLE pm_app_user")
        with pytest.raises(SqlError, match="row-level security hides projects"):
            for statement in MIGRATIONS[1].up.statements:
                db.run(statement.text)
    finally:
        db.run("ROLLBACK")
