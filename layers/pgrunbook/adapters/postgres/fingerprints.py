"""Per-table row counts and content fingerprints, computed inside PostgreSQL.

A fingerprint is ``sum(hash(row)) mod 2^64`` over the table: independent of row order (a
restore loads rows in any order), sensitive to duplicates (a row loaded twice adds its hash
twice), and computed server-side so no data crosses the network.

The row hash is ``hash_record_extended(ROW(...), 0)`` (PostgreSQL 14+): each column is hashed
with its type's own hash function when that is stable across servers (integers, text,
numeric, timestamps, uuid, jsonb, arrays of those...), and through its text form otherwise
(enums, whose binary hash is the label's OID and changes on restore; json, xml, geometric
and user types, domains).  Collatable columns are hashed under ``COLLATE "C"`` so that a
non-deterministic collation cannot make the hash depend on the ICU version.  Text forms are
made deterministic by :data:`pgrunbook.adapters.postgres.connection.DETERMINISTIC_OUTPUT`.  Servers older than 14 fall
back to hashing the text form of the whole row (method ``text``).

The manifest records, per table, the method and the column list with each column's mode, so
a restore recomputes exactly the same expression rather than re-deriving it.

Which tables: ordinary tables and leaf partitions (``relkind = 'r'``, so a partitioned table
is counted once, through its leaves, and ``FROM ONLY`` keeps inheritance parents from
counting their children), excluding system schemas, profile-excluded schemas, temporary
tables and tables that belong to an extension (pg_dump does not dump those).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pgrunbook.adapters.postgres.connection import Database, qualified, quote_ident
from pgrunbook.domain.errors import SqlError
from pgrunbook.domain.manifest import TableEntry

# Built-in types whose binary hash is stable across servers and survives dump/restore.
# (OIDs of built-in types never change.)
HASH_SAFE_TYPES = frozenset(
    {
        16,  # bool
        17,  # bytea
        18,  # "char"
        19,  # name
        20,  # int8
        21,  # int2
        23,  # int4
        25,  # text
        650,  # cidr
        700,  # float4
        701,  # float8
        774,  # macaddr8
        829,  # macaddr
        869,  # inet
        1042,  # bpchar
        1043,  # varchar
        1082,  # date
        1083,  # time
        1114,  # timestamp
        1184,  # timestamptz
        1186,  # interval
        1266,  # timetz
        1700,  # numeric
        2950,  # uuid
        3802,  # jsonb
    }
)
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
MOD64 = 1 << 64


@dataclass(frozen=True)
class TableSpec:
    schema: str
    name: str
    columns: tuple[tuple[str, str], ...]  # (column, one of COLUMN_MODES)
    approx_bytes: int = 0

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def schema_pattern_regex(pattern: str) -> str:
    """A pg_dump schema pattern (``*`` and ``?`` wildcards) as an anchored POSIX regex."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return "^(" + "".join(out) + ")$"


def excluded_schema_regex(patterns: Sequence[str]) -> str:
    """One regex matching the system schemas and every profile-excluded schema."""
    parts = [schema_pattern_regex(p) for p in (*SYSTEM_SCHEMAS, "pg_toast*", "pg_temp_*", *patterns)]
    return "|".join(parts)


COLUMN_MODES = ("hash", "hash-c", "text")


def column_expression(column: str, mode: str) -> str:
    """How one column enters the row hash: its own hash, under COLLATE "C", or as text."""
    ident = quote_ident(column)
    if mode == "hash":
        return ident
    if mode == "hash-c":
        return f'{ident} COLLATE "C"'
    if mode == "text":
        return f"({ident})::text"
    raise ValueError(f"unknown column mode {mode!r}")


def fingerprint_sql(
    spec: TableSpec | TableEntry, method: str, start_block: int | None = None, end_block: int | None = None
) -> str:
    """The query returning (rows, sum of row hashes) for one table, or for the pages
    ``[start_block, end_block)`` of it (a TID range scan, PostgreSQL 14+)."""
    table = qualified(spec.schema, spec.name)
    where = []
    if start_block is not None:
        where.append(f"ctid >= '({int(start_block)},0)'::tid")
    if end_block is not None:
        where.append(f"ctid < '({int(end_block)},0)'::tid")
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    if not spec.columns:
        return f"SELECT count(*), 0 FROM ONLY {table}{condition}"
    return f"SELECT count(*), sum({row_hash_sql(spec.columns, method)}) FROM ONLY {table}{condition}"


def row_hash_sql(columns: Sequence[tuple[str, str]], method: str) -> str:
    """One row's hash, the term a fingerprint sums: over ``columns`` (name, mode)."""
    if not columns:
        return "0::bigint"
    row = "ROW(" + ", ".join(column_expression(c, m) for c, m in columns) + ")"
    if method == "record":
        return f"hash_record_extended({row}, 0)"
    if method == "text":
        return f"hashtextextended(({row})::text, 0)"
    raise ValueError(f"unknown fingerprint method {method!r}")


def method_for(server_version_num: int) -> str:
    return "record" if server_version_num >= 140000 else "text"


def format_fingerprint(total: int | str | None) -> str:
    return f"{int(total or 0) % MOD64:016x}"


_TABLES_SQL = """
SELECT c.oid::bigint AS oid, n.nspname AS schema, c.relname AS name,
       pg_catalog.pg_relation_size(c.oid) AS approx_bytes
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND c.relpersistence <> 't'
  AND n.nspname !~ :excluded
  AND NOT EXISTS (
      SELECT 1 FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname
"""

_COLUMNS_SQL = """
SELECT a.attrelid::bigint AS relid, a.attname AS name, a.atttypid::bigint AS typid,
       t.typtype AS typtype, t.typcategory AS category, t.typelem::bigint AS elem,
       (a.attcollation <> 0) AS collatable
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = ANY(CAST(:relids AS oid[])) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""


def column_mode(typid: int, category: str, elem: int) -> str:
    if typid in HASH_SAFE_TYPES:
        return "hash"
    if category == "A" and elem in HASH_SAFE_TYPES:
        return "hash"
    return "text"


def discover_tables(db: Database, exclude_schemas: Sequence[str] = ()) -> list[TableSpec]:
    """The tables a dump with these exclusions contains, with each column's hash mode."""
    tables = db.rows(_TABLES_SQL, excluded=excluded_schema_regex(exclude_schemas))
    if not tables:
        return []
    relids = [t["oid"] for t in tables]
    columns: dict[int, list[tuple[str, str]]] = {oid: [] for oid in relids}
    for col in db.rows(_COLUMNS_SQL, relids="{" + ",".join(str(r) for r in relids) + "}"):
        mode = column_mode(col["typid"], col["category"], col["elem"])
        if mode == "hash" and col["collatable"]:
            mode = "hash-c"
        columns[col["relid"]].append((col["name"], mode))
    return [
        TableSpec(t["schema"], t["name"], tuple(columns[t["oid"]]), int(t["approx_bytes"] or 0))
        for t in tables
    ]


def compute_one(db: Database, spec: TableSpec | TableEntry, method: str) -> tuple[int, str]:
    rows, total = db.run(fingerprint_sql(spec, method))[0]
    return int(rows), format_fingerprint(total)


# Tables bigger than two of these are fingerprinted in page ranges of this size, so that
# several sessions share one big table instead of one session scanning it alone.  Small
# ranges balance the sessions well; MAX_RANGES caps the number of queries per table.
CHUNK_BYTES = 8 * 1024 * 1024
MAX_RANGES = 1024


@dataclass(frozen=True)
class WorkItem:
    spec: TableSpec | TableEntry
    start_block: int | None = None
    end_block: int | None = None
    size: int = 0

    @property
    def table(self) -> str:
        return f"{self.spec.schema}.{self.spec.name}"


def plan(
    specs: Sequence[TableSpec | TableEntry],
    sizes: Mapping[str, int],
    *,
    block_size: int = 8192,
    chunk_bytes: int = CHUNK_BYTES,
    ranges: bool = True,
) -> list[WorkItem]:
    """Work items, biggest first; with ``ranges``, big tables split into page ranges.  The
    last range of a table is open-ended, so pages added after the sizes were read (invisible
    to the snapshot anyway) are still covered."""
    items: list[WorkItem] = []
    for spec in specs:
        size = sizes.get(f"{spec.schema}.{spec.name}", 0)
        blocks = size // block_size
        chunk_blocks = max(1, chunk_bytes // block_size, -(-blocks // MAX_RANGES))
        if not ranges or blocks < 2 * chunk_blocks:
            items.append(WorkItem(spec, size=size))
            continue
        starts = list(range(0, blocks, chunk_blocks))
        for index, start in enumerate(starts):
            end = starts[index + 1] if index + 1 < len(starts) else None
            items.append(
                WorkItem(spec, start or None, end, min(chunk_blocks * block_size, size - start * block_size))
            )
    return sorted(items, key=lambda item: item.size, reverse=True)


_SIZES_SQL = """
SELECT n.nspname || '.' || c.relname AS name, pg_catalog.pg_relation_size(c.oid) AS bytes
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname !~ '^(pg_catalog|information_schema|pg_toast.*)$'
"""


def table_sizes(db: Database) -> dict[str, int]:
    return {row[0]: int(row[1]) for row in db.run(_SIZES_SQL)}


def partition_roots(db: Database) -> dict[str, str]:
    """Each partition of the database (qualified, as manifests name tables) -> its partitioned
    root (``schema.name``); nothing before PostgreSQL 12, which lacks ``pg_partition_root``."""
    if db.server_version_num < 120000:
        return {}
    rows = db.run(
        """
        SELECT n.nspname::text, c.relname::text, rn.nspname::text, r.relname::text
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_catalog.pg_class r ON r.oid = pg_catalog.pg_partition_root(c.oid)
        JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
        WHERE c.relispartition AND c.relkind = 'r'
        """
    )
    return {f"{schema}.{name}": f"{root_schema}.{root}" for schema, name, root_schema, root in rows}


def compute_all(
    open_session: Callable[[], Database],
    specs: Sequence[TableSpec | TableEntry],
    method: str,
    *,
    workers: int = 1,
    sizes: Mapping[str, int] | None = None,
    ranges: bool = False,
    block_size: int = 8192,
    chunk_bytes: int = CHUNK_BYTES,
    on_table: Callable[[str, int], None] | None = None,
    first_session: Database | None = None,
    errors: dict[str, str] | None = None,
) -> dict[str, tuple[int, str]]:
    """Fingerprint ``specs`` over ``workers`` sessions, biggest work first.

    ``open_session`` returns a connection already positioned where the fingerprints must
    be taken (in the backup's snapshot, or on the restored database).  ``first_session``,
    when given, is used as one of the workers and left open.  With ``ranges`` (PostgreSQL
    14+), tables bigger than :data:`CHUNK_BYTES` are split into page ranges whose counts
    and hash sums add up.  When ``errors`` is given, a table whose query fails (missing
    after a restore, say) is recorded there instead of stopping the run.
    """
    if sizes is None:
        sizes = {f"{s.schema}.{s.name}": getattr(s, "approx_bytes", 0) for s in specs}
    queue = plan(specs, sizes, block_size=block_size, chunk_bytes=chunk_bytes, ranges=ranges)
    pending = {f"{s.schema}.{s.name}": 0 for s in specs}
    for item in queue:
        pending[item.table] += 1
    totals: dict[str, list[int]] = {table: [0, 0] for table in pending}
    failed: dict[str, str] = {}
    lock = threading.Lock()

    def worker(session: Database | None) -> None:
        own = session is None
        db = session or open_session()
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    item = queue.pop(0)
                    if item.table in failed:
                        continue
                sql = fingerprint_sql(item.spec, method, item.start_block, item.end_block)
                try:
                    rows, total = db.run(sql)[0]
                except SqlError as exc:
                    if errors is None:
                        raise
                    with lock:
                        failed[item.table] = str(exc)
                    continue
                with lock:
                    totals[item.table][0] += int(rows)
                    totals[item.table][1] += int(total or 0)
                    pending[item.table] -= 1
                    finished = pending[item.table] == 0
                if finished and on_table is not None:
                    on_table(item.table, totals[item.table][0])
        finally:
            if own:
                db.close()

    workers = max(1, min(workers, len(queue) or 1))
    if workers == 1:
        worker(first_session)
    else:
        sessions: list[Database | None] = [first_session] + [None] * (workers - 1)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fingerprint") as pool:
            for future in [pool.submit(worker, s) for s in sessions]:
                future.result()
    if errors is not None:
        errors.update(failed)
    return {
        table: (rows, format_fingerprint(total))
        for table, (rows, total) in totals.items()
        if table not in failed
    }
