"""What a reviewer checks in a migration, before it runs anywhere.

Severities:

* ``error``: the migration cannot run as written.  A statement PostgreSQL refuses inside a
  transaction block (``CREATE INDEX CONCURRENTLY``, ``VACUUM`` ...) in a transactional file;
  ``BEGIN``/``COMMIT`` in a file (the engine owns the transaction); an empty up part.
* ``approval``: destructive, so a person must approve it (``--allow-destructive``, or the
  workflow's approval step): ``DROP TABLE``, ``DROP COLUMN``, ``TRUNCATE``, ``DROP SCHEMA``,
  a ``DELETE``/``UPDATE`` without ``WHERE``, and ``ALTER COLUMN ... TYPE``, which rewrites the
  table under an ``ACCESS EXCLUSIVE`` lock (and can lose data).
* ``warning``: no ``down`` part (rollback of this migration means restoring a backup); a
  non-transactional file with several statements (a failure midway leaves the earlier ones
  applied).

Statements are matched with comments and quoted text removed.  Dollar-quoted bodies
(functions, ``DO`` blocks) are not looked into.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pgrunbook.workflows.migrate.files import MigrationFile, Statement

NO_TRANSACTION = [
    (r"\bCREATE\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY\b", "CREATE INDEX CONCURRENTLY"),
    (r"\bDROP\s+INDEX\s+CONCURRENTLY\b", "DROP INDEX CONCURRENTLY"),
    (r"\bREINDEX\b.*\bCONCURRENTLY\b", "REINDEX ... CONCURRENTLY"),
    (r"\bALTER\s+TABLE\b.*\bDETACH\s+PARTITION\b.*\bCONCURRENTLY\b", "DETACH PARTITION ... CONCURRENTLY"),
    (r"^\s*VACUUM\b", "VACUUM"),
    (r"^\s*(CREATE|DROP)\s+DATABASE\b", "CREATE/DROP DATABASE"),
    (r"^\s*ALTER\s+SYSTEM\b", "ALTER SYSTEM"),
    (r"^\s*(CREATE|DROP)\s+TABLESPACE\b", "CREATE/DROP TABLESPACE"),
]
TRANSACTION_CONTROL = (
    r"^\s*(BEGIN|COMMIT|ROLLBACK|START\s+TRANSACTION|END|SAVEPOINT|RELEASE|ABORT)\b(?!\s+ATOMIC)"
)
DESTRUCTIVE = [
    (r"^\s*DROP\s+TABLE\b", "DROP TABLE"),
    (r"^\s*DROP\s+SCHEMA\b", "DROP SCHEMA"),
    (r"^\s*DROP\s+MATERIALIZED\s+VIEW\b", "DROP MATERIALIZED VIEW"),
    (
        r"^\s*ALTER\s+TABLE\b.*\bDROP\s+(COLUMN\s+)?(?!CONSTRAINT\b|DEFAULT\b|NOT\b|IDENTITY\b|EXPRESSION\b)"
        r"(IF\s+EXISTS\s+)?[\w\"]",
        "DROP COLUMN",
    ),
    (r"^\s*TRUNCATE\b", "TRUNCATE"),
    (r"\bALTER\s+COLUMN\s+[\w\"]+\s+(SET\s+DATA\s+)?TYPE\b", "ALTER COLUMN ... TYPE (rewrites the table)"),
    (r"^\s*DELETE\s+FROM\b(?!.*\bWHERE\b)", "DELETE without WHERE"),
    (r"^\s*UPDATE\b(?!.*\bWHERE\b)", "UPDATE without WHERE"),
]


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    severity: str  # error | approval | warning
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message}"

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "severity": self.severity, "message": self.message}


def code_only(sql: str) -> str:
    """The statement without comments, string contents or dollar-quoted bodies, on one line."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        elif sql[i] in "'\"":
            quote = sql[i]
            j = i + 1
            while j < n and not (sql[j] == quote and not sql.startswith(quote * 2, j)):
                j += 2 if sql.startswith(quote * 2, j) else 1
            out.append(quote + quote if quote == "'" else sql[i : j + 1])
            i = j + 1
        elif sql[i] == "$" and (m := re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])):
            tag = m.group(0)
            j = sql.find(tag, i + len(tag))
            i = n if j < 0 else j + len(tag)
            out.append("$$")
        else:
            out.append(sql[i])
            i += 1
    return " ".join("".join(out).split())


def _matches(patterns: list[tuple[str, str]], code: str) -> list[str]:
    return [label for pattern, label in patterns if re.search(pattern, code, re.IGNORECASE)]


def lint(migration: MigrationFile) -> list[Finding]:
    name = migration.path.name
    findings: list[Finding] = []
    if migration.up.empty:
        findings.append(Finding(name, migration.up.first_line, "error", "the up part has no statement"))
    statements: list[tuple[str, Statement]] = [
        (part.name, s) for part in (migration.up, migration.down) for s in part.statements
    ]
    for part, statement in statements:
        code = code_only(statement.text)
        if re.search(TRANSACTION_CONTROL, code, re.IGNORECASE):
            findings.append(
                Finding(
                    name,
                    statement.line,
                    "error",
                    f"transaction control in the {part} part: pgrunbook runs each migration in its own "
                    "transaction; remove it (or mark the file -- migrate:up transaction:false)",
                )
            )
        if migration.transaction:
            for label in _matches(NO_TRANSACTION, code):
                findings.append(
                    Finding(
                        name,
                        statement.line,
                        "error",
                        f"{label} cannot run inside a transaction block: put it in its own file marked "
                        "-- migrate:up transaction:false",
                    )
                )
        if part == "up":
            for label in _matches(DESTRUCTIVE, code):
                findings.append(
                    Finding(name, statement.line, "approval", f"destructive: {label}; it needs approval")
                )
    for statement in migration.verify.statements:
        code = code_only(statement.text)
        if not re.match(r"^\s*(\(\s*)*(SELECT|WITH|VALUES|TABLE)\b", code, re.IGNORECASE):
            findings.append(
                Finding(
                    name,
                    statement.line,
                    "error",
                    "a verify part holds queries (SELECT) that return violating rows",
                )
            )
    if migration.down.empty:
        findings.append(
            Finding(
                name,
                migration.up.first_line,
                "warning",
                "no -- migrate:down part: rolling this migration back means restoring a backup",
            )
        )
    if not migration.transaction and len(migration.up.statements) > 1:
        findings.append(
            Finding(
                name,
                migration.up.first_line,
                "warning",
                "several statements outside a transaction: a failure midway leaves the earlier ones applied",
            )
        )
    return findings


def lint_all(migrations: list[MigrationFile]) -> list[Finding]:
    return [f for m in migrations for f in lint(m)]
