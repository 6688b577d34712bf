"""Sending notices through one SNS topic (what they say is :mod:`pgrunbook.domain.notices`)."""

from __future__ import annotations

import json
from typing import Protocol

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pgrunbook.domain.errors import TransientNotifyError
from pgrunbook.domain.notices import SUBJECT_LIMIT, Notice, chat_message


class Notifier(Protocol):
    def send(self, notice: Notice) -> str | None: ...


class NullNotifier:
    """No topic configured (a laptop run): nothing is sent."""

    def send(self, notice: Notice) -> str | None:
        return None


class SnsNotifier:
    def __init__(self, topic_arn: str, region: str | None = None):
        self.topic_arn = topic_arn
        region = region or topic_arn.split(":")[3]
        self.client = boto3.session.Session().client("sns", region_name=region)

    def send(self, notice: Notice) -> str | None:
        """Publish one notice; returns its message id.  One message per protocol: e-mail,
        SQS and the rest get the runbook's text; HTTPS subscribers (AWS Chatbot's Slack and
        Teams channels subscribe this way) get the custom-notification JSON."""
        by_protocol = {"default": notice.message, "email": notice.message, "https": chat_message(notice)}
        try:
            response = self.client.publish(
                TopicArn=self.topic_arn,
                Subject=notice.subject[:SUBJECT_LIMIT],
                MessageStructure="json",
                Message=json.dumps(by_protocol, ensure_ascii=False),
                MessageAttributes={
                    k: {"DataType": "String", "StringValue": v} for k, v in notice.attributes.items() if v
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise TransientNotifyError(f"SNS publish to {self.topic_arn} failed: {exc}") from None
        return response.get("MessageId")
