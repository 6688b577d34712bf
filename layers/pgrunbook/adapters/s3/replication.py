"""Copying a backup to the disaster-recovery bucket, proven against its manifest.

Order mirrors the backup itself: every file is copied server-side and checked (size and
S3's stored SHA-256 against its manifest entry), and only then is the manifest written in
the DR bucket.  A DR folder without a manifest is therefore never mistaken for a restorable
copy, and a copy interrupted halfway is simply redone by the next run.

During a backup the copies start as soon as each file's primary upload is done, so the DR
copy runs alongside the dump instead of after it; the DR manifest still waits for the
primary manifest and for every copy to be verified.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from pgrunbook.adapters.s3.store import ObjectStore
from pgrunbook.domain.errors import BackupIncomplete
from pgrunbook.domain.manifest import FileEntry, Manifest
from pgrunbook.progress import Progress


@dataclass
class ReplicationResult:
    backup_id: str
    location: str
    files: int = 0
    bytes: int = 0


class Replicator:
    """Copies the files of one backup from ``source`` to ``target`` as they are submitted."""

    def __init__(self, source: ObjectStore, target: ObjectStore, backup_id: str, progress: Progress):
        self.source = source
        self.target = target
        self.backup_id = backup_id
        self.progress = progress
        self._pool = ThreadPoolExecutor(max_workers=target.transfer.concurrency, thread_name_prefix="dr-copy")
        self._futures: dict[str, Future[str | None]] = {}
        self._lock = threading.Lock()
        self.started_keys: list[str] = []

    def submit(self, entry: FileEntry) -> None:
        with self._lock:
            if entry.name in self._futures:
                return
            key = self.target.key(self.backup_id, entry.name)
            self.started_keys.append(key)
            self._futures[entry.name] = self._pool.submit(self._copy, entry, key)

    def _copy(self, entry: FileEntry, key: str) -> str | None:
        self.target.copy_from(self.source, self.source.key(self.backup_id, entry.name), key, entry)
        return self.target.verify_object(key, entry)

    def finish(self, manifest: Manifest, manifest_bytes: bytes) -> ReplicationResult:
        """Copy what is left, check every copy, then write the DR manifest (last)."""
        try:
            for entry in manifest.files:
                self.submit(entry)
            problems = []
            for entry in manifest.files:
                problem = self._futures[entry.name].result()
                if problem:
                    problems.append(problem)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if problems:
            raise BackupIncomplete(f"DR copy of {self.backup_id} does not match its manifest: {problems[0]}")
        self.target.put_bytes(self.target.manifest_key(self.backup_id), manifest_bytes)
        self.progress.detail(f"DR copy of {self.backup_id}: {len(manifest.files)} files verified")
        return ReplicationResult(
            self.backup_id,
            self.target.uri(self.target.backup_prefix(self.backup_id)),
            files=len(manifest.files),
            bytes=manifest.size_bytes,
        )

    def abort(self) -> None:
        for future in self._futures.values():
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)


def replicate(
    manifest: Manifest, manifest_bytes: bytes, source: ObjectStore, target: ObjectStore, progress: Progress
) -> ReplicationResult:
    """Copy a complete backup in one go (used to repair a missing DR copy)."""
    return Replicator(source, target, manifest.backup_id, progress).finish(manifest, manifest_bytes)
