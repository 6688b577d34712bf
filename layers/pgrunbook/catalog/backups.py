"""The catalog: the set of manifests in S3.

The catalog lives next to the data it describes, not in the database it protects: it must
survive the loss of that database.  A backup folder without a manifest is *incomplete*: it
is listed as such (so that an operator sees it and retention removes it) and is never
offered for restore.  A manifest that is there but cannot be read is *corrupt*: never a backup,
never deleted as a partial upload, always reported by its key.  A manifest whose files are not
all in the bucket (:meth:`Catalog.contents`, :func:`missing_files`) is not restorable either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgrunbook.adapters.s3.store import ObjectStore
from pgrunbook.domain.errors import BackupIncomplete, BackupNotFound
from pgrunbook.domain.ids import is_backup_id
from pgrunbook.domain.manifest import Manifest


@dataclass
class CatalogEntry:
    backup_id: str
    manifest: Manifest | None
    problem: str | None = None
    corrupt: bool = False  # a manifest is there but cannot be read

    @property
    def complete(self) -> bool:
        return self.manifest is not None


def by_backup(prefix: str, objects: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """A listing of ``prefix`` as backup id -> file name -> size."""
    found: dict[str, dict[str, int]] = {}
    for obj in objects:
        backup_id, slash, name = str(obj["Key"])[len(prefix) :].partition("/")
        if slash and name:
            found.setdefault(backup_id, {})[name] = int(obj.get("Size", 0))
    return found


def missing_files(manifest: Manifest, contents: Mapping[str, Mapping[str, int]]) -> list[str]:
    """The files of ``manifest`` that a listing of its folder does not show with their size."""
    listed = contents.get(manifest.backup_id, {})
    problems = []
    for entry in manifest.files:
        size = listed.get(entry.name)
        if size is None:
            problems.append(f"{entry.name} is missing")
        elif size != entry.size:
            problems.append(f"{entry.name} has {size} bytes, the manifest says {entry.size}")
    return problems


class Catalog:
    def __init__(self, store: ObjectStore):
        self.store = store

    def _load(self, backup_id: str) -> CatalogEntry:
        raw = self.store.get_bytes(self.store.manifest_key(backup_id))
        if raw is None:
            return CatalogEntry(backup_id, None, "no manifest: incomplete, not restorable")
        try:
            return CatalogEntry(
                backup_id, Manifest.from_json(raw, source=self.store.uri(self.store.manifest_key(backup_id)))
            )
        except BackupIncomplete as exc:
            return CatalogEntry(backup_id, None, str(exc), corrupt=True)

    def contents(self) -> dict[str, dict[str, int]]:
        """Every object under the backups, by backup id and file name, with its size: one
        listing of the whole prefix (about one request per thousand objects)."""
        return by_backup(self.store.backups_prefix, self.store.list_keys(self.store.backups_prefix))

    def backup_ids(self) -> list[str]:
        return [b for b in self.store.list_backup_ids() if is_backup_id(b)]

    def entries(self, limit: int | None = None) -> list[CatalogEntry]:
        """Every backup folder, newest first, with its manifest when it has one."""
        ids = sorted(self.backup_ids(), reverse=True)
        if limit is not None:
            ids = ids[:limit]
        if not ids:
            return []
        with ThreadPoolExecutor(max_workers=min(16, len(ids))) as pool:
            return list(pool.map(self._load, ids))

    def manifest(self, backup_id: str) -> Manifest:
        entry = self._load(backup_id)
        if entry.manifest is not None:
            return entry.manifest
        if not any(True for _ in self.store.list_keys(self.store.backup_prefix(backup_id))):
            raise BackupNotFound(f"no backup {backup_id} in {self.store.describe()}")
        raise BackupIncomplete(
            f"backup {backup_id} in {self.store.describe()} is not restorable: {entry.problem}"
        )

    def latest(self, tier: str | None = None) -> Manifest:
        """The newest complete backup (of ``tier``, when given)."""
        for backup_id in sorted(self.backup_ids(), reverse=True):
            entry = self._load(backup_id)
            if entry.manifest is not None and (tier is None or tier in entry.manifest.tiers):
                return entry.manifest
        what = f"{tier} backup" if tier else "complete backup"
        raise BackupNotFound(f"no {what} in {self.store.describe()}")

    def to_restore(
        self, backup_id: str | None = None, prefer_tier: str | None = None
    ) -> tuple[Manifest, bool]:
        """The backup a restore takes: ``backup_id``'s, else the newest of ``prefer_tier``, else
        the newest; and whether a preferred tier had none (the newest was taken instead)."""
        if backup_id:
            return self.manifest(backup_id), False
        if prefer_tier:
            try:
                return self.latest(prefer_tier), False
            except BackupNotFound:
                return self.latest(), True
        return self.latest(), False

    def at(self, when: datetime) -> Manifest:
        """The newest complete backup whose snapshot is at or before ``when``."""
        candidates = [
            e.manifest for e in self.entries() if e.manifest is not None and e.manifest.snapshot_time <= when
        ]
        if not candidates:
            raise BackupNotFound(
                f"no complete backup in {self.store.describe()} was taken at or before {when.isoformat()}"
            )
        return max(candidates, key=lambda m: m.snapshot_time)

    def has_manifest(self, backup_id: str) -> bool:
        return self.store.head(self.store.manifest_key(backup_id)) is not None
