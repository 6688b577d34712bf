"""Row-level differences between a live table and the backup's copy of it, found without
moving the table: fingerprints of key ranges are compared, and only ranges that differ are
looked into.

Both sides compute the same row hash as the backup's fingerprint (the manifest's columns and
method, :func:`pgrunbook.adapters.postgres.fingerprints.row_hash_sql`), so a range's
``(count, sum of row hashes)`` is equal on both sides exactly when its rows are (up to a 2^-64
collision).

A table with a key (its primary key, else a unique index on NOT NULL columns without
expression or predicate):

1. boundaries: the backup copy's first key column at ``rows / LEAF_ROWS`` quantiles (up to
   :data:`MAX_BUCKETS`), read on the copy, never on the live database;
2. one pass on each side: ``(count, sum)`` per bucket (``width_bucket`` over the boundaries);
   equal everywhere means no difference, for one scan of the live table;
3. a bucket that differs is split at key quantiles of whichever side has more rows in it,
   ``FANOUT`` ways, each part compared with an index range query, recursively, until a part
   has at most :data:`LEAF_ROWS` rows on both sides;
4. a leaf's ``(key, row hash)`` pairs are read from both sides and matched: deleted (only in
   the backup), inserted (only live), changed (both, other hash).  Leaves are reconciled across
   ranges at the end, so a row that two sides' collations place in different ranges is not
   counted twice.

A table without such a key: a multiset difference by row hash, bucketed by the hash's top
bits (one pass on each side, then one pass for the differing buckets' hashes).

The live side runs in one ``REPEATABLE READ READ ONLY`` transaction per table: the counts
are of one moment.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from pgrunbook.adapters.postgres.connection import Database, qualified, quote_ident, quote_literal
from pgrunbook.adapters.postgres.fingerprints import row_hash_sql
from pgrunbook.domain.errors import SqlError

LEAF_ROWS = 2000
FANOUT = 16
MAX_BUCKETS = 4096
SAMPLES = 20
# keys a comparison keeps per table; a range that exists on one side only and would exceed
# it (a DELETE without WHERE on a big table) is counted and sampled, not listed
MAX_KEYS = 100_000
HASH_BUCKET_SHIFT = 54  # keyless tables: 1024 buckets by the row hash's top bits

Key = tuple[str, ...]  # a key's columns as text


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a session and the table's name there."""

    db: Database
    schema: str
    name: str

    @property
    def table(self) -> str:
        return qualified(self.schema, self.name)


@dataclass
class TableDiff:
    table: str  # the table's name in the backup
    backup_rows: int = 0
    live_rows: int = 0
    key: list[str] | None = None
    deleted: list[Key] = field(default_factory=list)  # keys in the backup, not live
    inserted: list[Key] = field(default_factory=list)  # keys live, not in the backup
    changed: list[Key] = field(default_factory=list)  # same key, other content
    live_hashes: dict[Key, int] = field(default_factory=dict)  # changed/inserted keys: live row hash
    # a table without a key: row hash -> how many more copies the backup (or live) has
    deleted_rows: dict[int, int] = field(default_factory=dict)
    inserted_rows: dict[int, int] = field(default_factory=dict)
    row_text: dict[int, str] = field(default_factory=dict)  # keyless samples: the row as text
    queries: int = 0  # range queries run (both sides)
    rows_read: int = 0  # (key, hash) pairs read from both sides' leaves
    error: str | None = None  # the table could not be compared
    # rows counted in ranges one side lacks entirely, too many to list (MAX_KEYS), with samples
    bulk_deleted: int = 0
    bulk_inserted: int = 0
    bulk_samples: dict[str, list[Key]] = field(default_factory=lambda: {"deleted": [], "inserted": []})

    @property
    def deleted_count(self) -> int:
        if self.key is None:
            return sum(self.deleted_rows.values())
        return len(self.deleted) + self.bulk_deleted

    @property
    def inserted_count(self) -> int:
        if self.key is None:
            return sum(self.inserted_rows.values())
        return len(self.inserted) + self.bulk_inserted

    @property
    def listed(self) -> bool:
        """Whether every differing row is known by its key (so a repair can name each)."""
        return not (self.bulk_deleted or self.bulk_inserted)

    @property
    def changed_count(self) -> int:
        return len(self.changed)

    @property
    def differs(self) -> bool:
        return bool(self.error or self.deleted_count or self.inserted_count or self.changed_count)

    def samples(self) -> dict[str, list[Any]]:
        if self.key is None:
            return {
                "deleted": [self.row_text.get(h, f"row hash {h}") for h in list(self.deleted_rows)[:SAMPLES]],
                "inserted": [
                    self.row_text.get(h, f"row hash {h}") for h in list(self.inserted_rows)[:SAMPLES]
                ],
                "changed": [],
            }

        def shown(keys: list[Key]) -> list[Any]:
            return [k[0] if len(k) == 1 else list(k) for k in keys[:SAMPLES]]

        return {
            "deleted": shown(sorted([*self.deleted, *self.bulk_samples["deleted"]], key=key_order)),
            "inserted": shown(sorted([*self.inserted, *self.bulk_samples["inserted"]], key=key_order)),
            "changed": shown(self.changed),
        }

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "table": self.table,
            "backup_rows": self.backup_rows,
            "live_rows": self.live_rows,
            "deleted": self.deleted_count,
            "inserted": self.inserted_count,
            "changed": self.changed_count,
            "key": self.key,
            "samples": self.samples(),
            "queries": self.queries,
        }
        if self.error:
            data["error"] = self.error
        if not self.listed:
            data["note"] = (
                f"{self.bulk_deleted + self.bulk_inserted} rows are in key ranges that one side lacks entirely: "
                "counted and sampled, not listed"
            )
        return data


@dataclass(frozen=True)
class Column:
    name: str
    mode: str  # fingerprints.COLUMN_MODES


def find_key(db: Database, schema: str, name: str) -> list[str] | None:
    """The table's primary key, else its narrowest unique index on NOT NULL columns without
    expressions or a predicate; None when it has neither."""
    rows = db.run(
        """
        SELECT i.indisprimary, array_agg(a.attname::text ORDER BY k.ord), bool_and(a.attnotnull)
        FROM pg_catalog.pg_index i
        CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = (SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n
                            ON n.oid = c.relnamespace WHERE n.nspname = :schema AND c.relname = :name)
          AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
          AND k.ord <= i.indnkeyatts
        GROUP BY i.indexrelid, i.indisprimary
        ORDER BY i.indisprimary DESC, count(*), i.indexrelid
        """,
        schema=schema,
        name=name,
    )
    for primary, columns, not_null in rows:
        if primary or not_null:
            return list(columns)
    return None


def column_types(db: Database, schema: str, name: str) -> dict[str, str]:
    """Each column's type as SQL (schema-qualified where it is not pg_catalog's)."""
    db.run("SET search_path TO ''")
    try:
        rows = db.run(
            """
            SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod)
            FROM pg_catalog.pg_attribute a
            WHERE a.attrelid = (SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n
                                ON n.oid = c.relnamespace WHERE n.nspname = :schema AND c.relname = :name)
              AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum
            """,
            schema=schema,
            name=name,
        )
    finally:
        db.run("RESET search_path")
    return {str(c): str(t) for c, t in rows}


def key_order(key: Key) -> tuple[tuple[int, int, str], ...]:
    """Keys in a readable order: integers as numbers, anything else as text."""
    return tuple((0, int(v), "") if v.lstrip("-").isdigit() else (1, 0, v) for v in key)


def literal(value: str | None, sql_type: str) -> str:
    return "NULL" if value is None else f"{quote_literal(value)}::{sql_type}"


class RangeDiff:
    """Compare one table between ``backup`` (the restored copy) and ``live``."""

    def __init__(
        self,
        backup: Side,
        live: Side,
        columns: Sequence[Column],
        method: str,
        key: Sequence[str] | None,
        types: dict[str, str],
        *,
        label: str,
        leaf_rows: int = LEAF_ROWS,
        fanout: int = FANOUT,
        max_buckets: int = MAX_BUCKETS,
        max_keys: int = MAX_KEYS,
    ):
        self.backup, self.live = backup, live
        self.max_buckets = max_buckets
        self.columns, self.method = list(columns), method
        self.key = list(key) if key else None
        self.types = types
        self.leaf_rows, self.fanout = leaf_rows, fanout
        self.max_keys = max_keys
        self._kept = 0  # keys read into the leaves so far
        self.hash = row_hash_sql([(c.name, c.mode) for c in self.columns], method)
        self.result = TableDiff(label, key=self.key)
        self._leaf_backup: dict[Key, int] = {}
        self._leaf_live: dict[Key, int] = {}

    # -- SQL --------------------------------------------------------------------------------

    def _keys(self, n: int | None = None) -> list[str]:
        assert self.key is not None
        return [quote_ident(k) for k in self.key[: n or len(self.key)]]

    def _bound(self, bound: Key) -> str:
        assert self.key is not None
        values = [literal(v, self.types[k]) for k, v in zip(self.key, bound, strict=False)]
        return values[0] if len(values) == 1 else f"ROW({', '.join(values)})"

    def _cols(self, n: int) -> str:
        keys = self._keys(n)
        return keys[0] if n == 1 else f"ROW({', '.join(keys)})"

    def _where(self, lo: Key | None, hi: Key | None) -> str:
        parts = []
        if lo is not None:
            parts.append(f"{self._cols(len(lo))} >= {self._bound(lo)}")
        if hi is not None:
            parts.append(f"{self._cols(len(hi))} < {self._bound(hi)}")
        return f" WHERE {' AND '.join(parts)}" if parts else ""

    def _aggregate(self, side: Side, lo: Key | None, hi: Key | None) -> tuple[int, int]:
        self.result.queries += 1
        rows, total = side.db.run(
            f"SELECT count(*), sum({self.hash}) FROM ONLY {side.table}{self._where(lo, hi)}"
        )[0]
        return int(rows), int(total or 0)

    def _key_text(self) -> str:
        return ", ".join(f"({k})::text" for k in self._keys())

    # -- the comparison -----------------------------------------------------------------------

    def run(self) -> TableDiff:
        if self.key is None:
            self._keyless()
        else:
            self._keyed()
        return self.result

    def _keyed(self) -> None:
        assert self.key is not None
        backup = self.backup
        first = quote_ident(self.key[0])
        total_rows = int(backup.db.scalar(f"SELECT count(*) FROM ONLY {backup.table}"))
        step = max(self.leaf_rows, math.ceil(total_rows / self.max_buckets))
        bounds: list[str] = []
        if total_rows > self.leaf_rows:
            for (value,) in backup.db.run(
                f"SELECT v FROM (SELECT ({first})::text AS v, row_number() OVER (ORDER BY {first}) AS rn "
                f"FROM ONLY {backup.table}) s WHERE rn % {int(step)} = 0 ORDER BY rn"
            ):
                if not bounds or bounds[-1] != value:
                    bounds.append(value)
        array = f"ARRAY[{', '.join(literal(b, self.types[self.key[0]]) for b in bounds)}]"
        bucket = f"pg_catalog.width_bucket({first}, {array})" if bounds else "0"
        query = "SELECT {b}, count(*), sum({h}) FROM ONLY {t} GROUP BY 1"
        per_side = self._both_sides(lambda side: query.format(b=bucket, h=self.hash, t=side.table))
        self.result.backup_rows = sum(n for n, _ in per_side[0].values())
        self.result.live_rows = sum(n for n, _ in per_side[1].values())
        edges: list[Key | None] = [None, *((b,) for b in bounds), None]
        for index in sorted(set(per_side[0]) | set(per_side[1])):
            b = per_side[0].get(index, (0, 0))
            lv = per_side[1].get(index, (0, 0))
            if b != lv:
                self._descend(edges[index], edges[index + 1], b[0], lv[0])
        self._reconcile()

    def _both_sides(self, sql: Callable[[Side], str]) -> list[dict[int, tuple[int, int]]]:
        """A bucket pass, ``(count, sum)`` per bucket, on both sides: at the same time when they
        are separate sessions (the backup's copy is usually on another server), each pass
        being a full scan."""

        def one(side: Side) -> dict[int, tuple[int, int]]:
            return {int(b): (int(n), int(s or 0)) for b, n, s in side.db.run(sql(side))}

        self.result.queries += 2
        if self.backup.db is self.live.db:
            return [one(self.backup), one(self.live)]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="diff") as pool:
            backup = pool.submit(one, self.backup)
            live = one(self.live)
            return [backup.result(), live]

    def _descend(self, lo: Key | None, hi: Key | None, backup_rows: int, live_rows: int) -> None:
        one_sided = not backup_rows or not live_rows
        if one_sided and self._kept + backup_rows + live_rows > self.max_keys:
            self._summarize(lo, hi, backup_rows, live_rows)
            return
        if max(backup_rows, live_rows) <= 2 * self.leaf_rows:
            # a bucket is leaf_rows rows: one inserted row must not split it 16 ways
            self._leaf(lo, hi)
            return
        side = self.backup if backup_rows >= live_rows else self.live
        step = max(1, math.ceil(max(backup_rows, live_rows) / self.fanout))
        keys = ", ".join(self._keys())
        self.result.queries += 1
        points: list[Key] = [
            tuple(row)
            for row in side.db.run(
                f"SELECT {self._key_text()} FROM (SELECT {keys}, row_number() OVER (ORDER BY {keys}) AS rn "
                f"FROM ONLY {side.table}{self._where(lo, hi)}) s WHERE rn % {int(step)} = 1 AND rn > 1 ORDER BY rn"
            )
        ]
        if not points:
            self._leaf(lo, hi)
            return
        edges: list[Key | None] = [lo, *points, hi]
        for start, end in pairwise(edges):
            b = self._aggregate(self.backup, start, end)
            lv = self._aggregate(self.live, start, end)
            if b != lv:
                self._descend(start, end, b[0], lv[0])

    def _summarize(self, lo: Key | None, hi: Key | None, backup_rows: int, live_rows: int) -> None:
        """A range only one side has rows in, too big to list: its count, and sample keys."""
        kind, side = ("deleted", self.backup) if backup_rows else ("inserted", self.live)
        if kind == "deleted":
            self.result.bulk_deleted += backup_rows
        else:
            self.result.bulk_inserted += live_rows
        samples = self.result.bulk_samples[kind]
        if len(samples) < SAMPLES:
            self.result.queries += 1
            keys = ", ".join(self._keys())
            samples.extend(
                tuple(row)
                for row in side.db.run(
                    f"SELECT {self._key_text()} FROM ONLY {side.table}{self._where(lo, hi)} "
                    f"ORDER BY {keys} LIMIT {SAMPLES - len(samples)}"
                )
            )

    def _leaf(self, lo: Key | None, hi: Key | None) -> None:
        where = self._where(lo, hi)
        for side, found in ((self.backup, self._leaf_backup), (self.live, self._leaf_live)):
            self.result.queries += 1
            rows = side.db.run(f"SELECT {self._key_text()}, {self.hash} FROM ONLY {side.table}{where}")
            self.result.rows_read += len(rows)
            self._kept += len(rows)
            for row in rows:
                found[tuple(row[:-1])] = int(row[-1])

    def _reconcile(self) -> None:
        backup, live = self._leaf_backup, self._leaf_live
        result = self.result
        result.deleted = sorted((k for k in backup if k not in live), key=key_order)
        result.inserted = sorted((k for k in live if k not in backup), key=key_order)
        result.changed = sorted((k for k in backup if k in live and backup[k] != live[k]), key=key_order)
        result.live_hashes = {k: live[k] for k in (*result.inserted, *result.changed)}

    def _keyless(self) -> None:
        shift = HASH_BUCKET_SHIFT
        query = f"SELECT h >> {shift}, count(*), sum(h) FROM (SELECT {self.hash} AS h FROM ONLY {{t}}) s GROUP BY 1"
        per_side = self._both_sides(lambda side: query.format(t=side.table))
        self.result.backup_rows = sum(n for n, _ in per_side[0].values())
        self.result.live_rows = sum(n for n, _ in per_side[1].values())
        differing = sorted(
            b for b in set(per_side[0]) | set(per_side[1]) if per_side[0].get(b) != per_side[1].get(b)
        )
        if not differing:
            return
        counts: list[Counter[int]] = []
        for side in (self.backup, self.live):
            self.result.queries += 1
            rows = side.db.run(
                f"SELECT h, count(*) FROM (SELECT {self.hash} AS h FROM ONLY {side.table}) s "
                f"WHERE (h >> {shift}) = ANY(CAST(:buckets AS bigint[])) GROUP BY h",
                buckets="{" + ",".join(str(b) for b in differing) + "}",
            )
            self.result.rows_read += len(rows)
            counts.append(Counter({int(h): int(n) for h, n in rows}))
        self.result.deleted_rows = dict(sorted((counts[0] - counts[1]).items()))
        self.result.inserted_rows = dict(sorted((counts[1] - counts[0]).items()))
        self._row_samples()

    def _row_samples(self) -> None:
        """The text of up to SAMPLES rows of each kind (a keyless table has no key to show)."""
        for side, hashes in ((self.backup, self.result.deleted_rows), (self.live, self.result.inserted_rows)):
            wanted = list(hashes)[:SAMPLES]
            if not wanted:
                continue
            for row in side.db.run(
                f"SELECT h, {', '.join(f'c{i}' for i in range(len(self.columns)))} FROM (SELECT {self.hash} AS h"
                + "".join(f", ({quote_ident(c.name)})::text AS c{i}" for i, c in enumerate(self.columns))
                + f" FROM ONLY {side.table}) s WHERE h = ANY(CAST(:hashes AS bigint[]))",
                hashes="{" + ",".join(str(h) for h in wanted) + "}",
            ):
                self.result.row_text.setdefault(
                    int(row[0]), "(" + ", ".join("NULL" if v is None else str(v) for v in row[1:]) + ")"
                )


def diff_table(
    backup: Side,
    live: Side,
    columns: Sequence[Column],
    method: str,
    *,
    label: str,
    leaf_rows: int = LEAF_ROWS,
    fanout: int = FANOUT,
    max_buckets: int = MAX_BUCKETS,
    max_keys: int = MAX_KEYS,
) -> TableDiff:
    """Compare one table; the live side in one read-only snapshot.  A table missing live, or
    missing a column the backup has, is reported with ``error`` and compared no further."""
    result = TableDiff(label)
    live_types = column_types(live.db, live.schema, live.name)
    if not live_types:
        result.error = f"{label} does not exist in the live database"
        result.backup_rows = int(backup.db.scalar(f"SELECT count(*) FROM ONLY {backup.table}"))
        return result
    missing = [c.name for c in columns if c.name not in live_types]
    if missing:
        result.error = f"{label} has lost columns since the backup ({', '.join(missing)}): not compared"
        return result
    types = column_types(backup.db, backup.schema, backup.name)
    key = find_key(live.db, live.schema, live.name)
    if key is not None and any(k not in types for k in key):
        key = None
    live.db.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        return RangeDiff(
            backup,
            live,
            columns,
            method,
            key,
            types,
            label=label,
            leaf_rows=leaf_rows,
            fanout=fanout,
            max_buckets=max_buckets,
            max_keys=max_keys,
        ).run()
    except SqlError as exc:
        result.error = f"{label} could not be compared: {exc}"
        return result
    finally:
        if live.db.in_transaction:
            live.db.run("ROLLBACK")
