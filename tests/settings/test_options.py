"""The option table: each option declared once, and everything derived from it agrees."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgrunbook.domain.errors import ConfigError
from pgrunbook.operations import registry
from pgrunbook.settings.model import Settings
from pgrunbook.settings.options import COMMON, OPTIONS, environment, markdown_table, option, read_by

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN, END = "<!-- options:begin -->", "<!-- options:end -->"


def test_the_readme_configuration_table_is_the_option_table():
    text = README.read_text()
    assert BEGIN in text and END in text, "README.md lost the markers of its configuration table"
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == markdown_table(), "README.md's configuration table drifted: run `make readme`"


def test_every_setting_is_a_settings_field_with_an_environment_variable():
    fields = set(Settings.__dataclass_fields__) - {"sources"}
    assert {o.name for o in OPTIONS} == fields
    assert all(o.env and o.env.startswith("PGRUNBOOK_") for o in OPTIONS)
    assert len({o.env for o in OPTIONS}) == len(OPTIONS)


def test_what_an_option_says_it_is_used_by_exists():
    known = set(registry.OPERATIONS) | {"*"}
    for opt in OPTIONS:
        assert set(opt.used_by) <= known, opt.name
        assert opt.used_by, f"{opt.name} says nothing reads it"
        scopes = [opt.flag_scope] if isinstance(opt.flag_scope, str) else list(opt.flag_scope)
        for scope in scopes:
            assert scope == COMMON or scope.split()[0] in registry.OPERATIONS, (opt.name, scope)


def test_the_defaults_are_valid_values():
    defaults = Settings.load(env={})
    for opt in OPTIONS:
        assert getattr(defaults, opt.name) == opt.default
        if opt.default is not None:
            assert opt.parse(opt.default) == opt.default


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"jobs": 0}, "jobs must be between 1 and 64"),
        ({"bucket": "Not_A_Bucket"}, "not a valid S3 bucket name"),
        ({"pitr_provider": "barman"}, "pitr_provider must be one of logical, supabase, rds"),
        ({"thresholds_json": "{"}, "PGRUNBOOK_THRESHOLDS is not valid JSON"),
        ({"lock_timeout": "5 seconds"}, "not a duration"),
    ],
)
def test_the_lambda_environment_is_checked_as_settings_are(values, message):
    with pytest.raises(ConfigError, match=message):
        environment(values)
    with pytest.raises(ConfigError, match=message):
        Settings.load(env={}, **values)


def test_the_lambda_environment_names_each_value_by_its_variable():
    env = environment({"jobs": 4, "prefix": "team", "database_name": None, "bucket": "${Token[TOKEN.1]}"})
    # a value known only at deploy time (a CloudFormation token) is checked there
    assert env == {"PGRUNBOOK_JOBS": "4", "PGRUNBOOK_PREFIX": "team", "PGRUNBOOK_BUCKET": "${Token[TOKEN.1]}"}
    del env["PGRUNBOOK_BUCKET"]
    assert Settings.load(env=env).jobs == 4


def test_an_option_read_by_every_operation_or_by_some():
    assert read_by("prefix", ("restore-test",))
    assert read_by("database_secret_arn", ("backup",)) and not read_by(
        "database_secret_arn", ("restore-test",)
    )
    assert read_by("database_secret_arn", ("migrate", "backup"))  # the migration takes a backup


def test_flags_are_spelled_from_the_option_name():
    for opt in OPTIONS:
        if opt.flag and opt.flag != "--state-machine-arn":
            assert re.fullmatch(r"--[a-z][a-z-]*", opt.flag)
    assert option("pitr_state_machine_arn").flag == option("migration_state_machine_arn").flag
