"""The range-fingerprint diff on real PostgreSQL: exact answers, and few queries when few rows
differ (the descent is exercised with small leaves so that a test table is deep enough)."""

from __future__ import annotations

import pytest

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.fingerprints import discover_tables
from pgrunbook.adapters.postgres.rangediff import Column, Side, diff_table, find_key

TABLES = """
CREATE TABLE by_int (id bigint PRIMARY KEY, v text, n numeric, a int[]);
INSERT INTO by_int SELECT g, 'v' || g, g / 7.0, ARRAY[g, g % 3] FROM generate_series(1, 20000) g;
CREATE TABLE by_text (code text PRIMARY KEY, v int);
INSERT INTO by_text SELECT md5(g::text), g FROM generate_series(1, 5000) g;
CREATE TABLE by_pair (tenant int, id int, v jsonb, PRIMARY KEY (tenant, id));
INSERT INTO by_pair SELECT g % 3, g, jsonb_build_object('g', g) FROM generate_series(1, 9000) g;
CREATE TABLE by_unique (email text NOT NULL UNIQUE, v int);
INSERT INTO by_unique SELECT 'u' || g || '@x', g FROM generate_series(1, 3000) g;
CREATE TABLE keyless (v int, w text);
INSERT INTO keyless SELECT g % 100, 'w' FROM generate_series(1, 4000) g;
"""
CHANGES = """
DELETE FROM by_int WHERE id IN (5, 9999, 20000);
UPDATE by_int SET a = NULL WHERE id = 17;
UPDATE by_int SET n = n + 1 WHERE id = 12345;
INSERT INTO by_int VALUES (0, 'zero', 0, NULL), (25000, 'big', 1, '{}');
UPDATE by_text SET v = -v WHERE v IN (10, 4000);
DELETE FROM by_text WHERE v = 77;
UPDATE by_pair SET v = '{"g": 0}' WHERE (tenant, id) = (1, 4000);
DELETE FROM by_pair WHERE (tenant, id) = (2, 8999);
INSERT INTO by_pair VALUES (5, 1, NULL);
UPDATE by_unique SET v = 0 WHERE email = 'u7@x';
DELETE FROM keyless WHERE ctid IN (SELECT ctid FROM keyless WHERE v = 3 LIMIT 2);
INSERT INTO keyless VALUES (1000, NULL);
"""


@pytest.fixture(scope="module")
def pair(pg18):
    from tests.conftest import create_database, drop_database

    backup = create_database(pg18, sql=TABLES)
    live = create_database(pg18, sql=TABLES + CHANGES)
    yield backup, live
    drop_database(pg18, backup.dbname)
    drop_database(pg18, live.dbname)


def diff(pair, table: str, **tuning):
    backup_info, live_info = pair
    with Database.connect(backup_info) as b, Database.connect(live_info) as lv:
        b.prepare_for_scans()
        lv.prepare_for_scans()
        spec = next(t for t in discover_tables(b) if t.name == table)
        columns = [Column(c, m) for c, m in spec.columns]
        return diff_table(
            Side(b, "public", table), Side(lv, "public", table), columns, "record", label=table, **tuning
        )


DEEP = {"leaf_rows": 20, "fanout": 4, "max_buckets": 4}  # a few buckets, split again and again


@pytest.mark.parametrize("tuning", [{}, DEEP], ids=["default", "deep"])
def test_exact_answers(pair, tuning):
    t = diff(pair, "by_int", **tuning)
    assert t.key == ["id"]
    assert t.deleted == [("5",), ("9999",), ("20000",)]  # keys as text, integers in numeric order
    assert t.inserted == [("0",), ("25000",)]
    assert t.changed == [("17",), ("12345",)]
    assert (t.backup_rows, t.live_rows) == (20000, 19999)
    t = diff(pair, "by_text", **tuning)
    assert (t.deleted_count, t.inserted_count, t.changed_count) == (1, 0, 2)
    t = diff(pair, "by_pair", **tuning)
    assert t.key == ["tenant", "id"]
    assert (t.deleted, t.inserted, t.changed) == ([("2", "8999")], [("5", "1")], [("1", "4000")])
    t = diff(pair, "by_unique", **tuning)
    assert t.key == ["email"]
    assert t.changed == [("u7@x",)]
    t = diff(pair, "keyless", **tuning)
    assert t.key is None
    assert (t.deleted_count, t.inserted_count, t.changed_count) == (2, 1, 0)
    assert t.samples()["inserted"] == ["(1000, NULL)"]


def test_few_changes_cost_few_queries(pair):
    """Seven changed keys in 20,000 rows, 4 buckets, leaves of 20: the descent reads a few
    hundred (key, hash) pairs, not the table, in a few dozen range queries per change."""
    t = diff(pair, "by_int", **DEEP)
    assert t.rows_read < 400, t.rows_read
    assert t.queries < 7 * 2 * 4 * 6, t.queries


def test_unchanged_table_is_one_pass_per_side(pg18):
    from tests.conftest import create_database, drop_database

    a = create_database(pg18, sql=TABLES)
    b = create_database(pg18, sql=TABLES)
    try:
        t = diff((a, b), "by_int")
        assert not t.differs
        assert t.queries == 2 and t.rows_read == 0
    finally:
        drop_database(pg18, a.dbname)
        drop_database(pg18, b.dbname)


def test_key_choice(pair):
    _, live = pair
    with Database.connect(live) as db:
        assert find_key(db, "public", "by_pair") == ["tenant", "id"]
        assert find_key(db, "public", "by_unique") == ["email"]
        assert find_key(db, "public", "keyless") is None
        db.run("CREATE TABLE nullable_unique (x int UNIQUE, y int)")
        assert find_key(db, "public", "nullable_unique") is None  # NULLs are not a key
        db.run("DROP TABLE nullable_unique")


def test_a_table_missing_live_or_missing_a_column_is_reported(pair):
    backup_info, live_info = pair
    with Database.connect(backup_info) as b, Database.connect(live_info) as lv:
        t = diff_table(
            Side(b, "public", "by_text"),
            Side(lv, "public", "gone"),
            [Column("v", "hash")],
            "record",
            label="x",
        )
        assert t.error == "x does not exist in the live database"
        t = diff_table(
            Side(b, "public", "by_text"),
            Side(lv, "public", "by_text"),
            [Column("nope", "hash")],
            "record",
            label="x",
        )
        assert "lost columns" in (t.error or "")


def test_a_range_one_side_lacks_entirely_is_counted_and_sampled_not_listed(pg18):
    """A DELETE without WHERE on a big table: the keys are counted, 20 sampled, none listed
    (the repair then says to restore the table instead)."""
    from tests.conftest import create_database, drop_database

    backup = create_database(pg18, sql=TABLES)
    live = create_database(
        pg18, sql=TABLES + "DELETE FROM by_int WHERE id > 2000; UPDATE by_int SET v = 'x' WHERE id = 3;"
    )
    try:
        t = diff((backup, live), "by_int", max_keys=1000)
        assert (t.deleted_count, t.changed) == (18000, [("3",)])
        assert not t.listed and t.bulk_deleted > 0
        assert len(t.samples()["deleted"]) == 20
        assert t.rows_read <= 6000  # two mixed leaves read; the 16,000 rows of the one-sided ranges never
        assert "counted and sampled" in t.to_dict()["note"]
    finally:
        drop_database(pg18, backup.dbname)
        drop_database(pg18, live.dbname)
