"""What a dump refers to but does not contain, read from the catalogs in the backup's snapshot.

* Roles: owners of dumped objects, grantees of their privileges, roles named in RLS policies
  and default privileges.  A restore creates the missing ones (``NOLOGIN``, never superuser,
  no password) so that ``OWNER TO`` and ``GRANT`` statements succeed.
* Prerequisites (profiles that exclude schemas): functions in excluded schemas that dumped
  objects depend on (policies, defaults, views, checks, triggers), recorded with their
  definition; excluded schemas that hold extensions the dump creates; foreign keys from
  dumped tables to tables in excluded schemas (restored without those constraints, and the
  restore report says so).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.fingerprints import excluded_schema_regex, schema_pattern_regex
from pgrunbook.domain.manifest import Prerequisites, RoleEntry
from pgrunbook.domain.needs import PROVIDERS, Capabilities, Collation, Extension, Needs

_DUMPED_NS = "SELECT oid FROM pg_catalog.pg_namespace WHERE nspname !~ :excluded"

_ROLES_SQL = f"""
WITH dumped AS ({_DUMPED_NS}),
refs AS (
    SELECT nspowner AS role FROM pg_catalog.pg_namespace WHERE oid IN (SELECT oid FROM dumped)
    UNION SELECT relowner FROM pg_catalog.pg_class WHERE relnamespace IN (SELECT oid FROM dumped)
    UNION SELECT proowner FROM pg_catalog.pg_proc WHERE pronamespace IN (SELECT oid FROM dumped)
    UNION SELECT typowner FROM pg_catalog.pg_type WHERE typnamespace IN (SELECT oid FROM dumped)
    UNION SELECT defaclrole FROM pg_catalog.pg_default_acl
          WHERE defaclnamespace = 0 OR defaclnamespace IN (SELECT oid FROM dumped)
    UNION SELECT sd.refobjid FROM pg_catalog.pg_shdepend sd
          WHERE sd.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
            AND sd.refclassid = 'pg_catalog.pg_authid'::regclass
            AND CASE sd.classid
                WHEN 'pg_catalog.pg_class'::regclass THEN EXISTS (
                    SELECT 1 FROM pg_catalog.pg_class c
                    WHERE c.oid = sd.objid AND c.relnamespace IN (SELECT oid FROM dumped))
                WHEN 'pg_catalog.pg_proc'::regclass THEN EXISTS (
                    SELECT 1 FROM pg_catalog.pg_proc p
                    WHERE p.oid = sd.objid AND p.pronamespace IN (SELECT oid FROM dumped))
                WHEN 'pg_catalog.pg_type'::regclass THEN EXISTS (
                    SELECT 1 FROM pg_catalog.pg_type t
                    WHERE t.oid = sd.objid AND t.typnamespace IN (SELECT oid FROM dumped))
                WHEN 'pg_catalog.pg_namespace'::regclass THEN sd.objid IN (SELECT oid FROM dumped)
                WHEN 'pg_catalog.pg_policy'::regclass THEN EXISTS (
                    SELECT 1 FROM pg_catalog.pg_policy pol JOIN pg_catalog.pg_class c ON c.oid = pol.polrelid
                    WHERE pol.oid = sd.objid AND c.relnamespace IN (SELECT oid FROM dumped))
                WHEN 'pg_catalog.pg_default_acl'::regclass THEN EXISTS (
                    SELECT 1 FROM pg_catalog.pg_default_acl d
                    WHERE d.oid = sd.objid
                      AND (d.defaclnamespace = 0 OR d.defaclnamespace IN (SELECT oid FROM dumped)))
                ELSE true
            END
)
SELECT rolname AS name, rolcanlogin AS login, rolinherit AS inherit, rolcreaterole AS createrole,
       rolcreatedb AS createdb, rolbypassrls AS bypassrls, rolsuper AS superuser
FROM pg_catalog.pg_roles WHERE oid IN (SELECT role FROM refs)
ORDER BY rolname
"""

# The namespace of the object that depends on something, for the catalogs that matter.
_DEPENDENT_NS = """
CASE d.classid
    WHEN 'pg_catalog.pg_class'::regclass THEN (SELECT relnamespace FROM pg_catalog.pg_class WHERE oid = d.objid)
    WHEN 'pg_catalog.pg_proc'::regclass THEN (SELECT pronamespace FROM pg_catalog.pg_proc WHERE oid = d.objid)
    WHEN 'pg_catalog.pg_type'::regclass THEN (SELECT typnamespace FROM pg_catalog.pg_type WHERE oid = d.objid)
    WHEN 'pg_catalog.pg_attrdef'::regclass THEN (
        SELECT c.relnamespace FROM pg_catalog.pg_attrdef a JOIN pg_catalog.pg_class c ON c.oid = a.adrelid
        WHERE a.oid = d.objid)
    WHEN 'pg_catalog.pg_policy'::regclass THEN (
        SELECT c.relnamespace FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
        WHERE p.oid = d.objid)
    WHEN 'pg_catalog.pg_rewrite'::regclass THEN (
        SELECT c.relnamespace FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
        WHERE r.oid = d.objid)
    WHEN 'pg_catalog.pg_constraint'::regclass THEN (
        SELECT connamespace FROM pg_catalog.pg_constraint WHERE oid = d.objid)
    WHEN 'pg_catalog.pg_trigger'::regclass THEN (
        SELECT c.relnamespace FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
        WHERE t.oid = d.objid)
END
"""

_FUNCTIONS_SQL = f"""
WITH dumped AS ({_DUMPED_NS})
SELECT DISTINCT n.nspname AS schema, p.proname AS name, p.oid::bigint AS oid,
       pg_catalog.pg_get_functiondef(p.oid) AS definition,
       (SELECT e.extname FROM pg_catalog.pg_depend ed JOIN pg_catalog.pg_extension e ON e.oid = ed.refobjid
        WHERE ed.classid = 'pg_catalog.pg_proc'::regclass AND ed.objid = p.oid AND ed.deptype = 'e'
        LIMIT 1) AS extension
FROM pg_catalog.pg_depend d
JOIN pg_catalog.pg_proc p ON d.refclassid = 'pg_catalog.pg_proc'::regclass AND d.refobjid = p.oid
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname ~ :profile_excluded
  AND p.prokind IN ('f', 'p')
  AND ({_DEPENDENT_NS}) IN (SELECT oid FROM dumped)
ORDER BY 1, 2, 3
"""

_EXTENSIONS_SQL = """
SELECT e.extname AS name, n.nspname AS schema
FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE n.nspname ~ :profile_excluded AND e.extname <> 'plpgsql' AND NOT (e.extname = ANY(CAST(:skipped AS text[])))
ORDER BY 1
"""

_EXTERNAL_FK_SQL = """
SELECT n.nspname AS schema, c.relname AS table, con.conname AS constraint,
       rn.nspname || '.' || rc.relname AS references
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_class rc ON rc.oid = con.confrelid
JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
WHERE con.contype = 'f' AND n.nspname !~ :excluded AND rn.nspname ~ :profile_excluded
ORDER BY 1, 2, 3
"""


def referenced_roles(db: Database, exclude_schemas: Sequence[str]) -> list[RoleEntry]:
    return [RoleEntry(**row) for row in db.rows(_ROLES_SQL, excluded=excluded_schema_regex(exclude_schemas))]


def prerequisites(
    db: Database, exclude_schemas: Sequence[str], exclude_extensions: Sequence[str]
) -> Prerequisites:
    if not exclude_schemas:
        return Prerequisites()
    excluded = excluded_schema_regex(exclude_schemas)
    profile_excluded = "|".join(schema_pattern_regex(p) for p in exclude_schemas)
    result = Prerequisites()
    extensions = db.rows(
        _EXTENSIONS_SQL, profile_excluded=profile_excluded, skipped="{" + ",".join(exclude_extensions) + "}"
    )
    result.extensions = [{"name": e["name"], "schema": e["schema"]} for e in extensions]
    for fn in db.rows(_FUNCTIONS_SQL, excluded=excluded, profile_excluded=profile_excluded):
        if fn["extension"]:
            continue  # created by its extension (which the dump or the target provides)
        result.functions.append({"schema": fn["schema"], "name": fn["name"], "definition": fn["definition"]})
    result.external_foreign_keys = [
        {k: str(v) for k, v in row.items()}
        for row in db.rows(_EXTERNAL_FK_SQL, excluded=excluded, profile_excluded=profile_excluded)
    ]
    schemas = {e["schema"] for e in result.extensions} | {f["schema"] for f in result.functions}
    result.schemas = sorted(schemas)
    return result


def database_properties(db: Database) -> dict[str, str]:
    row = db.rows(
        "SELECT pg_catalog.pg_encoding_to_char(encoding) AS encoding, datcollate AS collate, "
        "datctype AS ctype FROM pg_catalog.pg_database WHERE datname = current_database()"
    )[0]
    return {k: str(v) for k, v in row.items()}


# -- what a restore needs from its target, and what a target offers ------------------------

_NEEDED_EXTENSIONS_SQL = """
SELECT e.extname AS name, e.extversion AS version, n.nspname AS schema
FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname <> 'plpgsql' AND NOT (e.extname = ANY(CAST(:skipped AS text[])))
ORDER BY 1
"""

_LANGUAGES_SQL = f"""
WITH dumped AS ({_DUMPED_NS})
SELECT DISTINCT l.lanname AS name
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
WHERE p.pronamespace IN (SELECT oid FROM dumped)
ORDER BY 1
"""

_COLLATIONS_SQL = f"""
WITH dumped AS ({_DUMPED_NS}),
used AS (
    SELECT a.attcollation AS coll
    FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
    WHERE c.relnamespace IN (SELECT oid FROM dumped) AND a.attnum > 0 AND NOT a.attisdropped
    UNION SELECT unnest(CAST(i.indcollation AS oid[]))
    FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
    WHERE c.relnamespace IN (SELECT oid FROM dumped)
    UNION SELECT t.typcollation FROM pg_catalog.pg_type t WHERE t.typnamespace IN (SELECT oid FROM dumped)
)
SELECT n.nspname AS schema, c.collname AS name, c.collprovider AS provider, {{locale}} AS locale,
       c.collnamespace IN (SELECT oid FROM dumped) AS defined
FROM pg_catalog.pg_collation c JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace
WHERE (c.oid IN (SELECT coll FROM used) OR c.collnamespace IN (SELECT oid FROM dumped))
  AND c.collname <> 'default'
ORDER BY 1, 2
"""


_LANGUAGE = re.compile(r"^\s*LANGUAGE\s+(\w+)", re.MULTILINE | re.IGNORECASE)


def _locale_column(db: Database, prefix: str) -> str:
    """The ICU/builtin locale column of pg_collation (``c.coll``) or pg_database (``dat``) for
    this server's major (``...locale`` 17+, ``...iculocale`` 15-16, none before), with the libc
    one as fallback."""
    version = db.server_version_num
    libc = f"{prefix}collate"
    if version >= 170000:
        return f"coalesce({prefix}locale, {libc})"
    if version >= 150000:
        return f"coalesce({prefix}iculocale, {libc})"
    return libc


def restore_needs(
    db: Database, exclude_schemas: Sequence[str], exclude_extensions: Sequence[str], prereqs: Prerequisites
) -> Needs:
    """What the dump taken in this snapshot needs from the server it is restored into."""
    excluded = excluded_schema_regex(exclude_schemas)
    extensions = [
        Extension(name=r["name"], version=str(r["version"] or ""), schema=r["schema"])
        for r in db.rows(_NEEDED_EXTENSIONS_SQL, skipped="{" + ",".join(exclude_extensions) + "}")
    ]
    languages = {r["name"] for r in db.rows(_LANGUAGES_SQL, excluded=excluded)}
    for function in prereqs.functions:  # recreated from their definitions on a plain server
        languages.update(m.group(1).lower() for m in _LANGUAGE.finditer(function["definition"]))
    collations = [
        Collation(
            schema=r["schema"],
            name=r["name"],
            provider=PROVIDERS.get(str(r["provider"]), str(r["provider"])),
            locale=str(r["locale"] or ""),
            defined=bool(r["defined"]),
        )
        for r in db.rows(_COLLATIONS_SQL.replace("{locale}", _locale_column(db, "c.coll")), excluded=excluded)
    ]
    locale_expr = _locale_column(db, "dat")
    select_provider = "datlocprovider" if db.server_version_num >= 150000 else "'c'"
    row = db.rows(
        f"SELECT pg_catalog.pg_encoding_to_char(encoding) AS encoding, {select_provider} AS provider, "
        f"{locale_expr} AS locale FROM pg_catalog.pg_database WHERE datname = current_database()"
    )[0]
    provider = PROVIDERS.get(str(row["provider"]), str(row["provider"]))
    return Needs(
        extensions=extensions,
        languages=sorted(languages),
        collations=collations,
        encoding=str(row["encoding"]),
        locale_provider=provider,
        locale=str(row["locale"] or ""),
    )


def capabilities(db: Database, server: str) -> Capabilities:
    """What ``db``'s server can give a restore (``server`` names it in messages)."""
    available: dict[str, list[str]] = {}
    for r in db.rows("SELECT name, version FROM pg_catalog.pg_available_extension_versions ORDER BY 1, 2"):
        available.setdefault(r["name"], []).append(str(r["version"]))
    collations = db.rows(
        "SELECT n.nspname AS schema, c.collname AS name, c.collprovider AS provider, c.collcollate AS locale "
        "FROM pg_catalog.pg_collation c JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace"
    )
    preload = str(db.scalar("SELECT current_setting('shared_preload_libraries')") or "")
    return Capabilities(
        server=server,
        major=db.server_version_num // 10000,
        available=available,
        languages={r[0] for r in db.run("SELECT lanname FROM pg_catalog.pg_language")},
        collations={f"{c['schema']}.{c['name']}" for c in collations},
        libc_locales={str(c["locale"]) for c in collations if c["provider"] == "c" and c["locale"]},
        icu=any(c["provider"] == "i" for c in collations),
        preloaded={p.strip().strip('"') for p in preload.split(",") if p.strip()},
    )
