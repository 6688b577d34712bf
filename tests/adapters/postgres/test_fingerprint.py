"""The pure parts of the fingerprint module: patterns, column modes, SQL text, formatting."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgrunbook.adapters.postgres.fingerprints import (
    HASH_SAFE_TYPES,
    MOD64,
    TableSpec,
    column_expression,
    column_mode,
    excluded_schema_regex,
    fingerprint_sql,
    format_fingerprint,
    method_for,
    schema_pattern_regex,
)
from pgrunbook.domain.manifest import TableEntry


def matches(pattern: str, schema: str) -> bool:
    return re.search(schema_pattern_regex(pattern), schema) is not None


# -- schema patterns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "schema", "expected"),
    [
        # a plain name matches itself only: the regex is anchored at both ends
        ("auth", "auth", True),
        ("auth", "oauth", False),
        ("auth", "auth_app", False),
        ("auth", "Auth", False),
        ("auth", "", False),
        # * is any run of characters, including none
        ("timescaledb_*", "timescaledb_", True),
        ("timescaledb_*", "timescaledb_internal", True),
        ("timescaledb_*", "timescaledb", False),
        ("timescaledb_*", "_timescaledb_catalog", False),
        ("_timescaledb_*", "_timescaledb_catalog", True),
        ("*", "", True),
        ("*", "anything at all", True),
        ("a*z", "az", True),
        ("a*z", "a-b-c-z", True),
        ("a*z", "a-b-c-zz-y", False),
        # ? is exactly one character
        ("a?c", "abc", True),
        ("a?c", "a.c", True),
        ("a?c", "ac", False),
        ("a?c", "abbc", False),
        # _ is a literal underscore, not a LIKE wildcard
        ("pg_temp_*", "pg_temp_3", True),
        ("pg_temp_*", "pgXtemp_3", False),
        ("pg_temp_*", "pg_temp", False),
        # $ is matched literally, as in pg_dump patterns
        ("my$schema", "my$schema", True),
        ("my$schema", "my", False),
    ],
)
def test_schema_pattern_wildcards(pattern, schema, expected):
    assert matches(pattern, schema) is expected


@pytest.mark.parametrize(
    ("pattern", "literal", "not_matched"),
    [
        ("a.b", "a.b", "axb"),
        ("a+b", "a+b", "aab"),
        ("a|b", "a|b", "a"),
        ("(x)", "(x)", "x"),
        ("[ab]", "[ab]", "a"),
        ("x{2}", "x{2}", "xx"),
        ("^a", "^a", "a"),
        ("a\\d", "a\\d", "a1"),
        ("we ird-name", "we ird-name", "weird-name"),
    ],
)
def test_regex_metacharacters_in_a_schema_name_are_literal(pattern, literal, not_matched):
    assert matches(pattern, literal)
    assert not matches(pattern, not_matched)


@pytest.mark.parametrize("pattern", ["a.b", "a+b", "we ird-name", "x{2}", "a\\d", "$#&~", "x*y?z$"])
def test_pattern_escapes_are_portable_to_postgresql_regexes(pattern):
    # In PostgreSQL's ARE syntax a backslash before a letter or digit is a class or
    # back-reference escape (\d, \m, \1 ...); only escapes of punctuation mean "literal".
    regex = schema_pattern_regex(pattern)
    escaped = re.findall(r"\\(.)", regex)
    assert escaped, regex
    assert all(not ch.isalnum() for ch in escaped), regex


def test_excluded_schema_regex_covers_system_schemas_and_profile_patterns():
    regex = excluded_schema_regex(["auth", "timescaledb_*"])
    excluded = [
        "pg_catalog",
        "information_schema",
        "pg_toast",
        "pg_toast_temp_4",
        "pg_temp_4",
        "auth",
        "timescaledb_information",
    ]
    kept = ["public", "app", "pg_catalogue", "my_pg_catalog", "authz", "information_schema2"]
    for schema in excluded:
        assert re.search(regex, schema), schema
    for schema in kept:
        assert not re.search(regex, schema), schema


def test_excluded_schema_regex_without_patterns_keeps_user_schemas():
    regex = excluded_schema_regex([])
    assert re.search(regex, "pg_catalog")
    assert not re.search(regex, "public")
    assert not re.search(regex, "auth")


# -- column modes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typid", "category", "elem", "mode"),
    [
        (23, "N", 0, "hash"),  # int4
        (20, "N", 0, "hash"),  # int8
        (25, "S", 0, "hash"),  # text
        (1700, "N", 0, "hash"),  # numeric
        (1184, "D", 0, "hash"),  # timestamptz
        (2950, "U", 0, "hash"),  # uuid
        (3802, "U", 0, "hash"),  # jsonb
        (17, "U", 0, "hash"),  # bytea
        (1007, "A", 23, "hash"),  # int4[]
        (1009, "A", 25, "hash"),  # text[]
        (2951, "A", 2950, "hash"),  # uuid[]
        (3807, "A", 3802, "hash"),  # jsonb[]
        (114, "U", 0, "text"),  # json: no hash function at all
        (199, "A", 114, "text"),  # json[]
        (142, "U", 0, "text"),  # xml
        (790, "N", 0, "text"),  # money
        (600, "G", 0, "text"),  # point
        (26, "N", 0, "text"),  # oid: differs between servers
        (16_500, "E", 0, "text"),  # an enum: its binary hash is the label's OID
        (16_501, "A", 16_500, "text"),  # an array of that enum
        (16_600, "C", 0, "text"),  # a composite type
        (16_700, "N", 0, "text"),  # a domain over int4 (its own OID)
        (16_800, "U", 0, "text"),  # an extension's type (citext, hstore, vector ...)
    ],
)
def test_column_mode(typid, category, elem, mode):
    assert column_mode(typid, category, elem) == mode


def test_array_category_matters_for_arrays_of_safe_types():
    # typelem is also set on fixed-length types such as point (elem float8): not an array.
    assert 701 in HASH_SAFE_TYPES
    assert column_mode(600, "G", 701) == "text"


# -- SQL text -------------------------------------------------------------------------------


def test_fingerprint_sql_record_method_hashes_the_typed_row():
    spec = TableSpec("public", "tasks", (("id", "hash"), ("title", "hash-c"), ("state", "text")))
    assert fingerprint_sql(spec, "record") == (
        'SELECT count(*), sum(hash_record_extended(ROW("id", "title" COLLATE "C", ("state")::text), 0)) '
        'FROM ONLY "public"."tasks"'
    )


def test_fingerprint_sql_text_method_hashes_the_row_text():
    spec = TableSpec("public", "tasks", (("id", "hash"), ("state", "text")))
    sql = fingerprint_sql(spec, "text")
    assert sql == (
        'SELECT count(*), sum(hashtextextended((ROW("id", ("state")::text))::text, 0)) FROM ONLY "public"."tasks"'
    )
    assert "hash_record_extended" not in sql


def test_fingerprint_sql_quotes_identifiers_with_quotes_and_spaces():
    spec = TableSpec(
        'my "odd" schema', 'Order Lines"; DROP TABLE x; --', (('the "key"', "hash"), ("Title", "hash-c"))
    )
    sql = fingerprint_sql(spec, "record")
    assert sql.endswith('FROM ONLY "my ""odd"" schema"."Order Lines""; DROP TABLE x; --"')
    assert 'ROW("the ""key""", "Title" COLLATE "C")' in sql


def test_fingerprint_sql_reads_only_the_table_itself():
    # FROM ONLY: an inheritance parent must not count its children's rows again.
    for method in ("record", "text"):
        assert ' FROM ONLY "public"."parent"' in fingerprint_sql(
            TableSpec("public", "parent", (("id", "hash"),)), method
        )


def test_fingerprint_sql_for_a_table_without_columns_counts_rows():
    spec = TableSpec("public", "marker", ())
    for method in ("record", "text"):
        assert fingerprint_sql(spec, method) == 'SELECT count(*), 0 FROM ONLY "public"."marker"'


def test_fingerprint_sql_accepts_manifest_entries():
    # A restore recomputes from the manifest's recorded columns, not from the catalog.
    entry = TableEntry("public", "tasks", 10, "0" * 16, "record", (("id", "hash"), ("state", "text")))
    spec = TableSpec("public", "tasks", (("id", "hash"), ("state", "text")))
    assert fingerprint_sql(entry, "record") == fingerprint_sql(spec, "record")


def test_unknown_method_and_mode_are_rejected():
    spec = TableSpec("public", "tasks", (("id", "hash"),))
    with pytest.raises(ValueError, match="method"):
        fingerprint_sql(spec, "md5")
    with pytest.raises(ValueError, match="column mode"):
        fingerprint_sql(TableSpec("public", "tasks", (("id", "binary"),)), "record")
    with pytest.raises(ValueError, match="column mode"):
        column_expression("id", "")


@pytest.mark.parametrize(
    ("version", "method"), [(90_624, "text"), (130_012, "text"), (140_000, "record"), (180_001, "record")]
)
def test_method_for_server_version(version, method):
    assert method_for(version) == method


# -- formatting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "text"),
    [
        (None, "0000000000000000"),
        (0, "0000000000000000"),
        (1, "0000000000000001"),
        (-1, "ffffffffffffffff"),
        (-(2**63), "8000000000000000"),
        (2**64 - 1, "ffffffffffffffff"),
        (2**64, "0000000000000000"),
        (2**64 + 5, "0000000000000005"),
        (Decimal("-2"), "fffffffffffffffe"),  # sum(bigint) arrives from pg8000 as numeric
        (Decimal(3 * 2**64 + 0xABC), "0000000000000abc"),
    ],
)
def test_format_fingerprint(total, text):
    assert format_fingerprint(total) == text


@settings(max_examples=100, database=None)
@given(
    hashes=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=50),
    order=st.randoms(use_true_random=False),
)
def test_format_fingerprint_of_sums_is_order_independent_and_wraps_mod_2_64(hashes, order):
    shuffled = list(hashes)
    order.shuffle(shuffled)
    text = format_fingerprint(sum(hashes))
    assert re.fullmatch(r"[0-9a-f]{16}", text)
    assert text == format_fingerprint(sum(shuffled))
    assert int(text, 16) == sum(hashes) % MOD64
    # a duplicated row changes the fingerprint unless its hash is 0 mod 2^64
    if hashes and hashes[0] % MOD64:
        assert format_fingerprint(sum(hashes) + hashes[0]) != text
