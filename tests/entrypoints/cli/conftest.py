"""The CLI tests' fixtures: a moto server reached through AWS_ENDPOINT_URL, and the
environment an operator's shell would have."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

PASSWORD = "S3cret-Pa55word-xyzzy"
PGRUNBOOK = str(Path(sys.executable).parent / "pgrunbook")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def cli_env(moto_endpoint, new_db, tmp_path):
    suffix = os.urandom(3).hex()
    primary, dr = f"cli-primary-{suffix}", f"cli-dr-{suffix}"
    boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint).create_bucket(Bucket=primary)
    boto3.client("s3", region_name="ap-southeast-2", endpoint_url=moto_endpoint).create_bucket(
        Bucket=dr, CreateBucketConfiguration={"LocationConstraint": "ap-southeast-2"}
    )
    source = new_db(
        sql="""
        CREATE TABLE customers (id int PRIMARY KEY, name text);
        INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 2000) g;
        """
    )
    url = source.libpq_uri().replace("postgres@", f"postgres:{PASSWORD}@", 1)
    assert PASSWORD in url
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "PGRUNBOOK_DATABASE_URL": url,
        "PGRUNBOOK_BUCKET": primary,
        "PGRUNBOOK_REGION": "us-east-1",
        "PGRUNBOOK_DR_BUCKET": dr,
        "PGRUNBOOK_DR_REGION": "ap-southeast-2",
        "PGRUNBOOK_WORK_DIR": str(tmp_path),
        "PGRUNBOOK_HOME": str(tmp_path / "home"),
    }
    return env, source, (primary, dr), moto_endpoint
