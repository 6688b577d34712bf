"""Dump profiles: what a backup leaves out because a platform owns it.

``default`` dumps every schema of the database.

``supabase`` leaves out what Supabase manages, as ``supabase db dump`` does: the platform's
schemas (auth, storage, realtime, extensions, graphql, vault, ...; the list is the Supabase
CLI's ``InternalSchemas``) and the extensions whose objects live in them (pg_graphql, pg_net,
pgsodium, supabase_vault, pg_cron, pgmq, pg_tle, ...).  It keeps the application schemas,
their RLS policies and their grants to ``anon``/``authenticated``/``service_role``.  Excluding
an extension needs pg_dump 17 or newer (``--exclude-extension``).

What the application needs from the excluded schemas is recorded in the manifest as
prerequisites (see :mod:`pgrunbook.adapters.postgres.introspect`) so that a restore test on a plain PostgreSQL
server can recreate it: functions such as ``auth.uid()`` that RLS policies call, and the
schemas that hold extensions the dump creates.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgrunbook.domain.errors import ConfigError

SUPABASE_SCHEMAS = (
    "_analytics",
    "_realtime",
    "_supavisor",
    "auth",
    "etl",
    "extensions",
    "pgbouncer",
    "realtime",
    "storage",
    "supabase_functions",
    "supabase_migrations",
    "cron",
    "dbdev",
    "graphql",
    "graphql_public",
    "net",
    "pgmq",
    "pgsodium",
    "pgsodium_masks",
    "pgtle",
    "repack",
    "tiger",
    "tiger_data",
    "timescaledb_*",
    "_timescaledb_*",
    "topology",
    "vault",
)
SUPABASE_EXTENSIONS = (
    "pg_graphql",
    "pg_net",
    "pgsodium",
    "supabase_vault",
    "pg_cron",
    "pgmq",
    "pg_tle",
    "pg_repack",
    "postgis_tiger_geocoder",
    "postgis_topology",
)
SUPABASE_ROLES = ("anon", "authenticated", "service_role")


@dataclass(frozen=True)
class Profile:
    name: str
    exclude_schemas: tuple[str, ...] = ()
    exclude_extensions: tuple[str, ...] = ()

    @property
    def min_pg_dump(self) -> int:
        return 17 if self.exclude_extensions else 0

    def pg_dump_args(self) -> list[str]:
        args = [f"--exclude-schema={s}" for s in self.exclude_schemas]
        args += [f"--exclude-extension={e}" for e in self.exclude_extensions]
        return args


PROFILES = {
    "default": Profile("default"),
    "supabase": Profile("supabase", SUPABASE_SCHEMAS, SUPABASE_EXTENSIONS),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}") from None
