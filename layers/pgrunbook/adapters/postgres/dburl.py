"""libpq connection URIs, for pg8000 and for the libpq tools alike.

pgrunbook takes a database as a libpq URI (``postgresql://user:pass@host:5432/db?sslmode=require``
or, for a unix socket, ``postgresql://user@/db?host=/var/run/postgresql``).  The same string
must work for ``pg_dump``; :class:`ConnInfo` turns it into pg8000 keyword arguments and into a
password-free URI plus ``PGPASSWORD`` for the subprocesses, so a password never appears on a
command line, in ``ps`` output or in an error message.

TLS policy (written down because it differs from libpq's ``prefer`` default): when the URI
gives no ``sslmode``, a unix socket uses none, a loopback host uses ``prefer``, and any other
host uses ``require``: a database reached over a network is never spoken to in clear text
unless the URI says ``sslmode=disable`` explicitly.
"""

from __future__ import annotations

import getpass
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.redact import register_secret

SUPPORTED_PARAMS = frozenset(
    {
        "host",
        "port",
        "dbname",
        "user",
        "password",
        "sslmode",
        "sslrootcert",
        "connect_timeout",
        "application_name",
        "options",
    }
)
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class ConnInfo:
    """A parsed libpq URI.  ``host`` starting with ``/`` is a unix-socket directory."""

    host: str | None
    port: int
    user: str
    dbname: str
    password: str | None = field(default=None, repr=False)
    params: tuple[tuple[str, str], ...] = ()

    # -- construction ------------------------------------------------------------------

    @classmethod
    def parse(cls, url: str, *, what: str = "database URL") -> ConnInfo:
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(f"{what} is empty")
        url = url.strip()
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"{what} must be a libpq URI starting with postgresql://")
        try:
            parts = urlsplit(url)
            netloc_port = parts.port
        except ValueError as exc:
            raise ConfigError(f"{what} is malformed: {_clean(exc)}") from None
        if parts.fragment:
            raise ConfigError(f"{what} is malformed: unexpected '#' fragment")
        query = _parse_query(parts.query, what)
        hostname = parts.hostname
        netloc_host = parts.netloc.rsplit("@", 1)[-1]
        if "," in netloc_host:
            raise ConfigError(f"{what} lists several hosts; pgrunbook needs exactly one")
        if hostname is not None:
            hostname = unquote(hostname)
        host = query.pop("host", None) or hostname
        if host is not None and "," in host:
            raise ConfigError(f"{what} lists several hosts; pgrunbook needs exactly one")
        port_text = query.pop("port", None)
        try:
            port = int(port_text) if port_text else (5432 if netloc_port is None else netloc_port)
        except ValueError:
            raise ConfigError(f"{what} has a non-numeric port") from None
        if not 0 < port < 65536:
            raise ConfigError(f"{what} has an out-of-range port {port}")
        user = query.pop("user", None) or (unquote(parts.username) if parts.username else None)
        user = user or getpass.getuser()
        password = query.pop("password", None)
        if password is None and parts.password is not None:
            password = unquote(parts.password)
        dbname = query.pop("dbname", None) or unquote(parts.path.lstrip("/")) or user
        if "/" in dbname:
            raise ConfigError(f"{what} has an invalid database name")
        sslmode = query.get("sslmode")
        if sslmode is not None and sslmode not in SSLMODES:
            raise ConfigError(f"{what} has an unknown sslmode {sslmode!r}")
        rootcert = query.get("sslrootcert")
        if rootcert and rootcert != "system" and not Path(rootcert).is_file():
            raise ConfigError(f"{what} names an sslrootcert file that does not exist")
        if "connect_timeout" in query:
            try:
                int(query["connect_timeout"])
            except ValueError:
                raise ConfigError(f"{what} has a non-numeric connect_timeout") from None
        register_secret(password)
        return cls(
            host=host,
            port=port,
            user=user,
            dbname=dbname,
            password=password or None,
            params=tuple(sorted(query.items())),
        )

    def with_dbname(self, dbname: str) -> ConnInfo:
        return replace(self, dbname=dbname)

    # -- properties --------------------------------------------------------------------

    @property
    def param(self) -> dict[str, str]:
        return dict(self.params)

    @property
    def is_socket(self) -> bool:
        return self.host is None or self.host.startswith("/")

    @property
    def is_local(self) -> bool:
        return self.is_socket or (self.host or "").lower() in LOOPBACK

    @property
    def sslmode(self) -> str:
        explicit = self.param.get("sslmode")
        if explicit:
            return explicit
        if self.is_socket:
            return "disable"
        return "prefer" if self.is_local else "require"

    # -- renderings --------------------------------------------------------------------

    def display(self) -> str:
        """Where this points, for humans: never includes the password."""
        where = self.host or "localhost"
        if self.is_socket:
            return f"{self.user}@{where} (socket)/{self.dbname}"
        return f"{self.user}@{where}:{self.port}/{self.dbname}"

    def libpq_uri(self) -> str:
        """The URI for libpq tools, without the password (it travels as PGPASSWORD)."""
        query: dict[str, str] = {}
        netloc = quote(self.user, safe="") + "@"
        if self.is_socket:
            if self.host:
                query["host"] = self.host
            query["port"] = str(self.port)
        else:
            host = self.host or "localhost"
            netloc += f"[{host}]" if ":" in host else quote(host, safe="")
            netloc += f":{self.port}"
        params = self.param
        params["sslmode"] = self.sslmode
        query.update(params)
        # quote, not quote_plus: libpq reads '+' in a URI literally, never as a space.
        return f"postgresql://{netloc}/{quote(self.dbname, safe='')}?{urlencode(query, quote_via=quote)}"

    def libpq_env(self) -> dict[str, str]:
        """Environment for libpq subprocesses: the password, and nothing else secret."""
        env = {"PGPASSWORD": self.password} if self.password else {}
        env["PGCONNECT_TIMEOUT"] = self.param.get("connect_timeout", "15")
        return env

    def pg8000_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "user": self.user,
            "password": self.password,
            "database": self.dbname,
            "port": self.port,
            "timeout": float(self.param.get("connect_timeout", "15")),
            "application_name": self.param.get("application_name", "pgrunbook"),
        }
        if self.is_socket:
            directory = self.host or "/tmp"  # noqa: S108 - libpq's compiled-in default socket directory
            kwargs["unix_sock"] = f"{directory}/.s.PGSQL.{self.port}"
            kwargs["host"] = None
        else:
            kwargs["host"] = self.host or "localhost"
        kwargs["ssl_context"] = self._ssl_context()
        options = self.param.get("options")
        if options:
            kwargs["startup_params"] = {"options": options}
        return kwargs

    def _ssl_context(self) -> ssl.SSLContext | bool | None:
        mode = self.sslmode
        if self.is_socket or mode == "disable":
            return False
        if mode in ("allow", "prefer"):
            return None  # pg8000: try TLS, fall back to clear text if the server refuses
        rootcert = self.param.get("sslrootcert")
        context = ssl.create_default_context(cafile=None if rootcert in (None, "system") else rootcert)
        if mode == "require" and "sslrootcert" not in self.param:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif mode in ("require", "verify-ca"):
            context.check_hostname = False
        return context


def _parse_query(text: str, what: str) -> dict[str, str]:
    """``a=1&b=2`` as libpq reads it: percent-decoded, and '+' is a plus sign, not a space."""
    query: dict[str, str] = {}
    for pair in filter(None, text.split("&")):
        key, _, value = pair.partition("=")
        key = unquote(key)
        if key not in SUPPORTED_PARAMS:
            raise ConfigError(f"{what} has an unsupported parameter {key!r}")
        query[key] = unquote(value)
    return query


def _clean(exc: Exception) -> str:
    return " ".join(str(exc).split())
