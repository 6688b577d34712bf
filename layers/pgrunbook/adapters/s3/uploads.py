"""Concurrent uploads of a dump's files, started while pg_dump is still writing others.

A file pg_dump has finished is :meth:`Uploader.submit`-ted and goes up whole.  A table's data
file that is still growing can be :meth:`Uploader.follow`-ed: it is read as pg_dump writes it
(its parts going up as they fill, its COPY-text digest computed on the way), and ``submit``
then only says that it is complete.  So the largest table, which pg_dump starts first and
finishes last, is not read, digested and uploaded all over again after the dump has ended.

With ``remove_uploaded``, each local file is deleted as soon as its upload has succeeded (its
size and SHA-256 are in the returned entry): the disk a backup needs is the files not yet
uploaded, not the whole dump."""

from __future__ import annotations

import os
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
        # growing files each have a thread of their own: they wait on pg_dump, not on the pool
        self._followers = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="follow")
        self._complete: dict[str, threading.Event] = {}  # followed file -> pg_dump has closed it
        self._stop = threading.Event()
        self._watched = threading.Event()
        self._watcher: threading.Thread | None = None
        self._futures: dict[str, Future[FileEntry]] = {}
        self._lock = threading.Lock()
        self._done_bytes = 0
        self._done_files = 0
        self.started_keys: list[str] = []

    def submit(self, path: Path) -> None:
        """Queue ``path``, which is complete, for upload unless it already is, or say that a
        followed file is complete (safe from any thread)."""
        with self._lock:
            if path.name in self._complete:
                self._complete[path.name].set()
                return
            if path.name in self._futures:
                return
            key = self.store.key(self.backup_id, path.name)
            self.started_keys.append(key)
            future = self._pool.submit(self._upload, path, key, None)
            self._futures[path.name] = future
        # Outside the lock: a future that is already done runs the callback right here.
        future.add_done_callback(self._count)

    def follow(self, path: Path) -> None:
        """Start uploading ``path`` while it is written; :meth:`submit` says when it is
        complete.  Nothing happens if it is already queued (it was complete first)."""
        with self._lock:
            if path.name in self._futures or self._stop.is_set():
                return
            key = self.store.key(self.backup_id, path.name)
            self.started_keys.append(key)
            complete = self._complete[path.name] = threading.Event()
            future = self._followers.submit(self._upload, path, key, complete)
            self._futures[path.name] = future
        future.add_done_callback(self._count)

    def watch(self, directory: Path, interval: float = 0.1) -> None:
        """Follow each table data file that appears in ``directory`` (pg_dump's output), until
        :meth:`wait` or :meth:`abort`."""

        def look() -> None:
            while not self._stop.wait(interval) and not self._watched.is_set():
                try:
                    names = os.listdir(directory)
                except FileNotFoundError:
                    continue
                for name in sorted(names):
                    if DATA_FILE.match(name):
                        self.follow(directory / name)

        self._watcher = threading.Thread(target=look, name="upload-watch", daemon=True)
        self._watcher.start()

    def _stop_watching(self) -> None:
        self._watched.set()
        if self._watcher is not None:
            self._watcher.join()

    def _upload(self, path: Path, key: str, complete: threading.Event | None) -> FileEntry:
        digest = (
            StreamDigest(gzip=path.suffix == ".gz")
            if self.copy_digests and DATA_FILE.match(path.name)
            else None
        )
        entry = self.store.upload_file(
            path, key, digest.feed if digest is not None else None, complete=complete, stop=self._stop
        )
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
        """All entries, sorted by name; the first failure is raised, the rest cancelled.
        Called once pg_dump has exited: every followed file is then complete."""
        self._stop_watching()
        with self._lock:
            for complete in self._complete.values():
                complete.set()
        entries = []
        try:
            for name in sorted(self._futures):
                entries.append(self._futures[name].result())
        except BaseException:
            self.abort()
            raise
        self._pool.shutdown(wait=True)
        self._followers.shutdown(wait=True)
        return entries

    def abort(self) -> None:
        """Stop: queued uploads are cancelled, followed files abandoned (their multipart
        uploads aborted), and this returns once no upload is running."""
        self._stop.set()
        self._stop_watching()
        for future in self._futures.values():
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._followers.shutdown(wait=True, cancel_futures=True)
