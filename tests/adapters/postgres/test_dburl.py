"""ConnInfo: parsing libpq URIs and rendering them for pg8000 and for the libpq tools."""

from __future__ import annotations

import ssl
from urllib.parse import unquote, urlsplit

import pytest

from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.domain.errors import ConfigError

PASSWORD = "Pw-7c1e9aQz"  # distinctive: parse() registers it with the redactor


def libpq_query(uri: str) -> dict[str, str]:
    """Query parameters exactly as libpq reads them (fe-connect.c, conninfo_uri_parse_params).

    libpq splits on '&' and '=' and decodes %XX sequences only: unlike HTML forms, a '+' is a
    literal plus sign, never a space.
    """
    query = uri.split("?", 1)[1] if "?" in uri else ""
    params = {}
    for item in query.split("&"):
        if item:
            key, value = item.split("=", 1)
            params[unquote(key)] = unquote(value)
    return params


# -- TCP hosts ------------------------------------------------------------------------------


def test_tcp_uri_gives_host_port_user_database_and_password():
    info = ConnInfo.parse(f"postgresql://alice:{PASSWORD}@db.example.com:6543/app")
    assert (info.host, info.port, info.user, info.dbname) == ("db.example.com", 6543, "alice", "app")
    assert info.password == PASSWORD
    assert not info.is_socket
    assert not info.is_local


def test_port_defaults_to_5432_and_short_scheme_is_accepted():
    info = ConnInfo.parse("postgres://alice@db.example.com/app")
    assert info.port == 5432
    assert info.dbname == "app"


def test_database_name_defaults_to_the_user_name_like_libpq():
    assert ConnInfo.parse("postgresql://alice@db.example.com").dbname == "alice"


def test_query_parameters_override_the_authority():
    info = ConnInfo.parse("postgresql://alice@db.example.com/app?port=6000&user=bob&dbname=other")
    assert (info.port, info.user, info.dbname) == (6000, "bob", "other")


def test_percent_encoded_user_password_and_database_are_decoded():
    info = ConnInfo.parse("postgresql://us%40er:p%40ss%3Aw%2Fd@db.example.com/my%20db")
    assert info.user == "us@er"
    assert info.password == "p@ss:w/d"
    assert info.dbname == "my db"


def test_password_may_be_given_as_query_parameter():
    info = ConnInfo.parse(f"postgresql://alice@db.example.com/app?password={PASSWORD}")
    assert info.password == PASSWORD
    assert "password" not in info.param


def test_empty_password_means_no_password():
    info = ConnInfo.parse("postgresql://alice:@db.example.com/app")
    assert info.password is None
    assert "PGPASSWORD" not in info.libpq_env()


def test_supported_parameters_are_kept():
    info = ConnInfo.parse(
        "postgresql://alice@db.example.com/app?application_name=nightly&connect_timeout=7&sslmode=verify-ca"
    )
    assert info.param == {"application_name": "nightly", "connect_timeout": "7", "sslmode": "verify-ca"}


# -- unix sockets ---------------------------------------------------------------------------


def test_unix_socket_given_as_host_query_parameter():
    info = ConnInfo.parse("postgresql://alice@/app?host=/var/run/postgresql&port=5433")
    assert info.host == "/var/run/postgresql"
    assert info.port == 5433
    assert info.is_socket
    assert info.is_local


def test_unix_socket_given_as_percent_encoded_host():
    info = ConnInfo.parse("postgresql://alice@%2Fvar%2Frun%2Fpostgresql:5433/app")
    assert info.host == "/var/run/postgresql"
    assert info.port == 5433
    assert info.is_socket


def test_percent_encoded_socket_directory_keeps_its_case():
    # Host names are case-insensitive, directories are not.
    assert ConnInfo.parse("postgresql://alice@%2Ftmp%2FMySockets/app").host == "/tmp/MySockets"


def test_uri_without_host_means_the_default_socket():
    info = ConnInfo.parse("postgresql://alice@/app")
    assert info.host is None
    assert info.is_socket
    assert info.pg8000_kwargs()["unix_sock"] == "/tmp/.s.PGSQL.5432"


# -- IPv6 -----------------------------------------------------------------------------------


def test_ipv6_host_in_brackets():
    info = ConnInfo.parse(f"postgresql://alice:{PASSWORD}@[2001:db8::1]:6543/app")
    assert info.host == "2001:db8::1"
    assert info.port == 6543
    assert not info.is_local


def test_ipv6_host_is_bracketed_again_in_the_libpq_uri():
    uri = ConnInfo.parse("postgresql://alice@[2001:db8::1]:6543/app").libpq_uri()
    assert "@[2001:db8::1]:6543/" in uri
    parts = urlsplit(uri)
    assert (parts.hostname, parts.port) == ("2001:db8::1", 6543)


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (f"mysql://alice:{PASSWORD}@db.example.com/app", "postgresql://"),
        (f"host=db.example.com password={PASSWORD}", "postgresql://"),
        (f"postgresql://alice:{PASSWORD}@db.example.com/app?foo=bar", "unsupported parameter 'foo'"),
        (
            f"postgresql://alice:{PASSWORD}@db.example.com/app?sslcert=x.pem",
            "unsupported parameter 'sslcert'",
        ),
        (f"postgresql://alice:{PASSWORD}@db1.example.com,db2.example.com/app", "several hosts"),
        (f"postgresql://alice:{PASSWORD}@db1.example.com:5432,db2.example.com:5433/app", ""),
        (f"postgresql://alice:{PASSWORD}@db.example.com:99999/app", ""),
        (f"postgresql://alice:{PASSWORD}@db.example.com:abc/app", ""),
        (f"postgresql://alice:{PASSWORD}@db.example.com/app?port=abc", "non-numeric port"),
        (f"postgresql://alice:{PASSWORD}@db.example.com/app?port=70000", "out-of-range port"),
        (f"postgresql://alice:{PASSWORD}@db.example.com/app?port=0", "out-of-range port"),
        (f"postgresql://alice:{PASSWORD}@db.example.com/app?port=-1", "out-of-range port"),
        (f"postgresql://alice:{PASSWORD}@db.example.com/app?sslmode=bogus", "unknown sslmode 'bogus'"),
        (f"postgresql://alice:{PASSWORD}@db.example.com/app?sslmode=REQUIRE", "unknown sslmode"),
        (f"postgresql://alice:{PASSWORD}@db.example.com/app?connect_timeout=soon", "connect_timeout"),
        (f"postgresql://alice:{PASSWORD}@db.example.com/app#top", "fragment"),
        (f"postgresql://alice:{PASSWORD}@db.example.com/a%2Fb", "invalid database name"),
        (f"postgresql://alice:{PASSWORD}@[2001:db8::1/app", "malformed"),
    ],
)
def test_bad_urls_raise_one_line_config_errors_without_the_password(url, message):
    with pytest.raises(ConfigError) as caught:
        ConnInfo.parse(url)
    text = str(caught.value)
    assert message in text
    assert PASSWORD not in text
    assert "\n" not in text
    assert caught.value.exit_code == 2


def test_error_message_names_what_was_being_parsed():
    with pytest.raises(ConfigError, match=r"^restore target URL "):
        ConnInfo.parse("postgresql://alice@db.example.com/app?foo=1", what="restore target URL")


# Regression tests: each of these failed against the first version of dburl.py.


def test_several_hosts_in_the_host_parameter_are_rejected():
    # libpq reads ?host=a,b as two hosts (multi-host failover); pg8000 would get "a,b".
    with pytest.raises(ConfigError, match="several hosts"):
        ConnInfo.parse("postgresql://alice@/app?host=db1.example.com,db2.example.com")


def test_port_zero_in_the_authority_is_rejected():
    # ?port=0 is rejected as out of range; the same port written as host:0 must be too,
    # rather than silently becoming 5432.
    with pytest.raises(ConfigError, match="out-of-range port"):
        ConnInfo.parse("postgresql://alice@db.example.com:0/app")


def test_plus_sign_in_a_query_value_is_literal_as_in_libpq():
    uri = "postgresql://alice@db.example.com/app?password=pa+ss&application_name=a+b"
    assert libpq_query(uri)["password"] == "pa+ss"  # what psql and pg_dump use
    info = ConnInfo.parse(uri)
    assert info.password == "pa+ss"  # what pg8000 gets
    assert info.param["application_name"] == "a+b"


def test_percent_encoded_query_values_are_decoded():
    info = ConnInfo.parse("postgresql://alice@db.example.com/app?password=pa%2Bss%20x%26y")
    assert info.password == "pa+ss x&y"


def test_missing_sslrootcert_file_is_a_config_error(tmp_path):
    # Found before any connection attempt, as a one-line error rather than a traceback.
    url = f"postgresql://alice@db.example.com/app?sslmode=verify-full&sslrootcert={tmp_path}/missing.pem"
    with pytest.raises(ConfigError, match="sslrootcert"):
        ConnInfo.parse(url).pg8000_kwargs()


def test_sslrootcert_system_means_the_system_trust_store():
    # libpq (PostgreSQL 16+) reads sslrootcert=system as "use the operating system's CAs".
    info = ConnInfo.parse("postgresql://alice@db.example.com/app?sslmode=verify-full&sslrootcert=system")
    context = info.pg8000_kwargs()["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert libpq_query(info.libpq_uri())["sslrootcert"] == "system"


# -- TLS policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "sslmode"),
    [
        ("postgresql://alice@/app?host=/var/run/postgresql", "disable"),
        ("postgresql://alice@%2Fvar%2Frun%2Fpostgresql/app", "disable"),
        ("postgresql://alice@/app", "disable"),
        ("postgresql://alice@localhost/app", "prefer"),
        ("postgresql://alice@LOCALHOST/app", "prefer"),
        ("postgresql://alice@127.0.0.1/app", "prefer"),
        ("postgresql://alice@[::1]/app", "prefer"),
        ("postgresql://alice@/app?host=localhost", "prefer"),
        ("postgresql://alice@db.example.com/app", "require"),
        ("postgresql://alice@10.0.0.5/app", "require"),
        ("postgresql://alice@[2001:db8::1]/app", "require"),
        ("postgresql://alice@/app?host=db.example.com", "require"),
        ("postgresql://alice@db.example.com/app?sslmode=disable", "disable"),
        ("postgresql://alice@localhost/app?sslmode=verify-full", "verify-full"),
    ],
)
def test_default_sslmode_policy(url, sslmode):
    info = ConnInfo.parse(url)
    assert info.sslmode == sslmode
    # pg_dump must apply the same policy: libpq's own default would be "prefer".
    assert libpq_query(info.libpq_uri())["sslmode"] == sslmode


def test_remote_host_without_sslmode_gets_tls_without_verification_like_libpq_require():
    context = ConnInfo.parse("postgresql://alice@db.example.com/app").pg8000_kwargs()["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_NONE
    assert context.check_hostname is False


def test_verify_full_checks_certificate_and_host_name():
    info = ConnInfo.parse("postgresql://alice@db.example.com/app?sslmode=verify-full")
    context = info.pg8000_kwargs()["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_verify_ca_checks_certificate_but_not_host_name():
    info = ConnInfo.parse("postgresql://alice@db.example.com/app?sslmode=verify-ca")
    context = info.pg8000_kwargs()["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is False


def test_prefer_lets_pg8000_negotiate_and_disable_turns_tls_off():
    assert ConnInfo.parse("postgresql://alice@localhost/app").pg8000_kwargs()["ssl_context"] is None
    disabled = ConnInfo.parse("postgresql://alice@db.example.com/app?sslmode=disable")
    assert disabled.pg8000_kwargs()["ssl_context"] is False


# -- renderings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://alice:{PASSWORD}@db.example.com:6543/app?sslmode=verify-full",
        f"postgresql://alice@db.example.com/app?password={PASSWORD}",
        f"postgresql://alice:{PASSWORD}@/app?host=/var/run/postgresql",
        f"postgresql://alice:{PASSWORD}@[2001:db8::1]:6543/app",
    ],
)
def test_libpq_uri_and_display_never_contain_the_password(url):
    info = ConnInfo.parse(url)
    assert info.password == PASSWORD
    uri = info.libpq_uri()
    assert PASSWORD not in uri
    assert "password" not in libpq_query(uri)
    assert urlsplit(uri).password is None
    assert PASSWORD not in info.display()
    assert PASSWORD not in repr(info)


def test_libpq_uri_keeps_explicit_sslmode_and_parameters():
    info = ConnInfo.parse(
        "postgresql://alice@db.example.com:6543/app?sslmode=verify-full&connect_timeout=7&application_name=nightly"
    )
    query = libpq_query(info.libpq_uri())
    assert query == {"sslmode": "verify-full", "connect_timeout": "7", "application_name": "nightly"}


def test_libpq_uri_for_a_socket_passes_directory_and_port_as_parameters():
    info = ConnInfo.parse("postgresql://alice@%2Fvar%2Frun%2Fpostgresql:5433/app")
    uri = info.libpq_uri()
    assert urlsplit(uri).hostname is None
    assert libpq_query(uri) == {"host": "/var/run/postgresql", "port": "5433", "sslmode": "disable"}


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://us%40er:{PASSWORD}@db.example.com:6543/my%20db?sslmode=verify-ca",
        "postgresql://alice@%2Fvar%2Frun%2Fpostgresql:5433/app",
        "postgresql://alice@[2001:db8::1]:6543/app",
        "postgresql://alice@localhost/app?connect_timeout=3",
    ],
)
def test_libpq_uri_parses_back_to_the_same_target_without_password(url):
    info = ConnInfo.parse(url)
    again = ConnInfo.parse(info.libpq_uri())
    assert (again.host, again.port, again.user, again.dbname) == (
        info.host,
        info.port,
        info.user,
        info.dbname,
    )
    assert again.sslmode == info.sslmode
    assert again.password is None
    assert {k: v for k, v in again.params if k != "sslmode"} == {
        k: v for k, v in info.params if k != "sslmode"
    }


def test_parameters_with_spaces_reach_libpq_unchanged():
    # Regression: libpq_uri used urlencode's quote_plus, and libpq reads '+' literally,
    # so pg_dump got options=-c+statement_timeout=5min.
    info = ConnInfo.parse(
        "postgresql://alice@db.example.com/app?options=-c%20statement_timeout%3D5min&application_name=nightly%20backup"
    )
    query = libpq_query(info.libpq_uri())
    assert query["options"] == "-c statement_timeout=5min"
    assert query["application_name"] == "nightly backup"


def test_display_for_tcp_and_socket():
    assert ConnInfo.parse("postgresql://alice@db.example.com:6543/app").display() == (
        "alice@db.example.com:6543/app"
    )
    socket_display = ConnInfo.parse("postgresql://alice@/app?host=/var/run/postgresql").display()
    assert socket_display == "alice@/var/run/postgresql (socket)/app"


def test_libpq_env_carries_the_password_and_the_timeout():
    info = ConnInfo.parse(f"postgresql://alice:{PASSWORD}@db.example.com/app?connect_timeout=7")
    assert info.libpq_env() == {"PGPASSWORD": PASSWORD, "PGCONNECT_TIMEOUT": "7"}


def test_libpq_env_without_password_has_no_pgpassword():
    env = ConnInfo.parse("postgresql://alice@db.example.com/app").libpq_env()
    assert env == {"PGCONNECT_TIMEOUT": "15"}


def test_pg8000_kwargs_for_a_socket():
    info = ConnInfo.parse(f"postgresql://alice:{PASSWORD}@/app?host=/var/run/postgresql&port=5433")
    kwargs = info.pg8000_kwargs()
    assert kwargs["unix_sock"] == "/var/run/postgresql/.s.PGSQL.5433"
    assert kwargs["host"] is None
    assert kwargs["ssl_context"] is False
    assert (kwargs["user"], kwargs["password"], kwargs["database"]) == ("alice", PASSWORD, "app")


def test_pg8000_kwargs_for_an_explicit_sslmode_on_a_socket_still_disable_tls():
    # TLS over a unix socket is not a thing; the explicit sslmode is still passed to libpq.
    info = ConnInfo.parse("postgresql://alice@/app?host=/var/run/postgresql&sslmode=require")
    assert info.sslmode == "require"
    assert info.pg8000_kwargs()["ssl_context"] is False


def test_pg8000_kwargs_for_tcp():
    info = ConnInfo.parse(
        "postgresql://alice@db.example.com:6543/app?connect_timeout=7&application_name=nightly&options=-c%20work_mem%3D64MB"
    )
    kwargs = info.pg8000_kwargs()
    assert kwargs["host"] == "db.example.com"
    assert kwargs["port"] == 6543
    assert "unix_sock" not in kwargs
    assert kwargs["timeout"] == 7.0
    assert kwargs["application_name"] == "nightly"
    assert kwargs["startup_params"] == {"options": "-c work_mem=64MB"}


def test_pg8000_defaults_application_name_and_timeout():
    kwargs = ConnInfo.parse("postgresql://alice@db.example.com/app").pg8000_kwargs()
    assert kwargs["application_name"] == "pgrunbook"
    assert kwargs["timeout"] == 15.0
    assert "startup_params" not in kwargs


def test_with_dbname_returns_a_copy_pointing_elsewhere():
    info = ConnInfo.parse(f"postgresql://alice:{PASSWORD}@db.example.com/app")
    other = info.with_dbname("scratch")
    assert other.dbname == "scratch"
    assert info.dbname == "app"
    assert (other.host, other.user, other.password) == (info.host, info.user, info.password)
