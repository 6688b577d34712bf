"""``pgrunbook config``: every option's effective value and where it came from, no secret shown."""

from __future__ import annotations

import json

import boto3

from pgrunbook.entrypoints.cli import main
from pgrunbook.settings.options import OPTIONS

PASSWORD = "Config-Secret-pw-5e1"


def config(capsys, *args: str) -> tuple[int, dict]:
    code = main(["config", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_each_value_says_where_it_came_from(capsys, monkeypatch):
    monkeypatch.setenv("PGRUNBOOK_JOBS", "4")
    monkeypatch.delenv("PGRUNBOOK_PREFIX", raising=False)
    code, report = config(capsys, "--prefix", "team")
    assert code == 0 and report["operation"] == "config"
    rows = {r["name"]: r for r in report["payload"]["options"]}
    assert set(rows) == {o.name for o in OPTIONS}
    assert (rows["jobs"]["value"], rows["jobs"]["source"], rows["jobs"]["env"]) == (
        4,
        "env",
        "PGRUNBOOK_JOBS",
    )
    assert (rows["prefix"]["value"], rows["prefix"]["source"], rows["prefix"]["flag"]) == (
        "team",
        "flag",
        "--prefix",
    )
    assert (rows["compression"]["value"], rows["compression"]["source"]) == (1, "default")


def test_no_password_is_shown_in_text_or_json(capsys, monkeypatch):
    monkeypatch.setenv("PGRUNBOOK_DATABASE_URL", f"postgresql://app:{PASSWORD}@db.example.com/orders")
    code, report = config(capsys)
    assert code == 0
    rows = {r["name"]: r for r in report["payload"]["options"]}
    assert rows["database_url"]["value"] == "app@db.example.com:5432/orders"
    [database] = report["payload"]["connections"]
    assert (database["name"], database["source"]) == ("database", "env")
    assert main(["config"]) == 0
    text = capsys.readouterr().out
    assert "PGRUNBOOK_DATABASE_URL" in text and "app@db.example.com:5432/orders" in text
    assert PASSWORD not in json.dumps(report) + text


def test_a_connection_from_a_secret_says_secret_and_an_unreadable_one_warns(capsys, monkeypatch, s3):
    secret = {
        "host": "db.internal",
        "port": 5432,
        "username": "app",
        "password": PASSWORD,
        "dbname": "orders",
    }
    arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="pgrunbook/config-test", SecretString=json.dumps(secret)
    )["ARN"]
    monkeypatch.delenv("PGRUNBOOK_DATABASE_URL", raising=False)
    monkeypatch.setenv("PGRUNBOOK_DATABASE_SECRET_ARN", arn)
    monkeypatch.setenv("PGRUNBOOK_RESTORE_TARGET_SECRET_ARN", arn + "-gone")
    code, report = config(capsys)
    connections = {r["name"]: r for r in report["payload"]["connections"]}
    assert connections["database"] == {
        **connections["database"],
        "source": "secret",
        "value": "app@db.internal:5432/orders",
    }
    assert connections["restore target"]["value"].startswith("(cannot read")
    assert report["status"] == "warning" and code == 0
    assert PASSWORD not in json.dumps(report)
