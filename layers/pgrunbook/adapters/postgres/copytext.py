"""A table's fingerprint from its COPY text: the lines pg_dump wrote into the archive, or the
lines ``COPY ... TO STDOUT`` prints for the restored table (issue 16: verification that costs
the production database nothing).

A row is one line of COPY text; its hash is xxh3-64 of the line's bytes; a table's
fingerprint is the number of lines and the sum of their hashes mod 2^64, so it does not depend
on row order (a restore loads rows in any order), counts a duplicated row twice, and covers
every column pg_dump dumps (all but generated ones, as text).

The two sides agree when the text is produced under the same session settings: pg_dump sets
DateStyle, IntervalStyle and extra_float_digits itself; :data:`SESSION` holds the values, and
pgrunbook gives pg_dump the rest (TimeZone, bytea_output, lc_monetary) through its environment
(:func:`dump_environment`), so
that the manifest can record them and the restore side set them.  Checked on the embedded
builds: a dump of PostgreSQL 14 and 16 restored on 18 prints the same lines (jsonb, arrays,
bytea, numeric, double precision, timestamptz, enums, domains).

Used by the backup by default (``--fingerprints dump``: the uploader feeds each data file's
bytes, as it reads them for the upload, to a :class:`StreamDigest`), and by every restore of
such a backup (:func:`fingerprint_all`).
"""

from __future__ import annotations

import re
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import xxhash

from pgrunbook.adapters.postgres.connection import Database, qualified, quote_ident, quote_literal
from pgrunbook.adapters.postgres.fingerprints import TableSpec
from pgrunbook.domain.errors import SqlError
from pgrunbook.domain.manifest import TableEntry

METHOD = "copy"
MASK = (1 << 64) - 1
TERMINATOR = b"\\."  # a data file's last line; COPY text escapes a backslash, so no row is this
# The settings COPY text depends on.  pg_dump sets the first three itself; pgrunbook sets the
# others through the environment (``dump_environment``); a restore sets all of them before COPY TO.
SESSION: tuple[tuple[str, str], ...] = (
    ("DateStyle", "ISO"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("TimeZone", "UTC"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
)
READ_SIZE = 1 << 20
DATA_FILE = re.compile(r"^\d+\.dat(\.gz)?$")  # a directory archive's table data: <dump id>.dat[.gz]
_hash = xxhash.xxh3_64_intdigest


def dump_environment(session: Sequence[tuple[str, str]] = SESSION) -> dict[str, str]:
    """The environment that gives pg_dump's session the settings pg_dump does not set itself:
    PGOPTIONS, and PGTZ too (libpq applies an operator's PGTZ after PGOPTIONS, so it must be
    the recorded zone as well)."""
    own = {"DateStyle", "IntervalStyle", "extra_float_digits"}
    options = " ".join(f"-c {name}={value}" for name, value in session if name not in own)
    return {"PGOPTIONS": options, "PGTZ": dict(session)["TimeZone"]}


class CopyDigest:
    """Rows and fingerprint of COPY text fed in chunks of any size."""

    def __init__(self) -> None:
        self.rows = 0
        self.total = 0
        self.bytes = 0
        self._rest = b""
        self._ended = False  # the terminator line was seen: what follows is not data

    def feed(self, chunk: bytes) -> None:
        if self._ended or not chunk:
            return
        self.bytes += len(chunk)
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        self._add(lines)

    def _add(self, lines: list[bytes]) -> None:
        if TERMINATOR in lines:
            lines = lines[: lines.index(TERMINATOR)]
            self._ended = True
        self.rows += len(lines)
        self.total = (self.total + sum(map(_hash, lines))) & MASK

    def write(self, chunk: bytes | bytearray | memoryview) -> int:
        """A file-like sink (pg8000's COPY TO stream)."""
        data = bytes(chunk)
        self.feed(data)
        return len(data)

    def result(self) -> tuple[int, str]:
        """(rows, fingerprint as 16 hex digits); a last line without its newline counts."""
        if self._rest and not self._ended:
            self._add([self._rest])
            self._rest = b""
        return self.rows, f"{self.total:016x}"


class StreamDigest:
    """The digest of a data file fed as it is read from the disk (gzip or plain), with the
    CPU time it took: the backup computes it from the bytes its upload reads anyway."""

    def __init__(self, *, gzip: bool):
        self.copy = CopyDigest()
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
        self.seconds = 0.0

    def feed(self, chunk: bytes) -> None:
        started = time.thread_time()
        if self._inflate is None:
            self.copy.feed(chunk)
        else:
            while chunk:
                self.copy.feed(self._inflate.decompress(chunk))
                if not self._inflate.eof:
                    break
                chunk = self._inflate.unused_data  # another gzip member follows
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.seconds += time.thread_time() - started

    @property
    def text_bytes(self) -> int:
        return self.copy.bytes

    def result(self) -> tuple[int, str]:
        if self._inflate is not None:
            self.copy.feed(self._inflate.flush())
        return self.copy.result()


def digest_file(path: Path) -> CopyDigest:
    """The digest of one data file of a directory-format dump (``N.dat`` or gzip ``N.dat.gz``)."""
    stream = StreamDigest(gzip=path.suffix == ".gz")
    with path.open("rb") as handle:
        while chunk := handle.read(READ_SIZE):
            stream.feed(chunk)
    stream.result()
    return stream.copy


def columns_for_copy(db: Database, specs: Sequence[TableSpec]) -> dict[str, tuple[str, ...]]:
    """The columns pg_dump's COPY lists for each table in ``specs``, in order (every column
    but dropped and generated ones), in one query: qualified name -> columns."""
    wanted = {(s.schema, s.name) for s in specs}
    generated = "a.attgenerated = ''" if db.server_version_num >= 120000 else "true"
    found: dict[str, list[str]] = {f"{s}.{n}": [] for s, n in wanted}
    for schema, name, column in db.run(
        f"""
        SELECT n.nspname::text, c.relname::text, a.attname::text
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped AND {generated}
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        ORDER BY n.nspname, c.relname, a.attnum
        """
    ):
        if (schema, name) in wanted:
            found[f"{schema}.{name}"].append(column)
    return {table: tuple(columns) for table, columns in found.items()}


def set_session(db: Database, session: Sequence[tuple[str, str]] = SESSION) -> None:
    for setting, value in session:
        db.run(f"SET {setting} TO {quote_literal(value)}")


def digest_table(db: Database, schema: str, name: str, columns: Sequence[str]) -> CopyDigest:
    """The digest of a table's rows as ``COPY ... TO STDOUT`` prints them (``ONLY``: a
    partitioned table is fingerprinted through its leaves, as pg_dump dumps it).  The session
    must have the dump's settings (:func:`set_session`)."""
    digest = CopyDigest()
    listed = ", ".join(quote_ident(c) for c in columns)  # none: one empty line per row
    db.run(f"COPY (SELECT {listed} FROM ONLY {qualified(schema, name)}) TO STDOUT", stream=digest)
    return digest


def fingerprint_all(
    open_session: Callable[[], Database],
    tables: Sequence[TableEntry],
    session: Sequence[tuple[str, str]] = SESSION,
    *,
    workers: int = 1,
    errors: dict[str, str] | None = None,
) -> dict[str, tuple[int, str]]:
    """Rows and fingerprint of each restored table (method ``copy``), biggest first over
    ``workers`` sessions set to the dump's ``session``; a table whose COPY fails is recorded in
    ``errors`` (when given) instead of stopping the others."""
    queue = list(tables)
    results: dict[str, tuple[int, str]] = {}
    lock = threading.Lock()

    def worker() -> None:
        with open_session() as db:
            set_session(db, session)
            while True:
                with lock:
                    if not queue:
                        return
                    table = queue.pop(0)
                try:
                    found = digest_table(db, table.schema, table.name, [c for c, _ in table.columns]).result()
                except SqlError as exc:
                    if errors is None:
                        raise
                    with lock:
                        errors[table.qualified] = str(exc)
                    continue
                with lock:
                    results[table.qualified] = found

    count = max(1, min(workers, len(queue)))
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="copy-fingerprint") as pool:
        for future in [pool.submit(worker) for _ in range(count)]:
            future.result()
    return results
