"""The local disk a run works on: free space, and the peak size of a work directory.

A run's disk is bounded by what it keeps at once, not by the database: the backup removes
each dump file as soon as it is uploaded, and the restore test checks before it downloads
anything that the backup fits (see :func:`free_bytes`).  :class:`PeakWatch` measures what a
work directory really held at its largest, for the report and the bench.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from types import TracebackType


def existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (what will hold it once it is created)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Bytes free to this process on the filesystem that holds (or will hold) ``path``."""
    return shutil.disk_usage(existing(path)).free


def same_filesystem(a: Path, b: Path) -> bool:
    return os.stat(existing(a)).st_dev == os.stat(existing(b)).st_dev


def tree_bytes(path: Path) -> int:
    """The bytes of the files under ``path`` now (files that vanish meanwhile count as 0)."""
    total = 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue
        except (FileNotFoundError, NotADirectoryError):
            continue
    return total


class PeakWatch:
    """The largest size ``path`` reached while the block ran, sampled every ``interval``
    seconds by a background thread (and once more at the end)."""

    def __init__(self, path: Path, interval: float = 0.2):
        self.path, self.interval = Path(path), interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="disk-watch", daemon=True)

    def _sample(self) -> None:
        self.peak = max(self.peak, tree_bytes(self.path))

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> PeakWatch:
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop sampling (again: nothing) and give the peak."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            self._sample()
        return self.peak

    def __enter__(self) -> PeakWatch:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
