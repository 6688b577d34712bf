"""The COPY-text fingerprint (issue 16's premise): what pg_dump writes into a directory archive
and what COPY TO prints for the same table restored on another major version are the same
rows, so a fingerprint taken from the archive proves the restore."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from pgrunbook.adapters.postgres.connection import Database, qualified
from pgrunbook.adapters.postgres.copytext import (
    CopyDigest,
    columns_for_copy,
    digest_file,
    dump_environment,
    fingerprint_all,
)
from pgrunbook.adapters.postgres.embedded import start
from pgrunbook.adapters.postgres.fingerprints import discover_tables
from pgrunbook.adapters.postgres.tools import find_pg_dump, find_pg_restore, find_tool, run_tool
from pgrunbook.domain.errors import DatabaseUnreachable, SqlError
from pgrunbook.domain.manifest import TableEntry
from pgrunbook.domain.selection import TableName, parse_toc
from tests.conftest import create_database, drop_database

ROWS = b"1\tone\t\\N\n2\ttwo\t{a,b}\n2\ttwo\t{a,b}\n3\tit's\t\\\\.\n"


def test_chunking_does_not_change_the_digest():
    whole = CopyDigest()
    whole.feed(ROWS + b"\\.\n\n")
    bytewise = CopyDigest()
    for i in range(len(ROWS)):
        bytewise.feed(ROWS[i : i + 1])
    assert whole.result() == bytewise.result()
    assert whole.result()[0] == 4  # the duplicate counts twice; "\\\\." is data, not the end


def test_order_does_not_matter_but_every_byte_and_duplicate_does():
    lines = ROWS.split(b"\n")[:-1]
    a, b, c, d = CopyDigest(), CopyDigest(), CopyDigest(), CopyDigest()
    a.feed(ROWS)
    b.feed(b"\n".join(reversed(lines)) + b"\n")
    c.feed(ROWS.replace(b"one", b"onE"))
    d.feed(b"\n".join(lines[:2] + lines[3:]) + b"\n")  # one copy of the duplicate gone
    assert a.result() == b.result()
    assert c.result()[1] != a.result()[1]
    assert d.result()[0] == 3 and d.result()[1] != a.result()[1]


def test_the_terminator_ends_the_data_and_a_last_line_without_newline_counts():
    ended = CopyDigest()
    ended.feed(b"1\n\\.\n\nnot data\n")
    assert ended.result()[0] == 1
    open_end = CopyDigest()
    open_end.feed(b"1\n2")
    assert open_end.result()[0] == 2
    empty_rows = CopyDigest()  # a table without columns: an empty line per row
    empty_rows.feed(b"\n\n\n")
    assert empty_rows.result()[0] == 3


def test_a_gzip_file_with_two_members_is_read_whole(tmp_path):
    path = tmp_path / "1.dat.gz"
    path.write_bytes(gzip.compress(ROWS[:20]) + gzip.compress(ROWS[20:] + b"\\.\n\n"))
    plain = CopyDigest()
    plain.feed(ROWS)
    assert digest_file(path).result() == plain.result()


@pytest.fixture(scope="module")
def pg14():
    parent = Path(tempfile.mkdtemp(prefix="pgrunbook-test-pg14-"))
    server = start(parent / "data", 14, cleanup="delete")
    yield server
    server.stop()
    shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.parametrize("source_version", [14, 16])
def test_an_archive_and_its_restore_on_18_give_the_same_fingerprints(source_version, request, pg18_target):
    server = request.getfixturevalue(f"pg{source_version}")
    source = create_database(server, ("kitchen_sink.sql",))
    target = create_database(pg18_target)
    work = Path(tempfile.mkdtemp(prefix="pgrunbook-copytext-"))
    request.getfixturevalue("monkeypatch").setenv("PGTZ", "Asia/Kolkata")  # an operator's own zone
    try:
        with Database.connect(source) as db:
            db.run(
                "ALTER TABLE everything ADD COLUMN doubled numeric GENERATED ALWAYS AS (amount * 2) STORED"
            )
            specs = discover_tables(db)
            listed = columns_for_copy(db, specs)
            columns = {(s.schema, s.name): listed[s.qualified] for s in specs}
        assert "doubled" not in columns[("public", "everything")]  # pg_dump does not dump it
        dump = find_pg_dump(source_version)
        result = run_tool(
            dump,
            ["--format=directory", "--compress=1", f"--file={work / 'dump'}"],
            source,
            extra_env=dump_environment(),
        )
        assert result.returncode == 0, result.tail(5)
        restore = find_pg_restore(dump.major, 18)
        listing = subprocess.run(
            [str(restore.path), "--list", "--verbose", str(work / "dump")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        known = [TableName(s.schema, s.name) for s in specs]
        archived = {}
        for entry in parse_toc(listing):
            if entry.kind == "TABLE DATA":
                [table] = [t for t in known if entry.names(t.schema, t.name)]
                [path] = list((work / "dump").glob(f"{entry.id}.dat*"))
                archived[(table.schema, table.name)] = digest_file(path).result()
        assert set(archived) == set(columns)
        result = run_tool(restore, ["--no-owner", "--no-acl", str(work / "dump")], target)
        entries = [_entry(*key, cols, archived[key][0]) for key, cols in columns.items()]
        psql = find_tool("psql", 18)
        with Database.connect(target) as db:
            counts = {key: db.scalar(f"SELECT count(*) FROM ONLY {qualified(*key)}") for key in columns}
        restored = fingerprint_all(target, entries, psql=psql, workers=2)
        assert restored == {f"{schema}.{name}": found for (schema, name), found in archived.items()}
        assert {key: rows for key, (rows, _) in archived.items()} == counts
        with Database.connect(target) as db:  # one changed value is seen
            db.run("UPDATE everything SET ratio = ratio + 1e-12 WHERE id = 7")
        changed = fingerprint_all(target, [e for e in entries if e.name == "everything"], psql=psql)
        assert changed["public.everything"][0] == archived[("public", "everything")][0]
        assert changed["public.everything"][1] != archived[("public", "everything")][1]
    finally:
        shutil.rmtree(work, ignore_errors=True)
        drop_database(server, source.dbname)
        drop_database(pg18_target, target.dbname)


def _entry(schema: str, name: str, columns, rows: int = 0) -> TableEntry:
    return TableEntry(schema, name, rows, "", "copy", tuple((c, "copy") for c in columns))


def test_fingerprints_through_psql_equal_the_text_and_a_failing_table_does_not_stop_the_others(
    pg18_target,
):
    """psql prints each table's COPY text, then an end line; every table gets its own digest,
    an empty table and one without columns included, and a table that cannot be read is an
    error of its own while the worker's next psql goes on."""
    target = create_database(pg18_target)
    try:
        with Database.connect(target) as db:
            db.run("CREATE TABLE big AS SELECT g AS id, 'x\\' || g AS t FROM generate_series(1, 30000) g")
            db.run("CREATE TABLE empty (x int)")
            db.run("CREATE TABLE bare ()")
            db.run("INSERT INTO bare DEFAULT VALUES")
            db.run("INSERT INTO bare DEFAULT VALUES")
            db.run('CREATE TABLE "odd ""name"" :x" ("a b" text)')
            db.run('INSERT INTO "odd ""name"" :x" VALUES (\'\\.pgrunbook-end\'), (E\'\\\\.\')')
        tables = [
            _entry("public", "big", ["id", "t"], 30000),
            _entry("public", "gone", ["x"], 5),
            _entry("public", "empty", ["x"]),
            _entry("public", "bare", [], 2),
            _entry("public", 'odd "name" :x', ["a b"], 2),
        ]
        expected = CopyDigest()
        expected.feed(b"".join(b"%d\tx\\\\%d\n" % (g, g) for g in range(1, 30001)))
        odd = CopyDigest()
        odd.feed(b"\\\\.pgrunbook-end\n\\\\.\n")
        psql = find_tool("psql", 18)
        for workers in (1, 2):
            errors: dict[str, str] = {}
            found = fingerprint_all(target, tables, psql=psql, workers=workers, errors=errors)
            assert found == {
                "public.big": expected.result(),
                "public.empty": (0, "0000000000000000"),
                "public.bare": (2, _two_empty_lines()),
                'public.odd "name" :x': odd.result(),
            }
            assert list(errors) == ["public.gone"]
            assert errors["public.gone"].startswith("COPY of public.gone failed: ERROR:  relation")
        with pytest.raises(SqlError, match="gone"):
            fingerprint_all(target, tables[1:2], psql=psql)
        with pytest.raises(DatabaseUnreachable, match=r"psql could not read public\.big"):
            fingerprint_all(target.with_dbname("no_such_database"), tables[:1], psql=psql)
    finally:
        drop_database(pg18_target, target.dbname)


def _two_empty_lines() -> str:
    digest = CopyDigest()
    digest.feed(b"\n\n")
    return digest.result()[1]
