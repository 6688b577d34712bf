"""Chat through AWS Chatbot (issue 17, item 2): the topic's HTTPS subscribers (Chatbot's Slack
and Teams channels) get the custom-notification JSON; e-mail and queues keep the runbook's
text.  Tested with the exact bytes an HTTPS subscriber receives from (moto's) SNS."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pgrunbook.adapters.aws.sns import SnsNotifier
from pgrunbook.domain.notices import chat_message, report_notice
from pgrunbook.domain.results import Report
from pgrunbook.operations.registry import wording
from tests.lambda_env import Inbox

WHEN = dt.datetime(2026, 12, 3, 2, 0, 5, tzinfo=dt.UTC)


def _report() -> Report:
    report = Report.start("backup", "app", WHEN)
    report.location = "s3://backups/pgrunbook/app/reports/backup/r1.json"
    report.add("backup", "critical", "pg_dump failed (exit 1): could not connect")
    report.add("dr_copy", "warning", "the DR copy was not made")
    report.finished_at = WHEN.isoformat()
    return report


@pytest.fixture
def https_receiver(tmp_path, monkeypatch):
    """A local HTTPS endpoint (a self-signed certificate the test trusts) recording bodies."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        .not_valid_after(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
    yield f"https://localhost:{server.server_port}/chatbot", bodies
    server.shutdown()


def test_chatbot_gets_its_custom_notification_and_email_keeps_the_text(s3, https_receiver):
    url, bodies = https_receiver
    inbox = Inbox(s3.primary_region)  # a queue: what e-mail and the on-call's tools see
    sns = boto3.client("sns", region_name=s3.primary_region)
    sns.subscribe(TopicArn=inbox.topic_arn, Protocol="https", Endpoint=url)
    notice = report_notice(_report(), wording("backup"))
    assert notice is not None
    SnsNotifier(inbox.topic_arn).send(notice)

    [queued] = inbox.messages()
    assert queued["Message"] == notice.message and queued["Subject"] == notice.subject
    [body] = bodies
    delivered = json.loads(body)["Message"]  # the SNS envelope's message: exactly these bytes
    assert delivered == chat_message(notice)
    event = json.loads(delivered)
    assert (event["version"], event["source"]) == ("1.0", "custom")
    content = event["content"]
    assert content["textType"] == "client-markdown"
    assert content["title"] == notice.subject and content["title"].startswith("CRITICAL - ")
    assert content["description"] == (
        "*Summary:* pg_dump failed (exit 1): could not connect (and 1 more finding)\n\n*Findings:*\n"
        "• [CRITICAL] backup: pg_dump failed (exit 1): could not connect\n"
        "• [WARNING] dr_copy: the DR copy was not made"
    )
    assert content["nextSteps"] == [
        "Read the report: s3://backups/pgrunbook/app/reports/backup/r1.json",
        "Check the whole picture: `pgrunbook status` (database app)",
        "Follow the runbook section for `backup`; it needs an on-call engineer",
        "Next update: the next scheduled backup run",
    ]
    assert content["keywords"] == ["critical", "backup", "app"]
    assert event["metadata"]["threadId"] == "pgrunbook-app-backup"
    assert event["metadata"]["eventType"] == "pgrunbook.backup.critical"


def test_a_long_report_stays_within_what_chat_shows():
    report = _report()
    for i in range(200):
        report.add("verify", "critical", f"table t{i} differs from its manifest " + "x" * 80)
    notice = report_notice(report, wording("backup"))
    assert notice is not None
    content = json.loads(chat_message(notice))["content"]
    assert len(content["description"]) <= 3000 and content["description"].endswith("…")
    assert len(content["title"]) <= 250
