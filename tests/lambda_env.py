"""What tests of Lambda handlers share: a Lambda context, loading ``functions/app.py`` as a function runs it,
the database secret in the RDS JSON shape, and an SNS topic whose messages a test can read
(SNS → SQS, under moto)."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from pgrunbook.entrypoints.aws_lambda import OPERATION_VARIABLE

FUNCTIONS = Path(__file__).resolve().parents[1] / "functions"
ACCOUNT = "123456789012"


@dataclass
class Context:
    function_name: str = "pgrunbook-test"
    function_version: str = "$LATEST"
    invoked_function_arn: str = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:pgrunbook-test"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/pgrunbook-test"
    log_stream_name: str = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return 600_000


def load_handler(name: str):
    """The ``handler`` of ``functions/app.py`` in a function whose ``PGRUNBOOK_OPERATION`` is
    ``name``, as the CDK app deploys it."""
    previous = os.environ.get(OPERATION_VARIABLE)
    os.environ[OPERATION_VARIABLE] = name
    try:
        spec = importlib.util.spec_from_file_location(
            f"function_{name.replace('-', '_')}", FUNCTIONS / "app.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if previous is None:
            os.environ.pop(OPERATION_VARIABLE, None)
        else:
            os.environ[OPERATION_VARIABLE] = previous
    return module.handler


def database_secret(
    info: Any, password: str, *, region: str = "us-east-1", name: str = "pgrunbook/app-db"
) -> str:
    """A Secrets Manager secret for the database ``info``, as RDS writes them; its ARN."""
    secret = {
        "engine": "postgres",
        "host": info.host,
        "port": info.port,
        "username": info.user,
        "password": password,
        "dbname": info.dbname,
    }
    client = boto3.client("secretsmanager", region_name=region)
    return client.create_secret(Name=name, SecretString=json.dumps(secret))["ARN"]


class Inbox:
    """An SNS topic with an SQS queue subscribed: what pgrunbook publishes, as the on-call sees it."""

    def __init__(self, region: str = "us-east-1", name: str = "pgrunbook-alerts"):
        self.region = region
        sns = boto3.client("sns", region_name=region)
        self.topic_arn = sns.create_topic(Name=name)["TopicArn"]
        sqs = boto3.client("sqs", region_name=region)
        self.queue_url = sqs.create_queue(QueueName=f"{name}-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def messages(self) -> list[dict]:
        """The notifications received since the last call (each read once)."""
        sqs = boto3.client("sqs", region_name=self.region)
        out: list[dict] = []
        while True:
            batch = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return out
            for message in batch:
                out.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
