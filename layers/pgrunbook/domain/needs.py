"""What a restore needs from its target server, and whether a target has it (pure).

A backup records its needs in the manifest (``needs``): every extension the dump creates
(name, version, schema), the procedural languages its functions are written in, the
collations its columns and indexes use (and the ones it defines), and the database's
encoding and locale.  Before anything is restored, the restore compares them with what the
target offers (:class:`Capabilities`, read from ``pg_available_extensions`` and friends):
a target that lacks one cannot host the backup, and the backup is *untested*, not failed.
Integrity below 100 % stays reserved for backups whose data does not match.

Backups taken before needs were recorded carry none; their extensions and collations are
read from the dump's table of contents after the download (:func:`needs_from_toc`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

# Languages every server has (plpgsql is created by initdb in every database).
BUILTIN_LANGUAGES = frozenset({"internal", "c", "sql", "plpgsql"})
# Extensions whose CREATE EXTENSION needs the library in shared_preload_libraries.
PRELOADED = frozenset({"timescaledb", "pg_cron", "citus", "pg_squeeze", "pg_partman_bgw", "pgaudit"})
# Collation providers (pg_collation.collprovider).
PROVIDERS = {"c": "libc", "i": "icu", "b": "builtin", "d": "default"}


@dataclass(frozen=True)
class Extension:
    name: str
    version: str = ""
    schema: str = ""


@dataclass(frozen=True)
class Collation:
    schema: str
    name: str
    provider: str = "libc"  # libc | icu | builtin
    locale: str = ""  # collcollate for libc, the ICU locale for icu
    defined: bool = False  # defined by the dump (CREATE COLLATION) rather than the server's

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class Needs:
    """What the dump needs from the server it is restored into."""

    extensions: list[Extension] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    collations: list[Collation] = field(default_factory=list)
    encoding: str = ""
    locale_provider: str = "libc"
    locale: str = ""  # the database's collation (libc) or ICU locale
    recorded: bool = True  # False: an old manifest, needs come from the dump's TOC

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Needs:
        if not data:
            return cls(recorded=False)
        return cls(
            extensions=[Extension(**e) for e in data.get("extensions", [])],
            languages=list(data.get("languages", [])),
            collations=[Collation(**c) for c in data.get("collations", [])],
            encoding=str(data.get("encoding", "")),
            locale_provider=str(data.get("locale_provider", "libc")),
            locale=str(data.get("locale", "")),
            recorded=bool(data.get("recorded", True)),
        )


@dataclass
class Capabilities:
    """What a target server offers (read once, before anything is restored)."""

    server: str  # how the target is named in messages
    major: int
    available: dict[str, list[str]] = field(default_factory=dict)  # extension -> versions it can install
    languages: set[str] = field(default_factory=set)
    collations: set[str] = field(default_factory=set)  # schema.name of the server's own collations
    libc_locales: set[str] = field(default_factory=set)  # collcollate of its libc collations
    icu: bool = False
    preloaded: set[str] = field(default_factory=set)  # shared_preload_libraries


@dataclass(frozen=True)
class Unmet:
    """One need the target does not meet, and what would meet it."""

    need: str  # "extension citext", "collation public.german", "language plv8"
    detail: str
    remedy: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def version_key(version: str) -> tuple[int, ...] | None:
    """``"1.6"`` -> (1, 6); None when the version is not dotted numbers."""
    parts = re.findall(r"\d+", version)
    if not parts or not re.fullmatch(r"\d+(\.\d+)*", version.strip()):
        return None
    return tuple(int(p) for p in parts)


def _version_ok(wanted: str, offered: list[str]) -> bool:
    if not wanted:
        return bool(offered)
    key = version_key(wanted)
    if key is None:
        return bool(offered)  # not comparable: presence is what can be checked
    return any((k := version_key(v)) is not None and k >= key for v in offered) or wanted in offered


def unmet(needs: Needs, target: Capabilities, *, remedy: str) -> list[Unmet]:
    """Every need ``target`` does not meet.  ``remedy`` says how to give the restore a target
    that can (the same for every need: another target), appended to each need's own fix."""
    found: list[Unmet] = []
    for ext in needs.extensions:
        offered = target.available.get(ext.name)
        wanted = f" {ext.version}" if ext.version else ""
        if offered is None:
            found.append(
                Unmet(
                    f"extension {ext.name}",
                    f"the backup creates extension {ext.name}{wanted}; {target.server} does not have it",
                    f"install {ext.name} on the target, or {remedy}",
                )
            )
        elif not _version_ok(ext.version, offered):
            found.append(
                Unmet(
                    f"extension {ext.name}",
                    f"the backup has {ext.name}{wanted}; {target.server} offers only {', '.join(offered)}",
                    f"install {ext.name} {ext.version} or newer on the target, or {remedy}",
                )
            )
        elif ext.name in PRELOADED and ext.name not in target.preloaded:
            found.append(
                Unmet(
                    f"extension {ext.name}",
                    f"{ext.name} must be in shared_preload_libraries and is not on {target.server}",
                    f"add {ext.name} to shared_preload_libraries on the target, or {remedy}",
                )
            )
    by_extension = {e.name for e in needs.extensions}
    for language in needs.languages:
        if language in BUILTIN_LANGUAGES or language in target.languages:
            continue
        if language in by_extension or language in target.available:
            continue  # created by its extension
        found.append(
            Unmet(
                f"language {language}",
                f"functions in the backup are written in {language}; {target.server} does not have it",
                f"install {language} on the target, or {remedy}",
            )
        )
    for coll in needs.collations:
        problem = _collation_problem(coll, target)
        if problem:
            found.append(Unmet(f"collation {coll.qualified}", problem, f"{remedy}"))
    return found


def _collation_problem(coll: Collation, target: Capabilities) -> str | None:
    if coll.defined:  # CREATE COLLATION in the dump: the provider and locale must exist
        if coll.provider == "icu" and not target.icu:
            return f"the backup defines ICU collation {coll.qualified}; {target.server} is built without ICU"
        if coll.provider == "libc" and not _libc_has(coll.locale, target):
            return (
                f"the backup defines collation {coll.qualified} on locale {coll.locale!r}, which "
                f"{target.server} does not have"
            )
        return None
    if coll.qualified in target.collations:
        return None
    return (
        f"columns or indexes in the backup use collation {coll.qualified}; {target.server} does not have it"
    )


def _libc_has(locale: str, target: Capabilities) -> bool:
    if locale in ("C", "POSIX", "C.UTF-8", "C.utf8", ""):
        return True
    return locale in target.libc_locales or locale.replace("UTF-8", "utf8") in target.libc_locales


_TOC_EXTENSION = re.compile(r"\bEXTENSION - (\S+)")
_TOC_COLLATION = re.compile(r"\bCOLLATION (\S+) (\S+) ")


def needs_from_toc(listing: str) -> Needs:
    """The extensions and collations a dump creates, from ``pg_restore --list`` (for backups
    whose manifest predates recorded needs: no versions, and collations only as defined)."""
    entries = [line for line in listing.splitlines() if line.strip() and not line.lstrip().startswith(";")]
    extensions = sorted({m.group(1) for line in entries if (m := _TOC_EXTENSION.search(line))} - {"plpgsql"})
    collations = sorted({(m.group(1), m.group(2)) for line in entries if (m := _TOC_COLLATION.search(line))})
    return Needs(
        extensions=[Extension(name) for name in extensions],
        collations=[Collation(schema, name, provider="unknown", defined=True) for schema, name in collations],
        recorded=False,
    )
