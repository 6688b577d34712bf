"""Keeping secrets out of output, logs and exceptions.

Passwords are registered here when a connection string or secret is parsed; every message
that leaves pgrunbook (CLI output, log records, exception text) passes through
:func:`redact`.  Connection strings are additionally shown through
:meth:`pgrunbook.adapters.postgres.dburl.ConnInfo.display`, which never includes the password.
"""

from __future__ import annotations

import logging
import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)")
MASK = "********"


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` masks it wherever it appears."""
    if value and len(value) >= 3:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Mask registered secrets and any password embedded in a postgres URL."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + (MASK if m.group(2) else "") + m.group(3), text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def one_line(text: object) -> str:
    """``text`` as one line, secrets masked: how every message pgrunbook shows is written."""
    return redact(" ".join(str(text).split()))


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.exc_text = redact(f"{type(exc).__name__}: {exc}")
            record.exc_info = None
        return True


def install_logging_filter(logger: logging.Logger | None = None) -> None:
    """Attach the redacting filter to the handlers of ``logger`` (root by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
