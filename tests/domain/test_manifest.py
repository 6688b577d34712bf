"""The manifest: serialisation round trip and rejection of anything that is not one."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pgrunbook.domain.errors import BackupIncomplete
from pgrunbook.domain.manifest import FORMAT, FileEntry, Manifest, Prerequisites, RoleEntry, TableEntry


def make_manifest() -> Manifest:
    started = datetime(2026, 3, 1, 2, 0, 0, 123000, tzinfo=UTC)
    return Manifest(
        backup_id="20260301T020000.123Z-3fa9c1",
        database="app",
        tiers=["monthly", "weekly", "daily"],
        created_by="pgrunbook-cli:alice@laptop",
        started_at=started,
        completed_at=datetime(2026, 3, 1, 2, 4, 31, tzinfo=UTC),
        retention_until=datetime(2029, 2, 28, 2, 0, 0, 123000, tzinfo=UTC),
        snapshot={
            "id": "00000003-0000001B-1",
            "time": "2026-03-01T02:00:00.456000+00:00",
            "lsn": "0/1A2B3C4",
        },
        server={"version": "18.1", "version_num": 180001},
        tools={"pg_dump": "18.1", "pgrunbook": "0.1.0"},
        options={"jobs": 4, "compression": 1, "profile": "supabase", "exclude_schemas": ["auth", "storage"]},
        files=[
            FileEntry("toc.dat", 2048, "ab" * 32, "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=", 1),
            FileEntry(
                "3456.dat.gz",
                200 * 1024 * 1024,
                "cd" * 32,
                "zc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc0=-4",
                4,
                64 * 1024 * 1024,
            ),
        ],
        tables=[
            TableEntry(
                "public",
                "tasks",
                100_000,
                "0123456789abcdef",
                "record",
                (("id", "hash"), ("title", "hash-c"), ("state", "text")),
            ),
            TableEntry('we"ird sch', "Empty Table", 0, "0000000000000000", "text", ()),
        ],
        roles=[
            RoleEntry("app_owner", login=True, createdb=True),
            RoleEntry("readonly", inherit=False, bypassrls=True),
        ],
        prerequisites=Prerequisites(
            schemas=["auth"],
            functions=[{"schema": "auth", "name": "uid", "definition": "CREATE FUNCTION auth.uid() ..."}],
            extensions=[{"name": "pgcrypto", "schema": "extensions"}],
            external_foreign_keys=[{"table": "public.profiles", "references": "auth.users"}],
        ),
    )


def test_round_trip_preserves_everything():
    original = make_manifest()
    again = Manifest.from_json(original.to_json())
    assert again == original


def test_round_trip_keeps_table_columns_as_tuples_of_pairs():
    again = Manifest.from_json(make_manifest().to_json())
    columns = again.tables[0].columns
    assert columns == (("id", "hash"), ("title", "hash-c"), ("state", "text"))
    assert isinstance(columns, tuple)
    assert all(isinstance(c, tuple) for c in columns)
    assert again.tables[1].columns == ()
    # TableEntry is frozen and hashable only if its columns are tuples.
    assert hash(again.tables[0]) == hash(make_manifest().tables[0])


def test_round_trip_keeps_roles_prerequisites_and_aware_times():
    again = Manifest.from_json(make_manifest().to_json())
    assert again.roles[1] == RoleEntry("readonly", inherit=False, bypassrls=True)
    assert again.prerequisites.functions[0]["name"] == "uid"
    assert not again.prerequisites.is_empty()
    assert again.started_at.tzinfo is not None
    assert again.started_at == datetime(2026, 3, 1, 2, 0, 0, 123000, tzinfo=UTC)
    assert again.snapshot_time == datetime(2026, 3, 1, 2, 0, 0, 456000, tzinfo=UTC)


def test_json_is_deterministic_and_carries_format_and_totals():
    raw = make_manifest().to_json()
    assert raw == make_manifest().to_json()
    data = json.loads(raw)
    assert data["format"] == FORMAT == "pgrunbook/1"
    assert data["totals"] == {"size_bytes": 2048 + 200 * 1024 * 1024, "rows": 100_000, "tables": 2}
    assert data["started_at"] == "2026-03-01T02:00:00.123000+00:00"


def test_derived_properties():
    manifest = make_manifest()
    assert manifest.size_bytes == 2048 + 200 * 1024 * 1024
    assert manifest.total_rows == 100_000
    assert manifest.pg_dump_major == 18
    assert manifest.file("toc.dat").size == 2048
    assert manifest.file("missing.dat") is None
    assert manifest.tables[1].qualified == 'we"ird sch.Empty Table'


def test_manifest_without_roles_or_prerequisites_gets_empty_ones():
    data = json.loads(make_manifest().to_json())
    del data["roles"], data["prerequisites"]
    again = Manifest.from_json(json.dumps(data).encode())
    assert again.roles == []
    assert again.prerequisites.is_empty()


@pytest.mark.parametrize(
    "raw",
    [b"", b"   ", b"\xff\xfe", b"{", b"not json", b"<html>AccessDenied</html>", b'{"format": "pgrunbook/1"'],
)
def test_garbage_is_an_incomplete_backup(raw):
    with pytest.raises(BackupIncomplete, match="not a valid pgrunbook/1 manifest"):
        Manifest.from_json(raw, source="s3://b/p/app/backups/x/manifest.json")


@pytest.mark.parametrize("raw", [b"[]", b"null", b"42", b'"pgrunbook/1"', b'["pgrunbook/1"]'])
def test_json_that_is_not_an_object_is_an_incomplete_backup(raw):
    # Regression: from_json called data.get() first and raised AttributeError on these.
    with pytest.raises(BackupIncomplete, match="not a valid pgrunbook/1 manifest"):
        Manifest.from_json(raw)


@pytest.mark.parametrize("fmt", ["pgrunbook/2", "pgrunbook/0", "", None, 1])
def test_wrong_format_string_is_rejected(fmt):
    data = json.loads(make_manifest().to_json())
    data["format"] = fmt
    with pytest.raises(BackupIncomplete, match="unknown format"):
        Manifest.from_json(json.dumps(data).encode())


def test_missing_format_is_rejected():
    data = json.loads(make_manifest().to_json())
    del data["format"]
    with pytest.raises(BackupIncomplete):
        Manifest.from_json(json.dumps(data).encode())


@pytest.mark.parametrize(
    "key",
    [
        "backup_id",
        "database",
        "tiers",
        "created_by",
        "started_at",
        "completed_at",
        "retention_until",
        "snapshot",
        "server",
        "tools",
        "options",
        "files",
        "tables",
    ],
)
def test_missing_key_is_an_incomplete_backup_naming_the_key(key):
    data = json.loads(make_manifest().to_json())
    del data[key]
    with pytest.raises(BackupIncomplete, match=key) as caught:
        Manifest.from_json(json.dumps(data).encode(), source="the manifest of 20260301T020000.123Z-3fa9c1")
    assert str(caught.value).startswith("the manifest of 20260301T020000.123Z-3fa9c1 ")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["files"][0].pop("sha256"),
        lambda d: d["files"][0].update(extra="x"),
        lambda d: d["tables"][0].pop("fingerprint"),
        lambda d: d.update(started_at="yesterday"),
        lambda d: d.update(snapshot=None),
        lambda d: d["roles"][0].update(password="x"),
        lambda d: d.update(prerequisites={"unknown": []}),
    ],
    ids=[
        "file-without-sha256",
        "file-with-unknown-key",
        "table-without-fingerprint",
        "bad-timestamp",
        "null-snapshot",
        "role-with-unknown-key",
        "bad-prerequisites",
    ],
)
def test_malformed_entries_are_an_incomplete_backup(mutate):
    data = json.loads(make_manifest().to_json())
    mutate(data)
    with pytest.raises(BackupIncomplete):
        Manifest.from_json(json.dumps(data).encode())


def test_error_is_one_line():
    with pytest.raises(BackupIncomplete) as caught:
        Manifest.from_json(b"{\n\n  broken")
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 1
