"""Point-in-time recovery of a Supabase project, through the Supabase Management API.

Supabase keeps the WAL of projects that have the PITR add-on and can replay a project to any
second of its window.  It does so *in place*: the project goes down, is restored, and comes
back under the same host names and credentials, so there is no new database to switch the
application to.  Everything goes through four documented endpoints of the Management API
(``https://api.supabase.com``, a personal access token as ``Authorization: Bearer``):

=======================================================  =================================
``GET  /v1/projects/{ref}/database/backups``             ``pitr_enabled`` and the window,
                                                         ``physical_backup_data``
                                                         ``{earliest,latest}_physical_backup_date_unix``
``POST /v1/projects/{ref}/database/backups/restore-point``  ``{"name": ...}`` (at most 20
                                                         characters): the safety point, a
                                                         named point in the WAL that
                                                         ``.../backups/undo`` can return to
``POST /v1/projects/{ref}/database/backups/restore-pitr``   ``{"recovery_time_target_unix":
                                                         <integer seconds>}``: starts the
                                                         recovery (201, no body)
``GET  /v1/projects/{ref}``                              ``status``: ``ACTIVE_HEALTHY``,
                                                         ``RESTORING``, ``COMING_UP``,
                                                         ``RESTORE_FAILED`` ...
=======================================================  =================================

Two things make a restore through this API delicate, and this module handles both:

* **Starting twice.**  ``restore-pitr`` is not idempotent, and a second request while the
  first runs is at best refused.  The workflow only retries :meth:`SupabaseProvider.start`
  when the API refused outright (HTTP 429, :class:`~pgrunbook.domain.errors.ProviderThrottled`);
  a 5xx or a lost connection on the request itself is a :class:`~pgrunbook.domain.errors.ProviderError`
  (the outcome is unknown, a person looks).  And before it asks, ``start`` reads the project:
  if it is already ``RESTORING`` (an earlier attempt got through after all), it records that
  and does not ask again.
* **The status lags the request.**  Right after ``restore-pitr`` is accepted the project can
  still say ``ACTIVE_HEALTHY`` for a while before it switches to ``RESTORING``.  Taken at its
  word, that first poll would declare the recovery done before it began, and verification
  would then pass judgement on the damaged database.  So ``ACTIVE_HEALTHY`` only means done
  once the project has been seen in another state since the request, or once
  :attr:`SupabaseProvider.START_GRACE` has passed since it (a small project can go down and
  come back between two polls).  What was seen is kept in ``state["recovery"]``
  (``seen_restoring``, ``polls``, ``status_history``), which the workflow persists after
  every poll.

The token comes from the Secrets Manager secret ``PGRUNBOOK_SUPABASE_TOKEN_SECRET_ARN``
(the token as plain text, or JSON with ``access_token`` or ``token``), else from the
``SUPABASE_ACCESS_TOKEN`` variable the Supabase CLI uses.  It is registered with
:mod:`pgrunbook.domain.redact` as soon as it is read, so it never reaches a log line or an error.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
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
from pgrunbook.domain.redact import one_line, register_secret
from pgrunbook.progress import Progress
from pgrunbook.settings.model import Settings
from pgrunbook.workflows.pitr.provider import Provider, RecoveryStatus, RecoveryWindow

TOKEN_VARIABLE = "SUPABASE_ACCESS_TOKEN"  # noqa: S105 (a variable name, not a secret)
RESTORE_POINT_NAME_LIMIT = 20  # V1RestorePointPostBody.name: maxLength 20

_PROJECT_REF = re.compile(r"[a-z0-9]{8,40}")
_PITR_WORDS = re.compile(r"\bpitr\b|point[- ]in[- ]time")
_NOT_ENABLED = re.compile(r"not (been )?enabled|isn't enabled|is disabled")

# Project statuses (V1ProjectResponse.status).  Healthy ones are where a recovery starts and
# ends; failed ones end it; anything else (RESTORING, COMING_UP, RESTARTING ...) is the
# project on its way through a restore.
HEALTHY = frozenset({"ACTIVE_HEALTHY", "ACTIVE_UNHEALTHY"})
FAILED = frozenset({"RESTORE_FAILED", "INIT_FAILED", "REMOVED"})
HISTORY_LIMIT = 50


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
            if isinstance(value, str) and value.strip():
                return _one_line(value)
    return _one_line(text)


def _says_pitr_not_enabled(message: str) -> bool:
    lower = message.lower()
    return bool(_PITR_WORDS.search(lower) and _NOT_ENABLED.search(lower))


def _retry_after(headers: Message | None) -> tuple[str, int | None]:
    """``("; retry after 30 s", 30)`` from a Retry-After header (seconds or an HTTP date)."""
    value = (headers.get("Retry-After") if headers is not None else None) or ""
    value = value.strip()
    if value.isdigit():
        return f"; retry after {int(value)} s", int(value)
    if value:
        return f"; retry after {_one_line(value, 60)}", None
    return "", None


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
    whether a restore has been seen under way since (``seen_restoring``), the number of polls
    and the status changes seen (``status_history``).

    ``ACTIVE_HEALTHY`` after the request is "done" only once another status has been seen
    since it, or :attr:`START_GRACE` after it: Supabase may report the old, healthy project for
    a little while after accepting the request.
    """

    name = "supabase"
    API_TIMEOUT_SECONDS = 30
    START_GRACE = timedelta(minutes=5)

    def __init__(
        self,
        settings: Settings,
        *,
        progress: Progress | None = None,
        clock=None,
    ):
        super().__init__(settings, progress=progress, clock=clock)
        ref = settings.supabase_project_ref
        if not ref:
            raise ConfigError(
                "no Supabase project: set PGRUNBOOK_SUPABASE_PROJECT_REF to the project's reference "
                "(the <ref> of https://<ref>.supabase.co)"
            )
        if not _PROJECT_REF.fullmatch(ref):
            raise ConfigError(f"Supabase project ref {ref!r} is not a project reference")
        api_url = settings.supabase_api_url.rstrip("/")
        if not re.match(r"^https?://[^\s/]+$", api_url):
            raise ConfigError(f"Supabase API URL {settings.supabase_api_url!r} is not an http(s) URL")
        self.project_ref = ref
        self.api_url = api_url
        self._token: str | None = None

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

        ``what`` completes "could not ..." in error messages.  Errors: 429 is
        :class:`ProviderThrottled`; 5xx and network failures are :class:`ProviderUnavailable`
        on reads and :class:`ProviderError` on writes (whether a write took effect is then
        unknown); 401/403 and 404 are :class:`ConfigError` about the token and the project;
        other refusals are :class:`ProviderError` with the API's own message.
        """
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
        except urllib.error.HTTPError as exc:
            try:
                error_body = exc.read()
            except (OSError, http.client.HTTPException):
                error_body = b""
            finally:
                exc.close()
            raise self._http_error(method, path, what, exc.code, exc.headers, error_body) from None
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
            hint, seconds = _retry_after(headers)
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
        """A named restore point in the project's WAL, taken before anything changes: if the
        recovery goes to the wrong time, ``POST .../database/backups/undo {"name": ...}``
        (or a recovery to :attr:`created_at`) brings the project back to this moment."""
        name = restore_point_name(str(state["recovery_id"]))
        self.progress.step(f"creating Supabase restore point {name} on project {self.project_ref}")
        created_at = self.clock()
        response = self.request(
            "POST",
            self._path("/database/backups/restore-point"),
            {"name": name},
            what=f"create the restore point {name}",
        )
        status = response.get("status") if isinstance(response, dict) else None
        if status == "FAILED":
            raise ProviderError(
                f"Supabase could not create the restore point {name} on project {self.project_ref} "
                "(status FAILED): there is no safety point, so the recovery does not go ahead"
            )
        return {
            "kind": "supabase restore point",
            "project_ref": self.project_ref,
            "name": name,
            "created_at": created_at.isoformat(),
            "status": status,
            "response": response,
        }

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
        if before not in HEALTHY:
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
        """Poll the project; see the class docstring for when ``ACTIVE_HEALTHY`` means done."""
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
        if current in FAILED:
            raise RecoveryFailed(
                f"Supabase project {self.project_ref} is {current}: the point-in-time recovery to "
                f"{recovery.get('target_time', state.get('target_time'))} failed; see the project in the "
                "Supabase dashboard and contact Supabase support"
            )
        if current not in HEALTHY:
            recovery["seen_restoring"] = True
            return RecoveryStatus(
                done=False, failed=False, status=current, detail=f"project {self.project_ref} is {current}"
            )
        if current == "ACTIVE_UNHEALTHY":
            return RecoveryStatus(
                done=False,
                failed=False,
                status=current,
                detail=f"project {self.project_ref} is up but not healthy yet",
            )
        if recovery.get("seen_restoring"):
            recovery["done_by"] = "status"
            return RecoveryStatus(
                done=True,
                failed=False,
                status=current,
                detail=f"project {self.project_ref} is back to ACTIVE_HEALTHY after restoring",
            )
        requested = recovery.get("requested_at")
        since = now - datetime.fromisoformat(requested) if requested else self.START_GRACE
        if since >= self.START_GRACE:
            recovery["done_by"] = "grace period"
            return RecoveryStatus(
                done=True,
                failed=False,
                status=current,
                detail=(
                    f"project {self.project_ref} is ACTIVE_HEALTHY {int(since.total_seconds())} s after the "
                    "request and was never seen restoring (a quick restore between polls, or none at all): "
                    "verification decides"
                ),
            )
        return RecoveryStatus(
            done=False,
            failed=False,
            status=current,
            detail=(
                f"project {self.project_ref} still reports ACTIVE_HEALTHY {int(since.total_seconds())} s "
                "after the request: waiting for the restore to show"
            ),
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
