"""The per-user task query before and after the runbook's task normalization.

Before: a user's projects, every element of their JSONB ``tasks`` arrays, the client, sorted
newest first, limited (what the application does while tasks live in ``projects.tasks``).
After: ``get_user_tasks_with_context(user, limit)`` on the normalized ``tasks`` table
(sql/migrations/).  The runbook's success criterion: more than 30 % faster.

Everything is self-contained: an embedded PostgreSQL 18 in a temp dir and the demo dataset
at full size (``load_demo_dataset`` defaults: 2,000 projects, about 100,000 tasks), migrated
with the three migration files (their up and verify parts, timed: the data migration must
take seconds, not minutes).  Both queries are checked to return the same rows for every
user first.  Measurements are interleaved (each user's two queries back to back, in a
random order, every user in every round) so that machine noise hits both sides alike, and
reported as medians.  Two figures per query:

- server time: planning + execution, from EXPLAIN (ANALYZE, TIMING OFF), which is what the
  normalization changes; the target is judged on it;
- client time: the wall time of the query as the application sees it through pg8000, which
  adds the same cost to both sides (the round trip, and decoding the same rows in Python).

At the end the migration is rolled back and the original JSON compared with a copy taken
before.

    make bench                                         # after bench_backup.py
    make bench TASKS_BENCH_ARGS="--rounds 10"         # this one's options
    .venv/bin/python bench/bench_tasks.py --rounds 10 --json tasks.json

The exit status is 0 even when the target is missed (this is a measurement, not a test), 1
when the two queries disagree or the rollback does not restore the JSON, and 2 on bad
arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.embedded import start as start_embedded
from pgrunbook.entrypoints.demo import load_demo_dataset
from pgrunbook.settings.files import sql_dir
from pgrunbook.workflows.migrate.engine import Migrator

PG_VERSION = 18
DATABASE = "bench_tasks"
TARGET_SPEEDUP = 0.30  # "query performance improved by >30 %"

BEFORE_SQL = """
SELECT (t ->> 'id')::uuid AS task_id,
       t ->> 'title' AS title,
       t ->> 'description' AS description,
       t ->> 'status' AS status,
       t ->> 'priority' AS priority,
       (t ->> 'due_date')::date AS due_date,
       (t ->> 'created_at')::timestamptz AS created_at,
       coalesce((t ->> 'updated_at')::timestamptz, (t ->> 'created_at')::timestamptz) AS updated_at,
       t -> 'tags' AS tags,
       p.id AS project_id,
       p.name AS project_name,
       p.status AS project_status,
       c.id AS client_id,
       c.name AS client_name,
       c.email AS client_email
FROM projects AS p
LEFT JOIN clients AS c ON c.id = p.client_id
CROSS JOIN LATERAL jsonb_array_elements(p.tasks) AS t
WHERE p.user_id = :user_id
ORDER BY (t ->> 'created_at')::timestamptz DESC, (t ->> 'id')::uuid
LIMIT CAST(:row_limit AS integer)
"""

AFTER_SQL = "SELECT * FROM get_user_tasks_with_context(:user_id, CAST(:row_limit AS integer))"

# -- the measurement ------------------------------------------------------------------------


def timed_query(db: Database, sql: str, user_id: Any, limit: int) -> tuple[float, list[list[Any]]]:
    started = time.perf_counter()
    rows = db.run(sql, user_id=user_id, row_limit=limit)
    return time.perf_counter() - started, rows


def server_time(db: Database, sql: str, user_id: Any, limit: int) -> float:
    """Planning + execution time on the server, in seconds."""
    plan = db.run(f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}", user_id=user_id, row_limit=limit)
    figures = plan[0][0][0]
    return (figures["Planning Time"] + figures["Execution Time"]) / 1e3


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_tasks.py",
        description="The per-user task query on JSONB arrays vs get_user_tasks_with_context().",
    )
    parser.add_argument("--projects", type=int, default=2000, help="demo projects (default 2000)")
    parser.add_argument("--avg-tasks", type=int, default=50, help="average tasks per project (default 50)")
    parser.add_argument("--limit", type=int, default=50, help="rows per query (default 50)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds over every user (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--seed", type=int, default=20250907, help="the shuffling's seed")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.projects < 1 or args.avg_tasks < 1 or args.limit < 1:
        parser.error("--projects, --avg-tasks and --limit must be positive")
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be at least 1 and --warmup not negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    migrations = sql_dir() / "migrations"
    workdir = Path(tempfile.mkdtemp(prefix="pgrunbook-bench-tasks-"))
    server = None
    try:
        log(f"starting the embedded PostgreSQL {PG_VERSION} in {workdir}")
        server = start_embedded(workdir / f"pg{PG_VERSION}", PG_VERSION, cleanup="delete")
        with Database.connect(server.conninfo, application_name="bench") as admin:
            started = time.perf_counter()
            load_demo_dataset(admin, DATABASE, projects=args.projects, avg_tasks=args.avg_tasks)
            log(f"loaded the demo dataset in {time.perf_counter() - started:.1f}s")
        db = Database.connect(server.conninfo.with_dbname(DATABASE), application_name="bench")
        with db:
            server_version = db.server_version
            tasks = int(db.scalar("SELECT sum(jsonb_array_length(tasks)) FROM projects"))
            users = [r[0] for r in db.run("SELECT DISTINCT user_id FROM projects ORDER BY 1")]
            db.run("CREATE TEMPORARY TABLE original_tasks AS SELECT id, tasks FROM projects")

            # pgrunbook's engine: each file up + verify in its own transaction, timed by the engine
            engine = Migrator(db.info, migrations, applied_by="bench")
            applied = engine.apply()
            if not applied.ok:
                log(f"the migration failed: {applied.to_dict()}")
                return 1
            migration_s = {f"{s.version}_{s.name}": s.duration_ms / 1000 for s in applied.steps}
            log(f"migrated {tasks:,} tasks in {sum(migration_s.values()):.2f}s (up + verify)")
            validation = db.rows("SELECT * FROM validate_task_migration()")
            if any(row["status"] != "PASS" for row in validation):
                log(f"validate_task_migration() failed: {validation}")
                return 1

            for user_id in users:
                _, before = timed_query(db, BEFORE_SQL, user_id, args.limit)
                _, after = timed_query(db, AFTER_SQL, user_id, args.limit)
                if before != after or not after:
                    log(f"the two queries disagree for user {user_id}")
                    return 1
            log(f"both queries return the same {args.limit} rows for each of {len(users)} users")

            rng = random.Random(args.seed)
            queries = {"before": BEFORE_SQL, "after": AFTER_SQL}
            samples: dict[str, dict[str, list[float]]] = {
                kind: {"before": [], "after": []} for kind in ("server", "client")
            }
            pair_ratios: dict[str, list[float]] = {"server": [], "client": []}
            load_before = os.getloadavg()[0]
            for number in range(args.warmup + args.rounds):
                record = number >= args.warmup
                order = list(users)
                rng.shuffle(order)
                for user_id in order:
                    for kind in ("server", "client"):
                        sides = ["before", "after"]
                        rng.shuffle(sides)
                        times = {}
                        for side in sides:
                            if kind == "server":
                                times[side] = server_time(db, queries[side], user_id, args.limit)
                            else:
                                times[side], _ = timed_query(db, queries[side], user_id, args.limit)
                        if record:
                            for side, seconds in times.items():
                                samples[kind][side].append(seconds)
                            pair_ratios[kind].append(times["after"] / times["before"])
                what = "timed round" if record else "warm-up round"
                log(f"{what} {number + 1 - (args.warmup if record else 0)}: {len(order)} users")

            started = time.perf_counter()
            rolled_back = engine.rollback(steps=len(applied.steps))
            rollback_s = time.perf_counter() - started
            if not rolled_back.ok:
                log(f"the rollback failed: {rolled_back.to_dict()}")
                return 1
            differences = db.scalar(
                "SELECT count(*) FROM original_tasks AS o FULL JOIN projects AS p ON p.id = o.id "
                "WHERE o.id IS NULL OR p.id IS NULL OR o.tasks IS DISTINCT FROM p.tasks"
            )
            if differences:
                log(f"the rollback left {differences} projects different from the original JSON")
                return 1

        figures = {}
        for kind, sides in samples.items():
            ratio = statistics.median(sides["after"]) / statistics.median(sides["before"])
            figures[kind] = {
                "median_ms": {side: round(statistics.median(v) * 1e3, 3) for side, v in sides.items()},
                "p90_ms": {side: round(percentile(v, 0.9) * 1e3, 3) for side, v in sides.items()},
                "ratio_of_medians": round(ratio, 4),
                "per_pair_ratio_median": round(statistics.median(pair_ratios[kind]), 4),
                "speedup": round(1 - ratio, 4),
            }
        speedup = figures["server"]["speedup"]
        summary = {
            "server_version": server_version,
            "projects": args.projects,
            "tasks": tasks,
            "users": len(users),
            "limit": args.limit,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "queries_per_side": len(samples["client"]["before"]),
            "migration_s": {k: round(v, 3) for k, v in migration_s.items()},
            "migration_total_s": round(sum(migration_s.values()), 3),
            "rollback_s": round(rollback_s, 3),
            "server": figures["server"],
            "client": figures["client"],
            "target_speedup": TARGET_SPEEDUP,
            "verdict": "PASS" if speedup > TARGET_SPEEDUP else "MISS",
            "cpus": os.cpu_count(),
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        }
        print(render(summary))
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
            log(f"wrote {args.json}")
        return 0
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def render(summary: dict[str, Any]) -> str:
    server, client = summary["server"], summary["client"]
    lines = [
        "",
        f"pgrunbook task bench: {summary['tasks']:,} tasks in {summary['projects']:,} projects, "
        f"{summary['users']} users, PostgreSQL {summary['server_version']}, {summary['cpus']} CPUs",
        f"migration (up + verify, all files): {summary['migration_total_s']:.2f}s  ("
        + ", ".join(f"{name.split('_', 1)[1]} {s:.2f}s" for name, s in summary["migration_s"].items())
        + f"); rollback {summary['rollback_s']:.2f}s, the original JSON restored exactly",
        f"{summary['rounds']} timed rounds after {summary['warmup']} warm-up, {summary['queries_per_side']} "
        f"queries a side, LIMIT {summary['limit']}; load average {summary['load_average'][0]:.1f} before, "
        f"{summary['load_average'][1]:.1f} after",
        "",
        f"{'per-user query, ms':<58} {'server':>8} {'p90':>8} {'client':>8} {'p90':>8}",
    ]
    for side, label in (
        ("before", "before: JSONB arrays (jsonb_array_elements, sort, limit)"),
        ("after", "after:  get_user_tasks_with_context()"),
    ):
        lines.append(
            f"{label:<58} {server['median_ms'][side]:8.3f} {server['p90_ms'][side]:8.3f} "
            f"{client['median_ms'][side]:8.3f} {client['p90_ms'][side]:8.3f}"
        )
    lines += [
        "",
        f"{'after / before':<58} {server['ratio_of_medians']:7.3f}x {'':>8} {client['ratio_of_medians']:7.3f}x",
        f"{'  median of the per-user pairs':<58} {server['per_pair_ratio_median']:7.3f}x {'':>8} "
        f"{client['per_pair_ratio_median']:7.3f}x",
        f"{'faster by':<58} {server['speedup'] * 100:7.1f}% {'':>8} {client['speedup'] * 100:7.1f}%",
        "",
        f"target (server time): more than {summary['target_speedup'] * 100:.0f}% faster: {summary['verdict']}",
        "(server: planning + execution from EXPLAIN (ANALYZE, TIMING OFF); client: wall time through",
        " pg8000, the round trip and the decoding of the same rows included on both sides)",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
