"""The backup manifest (format ``pgrunbook/1``): the evidence a backup carries.

A manifest is written last, after every file it lists is in S3, so its presence is what
makes a backup restorable.  It records what a restore needs to prove itself complete: the
size and SHA-256 of every file, and for every table the row count and content fingerprint
taken in the backup's own snapshot; plus what the dump refers to but does not contain (roles,
and for profiles that leave out platform schemas, the functions and schemas the application
needs from them), and what a restore needs from its target server (``needs``: extensions,
languages, collations, encoding and locale; see :mod:`pgrunbook.domain.needs`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pgrunbook.domain.errors import BackupIncomplete
from pgrunbook.domain.needs import Needs

FORMAT = "pgrunbook/1"


@dataclass(frozen=True)
class FileEntry:
    name: str
    size: int
    sha256: str  # hex digest of the whole file
    s3_checksum: str  # what S3 stores as ChecksumSHA256: base64, or "base64-N" for N parts
    parts: int = 1
    part_size: int = 0  # multipart uploads only: every part but the last has this size


@dataclass(frozen=True)
class TableEntry:
    schema: str
    name: str
    rows: int
    fingerprint: str
    method: str  # "record" (typed hash of the row) or "text" (hash of the row's text form)
    columns: tuple[tuple[str, str], ...] = ()  # (column, "hash" | "text")

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class RoleEntry:
    name: str
    login: bool = False
    inherit: bool = True
    createrole: bool = False
    createdb: bool = False
    bypassrls: bool = False
    superuser: bool = False


@dataclass
class Prerequisites:
    """Objects outside the dump that objects inside it depend on (profile-excluded schemas)."""

    schemas: list[str] = field(default_factory=list)
    functions: list[dict[str, str]] = field(default_factory=list)  # schema, name, definition
    extensions: list[dict[str, str]] = field(default_factory=list)  # name, schema
    external_foreign_keys: list[dict[str, str]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.schemas or self.functions or self.extensions or self.external_foreign_keys)


@dataclass
class Manifest:
    backup_id: str
    database: str
    tiers: list[str]
    created_by: str
    started_at: datetime
    completed_at: datetime
    retention_until: datetime
    snapshot: dict[str, Any]
    server: dict[str, Any]
    tools: dict[str, Any]
    options: dict[str, Any]
    files: list[FileEntry]
    tables: list[TableEntry]
    roles: list[RoleEntry] = field(default_factory=list)
    prerequisites: Prerequisites = field(default_factory=Prerequisites)
    # what a restore needs from its target (absent from manifests written before: not recorded)
    needs: Needs = field(default_factory=lambda: Needs(recorded=False))
    format: str = FORMAT
    # why the backup was taken, e.g. {"reason": "pre-migration", "migrations": "2025...,2025..."}
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def snapshot_time(self) -> datetime:
        return datetime.fromisoformat(self.snapshot["time"])

    @property
    def pg_dump_major(self) -> int:
        return int(str(self.tools["pg_dump"]).split(".")[0])

    def file(self, name: str) -> FileEntry | None:
        return next((f for f in self.files if f.name == name), None)

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("started_at", "completed_at", "retention_until"):
            data[key] = getattr(self, key).isoformat()
        data["totals"] = {"size_bytes": self.size_bytes, "rows": self.total_rows, "tables": len(self.tables)}
        return data

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes, *, source: str = "manifest") -> Manifest:
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if data.get("format") != FORMAT:
                raise ValueError(f"unknown format {data.get('format')!r}")
            return cls(
                format=data["format"],
                backup_id=data["backup_id"],
                database=data["database"],
                tiers=list(data["tiers"]),
                created_by=data["created_by"],
                started_at=datetime.fromisoformat(data["started_at"]),
                completed_at=datetime.fromisoformat(data["completed_at"]),
                retention_until=datetime.fromisoformat(data["retention_until"]),
                snapshot=dict(data["snapshot"]),
                server=dict(data["server"]),
                tools=dict(data["tools"]),
                options=dict(data["options"]),
                files=[FileEntry(**f) for f in data["files"]],
                tables=[
                    TableEntry(**{**t, "columns": tuple(tuple(c) for c in t.get("columns", ()))})
                    for t in data["tables"]
                ],
                roles=[RoleEntry(**r) for r in data.get("roles", [])],
                prerequisites=Prerequisites(**data.get("prerequisites", {})),
                needs=Needs.from_dict(data.get("needs")),
                labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()},
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupIncomplete(f"{source} is not a valid {FORMAT} manifest: {exc}") from None
