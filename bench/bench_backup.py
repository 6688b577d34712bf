"""pgrunbook's backup and restore test against the stock PostgreSQL tools, in one run.

The targets (issue 16, "verification that costs the production database nothing"), on the
medians of one run:

- the database server's CPU during ``pgrunbook backup`` at most 1.10x a bare dump's;
- ``pgrunbook backup`` at most 1.10x **the baseline**, what a user would otherwise run: a bare
  ``pg_dump -Fd -j2 -Z1`` to a local directory, then an upload of that directory with boto3's
  managed transfer (s3transfer, the same concurrency and part size as pgrunbook's) and a
  managed copy of every object to the DR bucket; and at most 1.25x the bare directory dump;
- ``pgrunbook restore-test`` (download, checksum check, pg_restore, fingerprint of every
  table) at most 1.2x a bare ``pg_restore -j2`` plus a ``count(*)`` of every table;
- the fingerprints' throughput in the runner, in MB/s of COPY text per core: reported.

``pgrunbook backup`` is measured twice, with its setting passed explicitly: ``fingerprints=dump``
(each table's rows and fingerprint from the archive's own COPY data, digested as the upload
reads each file: the database is read once, by pg_dump) and ``fingerprints=after`` (the
server-side fingerprints, in the backup's snapshot, after pg_dump: what ``server`` and ``auto``
choose for a database on this machine), for comparison.  Each one's restore test is measured
too: a dump-fingerprinted backup is verified with ``COPY ... TO STDOUT`` of every restored table,
a server-fingerprinted one with the server-side fingerprints.  A single-stream ``pg_dump -Fc``
is measured as well: it is how single-file Lambda dumpers work.

Everything is self-contained: an embedded PostgreSQL 18 in a temp dir, a deterministic
dataset generated server-side, and S3 from moto.  moto runs in this process, so what an
upload costs here is CPU (checksums, moto's own bookkeeping), never network; the baseline's
uploads and copies run in this process too, against the same moto.  The bare tools are the
very binaries pgrunbook picks, run with the same connection string.  pgrunbook runs with its
defaults but for the fingerprints (the ``backup_metadata`` mirror included, so the source
database gains that small table, which the bare dumps then carry as well).  The database
server's CPU (postmaster, backends, background processes) is measured for every method.

Measurements are interleaved (bare, baseline, pgrunbook, ... in an order that rotates from
round to round) so that machine noise and position hit every side alike, and each one is
reported as the median of ``--repeat`` rounds, after ``--warmup`` untimed rounds.

    make bench                                    # scale 1 (1,000,000 rows), 3 rounds
    make bench BENCH_ARGS="--scale 5 --json bench.json"

The exit status is 0 even when a target is missed (this is a measurement, not a test), and
2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig, create_transfer_manager

from pgrunbook.adapters.postgres.connection import Database, qualified, quote_ident
from pgrunbook.adapters.postgres.copytext import fingerprint_all
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.adapters.postgres.embedded import start as start_embedded
from pgrunbook.adapters.postgres.tools import Tool, find_pg_dump, find_pg_restore, find_tool
from pgrunbook.adapters.s3.store import TransferSettings
from pgrunbook.catalog.backups import Catalog
from pgrunbook.operations.backup import BackupResult, run_backup
from pgrunbook.operations.restorer import run_restore_test
from pgrunbook.progress import NullProgress
from pgrunbook.settings.model import Settings

PG_VERSION = 18
JOBS = 2
COMPRESSION = 1
# issue 16's targets
TARGET_BACKUP_VS_BASELINE = 1.10
TARGET_BACKUP_VS_DUMP = 1.25
TARGET_SERVER_CPU = 1.10
TARGET_RESTORE = 1.2
# the two ways pgrunbook backup fingerprints, passed explicitly (not the default, whatever it is)
DUMP_MODE = "dump"
SERVER_MODE = "after"  # what "server" and "auto" choose for a database on this machine
BASELINE_PREFIX = "baseline"
SOURCE_DB = "bench"
PRIMARY = ("pgrunbook-bench-primary", "us-east-1")
DR = ("pgrunbook-bench-dr", "us-west-2")

# Rows per table at scale 1: 1,000,000 in all, most of them in the orders-like table.
BASE_ROWS = {"customers": 100_000, "products": 5_000, "orders": 700_000, "payments": 195_000}

# -- the dataset --------------------------------------------------------------------------

SCHEMA_SQL = """
CREATE TABLE customers (
    id             bigint PRIMARY KEY,
    email          text NOT NULL,
    full_name      text NOT NULL,
    country        char(2) NOT NULL,
    created_at     timestamptz NOT NULL,
    lifetime_value numeric(12, 2) NOT NULL
);
CREATE TABLE products (
    id         bigint PRIMARY KEY,
    sku        text NOT NULL,
    name       text NOT NULL,
    price      numeric(10, 2) NOT NULL,
    attributes jsonb NOT NULL
);
CREATE TABLE orders (
    id          bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    product_id  bigint NOT NULL,
    quantity    integer NOT NULL,
    unit_price  numeric(10, 2) NOT NULL,
    total       numeric(12, 2) NOT NULL,
    status      text NOT NULL,
    ordered_at  timestamptz NOT NULL,
    shipped_at  timestamptz,
    note        text,
    details     jsonb NOT NULL
);
CREATE TABLE payments (
    id           bigint PRIMARY KEY,
    order_id     bigint NOT NULL,
    amount       numeric(12, 2) NOT NULL,
    method       text NOT NULL,
    provider_ref uuid NOT NULL,
    paid_at      timestamptz NOT NULL
);
"""

# Each statement is formatted with the row counts; every value derives from the row number,
# so the same scale always produces the same data.
LOAD_SQL = (
    """
    INSERT INTO customers
    SELECT i,
           'customer' || i || '@example.com',
           initcap(substr(md5('first' || i), 1, 7)) || ' ' || initcap(substr(md5('last' || i), 1, 10)),
           (ARRAY['US', 'DE', 'FR', 'GB', 'JP', 'BR', 'IN', 'CA'])[1 + i % 8],
           timestamptz '2020-01-01 00:00:00+00' + i * interval '17 minutes',
           (i * 7919 % 5000000) / 100.0
    FROM generate_series(1::bigint, {customers}) AS i
    """,
    """
    INSERT INTO products
    SELECT i,
           'SKU-' || lpad(i::text, 7, '0'),
           'Product ' || initcap(substr(md5('product' || i), 1, 12)),
           1 + (i * 31 % 20000) / 100.0,
           jsonb_build_object(
               'color', (ARRAY['red', 'green', 'blue', 'black', 'white'])[1 + i % 5],
               'weight_g', 50 + i % 5000,
               'tags', jsonb_build_array('tag' || i % 7, 'tag' || i % 11))
    FROM generate_series(1::bigint, {products}) AS i
    """,
    """
    INSERT INTO orders
    SELECT i,
           1 + i * 7919 % {customers},
           1 + i * 104729 % {products},
           v.quantity,
           v.unit_price,
           v.quantity * v.unit_price,
           (ARRAY['delivered', 'delivered', 'delivered', 'shipped', 'paid', 'pending', 'cancelled',
                  'refunded'])[1 + i % 8],
           v.ordered_at,
           CASE WHEN i % 8 < 4 THEN v.ordered_at + (1 + i % 96) * interval '1 hour' END,
           CASE WHEN i % 5 = 0 THEN 'gift wrap; leave at ' || substr(md5('note' || i), 1, 16) END,
           jsonb_strip_nulls(jsonb_build_object(
               'channel', (ARRAY['web', 'ios', 'android', 'store'])[1 + i % 4],
               'coupon', CASE WHEN i % 10 = 0 THEN 'SPRING' || i % 100 END,
               'shipping', jsonb_build_object('method', (ARRAY['standard', 'express'])[1 + i % 2],
                                              'postcode', lpad((i * 37 % 99999)::text, 5, '0')),
               'session', substr(md5('session' || i), 1, 20)))
    FROM generate_series(1::bigint, {orders}) AS i,
         LATERAL (SELECT 1 + i % 5 AS quantity,
                         1 + (i * 31 % 20000) / 100.0 AS unit_price,
                         timestamptz '2023-01-01 00:00:00+00' + i * interval '41 seconds' AS ordered_at) AS v
    """,
    """
    INSERT INTO payments
    SELECT i,
           1 + (i - 1) * {orders} / {payments},
           (i * 37 % 500000) / 100.0,
           (ARRAY['card', 'card', 'card', 'paypal', 'bank_transfer', 'gift_card'])[1 + i % 6],
           md5('payment' || i)::uuid,
           timestamptz '2023-01-01 00:00:00+00' + i * interval '150 seconds'
    FROM generate_series(1::bigint, {payments}) AS i
    """,
)

# Constraints and indexes come after the load (faster), as a restore creates them too.
CONSTRAINTS_SQL = """
CREATE UNIQUE INDEX customers_email_key ON customers (email);
CREATE UNIQUE INDEX products_sku_key ON products (sku);
ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers;
ALTER TABLE orders ADD FOREIGN KEY (product_id) REFERENCES products;
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE INDEX orders_ordered_at_idx ON orders (ordered_at);
ALTER TABLE payments ADD FOREIGN KEY (order_id) REFERENCES orders;
CREATE INDEX payments_order_id_idx ON payments (order_id);
"""


def rows_at(scale: float) -> dict[str, int]:
    return {table: max(1, round(rows * scale)) for table, rows in BASE_ROWS.items()}


def load_dataset(admin: Database, rows: dict[str, int]) -> None:
    admin.run(f"CREATE DATABASE {quote_ident(SOURCE_DB)}")
    with Database.connect(admin.info.with_dbname(SOURCE_DB), application_name="bench-load") as db:
        db.run(SCHEMA_SQL)
        for statement in LOAD_SQL:
            db.run(statement.format(**rows))
        db.run(CONSTRAINTS_SQL)
        db.run("ANALYZE")
        db.run("CHECKPOINT")


# -- the stock tools ----------------------------------------------------------------------


def run_bare(tool: Tool, args: Sequence[str], conninfo: ConnInfo) -> None:
    """Run a pg tool the way a person would: same URI, password (if any) in the environment."""
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    env.update(conninfo.libpq_env())
    result = subprocess.run(
        [str(tool.path), *args, "--no-password"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{tool.name} exited {result.returncode}: {result.stderr.strip()[-2000:]}")


def count_every_table(conninfo: ConnInfo) -> dict[str, int]:
    with Database.connect(conninfo, application_name="bench-count") as db:
        tables = db.run(
            "SELECT schemaname, tablename FROM pg_catalog.pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        )
        return {
            f"{schema}.{name}": int(db.scalar(f"SELECT count(*) FROM {qualified(schema, name)}"))
            for schema, name in tables
        }


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- the run ------------------------------------------------------------------------------


@dataclass
class Results:
    """Per measurement, one sample per timed round: wall seconds and CPU; plus pgrunbook's own
    durations and figures, per method (``dump``, ``server``)."""

    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    cpu: dict[str, list[Cpu]] = field(default_factory=lambda: defaultdict(list))
    backup_durations: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    restore_durations: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    sizes: dict[str, int] = field(default_factory=dict)
    peak_disk: dict[str, list[int]] = field(
        default_factory=lambda: defaultdict(list)
    )  # work dir at its largest
    copy_text_bytes: list[int] = field(default_factory=list)  # the dump backup's COPY text
    fingerprint_cpu_s: list[float] = field(default_factory=list)  # its digests' CPU seconds
    copy_verify: list[tuple[float, Cpu]] = field(default_factory=list)  # restore side: COPY TO

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])


@dataclass(frozen=True)
class Cpu:
    """CPU seconds spent so far (or over a measurement), split by who spent them.

    ``server``: the PostgreSQL server (postmaster, its live processes, and the backends
    that have exited, which the kernel adds to the postmaster's children time);
    ``tools``: pg_dump and pg_restore (this process's waited-for children);
    ``pgrunbook``: this process, i.e. pgrunbook and the in-process moto;
    ``machine``: the whole machine, so ``other`` is the kernel's own threads and the rest,
    whatever else runs on the machine included; ``own`` leaves that out (the figures the
    bench's CPU floor and its CPU-s column use, robust to other load on the machine).
    """

    machine: float = 0.0
    server: float = 0.0
    tools: float = 0.0
    pgrunbook: float = 0.0

    PARTS = ("server", "tools", "pgrunbook", "other")

    @property
    def other(self) -> float:
        return self.machine - self.server - self.tools - self.pgrunbook

    @property
    def own(self) -> float:
        return self.server + self.tools + self.pgrunbook

    def __sub__(self, before: Cpu) -> Cpu:
        return Cpu(
            self.machine - before.machine,
            self.server - before.server,
            self.tools - before.tools,
            self.pgrunbook - before.pgrunbook,
        )

    def __add__(self, more: Cpu) -> Cpu:
        return Cpu(
            self.machine + more.machine,
            self.server + more.server,
            self.tools + more.tools,
            self.pgrunbook + more.pgrunbook,
        )


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVER_PID: int | None = None  # the postmaster, once the embedded server runs


def _proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state is [0], ppid [1])."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _children(pid: int) -> list[str]:
    """The pids of ``pid``'s children: from /proc/PID/task/PID/children where the kernel has
    it (one read), else by a scan of /proc."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return children.read().split()
    except OSError:
        pass
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(entry)
            if fields is not None and fields[1] == str(pid):
                found.append(entry)
    return found


def server_cpu_seconds(postmaster: int) -> float:
    """The server's CPU so far: the postmaster's own, its reaped children's (the backends that
    have exited) and its live children's (a zombie keeps its times until reaped).

    A backend reaped between reading the postmaster and reading its children would be in
    neither (they exit as their client does, just when a measurement ends): the postmaster is
    read again after its children, and the whole read retried if a child was reaped meanwhile.
    """
    ticks = 0
    for _ in range(20):
        before = _proc_stat(postmaster)
        if before is None:
            return 0.0
        ticks = sum(int(v) for v in before[11:15])  # utime, stime, and those of reaped children
        for child in _children(postmaster):
            fields = _proc_stat(child)
            if fields is not None and fields[1] == str(postmaster):
                ticks += int(fields[11]) + int(fields[12])
        after = _proc_stat(postmaster)
        if after is not None and after[13:15] == before[13:15]:
            break
    return ticks / CLOCK_TICKS


def cpu_now() -> Cpu:
    """CPU time so far, from Linux's /proc and getrusage (zeros where unavailable)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:8]]
        user, nice, system, _idle, _iowait, irq, softirq = fields
        machine = (user + nice + system + irq + softirq) / CLOCK_TICKS
    except (OSError, ValueError):
        return Cpu()
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Cpu(
        machine=machine,
        server=server_cpu_seconds(SERVER_PID) if SERVER_PID else 0.0,
        tools=children.ru_utime + children.ru_stime,
        pgrunbook=me.ru_utime + me.ru_stime,
    )


def timed(action: Callable[[], Any]) -> tuple[float, Cpu, Any]:
    """(wall seconds, CPU spent, result) of ``action``."""
    cpu = cpu_now()
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, cpu_now() - cpu, result


def record_durations(into: dict[str, list[float]], durations: dict[str, float], wall_s: float) -> None:
    """A job report's own durations, plus the wall time its ``total_s`` leaves out."""
    for key, value in durations.items():
        into[key].append(value)
    into["outside_total_s"].append(wall_s - durations.get("total_s", 0.0))


@dataclass
class Bench:
    server_info: ConnInfo
    source: ConnInfo
    settings: Settings  # fingerprints=dump
    server_settings: Settings  # fingerprints=after
    pg_dump: Tool
    pg_restore: Tool
    workdir: Path
    rows: dict[str, int]
    results: Results = field(default_factory=Results)

    def round(self, number: int, *, record: bool) -> None:
        """One round of every measurement, bare, baseline and pgrunbook interleaved.

        The dumps run first, then the restores, each group in an order rotated by one every
        round, so that no method always follows the same one.  The server is checkpointed
        before each measurement, so that none of them pays for the dirty pages and WAL the
        previous one left behind (a restore writes a whole database), and the bare restore's
        database is gone before the next restore starts.
        """
        samples = self.results.samples if record else defaultdict(list)
        cpu = self.results.cpu if record else defaultdict(list)
        dump_dir = self.workdir / f"bare-dir-{number}"
        baseline_dir = self.workdir / f"baseline-dir-{number}"
        baseline_prefix = f"{BASELINE_PREFIX}/{number}"
        dump_file = self.workdir / f"bare-{number}.dump"
        restored = f"bench_bare_restore_{number}"
        backups: dict[str, BackupResult] = {}

        def measure(name: str, action: Callable[[], Any]) -> tuple[float, Cpu, Any]:
            self.settle()
            seconds, cpu_s, result = timed(action)
            samples[name].append(seconds)
            cpu[name].append(cpu_s)
            return seconds, cpu_s, result

        def baseline() -> None:
            _, _, parts = measure("baseline", lambda: self.baseline(baseline_dir, baseline_prefix))
            for part, (seconds, cpu_s) in parts.items():
                samples[f"baseline_{part}"].append(seconds)
                cpu[f"baseline_{part}"].append(cpu_s)

        def backup(method: str, settings: Settings) -> None:
            name = f"pgrunbook_backup_{method}"
            seconds, cpu_s, result = measure(name, lambda: run_backup(settings, progress=NullProgress()))
            if result.status not in ("ok", "warning"):
                raise RuntimeError(f"pgrunbook backup ({method}) failed: {result.error}")
            if (result.copy_text_bytes > 0) != (method == "dump"):
                raise RuntimeError(f"pgrunbook backup ({method}) did not fingerprint as asked")
            backups[method] = result
            if method == "dump":
                samples[f"{name}_primary"].append(
                    seconds - result.durations.get("dr_copy_after_manifest_s", 0.0)
                )
                cpu[f"{name}_primary"].append(cpu_s)
            if record:
                record_durations(self.results.backup_durations[method], result.durations, seconds)
                self.results.sizes[name] = result.size_bytes
                self.results.peak_disk[method].append(result.peak_disk_bytes)
                if method == "dump":
                    self.results.copy_text_bytes.append(result.copy_text_bytes)
                    self.results.fingerprint_cpu_s.append(result.durations.get("fingerprint_s", 0.0))

        def bare_restore_count() -> None:
            restore_s, restore_cpu, _ = measure("bare_restore", lambda: self.bare_restore(dump_dir, restored))
            count_s, count_cpu, counts = timed(
                lambda: count_every_table(self.server_info.with_dbname(restored))
            )
            self.check_counts(counts)
            samples["bare_count"].append(count_s)
            cpu["bare_count"].append(count_cpu)
            samples["bare_restore_count"].append(restore_s + count_s)
            cpu["bare_restore_count"].append(restore_cpu + count_cpu)
            if record and "dump" in backups:  # the COPY TO verification alone, on this copy
                manifest = Catalog(self.settings.primary_store()).manifest(backups["dump"].backup_id)
                tables = [t for t in manifest.tables if t.schema != "pgrunbook"]  # the dataset's
                copy = self.server_info.with_dbname(restored)
                psql = find_tool("psql", PG_VERSION)
                self.settle()
                seconds, spent, _ = timed(lambda: fingerprint_all(copy, tables, psql=psql, workers=JOBS))
                self.results.copy_verify.append((seconds, spent))
            self.admin(f"DROP DATABASE {quote_ident(restored)} WITH (FORCE)")

        def restore_test(method: str, settings: Settings) -> None:
            backup_id = backups[method].backup_id
            seconds, _, result = measure(
                f"restore_test_{method}",
                lambda: run_restore_test(settings, backup_id=backup_id, progress=NullProgress()),
            )
            if result.status != "ok" or result.integrity_pct < 100.0:
                raise RuntimeError(
                    f"pgrunbook restore-test ({method}) failed: {result.error or result.restore_errors}"
                )
            if record:
                record_durations(self.results.restore_durations[method], result.durations, seconds)

        dumps: list[Callable[[], Any]] = [
            lambda: measure("bare_dump_dir", lambda: self.bare_dump_dir(dump_dir)),
            baseline,
            lambda: backup("dump", self.settings),
            lambda: backup("server", self.server_settings),
            lambda: measure("bare_dump_custom", lambda: self.bare_dump_custom(dump_file)),
        ]
        restores: list[Callable[[], Any]] = [
            bare_restore_count,
            lambda: restore_test("dump", self.settings),
            lambda: restore_test("server", self.server_settings),
        ]
        try:
            for step in rotated(dumps, number) + rotated(restores, number):
                step()
            if record:
                self.results.sizes.update(
                    bare_dump_dir=size_of(dump_dir),
                    bare_dump_custom=size_of(dump_file),
                    baseline=size_of(baseline_dir),
                )
        finally:
            self.clean_up([dump_dir, baseline_dir, dump_file], baseline_prefix, backups.values())

    def admin(self, sql: str) -> None:
        with Database.connect(self.server_info, application_name="bench-admin") as admin:
            admin.run(sql)

    def settle(self) -> None:
        self.admin("CHECKPOINT")

    def bare_dump_dir(self, dump_dir: Path) -> None:
        run_bare(
            self.pg_dump,
            [
                "--format=directory",
                f"--jobs={JOBS}",
                f"--compress={COMPRESSION}",
                f"--file={dump_dir}",
                f"--dbname={self.source.libpq_uri()}",
            ],
            self.source,
        )

    def bare_dump_custom(self, dump_file: Path) -> None:
        run_bare(
            self.pg_dump,
            [
                "--format=custom",
                f"--compress={COMPRESSION}",
                f"--file={dump_file}",
                f"--dbname={self.source.libpq_uri()}",
            ],
            self.source,
        )

    def baseline(self, dump_dir: Path, prefix: str) -> dict[str, tuple[float, Cpu]]:
        """What a user would otherwise run: the bare directory dump, then an upload of the
        directory with boto3's managed transfer, then a managed copy of each object to the DR
        bucket; (seconds, CPU) of each step.  s3transfer with pgrunbook's own concurrency and
        part size, default clients (botocore's default CRC32 checksums), the same moto."""
        ours = TransferSettings()
        config = TransferConfig(
            multipart_threshold=ours.single_put_max,
            multipart_chunksize=ours.part_size,
            max_concurrency=ours.concurrency,
            preferred_transfer_client="classic",
        )
        parts: dict[str, tuple[float, Cpu]] = {}
        seconds, spent, _ = timed(lambda: self.bare_dump_dir(dump_dir))
        parts["dump"] = (seconds, spent)
        primary = boto3.client("s3", region_name=PRIMARY[1])
        dr = boto3.client("s3", region_name=DR[1])
        names = sorted(p.name for p in dump_dir.iterdir() if p.is_file())

        def upload() -> None:
            with create_transfer_manager(primary, config) as manager:
                futures = [manager.upload(str(dump_dir / n), PRIMARY[0], f"{prefix}/{n}") for n in names]
                for future in futures:
                    future.result()

        def copy() -> None:
            with create_transfer_manager(dr, config) as manager:
                futures = [
                    manager.copy(
                        {"Bucket": PRIMARY[0], "Key": f"{prefix}/{n}"},
                        DR[0],
                        f"{prefix}/{n}",
                        source_client=primary,
                    )
                    for n in names
                ]
                for future in futures:
                    future.result()

        seconds, spent, _ = timed(upload)
        parts["upload"] = (seconds, spent)
        seconds, spent, _ = timed(copy)
        parts["dr_copy"] = (seconds, spent)
        copied = dr.list_objects_v2(Bucket=DR[0], Prefix=f"{prefix}/").get("KeyCount", 0)
        if copied != len(names):
            raise RuntimeError(f"the baseline copied {copied} of {len(names)} files to the DR bucket")
        return parts

    def bare_restore(self, dump_dir: Path, database: str) -> None:
        """createdb + pg_restore -j2, as a person restoring by hand would do."""
        self.admin(f"CREATE DATABASE {quote_ident(database)} TEMPLATE template0")
        target = self.server_info.with_dbname(database)
        run_bare(self.pg_restore, [f"--jobs={JOBS}", f"--dbname={target.libpq_uri()}", str(dump_dir)], target)

    def check_counts(self, counts: dict[str, int]) -> None:
        for table, expected in self.rows.items():
            if counts.get(f"public.{table}") != expected:
                raise RuntimeError(f"bare restore has {counts.get(f'public.{table}')} rows in {table}")

    def clean_up(self, paths: Sequence[Path], baseline_prefix: str, backups: Iterable[BackupResult]) -> None:
        """Leave nothing behind, so that every round starts from the same state."""
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        for bucket, region in (PRIMARY, DR):
            client = boto3.client("s3", region_name=region)
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"{baseline_prefix}/"
            ):
                objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if objects:
                    client.delete_objects(Bucket=bucket, Delete={"Objects": objects})
        for result in backups:
            if result.backup_id:
                for store in (self.settings.primary_store(), self.settings.dr_store()):
                    keys = [o["Key"] for o in store.list_keys(store.backup_prefix(result.backup_id))]
                    store.delete_keys(keys)


def rotated(steps: list[Callable[[], Any]], by: int) -> list[Callable[[], Any]]:
    by %= len(steps)
    return steps[by:] + steps[:by]


# -- the report ---------------------------------------------------------------------------

LABELS = {
    "bare_dump_dir": f"bare pg_dump -Fd -j{JOBS} -Z{COMPRESSION} to a local directory",
    "bare_dump_custom": f"bare pg_dump -Fc -Z{COMPRESSION} to a local file (single stream)",
    "baseline": "baseline: bare directory dump + boto3 upload + DR copy (moto S3)",
    "baseline_dump": "  of which: the dump",
    "baseline_upload": "  of which: the upload (s3transfer)",
    "baseline_dr_copy": "  of which: the DR copy (s3transfer copy)",
    "pgrunbook_backup_dump": "pgrunbook backup, fingerprints=dump, whole job incl. DR copy",
    "pgrunbook_backup_dump_primary": "  of which: up to the primary manifest",
    "pgrunbook_backup_server": f"pgrunbook backup, fingerprints={SERVER_MODE} (server-side), whole job",
    "bare_restore": f"bare createdb + pg_restore -j{JOBS} of the directory dump",
    "bare_count": "bare SELECT count(*) of every table",
    "bare_restore_count": "bare restore + count",
    "restore_test_dump": "pgrunbook restore-test of the dump-fingerprinted backup",
    "restore_test_server": "pgrunbook restore-test of the server-fingerprinted backup",
}
# the methods whose CPU is broken down (the "of which" lines share their whole's CPU)
METHODS = (
    "bare_dump_dir",
    "bare_dump_custom",
    "baseline",
    "pgrunbook_backup_dump",
    "pgrunbook_backup_server",
    "bare_restore_count",
    "restore_test_dump",
    "restore_test_server",
)


@dataclass(frozen=True)
class Ratio:
    label: str
    numerator: str
    denominator: str
    target: float | None = None
    of: str = "wall"  # wall: wall seconds; server: the database server's CPU seconds


RATIOS = (
    Ratio(
        "backup (dump) / baseline (dump + upload + DR copy)",
        "pgrunbook_backup_dump",
        "baseline",
        TARGET_BACKUP_VS_BASELINE,
    ),
    Ratio(
        "backup (dump) / bare directory dump", "pgrunbook_backup_dump", "bare_dump_dir", TARGET_BACKUP_VS_DUMP
    ),
    Ratio(
        "server CPU-s: backup (dump) / bare directory dump",
        "pgrunbook_backup_dump",
        "bare_dump_dir",
        TARGET_SERVER_CPU,
        of="server",
    ),
    Ratio(
        "restore-test (dump backup) / bare restore + count",
        "restore_test_dump",
        "bare_restore_count",
        TARGET_RESTORE,
    ),
    Ratio("  for comparison: backup (server) / baseline", "pgrunbook_backup_server", "baseline"),
    Ratio("  backup (server) / bare directory dump", "pgrunbook_backup_server", "bare_dump_dir"),
    Ratio(
        "  server CPU-s: backup (server) / bare directory dump",
        "pgrunbook_backup_server",
        "bare_dump_dir",
        of="server",
    ),
    Ratio(
        "  restore-test (server backup) / bare restore + count", "restore_test_server", "bare_restore_count"
    ),
    Ratio("  server CPU-s: baseline / bare directory dump", "baseline", "bare_dump_dir", of="server"),
    Ratio("  baseline / bare directory dump", "baseline", "bare_dump_dir"),
    Ratio("  backup (dump) / bare single-stream dump", "pgrunbook_backup_dump", "bare_dump_custom"),
    Ratio(
        "  backup (dump) up to the primary manifest / baseline", "pgrunbook_backup_dump_primary", "baseline"
    ),
    Ratio("  backup (dump) / backup (server)", "pgrunbook_backup_dump", "pgrunbook_backup_server"),
)


def ratio_samples(results: Results, name: str, of: str) -> list[float]:
    if of == "server":
        return [c.server for c in results.cpu[name]]
    return results.samples[name]


def median_cpu(samples: Sequence[Cpu]) -> dict[str, float]:
    """Per-part medians (each part on its own, so they need not add up exactly)."""
    return {
        part: round(statistics.median(getattr(c, part) for c in samples), 3)
        for part in ("machine", "own", *Cpu.PARTS)
    }


def cpu_bound(results: Results, cpus: int, name: str, bare: str = "bare_dump_dir") -> dict[str, float]:
    """The best ratio to the bare tool (``bare``) this machine allows for the work ``name`` did.

    Even if every core were busy every moment, a job cannot take less wall time than its CPU
    seconds divided by the cores; over the bare tool's wall time that is a floor on the
    ratio, whatever the scheduling.  The bare tool's own use of the cores is given too.
    CPU seconds are the measurement's own (server, tools, this process): another load on the
    machine would otherwise count as the job's work.
    """
    job_cpu = statistics.median(c.own for c in results.cpu[name])
    bare_cpu = statistics.median(c.own for c in results.cpu[bare])
    bare_wall = results.median(bare)
    return {
        "cores": cpus,
        "bare_cores_busy": round(bare_cpu / bare_wall, 2),
        "cpu_over_bare_cpu": round(job_cpu / bare_cpu, 3),
        "min_wall_s": round(job_cpu / cpus, 3),
        "ratio_floor": round(job_cpu / cpus / bare_wall, 3),
    }


def throughput(results: Results) -> dict[str, Any]:
    """The fingerprints' throughput in MB of COPY text per second, medians over the rounds.

    Backup side: the dump backup's COPY text over the CPU seconds its digests took in the
    upload threads (gunzip, line split, xxh3-64): MB/s per core.  Restore side: the same text
    (COPY TO prints it again; the fingerprints match), printed by
    :func:`copytext.fingerprint_all` of every table of a bare restore, measured alone (in the
    restore test it overlaps pg_restore): over its wall time with its sessions, over this
    process's CPU seconds in it (psql's output read and hashed: per core of the runner) and
    over the server's CPU seconds in it (COPY TO producing it)."""
    if not results.copy_text_bytes:
        return {}
    mb = statistics.median(results.copy_text_bytes) / 1e6
    backup_cpu = statistics.median(results.fingerprint_cpu_s)
    figures: dict[str, Any] = {
        "copy_text_mb": round(mb, 1),
        "backup_digest_cpu_s": round(backup_cpu, 3),
        "backup_mb_per_s_per_core": round(mb / backup_cpu, 1) if backup_cpu > 0 else None,
    }
    if results.copy_verify:
        wall = statistics.median(w for w, _ in results.copy_verify)
        runner = statistics.median(c.pgrunbook for _, c in results.copy_verify)
        server = statistics.median(c.server for _, c in results.copy_verify)
        figures.update(
            restore_verify_wall_s=round(wall, 3),
            restore_verify_runner_cpu_s=round(runner, 3),
            restore_verify_server_cpu_s=round(server, 3),
            restore_mb_per_s_wall=round(mb / wall, 1),
            restore_mb_per_s_per_runner_core=round(mb / runner, 1) if runner > 0 else None,
            restore_mb_per_s_per_server_core=round(mb / server, 1) if server > 0 else None,
        )
    return figures


def summarize(bench: Bench, meta: dict[str, Any]) -> dict[str, Any]:
    results = bench.results
    ratios = []
    for ratio in RATIOS:
        numerators = ratio_samples(results, ratio.numerator, ratio.of)
        denominators = ratio_samples(results, ratio.denominator, ratio.of)
        value = statistics.median(numerators) / statistics.median(denominators)
        per_round = statistics.median(n / d for n, d in zip(numerators, denominators, strict=True))
        verdict = None if ratio.target is None else ("PASS" if value <= ratio.target else "MISS")
        ratios.append(
            {
                "ratio": ratio.label,
                "of": ratio.of,
                "numerator": ratio.numerator,
                "denominator": ratio.denominator,
                "value": round(value, 3),
                "per_round_median": round(per_round, 3),
                "target": ratio.target,
                "verdict": verdict,
            }
        )

    def medians(durations: dict[str, list[float]]) -> dict[str, float]:
        return {key: round(statistics.median(values), 3) for key, values in durations.items()}

    peak = {method: max(values, default=0) for method, values in results.peak_disk.items()}
    return {
        **meta,
        "fingerprints": {"dump": DUMP_MODE, "server": SERVER_MODE},
        "dr_copy_included_in_backup": True,
        "median_s": {name: round(results.median(name), 3) for name in LABELS},
        "median_cpu_s": {name: median_cpu(results.cpu[name]) for name in LABELS},
        "cpu_bound": {
            **{
                f"backup ({method})": cpu_bound(results, meta["cpus"], f"pgrunbook_backup_{method}")
                for method in ("dump", "server")
            },
            "restore-test (dump)": cpu_bound(
                results, meta["cpus"], "restore_test_dump", bare="bare_restore_count"
            ),
        },
        "samples_s": {name: [round(s, 3) for s in results.samples[name]] for name in LABELS},
        "server_cpu_samples_s": {name: [round(c.server, 3) for c in results.cpu[name]] for name in METHODS},
        "ratios": ratios,
        "throughput": throughput(results),
        "pgrunbook_backup_durations_median_s": {m: medians(d) for m, d in results.backup_durations.items()},
        "pgrunbook_restore_durations_median_s": {m: medians(d) for m, d in results.restore_durations.items()},
        "sizes_bytes": results.sizes,
        "backup_peak_disk_bytes_max": peak,
        "crossover": crossover(
            meta["database_bytes"],
            results.sizes["pgrunbook_backup_dump"],
            peak.get("dump", 0),
            results.median("pgrunbook_backup_dump"),
            results.median("restore_test_dump"),
        ),
    }


def crossover(database: int, dump: int, peak_disk: int, backup_s: float, restore_s: float) -> dict[str, Any]:
    """The database size (GB of data, as pg_database_size counts it) over which ``auto`` sends a
    run to Fargate: the same lines as pgrunbook.domain.runners (60 % of Lambda's 15 minutes and
    10 GiB), scaled linearly from this run's measurements.  This machine's 2 CPUs stand for a
    3008 MB function's 2 vCPUs; S3 is in process, so real uploads and downloads add to the
    times (the disk limits do not depend on it)."""
    from pgrunbook.domain.runners import LAMBDA_DISK_BYTES, LAMBDA_SECONDS, UP
    from pgrunbook.operations.restorer import DISK_MARGIN

    def limit(seconds: float, disk: float) -> dict[str, Any]:
        by_time = UP * LAMBDA_SECONDS / seconds * database / 1e9
        by_disk = UP * LAMBDA_DISK_BYTES / disk * database / 1e9
        return {
            "by_time_gb": round(by_time, 1),
            "by_disk_gb": round(by_disk, 1),
            "gb": round(min(by_time, by_disk), 1),
            "bound_by": "time" if by_time < by_disk else "disk",
        }

    return {
        "backup": limit(backup_s, max(peak_disk, 1)),
        # the embedded target: the download and the restored database on the local disk
        "restore_test": limit(restore_s, (dump + database) * DISK_MARGIN),
    }


def render(summary: dict[str, Any]) -> str:
    mb = 1e6
    sizes = summary["sizes_bytes"]
    peak = summary["backup_peak_disk_bytes_max"]
    lines = [
        "",
        f"pgrunbook bench: {summary['rows']:,} rows in {len(summary['tables'])} tables (scale {summary['scale']:g}), "
        f"PostgreSQL {summary['server_version']}, pg_dump/pg_restore {summary['pg_dump_version']}, "
        f"{summary['cpus']} CPUs",
        f"database {summary['database_bytes'] / mb:.1f} MB; dump {sizes['bare_dump_dir'] / mb:.1f} MB (directory), "
        f"{sizes['bare_dump_custom'] / mb:.1f} MB (custom), {sizes['pgrunbook_backup_dump'] / mb:.1f} MB (pgrunbook); "
        f"the backup's local disk at most {peak['dump'] / mb:.1f} MB "
        f"({peak['dump'] / sizes['pgrunbook_backup_dump']:.0%} of its dump) with fingerprints=dump, "
        f"{peak['server'] / mb:.1f} MB with fingerprints={SERVER_MODE}",
        f"{summary['repeat']} timed rounds after {summary['warmup']} warm-up; seconds of wall time; "
        f"load average {summary['load_average'][0]:.1f} before, {summary['load_average'][1]:.1f} after",
        "",
        f"{'measurement':<66} {'median':>8} {'min':>8} {'max':>8} {'CPU-s':>8} {'server':>8}",
    ]
    for name, label in LABELS.items():
        samples = summary["samples_s"][name]
        cpu = summary["median_cpu_s"][name]
        lines.append(
            f"{label:<66} {summary['median_s'][name]:8.2f} {min(samples):8.2f} {max(samples):8.2f} "
            f"{cpu['own']:8.2f} {cpu['server']:8.2f}"
        )
    lines.append(
        "(CPU-s: CPU time of the measurement's own processes: database server, tools, this process "
        "with pgrunbook, boto3 and moto; server: the database server's alone)"
    )
    lines += ["", f"{'ratio of the medians':<66} {'value':>8} {'rounds':>8} {'target':>8} {'verdict':>8}"]
    for ratio in summary["ratios"]:
        target = f"<={ratio['target']:.2f}x" if ratio["target"] else "-"
        lines.append(
            f"{ratio['ratio']:<66} {ratio['value']:7.3f}x {ratio['per_round_median']:7.3f}x "
            f"{target:>8} {ratio['verdict'] or '-':>8}"
        )
    lines.append("(rounds: the median of the per-round ratios; each round runs every side, interleaved)")
    lines += ["", f"{'where the CPU went (median CPU-s)':<66}" + "".join(f"{p:>10}" for p in Cpu.PARTS)]
    for name in METHODS:
        cpu = summary["median_cpu_s"][name]
        lines.append(f"{LABELS[name].strip():<66}" + "".join(f"{cpu[p]:10.2f}" for p in Cpu.PARTS))
    lines.append(
        "(server: PostgreSQL; tools: pg_dump/pg_restore; pgrunbook: this process, moto and the "
        "baseline's boto3 included; other: the rest of the machine, kernel threads and any other load)"
    )
    lines.append("")
    for job, bound in summary["cpu_bound"].items():
        bare = "bare restore + count" if job.startswith("restore") else "bare dump"
        lines.append(
            f"{job}: {bound['cpu_over_bare_cpu']:.2f}x the {bare}'s CPU work (which keeps "
            f"{bound['bare_cores_busy']:.2f} of {bound['cores']} cores busy): at least "
            f"{bound['min_wall_s']:.2f} s here, a ratio of at least {bound['ratio_floor']:.3f}x"
        )
    figures = summary["throughput"]
    if figures:
        lines += [
            "",
            f"fingerprint throughput, {figures['copy_text_mb']:.1f} MB of COPY text (medians):",
            f"  backup (dump), in the upload threads: {figures['backup_digest_cpu_s']:.2f} CPU-s, "
            f"{figures['backup_mb_per_s_per_core'] or 0:.0f} MB/s per core (gunzip + line split + xxh3-64)",
        ]
        if "restore_verify_wall_s" in figures:
            lines.append(
                f"  restore side, COPY TO of every table alone (psql, {JOBS} sessions): {figures['restore_verify_wall_s']:.2f} s, "
                f"{figures['restore_mb_per_s_wall']:.0f} MB/s; runner {figures['restore_verify_runner_cpu_s']:.2f} "
                f"CPU-s, {figures['restore_mb_per_s_per_runner_core'] or 0:.0f} MB/s per core; "
                f"server {figures['restore_verify_server_cpu_s']:.2f} CPU-s, "
                f"{figures['restore_mb_per_s_per_server_core'] or 0:.0f} MB/s per core (COPY TO, and any autovacuum "
                "of the just-restored tables)"
            )
    lines += [
        "",
        "pgrunbook's own durations (medians, s; outside_total_s is",
        "wall time the report's total_s leaves out, e.g. creating the S3 clients; fingerprint_s is",
        "CPU seconds of the digests with fingerprints=dump, wall seconds of the server-side step otherwise):",
    ]
    for method, durations in summary["pgrunbook_backup_durations_median_s"].items():
        lines.append(f"  backup ({method}): " + ", ".join(f"{k} {v:.2f}" for k, v in durations.items()))
    for method, durations in summary["pgrunbook_restore_durations_median_s"].items():
        lines.append(f"  restore-test ({method}): " + ", ".join(f"{k} {v:.2f}" for k, v in durations.items()))
    lines += [
        "The backup targets are measured on the whole job, DR copy included; "
        "S3 is moto, in process (upload costs CPU here, not network).",
        "",
        "Lambda-to-Fargate crossover (runner auto: over 60% of Lambda's 15 min or 10 GiB), from this run "
        "(fingerprints=dump):",
    ]
    for name, figure in summary["crossover"].items():
        lines.append(
            f"  {name.replace('_', ' '):<13} ~{figure['gb']:.1f} GB of data ({figure['bound_by']} binds: "
            f"{figure['by_time_gb']:.1f} GB by time, {figure['by_disk_gb']:.1f} GB by disk)"
        )
    lines.append("")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_backup.py",
        description="Measure pgrunbook backup and restore-test against bare pg_dump/pg_restore.",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="row multiplier (1 = 1,000,000 rows)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds; medians are reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if not args.scale > 0:
        parser.error("--scale must be positive")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return args


def create_buckets() -> None:
    for bucket, region in (PRIMARY, DR):
        location = (
            {"CreateBucketConfiguration": {"LocationConstraint": region}} if region != "us-east-1" else {}
        )
        boto3.client("s3", region_name=region).create_bucket(Bucket=bucket, **location)


def bench_settings(source: ConnInfo, restore_target: ConnInfo, workdir: Path, fingerprints: str) -> Settings:
    """What ``pgrunbook backup`` / ``restore-test`` would get from PGRUNBOOK_* variables."""
    return Settings.load(
        fingerprints=fingerprints,
        env={},
        database_url=source.libpq_uri(),
        bucket=PRIMARY[0],
        region=PRIMARY[1],
        dr_bucket=DR[0],
        dr_region=DR[1],
        restore_target_url=restore_target.libpq_uri(),
        jobs=JOBS,
        compression=COMPRESSION,
        work_dir=str(workdir),
        home=str(workdir),
        created_by="pgrunbook-bench",
    )


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from moto import mock_aws  # a test/demo dependency, like the demo's

    workdir = Path(tempfile.mkdtemp(prefix="pgrunbook-bench-"))
    saved_env = {k: os.environ.pop(k, None) for k in ("AWS_ENDPOINT_URL", "AWS_PROFILE")}
    server = None
    try:
        log(f"starting the embedded PostgreSQL {PG_VERSION} in {workdir}")
        server = start_embedded(workdir / f"pg{PG_VERSION}", PG_VERSION, cleanup="delete")
        global SERVER_PID
        SERVER_PID = postmaster_pid(server.data_dir)
        rows = rows_at(args.scale)
        with Database.connect(server.conninfo, application_name="bench") as admin:
            log(
                f"generating {sum(rows.values()):,} rows: " + ", ".join(f"{t} {n:,}" for t, n in rows.items())
            )
            seconds, _, _ = timed(lambda: load_dataset(admin, rows))
            log(f"loaded in {seconds:.1f}s")
            server_version = admin.server_version
            database_bytes = int(admin.scalar("SELECT pg_database_size(CAST(:name AS name))", name=SOURCE_DB))
        source = server.conninfo.with_dbname(SOURCE_DB)
        with mock_aws():
            create_buckets()
            bench = Bench(
                server_info=server.conninfo,
                source=source,
                settings=bench_settings(source, server.conninfo, workdir, DUMP_MODE),
                server_settings=bench_settings(source, server.conninfo, workdir, SERVER_MODE),
                pg_dump=find_pg_dump(PG_VERSION),
                pg_restore=find_pg_restore(PG_VERSION, PG_VERSION),
                workdir=workdir,
                rows=rows,
            )
            load_before = os.getloadavg()[0]
            for number in range(args.warmup):
                log(f"warm-up round {number + 1}/{args.warmup}")
                bench.round(number, record=False)
            for number in range(args.repeat):
                log(f"timed round {number + 1}/{args.repeat}")
                bench.round(args.warmup + number, record=True)
        summary = summarize(
            bench,
            {
                "scale": args.scale,
                "repeat": args.repeat,
                "warmup": args.warmup,
                "rows": sum(rows.values()),
                "tables": rows,
                "database_bytes": database_bytes,
                "server_version": server_version,
                "pg_dump_version": bench.pg_dump.version,
                "pg_dump": str(bench.pg_dump.path),
                "pg_restore": str(bench.pg_restore.path),
                "jobs": JOBS,
                "compression": COMPRESSION,
                "cpus": os.cpu_count(),
                "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            },
        )
        print(render(summary))
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
            log(f"wrote {args.json}")
        return 0
    finally:
        for key, value in saved_env.items():
            if value is not None:
                os.environ[key] = value
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
