"""The pg8000 adapter's connections, against the real embedded server."""

from __future__ import annotations

import time

from pgrunbook.adapters.postgres.connection import Database


def test_connect_timeout_bounds_connecting_not_a_long_statement(pg18):
    """pg8000 would keep connect_timeout as the timeout of every read: a statement silent for
    longer (a fingerprint of a big table, a bulk load) was cut off as a lost connection."""
    from dataclasses import replace

    info = replace(pg18.conninfo.with_dbname("postgres"), params=(("connect_timeout", "1"),))
    started = time.monotonic()
    with Database.connect(info) as db:
        assert db.run("SELECT pg_sleep(2.5), 42")[0][1] == 42
    assert time.monotonic() - started >= 2.5
