"""A local server speaking the four Supabase Management API endpoints pgrunbook uses.

It checks the bearer token the way Supabase does (401 without the right one), records every
request, and can be told to answer 429, 5xx, "PITR not enabled" or a scripted sequence of
project statuses.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REF = "abcdefghijklmnopqrst"
TOKEN = "sbp_0123456789abcdef0123456789abcdef01234567"
EARLIEST = 1740700800  # 2025-02-28T00:00:00Z
LATEST = 1741305600  # 2025-03-07T00:00:00Z


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


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
                {"is_physical_backup": True, "status": "COMPLETED", "inserted_at": "2025-03-06T00:00:00Z"}
            ],
            "physical_backup_data": {
                "earliest_physical_backup_date_unix": EARLIEST,
                "latest_physical_backup_date_unix": LATEST,
            },
        }
        self.statuses: list[str] = ["ACTIVE_HEALTHY"]  # one per GET of the project; the last one stays
        self.scripted: dict[tuple[str, str], list[Answer]] = {}

    def answer(self, method: str, suffix: str, *answers: Answer) -> None:
        """Queue answers for the next requests to ``/v1/projects/<ref><suffix>``."""
        self.scripted.setdefault((method, f"/v1/projects/{REF}{suffix}"), []).extend(answers)

    def of(self, method: str, suffix: str = "") -> list[Recorded]:
        path = f"/v1/projects/{REF}{suffix}"
        return [r for r in self.requests if r.method == method and r.path == path]

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Answer:
        body = json.loads(raw) if raw else None
        self.requests.append(Recorded(method, path, headers, body))
        queued = self.scripted.get((method, path))
        if queued:
            return queued.pop(0)
        if headers.get("Authorization") != f"Bearer {self.token}":
            return Answer(401, {"message": "Unauthorized"})
        project = f"/v1/projects/{REF}"
        if not path.startswith(project):
            return Answer(404, {"message": "Project not found"})
        route = (method, path[len(project) :])
        if route == ("GET", ""):
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return Answer(
                200, {"id": REF, "ref": REF, "name": "app", "region": "us-east-1", "status": status}
            )
        if route == ("GET", "/database/backups"):
            return Answer(200, self.backups)
        if route == ("POST", "/database/backups/restore-point"):
            return Answer(201, {"name": body["name"], "status": "AVAILABLE"})
        if route == ("POST", "/database/backups/restore-pitr"):
            return Answer(201)
        return Answer(404, {"message": "Cannot " + method + " " + path})


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
