"""Database credentials from AWS Secrets Manager, in the RDS secret shape.

``{"engine": "postgres", "host": ..., "port": 5432, "username": ..., "password": ...,
"dbname": ..., "sslmode": "verify-full"}``: the shape RDS-managed secrets and the rotation
templates use.  ``sslmode`` is optional; without it a non-local host requires TLS (see
:mod:`pgrunbook.adapters.postgres.dburl`).  Secrets are fetched with powertools' parameters utility and
cached for five minutes, so a warm Lambda does not call Secrets Manager on every run and a
rotated password is picked up within minutes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pgrunbook.adapters.postgres.dburl import SSLMODES, ConnInfo
from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.redact import one_line, register_secret

CACHE_SECONDS = 300


def conninfo_from_secret(secret: Mapping[str, Any], *, what: str = "database secret") -> ConnInfo:
    if not isinstance(secret, Mapping):
        raise ConfigError(f"{what} is not a JSON object")
    password = secret.get("password")
    register_secret(password if isinstance(password, str) else None)
    missing = [k for k in ("host", "username", "password") if not secret.get(k)]
    if missing:
        raise ConfigError(f"{what} lacks {', '.join(missing)}")
    try:
        port = int(secret.get("port") or 5432)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} has a non-numeric port") from None
    params: dict[str, str] = {}
    sslmode = secret.get("sslmode")
    if sslmode is not None:
        if sslmode not in SSLMODES:
            raise ConfigError(f"{what} has an unknown sslmode {sslmode!r}")
        params["sslmode"] = str(sslmode)
    dbname = secret.get("dbname") or secret.get("database") or "postgres"
    return ConnInfo(
        host=str(secret["host"]),
        port=port,
        user=str(secret["username"]),
        dbname=str(dbname),
        password=str(password),
        params=tuple(sorted(params.items())),
    )


def _secret_string(arn: str) -> str:
    """The secret's string, cached for :data:`CACHE_SECONDS`."""
    try:
        from aws_lambda_powertools.utilities import parameters

        value: Any = parameters.get_secret(arn, max_age=CACHE_SECONDS)
    except Exception as exc:
        raise ConfigError(f"cannot read secret {arn}: {one_line(exc)}") from None
    return value.decode() if isinstance(value, bytes) else str(value)


def fetch_secret(arn: str) -> dict[str, Any]:
    """The secret's JSON, cached for :data:`CACHE_SECONDS`."""
    value = _secret_string(arn)
    try:
        data = json.loads(value)
    except ValueError:
        raise ConfigError(f"secret {arn} is not JSON") from None
    if not isinstance(data, dict):
        raise ConfigError(f"secret {arn} is not a JSON object")
    return data


def webhook_key_from_arn(arn: str) -> str:
    """A webhook's HMAC key: the secret's string, or the ``secret`` of its JSON object."""
    key = _secret_string(arn)
    try:
        data = json.loads(key)
    except ValueError:
        data = None
    if isinstance(data, dict):
        key = str(data.get("secret") or "")
    if len(key) < 16:
        raise ConfigError(f"secret {arn} holds no webhook key of at least 16 characters")
    register_secret(key)
    return key


def conninfo_from_arn(arn: str, *, what: str = "database secret") -> ConnInfo:
    return conninfo_from_secret(fetch_secret(arn), what=f"{what} {arn}")


def update_secret(arn: str, changes: dict[str, Any]) -> None:
    """Cutover: merge ``changes`` (a new host, a new dbname) into the database secret, so that
    everything reading it (the application, pgrunbook's jobs) uses the recovered database.
    Only called after the recovered database has passed verification."""
    import boto3

    client = boto3.client("secretsmanager", region_name=arn.split(":")[3])
    try:
        current = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
        current.update(changes)
        client.put_secret_value(SecretId=arn, SecretString=json.dumps(current))
    except Exception as exc:
        from pgrunbook.domain.errors import ProviderError

        raise ProviderError(f"cannot update secret {arn}: {one_line(exc)}") from None
