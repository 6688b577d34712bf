"""The repair: one transaction that puts the differing rows of chosen tables back to the
backup's content, and nothing else.

From a :class:`~pgrunbook.adapters.postgres.rangediff.TableDiff` per table, with the backup's
rows read from its restored copy (only the differing keys), :func:`build` writes:

* rows deleted since the backup: re-inserted (parents before children);
* rows changed since the backup: put back, column by column (parents before children);
* rows inserted since the backup: deleted only when asked (``include_inserted``), children
  before parents.

Every statement is guarded: an update or delete names the row by its key *and* by the row
hash the diff saw live, and each table's batch checks how many rows it touched; an insert
fails on a key that exists again.  If the database moved on since the diff, the whole
transaction is rolled back and nothing is repaired.  ``SET CONSTRAINTS ALL DEFERRED``
defers the constraints the schema declared deferrable; statement and lock timeouts bound
what the repair may hold.

The script is written for people (a header with the backup, its snapshot time and the counts;
``psql -v ON_ERROR_STOP=1 -f FILE`` runs it: it has its own BEGIN and COMMIT), and applied by pgrunbook
statement by statement in one transaction, from the same list.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from pgrunbook.adapters.postgres.connection import Database, quote_ident, quote_literal
from pgrunbook.adapters.postgres.fingerprints import row_hash_sql
from pgrunbook.adapters.postgres.rangediff import Column, Key, Side, TableDiff, literal
from pgrunbook.domain.errors import OperationFailed, SqlError

BATCH = 500  # rows per statement that reads or inserts


@dataclass
class TableRepair:
    """What the repair does to one table."""

    label: str  # the table's name in the backup
    live: Side
    backup: Side
    diff: TableDiff
    columns: Sequence[Column]
    method: str
    types: dict[str, str]
    include_inserted: bool = False


@dataclass
class Script:
    header: list[str]
    statements: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # table -> kind -> rows

    def text(self) -> str:
        lines = [f"-- {line}" if line else "--" for line in self.header]
        return "\n".join(lines) + "\n\n" + ";\n\n".join(self.statements) + ";\n"

    @property
    def empty(self) -> bool:
        return not any(sum(kinds.values()) for kinds in self.counts.values())


def fk_order(db: Database, tables: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """``tables`` with every referenced table before the tables that reference it (a cycle
    keeps its members in the given order)."""
    wanted = set(tables)
    edges = db.run(
        """
        SELECT cn.nspname::text, c.relname::text, pn.nspname::text, p.relname::text
        FROM pg_catalog.pg_constraint k
        JOIN pg_catalog.pg_class c ON c.oid = k.conrelid JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
        JOIN pg_catalog.pg_class p ON p.oid = k.confrelid JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
        WHERE k.contype = 'f'
        """
    )
    parents: dict[tuple[str, str], set[tuple[str, str]]] = {t: set() for t in tables}
    for cs, cr, ps, pr in edges:
        child, parent = (cs, cr), (ps, pr)
        if child in wanted and parent in wanted and child != parent:
            parents[child].add(parent)
    ordered: list[tuple[str, str]] = []
    visiting: set[tuple[str, str]] = set()

    def visit(table: tuple[str, str]) -> None:
        if table in ordered or table in visiting:
            return
        visiting.add(table)
        for parent in sorted(parents[table]):
            visit(parent)
        visiting.discard(table)
        ordered.append(table)

    for table in tables:
        visit(table)
    return ordered


def _live_columns(db: Database, schema: str, name: str) -> dict[str, tuple[str, str]]:
    """Each live column's (identity, generated) flags."""
    rows = db.run(
        """
        SELECT a.attname::text, a.attidentity::text, a.attgenerated::text
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = (SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n
                            ON n.oid = c.relnamespace WHERE n.nspname = :schema AND c.relname = :name)
          AND a.attnum > 0 AND NOT a.attisdropped
        """,
        schema=schema,
        name=name,
    )
    return {str(n): (str(i or ""), str(g or "")) for n, i, g in rows}


def _key_match(key: Sequence[str], values: Key, types: dict[str, str]) -> str:
    return " AND ".join(
        f"{quote_ident(k)} = {literal(v, types[k])}" for k, v in zip(key, values, strict=True)
    )


def _backup_rows(part: TableRepair, keys: Sequence[Key]) -> dict[Key, list[str | None]]:
    """The backup's rows for ``keys``: each column as text, read from the restored copy."""
    assert part.diff.key is not None
    key = part.diff.key
    names = [c.name for c in part.columns]
    select = ", ".join(f"({quote_ident(c)})::text" for c in [*key, *names])
    found: dict[Key, list[str | None]] = {}
    for start in range(0, len(keys), BATCH):
        batch = keys[start : start + BATCH]
        condition = " OR ".join(f"({_key_match(key, k, part.types)})" for k in batch)
        for row in part.backup.db.run(f"SELECT {select} FROM ONLY {part.backup.table} WHERE {condition}"):
            found[tuple(row[: len(key)])] = list(row[len(key) :])
    return found


def _keyless_rows(part: TableRepair, hashes: Sequence[int]) -> dict[int, list[str | None]]:
    names = [c.name for c in part.columns]
    hash_sql = row_hash_sql([(c.name, c.mode) for c in part.columns], part.method)
    found: dict[int, list[str | None]] = {}
    for row in part.backup.db.run(
        f"SELECT h, {', '.join(f'c{i}' for i in range(len(names)))} FROM (SELECT {hash_sql} AS h"
        + "".join(f", ({quote_ident(c)})::text AS c{i}" for i, c in enumerate(names))
        + f" FROM ONLY {part.backup.table}) s WHERE h = ANY(CAST(:hashes AS bigint[]))",
        hashes="{" + ",".join(str(h) for h in hashes) + "}",
    ):
        found.setdefault(int(row[0]), list(row[1:]))
    return found


def _guarded(tag: str, label: str, kind: str, statements: list[str], expected: int) -> str:
    """A batch that fails (rolling the whole repair back) unless it touched ``expected`` rows."""
    body = "\n".join(f"  {s};\n  GET DIAGNOSTICS c = ROW_COUNT; n := n + c;" for s in statements)
    message = quote_literal(
        f"{label}: %% of {expected} {kind} rows were still as the diff saw them; nothing was repaired"
    )
    return (
        f"DO ${tag}$\nDECLARE c bigint; n bigint := 0;\nBEGIN\n{body}\n"
        f"  IF n <> {expected} THEN RAISE EXCEPTION {message}, n; END IF;\nEND ${tag}$"
    ).replace("%%", "%")


def build(
    parts: Sequence[TableRepair],
    order_db: Database,
    *,
    header: list[str],
    statement_timeout: str = "15min",
    lock_timeout: str = "10s",
) -> Script:
    """The repair script for ``parts`` (see the module)."""
    script = Script(header=list(header))
    order = fk_order(order_db, [(p.live.schema, p.live.name) for p in parts])
    by_table = {(p.live.schema, p.live.name): p for p in parts}
    ordered = [by_table[t] for t in order]
    tag = "pgrunbook_" + secrets.token_hex(4)
    inserts: list[str] = []
    updates: list[str] = []
    deletes: list[str] = []
    for part in ordered:
        counts = script.counts.setdefault(part.label, {"deleted": 0, "changed": 0, "inserted": 0})
        diff = part.diff
        if diff.error or not diff.listed:
            continue  # not compared, or too many rows to name one by one: said in the header
        flags = _live_columns(part.live.db, part.live.schema, part.live.name)
        writable = [c.name for c in part.columns if c.name in flags and not flags[c.name][1]]
        overriding = " OVERRIDING SYSTEM VALUE" if any(flags[c][0] == "a" for c in writable) else ""
        cols = ", ".join(quote_ident(c) for c in writable)
        names = [c.name for c in part.columns]
        hash_sql = row_hash_sql([(c.name, c.mode) for c in part.columns], part.method)
        table = part.live.table
        if diff.key is not None:
            key = diff.key
            rows = _backup_rows(part, [*diff.deleted, *diff.changed])
            values = [
                "(" + ", ".join(literal(rows[k][names.index(c)], part.types[c]) for c in writable) + ")"
                for k in diff.deleted
            ]
            for start in range(0, len(values), BATCH):
                inserts.append(
                    f"INSERT INTO {table} ({cols}){overriding} VALUES\n  "
                    + ",\n  ".join(values[start : start + BATCH])
                )
            counts["deleted"] = len(diff.deleted)
            settable = [c for c in writable if c not in key and flags[c][0] != "a"]
            if diff.changed and settable:
                statements = [
                    f"UPDATE {table} SET "
                    + ", ".join(
                        f"{quote_ident(c)} = {literal(rows[k][names.index(c)], part.types[c])}"
                        for c in settable
                    )
                    + f" WHERE {_key_match(key, k, part.types)} AND {hash_sql} = {diff.live_hashes[k]}"
                    for k in diff.changed
                ]
                updates.append(_guarded(tag, part.label, "changed", statements, len(statements)))
                counts["changed"] = len(diff.changed)
            if part.include_inserted and diff.inserted:
                statements = [
                    f"DELETE FROM {table} WHERE {_key_match(key, k, part.types)} AND {hash_sql} = {diff.live_hashes[k]}"
                    for k in diff.inserted
                ]
                deletes.insert(0, _guarded(tag, part.label, "inserted", statements, len(statements)))
                counts["inserted"] = len(diff.inserted)
        else:
            rows_by_hash = _keyless_rows(part, list(diff.deleted_rows))
            values = [
                "("
                + ", ".join(literal(rows_by_hash[h][names.index(c)], part.types[c]) for c in writable)
                + ")"
                for h, n in diff.deleted_rows.items()
                for _ in range(n)
            ]
            for start in range(0, len(values), BATCH):
                inserts.append(
                    f"INSERT INTO {table} ({cols}){overriding} VALUES\n  "
                    + ",\n  ".join(values[start : start + BATCH])
                )
            counts["deleted"] = len(values)
            if part.include_inserted and diff.inserted_rows:
                statements = [
                    f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM ONLY {table} WHERE {hash_sql} = {h} LIMIT {n}))"
                    for h, n in diff.inserted_rows.items()
                ]
                deletes.insert(
                    0, _guarded(tag, part.label, "inserted", statements, sum(diff.inserted_rows.values()))
                )
                counts["inserted"] = sum(diff.inserted_rows.values())
    script.statements = [
        "BEGIN",
        f"SET LOCAL statement_timeout = {quote_literal(statement_timeout)}",
        f"SET LOCAL lock_timeout = {quote_literal(lock_timeout)}",
        "SET LOCAL standard_conforming_strings = on",
        "SET CONSTRAINTS ALL DEFERRED",
        *deletes,
        *inserts,
        *updates,
        "COMMIT",
    ]
    return script


def apply(db: Database, script: Script) -> None:
    """Run the script's statements in one transaction; on any error, roll back and raise."""
    try:
        for statement in script.statements:
            db.run(statement)
    except SqlError as exc:
        if db.in_transaction:
            db.run("ROLLBACK")
        raise OperationFailed(f"the repair was rolled back, nothing changed: {exc}") from None
