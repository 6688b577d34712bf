"""Maintenance mode: an SSM parameter the application reads before it writes.

The runbook stops all writes before a recovery ("Enable maintenance mode", "Verify no
active connections").  pgrunbook cannot stop an application, but it can tell it: the
parameter ``/pgrunbook/<database>/maintenance`` (``PGRUNBOOK_MAINTENANCE_PARAMETER``) holds
``{"enabled": true, "reason": ..., "recovery_id": ..., "since": ...}`` while a recovery runs.
The application should read it (cached for a few seconds) and refuse writes, showing its
maintenance page, while ``enabled`` is true.  The workflow switches it on before anything
changes and off only after the recovered database has passed verification; a failed recovery
leaves it on, on purpose.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.domain.errors import TransientStorageError


class MaintenanceMode:
    def __init__(self, parameter: str, region: str | None = None):
        self.parameter = parameter
        self.client = boto3.session.Session().client("ssm", region_name=region)

    def read(self) -> dict[str, Any] | None:
        try:
            value = self.client.get_parameter(Name=self.parameter)["Parameter"]["Value"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
                return None
            raise TransientStorageError(f"reading {self.parameter} failed: {exc}") from None
        except BotoCoreError as exc:
            raise TransientStorageError(f"reading {self.parameter} failed: {exc}") from None
        try:
            data = json.loads(value)
        except ValueError:
            return {"enabled": value.strip().lower() in ("true", "on", "1"), "raw": value}
        return data if isinstance(data, dict) else {"enabled": bool(data)}

    def write(self, value: dict[str, Any]) -> None:
        try:
            self.client.put_parameter(
                Name=self.parameter,
                Value=json.dumps(value, sort_keys=True),
                Type="String",
                Overwrite=True,
                Description="pgrunbook maintenance mode: the application refuses writes while enabled",
            )
        except (ClientError, BotoCoreError) as exc:
            raise TransientStorageError(f"writing {self.parameter} failed: {exc}") from None

    def enable(self, *, reason: str, recovery_id: str, now: datetime) -> dict[str, Any] | None:
        """Switch maintenance mode on; returns what the parameter held before."""
        previous = self.read()
        self.write({"enabled": True, "reason": reason, "recovery_id": recovery_id, "since": now.isoformat()})
        return previous

    def disable(self, *, recovery_id: str, now: datetime, previous: dict[str, Any] | None = None) -> None:
        """Switch it off, or back to what it was if an operator had it on before the recovery."""
        if previous and previous.get("enabled") and previous.get("recovery_id") != recovery_id:
            self.write(previous)
            return
        self.write({"enabled": False, "recovery_id": recovery_id, "until": now.isoformat()})


def active_connections(info: ConnInfo) -> dict[str, int]:
    """Sessions of the database by state, other than pgrunbook's own."""
    with Database.connect(info, application_name="pgrunbook-pitr") as db:
        rows = db.run(
            "SELECT coalesce(state, 'unknown'), count(*) FROM pg_catalog.pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend' AND application_name NOT LIKE 'pgrunbook%' GROUP BY 1"
        )
    return {str(state): int(count) for state, count in rows}
