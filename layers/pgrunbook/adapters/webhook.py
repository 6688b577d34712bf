"""Notices to an HTTPS webhook (issue 17, item 2): PagerDuty, Opsgenie or anything else.

The body is one JSON object with sorted keys and no spaces, so that what is signed is exactly
what is sent and a receiver can check it byte for byte::

    {"attributes": {...}, "database": "app", "id": "<sha256 of the rest>", "message": "...",
     "operation": "backup", "sent_at": "2026-12-03T02:00:00Z", "severity": "critical",
     "subject": "CRITICAL - Database Backup Failure - app - 2026-12-03T02:00:00Z", "version": 1}

Headers: ``Content-Type: application/json``, ``X-Pgrunbook-Timestamp`` (Unix seconds) and
``X-Pgrunbook-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>``.
The secret comes from Secrets Manager (``PGRUNBOOK_WEBHOOK_SECRET_ARN``: the secret string,
or a JSON object with a ``secret`` key) or the environment (``PGRUNBOOK_WEBHOOK_SECRET``).
A receiver should refuse a timestamp more than five minutes old (a replay) and compare the
signature in constant time.

Delivery: up to :data:`ATTEMPTS` tries, :data:`BACKOFF_S` apart, on a connection failure, a
timeout, 429 or a 5xx; any other status fails at once.  The URL is never printed whole (it
often carries an integration key): errors name its scheme and host only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from pgrunbook.domain.errors import PgRunbookError, TransientNotifyError
from pgrunbook.domain.notices import Notice
from pgrunbook.domain.redact import one_line, register_secret

ATTEMPTS = 3
BACKOFF_S = (1.0, 3.0)  # before the second and the third try
TIMEOUT_S = 10.0
RETRIED = frozenset({429, 500, 502, 503, 504})


def body_of(notice: Notice, sent_at: datetime) -> bytes:
    """The exact bytes sent (and signed) for ``notice``."""
    fields = {
        "version": 1,
        "subject": notice.subject,
        "message": notice.message,
        "attributes": dict(notice.attributes),
        "database": notice.attributes.get("database", ""),
        "operation": notice.attributes.get("job", ""),
        "severity": notice.attributes.get("severity", ""),
        "sent_at": sent_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    fields["id"] = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class WebhookNotifier:
    def __init__(
        self,
        url: str,
        secret: str | Callable[[], str],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ):
        """``secret``: the key, or what reads it when the first notice is sent (a secret
        that cannot be read then fails that notice, not the run)."""
        self.url, self._secret = url, secret
        if isinstance(secret, str):
            register_secret(secret)
        parts = urlsplit(url)
        self.where = f"{parts.scheme}://{parts.hostname}"  # never the path or query: keys live there
        self.clock, self.sleep = clock, sleep

    def send(self, notice: Notice) -> str | None:
        """POST ``notice``; returns its id.  Raises :class:`TransientNotifyError` once every
        try has failed."""
        if not isinstance(self._secret, str):
            try:
                self._secret = self._secret()
            except PgRunbookError as exc:
                raise TransientNotifyError(f"webhook {self.where}: {one_line(exc)}") from None
        now = self.clock()
        body = body_of(notice, now)
        timestamp = int(now.timestamp())
        request = urllib.request.Request(  # noqa: S310 - the option allows https (and loopback http)
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "pgrunbook",
                "X-Pgrunbook-Timestamp": str(timestamp),
                "X-Pgrunbook-Signature": signature(self._secret, timestamp, body),
            },
        )
        failure = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                self.sleep(BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)])
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
                    response.read()
                return str(json.loads(body)["id"])
            except urllib.error.HTTPError as exc:
                failure = f"HTTP {exc.code}"
                if exc.code not in RETRIED:
                    break
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                failure = type(reason).__name__ if not str(reason) else str(reason)
        raise TransientNotifyError(f"webhook {self.where} failed after {attempt + 1} tries: {failure}")


class FanoutNotifier:
    """Every configured channel gets each notice; one failing does not stop the others, and
    the failures are raised together once all were tried."""

    def __init__(self, notifiers: list):
        self.notifiers = notifiers

    def send(self, notice: Notice) -> str | None:
        first: str | None = None
        failures: list[str] = []
        for notifier in self.notifiers:
            try:
                sent = notifier.send(notice)
            except TransientNotifyError as exc:
                failures.append(str(exc))
                continue
            first = first or sent
        if failures:
            raise TransientNotifyError("; ".join(failures))
        return first
