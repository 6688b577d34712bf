"""The registry: one declaration per operation, and what derives from it."""

from __future__ import annotations

import importlib
import json

import pytest

from pgrunbook.domain import metrics
from pgrunbook.domain.notices import Wording
from pgrunbook.entrypoints.cli.parser import build_parser
from pgrunbook.operations import registry
from pgrunbook.settings.options import BY_NAME, Option
from tests.operations.sample_operation import COUNTED


def test_every_operation_has_its_code():
    for op in registry.OPERATIONS.values():
        module = importlib.import_module(op.module)
        if op.kind == "workflow":
            assert set(module.RETRIES) == set(module.PHASES), op.name
            assert callable(module.run_phase)
        elif op.name != "demo":
            assert callable(module.run), op.name


def test_the_cli_has_a_subcommand_per_operation():
    parser = build_parser()
    [subcommands] = [a for a in parser._actions if a.dest == "command"]
    assert set(subcommands.choices) == set(registry.OPERATIONS)


def test_declarations_are_consistent():
    keys = [s.key for op in registry.OPERATIONS.values() for s in op.schedules]
    assert len(keys) == len(set(keys))
    declared = {getattr(metrics, n) for n in dir(metrics) if isinstance(getattr(metrics, n), metrics.Metric)}
    for op in registry.OPERATIONS.values():
        assert set(op.metrics) <= declared, op.name
        for grant in op.grants:
            assert grant.kind in ("list", "objects", "key", "secret"), (op.name, grant)
            if grant.kind == "secret":
                assert grant.setting in BY_NAME, (op.name, grant.setting)
            else:
                assert grant.bucket in ("primary", "dr"), (op.name, grant)
        for name in op.includes:
            assert registry.get(name).function is not None
        assert len({o.name for o in op.options}) == len(op.options)


# -- adding an operation ---------------------------------------------------------------------

SAMPLE = registry.Operation(
    "sample",
    "tests.operations.sample_operation",
    "count, as an example of adding an operation",
    Wording("Sample Count"),
    options=(Option("count", "how far to count", default=1, kind="int", low=1, high=10, flag="--count"),),
    metrics=(COUNTED,),
    schedules=(registry.Schedule("Daily", "sample", "cron(0 9 * * ? *)", {"count": 3}),),
    grants=(registry.objects("SampleRead", "primary", registry.BACKUP_FILES, read=True),),
    function=registry.Lambda("pgrunbook sample: counts", memory_mb=256, timeout_minutes=1),
)


@pytest.fixture
def with_sample(monkeypatch):
    monkeypatch.setitem(registry.OPERATIONS, "sample", SAMPLE)
    return SAMPLE


def test_an_added_operation_is_a_cli_command_and_a_lambda_handler(with_sample, capsys, monkeypatch):
    from pgrunbook.entrypoints.aws_lambda import BadEvent
    from pgrunbook.entrypoints.cli import main
    from tests.lambda_env import Context, load_handler

    monkeypatch.setenv("PGRUNBOOK_DATABASE_NAME", "app")
    assert main(["sample", "--count", "4", "--json"]) == 0  # no bucket: nothing stored
    report = json.loads(capsys.readouterr().out)
    assert report["operation"] == "sample" and report["figures"] == {"count": 4}
    assert main(["sample", "--count", "11"]) == 2
    refusal = capsys.readouterr().err.strip().removeprefix("pgrunbook: ")
    assert refusal == "--count must be between 1 and 10, not 11"

    handler = load_handler("sample")
    result = handler({"count": 2}, Context())
    assert result["figures"] == {"count": 2} and result["metrics"] == {"SampleCount": ["Count", 2.0]}
    assert "SampleCount" in capsys.readouterr().out  # emitted as embedded metric format
    with pytest.raises(BadEvent) as refused:
        handler({"count": 11}, Context())
    assert str(refused.value) == refusal


def test_an_added_operation_is_deployed_with_its_schedule_and_grants(with_sample, tmp_path):
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.app import build
    from tests.infra.test_stacks import CDK_CONTEXT, context, function, role_statements

    app = cdk.App(
        outdir=str(tmp_path), context={**CDK_CONTEXT, "pgrunbook": context(), "aws:cdk:bundling-stacks": []}
    )
    primary, _ = build(app)
    template = Template.from_stack(primary)
    fn = function(template, "sample")
    assert fn["MemorySize"] == 256 and fn["Environment"]["Variables"]["PGRUNBOOK_OPERATION"] == "sample"
    rules = [
        r["Properties"]
        for r in template.find_resources("AWS::Events::Rule").values()
        if r["Properties"]["Description"].startswith("pgrunbook sample")
    ]
    assert [(r["ScheduleExpression"], json.loads(r["Targets"][0]["Input"])) for r in rules] == [
        ("cron(0 9 * * ? *)", {"count": 3})
    ]
    sids = {s.get("Sid") for s in role_statements(template, "sample")}
    assert {"SampleRead", "OwnReports"} <= sids
