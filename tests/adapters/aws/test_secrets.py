"""Database credentials from a Secrets Manager secret in the RDS shape."""

from __future__ import annotations

import pytest

from pgrunbook.adapters.aws.secrets import conninfo_from_secret
from pgrunbook.domain.errors import ConfigError

SECRET = {
    "engine": "postgres",
    "host": "db.example.com",
    "port": 5432,
    "username": "app",
    "password": "pw-0s3cret",
}


def test_an_rds_secret_becomes_a_connection_that_requires_tls():
    info = conninfo_from_secret({**SECRET, "dbname": "orders"})
    assert (info.host, info.port, info.user, info.dbname) == ("db.example.com", 5432, "app", "orders")
    assert info.sslmode == "require"  # not local: TLS required unless the secret says otherwise
    assert "pw-0s3cret" not in info.libpq_uri() and "pw-0s3cret" not in info.display()


def test_the_secrets_sslmode_is_honoured():
    assert conninfo_from_secret({**SECRET, "sslmode": "verify-full"}).sslmode == "verify-full"
    assert conninfo_from_secret({**SECRET, "host": "localhost"}).sslmode == "prefer"
    assert conninfo_from_secret({**SECRET, "port": None}).port == 5432
    assert conninfo_from_secret(SECRET).dbname == "postgres"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host": ""}, "lacks host"),
        ({"password": None}, "lacks password"),
        ({"port": "five"}, "non-numeric port"),
        ({"sslmode": "sometimes"}, "unknown sslmode"),
    ],
)
def test_a_malformed_secret_is_a_config_error(change, message):
    with pytest.raises(ConfigError, match=message) as caught:
        conninfo_from_secret({**SECRET, **change})
    assert "pw-0s3cret" not in str(caught.value)
