"""Secrets never reach output, logs or exception text."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator

import pytest

from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.domain import redact as redact_module
from pgrunbook.domain.redact import MASK, RedactingFilter, install_logging_filter, redact, register_secret


@pytest.fixture(autouse=True)
def empty_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no registered secrets and leaves none behind."""
    monkeypatch.setattr(redact_module, "_secrets", set())


def new_secret() -> str:
    return "sk-" + secrets.token_hex(8)


# -- URLs -----------------------------------------------------------------------------------


def test_password_in_a_postgres_url_is_masked_and_the_rest_kept():
    text = "could not connect to postgresql://alice:hunter2-db@db.example.com:5432/app?sslmode=require"
    assert redact(text) == (
        "could not connect to postgresql://alice:********@db.example.com:5432/app?sslmode=require"
    )


def test_every_url_in_a_message_is_masked_in_both_schemes():
    text = "copy from postgres://a:first-pw@h1/db to postgresql://b:second-pw@h2/db"
    clean = redact(text)
    assert "first-pw" not in clean
    assert "second-pw" not in clean
    assert clean == f"copy from postgres://a:{MASK}@h1/db to postgresql://b:{MASK}@h2/db"


def test_url_password_with_url_syntax_characters_is_masked():
    clean = redact("postgresql://alice:p%40ss/w:rd@db.example.com/app")
    assert clean == f"postgresql://alice:{MASK}@db.example.com/app"


def test_urls_without_passwords_are_unchanged():
    for text in (
        "postgresql://alice@db.example.com:5432/app",
        "postgresql://db.example.com:5432/app",
        "postgresql://alice@/app?host=/var/run/postgresql",
        "backed up 12 tables",
    ):
        assert redact(text) == text


def test_empty_password_is_not_turned_into_a_mask():
    assert redact("postgresql://alice:@db.example.com/app") == "postgresql://alice:@db.example.com/app"


def test_empty_text():
    assert redact("") == ""


# -- registered secrets ---------------------------------------------------------------------


def test_registered_secret_is_masked_anywhere():
    secret = new_secret()
    register_secret(secret)
    assert redact(f"token={secret}; again {secret}.") == f"token={MASK}; again {MASK}."


def test_unregistered_strings_are_left_alone():
    register_secret(new_secret())
    assert redact("the backup of app finished") == "the backup of app finished"


def test_longer_secret_is_masked_whole_even_when_a_shorter_one_is_its_prefix():
    short = new_secret()
    long = short + "-extended"
    register_secret(short)
    register_secret(long)
    assert redact(f"value {long} end") == f"value {MASK} end"


@pytest.mark.parametrize("value", ["ab", "x", "", None])
def test_short_or_empty_values_are_not_registered(value):
    # Masking every "ab" in every message would make output unreadable.
    register_secret(value)
    assert redact("ab x cab") == "ab x cab"
    assert redact_module._secrets == set()


def test_three_characters_are_enough_to_register():
    register_secret("q9z")
    assert redact("pw q9z") == f"pw {MASK}"


def test_parsing_a_database_url_registers_its_password():
    password = new_secret()
    ConnInfo.parse(f"postgresql://alice:{password}@db.example.com/app")
    assert redact(f'FATAL: password authentication failed, tried "{password}"') == (
        f'FATAL: password authentication failed, tried "{MASK}"'
    )


def test_percent_encoded_password_is_registered_decoded():
    ConnInfo.parse("postgresql://alice:p%40ssw0rd-x@db.example.com/app")
    assert redact("server said p@ssw0rd-x") == f"server said {MASK}"


# -- logging --------------------------------------------------------------------------------


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[Capture]:
    logger = logging.getLogger(f"pgrunbook.test.redact.{secrets.token_hex(4)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = Capture()
    logger.addHandler(handler)
    install_logging_filter(logger)
    handler.logger = logger  # type: ignore[attr-defined]
    yield handler
    logger.removeHandler(handler)


def test_filter_masks_passwords_passed_as_log_arguments(captured):
    captured.logger.warning("connecting to %s as %s", "postgresql://alice:db-pw-123@h/app", "alice")
    (record,) = captured.records
    assert record.getMessage() == f"connecting to postgresql://alice:{MASK}@h/app as alice"
    assert record.args is None
    assert "db-pw-123" not in captured.lines[0]


def test_filter_masks_registered_secrets_in_the_message_itself(captured):
    secret = new_secret()
    register_secret(secret)
    captured.logger.error(f"token {secret} rejected")
    assert captured.lines == [f"ERROR token {MASK} rejected"]


def test_filter_masks_secrets_in_exception_text(captured):
    secret = new_secret()
    register_secret(secret)
    try:
        raise RuntimeError(f"login failed with {secret} for postgresql://alice:url-pw-9@h/app")
    except RuntimeError:
        captured.logger.exception("backup failed")
    (line,) = captured.lines
    assert secret not in line
    assert "url-pw-9" not in line
    assert line.startswith("ERROR backup failed\n")
    assert f"RuntimeError: login failed with {MASK} for postgresql://alice:{MASK}@h/app" in line


def test_filter_keeps_harmless_messages_intact(captured):
    captured.logger.info("copied %d files of %s", 3, "app")
    assert captured.lines == ["INFO copied 3 files of app"]
    assert captured.records[0].getMessage() == "copied 3 files of app"


def test_filter_always_lets_the_record_through():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "postgresql://a:pw-1234@h/db", None, None)
    assert RedactingFilter().filter(record) is True
    assert record.getMessage() == f"postgresql://a:{MASK}@h/db"


def test_install_logging_filter_is_idempotent(captured):
    install_logging_filter(captured.logger)
    install_logging_filter(captured.logger)
    assert sum(isinstance(f, RedactingFilter) for f in captured.filters) == 1
