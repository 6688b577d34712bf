"""Ids that sort by time, and the clock (pure functions, no I/O).

Backup ids, report ids, recovery and migration ids all start with the UTC time they were made
(``20261121T020000.123Z``) followed by a random suffix, so that a listing in S3 is also a
history in time order.  :func:`utcnow` is pgrunbook's one default clock: everything that needs
the time takes a :data:`Clock`, so tests can pass another.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from pgrunbook.domain.errors import ConfigError

Clock = Callable[[], datetime]
_BACKUP_ID = re.compile(r"^(\d{8}T\d{6}\.\d{3}Z)-([0-9a-f]{6})$")
_STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"


def utcnow() -> datetime:
    return datetime.now(UTC)


def time_stamp(when: datetime) -> str:
    """``20261121T020000.123Z``: the sortable time part of backup and report ids."""
    when = when.astimezone(UTC)
    return when.strftime("%Y%m%dT%H%M%S") + f".{when.microsecond // 1000:03d}Z"


def parse_time_stamp(text: str) -> datetime:
    """The time of a :func:`time_stamp` (raises ValueError when it is not one)."""
    return datetime.strptime(text, _STAMP_FORMAT).replace(tzinfo=UTC)


def new_backup_id(now: datetime) -> str:
    """A backup id that sorts by start time: ``20261121T020000.123Z-3fa9c1``."""
    return f"{time_stamp(now)}-{secrets.token_hex(3)}"


# Report, recovery and migration ids have the backup id's form.
new_report_id = new_backup_id


def is_backup_id(text: str) -> bool:
    try:
        backup_time(text)
    except ConfigError:
        return False
    return True


def backup_time(backup_id: str) -> datetime:
    match = _BACKUP_ID.fullmatch(backup_id)
    try:
        if match:
            return parse_time_stamp(match.group(1))
    except ValueError:
        pass
    raise ConfigError(f"{backup_id!r} is not a pgrunbook backup id (like 20261121T020000.123Z-3fa9c1)")


# A Supabase project's reference, as the Management API defines it (the ``ref`` path parameter
# of every /v1/projects/{ref} endpoint): exactly 20 lower-case letters.
SUPABASE_PROJECT_REF = re.compile(r"[a-z]{20}")


def supabase_ref_problem(value: str) -> str | None:
    """Why ``value`` is not a Supabase project reference, or None if it is one."""
    if SUPABASE_PROJECT_REF.fullmatch(value):
        return None
    return (
        f"{value!r} is not a Supabase project reference (exactly 20 lower-case letters, the <ref> "
        "of https://<ref>.supabase.co)"
    )
