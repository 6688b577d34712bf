"""TLS all the way: a database across a network is never spoken to in clear text, even by
the Lambda layer's pg_dump/pg_restore, whose libpq has no TLS (the forwarder's job)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.adapters.postgres.tls import tools_support_tls
from pgrunbook.adapters.postgres.tools import ToolProcess, find_pg_dump
from pgrunbook.domain.errors import DatabaseUnreachable
from pgrunbook.operations.backup import run_backup
from pgrunbook.operations.restorer import run_restore_test
from tests.conftest import TlsServer

SQL = "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g;"


@pytest.fixture
def tls_database(new_db, certificates):
    """A database reachable only over TLS on localhost, and its verify-full URL."""
    info = new_db(sql=SQL)
    ca_file, context = certificates
    server = TlsServer(Path(info.host) / f".s.PGSQL.{info.port}", context)
    url = f"postgresql://{info.user}@localhost:{server.port}/{info.dbname}?sslmode=verify-full&sslrootcert={ca_file}"
    yield server, ConnInfo.parse(url), info
    server.close()


def test_the_shipped_tools_have_no_tls_of_their_own(pg18):
    """The premise: the wheel's libpq (the Lambda layer's) refuses sslmode=require outright."""
    assert tools_support_tls(find_pg_dump(18).path.parent) is False


def test_a_backup_over_tls_with_tools_that_cannot_do_tls(tls_database, make_settings, pg18):
    server, tls_info, _ = tls_database
    settings = make_settings(tls_info, restore_target_url=pg18.conninfo.libpq_uri())
    report = run_backup(settings)
    assert report.status == "ok", report.error
    assert report.rows == 5000
    assert server.cleartext_startups == 0
    assert server.tls_sessions >= 1 + settings.jobs + 1  # coordinator (pg8000), pg_dump leader and jobs
    restore = run_restore_test(settings, backup_id=report.backup_id)
    assert restore.status == "ok" and restore.integrity_pct == 100.0


def test_the_forwarder_verifies_the_server_name(tls_database, certificates):
    server, tls_info, _ = tls_database
    ca_file, _ = certificates
    wrong_name = ConnInfo.parse(
        f"postgresql://{tls_info.user}@127.0.0.1:{server.port}/{tls_info.dbname}"
        f"?sslmode=verify-full&sslrootcert={ca_file}"
    )
    process = ToolProcess(find_pg_dump(18), ["--schema-only"], wrong_name)
    result = process.wait(timeout=60)
    assert result.returncode != 0
    assert any("certificate" in line.lower() for line in result.stderr_lines), result.stderr_lines
    with pytest.raises(DatabaseUnreachable, match="certificate"):  # pg8000 verifies alike
        Database.connect(wrong_name)
    assert server.cleartext_startups == 0


def test_a_server_that_refuses_tls_gets_nothing(new_db, certificates):
    info = new_db(sql=SQL)
    _, context = certificates
    server = TlsServer(Path(info.host) / f".s.PGSQL.{info.port}", context, offer_tls=False)
    try:
        required = ConnInfo.parse(
            f"postgresql://{info.user}@localhost:{server.port}/{info.dbname}?sslmode=require"
        )
        result = ToolProcess(find_pg_dump(18), ["--schema-only"], required).wait(timeout=60)
        assert result.returncode != 0
        assert any("refused TLS" in line for line in result.stderr_lines), result.stderr_lines
        assert server.cleartext_startups == 0, "no startup message, and so no password, went out in clear"
    finally:
        server.close()
