"""The webhook channel (issue 17, item 2): the exact bytes a receiver gets, their signature,
retries, and what a failure says (never the URL's path or the key)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from pgrunbook.adapters.webhook import FanoutNotifier, WebhookNotifier, body_of
from pgrunbook.domain.errors import ConfigError, TransientNotifyError
from pgrunbook.domain.notices import Notice
from pgrunbook.domain.results import Report
from pgrunbook.operations.context import OperationContext
from pgrunbook.settings.model import Settings

KEY = "k3y-for-the-test-0123456789"
WHEN = datetime(2026, 12, 3, 2, 0, 5, tzinfo=UTC)
NOTICE = Notice(
    "CRITICAL - Database Backup Failure - app - 2026-12-03T02:00:05Z",
    "Summary: pg_dump failed — “quoted” text\nNext steps: ...",
    {"job": "backup", "database": "app", "severity": "critical"},
)


class Receiver:
    """A local HTTP endpoint that records each request and answers with the next status."""

    def __init__(self, statuses=(200,)):
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, dict(self.headers), body))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/secret-integration-key"

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(statuses=(200,)):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_the_receiver_gets_these_bytes_signed_with_the_key(receiver):
    r = receiver()
    sent_id = WebhookNotifier(r.url, KEY, clock=lambda: WHEN).send(NOTICE)
    [(path, headers, body)] = r.requests
    assert path == "/hooks/secret-integration-key"
    assert body == body_of(NOTICE, WHEN)
    data = json.loads(body)
    assert body == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert data["subject"] == NOTICE.subject and data["message"] == NOTICE.message
    assert (data["database"], data["operation"], data["severity"]) == ("app", "backup", "critical")
    assert data["sent_at"] == "2026-12-03T02:00:05Z" and data["version"] == 1 and data["id"] == sent_id
    assert headers["Content-Type"] == "application/json"
    timestamp = headers["X-Pgrunbook-Timestamp"]
    assert timestamp == str(int(WHEN.timestamp()))
    expected = hmac.new(KEY.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Pgrunbook-Signature"] == f"sha256={expected}"


def test_a_busy_receiver_is_tried_again_and_a_refusal_is_not(receiver):
    waits: list[float] = []
    busy = receiver([503, 429, 200])
    WebhookNotifier(busy.url, KEY, sleep=waits.append).send(NOTICE)
    assert len(busy.requests) == 3 and waits == [1.0, 3.0]
    assert len({body for _, _, body in busy.requests}) == 1  # the same notice each time

    refusing = receiver([403])
    with pytest.raises(TransientNotifyError) as failed:
        WebhookNotifier(refusing.url, KEY, sleep=waits.append).send(NOTICE)
    assert len(refusing.requests) == 1
    message = str(failed.value)
    assert message == "webhook http://127.0.0.1 failed after 1 tries: HTTP 403"
    assert "secret-integration-key" not in message and KEY not in message


def test_an_unreachable_webhook_fails_after_three_tries_and_sns_still_gets_the_notice(s3):
    from moto import mock_aws  # noqa: F401 - the s3 fixture's mock is active

    sns = boto3.client("sns", region_name=s3.primary_region)
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    waits: list[float] = []
    dead = WebhookNotifier("http://127.0.0.1:9/hooks/key", KEY, sleep=waits.append)
    from pgrunbook.adapters.aws.sns import SnsNotifier

    fanout = FanoutNotifier([SnsNotifier(topic), dead])
    with pytest.raises(TransientNotifyError, match=r"webhook http://127\.0\.0\.1 failed after 3 tries"):
        fanout.send(NOTICE)
    assert waits == [1.0, 3.0]
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns import sns_backends

    published = sns_backends[DEFAULT_ACCOUNT_ID][s3.primary_region].topics[topic].sent_notifications
    assert [json.loads(n[1])["default"] for n in published] == [NOTICE.message]


def _settings(**values) -> Settings:
    return Settings.load(env={}, database_url="postgresql://u@db.example.com/app", **values)


def test_the_settings_refuse_plain_http_and_a_webhook_without_a_key(s3):
    with pytest.raises(ConfigError, match="must be an https:// URL"):
        _settings(webhook_url="http://hooks.example.com/x")
    with pytest.raises(ConfigError, match="needs PGRUNBOOK_WEBHOOK_SECRET_ARN"):
        _settings(webhook_url="https://hooks.example.com/x")
    client = boto3.client("secretsmanager", region_name=s3.primary_region)
    as_json = client.create_secret(Name="hook-json", SecretString=json.dumps({"secret": KEY}))["ARN"]
    as_text = client.create_secret(Name="hook-text", SecretString=KEY)["ARN"]
    too_short = client.create_secret(Name="hook-short", SecretString="short")["ARN"]
    for arn in (as_json, as_text):
        assert (
            _settings(webhook_url="https://hooks.example.com/x", webhook_secret_arn=arn).webhook_key() == KEY
        )
    with pytest.raises(ConfigError, match="no webhook key of at least 16 characters"):
        _settings(webhook_url="https://hooks.example.com/x", webhook_secret_arn=too_short).webhook_key()


def test_a_report_that_is_not_ok_reaches_the_webhook(receiver):
    r = receiver()
    ctx = OperationContext(_settings(webhook_url=r.url, webhook_secret=KEY))
    report = Report.start("backup", "app", WHEN)
    report.add("backup", "critical", "pg_dump failed (exit 1): could not connect")
    ctx.publish(report)
    [(_, headers, body)] = r.requests
    data = json.loads(body)
    assert data["severity"] == "critical" and data["database"] == "app" and data["operation"] == "backup"
    assert "pg_dump failed (exit 1): could not connect" in data["message"]
    assert data["subject"].startswith("CRITICAL - ")
    assert headers["X-Pgrunbook-Signature"].startswith("sha256=")


def test_a_key_that_cannot_be_read_fails_the_notice_not_the_run(s3, receiver):
    r = receiver()
    arn = f"arn:aws:secretsmanager:{s3.primary_region}:123456789012:secret:gone-AbCdEf"
    ctx = OperationContext(_settings(webhook_url=r.url, webhook_secret_arn=arn))  # no refusal here
    with pytest.raises(TransientNotifyError, match=r"webhook http://127\.0\.0\.1: cannot read secret"):
        ctx.send(NOTICE)
    assert r.requests == []
