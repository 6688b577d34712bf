"""Several databases from one cdk.json (issue 17): the ``databases`` list, synthesized once
with cdk-nag on, and the single-database form's resources kept as they were."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk

from infra.app import build
from infra.config import MAX_DATABASES, ConfigurationError, Deployment

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
CDK_CONTEXT = json.loads((ROOT / "cdk.json").read_text())["context"]
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:pgrunbook/{}-AbCdEf"
SINGLE_FORM = ROOT / "tests" / "fixtures" / "single_database_resources.json"


def listed(databases: list[dict] | None = None, **top) -> dict:
    """cdk.json's object in the list form: its shared settings, the databases."""
    base = {
        k: v for k, v in CDK_CONTEXT["pgrunbook"].items() if k not in ("database_name", "database_secret_arn")
    }
    return {
        **base,
        "account": ACCOUNT,
        **top,
        "databases": databases
        if databases is not None
        else [
            {"database_name": "app", "database_secret_arn": SECRET.format("app")},
            {
                "database_name": "billing",
                "database_secret_arn": SECRET.format("billing"),
                "runner": "lambda",
                "schedules": {"backup": "cron(30 1 * * ? *)"},
                "thresholds": {"backup_age_hours": [12, 24]},
            },
        ],
    }


# -- configuration -----------------------------------------------------------------------


def test_each_database_has_its_own_settings_over_the_shared_defaults():
    deployment = Deployment.from_context(
        listed(thresholds={"rto_hours": [3, 6]}, profile="default", hourly_backups=True)
    )
    app, billing = deployment.databases
    assert deployment.listed and deployment.stem == "pgrunbook"
    assert (app.name, billing.name) == ("pgrunbook-app", "pgrunbook-billing")
    # a database's object is merged key by key over the top level's, over the defaults
    assert billing.schedules["backup"] == "cron(30 1 * * ? *)"
    assert app.schedules["backup"] == CDK_CONTEXT["pgrunbook"]["schedules"]["backup"]
    assert billing.thresholds["backup_age_hours"] == [12, 24] and billing.thresholds["rto_hours"] == [3, 6]
    assert app.thresholds["backup_age_hours"] == [26, 48] and app.thresholds["rto_hours"] == [3, 6]
    assert billing.runner_mode("backup") == "lambda" and app.runner_mode("backup") == "auto"
    assert app.hourly_backups and billing.hourly_backups  # a top-level value is every database's
    # what they share: one bucket and key per region
    assert (
        app.bucket_name("1", "us-east-1")
        == billing.bucket_name("1", "us-east-1")
        == "pgrunbook-backups-1-us-east-1"
    )
    assert app.key_alias == billing.key_alias == "alias/pgrunbook-backups"
    assert app.maintenance_parameter != billing.maintenance_parameter


def test_the_single_database_form_keeps_its_names():
    single = Deployment.from_context({**CDK_CONTEXT["pgrunbook"], "account": ACCOUNT})
    [config] = single.databases
    assert not single.listed and single.stem == config.name == "pgrunbook-app"
    assert config.bucket_name("1", "us-east-1") == "pgrunbook-app-backups-1-us-east-1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"databases": []}, "must be a list of objects"),
        ({"databases": "app"}, "must be a list of objects"),
        ({"database_name": "app"}, "database_name belongs in each entry"),
        (
            {
                "databases": [
                    {"database_name": "app", "database_secret_arn": SECRET.format("a"), "prefix": "x"}
                ]
            },
            r"databases\[0\]\.prefix is shared by every database",
        ),
        (
            {"databases": [{"database_name": "app", "database_secret_arn": SECRET.format("a"), "chat": {}}]},
            r"databases\[0\]\.chat is shared",
        ),
        (
            {
                "databases": [
                    {"database_name": "app", "database_secret_arn": SECRET.format("a")},
                    {"database_name": "app", "database_secret_arn": SECRET.format("b")},
                ]
            },
            "lists app more than once",
        ),
        (
            {
                "databases": [
                    {"database_name": "app", "database_secret_arn": SECRET.format("a")},
                    {"database_name": "crm", "database_secret_arn": SECRET.format("a")},
                ]
            },
            "same database_secret_arn",
        ),
        ({"databases": [{"database_name": "app"}]}, r"set pgrunbook\.databases\[0\]\.database_secret_arn"),
        ({"bogus": 1}, "unknown pgrunbook settings: bogus"),
        ({"listed": True}, "unknown pgrunbook settings: listed"),
        (
            {
                "databases": [
                    {"database_name": "app-1", "database_secret_arn": SECRET.format("a")},
                    {"database_name": "app1", "database_secret_arn": SECRET.format("b")},
                ]
            },
            "app-1 and app1 would name their stack outputs the same",
        ),
        (
            {"databases": [{"database_name": "App!", "database_secret_arn": SECRET.format("a")}]},
            "database_name must be",
        ),
        (
            {
                "databases": [
                    {"database_name": "app", "database_secret_arn": SECRET.format("a"), "pitr": {"x": 1}}
                ]
            },
            "unknown pitr",
        ),
        (
            {
                "databases": [
                    {"database_name": f"db{i}", "database_secret_arn": SECRET.format(i)}
                    for i in range(MAX_DATABASES + 1)
                ]
            },
            f"at most {MAX_DATABASES} databases",
        ),
    ],
)
def test_a_wrong_databases_list_is_refused_with_what_to_fix(change, message):
    raw = {**listed(), **change}
    with pytest.raises(ConfigurationError, match=message):
        Deployment.from_context(raw)


# -- the deployment ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """Two databases, synthesized once (bundling skipped) with cdk-nag on: synth raises on any
    unacknowledged finding, in the nested stacks too."""
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(
        outdir=str(outdir),
        context={**CDK_CONTEXT, "pgrunbook": listed(), "aws:cdk:bundling-stacks": []},
    )
    primary, dr = build(app)
    assembly = Path(app.synth().directory)

    def template(stack, database: str | None = None) -> dict:
        if database is None:
            return json.loads((assembly / f"{stack.stack_name}.template.json").read_text())
        nested = stack.databases[database].scope
        return json.loads((assembly / nested.template_file).read_text())

    return {"primary": primary, "dr": dr, "template": template, "outdir": assembly}


def of_type(template: dict, kind: str) -> dict:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def statements(template: dict) -> list[dict]:
    return [
        s
        for policy in of_type(template, "AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_one_primary_and_one_dr_stack_share_the_buckets_the_topic_and_the_network(deployed):
    primary, dr, template = deployed["primary"], deployed["dr"], deployed["template"]
    assert (primary.stack_name, dr.stack_name) == ("pgrunbook-primary", "pgrunbook-dr")
    for stack, region in ((primary, "us-east-1"), (dr, "us-west-2")):
        parent = template(stack)
        [bucket] = [
            b for b in of_type(parent, "AWS::S3::Bucket").values() if "ObjectLockEnabled" in b["Properties"]
        ]
        assert bucket["Properties"]["BucketName"] == {
            "Fn::Join": ["", ["pgrunbook-backups-", {"Ref": "AWS::AccountId"}, f"-{region}"]]
        }
        [topic] = of_type(parent, "AWS::SNS::Topic").values()
        assert topic["Properties"]["TopicName"] == "pgrunbook-alerts"
        assert len(of_type(parent, "AWS::EC2::VPC")) == 1  # one task network for every database
        assert len(of_type(parent, "AWS::CloudFormation::Stack")) == 2  # a nested stack per database
        assert not of_type(parent, "AWS::Lambda::Function")
        # a handoff-expiry rule per database's runs/ prefix
        rules = {r["Id"]: r.get("Prefix") for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
        assert rules["expire-phase-handoffs-app"] == "pgrunbook/app/runs/"
        assert rules["expire-phase-handoffs-billing"] == "pgrunbook/billing/runs/"
        for name in ("app", "billing"):
            assert len(template(stack, name)["Resources"]) < 500  # CloudFormation's limit per stack


def test_each_database_has_its_own_functions_settings_and_schedules(deployed):
    primary, template = deployed["primary"], deployed["template"]
    for name, backup_schedule in (("app", "cron(0 2 * * ? *)"), ("billing", "cron(30 1 * * ? *)")):
        nested = template(primary, name)
        functions = {
            f["Properties"]["FunctionName"]: f["Properties"]
            for f in of_type(nested, "AWS::Lambda::Function").values()
        }
        assert f"pgrunbook-{name}-backup" in functions
        assert all(fn.startswith(f"pgrunbook-{name}-") for fn in functions)  # its own functions only
        env = functions[f"pgrunbook-{name}-backup"]["Environment"]["Variables"]
        assert env["PGRUNBOOK_DATABASE_NAME"] == name
        assert env["PGRUNBOOK_DATABASE_SECRET_ARN"] == SECRET.format(name)
        assert env["PGRUNBOOK_PREFIX"] == "pgrunbook"
        # the shared buckets, by name: one per region, the same for every database
        for variable, region in (("PGRUNBOOK_BUCKET", "us-east-1"), ("PGRUNBOOK_DR_BUCKET", "us-west-2")):
            assert env[variable] == {
                "Fn::Join": ["", ["pgrunbook-backups-", {"Ref": "AWS::AccountId"}, f"-{region}"]]
            }
        schedules = [
            r["Properties"].get("ScheduleExpression") for r in of_type(nested, "AWS::Events::Rule").values()
        ]
        assert backup_schedule in schedules
    # billing runs every job in Lambda: no dispatch state machine, no Fargate task
    billing = template(primary, "billing")
    machines = [
        m["Properties"]["StateMachineName"]
        for m in of_type(billing, "AWS::StepFunctions::StateMachine").values()
    ]
    assert sorted(machines) == [
        "pgrunbook-billing-migrate",
        "pgrunbook-billing-pitr",
        "pgrunbook-billing-recover-tables",
    ]
    assert "pgrunbook-app-backup" in [
        m["Properties"]["StateMachineName"]
        for m in of_type(template(primary, "app"), "AWS::StepFunctions::StateMachine").values()
    ]
    outputs = template(primary)["Outputs"]
    assert {"AppPitrStateMachineArn", "BillingPitrStateMachineArn", "BillingMaintenanceParameter"} <= set(
        outputs
    )
    assert outputs["BillingMaintenanceParameter"]["Value"] == "/pgrunbook/billing/maintenance"


def test_a_databases_grants_reach_only_its_own_prefix(deployed):
    for stack in (deployed["primary"], deployed["dr"]):
        for name, other in (("app", "billing"), ("billing", "app")):
            found = statements(deployed["template"](stack, name))
            text = json.dumps(found)
            assert f"pgrunbook/{other}/" not in text and f"pgrunbook-{other}-" not in text
            s3 = [
                s
                for s in found
                if any(
                    str(a).startswith("s3:")
                    for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
                )
            ]
            assert s3, name
            for statement in s3:
                if "pgrunbook-backups-" not in json.dumps(statement["Resource"]):
                    continue  # the Fargate task's layer archives
                actions = (
                    [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
                )
                resources = json.dumps(statement["Resource"])
                if actions == ["s3:ListBucket"] or actions == "s3:ListBucket":
                    # listing: the bucket, but only under the database's prefix
                    assert statement["Condition"] == {"StringLike": {"s3:prefix": [f"pgrunbook/{name}/*"]}}
                elif any(a in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject") for a in actions):
                    assert f"/pgrunbook/{name}/" in resources, (name, statement)
                else:  # bucket settings: the Object Lock configuration, open multipart uploads
                    assert set(actions) <= {
                        "s3:GetBucketObjectLockConfiguration",
                        "s3:ListBucketMultipartUploads",
                    }


def test_each_database_has_its_own_alarms_and_dashboard_widgets(deployed):
    primary, dr, template = deployed["primary"], deployed["dr"], deployed["template"]
    for name, age in (("app", [26, 48]), ("billing", [12, 24])):
        alarms = {
            a["Properties"]["AlarmName"]: a["Properties"]
            for a in of_type(template(primary, name), "AWS::CloudWatch::Alarm").values()
        }
        assert all(n.startswith(f"pgrunbook-{name}-") for n in alarms)
        assert [
            alarms[f"pgrunbook-{name}-BackupAge-{s}"]["Threshold"] for s in ("warning", "critical")
        ] == age
        assert alarms[f"pgrunbook-{name}-BackupAge-critical"]["Dimensions"] == [
            {"Name": "Database", "Value": name},
            {"Name": "service", "Value": "pgrunbook"},
        ]
        assert f"pgrunbook-{name}-schedule-dead-letters" in alarms  # its own schedules' dead letters
        drill = {
            a["Properties"]["AlarmName"]
            for a in of_type(template(dr, name), "AWS::CloudWatch::Alarm").values()
        }
        assert f"pgrunbook-{name}-DrillRto-critical" in drill
    [dashboard] = of_type(template(primary), "AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "pgrunbook-backups"
    body = dashboard["Properties"]["DashboardBody"]
    text = "".join(p for p in body["Fn::Join"][1] if isinstance(p, str)) if isinstance(body, dict) else body
    for name in ("app", "billing"):
        assert f"## {name}" in text and f'"Database","{name}"' in text


def test_nothing_is_unacknowledged_and_cfn_lint_finds_no_errors(deployed):
    report = json.loads((deployed["outdir"] / "validation-report.json").read_text())
    assert [v for plugin in report["pluginReports"] for v in plugin.get("violations", [])] == []
    templates = sorted(deployed["outdir"].glob("*.template.json"))
    assert len(templates) == 6  # two stacks, two nested stacks each
    result = subprocess.run(
        [sys.executable, "-m", "cfnlint", "--format", "json", *map(str, templates)],
        capture_output=True,
        text=True,
    )
    errors = [f for f in json.loads(result.stdout or "[]") if f["Level"] == "Error"]
    assert errors == [], json.dumps(errors, indent=1)


def test_the_single_database_form_keeps_every_logical_id(synthesized):
    """A changed logical id makes CloudFormation replace the resource, and a function or state
    machine with a fixed name cannot be replaced: every resource the single-database form
    deployed (the fixture, written before the list form existed) is still there, under the same
    logical id.  New resources may join them."""
    for stack in ("primary", "dr"):
        found = {f"{kind} {logical_id}" for logical_id, kind in _ids(synthesized[stack]).items()}
        expected = set(json.loads(SINGLE_FORM.read_text())[stack])
        assert sorted(expected - found) == [], stack


def _ids(template) -> dict[str, str]:
    return {logical_id: r["Type"] for logical_id, r in template.to_json()["Resources"].items()}


def test_cdk_synth_refuses_a_wrong_cdk_json_in_one_line():
    """As `cdk synth` runs the app: a configuration error is one line and exit status 2."""
    bad = listed([{"database_name": "app", "database_secret_arn": SECRET.format("app"), "prefix": "x"}])
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({"pgrunbook": bad}), "CDK_OUTDIR": "/nonexistent"}
    result = subprocess.run(
        [sys.executable, "infra/app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "pgrunbook: cdk.json: pgrunbook.databases[0].prefix is shared by every database of the deployment: "
        "set it at the top level"
    ]
