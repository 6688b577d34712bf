"""The Supabase PITR provider against a local server that behaves like the Management API.

The server (tests/supabase_api.py) validates what it receives as the official API definition
says (project ref, bodies), makes restore points asynchronously, enforces rate limits with the
real headers, and answers the statuses the API has.  Tests assert what Supabase would receive:
paths, the bearer token, the JSON bodies.  Waits do not really sleep: the provider's ``sleep``
moves the test's clock and the fake's rate-limit clock on.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pgrunbook import __version__
from pgrunbook.domain.errors import (
    ConfigError,
    InvalidTarget,
    PitrNotEnabled,
    ProviderError,
    ProviderThrottled,
    ProviderUnavailable,
    RecoveryFailed,
)
from pgrunbook.domain.redact import MASK
from pgrunbook.settings.model import Settings
from pgrunbook.workflows.pitr.providers import get_provider
from pgrunbook.workflows.pitr.supabase import RESTORE_POINT_NAME_LIMIT, SupabaseProvider, restore_point_name
from tests.supabase_api import REF, TOKEN, Answer, FakeSupabase, serve

NOW = datetime(2025, 3, 7, 0, 5, tzinfo=UTC)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeSupabase, str]]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("SUPABASE_ACCESS_TOKEN", raising=False)
    with serve() as served:
        yield served


class Clock:
    def __init__(self, now: datetime = NOW):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def settings_for(url: str, **extra: str) -> Settings:
    env = {
        "PGRUNBOOK_DATABASE_URL": "postgresql://postgres@127.0.0.1:54322/postgres",
        "PGRUNBOOK_PITR_PROVIDER": "supabase",
        "PGRUNBOOK_SUPABASE_PROJECT_REF": REF,
        "PGRUNBOOK_SUPABASE_API_URL": url,
        **extra,
    }
    return Settings.load(env=env)


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Sleeper:
    """The provider's ``sleep``: records the waits and moves both clocks on instead."""

    def __init__(self, clock: Clock, fake: FakeSupabase):
        self.clock, self.fake = clock, fake
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds=seconds)
        self.fake.advance(seconds)


@pytest.fixture
def provider(api, clock, monkeypatch: pytest.MonkeyPatch) -> SupabaseProvider:
    monkeypatch.setenv("SUPABASE_ACCESS_TOKEN", TOKEN)
    made = get_provider("supabase", settings_for(api[1]), clock=clock)
    assert isinstance(made, SupabaseProvider)
    made.sleep = Sleeper(clock, api[0])
    return made


def a_state(**extra: Any) -> dict[str, Any]:
    return {"recovery_id": "20250307T000100Z", "target_time": "2025-03-06T12:00:00+00:00", **extra}


# -- the window ------------------------------------------------------------------------------


def test_window_is_the_physical_backup_range(api, provider):
    fake, _ = api
    window = provider.window()
    assert window.earliest == datetime(2025, 2, 28, tzinfo=UTC)
    assert window.latest == datetime(2025, 3, 7, tzinfo=UTC)
    assert window.earliest.tzinfo is not None and "in place" in window.note

    [request] = fake.requests
    assert (request.method, request.path) == ("GET", f"/v1/projects/{REF}/database/backups")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"] == f"pgrunbook/{__version__}"


@pytest.mark.parametrize(
    "backups",
    [
        {"pitr_enabled": False, "walg_enabled": True, "backups": [], "physical_backup_data": {}},
        {"pitr_enabled": False, "walg_enabled": False, "backups": []},
    ],
)
def test_window_without_pitr_says_to_enable_the_add_on(api, provider, backups):
    api[0].backups = backups
    with pytest.raises(PitrNotEnabled) as caught:
        provider.window()
    message = str(caught.value)
    assert f"point-in-time recovery is not enabled for Supabase project {REF}" in message
    assert "PITR add-on" in message and "\n" not in message


def test_pitr_enabled_without_a_window_yet_is_not_a_window(api, provider):
    api[0].backups = {"pitr_enabled": True, "walg_enabled": True, "backups": [], "physical_backup_data": {}}
    with pytest.raises(PitrNotEnabled, match="no recovery window yet"):
        provider.window()


@pytest.mark.parametrize("status", [400, 403])
def test_pitr_not_enabled_answered_as_an_error(api, provider, status):
    api[0].answer(
        "GET",
        "/database/backups",
        Answer(status, {"message": "Point in time recovery is not enabled for this project"}),
    )
    with pytest.raises(PitrNotEnabled) as caught:
        provider.window()
    assert REF in str(caught.value) and "enable the PITR add-on" in str(caught.value)


# -- rate limits -----------------------------------------------------------------------------


def test_an_endpoint_whose_limit_is_used_up_is_not_called_before_its_reset(api, provider):
    fake, _ = api
    fake.rate_limit = 2
    for _ in range(3):
        provider.window()
    # the second answer said Remaining 0: the third request waited for the reset, and was
    # never refused
    assert len(fake.of("GET", "/database/backups")) == 3
    [wait] = provider.sleep.waits
    assert 55 <= wait <= 60
    # other endpoints have their own limits
    provider.project_status()
    assert len(provider.sleep.waits) == 1


def test_a_429_is_waited_out_by_its_reset_then_retried(api, provider):
    fake, _ = api
    limits = {"X-RateLimit-Limit": "120", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "7"}
    fake.answer("GET", "/database/backups", Answer(429, {"message": "Too Many Requests"}, dict(limits)))
    assert provider.window().earliest == datetime(2025, 2, 28, tzinfo=UTC)
    assert provider.sleep.waits == [7]
    assert len(fake.of("GET", "/database/backups")) == 2


def test_a_429_that_outlasts_the_waits_is_retryable_and_says_when(api, provider):
    fake, _ = api
    limits = {"X-RateLimit-Limit": "120", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}
    refused = [Answer(429, {"message": "Too Many Requests"}, dict(limits)) for _ in range(3)]
    fake.answer("GET", "/database/backups", *refused)
    with pytest.raises(ProviderThrottled, match="resets in 30 s") as caught:
        provider.window()
    assert caught.value.retry_after == 30
    assert provider.sleep.waits == [30, 30]  # RATE_LIMIT_RETRIES waits, then the workflow retries
    assert len(fake.of("GET", "/database/backups")) == SupabaseProvider.RATE_LIMIT_RETRIES + 1


def test_a_429_with_a_long_reset_is_not_waited_for_here(api, provider):
    limits = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3600"}
    api[0].answer("GET", "/database/backups", Answer(429, {"message": "Too Many Requests"}, limits))
    with pytest.raises(ProviderThrottled, match="resets in 3600 s"):
        provider.window()
    assert provider.sleep.waits == []


def test_the_fake_refuses_beyond_its_limit_without_retry_after(api):
    """What the client is tested against: 429 past the limit, X-RateLimit-* on every answer,
    no Retry-After."""
    fake, _ = api
    fake.rate_limit = 1
    first = fake.handle("GET", f"/v1/projects/{REF}", {"Authorization": f"Bearer {TOKEN}"}, b"")
    second = fake.handle("GET", f"/v1/projects/{REF}", {"Authorization": f"Bearer {TOKEN}"}, b"")
    assert first.status == 200 and first.headers["X-RateLimit-Remaining"] == "0"
    assert second.status == 429 and "Retry-After" not in second.headers
    assert 1 <= int(second.headers["X-RateLimit-Reset"]) <= 60
    fake.advance(60)
    assert fake.handle("GET", f"/v1/projects/{REF}", {"Authorization": f"Bearer {TOKEN}"}, b"").status == 200


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_on_reads_are_transient(api, provider, status):
    api[0].answer("GET", "/database/backups", Answer(status, {"message": "upstream failed"}))
    with pytest.raises(
        ProviderUnavailable, match=f"HTTP {status} on GET /v1/projects/{REF}/database/backups"
    ):
        provider.window()


def test_no_answer_at_all_on_a_read_is_transient(clock, monkeypatch):
    monkeypatch.setenv("SUPABASE_ACCESS_TOKEN", TOKEN)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = SupabaseProvider(settings_for(f"http://127.0.0.1:{port}"), clock=clock)
    with pytest.raises(ProviderUnavailable, match="got no answer"):
        provider.window()
    # no restore point, and no database to back up either: no safety point, no recovery
    with pytest.raises(ProviderError, match="no safety point, so the recovery does not go ahead") as caught:
        provider.safety_point(a_state())
    assert "could not create the restore point" in str(caught.value)


def test_refused_token_unknown_project_and_other_refusals(api, provider):
    fake, _ = api
    fake.token = "sbp_some_other_token"
    with pytest.raises(ConfigError, match="refused the access token from SUPABASE_ACCESS_TOKEN"):
        provider.window()
    fake.token = TOKEN

    fake.answer("GET", "", Answer(404, {"message": "Project not found"}))
    with pytest.raises(ConfigError, match=f"no Supabase project {REF}"):
        provider.status(a_state(recovery={}))

    fake.answer("GET", "/database/backups", Answer(403, {"message": "Forbidden resource"}))
    with pytest.raises(ConfigError, match="may not read the backups"):
        provider.window()

    # a token that may read but not write backups: said, and no backup taken instead
    fake.answer("POST", "/database/backups/restore-point", Answer(403, {"message": "Forbidden resource"}))
    with pytest.raises(ConfigError, match="may not create the restore point"):
        provider.safety_point(a_state())

    fake.answer("POST", "/database/backups/restore-pitr", Answer(409, {"message": "a restore is running"}))
    with pytest.raises(ProviderError, match=r"Supabase refused to start .*: a restore is running"):
        provider.start(a_state())


def test_validation_errors_are_read_from_the_api_list_of_messages(api, provider):
    fake, _ = api
    fake.answer(
        "POST",
        "/database/backups/restore-pitr",
        Answer(400, {"message": ["recovery_time_target_unix must be an integer"], "error": "Bad Request"}),
    )
    with pytest.raises(ProviderError, match=r"recovery_time_target_unix must be an integer$"):
        provider.start(a_state())


def test_redirects_are_not_followed_with_the_token(api, provider):
    fake, url = api
    fake.answer("GET", "/database/backups", Answer(302, None, {"Location": f"{url}/elsewhere"}))
    with pytest.raises(ProviderError, match="redirected"):
        provider.window()
    assert [r.path for r in fake.requests] == [f"/v1/projects/{REF}/database/backups"]


# -- the safety point ------------------------------------------------------------------------


def test_safety_point_is_a_named_restore_point_once_available(api, provider):
    fake, _ = api
    fake.point_pending_reads = 2  # PENDING when made, and for two reads
    point = provider.safety_point(a_state(recovery_id="r42"))
    post, *reads = fake.requests
    assert (post.method, post.path) == ("POST", f"/v1/projects/{REF}/database/backups/restore-point")
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert post.headers["Content-Type"] == "application/json"
    assert post.body == {"name": "pgrunbook-r42"}
    assert [(r.method, r.path, r.query) for r in reads] == [
        ("GET", f"/v1/projects/{REF}/database/backups/restore-point", {"name": ["pgrunbook-r42"]})
    ] * 3
    assert provider.sleep.waits == [1, 2, 5]
    assert point["kind"] == "supabase restore point" and point["status"] == "AVAILABLE"
    assert point["name"] == "pgrunbook-r42" and point["completed_on"]
    assert point["created_at"] == NOW.isoformat()
    assert "undo" in point["summary"] and "pgrunbook-r42" in point["summary"]
    assert "fallback_reason" not in point
    json.dumps(point)


def test_a_restore_point_still_pending_is_waited_for_at_most_the_limit(api, provider):
    fake, _ = api
    fake.point_pending_reads = 10**6
    with pytest.raises(ProviderError) as caught:  # the fallback backup has no database here
        provider.safety_point(a_state())
    assert "was still PENDING 300 s after it was requested" in str(caught.value)
    assert sum(provider.sleep.waits) == SupabaseProvider.RESTORE_POINT_WAIT.total_seconds()
    assert max(provider.sleep.waits) == 10


def test_a_rate_limited_restore_point_is_not_a_reason_to_fall_back(api, provider):
    limits = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3600"}
    api[0].answer("POST", "/database/backups/restore-point", Answer(429, {"message": "Too Many"}, limits))
    with pytest.raises(ProviderThrottled):
        provider.safety_point(a_state())


def test_restore_point_names_fit_supabase_limit():
    long_id = "20250307T000100Z-5f2c9a1e"
    name = restore_point_name(long_id)
    assert len(name) <= RESTORE_POINT_NAME_LIMIT == 20
    assert name.startswith("pgrunbook-") and name == restore_point_name(long_id)
    assert name != restore_point_name("20250307T000100Z-5f2c9a1f")
    assert restore_point_name("R 42") == "pgrunbook-r-42"


# -- starting --------------------------------------------------------------------------------


def test_start_posts_the_target_as_whole_unix_seconds(api, provider):
    fake, _ = api
    recovery = provider.start(a_state(target_time="2025-03-01T12:00:00.750+02:00"))

    [post] = fake.of("POST", "/database/backups/restore-pitr")
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert post.headers["Content-Type"] == "application/json"
    assert post.body == {"recovery_time_target_unix": 1740823200}  # 2025-03-01T10:00:00Z
    assert type(post.body["recovery_time_target_unix"]) is int
    assert [(r.method, r.path) for r in fake.requests] == [
        ("GET", f"/v1/projects/{REF}"),
        ("GET", f"/v1/projects/{REF}/database/backups"),
        ("POST", f"/v1/projects/{REF}/database/backups/restore-pitr"),
    ]
    assert recovery["recovery_time_target_unix"] == 1740823200
    assert recovery["requested_at"] == NOW.isoformat()
    assert recovery["status_before"] == "ACTIVE_HEALTHY"
    assert recovery["already_restoring"] is False and recovery["seen_restoring"] is False
    json.dumps(recovery)  # the workflow stores it in its JSON state
    assert provider.recovery_point(a_state(recovery=recovery)) == datetime(2025, 3, 1, 10, tzinfo=UTC)


def test_start_does_not_ask_twice_when_already_restoring(api, provider):
    fake, _ = api
    fake.statuses = ["RESTORING"]
    recovery = provider.start(a_state())
    assert fake.of("POST", "/database/backups/restore-pitr") == []
    assert recovery["already_restoring"] is True and recovery["seen_restoring"] is True
    assert "no second restore-pitr request" in recovery["note"]


@pytest.mark.parametrize(
    "status",
    [
        "COMING_UP",
        "INACTIVE",
        "RESTORE_FAILED",
        "UPGRADING",
        "PAUSE_FAILED",
        "PAUSING",
        "RESTARTING",
        "UNKNOWN",
    ],
)
def test_start_refuses_a_project_that_is_not_active(api, provider, status):
    fake, _ = api
    fake.statuses = [status]
    with pytest.raises(ProviderError, match=f"is {status}: .*nothing was started"):
        provider.start(a_state())
    assert fake.of("POST", "/database/backups/restore-pitr") == []


@pytest.mark.parametrize(
    "target", ["2025-02-27T23:59:59Z", "2025-03-07T00:00:01+00:00", "2025-03-06T12:00:00", "yesterday"]
)
def test_start_refuses_a_target_it_cannot_reach(api, provider, target):
    fake, _ = api
    with pytest.raises(InvalidTarget):
        provider.start(a_state(target_time=target))
    assert fake.of("POST", "/database/backups/restore-pitr") == []


def test_start_throttled_before_anything_started(api, provider):
    fake, _ = api
    limits = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3600"}
    fake.answer("POST", "/database/backups/restore-pitr", Answer(429, {"message": "slow down"}, limits))
    with pytest.raises(ProviderThrottled):
        provider.start(a_state())
    provider.start(a_state())  # what the workflow does: try again
    assert len(fake.of("POST", "/database/backups/restore-pitr")) == 2


def test_server_error_on_the_restore_request_is_not_retryable(api, provider):
    api[0].answer("POST", "/database/backups/restore-pitr", Answer(503, {"message": "try later"}))
    with pytest.raises(ProviderError, match="unknown") as caught:
        provider.start(a_state())
    assert type(caught.value) is ProviderError


# -- polling ---------------------------------------------------------------------------------


def test_status_waits_for_the_restore_to_show_then_for_health(api, provider, clock):
    fake, _ = api
    fake.statuses = ["ACTIVE_HEALTHY", "ACTIVE_HEALTHY", "RESTORING", "COMING_UP", "ACTIVE_HEALTHY"]
    state = a_state()
    state["recovery"] = provider.start(state)  # reads the first ACTIVE_HEALTHY

    seen = []
    for _ in range(4):
        clock.advance(seconds=60)
        result = provider.status(state)
        seen.append((result.status, result.done, result.failed))
    assert seen == [
        ("ACTIVE_HEALTHY", False, False),  # Supabase has not switched to RESTORING yet
        ("RESTORING", False, False),
        ("COMING_UP", False, False),
        ("ACTIVE_HEALTHY", True, False),
    ]
    recovery = state["recovery"]
    assert recovery["polls"] == 4 and recovery["seen_restoring"] is True
    assert recovery["done_by"] == "status"
    assert [h["status"] for h in recovery["status_history"]] == [
        "ACTIVE_HEALTHY",
        "RESTORING",
        "COMING_UP",
        "ACTIVE_HEALTHY",
    ]
    json.dumps(state)


def test_healthy_throughout_is_done_only_after_the_grace_period(api, provider, clock):
    state = a_state()
    state["recovery"] = provider.start(state)
    clock.advance(seconds=60)
    assert provider.status(state).done is False
    clock.advance(seconds=SupabaseProvider.START_GRACE.total_seconds() - 60)
    result = provider.status(state)
    assert result.done is True and "never seen RESTORING" in result.detail
    assert state["recovery"]["done_by"] == "grace period"


def test_restore_failed_fails_the_recovery(api, provider, clock):
    fake, _ = api
    state = a_state()
    state["recovery"] = provider.start(state)
    fake.statuses = ["RESTORING", "RESTORE_FAILED"]
    assert provider.status(state).done is False
    with pytest.raises(RecoveryFailed) as caught:
        provider.status(state)
    message = str(caught.value)
    assert REF in message and "RESTORE_FAILED" in message and "\n" not in message


def test_only_restoring_is_evidence_of_a_restore(api, provider, clock):
    """A restart (or any status but RESTORING) between the request and a healthy project is
    not the restore: healthy is done only after the grace period, and says what was seen."""
    fake, _ = api
    state = a_state()
    state["recovery"] = provider.start(state)
    fake.statuses = ["RESTARTING", "COMING_UP", "UNKNOWN", "ACTIVE_HEALTHY"]
    seen = []
    for _ in range(4):
        clock.advance(seconds=60)
        seen.append(provider.status(state).done)
    assert seen == [False, False, False, False] and state["recovery"]["seen_restoring"] is False
    clock.advance(seconds=60)
    result = provider.status(state)
    assert result.done and state["recovery"]["done_by"] == "grace period"
    assert "seen: COMING_UP, RESTARTING, UNKNOWN" in result.detail


def test_unhealthy_after_the_restore_is_never_done(api, provider, clock):
    fake, _ = api
    state = a_state()
    state["recovery"] = provider.start(state)
    fake.statuses = ["RESTORING", "ACTIVE_UNHEALTHY"]
    assert provider.status(state).done is False
    waited = timedelta(0)
    while waited < SupabaseProvider.UNHEALTHY_LIMIT:
        result = provider.status(state)
        assert result.done is False and "ACTIVE_UNHEALTHY" in result.detail
        clock.advance(minutes=5)
        waited += timedelta(minutes=5)
    with pytest.raises(RecoveryFailed, match=r"came back from the recovery .* ACTIVE_UNHEALTHY"):
        provider.status(state)


def test_unhealthy_then_healthy_after_the_restore_is_done(api, provider, clock):
    fake, _ = api
    state = a_state()
    state["recovery"] = provider.start(state)
    fake.statuses = ["RESTORING", "ACTIVE_UNHEALTHY", "ACTIVE_HEALTHY"]
    assert [provider.status(state).done for _ in range(3)] == [False, False, True]
    assert "unhealthy_since" not in state["recovery"]


@pytest.mark.parametrize("status", ["PAUSE_FAILED", "INACTIVE", "INIT_FAILED", "REMOVED"])
def test_statuses_that_end_a_recovery(api, provider, status):
    fake, _ = api
    state = a_state()
    state["recovery"] = provider.start(state)
    fake.statuses = ["RESTORING", status]
    provider.status(state)
    with pytest.raises(RecoveryFailed, match=f"is {status}"):
        provider.status(state)


def test_status_read_failures_are_transient(api, provider):
    api[0].answer("GET", "", Answer(500, {"message": "boom"}))
    with pytest.raises(ProviderUnavailable):
        provider.status(a_state(recovery={}))


def test_in_place_recovery_endpoint_and_cutover(provider):
    state = a_state(recovery={})
    assert provider.endpoint(state) == provider.settings.conninfo()
    assert "nothing to switch" in provider.cutover(state)["note"]
    assert provider.recovery_point(state) == datetime(2025, 3, 6, 12, tzinfo=UTC)


# -- the token -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [TOKEN, f"  {TOKEN}\n", json.dumps({"access_token": TOKEN}), json.dumps({"token": TOKEN})],
    ids=["plain", "plain-with-newline", "json-access_token", "json-token"],
)
def test_token_from_a_secret_in_its_own_region(api, clock, secret):
    fake, url = api
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
            Name="pgrunbook/supabase-token", SecretString=secret
        )["ARN"]
        provider = SupabaseProvider(
            settings_for(url, PGRUNBOOK_SUPABASE_TOKEN_SECRET_ARN=arn, AWS_REGION="us-east-1"), clock=clock
        )
        provider.window()
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {TOKEN}"


def test_token_secret_problems_are_configuration_errors(api, clock):
    _, url = api
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        arn = client.create_secret(Name="wrong-shape", SecretString=json.dumps({"key": TOKEN}))["ARN"]
        with pytest.raises(ConfigError, match="without an access_token or token") as caught:
            SupabaseProvider(settings_for(url, PGRUNBOOK_SUPABASE_TOKEN_SECRET_ARN=arn), clock=clock).window()
        assert TOKEN not in str(caught.value)

        missing = arn.replace("wrong-shape", "missing")
        with pytest.raises(ConfigError, match=f"cannot read the Supabase token secret {missing}") as caught:
            SupabaseProvider(
                settings_for(url, PGRUNBOOK_SUPABASE_TOKEN_SECRET_ARN=missing), clock=clock
            ).window()
        assert "\n" not in str(caught.value)
    assert api[0].requests == []


def test_token_from_the_environment(api, clock, monkeypatch):
    fake, url = api
    monkeypatch.setenv("SUPABASE_ACCESS_TOKEN", TOKEN)
    SupabaseProvider(settings_for(url), clock=clock).window()
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {TOKEN}"


def test_no_token_names_both_places(api, clock):
    with pytest.raises(ConfigError) as caught:
        SupabaseProvider(settings_for(api[1]), clock=clock).window()
    assert "PGRUNBOOK_SUPABASE_TOKEN_SECRET_ARN" in str(caught.value)
    assert "SUPABASE_ACCESS_TOKEN" in str(caught.value)
    assert api[0].requests == []


def test_the_token_never_appears_in_errors(api, provider):
    fake, _ = api
    echo = {"message": f"invalid request with Authorization: Bearer {TOKEN}"}
    failures = [
        ("GET", "/database/backups", Answer(400, echo), provider.window),
        ("GET", "/database/backups", Answer(403, echo), provider.window),
        ("GET", "/database/backups", Answer(500, echo), provider.window),
        (
            "POST",
            "/database/backups/restore-point",
            Answer(502, echo),
            lambda: provider.safety_point(a_state()),
        ),
        (
            "GET",
            "",
            Answer(429, echo, {"X-RateLimit-Reset": TOKEN}),
            lambda: provider.status(a_state(recovery={})),
        ),
    ]
    for method, suffix, answer, call in failures:
        fake.answer(method, suffix, *[answer] * 3)  # the same answer to every retry
        with pytest.raises(Exception) as caught:
            call()
        assert TOKEN not in str(caught.value), (method, suffix, answer.status)
        assert TOKEN not in repr(caught.value.args)
    assert MASK in str(caught.value) or "rate-limiting" in str(caught.value)


@pytest.mark.parametrize(
    "ref",
    [
        "abcdefghijklmnopqrs",
        "abcdefghijklmnopqrstu",
        "abcdefghij0123456789",
        "ABCDEFGHIJKLMNOPQRST",
        "abcdefghijklmnopqrs-",
    ],
)
def test_a_project_ref_is_twenty_lower_case_letters_before_any_call(api, clock, ref, monkeypatch):
    monkeypatch.setenv("SUPABASE_ACCESS_TOKEN", TOKEN)
    with pytest.raises(ConfigError, match="not a Supabase project reference"):
        settings_for(api[1], PGRUNBOOK_SUPABASE_PROJECT_REF=ref)
    settings = settings_for(api[1])
    settings.supabase_project_ref = ref  # past the settings' own check
    with pytest.raises(ConfigError, match="not a Supabase project reference"):
        SupabaseProvider(settings, clock=clock)
    assert api[0].requests == []


def test_the_fake_validates_what_the_definition_does(api):
    """The requests the client is tested with pass the same checks the real API makes."""
    fake, _ = api
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    base = f"/v1/projects/{REF}/database/backups"
    bad = [
        ("GET", "/v1/projects/abcdefghij0123456789", b""),
        ("POST", f"{base}/restore-pitr", json.dumps({"recovery_time_target_unix": 1.5}).encode()),
        ("POST", f"{base}/restore-pitr", json.dumps({"recovery_time_target_unix": "1741262400"}).encode()),
        ("POST", f"{base}/restore-pitr", json.dumps({"target": 1741262400}).encode()),
        ("POST", f"{base}/restore-point", json.dumps({"name": "x" * 21}).encode()),
        ("POST", f"{base}/restore-point", b"{}"),
    ]
    for method, path, raw in bad:
        answer = fake.handle(method, path, auth, raw)
        assert answer.status == 400 and isinstance(answer.body["message"], list), (method, path, raw)
    made = fake.handle("POST", f"{base}/restore-point", auth, b'{"name": "pgrunbook-r1"}')
    assert made.status == 201 and made.body == {
        "name": "pgrunbook-r1",
        "status": "PENDING",
        "completed_on": None,
    }


def test_a_project_ref_is_required(api):
    settings = settings_for(api[1])
    settings.supabase_project_ref = None
    with pytest.raises(ConfigError, match="PGRUNBOOK_SUPABASE_PROJECT_REF"):
        get_provider("supabase", settings)
