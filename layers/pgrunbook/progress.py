"""Progress of long steps: printed to stderr by the CLI, logged by Lambda handlers."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

from pgrunbook.domain.redact import redact

log = logging.getLogger("pgrunbook")


class Progress:
    """Receives one-line progress messages; the base class logs them at INFO."""

    def step(self, message: str) -> None:
        log.info(redact(message))

    def detail(self, message: str) -> None:
        log.debug(redact(message))


class NullProgress(Progress):
    def step(self, message: str) -> None:
        pass

    def detail(self, message: str) -> None:
        pass


class StreamProgress(Progress):
    """Timestamped lines on a stream (stderr), safe to call from several threads.

    ``detail`` lines (per table, per file) are rate-limited so that a dump of thousands of
    tables does not flood the terminal.
    """

    def __init__(self, stream: TextIO | None = None, *, verbose: bool = False, min_interval: float = 1.0):
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.min_interval = min_interval
        self._start = time.monotonic()
        self._last_detail = 0.0
        self._lock = threading.Lock()

    def _write(self, message: str) -> None:
        elapsed = time.monotonic() - self._start
        with self._lock:
            self.stream.write(f"[{elapsed:6.1f}s] {redact(message)}\n")
            self.stream.flush()

    def step(self, message: str) -> None:
        self._write(message)

    def detail(self, message: str) -> None:
        now = time.monotonic()
        if self.verbose or now - self._last_detail >= self.min_interval:
            self._last_detail = now
            self._write("  " + message)
