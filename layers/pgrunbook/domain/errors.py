"""Named exceptions.

Every failure a job can meet has a type, so that the CLI can map it to an exit status and
Step Functions ``Retry``/``Catch`` clauses can match it by name.  Messages are one line and
never contain secrets (they pass through :func:`pgrunbook.domain.redact.redact` before anyone sees
them).

Exit status contract: 2 = bad input or configuration (nothing was changed),
1 = the job ran and found a problem, 0 = all good.
"""


class PgRunbookError(Exception):
    """Base class.  ``exit_code`` is what the CLI returns for it."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # one line, always
        return " ".join(self.message.split())


# -- bad input or configuration: exit 2, nothing changed ------------------------------------


class ConfigError(PgRunbookError):
    """Configuration is missing or malformed (URL, bucket, region, flag values)."""

    exit_code = 2


class DatabaseUnreachable(ConfigError):
    """The database could not be reached or refused the login."""


class BucketUnavailable(ConfigError):
    """An S3 bucket does not exist or cannot be accessed."""


class BackupNotFound(ConfigError):
    """No backup has the requested id (or there is no backup at all)."""


class ToolVersionError(ConfigError):
    """pg_dump / pg_restore are missing or older than the server they talk to."""


# -- the job ran and found a problem: exit 1 ------------------------------------------------


class BackupFailed(PgRunbookError):
    """A backup could not be completed; it left no manifest and is not restorable."""


class TransientStorageError(BackupFailed):
    """S3 failed in a way that is safe to retry (throttling, 5xx, connection reset)."""


class ChecksumMismatch(PgRunbookError):
    """A backup file's content does not match the manifest: the backup is corrupt."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


class BackupIncomplete(PgRunbookError):
    """A backup exists only partially (files without a manifest, or files missing)."""


class RestoreFailed(PgRunbookError):
    """pg_restore or the scratch database set-up failed."""


# -- point-in-time recovery (names matched by the state machine's Retry and Catch) -----------


class InvalidTarget(ConfigError):
    """The recovery target time is malformed, in the future or outside the provider's window."""


class PitrNotEnabled(ConfigError):
    """The provider cannot do point-in-time recovery for this database (e.g. Supabase PITR off)."""


class ProviderThrottled(PgRunbookError):
    """The provider's API refused the request for now (HTTP 429): safe to retry, nothing started."""


class ProviderUnavailable(PgRunbookError):
    """A read from the provider (window, status) failed transiently (5xx, network): safe to retry."""


class ProviderError(PgRunbookError):
    """The provider failed or refused a request; whether anything started is unknown."""


class RecoveryFailed(PgRunbookError):
    """The provider reports that the recovery itself failed (e.g. RESTORE_FAILED)."""


class RecoveryTimedOut(PgRunbookError):
    """The recovery did not finish before the workflow's deadline."""


class VerificationFailed(PgRunbookError):
    """The recovered database does not pass its checks: it must not be put into service."""
