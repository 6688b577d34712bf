"""When Supabase cannot give a restore point, the safety point is a pgrunbook backup.

The restore-point endpoint is ``x-internal`` and has been seen answering 400 "This endpoint is
unavailable at the moment".  These tests take the fallback for real: the fake Management API
refuses (or the point fails, or stays PENDING), and the provider backs up a real embedded
database into moto's S3.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgrunbook.catalog.backups import Catalog
from pgrunbook.domain.errors import ConfigError, ProviderError
from pgrunbook.workflows.pitr.supabase import SupabaseProvider
from tests.supabase_api import REF, TOKEN, UNAVAILABLE, Answer, FakeSupabase, serve

SQL = "CREATE TABLE tasks (id int PRIMARY KEY, title text); INSERT INTO tasks SELECT g, 't' || g FROM generate_series(1, 500) g;"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeSupabase, str]]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("SUPABASE_ACCESS_TOKEN", TOKEN)
    with serve() as served:
        yield served


def provider_on(make_settings, info, url: str, fake: FakeSupabase) -> SupabaseProvider:
    settings = make_settings(info, pitr_provider="supabase", supabase_project_ref=REF, supabase_api_url=url)
    clock = Clock()
    provider = SupabaseProvider(settings, clock=clock)

    def sleep(seconds: float) -> None:
        clock.now += timedelta(seconds=seconds)
        fake.advance(seconds)

    provider.sleep = sleep
    return provider


def refuse_with_unavailable(fake: FakeSupabase) -> str:
    fake.restore_point_unavailable = True
    return UNAVAILABLE


def point_fails(fake: FakeSupabase) -> str:
    fake.point_outcome = "FAILED"
    return "is FAILED"


def point_is_removed(fake: FakeSupabase) -> str:
    fake.point_outcome = "REMOVED"
    return "is REMOVED"


def point_stays_pending(fake: FakeSupabase) -> str:
    fake.point_pending_reads = 10**6
    return "was still PENDING 300 s after it was requested"


def endpoint_gone(fake: FakeSupabase) -> str:
    fake.answer("POST", "/database/backups/restore-point", Answer(404, {"message": "Cannot POST"}))
    return "HTTP 404"


def endpoint_fails(fake: FakeSupabase) -> str:
    fake.answer("POST", "/database/backups/restore-point", Answer(500, {"message": "internal"}))
    return "the Supabase Management API failed"


@pytest.mark.parametrize(
    "fault",
    [
        refuse_with_unavailable,
        point_fails,
        point_is_removed,
        point_stays_pending,
        endpoint_gone,
        endpoint_fails,
    ],
)
def test_the_safety_point_falls_back_to_a_pgrunbook_backup(fault, api, new_db, make_settings, s3):
    fake, url = api
    why = fault(fake)
    provider = provider_on(make_settings, new_db(sql=SQL), url, fake)
    point: dict[str, Any] = provider.safety_point({"recovery_id": "20250307T000100Z-abc123"})

    assert point["kind"] == "pgrunbook backup" and point["tier"] == "manual"
    assert why in point["fallback_reason"]
    assert point["summary"].startswith(f"pgrunbook backup {point['backup_id']} (tier manual")
    assert "not a Supabase restore point" in point["summary"] and why in point["summary"]
    # the backup is real and complete: the way back exists
    manifest = Catalog(provider.settings.primary_store()).manifest(point["backup_id"])
    assert manifest.tiers == ["manual"]
    assert ("public", "tasks", 500) in [(t.schema, t.name, t.rows) for t in manifest.tables]


def test_without_a_restore_point_or_a_backup_the_recovery_does_not_go_ahead(api, new_db, make_settings, s3):
    fake, url = api
    fake.restore_point_unavailable = True
    info = new_db(sql=SQL)
    provider = provider_on(make_settings, info, url, fake)
    provider.settings.bucket = "no-such-bucket"
    with pytest.raises(ProviderError) as caught:
        provider.safety_point({"recovery_id": "r1"})
    message = str(caught.value)
    assert message.startswith("no safety point, so the recovery does not go ahead (nothing was changed)")
    assert UNAVAILABLE in message and "no-such-bucket" in message and "\n" not in message


def test_a_token_that_may_not_write_backups_is_not_papered_over(api, new_db, make_settings, s3):
    fake, url = api
    fake.answer("POST", "/database/backups/restore-point", Answer(403, {"message": "Forbidden resource"}))
    provider = provider_on(make_settings, new_db(sql=SQL), url, fake)
    with pytest.raises(ConfigError, match="may not create the restore point"):
        provider.safety_point({"recovery_id": "r1"})
    assert Catalog(provider.settings.primary_store()).backup_ids() == []
