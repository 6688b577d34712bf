"""Settings.load: PGRUNBOOK_* variables, CLI overrides, validation."""

from __future__ import annotations

import pytest

from pgrunbook.domain.errors import ConfigError
from pgrunbook.settings.model import Settings

PASSWORD = "Cfg-pw-5d2e81"


def test_empty_environment_gives_the_defaults():
    settings = Settings.load(env={})
    assert settings.jobs == 2
    assert settings.compression == 1
    assert settings.profile == "default"
    assert settings.mirror == "auto"
    assert settings.prefix == "pgrunbook"
    assert settings.bucket is None
    assert settings.region is None
    assert settings.database_url is None
    assert not settings.has_dr


def test_values_come_from_the_environment():
    env = {
        "PGRUNBOOK_DATABASE_URL": f"postgresql://alice:{PASSWORD}@db.example.com/app",
        "PGRUNBOOK_BUCKET": "acme-backups",
        "PGRUNBOOK_REGION": "us-east-1",
        "PGRUNBOOK_DR_BUCKET": "acme-backups-dr",
        "PGRUNBOOK_DR_REGION": "eu-west-1",
        "PGRUNBOOK_PREFIX": "team/db",
        "PGRUNBOOK_JOBS": "8",
        "PGRUNBOOK_COMPRESSION": "6",
        "PGRUNBOOK_PROFILE": "supabase",
        "PGRUNBOOK_MIRROR": "off",
        "PGRUNBOOK_WORK_DIR": "/scratch",
        "PGRUNBOOK_CREATED_BY": "lambda:backup",
    }
    settings = Settings.load(env=env)
    assert settings.database_url == env["PGRUNBOOK_DATABASE_URL"]
    assert (settings.bucket, settings.region) == ("acme-backups", "us-east-1")
    assert (settings.dr_bucket, settings.dr_region) == ("acme-backups-dr", "eu-west-1")
    assert settings.prefix == "team/db"
    assert (settings.jobs, settings.compression) == (8, 6)
    assert (settings.profile, settings.mirror) == ("supabase", "off")
    assert settings.work_dir == "/scratch"
    assert settings.creator == "lambda:backup"
    assert settings.has_dr


def test_flags_override_the_environment():
    env = {"PGRUNBOOK_JOBS": "8", "PGRUNBOOK_BUCKET": "env-bucket", "PGRUNBOOK_PROFILE": "supabase"}
    settings = Settings.load(env=env, jobs=4, bucket="flag-bucket", profile="default")
    assert settings.jobs == 4
    assert settings.bucket == "flag-bucket"
    assert settings.profile == "default"


def test_flags_left_unset_do_not_override():
    settings = Settings.load(
        env={"PGRUNBOOK_JOBS": "8", "PGRUNBOOK_BUCKET": "env-bucket"}, jobs=None, bucket=None
    )
    assert (settings.jobs, settings.bucket) == (8, "env-bucket")


def test_a_zero_flag_is_a_value_not_an_absence():
    assert Settings.load(env={"PGRUNBOOK_COMPRESSION": "6"}, compression=0).compression == 0


def test_empty_environment_values_are_ignored():
    settings = Settings.load(env={"PGRUNBOOK_JOBS": "", "PGRUNBOOK_BUCKET": "", "PGRUNBOOK_PREFIX": ""})
    assert (settings.jobs, settings.bucket, settings.prefix) == (2, None, "pgrunbook")


def test_os_environ_is_not_read_when_env_is_given(monkeypatch):
    monkeypatch.setenv("PGRUNBOOK_BUCKET", "from-os-environ")
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    settings = Settings.load(env={})
    assert settings.bucket is None
    assert settings.region is None


# -- region fallback ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "flag", "region"),
    [
        ({"AWS_REGION": "eu-west-1"}, None, "eu-west-1"),
        ({"AWS_DEFAULT_REGION": "us-east-2"}, None, "us-east-2"),
        ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-east-2"}, None, "eu-west-1"),
        ({"PGRUNBOOK_REGION": "ap-south-1", "AWS_REGION": "eu-west-1"}, None, "ap-south-1"),
        ({"PGRUNBOOK_REGION": "", "AWS_REGION": "eu-west-1"}, None, "eu-west-1"),
        ({"PGRUNBOOK_REGION": "ap-south-1", "AWS_REGION": "eu-west-1"}, "us-west-2", "us-west-2"),
        ({}, None, None),
    ],
)
def test_region_falls_back_to_the_aws_variables(env, flag, region):
    assert Settings.load(env=env, region=flag).region == region


def test_dr_region_does_not_fall_back_to_the_primary_region():
    assert Settings.load(env={"AWS_REGION": "eu-west-1"}).dr_region is None


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "overrides", "message"),
    [
        ({"PGRUNBOOK_JOBS": "x"}, {}, "PGRUNBOOK_JOBS must be an integer"),
        ({"PGRUNBOOK_JOBS": "2.5"}, {}, "PGRUNBOOK_JOBS must be an integer"),
        ({"PGRUNBOOK_JOBS": "0"}, {}, "jobs must be between 1 and 64"),
        ({}, {"jobs": 65}, "jobs must be between 1 and 64"),
        ({}, {"jobs": -1}, "jobs must be between 1 and 64"),
        ({"PGRUNBOOK_COMPRESSION": "fast"}, {}, "PGRUNBOOK_COMPRESSION must be an integer"),
        ({}, {"compression": 10}, "compression must be a gzip level"),
        ({}, {"compression": -1}, "compression must be a gzip level"),
        ({"PGRUNBOOK_PROFILE": "rds"}, {}, "unknown profile 'rds'"),
        ({"PGRUNBOOK_MIRROR": "yes"}, {}, "mirror must be one of auto, on, off"),
        ({"PGRUNBOOK_BUCKET": "My_Bucket"}, {}, "bucket 'My_Bucket' is not a valid S3 bucket name"),
        ({}, {"bucket": "ab"}, "not a valid S3 bucket name"),
        ({}, {"bucket": "a" * 64}, "not a valid S3 bucket name"),
        ({}, {"bucket": "-backups"}, "not a valid S3 bucket name"),
        ({}, {"bucket": "s3://acme-backups"}, "not a valid S3 bucket name"),
        ({}, {"dr_bucket": "Acme"}, "DR bucket 'Acme'"),
        ({"PGRUNBOOK_REGION": "us-east"}, {}, "region 'us-east' is not an AWS region name"),
        ({}, {"region": "US-EAST-1"}, "is not an AWS region name"),
        ({}, {"region": "us-east-1a"}, "is not an AWS region name"),
        ({"AWS_REGION": "virginia"}, {}, "region 'virginia'"),
        ({"PGRUNBOOK_DR_REGION": "eu west 1"}, {}, "DR region"),
        ({"PGRUNBOOK_DATABASE_NAME": "my app"}, {}, "database name may only use"),
        ({}, {"database_name": "../etc"}, "database name may only use"),
        ({}, {"database_name": ".."}, "database name may only use"),
        ({}, {"database_name": "."}, "database name may only use"),
        ({}, {"prefix": "backups/../other"}, "not a valid key prefix"),
        ({}, {"bucket": "my..bucket"}, "not a valid S3 bucket name"),
        ({}, {"bucket": "192.168.1.10"}, "not a valid S3 bucket name"),
        ({}, {"database_name": "x" * 129}, "database name may only use"),
        ({}, {"prefix": "/"}, "prefix '/' is not a valid key prefix"),
        ({}, {"prefix": "team backups"}, "is not a valid key prefix"),
        ({"PGRUNBOOK_DATABASE_URL": "mysql://alice@db.example.com/app"}, {}, "database URL must be"),
        (
            {"PGRUNBOOK_DATABASE_URL": f"postgresql://alice:{PASSWORD}@db.example.com/app?foo=1"},
            {},
            "database URL has an unsupported parameter 'foo'",
        ),
        (
            {},
            {"restore_target_url": f"postgresql://alice:{PASSWORD}@db.example.com:99999/app"},
            "restore target URL is malformed",
        ),
    ],
)
def test_invalid_settings_raise_a_one_line_config_error(env, overrides, message):
    with pytest.raises(ConfigError) as caught:
        Settings.load(env=env, **overrides)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    assert PASSWORD not in text
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    "region", ["us-east-1", "eu-central-2", "ap-southeast-4", "us-gov-west-1", "il-central-1"]
)
def test_real_region_names_are_accepted(region):
    assert Settings.load(env={}, region=region).region == region


@pytest.mark.parametrize("bucket", ["abc", "acme-backups", "acme.backups.2026", "0day", "a" * 63])
def test_valid_bucket_names_are_accepted(bucket):
    assert Settings.load(env={}, bucket=bucket).bucket == bucket


def test_slashes_around_the_prefix_are_tolerated():
    assert Settings.load(env={}, prefix="/team/db/").prefix == "/team/db/"


# -- database label -------------------------------------------------------------------------


def test_database_label_is_the_urls_database_name():
    settings = Settings.load(env={"PGRUNBOOK_DATABASE_URL": "postgresql://alice@db.example.com:5432/orders"})
    assert settings.database_label == "orders"


def test_database_label_defaults_like_libpq_to_the_user_name():
    settings = Settings.load(env={"PGRUNBOOK_DATABASE_URL": "postgresql://alice@db.example.com"})
    assert settings.database_label == "alice"


def test_database_name_variable_overrides_the_url():
    env = {
        "PGRUNBOOK_DATABASE_URL": "postgresql://alice@db.example.com/orders",
        "PGRUNBOOK_DATABASE_NAME": "prod",
    }
    assert Settings.load(env=env).database_label == "prod"


def test_database_name_that_cannot_be_a_folder_asks_for_a_label():
    settings = Settings.load(env={"PGRUNBOOK_DATABASE_URL": "postgresql://alice@db.example.com/my%20orders"})
    with pytest.raises(ConfigError, match="PGRUNBOOK_DATABASE_NAME") as caught:
        _ = settings.database_label
    assert "'my orders'" in str(caught.value)
    env = {
        "PGRUNBOOK_DATABASE_URL": "postgresql://alice@db.example.com/my%20orders",
        "PGRUNBOOK_DATABASE_NAME": "orders",
    }
    assert Settings.load(env=env).database_label == "orders"


def test_database_label_without_any_database_is_a_config_error():
    with pytest.raises(ConfigError, match="no database"):
        _ = Settings.load(env={}).database_label


def test_database_name_alone_is_enough_for_a_label():
    # status and restore-test only need the catalog, not the source database.
    assert Settings.load(env={"PGRUNBOOK_DATABASE_NAME": "orders"}).database_label == "orders"


def test_conninfo_without_a_url_is_a_config_error():
    with pytest.raises(ConfigError, match="PGRUNBOOK_DATABASE_URL"):
        Settings.load(env={}).conninfo()


def test_conninfo_and_restore_target_are_parsed():
    settings = Settings.load(
        env={
            "PGRUNBOOK_DATABASE_URL": "postgresql://alice@db.example.com:6543/orders",
            "PGRUNBOOK_RESTORE_TARGET_URL": "postgresql://admin@/postgres?host=/var/run/postgresql",
        }
    )
    assert settings.conninfo().port == 6543
    target = settings.restore_target()
    assert target is not None
    assert target.is_socket
    assert Settings.load(env={}).restore_target() is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"region": "us-east-1"}, "no bucket"),
        ({"bucket": "acme-backups"}, "no region"),
    ],
)
def test_primary_store_needs_bucket_and_region(overrides, message):
    settings = Settings.load(env={"PGRUNBOOK_DATABASE_NAME": "orders"}, **overrides)
    with pytest.raises(ConfigError, match=message):
        settings.primary_store()


def test_dr_store_needs_dr_bucket_and_region_and_source_must_be_known():
    settings = Settings.load(env={"PGRUNBOOK_DATABASE_NAME": "orders"}, dr_bucket="acme-dr")
    with pytest.raises(ConfigError, match="no DR region"):
        settings.store("dr")
    with pytest.raises(ConfigError, match="source must be 'primary' or 'dr'"):
        settings.store("backup")
