"""Migration files: ``sql/migrations/<YYYYMMDDHHMMSS>_<name>.sql``, the Supabase CLI's naming.

A file is SQL with optional section markers, as dbmate writes them::

    -- migrate:up
    ALTER TABLE vehicles ADD COLUMN vin text;
    -- migrate:down
    ALTER TABLE vehicles DROP COLUMN vin;
    -- migrate:verify
    SELECT id FROM vehicles WHERE vin IS NULL AND created_at > now();   -- violating rows

* Without markers the whole file is the up part (a plain Supabase CLI migration).
* ``-- migrate:up transaction:false`` runs the file outside a transaction, one statement at a
  time: what ``CREATE INDEX CONCURRENTLY`` needs.  Every other file runs in its own
  transaction, its verify part included, so a failed verification leaves it unapplied.
* The verify part holds queries that return the rows violating what the migration promises
  (like the data-quality checks); any row returned, or any error, fails it.

The SHA-256 of the whole file is recorded when it is applied; a later change to an applied
file is an error before anything runs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from pgrunbook.domain.errors import ConfigError

FILE_NAME = re.compile(r"^(?P<version>\d{14})_(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)\.sql$")
MARKER = re.compile(r"^--\s*migrate:(?P<part>up|down|verify)\b(?P<options>[^\n]*)$", re.MULTILINE)


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # 1-based line of the file where the statement starts


@dataclass
class Part:
    name: str
    text: str = ""
    first_line: int = 1
    statements: list[Statement] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.statements


@dataclass
class MigrationFile:
    version: str
    name: str
    path: Path
    sha256: str
    transaction: bool
    up: Part
    down: Part
    verify: Part

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


def split_statements(text: str, first_line: int = 1) -> list[Statement]:
    """Split SQL into statements at top-level semicolons, knowing quotes, quoted identifiers,
    dollar quotes, ``--`` and nested ``/* */`` comments, and ``BEGIN ATOMIC ... END`` bodies.
    Each statement keeps the line where its first token is; comment-only pieces are dropped."""
    out: list[Statement] = []
    i, n = 0, len(text)
    start = 0
    line = first_line
    start_line: int | None = None
    depth_atomic = 0
    word = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
    previous_words: list[str] = []

    def flush(end: int) -> None:
        nonlocal start, start_line, previous_words, depth_atomic
        piece = text[start:end].strip()  # from the statement's first token
        if start_line is not None and piece:
            out.append(Statement(piece, start_line))
        start, start_line, previous_words, depth_atomic = end + 1, None, [], 0

    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
            continue
        if c.isspace():
            i += 1
            continue
        if text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            line += text.count("\n", i, j)
            i = j
            continue
        if start_line is None:
            start_line, start = line, i
        if c == "'" or c == '"':
            j = i + 1
            while j < n:
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:  # doubled quote
                        j += 2
                        continue
                    break
                if c == "'" and text[j] == "\\" and i > 0 and text[i - 1] in "eE":
                    j += 2
                    continue
                j += 1
            line += text.count("\n", i, j)
            i = j + 1
            continue
        if c == "$":
            m = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", text[i:])
            if m:
                tag = m.group(0)
                j = text.find(tag, i + len(tag))
                j = n if j < 0 else j + len(tag)
                line += text.count("\n", i, j)
                i = j
                continue
        if c == ";" and depth_atomic == 0:
            flush(i)
            i += 1
            continue
        m = word.match(text, i)
        if m:
            keyword = m.group(0).upper()
            if keyword == "ATOMIC" and previous_words[-1:] == ["BEGIN"]:
                depth_atomic += 1
            elif depth_atomic and keyword == "CASE":
                depth_atomic += 1
            elif depth_atomic and keyword == "END":
                depth_atomic -= 1
            previous_words = [*previous_words[-3:], keyword]
            i = m.end()
            continue
        i += 1
    flush(n)
    return out


def parse_text(text: str, path: Path) -> MigrationFile:
    match = FILE_NAME.match(path.name)
    if not match:
        raise ConfigError(
            f"{path.name}: a migration file is named <YYYYMMDDHHMMSS>_<name>.sql (e.g. 20250907143000_add_vin.sql)"
        )
    parts = {name: Part(name) for name in ("up", "down", "verify")}
    transaction = True
    markers = list(MARKER.finditer(text))
    if not markers:
        parts["up"] = Part("up", text, 1, split_statements(text, 1))
    else:
        seen: set[str] = set()
        stray = split_statements(text[: markers[0].start()])
        if stray:
            raise ConfigError(f"{path.name}:{stray[0].line}: SQL before the first -- migrate: marker")
        for k, m in enumerate(markers):
            name = m.group("part")
            line = text.count("\n", 0, m.start()) + 1
            if name in seen:
                raise ConfigError(f"{path.name}:{line}: a second -- migrate:{name} section")
            seen.add(name)
            options = m.group("options").split()
            for option in options:
                if name == "up" and option in ("transaction:false", "transaction:true"):
                    transaction = option == "transaction:true"
                else:
                    raise ConfigError(f"{path.name}:{line}: unknown option {option!r} of -- migrate:{name}")
            body_start = m.end() + 1
            body_end = markers[k + 1].start() if k + 1 < len(markers) else len(text)
            body = text[body_start:body_end] if body_start <= body_end else ""
            first = line + 1
            parts[name] = Part(name, body, first, split_statements(body, first))
    return MigrationFile(
        version=match.group("version"),
        name=match.group("name"),
        path=path,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        transaction=transaction,
        up=parts["up"],
        down=parts["down"],
        verify=parts["verify"],
    )


def parse(path: Path) -> MigrationFile:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path.name}: not UTF-8 text") from None
    return parse_text(text, path)


def discover(directory: Path) -> list[MigrationFile]:
    """The migration files of a folder, in version order (other ``.sql`` names are errors:
    a misnamed file would otherwise be silently skipped)."""
    if not directory.is_dir():
        raise ConfigError(f"no migrations folder {directory} (PGRUNBOOK_MIGRATIONS_DIR)")
    files = [parse(p) for p in sorted(directory.glob("*.sql"))]
    versions: dict[str, str] = {}
    for f in files:
        if f.version in versions:
            raise ConfigError(
                f"two migrations with version {f.version}: {versions[f.version]} and {f.path.name}"
            )
        versions[f.version] = f.path.name
    return sorted(files, key=lambda f: f.version)
