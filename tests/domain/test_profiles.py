"""Dump profiles: what a backup leaves out because a platform owns it."""

from __future__ import annotations

import re

import pytest

from pgrunbook.adapters.postgres.fingerprints import excluded_schema_regex, schema_pattern_regex
from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.profiles import get_profile


def test_unknown_profile_is_a_config_error_listing_the_choices():
    with pytest.raises(ConfigError) as caught:
        get_profile("rds")
    assert str(caught.value) == "unknown profile 'rds'; choose from default, supabase"


def test_profile_names_are_case_sensitive():
    with pytest.raises(ConfigError):
        get_profile("Supabase")


def test_default_profile_dumps_everything():
    profile = get_profile("default")
    assert profile.name == "default"
    assert profile.exclude_schemas == ()
    assert profile.pg_dump_args() == []
    assert profile.min_pg_dump == 0


@pytest.mark.parametrize(
    "schema",
    [
        "auth",
        "storage",
        "extensions",
        "realtime",
        "_realtime",
        "graphql",
        "graphql_public",
        "vault",
        "pgsodium",
        "supabase_functions",
        "supabase_migrations",
        "cron",
        "net",
        "_timescaledb_catalog",
        "timescaledb_information",
    ],
)
def test_supabase_profile_leaves_out_platform_schemas(schema):
    regex = excluded_schema_regex(get_profile("supabase").exclude_schemas)
    assert re.search(regex, schema)


@pytest.mark.parametrize("schema", ["public", "app", "billing", "authz", "storage_app", "private"])
def test_supabase_profile_keeps_application_schemas(schema):
    profile = get_profile("supabase")
    assert not re.search(excluded_schema_regex(profile.exclude_schemas), schema)
    # pg_dump gets the same patterns, so it must not drop the schema either
    for arg in profile.pg_dump_args():
        if arg.startswith("--exclude-schema="):
            assert not re.search(schema_pattern_regex(arg.split("=", 1)[1]), schema), arg


def test_supabase_pg_dump_args():
    args = get_profile("supabase").pg_dump_args()
    assert "--exclude-schema=auth" in args
    assert "--exclude-schema=storage" in args
    assert "--exclude-schema=extensions" in args
    assert "--exclude-schema=_timescaledb_*" in args
    assert "--exclude-extension=pg_graphql" in args
    assert "--exclude-extension=pg_net" in args
    assert "--exclude-extension=supabase_vault" in args
    assert "--exclude-schema=public" not in args
    assert all(re.fullmatch(r"--exclude-(schema|extension)=[a-z_*]+", a) for a in args), args
    assert len(args) == len(set(args))


def test_supabase_profile_needs_pg_dump_17_for_exclude_extension():
    assert get_profile("supabase").min_pg_dump == 17
