"""Concurrent uploads of a dump's files, started while pg_dump is still writing others.

With ``remove_uploaded``, each local file is deleted as soon as its upload has succeeded (its
size and SHA-256 are in the returned entry): the disk a backup needs is the files not yet
uploaded, not the whole dump."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from pgrunbook.adapters.postgres.copytext import DATA_FILE, StreamDigest
from pgrunbook.adapters.s3.store import ObjectStore
from pgrunbook.domain.manifest import FileEntry
from pgrunbook.progress import Progress


class Uploader:
    def __init__(
        self,
        store: ObjectStore,
        backup_id: str,
        progress: Progress,
        concurrency: int,
        on_uploaded: Callable[[FileEntry], None] | None = None,
        *,
        remove_uploaded: bool = False,
        copy_digests: bool = False,
    ):
        self.store = store
        self.remove_uploaded = remove_uploaded
        # a data file's COPY-text digest, computed from the bytes read for the upload; the TOC
        # stays on the disk for the caller to list (it is small)
        self.copy_digests = copy_digests
        self.digests: dict[str, tuple[int, str, int]] = {}  # file -> rows, fingerprint, text bytes
        self.digest_seconds = 0.0
        self.on_uploaded = on_uploaded
        self.backup_id = backup_id
        self.progress = progress
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="upload")
        self._futures: dict[str, Future[FileEntry]] = {}
        self._lock = threading.Lock()
        self._done_bytes = 0
        self._done_files = 0
        self.started_keys: list[str] = []

    def submit(self, path: Path) -> None:
        """Queue ``path`` for upload unless it already is (safe from any thread)."""
        with self._lock:
            if path.name in self._futures:
                return
            key = self.store.key(self.backup_id, path.name)
            self.started_keys.append(key)
            future = self._pool.submit(self._upload, path, key)
            self._futures[path.name] = future
        # Outside the lock: a future that is already done runs the callback right here.
        future.add_done_callback(self._count)

    def _upload(self, path: Path, key: str) -> FileEntry:
        digest = (
            StreamDigest(gzip=path.suffix == ".gz")
            if self.copy_digests and DATA_FILE.match(path.name)
            else None
        )
        entry = self.store.upload_file(path, key, digest.feed if digest is not None else None)
        if digest is not None:
            rows, fingerprint = digest.result()
            with self._lock:
                self.digests[path.name] = (rows, fingerprint, digest.text_bytes)
                self.digest_seconds += digest.seconds
        if self.remove_uploaded and not (self.copy_digests and path.name == "toc.dat"):
            path.unlink(missing_ok=True)
        return entry

    def _count(self, future: Future[FileEntry]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        entry = future.result()
        if self.on_uploaded is not None:
            self.on_uploaded(entry)
        with self._lock:
            self._done_files += 1
            self._done_bytes += entry.size
            files, size = self._done_files, self._done_bytes
        self.progress.detail(f"uploaded {files} files, {size / 1e6:.1f} MB")

    def wait(self) -> list[FileEntry]:
        """All entries, sorted by name; the first failure is raised, the rest cancelled."""
        entries = []
        try:
            for name in sorted(self._futures):
                entries.append(self._futures[name].result())
        except BaseException:
            self.abort()
            raise
        self._pool.shutdown(wait=True)
        return entries

    def abort(self) -> None:
        for future in self._futures.values():
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
