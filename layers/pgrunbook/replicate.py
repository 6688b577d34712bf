"""Copying a complete backup to the disaster-recovery bucket, proven against its manifest.

Order mirrors the backup itself: every file is copied server-side, every copy is checked
(size and S3's stored SHA-256 against the manifest), and only then is the manifest written
in the DR bucket.  A DR folder without a manifest is therefore never mistaken for a
restorable copy, and a copy interrupted halfway is simply redone by the next run.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .errors import BackupIncomplete
from .manifest import Manifest
from .progress import Progress
from .storage import ObjectStore


@dataclass
class ReplicationResult:
    backup_id: str
    location: str
    files: int = 0
    bytes: int = 0


def replicate(
    manifest: Manifest, manifest_bytes: bytes, source: ObjectStore, target: ObjectStore, progress: Progress
) -> ReplicationResult:
    backup_id = manifest.backup_id
    result = ReplicationResult(backup_id, target.uri(target.backup_prefix(backup_id)))

    def copy(entry):
        target.copy_from(source, source.key(backup_id, entry.name), target.key(backup_id, entry.name), entry)
        return target.verify_object(target.key(backup_id, entry.name), entry)

    workers = max(1, min(target.transfer.concurrency, len(manifest.files)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dr-copy") as pool:
        problems = [p for p in pool.map(copy, manifest.files) if p]
    if problems:
        raise BackupIncomplete(f"DR copy of {backup_id} does not match its manifest: {problems[0]}")
    target.put_bytes(target.manifest_key(backup_id), manifest_bytes)
    result.files = len(manifest.files)
    result.bytes = manifest.size_bytes
    progress.detail(f"DR copy of {backup_id}: {result.files} files verified")
    return result
