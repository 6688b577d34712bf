"""Shared fixtures: real embedded PostgreSQL servers (16 and 18) and moto S3 in two regions."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import ssl
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import trustme
from moto import mock_aws

from pgrunbook.adapters.postgres import builds
from pgrunbook.adapters.postgres.connection import Database, quote_ident
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.adapters.postgres.embedded import EmbeddedServer, start
from pgrunbook.adapters.postgres.tools import find_tool
from pgrunbook.adapters.s3.store import CLIENT_HOOKS
from pgrunbook.settings.model import Settings

FIXTURES = Path(__file__).parent / "fixtures"
PRIMARY = ("pgrunbook-test-primary", "us-east-1")
DR = ("pgrunbook-test-dr", "eu-west-1")


@pytest.fixture(scope="session", autouse=True)
def isolated_environment() -> Iterator[None]:
    """No real AWS account, profile or endpoint, and no PGRUNBOOK_* from the caller's shell."""
    mp = pytest.MonkeyPatch()
    builds_dir = str(builds.configured_dir())  # what `make test` installed, before PGRUNBOOK_* go
    for key in list(os.environ):
        if key.startswith(("PGRUNBOOK_", "AWS_")) or key in ("PGPASSWORD", "PGSERVICE"):
            mp.delenv(key)
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # One set of embedded builds for every test, whatever PGRUNBOOK_HOME a test sets.
    mp.setenv(builds.DIR_VARIABLE, builds_dir)
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def no_leftover_client_hooks() -> Iterator[None]:
    yield
    CLIENT_HOOKS.clear()


def _server(tmp_path_factory: pytest.TempPathFactory, version: int, name: str) -> Iterator[EmbeddedServer]:
    # Not under pytest's own temp root: every pytest session resets that to mode 0700, which
    # would lock the server's system user out of a data directory another session is using.
    parent = Path(tempfile.mkdtemp(prefix=f"pgrunbook-test-{name}-"))
    server = start(parent / "data", version, cleanup="delete")
    yield server
    server.stop()
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def pg18(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    yield from _server(tmp_path_factory, 18, "pg18")


@pytest.fixture(scope="session")
def pg16(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    yield from _server(tmp_path_factory, 16, "pg16")


@pytest.fixture(scope="session")
def pg18_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A second PostgreSQL 18 server: a restore target that shares no roles with the source."""
    yield from _server(tmp_path_factory, 18, "pg18target")


def create_database(server: EmbeddedServer, sql_files: tuple[str, ...] = (), sql: str = "") -> ConnInfo:
    name = f"t_{secrets.token_hex(4)}"
    with Database.connect(server.conninfo) as admin:
        admin.run(f"CREATE DATABASE {quote_ident(name)}")
    info = server.conninfo.with_dbname(name)
    with Database.connect(info) as db:
        for file in sql_files:
            db.run((FIXTURES / file).read_text())
        if sql:
            db.run(sql)
    return info


def drop_database(server: EmbeddedServer, name: str) -> None:
    with Database.connect(server.conninfo) as admin:
        admin.run(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


@pytest.fixture
def new_db(pg18: EmbeddedServer) -> Iterator:
    """Factory: ``new_db(sql_files=..., sql=..., server=...)`` creates a fresh database."""
    made: list[tuple[EmbeddedServer, str]] = []

    def make(*sql_files: str, sql: str = "", server: EmbeddedServer | None = None) -> ConnInfo:
        target = server or pg18
        info = create_database(target, sql_files, sql)
        made.append((target, info.dbname))
        return info

    yield make
    for server, name in made:
        drop_database(server, name)


@dataclass
class Buckets:
    primary: str
    primary_region: str
    dr: str
    dr_region: str

    def variables(self) -> dict[str, str]:
        """The PGRUNBOOK_* variables that name both buckets."""
        return {
            "PGRUNBOOK_BUCKET": self.primary,
            "PGRUNBOOK_REGION": self.primary_region,
            "PGRUNBOOK_DR_BUCKET": self.dr,
            "PGRUNBOOK_DR_REGION": self.dr_region,
        }

    def client(self, which: str = "primary"):
        region = self.primary_region if which == "primary" else self.dr_region
        return boto3.client("s3", region_name=region)

    def keys(self, which: str = "primary", prefix: str = "") -> list[str]:
        bucket = self.primary if which == "primary" else self.dr
        pages = self.client(which).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture
def s3() -> Iterator[Buckets]:
    with mock_aws():
        boto3.client("s3", region_name=PRIMARY[1]).create_bucket(Bucket=PRIMARY[0])
        boto3.client("s3", region_name=DR[1]).create_bucket(
            Bucket=DR[0], CreateBucketConfiguration={"LocationConstraint": DR[1]}
        )
        yield Buckets(PRIMARY[0], PRIMARY[1], DR[0], DR[1])


@pytest.fixture
def make_settings(s3: Buckets, pg18: EmbeddedServer, tmp_path: Path):
    """Settings for a database under test, with both buckets and the pg18 restore target."""

    def make(info: ConnInfo, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": info.libpq_uri(),
            "bucket": s3.primary,
            "region": s3.primary_region,
            "dr_bucket": s3.dr,
            "dr_region": s3.dr_region,
            "restore_target_url": pg18.conninfo.libpq_uri(),
            "work_dir": str(tmp_path / "work"),
            "home": str(tmp_path / "home"),
            "embedded_dir": os.environ[builds.DIR_VARIABLE],
            "created_by": "pytest",
        }
        values.update(overrides)
        (tmp_path / "work").mkdir(exist_ok=True)
        return Settings.load(env={}, **values)

    return make


def schema_dump(info: ConnInfo, server_major: int) -> str:
    """``pg_dump --schema-only`` of a database, without the per-run random lines."""
    tool = find_tool("pg_dump", server_major)
    out = subprocess.run(
        [str(tool.path), "--schema-only", f"--dbname={info.libpq_uri()}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **info.libpq_env()},
    ).stdout
    return "\n".join(line for line in out.splitlines() if not re.match(r"^\\(un)?restrict ", line))


def scratch_databases(server: EmbeddedServer) -> list[str]:
    with Database.connect(server.conninfo) as admin:
        return [
            r[0]
            for r in admin.run("SELECT datname FROM pg_database WHERE datname LIKE 'pgrunbook_restore_%'")
        ]


# -- PostgreSQL behind TLS ----------------------------------------------------------------

SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104


class TlsServer:
    """What Supabase or RDS look like to pgrunbook: PostgreSQL behind TLS on a TCP port.

    Answers SSLRequest with 'S', completes TLS with a certificate for ``localhost`` from a
    test CA, and relays the decrypted protocol to the embedded server's unix socket.  A
    StartupMessage sent in clear is refused and counted; with ``offer_tls=False`` it answers
    'N', like a server without TLS."""

    def __init__(self, upstream: Path, context: ssl.SSLContext, *, offer_tls: bool = True):
        self.upstream, self.context, self.offer_tls = upstream, context, offer_tls
        self.tls_sessions = 0
        self.cleartext_startups = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(asyncio.start_server(self.handle, "127.0.0.1", 0))
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                _length, code = struct.unpack("!ii", await reader.readexactly(8))
                if code == GSSENC_REQUEST:
                    writer.write(b"N")
                    continue
                if code == SSL_REQUEST and self.offer_tls:
                    writer.write(b"S")
                    await writer.drain()
                    await writer.start_tls(self.context)
                    self.tls_sessions += 1
                    break
                if code == SSL_REQUEST:
                    writer.write(b"N")
                    continue
                self.cleartext_startups += 1
                writer.close()
                return
            up_reader, up_writer = await asyncio.open_unix_connection(str(self.upstream))

            async def pipe(r, w):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
                w.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    """A test CA's root certificate file, and a server context with a certificate for localhost."""
    ca = trustme.CA()
    directory = tmp_path_factory.mktemp("tls")
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return ca_file, context


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory):
    """The CDK app as cdk.json configures it (account 123456789012, bundling skipped),
    synthesized once per session with cdk-nag on (synth fails on any unacknowledged finding),
    and the way `cdk synth` runs it: `infra/app.py` as a script (cdk.json's "app"), with
    infra/ first on the path, where infra/constructs/ must not shadow the `constructs` library."""
    import json
    import subprocess
    import sys

    from aws_cdk.assertions import Template

    root = Path(__file__).resolve().parents[1]
    context = json.loads((root / "cdk.json").read_text())["context"]
    settings = {
        **context,
        "pgrunbook": {**context["pgrunbook"], "account": "123456789012"},
        "aws:cdk:bundling-stacks": [],
    }

    def produce(outdir: Path) -> None:
        env = {
            **os.environ,
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "CDK_OUTDIR": str(outdir),
            "CDK_CONTEXT_JSON": json.dumps(settings),
        }
        result = subprocess.run(
            [sys.executable, "infra/app.py"], cwd=root, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stderr[-3000:]

    from tests.shared import once

    outdir = once(tmp_path_factory, "cdk.out", produce)

    def template(name: str) -> Template:
        return Template.from_json(json.loads((outdir / f"{name}.template.json").read_text()))

    return {
        "primary": template("pgrunbook-app-primary"),
        "dr": template("pgrunbook-app-dr"),
        "outdir": outdir,
    }


def rewrite_manifest(settings, backup_id: str, change) -> None:
    """Change a stored manifest's JSON in place (``change(data)``): a backup whose manifest
    says something else than what was dumped."""
    store = settings.primary_store()
    key = store.manifest_key(backup_id)
    data = json.loads(store.get_bytes(key))
    change(data)
    store.put_bytes(key, json.dumps(data).encode())


def fingerprints_now(info: ConnInfo, tables) -> dict[str, tuple[int, str]]:
    """Rows and fingerprint of each of a manifest's ``tables`` as it is in ``info`` now, by the
    method the manifest recorded: COPY text (``copy``, under the default session) or the
    server-side row hash."""
    from pgrunbook.adapters.postgres.copytext import METHOD, fingerprint_all
    from pgrunbook.adapters.postgres.fingerprints import compute_all
    from pgrunbook.adapters.postgres.tools import find_tool

    def session() -> Database:
        db = Database.connect(info)
        db.prepare_for_scans()
        return db

    copied = [t for t in tables if t.method == METHOD]
    results: dict[str, tuple[int, str]] = {}
    if copied:
        with Database.connect(info) as db:
            psql = find_tool("psql", db.server_version_num // 10000)
        results.update(fingerprint_all(info, copied, psql=psql))
    for method in {t.method for t in tables if t.method != METHOD}:
        results.update(compute_all(session, [t for t in tables if t.method == method], method))
    return results
