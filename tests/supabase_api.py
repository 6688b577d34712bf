"""A local server that behaves like the Supabase Management API endpoints pgrunbook uses.

What it does is what the official API definition says (the OpenAPI document the Supabase CLI
vendors, ``packages/api/src/generated/openapi.json`` in supabase/cli) and what the API has
been seen doing, so that a test fails when the client is wrong:

* ``{ref}`` must be exactly 20 lower-case letters (400 otherwise), and name this project
  (404 otherwise); the bearer token must be the right one (401).
* Request bodies are validated as the definition's schemas say (``V1RestorePointPostBody``:
  ``name`` a string of at most 20 characters; ``V1RestorePitrBody``:
  ``recovery_time_target_unix`` an integer >= 0; both required, JSON only): 400 otherwise,
  with the API's list-of-messages error body.
* A restore point is made asynchronously: ``POST .../restore-point`` answers 201 with status
  PENDING and ``completed_on`` null; ``GET .../restore-point?name=`` says PENDING for
  :attr:`FakeSupabase.point_pending_reads` reads, then AVAILABLE with ``completed_on``.  The
  endpoint is ``x-internal`` and has been seen answering 400 "This endpoint is unavailable at
  the moment": :attr:`FakeSupabase.restore_point_unavailable` makes it do that.
* Rate limits: :attr:`FakeSupabase.rate_limit` requests per minute per endpoint (120, as
  Supabase), on every answer ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (seconds),
  and a 429 without ``Retry-After`` beyond it.  The fake's minute runs on its own clock,
  which :meth:`FakeSupabase.advance` moves on (a test's ``sleep`` calls it).
* Project statuses come from a script (``statuses``, one per read of the project; the last
  one stays); responses have the definition's shapes (``V1ProjectWithDatabaseResponse``,
  ``V1BackupsResponse``, ``V1RestorePointResponse``).

A test can also queue answers for an endpoint (``answer``), which are given before any of the
above, with the rate-limit headers added unless the answer sets its own.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REF = "abcdefghijklmnopqrst"
TOKEN = "sbp_0123456789abcdef0123456789abcdef01234567"
EARLIEST = 1740700800  # 2025-02-28T00:00:00Z
LATEST = 1741305600  # 2025-03-07T00:00:00Z
UNAVAILABLE = "This endpoint is unavailable at the moment"
PROJECT_STATUSES = frozenset(
    {
        "INACTIVE", "ACTIVE_HEALTHY", "ACTIVE_UNHEALTHY", "COMING_UP", "UNKNOWN", "GOING_DOWN",
        "INIT_FAILED", "REMOVED", "RESTORING", "UPGRADING", "PAUSING", "RESTORE_FAILED",
        "RESTARTING", "PAUSE_FAILED", "RESIZING",
    }
)  # fmt: skip
_REF = re.compile(r"^/v1/projects/([^/?]+)(/[^?]*)?$")


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    query: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def bad_request(*messages: str) -> Answer:
    """The API's validation error (NestJS): a list of messages."""
    return Answer(400, {"message": list(messages), "error": "Bad Request", "statusCode": 400})


class FakeSupabase:
    """The Management API endpoints of one project, scripted by the test."""

    def __init__(self) -> None:
        self.token = TOKEN
        self.requests: list[Recorded] = []
        self.backups: dict[str, Any] = {
            "region": "us-east-1",
            "walg_enabled": True,
            "pitr_enabled": True,
            "backups": [
                {
                    "id": 1,
                    "is_physical_backup": True,
                    "status": "COMPLETED",
                    "inserted_at": "2025-03-06T00:00:00Z",
                }
            ],
            "physical_backup_data": {
                "earliest_physical_backup_date_unix": EARLIEST,
                "latest_physical_backup_date_unix": LATEST,
            },
        }
        self.statuses: list[str] = ["ACTIVE_HEALTHY"]  # one per GET of the project; the last one stays
        self.scripted: dict[tuple[str, str], list[Answer]] = {}
        self.points: dict[str, dict[str, Any]] = {}  # restore points by name
        self.point_pending_reads = 1  # reads of a new restore point that still say PENDING
        self.point_outcome = "AVAILABLE"  # what a restore point becomes
        self.restore_point_unavailable = False
        self.rate_limit = 120
        self._windows: dict[str, tuple[float, int]] = {}  # endpoint -> (window start, count)
        self._offset = 0.0
        self._lock = threading.Lock()

    # -- the test's controls ---------------------------------------------------------------

    def answer(self, method: str, suffix: str, *answers: Answer) -> None:
        """Queue answers for the next requests to ``/v1/projects/<ref><suffix>``."""
        self.scripted.setdefault((method, f"/v1/projects/{REF}{suffix}"), []).extend(answers)

    def of(self, method: str, suffix: str = "") -> list[Recorded]:
        path = f"/v1/projects/{REF}{suffix}"
        return [r for r in self.requests if r.method == method and r.path == path]

    def now(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock (its rate-limit windows) on, as time passing would."""
        self._offset += seconds

    # -- serving ---------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        with self._lock:
            parsed = urllib.parse.urlsplit(target)
            path, query = parsed.path, urllib.parse.parse_qs(parsed.query)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            self.requests.append(Recorded(method, path, headers, body, query))
            limits, over = self._count(method, path)
            queued = self.scripted.get((method, path))
            if queued:
                answer = queued.pop(0)
            elif over:
                answer = Answer(429, {"message": "ThrottlerException: Too Many Requests"})
            else:
                answer = self._route(method, path, query, headers, body, raw)
            for key, value in limits.items():
                answer.headers.setdefault(key, value)
            return answer

    def _count(self, method: str, path: str) -> tuple[dict[str, str], bool]:
        endpoint = f"{method} {path}"
        now = self.now()
        start, count = self._windows.get(endpoint, (now, 0))
        if now - start >= 60:
            start, count = now, 0
        count += 1
        self._windows[endpoint] = (start, count)
        reset = max(1, int(60 - (now - start) + 0.999))
        limits = {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(0, self.rate_limit - count)),
            "X-RateLimit-Reset": str(reset),
        }
        return limits, count > self.rate_limit

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Any,
        raw: bytes,
    ) -> Answer:
        if headers.get("Authorization") != f"Bearer {self.token}":
            return Answer(401, {"message": "Unauthorized"})
        match = _REF.match(path)
        if not match:
            return Answer(404, {"message": f"Cannot {method} {path}"})
        ref, suffix = match.group(1), match.group(2) or ""
        if not re.fullmatch(r"[a-z]{20}", ref):
            return bad_request("ref must be exactly 20 lower-case letters (^[a-z]+$, length 20)")
        if ref != REF:
            return Answer(404, {"message": "Project not found"})
        if method == "POST" and raw and "application/json" not in headers.get("Content-Type", ""):
            return bad_request("the body must be application/json")
        route = (method, suffix)
        if route == ("GET", ""):
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            if status not in PROJECT_STATUSES:  # a mistake in the test: fail it loudly
                return Answer(
                    500, {"message": f"the fake was scripted a status the API does not have: {status}"}
                )
            return Answer(200, self._project(status))
        if route == ("GET", "/database/backups"):
            return Answer(200, self.backups)
        if route == ("POST", "/database/backups/restore-point"):
            if self.restore_point_unavailable:
                return Answer(400, {"message": UNAVAILABLE})
            problems = _object_problems(body, "name", lambda v: isinstance(v, str) and len(v) <= 20)
            if problems:
                return bad_request(*problems, "name must be shorter than or equal to 20 characters")
            point = {"name": body["name"], "status": "PENDING", "completed_on": None, "reads": 0}
            self.points[body["name"]] = point
            return Answer(201, _point(point))
        if route == ("GET", "/database/backups/restore-point"):
            if self.restore_point_unavailable:
                return Answer(400, {"message": UNAVAILABLE})
            names = query.get("name", [])
            if len(names) != 1 or names[0] not in self.points:
                return Answer(404, {"message": "Restore point not found"})
            point = self.points[names[0]]
            point["reads"] += 1
            if point["status"] == "PENDING" and point["reads"] > self.point_pending_reads:
                point["status"] = self.point_outcome
                if self.point_outcome == "AVAILABLE":
                    point["completed_on"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            return Answer(200, _point(point))
        if route == ("POST", "/database/backups/restore-pitr"):
            problems = _object_problems(
                body,
                "recovery_time_target_unix",
                lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            )
            if problems:
                return bad_request(*problems, "recovery_time_target_unix must be an integer not less than 0")
            return Answer(201)
        return Answer(404, {"message": f"Cannot {method} {path}"})

    def _project(self, status: str) -> dict[str, Any]:
        return {
            "id": REF,
            "ref": REF,
            "organization_id": "org",
            "organization_slug": "tsrqponmlkjihgfedcba",
            "name": "app",
            "region": "us-east-1",
            "created_at": "2024-01-01T00:00:00.000Z",
            "status": status,
            "database": {
                "host": f"db.{REF}.supabase.co",
                "version": "17.4.1.054",
                "postgres_engine": "17",
                "release_channel": "ga",
            },
        }


def _object_problems(body: Any, key: str, valid) -> list[str]:
    if not isinstance(body, dict):
        return ["the body must be a JSON object"]
    if key not in body:
        return [f"{key} should not be empty"]
    if not valid(body[key]):
        return [f"{key} is not valid: {body[key]!r}"]
    return []


def _point(point: dict[str, Any]) -> dict[str, Any]:
    return {k: point[k] for k in ("name", "status", "completed_on")}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        answer = self.server.fake.handle(self.command, self.path, dict(self.headers.items()), raw)
        payload = b"" if answer.body is None else json.dumps(answer.body).encode()
        self.send_response(answer.status)
        for key, value in answer.headers.items():
            self.send_header(key, value)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeSupabase


@contextmanager
def serve() -> Iterator[tuple[FakeSupabase, str]]:
    """The fake API on a free local port: ``(fake, base URL)``."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = FakeSupabase()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server.fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
