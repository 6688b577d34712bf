"""The pg8000 adapter: connections, queries and identifier quoting.

Everything that talks SQL to PostgreSQL from Python goes through :class:`Database`, so that
failures get their cause (:mod:`pgrunbook.domain.errors`) and a clean, password-free message:
a connection that cannot be opened is :class:`~pgrunbook.domain.errors.DatabaseUnreachable`,
one that drops in the middle of a run :class:`~pgrunbook.domain.errors.ConnectionLost`, a
statement that fails :class:`~pgrunbook.domain.errors.SqlError`.  Identifiers are always
quoted with :func:`quote_ident`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.domain.errors import ConnectionLost, DatabaseUnreachable, SqlError
from pgrunbook.domain.redact import one_line, redact

# Settings that make ``value::text`` identical on every server, whatever its configuration:
# fingerprints taken at backup time are recomputed on a different server at restore time.
DETERMINISTIC_OUTPUT = (
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
)


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (schema, table, column, role, database)."""
    if "\x00" in name:
        raise ValueError("identifier contains a NUL byte")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """Quote a string literal for the rare statements that cannot take parameters (DDL)."""
    if "\x00" in value:
        raise ValueError("literal contains a NUL byte")
    return "'" + value.replace("'", "''") + "'"


def qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def _server_message(exc: DatabaseError) -> tuple[str, str | None]:
    info = exc.args[0] if exc.args else None
    if isinstance(info, dict):
        severity = info.get("S") or info.get("V") or "ERROR"
        message = info.get("M", "")
        detail = info.get("D")
        text = f"{severity}: {message}" + (f" ({detail})" if detail else "")
        return text, info.get("C")
    return " ".join(str(exc).split()), None


# TCP keepalives on every connection: a peer that vanished (a failover, a dropped NAT entry) is
# noticed in about 30 + 6 x 10 s = 90 s, however long a statement legitimately runs.
KEEPALIVE = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 6}


def _no_read_timeout(conn: Any) -> None:
    """pg8000 keeps ``connect_timeout`` as the socket's timeout for every later read, so a
    statement that returns nothing for 15 s (a fingerprint of a large table, a bulk load)
    would be cut off as a lost connection.  The timeout is for connecting only, as libpq's
    is; once connected, reads wait, and a dead peer is found by TCP keepalives instead."""
    sock = getattr(conn, "_usock", None)
    if sock is None:
        return
    sock.settimeout(None)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in KEEPALIVE.items():
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


class Database:
    """One pg8000 connection."""

    def __init__(self, conn: pg8000.native.Connection, info: ConnInfo):
        self._conn = conn
        self.info = info

    @classmethod
    def connect(cls, info: ConnInfo, *, application_name: str | None = None) -> Database:
        kwargs = info.pg8000_kwargs()
        if application_name:
            kwargs["application_name"] = application_name
        try:
            conn = pg8000.native.Connection(**kwargs)
        except DatabaseError as exc:
            message, _code = _server_message(exc)
            raise DatabaseUnreachable(redact(f"cannot connect to {info.display()}: {message}")) from None
        except (TimeoutError, InterfaceError, OSError) as exc:
            cause = exc.__cause__ or exc.__context__
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if cause is not None and str(cause):
                reason = f"{reason}: {cause}"
            raise DatabaseUnreachable(redact(f"cannot connect to {info.display()}: {reason}")) from None
        _no_read_timeout(conn)
        return cls(conn, info)

    # -- queries -------------------------------------------------------------------------

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        try:
            return self._conn.run(sql, **params) or []
        except DatabaseError as exc:
            message, code = _server_message(exc)
            raise SqlError(redact(message), code) from None
        except (InterfaceError, OSError) as exc:
            raise ConnectionLost(one_line(f"lost the connection to {self.info.display()}: {exc}")) from None

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        result = self.run(sql, **params)
        columns = [c["name"] for c in (self._conn.columns or [])]
        return [dict(zip(columns, row, strict=True)) for row in result]

    def scalar(self, sql: str, **params: Any) -> Any:
        result = self.run(sql, **params)
        return result[0][0] if result else None

    def set_deterministic_output(self) -> None:
        for name, value in DETERMINISTIC_OUTPUT:
            self.run(f"SET {name} TO {quote_literal(value)}")

    def prepare_for_scans(self) -> None:
        """A session that fingerprints: deterministic text forms, and no parallel query
        (pgrunbook spreads page ranges over its own sessions; parallel workers on top would
        only compete with them and with pg_dump for the same CPUs)."""
        self.set_deterministic_output()
        self.run("SET max_parallel_workers_per_gather TO 0")

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (or failed) on this connection, by the server's last
        ReadyForQuery status."""
        return getattr(self._conn, "_transaction_status", None) in (b"T", b"E")

    @property
    def server_version_num(self) -> int:
        return int(
            self._conn.parameter_statuses.get("server_version_num") or self.scalar("SHOW server_version_num")
        )

    @property
    def server_version(self) -> str:
        return str(self.scalar("SHOW server_version")).split()[0]

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:  # noqa: S110 - best effort; the original outcome is what matters
            pass

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def connect(info: ConnInfo, *, application_name: str | None = None) -> Iterator[Database]:
    db = Database.connect(info, application_name=application_name)
    try:
        yield db
    finally:
        db.close()
