"""The Lambda handlers in functions/, invoked in-process with a Lambda context, under moto
(S3 in two regions, SNS, Secrets Manager), against the embedded PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

import boto3
import pytest

from pgrunbook.adapters.s3.store import b64
from pgrunbook.catalog.metadata_mirror import Mirror
from pgrunbook.entrypoints.aws_lambda import BadEvent
from pgrunbook.operations.context import OperationContext, run_operation
from tests.entrypoints.aws_lambda.conftest import PASSWORD
from tests.lambda_env import Context, load_handler

SCHEDULED = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}


def emf(out: str) -> list[dict]:
    """The embedded-metric-format blobs in a captured stdout."""
    blobs = []
    for line in out.splitlines():
        if '"_aws"' in line:
            blobs.append(json.loads(line))
    return blobs


def invoke(name: str, event: dict | None = None) -> dict:
    return load_handler(name)(event if event is not None else SCHEDULED, Context())


def test_backup_and_verify_handlers_happy_path(env, s3, capfd):
    report = invoke("backup")
    assert report["status"] == "ok", report["findings"]
    assert report["figures"]["rows"] == 550
    assert report["location"].startswith(f"s3://{s3.primary}/pgrunbook/{env.source.dbname}/reports/backup/")
    assert [k for k in s3.keys("dr") if k.endswith("manifest.json")]

    verify = invoke("verify")
    assert verify["status"] == "ok", json.dumps(
        [f for f in verify["findings"] if f["severity"] not in ("ok", "info")], indent=1
    )
    checks = {f["check"] for f in verify["findings"]}
    assert {"backup_age", "files_primary", "files_dr", "backup_failure_rate", "orphaned_tasks"} <= checks
    assert verify["detail"]["verified_backups"]["dr"] == [report["figures"]["backup_id"]]
    assert env.messages() == [], "ok reports send nothing"

    out, err = capfd.readouterr()
    metrics = emf(out)
    backup_metrics = next(m for m in metrics if "BackupSizeBytes" in m)
    assert backup_metrics["Database"] == env.source.dbname
    assert backup_metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "pgrunbook"
    assert any("BackupAgeHours" in m for m in metrics)
    logs = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"level"' in line]
    assert any(r.get("job") == "verify" and r.get("database") == env.source.dbname for r in logs)
    assert PASSWORD not in out + err


def test_a_second_concurrent_backup_exits_cleanly(env):
    holder = Mirror.open(env.settings.conninfo(), env.settings.database_label, "on")
    assert holder.try_lock()
    try:
        report = invoke("backup")
    finally:
        holder.close()
    assert report["status"] == "skipped" and "another backup" in report["skipped"]
    assert env.messages() == []


def test_restore_test_handler_reports_integrity_and_metrics(env, capfd):
    invoke("backup")
    report = invoke("restore-test")
    assert report["status"] == "ok", report["findings"]
    assert report["figures"]["integrity_pct"] == 100.0
    assert any(f["check"] == "restored:orphaned_tasks" for f in report["findings"])
    out, _ = capfd.readouterr()
    blob = next(m for m in emf(out) if "RestoreIntegrityPct" in m)
    assert blob["RestoreIntegrityPct"] == [100.0] and blob["RestoreDurationSeconds"][0] > 0
    units = {d["Name"]: d["Unit"] for d in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units["RestoreIntegrityPct"] == "Percent" and units["RestoreDurationSeconds"] == "Seconds"


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_damaged_dr_object_is_reported_with_its_key(damage, env, s3):
    backup = invoke("backup")
    dr = env.settings.dr_store()
    keys = [k for k in s3.keys("dr") if k.endswith(".dat.gz")]
    victim = keys[0]
    client = s3.client("dr")
    if damage == "corrupt":
        body = bytearray(client.get_object(Bucket=s3.dr, Key=victim)["Body"].read())
        body[0] ^= 0xFF
        client.put_object(
            Bucket=s3.dr, Key=victim, Body=bytes(body), ChecksumSHA256=b64(hashlib.sha256(body).digest())
        )
    else:
        client.delete_object(Bucket=s3.dr, Key=victim)

    report = invoke("verify")
    assert report["status"] == "critical"
    [finding] = [f for f in report["findings"] if f["check"] == "files_dr" and f["severity"] == "critical"]
    assert victim in finding["message"] and finding["details"]["backup_id"] == backup["figures"]["backup_id"]
    assert dr.uri(victim) in " ".join(finding["details"]["problems"])
    [message] = env.messages()
    assert message["Subject"].startswith("CRITICAL - Database Backup Verification - ")
    for field in ("Summary:", "Impact:", "Current Status:", "ETA for Resolution:", "Next Update:"):
        assert field in message["Message"]
    assert victim in message["Message"]


def test_a_violated_user_check_is_reported_with_the_offending_rows(env):
    from pgrunbook.adapters.postgres.connection import Database

    invoke("backup")
    with Database.connect(env.settings.conninfo()) as db:
        db.run("INSERT INTO tasks VALUES (9001, 777, 1, 'orphan'), (9002, 778, 1, 'orphan too')")
    report = invoke("verify")
    [finding] = [f for f in report["findings"] if f["check"] == "orphaned_tasks"]
    assert finding["severity"] == "critical"
    assert finding["details"]["count"] == 2
    assert {row["task_id"] for row in finding["details"]["rows"]} == {9001, 9002}
    [message] = env.messages()
    assert "orphaned_tasks" in message["Message"] and "9001" in message["Message"]


def test_rls_disabled_table_is_critical_with_the_supabase_profile(env, monkeypatch):
    from pgrunbook.adapters.postgres.connection import Database

    monkeypatch.setenv("PGRUNBOOK_PROFILE", "supabase")
    invoke("backup")
    with Database.connect(env.settings.conninfo()) as db:
        db.run("CREATE TABLE public.leaky (id int PRIMARY KEY, secret text)")
    report = invoke("verify")
    [finding] = [f for f in report["findings"] if f["check"] == "rls_disabled"]
    assert finding["severity"] == "critical" and "leaky" in json.dumps(finding)
    assert len(env.messages()) == 1


def test_backup_age_thresholds_are_exact(env):
    invoke("backup")
    from pgrunbook.catalog.backups import Catalog

    snapshot = Catalog(env.settings.primary_store()).latest().snapshot_time
    ctx = lambda at: OperationContext(env.settings, clock=lambda: at, store_reports=False)  # noqa: E731
    expectations = [
        (timedelta(hours=26), "ok"),
        (timedelta(hours=26, seconds=1), "warning"),
        (timedelta(hours=48), "warning"),
        (timedelta(hours=48, seconds=1), "critical"),
    ]
    for age, severity in expectations:
        report = run_operation("verify", ctx(snapshot + age), check_database=False)
        [finding] = [f for f in report.findings if f.check == "backup_age"]
        assert finding.severity == severity, (age, finding.message)
    assert env.messages() != []  # the warning and critical runs were sent


class StepClock:
    """The drill's clock: ``start`` on the first reading, ``start + elapsed`` afterwards."""

    def __init__(self, start: datetime, elapsed: timedelta):
        self.start, self.elapsed, self.calls = start, elapsed, 0

    def __call__(self) -> datetime:
        self.calls += 1
        return self.start if self.calls == 1 else self.start + self.elapsed


@pytest.mark.parametrize(
    ("since_snapshot", "rpo_severity", "status"),
    [(timedelta(minutes=90), "ok", "ok"), (timedelta(hours=5), "critical", "critical")],
)
def test_drill_measures_rto_and_rpo_from_a_known_history(since_snapshot, rpo_severity, status, env):
    from pgrunbook.catalog.backups import Catalog

    invoke("backup")
    snapshot = Catalog(env.settings.dr_store()).latest().snapshot_time
    clock = StepClock(snapshot + since_snapshot, timedelta(minutes=35))
    report = run_operation("dr-drill", OperationContext(env.settings, clock=clock))
    assert report.figures["rto_hours"] == pytest.approx(35 / 60, abs=1e-3)
    assert report.figures["rpo_hours"] == pytest.approx(since_snapshot.total_seconds() / 3600, abs=1e-3)
    assert report.figures["rto_target_met"] is True
    assert report.figures["rpo_target_met"] is (since_snapshot <= timedelta(hours=1))
    [rpo] = [f for f in report.findings if f.check == "rpo"]
    assert rpo.severity == rpo_severity
    assert report.status == status
    resolved = report.detail["resolved"]
    assert resolved["downtime"].startswith("0.58 h")
    assert "integrity 100.00 %" in resolved["validation"]
    assert report.detail["resolved_notice"]["subject"].startswith("RESOLVED - Database Recovery Completed")
    assert len(env.messages()) == (0 if status == "ok" else 1)


def test_drill_falls_back_to_an_older_dr_backup_and_keeps_a_trend(env, s3, monkeypatch):
    from pgrunbook.operations.status import build_status

    first = invoke("backup")["figures"]["backup_id"]
    second = invoke("backup")["figures"]["backup_id"]
    dr = env.settings.dr_store()
    toc = dr.key(second, "toc.dat")
    s3.client("dr").put_object(Bucket=s3.dr, Key=toc, Body=b"damaged")
    report = invoke("dr-drill")
    assert report["figures"]["backup_id"] == first
    assert [a["backup_id"] for a in report["detail"]["attempts"]] == [second, first]
    assert report["status"] == "critical"  # the newest DR backup did not restore
    invoke("dr-drill")
    trend = build_status(env.settings).drill_trend
    assert len(trend) == 2 and all(d["rto_hours"] is not None for d in trend)


def test_an_unreachable_database_is_critical_and_the_secret_stays_secret(env, s3, monkeypatch, capfd):
    invoke("backup")
    capfd.readouterr()
    broken = {"host": "127.0.0.1", "port": 1, "username": "app", "password": PASSWORD, "dbname": "app"}
    arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="pgrunbook/moved-db", SecretString=json.dumps(broken)
    )["ARN"]
    monkeypatch.setenv("PGRUNBOOK_DATABASE_SECRET_ARN", arn)
    monkeypatch.setenv("PGRUNBOOK_DATABASE_NAME", env.source.dbname)  # the same catalog
    report = invoke("verify")
    [finding] = [f for f in report["findings"] if f["check"] == "database"]
    assert finding["severity"] == "critical" and "cannot connect" in finding["message"]
    messages = env.messages()
    out, err = capfd.readouterr()
    stored = b"".join(
        s3.client().get_object(Bucket=s3.primary, Key=k)["Body"].read()
        for k in s3.keys("primary", "pgrunbook/")
        if "/reports/" in k
    )
    assert PASSWORD not in out + err + json.dumps(messages) + json.dumps(report)
    assert PASSWORD.encode() not in stored


def test_bad_events_are_refused():
    with pytest.raises(BadEvent, match="does not take"):
        invoke("verify", {"bogus": 1})
    with pytest.raises(BadEvent, match="--recent-days must be an integer, not 'seven'"):
        invoke("verify", {"recent_days": "seven"})


def test_retention_and_health_handlers(env, s3, capfd):
    invoke("backup")
    retention = invoke("retention", {"dry_run": True})
    assert retention["status"] == "ok" and retention["figures"]["dry_run"] is True
    assert retention["figures"]["primary_backups_kept"] == 1 and retention["figures"]["dr_backups_kept"] == 1
    retention = invoke("retention")
    assert retention["status"] == "ok" and retention["figures"]["primary_backups_deleted"] == 0
    health = invoke("health")
    assert health["operation"] == "health" and health["figures"]["database_size_bytes"] > 0
    assert any(f["check"] == "slow_statements" for f in health["findings"])
    assert env.messages() == []
    out, _ = capfd.readouterr()
    assert any("DatabaseSizeBytes" in m for m in emf(out))
    stored = [k for k in s3.keys("primary") if "/reports/" in k]
    assert {k.split("/reports/")[1].split("/")[0] for k in stored} >= {"backup", "retention", "health"}
    # the weekly status page, from the function as deployed: the page beside the reports
    page = invoke("status-page")
    assert page["status"] == "ok" and page["figures"]["verdict"] in ("ok", "warning")
    [key] = [k for k in s3.keys("primary") if "/pages/status-" in k]
    assert page["figures"]["page"].endswith(key) and env.messages() == []


def test_the_drill_never_uses_the_primary_regions_restore_target(env, monkeypatch):
    invoke("backup")
    monkeypatch.delenv("PGRUNBOOK_DR_RESTORE_TARGET_URL")
    monkeypatch.setenv("PGRUNBOOK_RESTORE_TARGET_URL", "postgresql://nobody@127.0.0.1:1/primary-region-only")
    report = invoke("dr-drill")
    assert report["figures"]["recovered"] is True  # restored into the embedded server instead
    assert "127.0.0.1" not in json.dumps(report["detail"])


def test_a_finished_recovery_emits_its_downtime_and_data_loss_metrics(env, capfd):
    capfd.readouterr()
    state = {
        "recovery_id": "20250907T151200.000Z-3fa9c1",
        "database": env.settings.database_label,
        "provider": "logical",
        "target_time": "2025-09-07T14:30:00+00:00",
        "started_at": "2025-09-07T15:12:00+00:00",
        "maintenance": {"parameter": None, "enabled_at": "2025-09-07T15:12:05+00:00"},
        "recovery_point": "2025-09-07T14:00:00+00:00",
        "verification": {"tables": 2, "rows": 550, "checks": []},
        "warnings": [],
    }
    result = invoke("pitr", {"phase": "finish", "state": state})
    assert result["outcome"] == "recovered" and "metrics" not in result  # emitted, not passed on
    [blob] = [b for b in emf(capfd.readouterr().out) if "PitrDowntimeSeconds" in b]
    assert blob["Database"] == env.settings.database_label
    assert blob["PitrDataLossSeconds"] == [72 * 60 + 5]  # recovery point 14:00 to writes stopped 15:12:05
    assert blob["PitrDowntimeSeconds"][0] > 0
