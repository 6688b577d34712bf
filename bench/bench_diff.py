"""``pgrunbook diff``'s comparison of one table against a full-table comparison, in one run.

``pgrunbook diff`` restores the backup's copy of a table and compares it with the live one by
fingerprints of key ranges (:mod:`pgrunbook.adapters.postgres.rangediff`): one bucketed pass
on each side, then only the ranges that differ are looked into.  This bench measures that
engine (``diff_table``, as ``compare_tables`` calls it) on a table of ``--rows`` rows
(2,000,000 by default) in which exactly 10 rows changed live, against:

- **full**: what a script without ranges does: read every row's ``(key, row hash)`` from both
  sides into Python and compare the two dicts (the same row hash, so the same answer);
- **floor**: one full scan of the live table, ``SELECT count(*), sum(<row hash>)``: the least
  any comparison that reads the live table once can cost.

Everything is self-contained: an embedded PostgreSQL 18 in a temp dir with two databases,
``backup_copy`` and ``live``, each loaded with the same deterministic table generated
server-side; then in ``live`` 4 rows are updated (one column each: text, numeric, text[],
jsonb), 3 deleted (the first key among them) and 3 inserted (before the first key, between two
keys, after the last), spread over the key range, and both are VACUUM ANALYZEd.  The columns
and their hash modes come from ``discover_tables`` on the backup copy and the method from the
server version, exactly as a backup's manifest records them.  Every session is prepared as
``pgrunbook diff`` prepares its own (``prepare_for_scans``: deterministic text forms, no
parallel query) and kept for the whole run.

Each method must find exactly the 3 deleted, 3 inserted and 4 changed keys, every round
(exit status 1 otherwise).  Measurements are interleaved (the order rotates every round) so
that machine noise hits every method alike, after ``--warmup`` untimed rounds, and reported
as medians of ``--repeat`` rounds.  Per method: wall seconds, CPU seconds of the server and of
this process, the statements sent and the rows returned to the client (counted on the
sessions), and the live table's own counters (pg_stat_user_tables / pg_statio_user_tables).

    make bench                                             # after bench_backup.py, bench_tasks.py
    make bench DIFF_BENCH_ARGS="--rows 10000000 --repeat 5"
    .venv/bin/python bench/bench_diff.py --json diff.json

The exit status is 0 when every method found the right rows (this is a measurement: no
target), 1 when one did not, and 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgrunbook.adapters.postgres.connection import Database, qualified, quote_ident
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.adapters.postgres.embedded import start as start_embedded
from pgrunbook.adapters.postgres.fingerprints import discover_tables, method_for, row_hash_sql
from pgrunbook.adapters.postgres.rangediff import (
    FANOUT,
    LEAF_ROWS,
    Column,
    Side,
    TableDiff,
    diff_table,
    find_key,
)

PG_VERSION = 18
BACKUP_DB = "backup_copy"
LIVE_DB = "live"
SCHEMA, TABLE = "public", "track"
KEY_STEP = 10  # keys are 10, 20, 30...: room for inserts between two of them

# -- the dataset ----------------------------------------------------------------------------

SCHEMA_SQL = """
CREATE TABLE track (
    track_id bigint NOT NULL,
    album_id integer NOT NULL,
    name     text NOT NULL,
    tags     text[],
    price    numeric(6, 2) NOT NULL,
    meta     jsonb NOT NULL
)
"""

# Every value derives from the row number, so both databases get the same rows.
LOAD_SQL = """
INSERT INTO track
SELECT i * {step},
       1 + (i * 7919) % 200000,
       'Track ' || initcap(substr(md5('track' || i), 1, 10)) || ' ' || (i % 97),
       CASE WHEN i % 11 = 0 THEN NULL ELSE ARRAY['genre' || i % 23, 'mood' || i % 7] END,
       (99 + (i * 37) % 1901) / 100.0,
       jsonb_build_object('bpm', 60 + i % 140, 'explicit', i % 9 = 0,
                          'isrc', upper(substr(md5('isrc' || i), 1, 12)))
FROM generate_series(1::bigint, {rows}) AS i
"""

KEY_SQL = "ALTER TABLE track ADD PRIMARY KEY (track_id)"


@dataclass(frozen=True)
class Changes:
    """The keys changed live: what every method must find."""

    deleted: tuple[int, ...]
    inserted: tuple[int, ...]
    changed: tuple[int, ...]

    @classmethod
    def spread_over(cls, rows: int) -> Changes:
        def key(fraction: float) -> int:
            return KEY_STEP * max(1, min(rows, round(rows * fraction)))

        half = KEY_STEP // 2
        return cls(
            deleted=(key(0.0), key(0.5), key(0.75)),
            inserted=(half, key(0.45) + half, KEY_STEP * rows + half),
            changed=(key(0.1), key(0.3), key(0.6), key(0.9)),
        )

    def total(self) -> int:
        return len(self.deleted) + len(self.inserted) + len(self.changed)


def change_live(db: Database, changes: Changes) -> None:
    """Delete, update (one column of another type each) and insert, checking each row count."""
    c = changes.changed
    statements = [
        (
            f"DELETE FROM track WHERE track_id IN ({', '.join(map(str, changes.deleted))}) RETURNING 1",
            len(changes.deleted),
        ),
        (f"UPDATE track SET name = name || ' (remastered)' WHERE track_id = {c[0]} RETURNING 1", 1),
        (f"UPDATE track SET price = price + 1 WHERE track_id = {c[1]} RETURNING 1", 1),
        (
            f"UPDATE track SET tags = array_append(coalesce(tags, '{{}}'), 'live') WHERE track_id = {c[2]} "
            "RETURNING 1",
            1,
        ),
        (
            f"""UPDATE track SET meta = meta || '{{"explicit": true, "edited": 1}}' WHERE track_id = {c[3]} """
            "RETURNING 1",
            1,
        ),
        (
            "INSERT INTO track SELECT k, 1 + k % 1000, 'Inserted track ' || k, ARRAY['new'], 9.99, "
            """'{"bpm": 100}' FROM unnest(CAST(:keys AS bigint[])) AS k RETURNING 1""",
            len(changes.inserted),
        ),
    ]
    for sql, expected in statements:
        params = {"keys": "{" + ",".join(map(str, changes.inserted)) + "}"} if ":keys" in sql else {}
        done = len(db.run(sql, **params))
        if done != expected:
            raise RuntimeError(f"expected {expected} rows, changed {done}: {sql}")


def load(admin: Database, server: ConnInfo, rows: int, changes: Changes) -> None:
    for name in (BACKUP_DB, LIVE_DB):
        admin.run(f"CREATE DATABASE {quote_ident(name)}")
        with Database.connect(server.with_dbname(name), application_name="bench-load") as db:
            db.run(SCHEMA_SQL)
            db.run(LOAD_SQL.format(step=KEY_STEP, rows=int(rows)))
            db.run(KEY_SQL)
            if name == LIVE_DB:
                change_live(db, changes)
            db.run("VACUUM ANALYZE track")
    admin.run("CHECKPOINT")


# -- sessions that count what they send and receive ---------------------------------------


@dataclass
class Statement:
    sql: str
    seconds: float
    rows: int


class CountedDatabase(Database):
    """A session that keeps every statement's SQL, wall time and rows returned."""

    def __init__(self, conn: Any, info: ConnInfo):
        super().__init__(conn, info)
        self.log: list[Statement] = []

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        started = time.perf_counter()
        result = super().run(sql, **params)
        self.log.append(Statement(sql, time.perf_counter() - started, len(result)))
        return result

    def take_log(self) -> list[Statement]:
        taken, self.log = self.log, []
        return taken

    def release(self) -> None:
        """Free the last result: pg8000 keeps it until the next statement, which would then pay
        for deallocating it (0.1 s after 2,000,000 rows).  Not logged."""
        Database.run(self, "SELECT NULL")


# rangediff's statements by what they are for (anything else: the catalog, BEGIN/ROLLBACK)
PHASES = (
    ("count", re.compile(r"^SELECT count\(\*\) FROM ONLY")),
    ("bounds", re.compile(r"row_number\(\) OVER .* rn % \d+ = 0 ORDER BY rn$", re.S)),
    ("buckets", re.compile(r"width_bucket")),
    ("split points", re.compile(r"row_number\(\) OVER .* rn % \d+ = 1 AND rn > 1", re.S)),
    ("range sums", re.compile(r"^SELECT count\(\*\), sum\(.* WHERE ", re.S)),
    ("leaves", re.compile(r"^SELECT \(.*\)::text, hash_", re.S)),
)


def phase_of(sql: str) -> str:
    for name, pattern in PHASES:
        if pattern.search(sql):
            return name
    return "catalog"


# -- CPU ------------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def server_cpu_seconds(postmaster: int | None) -> float:
    """The postmaster's CPU time, its reaped children's, and its live children's (Linux)."""
    own = _proc_stat(postmaster) if postmaster else None
    if own is None:
        return 0.0
    ticks = sum(int(v) for v in own[11:15])
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(entry)
            if fields is not None and fields[1] == str(postmaster):
                ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def client_cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


# -- the live table's counters --------------------------------------------------------------

COUNTERS = ("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch", "heap_blks", "idx_blks")
COUNTERS_SQL = """
SELECT s.seq_scan, s.seq_tup_read, coalesce(s.idx_scan, 0), coalesce(s.idx_tup_fetch, 0),
       coalesce(io.heap_blks_read, 0) + coalesce(io.heap_blks_hit, 0),
       coalesce(io.idx_blks_read, 0) + coalesce(io.idx_blks_hit, 0)
FROM pg_catalog.pg_stat_user_tables s JOIN pg_catalog.pg_statio_user_tables io USING (relid)
WHERE s.relid = CAST(:table AS regclass)
"""


def counters(stats: Database) -> dict[str, int]:
    """The table's cumulative counters, as the server has them (each statement its own
    transaction, so never a cached snapshot)."""
    row = stats.run(COUNTERS_SQL, table=qualified(SCHEMA, TABLE))[0]
    return {name: int(v) for name, v in zip(COUNTERS, row, strict=True)}


def flush_stats(session: Database) -> None:
    """Make ``session``'s pending table counters visible to the others: a backend flushes them
    at most once a second, but a forced flush happens before its next ReadyForQuery."""
    session.run("SELECT pg_catalog.pg_stat_force_next_flush()")


# -- the three methods ----------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    deleted: frozenset[int]
    inserted: frozenset[int]
    changed: frozenset[int]
    diff: TableDiff | None = None


def keys_of(keys: Sequence[tuple[str, ...]]) -> frozenset[int]:
    return frozenset(int(k[0]) for k in keys)


@dataclass
class Methods:
    backup: CountedDatabase
    live: CountedDatabase
    columns: list[Column]
    method: str
    key: str  # the key column, quoted

    @property
    def row_hash(self) -> str:
        return row_hash_sql([(c.name, c.mode) for c in self.columns], self.method)

    def range_diff(self) -> Found:
        """pgrunbook diff: compare_tables' call for this table."""
        diff = diff_table(
            Side(self.backup, SCHEMA, TABLE),
            Side(self.live, SCHEMA, TABLE),
            self.columns,
            self.method,
            label=f"{SCHEMA}.{TABLE}",
        )
        if diff.error:
            raise WrongAnswer(f"diff_table failed: {diff.error}")
        found = Found(keys_of(diff.deleted), keys_of(diff.inserted), keys_of(diff.changed), diff)
        counts = (diff.deleted_count, diff.inserted_count, diff.changed_count)
        if counts != (len(found.deleted), len(found.inserted), len(found.changed)):
            raise WrongAnswer(f"diff_table counted {counts} (deleted, inserted, changed): a key twice")
        return found

    def full(self) -> Found:
        """Every row's (key, row hash) from both sides, compared in Python."""
        table = qualified(SCHEMA, TABLE)
        sql = f"SELECT {self.key}, {self.row_hash} FROM ONLY {table}"
        backup = {int(k): int(h) for k, h in self.backup.run(sql)}
        live = {int(k): int(h) for k, h in self.live.run(sql)}
        return Found(
            frozenset(k for k in backup if k not in live),
            frozenset(k for k in live if k not in backup),
            frozenset(k for k, h in backup.items() if k in live and live[k] != h),
        )

    def floor(self) -> Found:
        """One full scan of the live table: no differences found, only the cost of reading."""
        rows, _total = self.live.run(
            f"SELECT count(*), sum({self.row_hash}) FROM ONLY {qualified(SCHEMA, TABLE)}"
        )[0]
        if not rows:
            raise RuntimeError("the live table is empty")
        return Found(frozenset(), frozenset(), frozenset())


LABELS = {
    "range_diff": "a  pgrunbook diff: range fingerprints (diff_table)",
    "full": "b  full comparison: every (key, row hash) of both sides",
    "floor": "f  floor: one scan of live, count(*), sum(row hash)",
}
ORDER = tuple(LABELS)
SHORT = {"range_diff": "a  range diff", "full": "b  full", "floor": "f  floor"}


@dataclass
class Sample:
    seconds: float
    server_cpu: float
    client_cpu: float
    statements: dict[str, int]  # per side: backup, live
    rows: dict[str, int]
    live_counters: dict[str, int]
    side_seconds: dict[str, float]  # the statements' wall time, per session
    phases: dict[str, dict[str, float]] = field(default_factory=dict)  # range diff only
    queries: int = 0  # TableDiff.queries
    rows_read: int = 0  # TableDiff.rows_read


@dataclass
class Bench:
    methods: Methods
    stats: Database  # a third session on live, for its counters
    changes: Changes
    postmaster: int | None
    samples: dict[str, list[Sample]] = field(default_factory=lambda: defaultdict(list))

    def measure(self, name: str) -> Sample:
        action: Callable[[], Found] = getattr(self.methods, name)
        backup, live = self.methods.backup, self.methods.live
        backup.take_log()
        live.take_log()
        before = counters(self.stats)
        server, client = server_cpu_seconds(self.postmaster), client_cpu_seconds()
        started = time.perf_counter()
        found = action()
        backup.release()  # each method pays for freeing its own results
        live.release()
        seconds = time.perf_counter() - started
        server = server_cpu_seconds(self.postmaster) - server
        client = client_cpu_seconds() - client
        logs = {"backup": backup.take_log(), "live": live.take_log()}
        flush_stats(live)
        after = counters(self.stats)
        live.take_log()
        if name != "floor":
            self.check(name, found)
        sample = Sample(
            seconds,
            server,
            client,
            {side: len(log) for side, log in logs.items()},
            {side: sum(s.rows for s in log) for side, log in logs.items()},
            {k: after[k] - before[k] for k in COUNTERS},
            {side: sum(s.seconds for s in log) for side, log in logs.items()},
        )
        if found.diff is not None:
            sample.queries, sample.rows_read = found.diff.queries, found.diff.rows_read
            phases: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
            for side, log in logs.items():
                for s in log:
                    phase = phases[f"{phase_of(s.sql)} ({side})"]
                    phase["statements"] += 1
                    phase["rows"] += s.rows
                    phase["seconds"] += s.seconds
            sample.phases = {k: dict(v) for k, v in phases.items()}
        return sample

    def check(self, name: str, found: Found) -> None:
        expected = Found(
            frozenset(self.changes.deleted), frozenset(self.changes.inserted), frozenset(self.changes.changed)
        )
        got = (found.deleted, found.inserted, found.changed)
        if got != (expected.deleted, expected.inserted, expected.changed):
            raise WrongAnswer(
                f"{name} found deleted {sorted(found.deleted)}, inserted {sorted(found.inserted)}, "
                f"changed {sorted(found.changed)}; expected deleted {sorted(expected.deleted)}, "
                f"inserted {sorted(expected.inserted)}, changed {sorted(expected.changed)}"
            )

    def round(self, number: int, *, record: bool) -> None:
        shift = number % len(ORDER)
        for name in ORDER[shift:] + ORDER[:shift]:
            sample = self.measure(name)
            if record:
                self.samples[name].append(sample)


class WrongAnswer(RuntimeError):
    pass


# -- the report -----------------------------------------------------------------------------


def median_of(samples: Sequence[Sample], get: Callable[[Sample], float]) -> float:
    return statistics.median(get(s) for s in samples)


RATIOS = (
    ("a / b: pgrunbook diff / full comparison", "range_diff", "full"),
    ("a / f: pgrunbook diff / one scan of live", "range_diff", "floor"),
    ("b / f: full comparison / one scan of live", "full", "floor"),
)


def summarize(bench: Bench, meta: dict[str, Any]) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for name in ORDER:
        samples = bench.samples[name]
        last = samples[-1]
        methods[name] = {
            "label": LABELS[name],
            "median_s": round(median_of(samples, lambda s: s.seconds), 3),
            "min_s": round(min(s.seconds for s in samples), 3),
            "max_s": round(max(s.seconds for s in samples), 3),
            "samples_s": [round(s.seconds, 3) for s in samples],
            "median_server_cpu_s": round(median_of(samples, lambda s: s.server_cpu), 3),
            "median_client_cpu_s": round(median_of(samples, lambda s: s.client_cpu), 3),
            "median_side_s": {
                side: round(statistics.median(s.side_seconds[side] for s in samples), 3)
                for side in ("backup", "live")
            },
            # the same every round (checked below): the last round's
            "statements": last.statements,
            "rows_to_client": last.rows,
            "live_counters": last.live_counters,
        }
        if name == "range_diff":
            methods[name].update(
                queries=last.queries,
                rows_read=last.rows_read,
                phases={
                    phase: {
                        "statements": int(v["statements"]),
                        "rows": int(v["rows"]),
                        "median_s": round(
                            statistics.median(s.phases.get(phase, {}).get("seconds", 0.0) for s in samples), 3
                        ),
                    }
                    for phase, v in last.phases.items()
                },
            )
        methods[name]["counts_vary"] = any(
            (s.statements, s.rows, s.live_counters) != (last.statements, last.rows, last.live_counters)
            for s in samples
        )
    ratios = []
    for label, numerator, denominator in RATIOS:
        nums = [s.seconds for s in bench.samples[numerator]]
        dens = [s.seconds for s in bench.samples[denominator]]
        ratios.append(
            {
                "ratio": label,
                "numerator": numerator,
                "denominator": denominator,
                "value": round(statistics.median(nums) / statistics.median(dens), 4),
                "per_round_median": round(
                    statistics.median(n / d for n, d in zip(nums, dens, strict=True)), 4
                ),
            }
        )
    return {**meta, "methods": methods, "ratios": ratios}


def render(summary: dict[str, Any]) -> str:
    mb = 1e6
    changes = summary["changes"]
    methods = summary["methods"]
    lines = [
        "",
        f"pgrunbook diff bench: {SCHEMA}.{TABLE}, {summary['rows']:,} rows a side "
        f"(backup copy {summary['backup_bytes'] / mb:.0f} MB, live {summary['live_bytes'] / mb:.0f} MB "
        f"with indexes), PostgreSQL {summary['server_version']}, {summary['cpus']} CPUs",
        f"changed live: {len(changes['deleted'])} deleted {changes['deleted']}, {len(changes['inserted'])} "
        f"inserted {changes['inserted']}, {len(changes['changed'])} changed {changes['changed']}",
        f"row hash: method {summary['method']}, columns "
        + ", ".join(f"{c} ({m})" for c, m in summary["columns"])
        + f"; diff_table leaf_rows {summary['leaf_rows']}, fanout {summary['fanout']}",
        f"{summary['repeat']} timed rounds after {summary['warmup']} warm-up, order rotating; wall seconds; "
        f"load average {summary['load_average'][0]:.1f} before, {summary['load_average'][1]:.1f} after",
        "",
        f"{'method':<56} {'median':>7} {'min':>7} {'max':>7} {'srv CPU':>8} {'py CPU':>7} "
        f"{'stmts':>6} {'rows to client':>15}",
    ]
    for m in methods.values():
        statements = m["statements"]["backup"] + m["statements"]["live"]
        rows = m["rows_to_client"]["backup"] + m["rows_to_client"]["live"]
        lines.append(
            f"{m['label']:<56} {m['median_s']:7.3f} {m['min_s']:7.3f} {m['max_s']:7.3f} "
            f"{m['median_server_cpu_s']:8.2f} {m['median_client_cpu_s']:7.2f} {statements:6d} {rows:15,d}"
        )
    lines.append(
        "(stmts and rows: every statement sent and every row returned, on both sessions, catalog included;"
    )
    lines.append(" srv CPU: the PostgreSQL server's CPU-s, py CPU: this process's, pg8000 decoding included)")
    lines += ["", f"{'ratio of the medians':<56} {'value':>8} {'rounds':>8}"]
    for r in summary["ratios"]:
        lines.append(f"{r['ratio']:<56} {r['value']:7.3f}x {r['per_round_median']:7.3f}x")
    lines.append("(rounds: the median of the per-round ratios)")

    floor_s = methods["floor"]["median_s"]
    lines += [
        "",
        "the live side: its session's statements (median s, and over the floor's median), rows returned, and the",
        "live table's counters over one run (pg_stat_user_tables; blocks: pg_statio_user_tables, hit + read)",
        f"{'':<14} {'live s':>7} {'/ f':>7} {'stmts':>6} {'rows':>10} {'backup s':>9}"
        + "".join(f"{c:>14}" for c in COUNTERS),
    ]
    for name, m in methods.items():
        live_s = m["median_side_s"]["live"]
        lines.append(
            f"{SHORT[name]:<14} {live_s:7.3f} {live_s / floor_s:6.2f}x {m['statements']['live']:6d} "
            f"{m['rows_to_client']['live']:10,d} {m['median_side_s']['backup']:9.3f}"
            + "".join(f"{m['live_counters'][c]:14,d}" for c in COUNTERS)
        )

    a = methods["range_diff"]
    lines += [
        "",
        f"pgrunbook diff in detail: TableDiff.queries {a['queries']}, rows_read {a['rows_read']:,} "
        "(leaf (key, hash) pairs, both sides)",
        f"{'phase (session)':<30} {'statements':>10} {'rows':>10} {'median s':>9}",
    ]
    for phase, figures in a["phases"].items():
        lines.append(
            f"{phase:<30} {figures['statements']:10d} {figures['rows']:10,d} {figures['median_s']:9.3f}"
        )
    varying = [name for name, m in methods.items() if m["counts_vary"]]
    if varying:
        lines.append(f"(statement, row or counter figures varied between rounds for: {', '.join(varying)})")
    lines.append("")
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_diff.py",
        description="Measure pgrunbook diff's range comparison against a full-table comparison.",
    )
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows a side (default 2,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds; medians are reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.rows < 1000:
        parser.error("--rows must be at least 1000")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return args


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    changes = Changes.spread_over(args.rows)
    workdir = Path(tempfile.mkdtemp(prefix="pgrunbook-bench-diff-"))
    server = None
    sessions: list[Database] = []
    try:
        log(f"starting the embedded PostgreSQL {PG_VERSION} in {workdir}")
        server = start_embedded(workdir / f"pg{PG_VERSION}", PG_VERSION, cleanup="delete")
        with Database.connect(server.conninfo, application_name="bench") as admin:
            log(
                f"generating {args.rows:,} rows in {BACKUP_DB} and in {LIVE_DB}, then changing {changes.total()}"
            )
            started = time.perf_counter()
            load(admin, server.conninfo, args.rows, changes)
            log(f"loaded in {time.perf_counter() - started:.1f}s")
            server_version = admin.server_version
            sizes = {
                name: int(admin.scalar("SELECT pg_database_size(CAST(:name AS name))", name=name))
                for name in (BACKUP_DB, LIVE_DB)
            }

        def session(dbname: str) -> CountedDatabase:
            db = CountedDatabase.connect(
                server.conninfo.with_dbname(dbname), application_name=f"bench-{dbname}"
            )
            assert isinstance(db, CountedDatabase)
            sessions.append(db)
            db.prepare_for_scans()
            return db

        backup, live, stats = session(BACKUP_DB), session(LIVE_DB), session(LIVE_DB)
        table_bytes = {
            side: int(db.scalar("SELECT pg_total_relation_size(CAST(:t AS regclass))", t=f"{SCHEMA}.{TABLE}"))
            for side, db in (("backup", backup), ("live", live))
        }
        # what a backup records in its manifest: the columns with their modes, and the method
        spec = next(t for t in discover_tables(backup) if (t.schema, t.name) == (SCHEMA, TABLE))
        method = method_for(backup.server_version_num)
        key = find_key(backup, SCHEMA, TABLE)
        if key is None or len(key) != 1:
            raise RuntimeError(f"{TABLE} should have a one-column key, not {key}")
        methods = Methods(backup, live, [Column(c, m) for c, m in spec.columns], method, quote_ident(key[0]))
        bench = Bench(methods, stats, changes, postmaster_pid(server.data_dir))

        load_before = os.getloadavg()[0]
        for number in range(args.warmup):
            log(f"warm-up round {number + 1}/{args.warmup}")
            bench.round(number, record=False)
        for number in range(args.repeat):
            log(f"timed round {number + 1}/{args.repeat}")
            bench.round(args.warmup + number, record=True)
            log("  " + ", ".join(f"{name} {bench.samples[name][-1].seconds:.2f}s" for name in ORDER))
        summary = summarize(
            bench,
            {
                "rows": args.rows,
                "repeat": args.repeat,
                "warmup": args.warmup,
                "changes": {
                    "deleted": list(changes.deleted),
                    "inserted": list(changes.inserted),
                    "changed": list(changes.changed),
                },
                "method": method,
                "columns": [list(c) for c in spec.columns],
                "leaf_rows": LEAF_ROWS,
                "fanout": FANOUT,
                "server_version": server_version,
                "backup_bytes": table_bytes["backup"],
                "live_bytes": table_bytes["live"],
                "database_bytes": sizes,
                "cpus": os.cpu_count(),
                "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            },
        )
        print(render(summary))
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
            log(f"wrote {args.json}")
        return 0
    except WrongAnswer as exc:
        log(f"WRONG ANSWER: {exc}")
        return 1
    finally:
        for db in sessions:
            db.close()
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
