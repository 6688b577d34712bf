"""The same refusal from the CLI and from a Lambda event, for every invalid value of every
option an operation takes from both.

The values come from each option's declaration (an integer below its range, a word where a
number is expected, a name outside its choices, the empty string), so a new option is covered
as soon as it is declared.  Nothing runs: both sides refuse before anything is read or written.
"""

from __future__ import annotations

import pytest

from pgrunbook.entrypoints.aws_lambda import BadEvent
from pgrunbook.entrypoints.cli import main
from pgrunbook.operations import registry
from pgrunbook.settings.options import Option
from tests.lambda_env import Context, load_handler


def invalid_values(opt: Option) -> list[str]:
    """Values a person could type that the option must refuse."""
    if opt.kind == "int":
        values = ["x", "1.5", ""]
        if opt.low is not None:
            values.append(str(opt.low - 1))
        if opt.high is not None:
            values.append(str(opt.high + 1))
        return values
    if opt.kind == "choice":
        return ["nonsense", ""]
    if opt.check is not None:
        return ["nonsense", ""]
    return []


CASES = [
    (op.name, opt, value)
    for op in registry.OPERATIONS.values()
    if op.function is not None and op.kind == "job"
    for opt in op.options
    if opt.event and opt.flag and opt.kind != "bool"
    for value in invalid_values(opt)
]


def test_every_job_option_with_a_value_is_covered():
    covered = {(name, opt.name) for name, opt, _ in CASES}
    assert covered == {
        ("backup", "tier"),
        ("restore-test", "backup_id"),
        ("restore-test", "source"),
        ("restore-test", "prefer_tier"),
        ("verify", "recent_days"),
        ("dr-drill", "scenario"),
        ("dr-drill", "attempts"),
    }


@pytest.mark.parametrize(("operation", "opt", "value"), CASES, ids=lambda v: getattr(v, "name", repr(v)))
def test_the_cli_and_lambda_refuse_a_bad_value_alike(operation, opt, value, capsys, monkeypatch):
    for name in ("PGRUNBOOK_DATABASE_URL", "PGRUNBOOK_BUCKET", "PGRUNBOOK_REGION"):
        monkeypatch.delenv(name, raising=False)
    assert main([operation, opt.flag, value]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    cli_message = err.removeprefix("pgrunbook: ").strip()

    handler = load_handler(operation)
    with pytest.raises(BadEvent) as refused:
        handler({opt.name: value}, Context())
    assert str(refused.value) == cli_message


@pytest.mark.parametrize(
    ("operation", "event", "message"),
    [
        ("retention", {"dry_run": "yes"}, "--dry-run must be true or false"),
        ("restore-test", {"run_user_checks": 1}, r"run_user_checks \(--no-checks\) must be true or false"),
        ("verify", {"recent_days": True}, "--recent-days must be an integer"),
        ("restore-test", {"keep": True}, "does not take keep"),
    ],
)
def test_values_only_an_event_can_carry_are_refused_too(operation, event, message):
    with pytest.raises(BadEvent, match=message):
        load_handler(operation)(event, Context())
