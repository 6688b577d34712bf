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

import os
import queue
import re
import subprocess
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn

import xxhash

from pgrunbook.adapters.postgres.connection import Database, qualified, quote_ident, quote_literal
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.adapters.postgres.fingerprints import TableSpec
from pgrunbook.adapters.postgres.tools import Tool, ToolProcess
from pgrunbook.domain.errors import DatabaseUnreachable, SqlError
from pgrunbook.domain.manifest import TableEntry
from pgrunbook.domain.redact import redact

METHOD = "copy"
MASK = (1 << 64) - 1
TERMINATOR = b"\\."  # a data file's last line; COPY text escapes a backslash, so no row is this
# The line psql prints after each table's COPY text when verifying: no row can be it either (a
# row's backslash is always followed by another, a digit, or one of b f n r t v N).
END = b"\\.pgrunbook-end"
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
_PSQL_PREFIX = re.compile(r"^psql:(<stdin>:\d+: )?")


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
        self.add_lines(lines)

    def add_lines(self, lines: list[bytes]) -> None:
        """Lines already split (without their newlines)."""
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
            self.add_lines([self._rest])
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


def fingerprint_all(
    info: ConnInfo,
    tables: Sequence[TableEntry],
    session: Sequence[tuple[str, str]] = SESSION,
    *,
    psql: Tool,
    workers: int = 1,
    errors: dict[str, str] | None = None,
) -> dict[str, tuple[int, str]]:
    """Rows and fingerprint of each restored table (method ``copy``), biggest table first over
    ``workers`` psql sessions: see :class:`Fingerprinter`."""
    fingerprinter = Fingerprinter(info, session, psql=psql, workers=min(workers, len(tables)), errors=errors)
    try:
        for table in sorted(tables, key=lambda t: -t.rows):
            fingerprinter.add(table)
        return fingerprinter.finish()
    finally:
        fingerprinter.cancel()


class Fingerprinter:
    """Rows and fingerprints of restored tables (method ``copy``), handed over one by one with
    :meth:`add` as they become ready (a restore adds each table as soon as pg_restore has
    loaded it), computed by up to ``workers`` psql sessions: ``COPY t (cols) TO STDOUT``, pg_dump's own
    statement, under the dump's ``session`` (a partitioned table is fingerprinted through its
    leaves, as pg_dump dumps it; COPY of a table never includes its children).

    psql, not the driver: pg8000 decodes one protocol message per row in Python, which made
    verification 3x slower than the server's COPY; psql hands over the text in big chunks and
    the hashing is a few C calls per chunk.  Each worker keeps one psql and gives it the next
    table when the last one's end marker has come back.  A table whose COPY fails is recorded
    in ``errors`` (when given) and that worker starts a new psql; a psql that cannot connect
    raises :class:`~pgrunbook.domain.errors.DatabaseUnreachable` from :meth:`finish`.
    """

    def __init__(
        self,
        info: ConnInfo,
        session: Sequence[tuple[str, str]] = SESSION,
        *,
        psql: Tool,
        workers: int = 1,
        errors: dict[str, str] | None = None,
    ):
        self.info, self.session, self.psql, self.errors = info, list(session), psql, errors
        self.results: dict[str, tuple[int, str]] = {}
        self.added: set[str] = set()
        self._queue: queue.SimpleQueue[TableEntry | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._copiers: list[_Psql] = []
        self._cancelled = threading.Event()
        count = max(1, workers)
        self._pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="copy-fingerprint")
        self._workers = [self._pool.submit(self._work) for _ in range(count)]
        self._finished = False

    def add(self, table: TableEntry) -> None:
        """Fingerprint ``table`` (once: adding it again does nothing)."""
        with self._lock:
            if table.qualified in self.added:
                return
            self.added.add(table.qualified)
        self._queue.put(table)

    def done(self) -> int:
        """How many tables are fingerprinted (or failed) so far."""
        with self._lock:
            return len(self.results) + len(self.errors or {})

    def finish(self) -> dict[str, tuple[int, str]]:
        """Every table is added: wait for them; the first worker failure is raised."""
        self._finished = True
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.result()
        self._pool.shutdown(wait=True)
        return self.results

    def cancel(self) -> None:
        """Stop now (a restore that failed, or is over): running COPYs are cut off."""
        if self._cancelled.is_set():
            return
        self._cancelled.set()
        with self._lock:
            copiers = list(self._copiers)
        for copier in copiers:
            copier.process.kill()
        if not self._finished:
            for _ in self._workers:
                self._queue.put(None)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _work(self) -> None:
        copier: _Psql | None = None
        try:
            while (table := self._queue.get()) is not None and not self._cancelled.is_set():
                if copier is None:
                    copier = _Psql(self.psql, self.info, self.session)
                    with self._lock:
                        self._copiers.append(copier)
                try:
                    found = copier.digest(table)
                except _TableFailed as exc:
                    copier = None
                    if self.errors is None:
                        raise SqlError(str(exc)) from None
                    with self._lock:
                        self.errors[table.qualified] = str(exc)
                    continue
                with self._lock:
                    self.results[table.qualified] = found
        finally:
            if copier is not None:
                copier.close()


class _TableFailed(Exception):
    """One table's COPY failed (psql stopped on the error): the others can go on."""


class _Psql:
    """One psql session that prints tables' COPY text, each followed by :data:`END`."""

    ON_ERROR = 3  # psql's exit status when a statement fails under ON_ERROR_STOP

    def __init__(self, psql: Tool, info: ConnInfo, session: Sequence[tuple[str, str]]):
        self.info = info
        self.process = ToolProcess(
            psql,
            ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
            info,
            pipes=True,
            extra_env={"PGAPPNAME": "pgrunbook-verify"},
        )
        self._buffer = b""
        settings = [*session, ("max_parallel_workers_per_gather", "0")]
        self._send("".join(f"SET {name} TO {quote_literal(value)};\n" for name, value in settings))

    def _send(self, text: str) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(text.encode())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it has exited: reading its output finds out why

    def digest(self, table: TableEntry) -> tuple[int, str]:
        # pg_dump's own statement: COPY of a table never includes its children or partitions,
        # and without a column list it leaves out generated columns (a table with none prints
        # one empty line per row)
        listed = ", ".join(quote_ident(c) for c, _ in table.columns)
        self._send(
            f"COPY {qualified(table.schema, table.name)}{f' ({listed})' if listed else ''} TO STDOUT;\n"
            f"\\echo '{END.decode().replace(chr(92), chr(92) * 2)}'\n"
        )
        digest = CopyDigest()
        assert self.process.stdout is not None
        while True:
            lines = (self._buffer).split(b"\n")
            self._buffer = lines.pop()
            if END in lines:
                at = lines.index(END)
                digest.add_lines(lines[:at])
                # nothing follows the marker: the next statement has not been sent
                return digest.result()
            digest.add_lines(lines)
            chunk = os.read(self.process.stdout.fileno(), READ_SIZE)
            if not chunk:
                self._failed(table)
            self._buffer += chunk

    def _failed(self, table: TableEntry) -> NoReturn:
        result = self.process.wait()
        said = [_PSQL_PREFIX.sub("", line) for line in result.stderr_lines if line.strip()]
        reason = next((line for line in said if "ERROR:" in line or "FATAL:" in line), None)
        reason = reason or " | ".join(said[-2:]) or "no message"
        if result.returncode == self.ON_ERROR:
            raise _TableFailed(f"COPY of {table.qualified} failed: {reason}")
        raise DatabaseUnreachable(
            redact(f"psql could not read {table.qualified} from {self.info.display()}: {reason}")
        )

    def close(self) -> None:
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
