"""Leases: "a restore is reading this backup", so that retention leaves it alone.

A lease is an object ``<prefix>/<database>/leases/<backup-id>/<expires>-<token>.json`` in the
bucket being read.  Its expiry is in its name, so retention finds the live leases with one
listing and no reads; a lease left behind by a killed run expires on its own (after
:data:`LEASE_TTL`, longer than any restore may take).

Protocol, so that no file is deleted under a reader:

* a reader writes its lease, then checks the manifest is still there, then reads;
* retention checks for leases, deletes the manifest, checks for leases again, and if one
  appeared in between it puts the manifest back and leaves the backup alone; only then are
  the files deleted.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from datetime import datetime, timedelta

from pgrunbook.adapters.s3.store import ObjectStore
from pgrunbook.domain.errors import PgRunbookError
from pgrunbook.domain.ids import parse_time_stamp, time_stamp

log = logging.getLogger(__name__)
LEASE_TTL = timedelta(hours=12)
_LEASE_KEY = re.compile(r"/leases/(?P<backup>[^/]+)/(?P<expires>\d{8}T\d{6}\.\d{3}Z)-[0-9a-f]+\.json$")


def leases_prefix(store: ObjectStore) -> str:
    return store.layout.leases_prefix


class Lease:
    def __init__(
        self, store: ObjectStore, backup_id: str, holder: str, now: datetime, ttl: timedelta = LEASE_TTL
    ):
        self.store = store
        self.backup_id = backup_id
        self.holder = holder
        self.acquired_at = now
        self.expires_at = now + ttl
        self.key = store.layout.lease_key(backup_id, time_stamp(self.expires_at), secrets.token_hex(4))

    def __enter__(self) -> Lease:
        body = {
            "backup_id": self.backup_id,
            "holder": self.holder,
            "acquired_at": self.acquired_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }
        self.store.put_bytes(self.key, json.dumps(body).encode())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.store.delete_keys([self.key])
        except PgRunbookError as error:  # it expires on its own
            log.warning("could not release lease %s: %s", self.key, error)


def _leases(store: ObjectStore) -> list[tuple[str, str, datetime]]:
    """(key, backup id, expiry) of every lease object in ``store``."""
    found = []
    for obj in store.list_keys(leases_prefix(store)):
        match = _LEASE_KEY.search(obj["Key"])
        if match:
            expires = parse_time_stamp(match.group("expires"))
            found.append((obj["Key"], match.group("backup"), expires))
    return found


def held_backups(store: ObjectStore, now: datetime) -> set[str]:
    """Backups with a live lease in ``store``."""
    return {backup for _, backup, expires in _leases(store) if expires > now}


def sweep_expired_leases(store: ObjectStore, now: datetime) -> int:
    """Delete lease objects left behind by runs that were killed; they protect nothing."""
    expired = [key for key, _, expires in _leases(store) if expires <= now]
    return store.delete_keys(expired) if expired else 0
