"""Every request checked against the AWS service model, stricter than botocore and moto are.

botocore checks names, types, required members and minimums before it sends; moto accepts
much that AWS refuses.  :func:`problems` checks a request against everything botocore's
service model says (names, types, required members, enums, minimum and maximum lengths and
values, patterns) plus, for RDS, the constraints AWS documents but the model does not carry:
identifier naming, "one source" for a point-in-time restore, times in UTC, and tags.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import botocore.session

_SESSION = botocore.session.get_session()

# RDS: "1 to 63 letters, numbers, or hyphens; the first character a letter; no hyphen at the
# end or two in a row" (instances and clusters); snapshots may have 255.
_RDS_NAME = re.compile(r"[A-Za-z](?:-?[A-Za-z0-9])*")
RDS_IDENTIFIERS = {
    "DBInstanceIdentifier": 63,
    "TargetDBInstanceIdentifier": 63,
    "SourceDBInstanceIdentifier": 63,
    "DBClusterIdentifier": 63,
    "SourceDBClusterIdentifier": 63,
    "DBSnapshotIdentifier": 255,
    "DBClusterSnapshotIdentifier": 255,
}
_ONE_SOURCE = {
    "RestoreDBInstanceToPointInTime": (
        "SourceDBInstanceIdentifier",
        "SourceDbiResourceId",
        "SourceDBInstanceAutomatedBackupsArn",
    ),
}


def operation_model(service: str, operation: str) -> Any:
    return _SESSION.get_service_model(service).operation_model(operation)


def problems(service: str, operation: str, params: dict[str, Any]) -> list[str]:
    """What is wrong with a request of ``operation`` (its API name) with ``params``."""
    model = operation_model(service, operation)
    found = _check(model.input_shape, params, operation) if model.input_shape else []
    if service == "rds":
        found += _rds_rules(operation, params)
    return found


def _check(shape: Any, value: Any, where: str) -> list[str]:
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not a structure"]
        found = [f"{where}.{k}: no such parameter" for k in value if k not in shape.members]
        found += [f"{where}.{k}: required, missing" for k in shape.required_members if k not in value]
        for key, item in value.items():
            if key in shape.members:
                found += _check(shape.members[key], item, f"{where}.{key}")
        return found
    if kind == "list":
        if not isinstance(value, list | tuple):
            return [f"{where}: {type(value).__name__}, not a list"]
        found = _bounds(len(value), meta, f"{where} (length)")
        for i, item in enumerate(value):
            found += _check(shape.member, item, f"{where}[{i}]")
        return found
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not a map"]
        found = []
        for key, item in value.items():
            found += _check(shape.key, key, f"{where} key") + _check(shape.value, item, f"{where}[{key}]")
        return found
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: {type(value).__name__}, not a string"]
        found = _bounds(len(value), meta, f"{where} (length)")
        if getattr(shape, "enum", None) and value not in shape.enum:
            found.append(f"{where}: {value!r} is not one of {shape.enum}")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            found.append(f"{where}: {value!r} does not match {meta['pattern']}")
        return found
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{where}: {type(value).__name__}, not an integer"]
        return _bounds(value, meta, where)
    if kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return [f"{where}: {type(value).__name__}, not a number"]
        return []
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: {type(value).__name__}, not a boolean"]
    if kind == "timestamp":
        if not isinstance(value, datetime):
            return [f"{where}: {type(value).__name__}, not a datetime"]
        if value.utcoffset() is None:
            return [f"{where}: {value.isoformat()} has no time zone (AWS reads it as UTC)"]
        return []
    if kind == "blob":
        return [] if isinstance(value, bytes | bytearray | str) else [f"{where}: not bytes"]
    return [f"{where}: unknown shape type {kind}"]


def _bounds(number: int, meta: dict[str, Any], where: str) -> list[str]:
    found = []
    if "min" in meta and number < meta["min"]:
        found.append(f"{where}: {number} is under the minimum {meta['min']}")
    if "max" in meta and number > meta["max"]:
        found.append(f"{where}: {number} is over the maximum {meta['max']}")
    return found


def _rds_rules(operation: str, params: dict[str, Any]) -> list[str]:
    found = []
    for key, limit in RDS_IDENTIFIERS.items():
        value = params.get(key)
        if not isinstance(value, str) or operation.startswith("Describe"):
            continue  # a describe may name anything, even an ARN
        if not (1 <= len(value) <= limit and _RDS_NAME.fullmatch(value)):
            found.append(
                f"{operation}.{key}: {value!r} is not an RDS identifier (1-{limit}, letter first, no '--')"
            )
    sources = _ONE_SOURCE.get(operation)
    if sources and sum(1 for s in sources if params.get(s)) != 1:
        found.append(f"{operation}: exactly one of {', '.join(sources)} is required")
    if params.get("RestoreTime") is not None and params.get("UseLatestRestorableTime"):
        found.append(f"{operation}: RestoreTime and UseLatestRestorableTime together")
    tags = params.get("Tags") or []
    if len(tags) > 50:
        found.append(f"{operation}.Tags: {len(tags)} tags, AWS allows 50")
    for tag in tags:
        key, value = tag.get("Key", ""), tag.get("Value", "")
        if not 1 <= len(key) <= 128 or key.lower().startswith("aws:"):
            found.append(f"{operation}.Tags: key {key!r} is not allowed (1-128, not aws:)")
        if len(value) > 256:
            found.append(f"{operation}.Tags: the value of {key!r} is over 256 characters")
    return found
