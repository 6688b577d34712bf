"""Migration files: naming, sections, statement splitting with line numbers, and lint."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgrunbook.domain.errors import ConfigError
from pgrunbook.workflows.migrate.files import parse_text, split_statements
from pgrunbook.workflows.migrate.lint import code_only, lint


def migration(text: str, name: str = "20250907143000_change.sql"):
    return parse_text(text, Path(name))


def test_statements_split_at_top_level_semicolons_only():
    sql = """-- a comment; not a statement
CREATE TABLE a (x text DEFAULT 'semi;colon', "odd;name" int);
/* block; /* nested; */ still comment; */
CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$
BEGIN
  RETURN 1; -- inside the body
END;
$body$;
INSERT INTO a VALUES (E'it\\'s; fine', 1);
CREATE FUNCTION g() RETURNS int LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN true THEN 1 ELSE 2 END;
  SELECT 3;
END;
SELECT 1"""
    statements = split_statements(sql)
    assert [s.line for s in statements] == [2, 4, 9, 10, 15]
    assert statements[0].text.startswith("CREATE TABLE a") and statements[0].text.endswith('"odd;name" int)')
    assert "RETURN 1; -- inside the body" in statements[1].text
    assert statements[3].text.rstrip().endswith("END")
    assert statements[4].text == "SELECT 1"


def test_sections_and_options():
    m = migration(
        "-- migrate:up\nALTER TABLE t ADD c int;\n\n-- migrate:down\nALTER TABLE t DROP COLUMN c;\n"
        "-- migrate:verify\nSELECT 1 WHERE false;\n"
    )
    assert (m.version, m.name, m.transaction) == ("20250907143000", "change", True)
    assert [s.line for s in m.up.statements] == [2]
    assert [s.line for s in m.down.statements] == [5]
    assert [s.line for s in m.verify.statements] == [7]
    assert len(m.sha256) == 64

    plain = migration("ALTER TABLE t ADD c int;\nALTER TABLE t ADD d int;\n")
    assert len(plain.up.statements) == 2 and plain.down.empty

    concurrent = migration("-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (c);\n")
    assert concurrent.transaction is False


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("add_vin.sql", "SELECT 1;", "is named <YYYYMMDDHHMMSS>_<name>.sql"),
        ("2025090714_short.sql", "SELECT 1;", "is named"),
        ("20250907143000_x.sql", "SELECT 1;\n-- migrate:up\nSELECT 2;", ":1: SQL before the first"),
        (
            "20250907143000_x.sql",
            "-- migrate:up\nSELECT 1;\n-- migrate:up\nSELECT 2;",
            ":3: a second -- migrate:up",
        ),
        ("20250907143000_x.sql", "-- migrate:up transaction:maybe\nSELECT 1;", "unknown option"),
    ],
)
def test_bad_files_are_refused_with_where(name, text, message):
    with pytest.raises(ConfigError, match=message):
        migration(text, name)


def findings(text: str) -> list[tuple[int, str, str]]:
    return [(f.line, f.severity, f.message) for f in lint(migration(text))]


def test_concurrent_index_in_a_transactional_file_is_an_error_with_its_line():
    found = findings(
        "-- migrate:up\nALTER TABLE t ADD c int;\nCREATE INDEX CONCURRENTLY t_c ON t (c);\n"
        "-- migrate:down\nDROP INDEX t_c;\nALTER TABLE t DROP COLUMN c;\n"
    )
    assert [(line, severity) for line, severity, _ in found] == [(3, "error")]
    assert "cannot run inside a transaction block" in found[0][2]
    ok = findings(
        "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY t_c ON t (c);\n-- migrate:down\nDROP INDEX CONCURRENTLY t_c;\n"
    )
    assert ok == []


def test_destructive_statements_need_approval():
    text = """-- migrate:up
DROP TABLE old_things;
ALTER TABLE t DROP COLUMN legacy;
ALTER TABLE t DROP CONSTRAINT t_check;
ALTER TABLE t ALTER COLUMN price TYPE numeric(12, 2);
ALTER TABLE t ALTER COLUMN note DROP NOT NULL;
TRUNCATE audit_log;
DELETE FROM sessions;
DELETE FROM sessions WHERE expires < now();
UPDATE t SET flag = false;
-- migrate:down
SELECT 1;
"""
    approvals = [(line, message) for line, severity, message in findings(text) if severity == "approval"]
    assert [line for line, _ in approvals] == [2, 3, 5, 7, 8, 10]
    assert "ALTER COLUMN ... TYPE" in approvals[2][1]


def test_comments_and_strings_do_not_trigger_lint():
    text = "-- migrate:up\nINSERT INTO notes VALUES ('DROP TABLE x; TRUNCATE y');\n-- DROP TABLE z;\n-- migrate:down\nDELETE FROM notes WHERE true;\n"
    assert findings(text) == []
    assert code_only("SELECT 'a''b' /* x */ -- y\n, $$ DROP TABLE $$") == "SELECT '' , $$"


def test_transaction_control_missing_down_and_bad_verify():
    found = findings("BEGIN;\nALTER TABLE t ADD c int;\nCOMMIT;\n")
    assert [(line, severity) for line, severity, _ in found] == [(1, "error"), (3, "error"), (1, "warning")]
    assert "no -- migrate:down part" in found[-1][2]
    bad_verify = findings(
        "-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 1;\n-- migrate:verify\nDELETE FROM t;\n"
    )
    assert bad_verify == [(6, "error", "a verify part holds queries (SELECT) that return violating rows")]
    empty = findings("-- migrate:up\n-- nothing\n-- migrate:down\nSELECT 1;\n")
    assert empty[0][1:] == ("error", "the up part has no statement")
