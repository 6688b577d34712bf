"""Errors by cause.

Every failure pgrunbook can meet has a named type, and each type belongs to one *cause*; the
cause, not the place where the error happened, decides what the operator is told and which
exit status a command ends with.  :func:`status_for` is the one place that maps a cause to a
report status, and :func:`pgrunbook.domain.status.exit_code` the one place that maps a status
to an exit code:

================  ==========================================================  ========  ====
cause             meaning                                                     status    exit
================  ==========================================================  ========  ====
``ConfigError``   bad configuration or input; raised only before anything     refused   2
                  is written
``Unreachable``   a database or bucket could not be reached when the run      refused   2
                  started
``ConnectionLost`` a connection dropped in the middle of a run: a problem      critical  1
                  found, the report is stored and published
``Transient``     safe to retry (throttling, a 5xx, a reset connection);      critical  1
                  retried by the workflows, reported when retries run out
``IntegrityError`` stored data does not match its evidence (checksums,         critical  1
                  manifests)
``OperationFailed`` the operation ran and could not complete                   critical  1
================  ==========================================================  ========  ====

Step Functions ``Retry``/``Catch`` clauses match an error by the name of the exception class
the function raised, so retry rules are written with classes
(:class:`pgrunbook.workflows.engine.Retry`) and turned into the names of each class and its
subclasses (:func:`error_names`) for the state machine.  Messages are one line and never
contain secrets (they pass through :func:`pgrunbook.domain.redact.redact` before anyone sees
them).
"""

from __future__ import annotations

from collections.abc import Iterable

from pgrunbook.domain.status import exit_code


class PgRunbookError(Exception):
    """Base class of every error pgrunbook raises on purpose."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # one line, always
        return " ".join(self.message.split())

    @property
    def exit_code(self) -> int:
        """The exit status a command ends with when this error stops it."""
        return exit_code(status_for(self))


# -- causes ---------------------------------------------------------------------------------


class ConfigError(PgRunbookError):
    """Bad configuration or input (a URL, a bucket, a flag or event value): nothing was changed."""


class DiskTooSmall(ConfigError):
    """The machine's local disk cannot hold the run (found before anything was downloaded).
    Deployed, the dispatch catches it by name and runs the operation on Fargate instead."""


class Unreachable(PgRunbookError):
    """A database or bucket could not be reached (or refused the login) when the run started."""


class ConnectionLost(PgRunbookError):
    """A connection dropped in the middle of a run: a problem found, not bad configuration."""


class Transient(PgRunbookError):
    """A failure that is safe to retry: nothing happened, or what happened is idempotent."""


class IntegrityError(PgRunbookError):
    """Stored data does not match the evidence it carries."""


class OperationFailed(PgRunbookError):
    """The operation ran and could not complete."""


CAUSES: tuple[type[PgRunbookError], ...] = (
    ConfigError,
    Unreachable,
    ConnectionLost,
    Transient,
    IntegrityError,
    OperationFailed,
)


def status_for(error: BaseException) -> str:
    """The report status of a run that ended with ``error``: ``refused`` (exit 2, nothing was
    changed) for bad input and what was unreachable at the start, ``critical`` otherwise."""
    return "refused" if isinstance(error, ConfigError | Unreachable) else "critical"


def error_names(classes: Iterable[type[BaseException]]) -> list[str]:
    """The names Step Functions matches for ``classes``: each class and all its subclasses
    (a Lambda's ``errorType`` is the exact class name it raised), sorted."""
    names: set[str] = set()
    pending = list(classes)
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return sorted(names)


# -- bad input or configuration --------------------------------------------------------------


class BackupNotFound(ConfigError):
    """No backup has the requested id (or there is no backup at all)."""


class ToolVersionError(ConfigError):
    """pg_dump / pg_restore are missing or older than the server they talk to."""


class InvalidTarget(ConfigError):
    """The recovery target time is malformed, in the future or outside the provider's window."""


class PitrNotEnabled(ConfigError):
    """The provider cannot do point-in-time recovery for this database (e.g. Supabase PITR off)."""


# -- unreachable at the start ------------------------------------------------------------------


class DatabaseUnreachable(Unreachable):
    """The database could not be reached or refused the login."""


class BucketUnavailable(Unreachable):
    """An S3 bucket does not exist or cannot be accessed."""


# -- safe to retry -----------------------------------------------------------------------------


class TransientStorageError(Transient):
    """S3 (or SSM) failed in a way that is safe to retry (throttling, 5xx, connection reset)."""


class TransientNotifyError(Transient):
    """SNS refused or could not be reached."""


class ProviderThrottled(Transient):
    """The provider's API refused the request for now (HTTP 429): safe to retry, nothing started."""


class ProviderUnavailable(Transient):
    """A read from the provider (window, status) failed transiently (5xx, network): safe to retry."""


class ExecutionError(Transient):
    """Talking to Step Functions failed."""


# -- the data does not match its evidence ------------------------------------------------------


class ChecksumMismatch(IntegrityError):
    """A backup file's content does not match the manifest: the backup is corrupt."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


class BackupIncomplete(IntegrityError):
    """A backup exists only partially (files without a manifest, or files missing)."""


# -- the operation could not complete ----------------------------------------------------------


class BackupFailed(OperationFailed):
    """A backup could not be completed; it left no manifest and is not restorable."""


class RestoreFailed(OperationFailed):
    """pg_restore or the scratch database set-up failed."""


class SqlError(OperationFailed):
    """A statement failed.  ``code`` is the SQLSTATE."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


class WorkDirectoryError(OperationFailed):
    """The work directory could not hold what the run had to write there (full, or read-only)."""


class DeletionRefused(OperationFailed):
    """S3 answered a deletion with per-object errors (a bucket policy, an Object Lock)."""


class ProviderError(OperationFailed):
    """The provider failed or refused a request; whether anything started is unknown."""


class RecoveryFailed(OperationFailed):
    """The provider reports that the recovery itself failed (e.g. RESTORE_FAILED)."""


class RecoveryTimedOut(OperationFailed):
    """The recovery did not finish before the workflow's deadline."""


class VerificationFailed(OperationFailed):
    """The recovered database does not pass its checks: it must not be put into service."""


class MigrationError(OperationFailed):
    """A migration could not be applied or rolled back."""
