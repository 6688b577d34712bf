"""Fingerprints taken in page ranges over several sessions equal the whole-table ones."""

from __future__ import annotations

from pgrunbook.adapters.postgres.connection import Database, quote_literal
from pgrunbook.adapters.postgres.fingerprints import (
    compute_all,
    compute_one,
    discover_tables,
    plan,
    table_sizes,
)

SQL = """
CREATE TABLE big (id int PRIMARY KEY, v text, j jsonb);
INSERT INTO big SELECT g, repeat(md5(g::text), 4), jsonb_build_object('g', g) FROM generate_series(1, 60000) g;
DELETE FROM big WHERE id % 7 = 0;   -- holes in the pages
CREATE TABLE small (id int);
INSERT INTO small VALUES (1), (1), (2);
"""


def session_factory(info, snapshot: str | None = None):
    def open_session() -> Database:
        db = Database.connect(info)
        db.set_deterministic_output()
        if snapshot:
            db.run("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            db.run(f"SET TRANSACTION SNAPSHOT {quote_literal(snapshot)}")
        return db

    return open_session


def test_page_ranges_add_up_to_the_whole_table(new_db):
    info = new_db(sql=SQL)
    with Database.connect(info) as db:
        db.set_deterministic_output()
        specs = [s for s in discover_tables(db) if s.schema == "public"]
        whole = {s.qualified: compute_one(db, s, "record") for s in specs}
        sizes = table_sizes(db)
    chunk = 64 * 1024
    items = plan(specs, sizes, chunk_bytes=chunk)
    assert len([i for i in items if i.table == "public.big"]) > 10, "big must really be split"
    assert [i for i in items if i.table == "public.small"] == [i for i in items if i.spec.name == "small"]
    split = compute_all(
        session_factory(info), specs, "record", workers=3, sizes=sizes, ranges=True, chunk_bytes=chunk
    )
    assert split == whole


def test_page_ranges_in_a_snapshot_ignore_later_writes(new_db):
    info = new_db(sql=SQL)
    with Database.connect(info) as coordinator:
        coordinator.set_deterministic_output()
        coordinator.run("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = coordinator.scalar("SELECT pg_export_snapshot()")
        specs = [s for s in discover_tables(coordinator) if s.schema == "public"]
        before = {s.qualified: compute_one(coordinator, s, "record") for s in specs}
        sizes = table_sizes(coordinator)
        with Database.connect(info) as writer:  # new pages, moved rows, deleted rows
            writer.run("UPDATE big SET v = 'changed' WHERE id % 3 = 0")
            writer.run("INSERT INTO big SELECT g, 'new', NULL FROM generate_series(100000, 120000) g")
            writer.run("DELETE FROM big WHERE id < 1000")
        split = compute_all(
            session_factory(info, snapshot),
            specs,
            "record",
            workers=2,
            sizes=sizes,
            ranges=True,
            chunk_bytes=64 * 1024,
        )
    assert split == before
