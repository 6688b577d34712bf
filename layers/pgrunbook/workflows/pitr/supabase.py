"""Point-in-time recovery of a Supabase project, through the Supabase Management API.

Supabase keeps the WAL of projects that have the PITR add-on and can replay a project to any
second of its window.  It does so *in place*: the project goes down, is restored, and comes
back under the same host names and credentials, so there is no new database to switch the
application to.  The endpoints used, as the official API definition has them (the OpenAPI
document the Supabase CLI vendors; ``https://api.supabase.com``, a personal access token as
``Authorization: Bearer``; ``{ref}`` is exactly 20 lower-case letters, checked before any call):

=============================================================  =================================
``GET  /v1/projects/{ref}/database/backups``                   ``pitr_enabled`` and the window,
                                                               ``physical_backup_data``
                                                               ``{earliest,latest}_physical_backup_date_unix``
``POST /v1/projects/{ref}/database/backups/restore-point``     ``{"name": ...}`` (at most 20
                                                               characters): the safety point.
                                                               201 ``{name, status, completed_on}``
``GET  /v1/projects/{ref}/database/backups/restore-point``     ``?name=``: the point's ``status``
                                                               (PENDING, AVAILABLE, REMOVED, FAILED)
``POST /v1/projects/{ref}/database/backups/restore-pitr``      ``{"recovery_time_target_unix":
                                                               <integer seconds>}``: starts the
                                                               recovery (201, no body)
``GET  /v1/projects/{ref}``                                    ``status``: ``ACTIVE_HEALTHY``,
                                                               ``RESTORING``, ``COMING_UP``,
                                                               ``RESTORE_FAILED`` ...
=============================================================  =================================

What this module does about the API's edges:

* **The safety point.**  The two restore-point endpoints (and ``.../backups/undo``, which goes
  back to a point) are marked ``x-internal``, and have been seen answering 400 "This endpoint
  is unavailable at the moment".  A restore point is made asynchronously: it is PENDING until
  Supabase has it, then AVAILABLE.  :meth:`SupabaseProvider.safety_point` waits (at most
  :attr:`~SupabaseProvider.RESTORE_POINT_WAIT`) for AVAILABLE.  When the endpoint refuses, the
  point FAILED or was REMOVED, or it is still PENDING at the deadline, the safety point is a
  pgrunbook backup of tier ``manual`` instead (the logical provider's safety point), and the
  approval request and the final notice say so and why.  Not "the current time, recorded":
  after an in-place restore the project continues on a new timeline, and a later
  ``restore-pitr`` to a time on the old one is not something the API promises to reach.
  If the backup fails too, the recovery stops before approval (nothing changed yet).
* **Rate limits.**  120 requests per minute per user, project and endpoint, announced on
  every answer by ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (seconds until the
  window resets); a 429 carries no ``Retry-After``.  An endpoint whose ``Remaining`` reached 0
  is not called again before its reset; a 429 is waited out (its reset, up to
  :attr:`~SupabaseProvider.RATE_LIMIT_WAIT`, :attr:`~SupabaseProvider.RATE_LIMIT_RETRIES` times)
  and then is :class:`~pgrunbook.domain.errors.ProviderThrottled`, which the workflow retries.
  A 429 means the request was refused: retrying even ``restore-pitr`` is safe.
* **Starting twice.**  ``restore-pitr`` is not idempotent, and a second request while the
  first runs is at best refused.  The workflow only retries :meth:`SupabaseProvider.start`
  when the API refused outright (429); a 5xx or a lost connection on the request itself is a
  :class:`~pgrunbook.domain.errors.ProviderError` (the outcome is unknown, a person looks).
  And before it asks, ``start`` reads the project: if it is already ``RESTORING`` (an earlier
  attempt got through after all), it records that and does not ask again.  Any status other
  than ``ACTIVE_HEALTHY``, ``ACTIVE_UNHEALTHY`` (which may be why the project is being
  recovered) and ``RESTORING`` refuses the start: nothing is sent.
* **The status lags the request, and only RESTORING is restoring.**  Right after
  ``restore-pitr`` is accepted the project can still say ``ACTIVE_HEALTHY`` for a while.
  ``ACTIVE_HEALTHY`` means done only once ``RESTORING`` has been seen since the request, or
  :attr:`~SupabaseProvider.START_GRACE` after it (a small project can restore between two
  polls).  Other statuses (``COMING_UP``, ``RESTARTING``, ``UNKNOWN`` ...) are waited through
  but are not evidence of a restore.  ``ACTIVE_UNHEALTHY`` is never done: it fails the
  recovery once it has lasted :attr:`~SupabaseProvider.UNHEALTHY_LIMIT` after the restore.
  ``RESTORE_FAILED``, ``INIT_FAILED``, ``REMOVED``, ``PAUSE_FAILED`` and ``INACTIVE`` (paused)
  fail it at once.  What was seen is kept in ``state["recovery"]`` (``seen_restoring``,
  ``polls``, ``status_history``), which the workflow persists after every poll.

The token comes from the Secrets Manager secret ``PGRUNBOOK_SUPABASE_TOKEN_SECRET_ARN``
(the token as plain text, or JSON with ``access_token`` or ``token``), else from the
``SUPABASE_ACCESS_TOKEN`` variable the Supabase CLI uses.  It is registered with
:mod:`pgrunbook.domain.redact` as soon as it is read, so it never reaches a log line or an error.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any

from pgrunbook import __version__
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.domain.errors import (
    ConfigError,
    InvalidTarget,
    PgRunbookError,
    PitrNotEnabled,
    ProviderError,
    ProviderThrottled,
    ProviderUnavailable,
    RecoveryFailed,
)
from pgrunbook.domain.ids import supabase_ref_problem
from pgrunbook.domain.redact import one_line, register_secret
from pgrunbook.progress import Progress
from pgrunbook.settings.model import Settings
from pgrunbook.workflows.pitr.provider import Provider, RecoveryStatus, RecoveryWindow

TOKEN_VARIABLE = "SUPABASE_ACCESS_TOKEN"  # noqa: S105 (a variable name, not a secret)
RESTORE_POINT_NAME_LIMIT = 20  # V1RestorePointPostBody.name: maxLength 20

_PITR_WORDS = re.compile(r"\bpitr\b|point[- ]in[- ]time")
_NOT_ENABLED = re.compile(r"not (been )?enabled|isn't enabled|is disabled")

# Project statuses (V1ProjectWithDatabaseResponse.status).
STARTABLE = frozenset({"ACTIVE_HEALTHY", "ACTIVE_UNHEALTHY"})  # where a recovery may start
RESTORING = "RESTORING"  # the only evidence that a restore is under way
FAILED = frozenset({"RESTORE_FAILED", "INIT_FAILED", "REMOVED", "PAUSE_FAILED", "INACTIVE"})
HISTORY_LIMIT = 50

# Restore point statuses (V1RestorePointResponse.status).
POINT_READY = "AVAILABLE"
POINT_GONE = frozenset({"FAILED", "REMOVED"})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would resend the bearer token to the new location."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _one_line(text: str, limit: int = 300) -> str:
    line = one_line(text)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _api_message(body: bytes) -> str:
    """The API's own explanation from an error body (``{"message": ...}``), on one line."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return _one_line(text) if text else "no explanation given"
    if isinstance(data, dict):
        for key in ("message", "error", "msg", "detail"):
            value = data.get(key)
            if isinstance(value, list):  # validation errors: a list of messages
                value = "; ".join(str(v) for v in value if str(v).strip())
            if isinstance(value, str) and value.strip():
                return _one_line(value)
    return _one_line(text)


def _says_pitr_not_enabled(message: str) -> bool:
    lower = message.lower()
    return bool(_PITR_WORDS.search(lower) and _NOT_ENABLED.search(lower))


def _reset_seconds(headers: Message | None) -> int | None:
    """Seconds until the rate-limit window resets (``X-RateLimit-Reset``), if the API said."""
    value = ((headers.get("X-RateLimit-Reset") if headers is not None else None) or "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0, math.ceil(seconds)) if math.isfinite(seconds) else None


class RestorePointUnavailable(PgRunbookError):
    """The restore point could not be made or did not become AVAILABLE (internal: the safety
    point falls back to a pgrunbook backup)."""


def restore_point_name(recovery_id: str) -> str:
    """The safety point's name: ``pgrunbook-<recovery id>`` when that fits in Supabase's 20
    characters, else ``pgrunbook-`` and ten hex digits of the id's SHA-256 (the same id always
    gives the same name, so the report and the Supabase dashboard can be matched)."""
    slug = re.sub(r"[^a-z0-9]+", "-", recovery_id.lower()).strip("-")
    name = f"pgrunbook-{slug}"
    if slug and len(name) <= RESTORE_POINT_NAME_LIMIT:
        return name
    return f"pgrunbook-{hashlib.sha256(recovery_id.encode()).hexdigest()[:10]}"


def token_from_secret_string(value: str, arn: str) -> str:
    """A Supabase token secret holds the token itself, or JSON with ``access_token`` or ``token``."""
    text = value.strip()
    if text.startswith(("{", '"')):
        try:
            data = json.loads(text)
        except ValueError:
            raise ConfigError(f"secret {arn} starts like JSON but is not valid JSON") from None
        if isinstance(data, dict):
            candidate = data.get("access_token") or data.get("token")
            if not isinstance(candidate, str) or not candidate.strip():
                raise ConfigError(f"secret {arn} is a JSON object without an access_token or token string")
            return candidate.strip()
        if isinstance(data, str):
            return data.strip()
        raise ConfigError(f"secret {arn} must hold the token, or JSON with access_token or token")
    return text


def read_token_secret(arn: str, *, default_region: str | None = None) -> str:
    """The token from Secrets Manager, read in the secret's own region (from its ARN)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    parts = arn.split(":")
    region = parts[3] if len(parts) >= 7 and parts[0] == "arn" and parts[3] else default_region
    try:
        client = boto3.session.Session().client("secretsmanager", region_name=region)
        response = client.get_secret_value(SecretId=arn)
    except (ClientError, BotoCoreError) as exc:
        raise ConfigError(f"cannot read the Supabase token secret {arn}: {_one_line(str(exc))}") from None
    value = response.get("SecretString")
    if value is None and response.get("SecretBinary") is not None:
        try:
            value = bytes(response["SecretBinary"]).decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"secret {arn} is binary, not a token") from None
    token = token_from_secret_string(value or "", arn)
    register_secret(token)
    return token


class SupabaseProvider(Provider):
    """Recovery of a Supabase project in place, to any second of its PITR window.

    The recovery state (``state["recovery"]``, returned by :meth:`start` and updated by
    :meth:`status`) holds the target as Supabase received it (``recovery_time_target_unix``),
    when it was requested (``requested_at``), the project's status just before
    (``status_before``), whether the project was already restoring (``already_restoring``),
    whether ``RESTORING`` has been seen since (``seen_restoring``), since when the restored
    project has been ``ACTIVE_UNHEALTHY`` (``unhealthy_since``), the number of polls and the
    status changes seen (``status_history``).  See the module docstring for how each status
    is read.
    """

    name = "supabase"
    API_TIMEOUT_SECONDS = 30
    START_GRACE = timedelta(minutes=5)
    UNHEALTHY_LIMIT = timedelta(minutes=30)
    RESTORE_POINT_WAIT = timedelta(minutes=5)
    RESTORE_POINT_POLL_SECONDS = (1, 2, 5, 10)  # then every 10 s
    RATE_LIMIT_WAIT = 65  # seconds: the window is a minute
    RATE_LIMIT_RETRIES = 2

    def __init__(
        self,
        settings: Settings,
        *,
        progress: Progress | None = None,
        clock=None,
        sleep: Callable[[float], None] | None = None,
    ):
        super().__init__(settings, progress=progress, clock=clock)
        ref = settings.supabase_project_ref
        if not ref:
            raise ConfigError(
                "no Supabase project: set PGRUNBOOK_SUPABASE_PROJECT_REF to the project's reference "
                "(the <ref> of https://<ref>.supabase.co)"
            )
        problem = supabase_ref_problem(ref)
        if problem:
            raise ConfigError(f"PGRUNBOOK_SUPABASE_PROJECT_REF: {problem}")
        api_url = settings.supabase_api_url.rstrip("/")
        if not re.match(r"^https?://[^\s/]+$", api_url):
            raise ConfigError(f"Supabase API URL {settings.supabase_api_url!r} is not an http(s) URL")
        self.project_ref = ref
        self.api_url = api_url
        self.sleep = sleep or time.sleep
        self._token: str | None = None
        self._quiet_until: dict[str, datetime] = {}  # per endpoint: its rate-limit window is used up

    # -- the token -----------------------------------------------------------------------

    @property
    def token_source(self) -> str:
        arn = self.settings.supabase_token_secret_arn
        return f"the secret {arn}" if arn else TOKEN_VARIABLE

    def token(self) -> str:
        """The Management API token, read once per provider and registered for redaction."""
        if self._token is None:
            arn = self.settings.supabase_token_secret_arn
            if arn:
                token = read_token_secret(arn, default_region=self.settings.region)
            else:
                token = os.environ.get(TOKEN_VARIABLE, "").strip()
                register_secret(token)
            if not token:
                raise ConfigError(
                    "no Supabase access token: set PGRUNBOOK_SUPABASE_TOKEN_SECRET_ARN to a Secrets "
                    f"Manager secret holding it, or {TOKEN_VARIABLE}"
                )
            if any(c.isspace() or ord(c) < 32 for c in token):
                raise ConfigError(f"the Supabase access token in {self.token_source} is not a single token")
            self._token = token
        return self._token

    # -- HTTP ----------------------------------------------------------------------------

    def _path(self, suffix: str = "") -> str:
        return f"/v1/projects/{self.project_ref}{suffix}"

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *, what: str) -> Any:
        """One Management API call; the JSON answer, or ``{}`` for an empty one.

        ``what`` completes "could not ..." in error messages.  Rate limits are respected (see
        the module docstring); a 429 that outlasts the waits is :class:`ProviderThrottled`.
        5xx and network failures are :class:`ProviderUnavailable` on reads and
        :class:`ProviderError` on writes (whether a write took effect is then unknown);
        401/403 and 404 are :class:`ConfigError` about the token and the project; other
        refusals are :class:`ProviderError` with the API's own message.  Every error carries
        the HTTP status as ``http_status`` (None when there was no answer).
        """
        endpoint = f"{method} {path.split('?', 1)[0]}"
        for attempt in range(self.RATE_LIMIT_RETRIES + 1):
            self._wait_for_window(endpoint)
            try:
                return self._request_once(method, path, body, what=what, endpoint=endpoint)
            except ProviderThrottled as exc:
                wait = exc.retry_after  # type: ignore[attr-defined]
                if attempt == self.RATE_LIMIT_RETRIES or wait is None or wait > self.RATE_LIMIT_WAIT:
                    raise
                self.progress.step(f"Supabase rate limit on {endpoint}: waiting {wait} s for its reset")
                self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_for_window(self, endpoint: str) -> None:
        quiet_until = self._quiet_until.pop(endpoint, None)
        if quiet_until is None:
            return
        wait = (quiet_until - self.clock()).total_seconds()
        if 0 < wait <= self.RATE_LIMIT_WAIT:
            self.progress.step(
                f"Supabase rate limit on {endpoint} used up: waiting {wait:.0f} s for its reset"
            )
            self.sleep(wait)

    def _note_window(self, endpoint: str, headers: Message | None) -> None:
        remaining = ((headers.get("X-RateLimit-Remaining") if headers is not None else None) or "").strip()
        reset = _reset_seconds(headers)
        if remaining == "0" and reset:
            self._quiet_until[endpoint] = self.clock() + timedelta(seconds=reset)

    def _request_once(
        self, method: str, path: str, body: dict[str, Any] | None, *, what: str, endpoint: str
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {
            "Authorization": f"Bearer {self.token()}",
            "Accept": "application/json",
            "User-Agent": f"pgrunbook/{__version__}",
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.api_url + path, data=data, headers=headers, method=method)  # noqa: S310 (scheme checked in __init__)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            # The URL's scheme is checked in __init__ (http or https only).
            with opener.open(req, timeout=self.API_TIMEOUT_SECONDS) as response:
                raw = response.read()
                self._note_window(endpoint, response.headers)
        except urllib.error.HTTPError as exc:
            try:
                error_body = exc.read()
            except (OSError, http.client.HTTPException):
                error_body = b""
            finally:
                exc.close()
            self._note_window(endpoint, exc.headers)
            error = self._http_error(method, path, what, exc.code, exc.headers, error_body)
            error.http_status = exc.code  # type: ignore[attr-defined]
            raise error from None
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            message = f"could not {what}: {method} {path} got no answer from {self.api_url} ({_one_line(str(reason), 160)})"
            if method == "GET":
                raise ProviderUnavailable(message) from None
            raise ProviderError(
                f"{message}; whether Supabase acted on it is unknown: check the project in the "
                "Supabase dashboard before trying again"
            ) from None
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            if method == "GET":
                raise ProviderUnavailable(
                    f"could not {what}: {method} {path} answered with something that is not JSON"
                ) from None
            return {"raw": _one_line(raw.decode("utf-8", "replace"), 200)}

    def _http_error(
        self, method: str, path: str, what: str, code: int, headers: Message | None, body: bytes
    ) -> PgRunbookError:
        message = _api_message(body)
        where = f"HTTP {code} on {method} {path}"
        if code == 429:
            seconds = _reset_seconds(headers)
            hint = f"; its limit resets in {seconds} s" if seconds is not None else ""
            error: PgRunbookError = ProviderThrottled(
                f"the Supabase Management API is rate-limiting requests and did not {what} ({where}){hint}"
            )
            error.retry_after = seconds  # type: ignore[attr-defined]
            return error
        if code in (400, 403, 409, 422) and _says_pitr_not_enabled(message):
            return PitrNotEnabled(f"{self._pitr_off()} (Supabase said: {message})")
        if code == 401:
            return ConfigError(
                f"the Supabase Management API refused the access token from {self.token_source} "
                f"({where}): it is invalid, expired or revoked"
            )
        if code == 403:
            return ConfigError(
                f"the Supabase access token from {self.token_source} may not {what} ({where}: "
                f"{message}): use a token of an account with access to project {self.project_ref}"
            )
        if code == 404:
            return ConfigError(
                f"no Supabase project {self.project_ref} ({where}): check PGRUNBOOK_SUPABASE_PROJECT_REF "
                "and that the token's account can see the project"
            )
        if code >= 500 or code == 408:
            if method == "GET":
                return ProviderUnavailable(f"could not {what}: the Supabase Management API failed ({where})")
            return ProviderError(
                f"could not {what}: the Supabase Management API failed ({where}: {message}); whether "
                "Supabase acted on it is unknown: check the project in the Supabase dashboard"
            )
        if 300 <= code < 400:
            location = (headers.get("Location") if headers is not None else None) or "elsewhere"
            return ProviderError(
                f"could not {what}: {self.api_url} redirected to {_one_line(location, 120)} ({where}); "
                "check PGRUNBOOK_SUPABASE_API_URL (redirects are not followed, to keep the token)"
            )
        return ProviderError(f"Supabase refused to {what} ({where}): {message}")

    def _pitr_off(self) -> str:
        return (
            f"point-in-time recovery is not enabled for Supabase project {self.project_ref}: enable "
            "the PITR add-on (Project Settings > Add-ons) or recover from pgrunbook's own backups "
            "(PGRUNBOOK_PITR_PROVIDER=logical)"
        )

    # -- API reads -----------------------------------------------------------------------

    def backups(self) -> dict[str, Any]:
        data = self.request(
            "GET", self._path("/database/backups"), what=f"read the backups of project {self.project_ref}"
        )
        if not isinstance(data, dict):
            raise ProviderUnavailable(
                f"the backups of project {self.project_ref} came back as {type(data).__name__}"
            )
        return data

    def project_status(self) -> str:
        data = self.request("GET", self._path(), what=f"read the status of project {self.project_ref}")
        status = data.get("status") if isinstance(data, dict) else None
        if not isinstance(status, str) or not status:
            raise ProviderUnavailable(f"Supabase gave no status for project {self.project_ref}")
        return status

    # -- the provider interface ----------------------------------------------------------

    def window(self) -> RecoveryWindow:
        data = self.backups()
        if not data.get("pitr_enabled"):
            raise PitrNotEnabled(self._pitr_off())
        physical = data.get("physical_backup_data") or {}
        earliest = physical.get("earliest_physical_backup_date_unix") if isinstance(physical, dict) else None
        latest = physical.get("latest_physical_backup_date_unix") if isinstance(physical, dict) else None
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in (earliest, latest)
        ):
            raise PitrNotEnabled(
                f"Supabase project {self.project_ref} has point-in-time recovery enabled but no recovery "
                "window yet (physical_backup_data is empty): its first physical backup has not completed; "
                "try again later or recover from pgrunbook's own backups (PGRUNBOOK_PITR_PROVIDER=logical)"
            )
        start, end = datetime.fromtimestamp(earliest, UTC), datetime.fromtimestamp(latest, UTC)  # type: ignore[arg-type]
        if start > end:
            raise ProviderError(
                f"Supabase reports an impossible recovery window for project {self.project_ref}: "
                f"{start.isoformat()} is after {end.isoformat()}"
            )
        return RecoveryWindow(
            start,
            end,
            note=(
                f"Supabase PITR restores project {self.project_ref} in place, to the second; the project "
                "is unavailable while it restores"
            ),
        )

    def safety_point(self, state: dict[str, Any]) -> dict[str, Any]:
        """A named restore point in the project's WAL, taken before anything changes, once
        Supabase reports it AVAILABLE: ``POST .../database/backups/undo {"name": ...}`` brings
        the project back to it.  Failing that, a pgrunbook backup of tier ``manual`` (see the
        module docstring); ``fallback_reason`` then says why."""
        name = restore_point_name(str(state["recovery_id"]))
        try:
            return self._restore_point(name)
        except RestorePointUnavailable as exc:
            reason = str(exc)
        self.progress.step(f"{reason}: taking a pgrunbook backup (tier manual) as the safety point instead")
        try:
            point = self.backup_safety_point()
        except PgRunbookError as exc:
            raise ProviderError(
                f"no safety point, so the recovery does not go ahead (nothing was changed): {reason}, "
                f"and the pgrunbook backup that would have replaced it could not be taken: {one_line(str(exc))}"
            ) from None
        point.update(
            fallback_reason=reason,
            restore_point=name,
            summary=(
                f"pgrunbook backup {point['backup_id']} (tier manual, snapshot {point['snapshot_time']}), "
                f"not a Supabase restore point: {reason}; to go back, restore that backup "
                "(PGRUNBOOK_PITR_PROVIDER=logical recovers it into a new database)"
            ),
        )
        return point

    def _restore_point(self, name: str) -> dict[str, Any]:
        """Create the restore point and wait for AVAILABLE; RestorePointUnavailable when the
        endpoint refuses, the point fails or is removed, or it is still PENDING at the deadline.
        An unusable token (401, 403) or a rate limit that outlasts the waits are raised as they
        are: a backup would not change those."""
        self.progress.step(f"creating Supabase restore point {name} on project {self.project_ref}")
        created_at = self.clock()
        deadline = created_at + self.RESTORE_POINT_WAIT
        path = self._path("/database/backups/restore-point")
        answer = self._restore_point_call(
            "POST", path, {"name": name}, what=f"create the restore point {name}"
        )
        polls = 0
        while True:
            status = answer.get("status") if isinstance(answer, dict) else None
            if status == POINT_READY:
                completed = answer.get("completed_on")
                return {
                    "kind": "supabase restore point",
                    "project_ref": self.project_ref,
                    "name": name,
                    "created_at": created_at.isoformat(),
                    "status": status,
                    "completed_on": completed,
                    "polls": polls,
                    "summary": (
                        f"Supabase restore point {name} of project {self.project_ref} (AVAILABLE"
                        + (f", completed {completed}" if completed else "")
                        + f"); to go back: POST /v1/projects/{self.project_ref}/database/backups/undo "
                        f'{{"name": "{name}"}}'
                    ),
                }
            if status in POINT_GONE:
                raise RestorePointUnavailable(f"Supabase restore point {name} is {status}")
            if status != "PENDING":
                raise RestorePointUnavailable(
                    f"Supabase answered the restore point {name} with status {status!r}, not PENDING or AVAILABLE"
                )
            now = self.clock()
            if now >= deadline:
                raise RestorePointUnavailable(
                    f"Supabase restore point {name} was still PENDING "
                    f"{(now - created_at).total_seconds():.0f} s after it was requested"
                )
            steps = self.RESTORE_POINT_POLL_SECONDS
            pause = min(steps[min(polls, len(steps) - 1)], (deadline - now).total_seconds())
            self.progress.step(f"restore point {name} is PENDING: checking again in {pause:.0f} s")
            self.sleep(pause)
            polls += 1
            try:
                answer = self._restore_point_call(
                    "GET",
                    f"{path}?{urllib.parse.urlencode({'name': name})}",
                    None,
                    what=f"read the restore point {name}",
                )
            except ProviderUnavailable:  # a failed read: the point may still come; ask again
                answer = {"status": "PENDING"}

    def _restore_point_call(self, method: str, path: str, body: dict[str, Any] | None, *, what: str) -> Any:
        try:
            return self.request(method, path, body, what=what)
        except ProviderThrottled:
            raise
        except ProviderUnavailable:
            if method == "GET":
                raise
            raise RestorePointUnavailable(f"could not {what}: the Supabase Management API failed") from None
        except PgRunbookError as exc:
            if getattr(exc, "http_status", None) in (401, 403):
                raise
            # an x-internal endpoint: 400 "unavailable at the moment", 404, 5xx, no answer
            raise RestorePointUnavailable(one_line(str(exc))) from None

    def start(self, state: dict[str, Any]) -> dict[str, Any]:
        """Ask Supabase to restore the project to ``state["target_time"]``.

        Reads first, then writes once.  The project must be ``ACTIVE_HEALTHY`` (or
        ``ACTIVE_UNHEALTHY``, which may be why it is being recovered); if it is already
        ``RESTORING``, an earlier attempt got through and no second request is sent.  The target
        is checked again against the window, which may have moved on while approval was
        pending.  Everything raised before the request itself (:class:`InvalidTarget`,
        :class:`ProviderUnavailable`, :class:`ProviderThrottled` from the reads) means nothing
        was started.
        """
        target = self._target(state)
        unix = int(target.timestamp())  # whole seconds, rounded down: never past the target
        before = self.project_status()
        recovery: dict[str, Any] = {
            "provider": self.name,
            "project_ref": self.project_ref,
            "target_time": target.isoformat(),
            "recovery_time_target_unix": unix,
            "status_before": before,
            "polls": 0,
            "status_history": [],
        }
        if before == "RESTORING":
            now = self.clock()
            self.progress.step(
                f"Supabase project {self.project_ref} is already RESTORING: not requesting another restore"
            )
            recovery.update(
                requested_at=now.isoformat(),
                already_restoring=True,
                seen_restoring=True,
                status_history=[{"status": before, "at": now.isoformat()}],
                note=(
                    "the project was already restoring when this step ran (an earlier attempt got "
                    "through): no second restore-pitr request was sent"
                ),
            )
            return recovery
        if before not in STARTABLE:
            raise ProviderError(
                f"Supabase project {self.project_ref} is {before}: a point-in-time recovery starts only "
                "from ACTIVE_HEALTHY (or ACTIVE_UNHEALTHY); nothing was started"
            )
        window = self.window()
        if not window.earliest <= datetime.fromtimestamp(unix, UTC) <= window.latest:
            raise InvalidTarget(
                f"target {target.isoformat()} is outside the recovery window of Supabase project "
                f"{self.project_ref} ({window.earliest.isoformat()} to {window.latest.isoformat()})"
            )
        self.progress.step(
            f"asking Supabase to restore project {self.project_ref} to {target.isoformat()} (unix {unix})"
        )
        requested_at = self.clock()
        response = self.request(
            "POST",
            self._path("/database/backups/restore-pitr"),
            {"recovery_time_target_unix": unix},
            what=f"start the point-in-time recovery of project {self.project_ref}",
        )
        recovery.update(
            requested_at=requested_at.isoformat(),
            already_restoring=False,
            seen_restoring=False,
            response=response,
        )
        return recovery

    def status(self, state: dict[str, Any]) -> RecoveryStatus:
        """Poll the project; see the module docstring for how each status is read."""
        recovery = state["recovery"]
        current = self.project_status()
        now = self.clock()
        recovery["polls"] = int(recovery.get("polls", 0)) + 1
        recovery["last_status"] = current
        recovery["last_polled_at"] = now.isoformat()
        history = recovery.setdefault("status_history", [])
        if not history or history[-1].get("status") != current:
            history.append({"status": current, "at": now.isoformat()})
            del history[:-HISTORY_LIMIT]
        target = recovery.get("target_time", state.get("target_time"))
        if current in FAILED:
            raise RecoveryFailed(
                f"Supabase project {self.project_ref} is {current}: the point-in-time recovery to "
                f"{target} failed; see the project in the Supabase dashboard and contact Supabase support"
            )
        if current == RESTORING:
            recovery["seen_restoring"] = True
        if current != "ACTIVE_UNHEALTHY":
            recovery.pop("unhealthy_since", None)

        def waiting(detail: str) -> RecoveryStatus:
            return RecoveryStatus(done=False, failed=False, status=current, detail=detail)

        if current == "ACTIVE_UNHEALTHY":
            if not recovery.get("seen_restoring"):
                return waiting(
                    f"project {self.project_ref} is ACTIVE_UNHEALTHY and has not been seen restoring"
                )
            since = datetime.fromisoformat(recovery.setdefault("unhealthy_since", now.isoformat()))
            if now - since >= self.UNHEALTHY_LIMIT:
                raise RecoveryFailed(
                    f"Supabase project {self.project_ref} came back from the recovery to {target} "
                    f"ACTIVE_UNHEALTHY and is still so after {int((now - since).total_seconds() // 60)} min: "
                    "not a recovered database; see the project in the Supabase dashboard"
                )
            return waiting(f"project {self.project_ref} is up after restoring but ACTIVE_UNHEALTHY")
        if current != "ACTIVE_HEALTHY":
            return waiting(f"project {self.project_ref} is {current}")
        if recovery.get("seen_restoring"):
            recovery["done_by"] = "status"
            return RecoveryStatus(
                done=True,
                failed=False,
                status=current,
                detail=f"project {self.project_ref} is back to ACTIVE_HEALTHY after restoring",
            )
        requested = recovery.get("requested_at")
        since_request = now - datetime.fromisoformat(requested) if requested else self.START_GRACE
        seen = sorted({h["status"] for h in history} - {"ACTIVE_HEALTHY"})
        if since_request >= self.START_GRACE:
            recovery["done_by"] = "grace period"
            return RecoveryStatus(
                done=True,
                failed=False,
                status=current,
                detail=(
                    f"project {self.project_ref} is ACTIVE_HEALTHY {int(since_request.total_seconds())} s after "
                    "the request and was never seen RESTORING"
                    + (f" (seen: {', '.join(seen)})" if seen else "")
                    + " (a quick restore between polls, or none at all): verification decides"
                ),
            )
        return waiting(
            f"project {self.project_ref} still reports ACTIVE_HEALTHY {int(since_request.total_seconds())} s "
            "after the request: waiting for the restore to show"
        )

    def endpoint(self, state: dict[str, Any]) -> ConnInfo:
        """The project's own database: Supabase restores in place."""
        return self.settings.conninfo()

    def recovery_point(self, state: dict[str, Any]) -> datetime:
        """The second Supabase was asked for (the target, rounded down to whole seconds)."""
        unix = (state.get("recovery") or {}).get("recovery_time_target_unix")
        if isinstance(unix, int):
            return datetime.fromtimestamp(unix, UTC)
        return super().recovery_point(state)

    def cutover(self, state: dict[str, Any]) -> dict[str, Any]:
        return {
            "note": f"Supabase restored project {self.project_ref} in place: nothing to switch",
            "project_ref": self.project_ref,
        }

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _target(state: dict[str, Any]) -> datetime:
        raw = state.get("target_time")
        try:
            target = datetime.fromisoformat(str(raw))
        except ValueError:
            raise InvalidTarget(f"target time {raw!r} is not an ISO 8601 time") from None
        if target.tzinfo is None or target.utcoffset() is None:
            raise InvalidTarget(f"target time {raw!r} has no UTC offset: write it as ...Z or ...+02:00")
        return target
