"""What every use of the RDS API in pgrunbook shares: naming and tagging resources the way
RDS allows, and reading its error codes (the point-in-time-recovery provider, the throwaway
restore targets)."""

from __future__ import annotations

import hashlib
import re

from botocore.exceptions import ClientError

from pgrunbook.domain.redact import one_line

MAX_IDENTIFIER = 63  # DB instance, DB cluster and (as pgrunbook names them) snapshot identifiers

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
    }
)
SERVER_ERROR_CODES = frozenset(
    {"InternalFailure", "InternalError", "ServiceUnavailable", "InternalServerError"}
)
INSTANCE_EXISTS = ("DBInstanceAlreadyExists", "DBInstanceAlreadyExistsFault")
INSTANCE_MISSING = ("DBInstanceNotFound", "DBInstanceNotFoundFault")


def identifier_part(text: str) -> str:
    """Lower-case letters, digits and single hyphens: what RDS identifiers allow."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", text.lower())).strip("-")


def rds_identifier(base: str, suffix: str, limit: int = MAX_IDENTIFIER) -> str:
    """``<base>-<suffix>`` as a valid RDS identifier of at most ``limit`` characters: it
    starts with a letter, has no double or trailing hyphen.  The base (the source's name) is
    shortened when needed, never the suffix, which is what makes the name unique."""
    suffix = identifier_part(suffix)
    if len(suffix) > 32:  # a long recovery id: keep it recognizable and unique
        digest = hashlib.sha256(suffix.encode()).hexdigest()[:8]
        suffix = f"{suffix[:23].rstrip('-')}-{digest}"
    base = identifier_part(base) or "db"
    if not base[0].isalpha():
        base = f"db-{base}"
    base = base[: max(1, limit - len(suffix) - 1)].rstrip("-")
    return f"{base}-{suffix}" if suffix else base


def tag_value(text: str) -> str:
    """Tag values allow letters, digits, spaces and ``_.:/=+-@``; at most 256 characters."""
    return re.sub(r"[^\w .:/=+\-@]", "-", str(text))[:256]


def tags_of(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in items or []}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def describe_error(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return one_line(f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip().rstrip(":"))
