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

Status: the digest and both of its sources (a data file; COPY TO of a restored table) exist
and are tested; the backup and the restore test do not use them yet (see issue 16).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import xxhash

from pgrunbook.adapters.postgres.connection import Database, qualified, quote_ident, quote_literal

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


def digest_file(path: Path) -> CopyDigest:
    """The digest of one data file of a directory-format dump (``N.dat`` or gzip ``N.dat.gz``)."""
    digest = CopyDigest()
    with path.open("rb") as handle:
        for chunk in _chunks(handle, gzip=path.suffix == ".gz"):
            digest.feed(chunk)
    return digest


def _chunks(handle, *, gzip: bool) -> Iterable[bytes]:
    if not gzip:
        while chunk := handle.read(READ_SIZE):
            yield chunk
        return
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    while chunk := handle.read(READ_SIZE):
        while chunk:
            yield inflate.decompress(chunk)
            if not inflate.eof:
                break
            chunk = inflate.unused_data  # another gzip member follows
            inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    yield inflate.flush()


def copy_columns(db: Database, schema: str, name: str) -> tuple[str, ...]:
    """The columns pg_dump's COPY lists, in order: every column but dropped and generated ones."""
    generated = "a.attgenerated = ''" if db.server_version_num >= 120000 else "true"
    rows = db.run(
        f"""
        SELECT a.attname::text FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = (SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n
                            ON n.oid = c.relnamespace WHERE n.nspname = :schema AND c.relname = :name)
          AND a.attnum > 0 AND NOT a.attisdropped AND {generated}
        ORDER BY a.attnum
        """,
        schema=schema,
        name=name,
    )
    return tuple(str(r[0]) for r in rows)


def set_session(db: Database, session: Sequence[tuple[str, str]] = SESSION) -> None:
    for setting, value in session:
        db.run(f"SET {setting} TO {quote_literal(value)}")


def digest_table(db: Database, schema: str, name: str, columns: Sequence[str]) -> CopyDigest:
    """The digest of a table's rows as ``COPY ... TO STDOUT`` prints them (``ONLY``: a
    partitioned table is fingerprinted through its leaves, as pg_dump dumps it).  The session
    must have the dump's settings (:func:`set_session`)."""
    digest = CopyDigest()
    listed = ", ".join(quote_ident(c) for c in columns)
    source = f"(SELECT {listed} FROM ONLY {qualified(schema, name)})" if columns else None
    if source is None:  # a table without columns: one empty line per row
        db.run(f"COPY (SELECT FROM ONLY {qualified(schema, name)}) TO STDOUT", stream=digest)
    else:
        db.run(f"COPY {source} TO STDOUT", stream=digest)
    return digest
